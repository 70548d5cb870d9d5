import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainOnMixture, type TrainOnMixtureOptions } from '../trainer/train-on-mixture.ts';
import type { Mixture } from '../mixer/mixture-stream-types.ts';
import { planFour, writeFourSources } from './helpers/mixtures.ts';

const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;
let dir: string;
let mixture: Mixture;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm4-train-'));
  mixture = await planFour(join(dir, 'mix'), await writeFourSources(join(dir, 'data')), { budget: 8000 });
});
after(() => rm(dir, { recursive: true, force: true }));

const options = (runDir: string, extra: Partial<TrainOnMixtureOptions> = {}): TrainOnMixtureOptions => ({
  runDir,
  steps: 4,
  backend: 'wasm',
  bridge: { batchSize: 1, seqLen: 256, maxImages: 4, workers: 1 },
  overrides: { tokensPerStep: 512, learningRate: 1e-2 },
  log: () => {},
  ...extra,
});

test('train on a mixture through the bridge: stopped at step 2 and resumed, it logs the losses of an uninterrupted run', async () => {
  const whole = await trainOnMixture(mixture, options(join(dir, 'whole')));
  assert.equal(whole.training.endStep, 4);
  assert.equal(whole.report.batches, 8, '2 batches of 1 x 256 tokens per step of 512 tokens');
  const first = await trainOnMixture(mixture, options(join(dir, 'split'), { stopAt: 2 }));
  assert.equal(first.training.stoppedBy, 'stop-at');
  const rest = await trainOnMixture(mixture, { runDir: join(dir, 'split'), resume: true, backend: 'wasm', bridge: { workers: 1 }, log: () => {} });
  assert.equal(rest.training.startStep, 2);
  const losses = (r: typeof whole) => r.training.metrics.map((m) => m.loss);
  const resumed = [...losses(first), ...losses(rest)];
  assert.equal(resumed.length, 4);
  resumed.forEach((loss, i) =>
    assert.ok(Math.abs(loss - losses(whole)[i]!) <= 1e-5 * Math.abs(loss), `step ${i + 1}: ${loss} resumed, ${losses(whole)[i]} uninterrupted`),
  );
  const metrics = (await readFile(join(dir, 'split', 'metrics.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { step: number });
  assert.deepEqual(
    metrics.map((m) => m.step),
    [1, 2, 3, 4],
  );
  assert.match(await readFile(join(dir, 'split', 'loss.svg'), 'utf8'), /^<svg/);
  // The mixture's realised table travels with the bridge's report.
  assert.deepEqual(
    whole.report.mixture.sources.map((s) => s.name),
    ['pmd', 'laion', 'obelisc', 'wikipedia'],
  );
});

test('m4data train refuses a run directory of another model, and a run without --run-dir', async () => {
  const runDir = join(dir, 'other');
  await trainOnMixture(mixture, options(runDir, { steps: 1 }));
  const r = spawnSync(
    process.execPath,
    [BIN, 'train', '--mixture', join(dir, 'mix'), '--run-dir', runDir, '--resume', '--model', 'atum-9b', '--backend', 'wasm'],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /holds a checkpoint of another run: model tiny, not atum-9b \[E_USAGE\]/);
  const fresh = spawnSync(process.execPath, [BIN, 'train', '--mixture', join(dir, 'mix'), '--run-dir', runDir, '--backend', 'wasm'], { encoding: 'utf8' });
  assert.equal(fresh.status, 2);
  assert.match(fresh.stderr, /already holds a checkpoint at step 1: resume it, or choose another run directory/);
});

test('m4data train runs steps from the command line and logs them', () => {
  const r = spawnSync(
    process.execPath,
    [
      BIN,
      'train',
      '--mixture',
      join(dir, 'mix'),
      '--run-dir',
      join(dir, 'cli'),
      '--steps',
      '2',
      '--backend',
      'wasm',
      '--batch-size',
      '1',
      '--seq-len',
      '256',
      '--tokens-per-step',
      '256',
      '--max-images',
      '4',
      '--workers',
      '1',
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^backend wasm/m);
  assert.match(r.stdout, /^step 1\/2 {2}loss \d+\.\d{4}/m);
  assert.match(r.stdout, /^step 2\/2 {2}loss \d+\.\d{4}/m);
  assert.match(r.stdout, /the mixture as delivered to the bridge/);
});
