import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { isM4Error } from '../core/errors.ts';
import { loadProfile } from '../mixer/profile.ts';
import { selectBackend } from '../trainer/backend.ts';
import { learningRateAt, resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import { lmHeadLoss, type LossSums } from '../trainer/lm-loss.ts';
import { frozenMatrix } from '../trainer/ops.ts';
import { AdamW, clipFactor } from '../trainer/optimizer.ts';

await selectBackend('cpu');
const close = (actual: number, expected: number, tolerance = 1e-6) =>
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)), `${actual} != ${expected}`);

test('schedule: linear warmup to the initial rate, then linear decay reaching the final rate at the last step', () => {
  const h = { steps: 10, learningRate: 1e-3, finalLearningRate: 1e-4, warmupSteps: 4 };
  const expected = [
    2.5e-4,
    5e-4,
    7.5e-4,
    1e-3,
    1e-3,
    1e-3 - 9e-4 / 6,
    1e-3 - (2 * 9e-4) / 6,
    1e-3 - (3 * 9e-4) / 6,
    1e-3 - (4 * 9e-4) / 6,
    1e-3 - (5 * 9e-4) / 6,
  ];
  expected.forEach((lr, step) => close(learningRateAt(step, h), lr, 1e-9));
  close(learningRateAt(10, h), 1e-4, 1e-9);
  close(learningRateAt(0, { ...h, warmupSteps: 0 }), 1e-3, 1e-9);
});

test("hyper-parameters: the profile's values, warmup scaled to the run's steps, overrides win", async () => {
  const profile = await loadProfile('atum-9b');
  const h = resolveHyperParameters(profile, 1000);
  // The card warms up 2,000 of 200,000 steps: 1% of a 1,000-step run.
  assert.equal(h.warmupSteps, 10);
  assert.deepEqual(
    [h.learningRate, h.finalLearningRate, h.weightDecay, h.gradientClipping, h.zLossWeight, h.tokensPerStep],
    [1e-5, 6e-6, 0.1, 1, 1e-3, 1_310_000],
  );
  assert.deepEqual(h.adamBetas, [0.9, 0.999]);
  const o = resolveHyperParameters(profile, 40, { learningRate: 2e-3, warmupSteps: 3, adamBeta2: 0.95, tokensPerStep: 64 });
  assert.deepEqual([o.learningRate, o.warmupSteps, o.tokensPerStep, o.finalLearningRate], [2e-3, 3, 64, 6e-6]);
  assert.deepEqual(o.adamBetas, [0.9, 0.95]);
  assert.throws(() => resolveHyperParameters(profile, 5, { warmupSteps: 6 }), /warmup/);
});

test('z-loss and cross-entropy sums against a hand computation, with the added columns after the frozen ones', () => {
  // Hidden [2, 2] times the frozen head [2, 3] and the added columns [2, 1] give logits [[1, 2, 3, 0.5], [0, 0, 0, 2]].
  const head = {
    frozen: frozenMatrix(
      tf.tensor2d([
        [1, 2, 3],
        [0, 0, 0],
      ]),
    ),
    added: tf.tensor2d([[0.5], [2]]),
  };
  const hidden = tf.tensor2d([
    [1, 0],
    [0, 1],
  ]);
  const sums: LossSums = { crossEntropy: 0, zLoss: 0, count: 0 };
  // Row 0 predicts id 2 (frozen), row 1 id 3 (the added column).
  const objective = lmHeadLoss(hidden, new Int32Array([2, 3]), head, 1e-3, sums).dataSync()[0]!;
  const lse1 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3) + Math.exp(0.5));
  const lse2 = Math.log(3 + Math.exp(2));
  close(sums.crossEntropy, lse1 - 3 + (lse2 - 2));
  close(sums.zLoss, lse1 ** 2 + lse2 ** 2);
  assert.equal(sums.count, 2);
  close(objective, sums.crossEntropy + 1e-3 * sums.zLoss, 1e-5);
  const ignored: LossSums = { crossEntropy: 0, zLoss: 0, count: 0 };
  lmHeadLoss(hidden, new Int32Array([-100, 0]), head, 1e-3, ignored);
  close(ignored.crossEntropy, lse2);
  assert.equal(ignored.count, 1);
  // A label outside the 4 ids (and not -100) is refused before anything is computed, naming it.
  for (const bad of [4, -1])
    assert.throws(
      () => lmHeadLoss(hidden, new Int32Array([0, bad]), head, 1e-3, { crossEntropy: 0, zLoss: 0, count: 0 }),
      (err) => isM4Error(err, 'E_INPUT') && err.message.includes(`label ${bad} outside the vocabulary of 4`),
    );
});

test('clipping: global norm over all gradients, factor max / (norm + 1e-6) capped at 1', () => {
  const grads = [tf.tensor1d([3, 0]), tf.tensor2d([[0, 4]])];
  const clip = clipFactor(grads, 1);
  close(clip.norm, 5);
  close(clip.factor, 1 / (5 + 1e-6));
  assert.equal(clipFactor(grads, 10).factor, 1);
  assert.equal(clipFactor(grads, 0).factor, 1);
});

test('AdamW: one and two updates by hand; decoupled weight decay only on decayed weights', () => {
  const w = tf.variable(tf.tensor1d([1, -2]));
  const gate = tf.variable(tf.tensor1d([0.5]));
  const params = new Map([
    ['w', w],
    ['gate', gate],
  ]);
  const adam = new AdamW(params, { betas: [0.9, 0.999], epsilon: 1e-8, decayed: new Set(['w']) });
  const lr = 0.1;
  const wd = 0.1;
  adam.apply(
    new Map([
      ['w', tf.tensor1d([0.5, -1])],
      ['gate', tf.tensor1d([2])],
    ]),
    lr,
    wd,
  );
  // First update: mhat = g, vhat = g^2, so the step is lr * g / (|g| + eps) = lr * sign(g).
  const w1 = [1 * (1 - lr * wd) - lr * (0.5 / (0.5 + 1e-8)), -2 * (1 - lr * wd) + lr * (1 / (1 + 1e-8))];
  w.dataSync().forEach((v, i) => close(v, w1[i]!, 1e-6));
  close(gate.dataSync()[0]!, 0.5 - lr, 1e-6);
  adam.apply(
    new Map([
      ['w', tf.tensor1d([0.5, -1])],
      ['gate', tf.tensor1d([-2])],
    ]),
    lr,
    wd,
  );
  // Second: m = 0.1 g1 * 0.9 + 0.1 g2, v likewise; bias corrections 1 - 0.9^2 and 1 - 0.999^2.
  const m = (0.9 * 0.1 * 2 + 0.1 * -2) / (1 - 0.81);
  const v = (0.999 * 0.001 * 4 + 0.001 * 4) / (1 - 0.999 ** 2);
  close(gate.dataSync()[0]!, 0.5 - lr - lr * (m / (Math.sqrt(v) + 1e-8)), 1e-5);
  assert.equal(adam.m.size, 2);
  adam.dispose();
});
