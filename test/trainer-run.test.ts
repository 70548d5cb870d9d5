import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { isM4Error } from '../core/errors.ts';
import { loadProfile } from '../mixer/profile.ts';
import { selectBackend } from '../trainer/backend.ts';
import { readCheckpointInfo } from '../trainer/checkpoint.ts';
import { resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import { readMetrics } from '../trainer/metrics.ts';
import { modelPreset } from '../trainer/model-config.ts';
import { AtumModel } from '../trainer/model.ts';
import { openRunDirectory } from '../trainer/run-directory.ts';
import { resolveRunSettings } from '../trainer/run-settings.ts';
import { SyntheticBatches } from '../sandbox/synthetic-batches.ts';
import { Trainer } from '../trainer/trainer.ts';
import type { Batch } from '../trainer-bridge/batch.ts';
import type { LossSums } from '../trainer/lm-loss.ts';
import { synthesisedRun, type SyntheticRunOptions } from './helpers/synthetic-run.ts';
import { withTempDir } from './helpers/temp-dir.ts';

await selectBackend('wasm');
const profile = await loadProfile('atum-9b');
const SHAPE = { batchSize: 1, seqLen: 32, pairsPerRow: 2 };
const OVERRIDES = { learningRate: 1e-2, finalLearningRate: 1e-3, warmupSteps: 2, tokensPerStep: 32 };
/** Resumed losses must equal uninterrupted ones within this (relative); the same backend gives identical floats. */
const RESUME_TOLERANCE = 1e-6;

const withDir = <T>(fn: (dir: string) => Promise<T>) => withTempDir('m4-trainer-run-', fn);

/** A run on the synthetic set: the profile's table with the test's learning rates unless resuming (a run keeps its own). */
function run(runDir: string, options: Partial<SyntheticRunOptions> = {}) {
  return synthesisedRun(runDir, { profile, overrides: options.resume ? undefined : OVERRIDES, ...options });
}

test('frozen weights stay bit-identical over training steps, trainable ones change, and no tensor leaks per step', async () => {
  const model = await AtumModel.create(modelPreset('tiny'));
  const trainer = new Trainer(model, resolveHyperParameters(profile, 10, OVERRIDES));
  const data = new SyntheticBatches(SHAPE);
  const frozenBefore = new Map([...model.weights.frozen].map(([name, t]) => [name, t.dataSync().slice()]));
  const trainableBefore = new Map([...model.trainableVariables()].map(([name, t]) => [name, t.dataSync().slice()]));
  const live: number[] = [];
  for (let step = 0; step < 4; step++) {
    trainer.accumulate(data.batch(step));
    trainer.update(step);
    live.push(tf.memory().numTensors);
  }
  // The first step makes the cached transposes and rotary tables; from then on the count is flat.
  assert.deepEqual(live.slice(1), [live[1], live[1], live[1]]);
  for (const [name, t] of model.weights.frozen) assert.deepEqual(t.dataSync(), frozenBefore.get(name), name);
  const unchanged = [...model.trainableVariables()].filter(([name, v]) => v.dataSync().every((x, i) => x === trainableBefore.get(name)![i]));
  assert.deepEqual(
    unchanged.map(([name]) => name),
    [],
  );
  assert.equal(trainer.optimizer.m.size, model.trainableVariables().size);
  trainer.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, 0);
});

