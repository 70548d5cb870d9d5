import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../trainer/backend.ts';
import { lmHeadLoss } from '../trainer/lm-loss.ts';
import { frozenLinear, frozenMatrix, matmul, matmulNT } from '../trainer/ops.ts';

// Each hand-written gradient against central finite differences of a scalar function of its inputs (float32 maths).
await selectBackend('cpu');

let seed = 7;
const random = (shape: number[]) => tf.randomNormal(shape, 0, 1, 'float32', seed++);

/** Max |analytic - numeric| over every coordinate of `x`, relative to the gradient's scale. */
function checkGradient(f: (x: tf.Tensor) => tf.Scalar, x: tf.Tensor, eps = 1e-2): number {
  const analytic = tf.grad(f)(x).dataSync();
  const values = x.dataSync().slice();
  let worst = 0;
  let scale = 1e-3;
  for (let i = 0; i < values.length; i++) {
    const at = (delta: number) => {
      const shifted = values.slice();
      shifted[i] = values[i]! + delta;
      return tf.tidy(() => f(tf.tensor(shifted, x.shape)).dataSync()[0]!);
    };
    const numeric = (at(eps) - at(-eps)) / (2 * eps);
    worst = Math.max(worst, Math.abs(numeric - analytic[i]!));
    scale = Math.max(scale, Math.abs(analytic[i]!));
  }
  return worst / scale;
}

test('matmul: both input gradients match finite differences', () => {
  const a = random([3, 4]);
  const b = random([4, 5]);
  const r = random([3, 5]);
  assert.ok(checkGradient((x) => tf.sum(tf.mul(matmul(x as tf.Tensor2D, b as tf.Tensor2D), r)), a) < 1e-2);
  assert.ok(checkGradient((x) => tf.sum(tf.mul(matmul(a as tf.Tensor2D, x as tf.Tensor2D), r)), b) < 1e-2);
});

test('matmulNT: a @ b^T, both input gradients match finite differences', () => {
  const a = random([3, 4]);
  const b = random([5, 4]);
  const r = random([3, 5]);
  assert.deepEqual(
    [...matmulNT(a as tf.Tensor2D, b as tf.Tensor2D).dataSync()].map((v) => v.toFixed(4)),
    [...tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, false, true).dataSync()].map((v) => v.toFixed(4)),
  );
  assert.ok(checkGradient((x) => tf.sum(tf.mul(matmulNT(x as tf.Tensor2D, b as tf.Tensor2D), r)), a) < 1e-2);
  assert.ok(checkGradient((x) => tf.sum(tf.mul(matmulNT(a as tf.Tensor2D, x as tf.Tensor2D), r)), b) < 1e-2);
});

test('frozenLinear: the input gradient matches finite differences', () => {
  const w = frozenMatrix(random([4, 6]) as tf.Tensor2D);
  const r = random([3, 6]);
  assert.ok(checkGradient((x) => tf.sum(tf.mul(frozenLinear(x as tf.Tensor2D, w), r)), random([3, 4])) < 1e-2);
});

// On each backend the trainer runs on here: the loss's softmax and one-hot are backend kernels.
for (const backend of ['cpu', 'wasm'] as const)
  test(`lmHeadLoss on ${backend}: the gradients of cross-entropy plus z-loss, for the hidden states and the added columns, with ignored rows, match finite differences`, async () => {
    await selectBackend(backend);
    const head = { frozen: frozenMatrix(tf.mul(random([4, 7]), 2) as tf.Tensor2D), added: tf.mul(random([4, 2]), 2) as tf.Tensor2D };
    // Targets 7 and 8 are the added columns' ids (after the 7 frozen ones).
    const targets = new Int32Array([3, -100, 8, 6, 7]);
    const hidden = random([5, 4]);
    const sums = () => ({ crossEntropy: 0, zLoss: 0, count: 0 });
    // A chunk of 2 rows exercises the chunked path (3 chunks, one with the ignored row).
    const loss = (x: tf.Tensor, added: tf.Tensor, z: number) =>
      lmHeadLoss(x as tf.Tensor2D, targets, { frozen: head.frozen, added: added as tf.Tensor2D }, z, sums(), 2);
    assert.ok(checkGradient((x) => loss(x, head.added, 0.1), hidden, 1e-2) < 2e-2);
    assert.ok(checkGradient((a) => loss(hidden, a, 0.1), head.added, 1e-2) < 2e-2);
    // The z-loss term alone (weight 0.1 minus weight 0), so a wrong z-loss gradient is not hidden by the larger CE term.
    const zOnly = (x: tf.Tensor, a: tf.Tensor) => tf.sub(loss(x, a, 0.1), loss(x, a, 0)) as tf.Scalar;
    assert.ok(checkGradient((x) => zOnly(x, head.added), hidden, 1e-2) < 5e-2);
    assert.ok(checkGradient((a) => zOnly(hidden, a), head.added, 1e-2) < 5e-2);
  });
