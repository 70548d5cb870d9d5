import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
import { runTraining, type RunTrainingOptions } from '../trainer/run-training.ts';
import { SyntheticBatches } from '../trainer/synthetic-batches.ts';
import { Trainer } from '../trainer/trainer.ts';
import type { Batch } from '../trainer-bridge/batch.ts';

await selectBackend('wasm');
const profile = await loadProfile('atum-9b');
const SHAPE = { batchSize: 1, seqLen: 32, pairsPerRow: 2 };
const OVERRIDES = { learningRate: 1e-2, finalLearningRate: 1e-3, warmupSteps: 2, tokensPerStep: 32 };
/** Resumed losses must equal uninterrupted ones within this (relative); the same backend gives identical floats. */
const RESUME_TOLERANCE = 1e-6;

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'm4-trainer-run-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** runTraining on the synthetic set, resumable through the bridge-state factory. */
function run(runDir: string, options: Partial<RunTrainingOptions> = {}) {
  const data = new SyntheticBatches({ ...SHAPE, classes: 2 });
  return runTraining({
    batches: (state) => data.batches(state),
    bridgeState: () => data.state(),
    runDir,
    steps: 8,
    model: 'tiny',
    backend: 'wasm',
    profile,
    overrides: OVERRIDES,
    checkpointEvery: 3,
    log: () => {},
    ...options,
  });
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
  assert.deepEqual(unchanged.map(([name]) => name), []);
  assert.equal(trainer.optimizer.m.size, model.trainableVariables().size);
  trainer.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, 0);
});

test('the loss falls over a few dozen steps on captions the image determines', async () => {
  await withDir(async (dir) => {
    const result = await run(dir, { steps: 36, checkpointEvery: 100 });
    const losses = result.metrics.map((m) => m.loss);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 4));
    const last = mean(losses.slice(-4));
    assert.ok(last < first - 2, `loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
    const lines = await readMetrics(dir);
    assert.deepEqual(lines.map((m) => m.step), Array.from({ length: 36 }, (_, i) => i + 1));
    assert.ok(lines.every((m) => Number.isFinite(m.loss) && m.tokens > 0 && m.images === 2));
    const svg = await readFile(join(dir, 'loss.svg'), 'utf8');
    assert.match(svg, /^<svg[^>]*>[\s\S]*<polyline[^>]*points="([\d.]+,[\d.]+ ){35}[\d.]+,[\d.]+"/);
    assert.equal(tf.memory().numTensors, 0);
  });
});

test('a run stopped at step k and resumed logs the same losses as one that never stopped', async () => {
  await withDir(async (dir) => {
    const whole = join(dir, 'whole');
    const split = join(dir, 'split');
    // Two micro-batches per step: accumulation and the bridge state at step ends are both exercised.
    const overrides = { ...OVERRIDES, tokensPerStep: 64 };
    await run(whole, { overrides });
    const first = await run(split, { overrides, stopAt: 5 });
    assert.equal(first.stoppedBy, 'stop-at');
    assert.equal((await readCheckpointInfo(split))?.step, 5);
    assert.equal((await readCheckpointInfo(split))?.bridgeState?.batches, 10);
    const second = await run(split, { overrides, resume: true });
    assert.deepEqual([second.startStep, second.endStep, second.stoppedBy], [5, 8, 'steps']);
    const a = await readMetrics(whole);
    const b = await readMetrics(split);
    assert.deepEqual(b.map((m) => m.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    a.forEach((m, i) => {
      for (const key of ['loss', 'zLoss', 'gradNorm', 'learningRate'] as const) {
        assert.ok(Math.abs(m[key] - b[i]![key]) <= RESUME_TOLERANCE * Math.abs(m[key]), `step ${m.step} ${key}: ${m[key]} vs ${b[i]![key]}`);
      }
    });
  });
});

test('a run directory holding another run is refused with a message that says why', async () => {
  await withDir(async (dir) => {
    await run(dir, { steps: 2 });
    await assert.rejects(run(dir, { steps: 2 }), (err) => isM4Error(err, 'E_USAGE') && /already holds a checkpoint at step 2/.test(err.message));
    await assert.rejects(run(dir, { steps: 4, resume: true, profile: await loadProfile('atum-80b') }), (err) => isM4Error(err, 'E_USAGE') && /profile atum-9b, not atum-80b/.test(err.message));
    const wider = { ...modelPreset('tiny'), language: { ...modelPreset('tiny').language, layers: 2 } };
    await assert.rejects(run(dir, { steps: 4, resume: true, model: wider }), (err) => isM4Error(err, 'E_USAGE') && /differs in language/.test(err.message));
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
    const never: AsyncIterable<Batch> = { [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<Batch>>(() => {}) }) };
    setTimeout(() => controller.abort(), 50);
    const result = await run(dir, { batches: never, signal: controller.signal });
    assert.deepEqual([result.stoppedBy, result.endStep, result.checkpoint], ['abort', 0, null]);
  });
});