test('the loss falls over a few dozen steps on captions the image determines, and the model comes to use the image', async () => {
  const model = await AtumModel.create(modelPreset('tiny'));
  const trainer = new Trainer(model, resolveHyperParameters(profile, 40, OVERRIDES));
  const data = new SyntheticBatches({ ...SHAPE, classes: 2 });
  const losses: number[] = [];
  for (let step = 0; step < 40; step++) {
    trainer.accumulate(data.batch(step));
    losses.push(trainer.update(step).loss);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(mean(losses.slice(-4)) < mean(losses.slice(0, 4)) - 2, `loss ${losses[0]} -> ${losses[39]}`);
  // Held-out rows whose two pairs are of different classes: with the two images swapped, every caption is wrong.
  const evaluate = (batch: Batch) => {
    const prepared = model.prepare(batch);
    const sums: LossSums = { crossEntropy: 0, zLoss: 0, count: 0 };
    tf.tidy(() => {
      model.objective(prepared, sums, { zWeight: 0 });
    });
    prepared.dispose();
    return sums.crossEntropy / sums.count;
  };
  const plane = 3 * 224 * 224;
  let gap = 0;
  let rows = 0;
  for (let i = 1000; i < 1040; i++) {
    const batch = data.batch(i);
    // A row is <s>, then per pair <fake><image><fake> caption </s>: captions start at 4 and 4 + pairLength.
    const pairLength = data.options.captionTokens + 4;
    if (batch.inputIds[4] === batch.inputIds[4 + pairLength]) continue;
    const swapped = batch.pixelValues.slice();
    swapped.set(batch.pixelValues.subarray(0, plane), plane);
    swapped.set(batch.pixelValues.subarray(plane, 2 * plane), 0);
    gap += evaluate({ ...batch, pixelValues: swapped }) - evaluate(batch);
    rows++;
  }
  assert.ok(rows >= 10);
  assert.ok(gap / rows > 0.15, `swapped images cost ${(gap / rows).toFixed(3)} nats per token`);
  trainer.dispose();
  model.dispose();
});

test('a run stopped at step k and resumed logs the same losses as one that never stopped', async () => {
  await withDir(async (dir) => {
    const whole = join(dir, 'whole');
    const split = join(dir, 'split');
    // Two micro-batches per step: accumulation and the bridge state at step ends are both exercised.
    const overrides = { ...OVERRIDES, tokensPerStep: 64 };
    await run(whole, { overrides });
    const first = await run(split, { overrides, stopAt: 5 });
    const info = await readCheckpointInfo(split);
    assert.deepEqual([info?.hyperParameters.learningRate, info?.hyperParameters.tokensPerStep], [1e-2, 64]);
    assert.equal(first.stoppedBy, 'stop-at');
    assert.equal((await readCheckpointInfo(split))?.step, 5);
    assert.equal((await readCheckpointInfo(split))?.bridgeState?.batches, 10);
    // Resumed with no flag repeated: the run's own learning rate and tokens per step, not the profile's.
    const second = await run(split, { resume: true });
    assert.deepEqual([second.startStep, second.endStep, second.stoppedBy], [5, 8, 'steps']);
    const a = await readMetrics(whole);
    const b = await readMetrics(split);
    assert.ok(a.every((m) => Number.isFinite(m.loss) && m.tokens > 0 && m.images === 4));
    const svg = await readFile(join(split, 'loss.svg'), 'utf8');
    assert.match(svg, /^<svg[^>]*>[\s\S]*<polyline[^>]*points="([\d.]+,[\d.]+ ){7}[\d.]+,[\d.]+"/);
    assert.deepEqual(
      b.map((m) => m.step),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    a.forEach((m, i) => {
      for (const key of ['loss', 'zLoss', 'gradNorm', 'learningRate'] as const) {
        assert.ok(Math.abs(m[key] - b[i]![key]) <= RESUME_TOLERANCE * Math.abs(m[key]), `step ${m.step} ${key}: ${m[key]} vs ${b[i]![key]}`);
      }
    });
  });
});

test('a run directory holding another run is refused with a message that says why', async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      run(dir, { steps: 2, resume: true }),
      (err) => isM4Error(err, 'E_USAGE') && /nothing to resume: .* holds no checkpoint/.test(err.message),
    );
    await run(dir, { steps: 2 });
    await assert.rejects(run(dir, { steps: 2 }), (err) => isM4Error(err, 'E_USAGE') && /already holds a checkpoint at step 2/.test(err.message));
    await assert.rejects(
      run(dir, { steps: 4, resume: true, profile: await loadProfile('atum-80b') }),
      (err) => isM4Error(err, 'E_USAGE') && /profile atum-9b, not atum-80b/.test(err.message),
    );
    await assert.rejects(
      run(dir, { steps: 4, resume: true, model: 'atum-9b' }),
      (err) => isM4Error(err, 'E_USAGE') && /model tiny, not atum-9b/.test(err.message),
    );
  });
});

test('an abort checkpoints the last completed step and returns, also while waiting for a batch', async () => {
  await withDir(async (dir) => {
    const controller = new AbortController();
    const result = await run(dir, { signal: controller.signal, log: (line) => line.startsWith('step 2/') && controller.abort() });
    assert.deepEqual([result.stoppedBy, result.endStep], ['abort', 2]);
    assert.equal((await readCheckpointInfo(dir))?.step, 2);
    assert.equal(tf.memory().numTensors, 0);
  });
  await withDir(async (dir) => {
    const controller = new AbortController();
    // An async generator stuck in a read: its return() would wait for that read, so the run must not await it.
    async function* never(): AsyncGenerator<Batch> {
      await new Promise(() => {});
    }
    setTimeout(() => controller.abort(), 50);
    const result = await run(dir, { batches: () => never(), signal: controller.signal });
    assert.deepEqual([result.stoppedBy, result.endStep, result.checkpoint], ['abort', 0, null]);
  });
});

test('a resumed run names every hyper-parameter a flag changes, and keeps the others', async () => {
  await withDir(async (dir) => {
    await run(dir, { steps: 4, stopAt: 1 });
    const resumeFrom = await openRunDirectory(dir, true);
    const settings = await resolveRunSettings({ profile, overrides: { learningRate: 5e-3, weightDecay: 0.1 }, resumeFrom }, () => 1, dir);
    assert.deepEqual(settings.changed, ['learningRate 0.01 -> 0.005'], "weightDecay 0.1 is the run's own: no change");
    assert.deepEqual([settings.hyper.finalLearningRate, settings.hyper.warmupSteps, settings.hyper.steps], [1e-3, 2, 4]);
  });
});

test('a step whose loss is not finite stops the run naming it; the last checkpoint is kept as it was', async () => {
  await withDir(async (dir) => {
    const steps: string[] = [];
    await assert.rejects(
      run(dir, {
        overrides: { ...OVERRIDES, learningRate: 1e30, warmupSteps: 0 },
        checkpointEvery: 1,
        log: (line) => line.startsWith('step ') && steps.push(line),
      }),
      (err) =>
        isM4Error(err, 'E_DIVERGED') &&
        /^step \d+ diverged: (loss|z-loss|gradient norm) (NaN|Infinity)/.test(err.message) &&
        /update was not applied/.test(err.message),
    );
    const info = await readCheckpointInfo(dir);
    assert.ok(info && info.step === steps.length && info.step >= 1, `checkpoint at step ${info?.step}, ${steps.length} finite steps logged`);
    assert.ok((await readMetrics(dir)).every((m) => Number.isFinite(m.loss)));
    assert.equal(tf.memory().numTensors, 0);
  });
});
