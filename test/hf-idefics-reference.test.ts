import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadProfile } from '../mixer/profile.ts';
import { jpeg } from '../sandbox/images.ts';
import { BatchDumpFolder } from '../trainer-bridge/batch-dump.ts';
import type { Batch } from '../trainer-bridge/batch.ts';
import { openBridge } from '../trainer-bridge/bridge.ts';
import { selectBackend } from '../trainer/backend.ts';
import { ideficsConfigJson } from '../trainer/hf/config-json.ts';
import { exportHf } from '../trainer/hf/export.ts';
import { createInitialModel, initialModelConfig } from '../trainer/hf/init-from.ts';
import { layoutMappings } from '../trainer/hf/names.ts';
import { resolveHyperParameters } from '../trainer/hyper-parameters.ts';
import type { LossSums } from '../trainer/lm-loss.ts';
import { modelPreset } from '../trainer/model-config.ts';
import type { AtumModel } from '../trainer/model.ts';
import { Trainer } from '../trainer/trainer.ts';
import { documentSample, listMixture, pairSample } from './helpers/bridge-mixture.ts';
import { randomValues, writeCheckpoint } from './helpers/hf-checkpoint.ts';

// The trainer's logits and loss against an independent NumPy implementation of transformers' IdeficsForVisionText2Text
// (test/python/idefics_reference.py), on a batch from the bridge, with every weight random (gates open, norms and
// biases away from their neutral values): before and after a training step, read back from the trainer's own export.
const REFERENCE = join(import.meta.dirname, 'python', 'idefics_reference.py');
/** float32 against float64: relative to the largest logit; the loss relative to itself. */
const TOLERANCE = 1e-4;

const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0);

async function bridgeBatch(): Promise<Batch> {
  const image = (seed: number) => jpeg(240, 200, { seed });
  const samples = [
    documentSample('obelisc', 'd0', [
      'A page about rivers.',
      await image(1),
      'The river runs under the old bridge in the morning light.',
      await image(2),
      await image(3),
      'The end.',
    ]),
    pairSample('laion', 'p1', 'a red bicycle leaning on a wall', await image(4)),
    pairSample('pmd', 'p2', 'two dogs on a beach', await image(5)),
  ];
  const bridge = openBridge(listMixture(samples, { budgetTokens: 10_000 }), { batchSize: 2, seqLen: 64, maxImages: 3, workers: 1, steps: 1 });
  for await (const batch of bridge) return batch;
  throw new Error('the bridge gave no batch');
}

/** A float64 .npy as NumPy writes it (magic, version, header dict, data). */
async function readNpyFloat64(path: string): Promise<Float64Array> {
  const bytes = await readFile(path);
  const headerLength = bytes.readUInt16LE(8);
  assert.match(bytes.subarray(10, 10 + headerLength).toString('latin1'), /'descr': '<f8'/);
  const data = bytes.subarray(10 + headerLength);
  return new Float64Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

function reference(checkpoint: string, batchDir: string, out: string): { loss: number; tokens: number; logits: Promise<Float64Array> } {
  const r = spawnSync(python!, [REFERENCE, checkpoint, batchDir, out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { ...(JSON.parse(r.stdout) as { loss: number; tokens: number }), logits: readNpyFloat64(out) };
}

function ours(model: AtumModel, batch: Batch): { logits: Float32Array; loss: number; tokens: number } {
  const prepared = model.prepare(batch);
  const sums: LossSums = { crossEntropy: 0, zLoss: 0, count: 0 };
  const logits = model.logits(prepared);
  const values = logits.dataSync() as Float32Array;
  tf.dispose([logits, tf.tidy(() => model.objective(prepared, sums, { zWeight: 0 }))]);
  prepared.dispose();
  return { logits: values, loss: sums.crossEntropy / sums.count, tokens: sums.count };
}

async function compare(model: AtumModel, batch: Batch, checkpoint: string, dir: string, what: string) {
  const expected = reference(checkpoint, join(dir, 'batch-000000'), join(dir, `${what}.npy`));
  const got = ours(model, batch);
  const want = await expected.logits;
  assert.equal(got.logits.length, want.length, `${what}: logits`);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    worst = Math.max(worst, Math.abs(got.logits[i]! - want[i]!));
  }
  assert.ok(worst <= TOLERANCE * scale, `${what}: logits differ by ${worst} (largest logit ${scale})`);
  assert.equal(got.tokens, expected.tokens);
  assert.ok(Math.abs(got.loss - expected.loss) <= TOLERANCE * expected.loss, `${what}: loss ${got.loss} vs ${expected.loss}`);
  return { worst: worst / scale, loss: got.loss };
}

test("the model computes what transformers' IDEFICS computes: logits and loss of a bridge batch against a NumPy copy of its code", {
  skip: !python && 'no python3 with numpy (.ci/run installs python3-numpy)',
}, async () => {
  await selectBackend('wasm');
  const dir = await mkdtemp(join(tmpdir(), 'm4-idefics-ref-'));
  try {
    const batch = await bridgeBatch();
    // The batch has what the comparison must cover: padding, tokens that see no image, several images per row.
    assert.ok(batch.attentionMask.includes(0) && batch.imageAttentionMask.filter((v) => v === 1).length > 20);
    await (await BatchDumpFolder.open(dir, { test: 'idefics-reference' })).write(0, batch);
    const base = modelPreset('tiny');
    // Random weights in the IDEFICS layout, in BF16 (both sides decode it, each its own way).
    const mappings = layoutMappings('idefics', base);
    const tensors = mappings.map((m) => ({ name: m.hf, dtype: 'BF16' as const, shape: m.hfShape, values: randomValues(m.hf, m.hfShape, 16) }));
    const random = await writeCheckpoint(join(dir, 'random'), tensors, { config: ideficsConfigJson(base), shards: 2 });
    const { config } = await initialModelConfig(base, [random]);
    const model = await createInitialModel(config, [random]);
    try {
      const before = await compare(model, batch, random, dir, 'random');
      // One training step moves every trainable weight (the added rows included); the export is read by NumPy.
      const trainer = new Trainer(model, resolveHyperParameters(await loadProfile('atum-9b'), 10, { learningRate: 1e-2, warmupSteps: 0, tokensPerStep: 128 }));
      trainer.accumulate(batch);
      trainer.update(0);
      trainer.dispose();
      await exportHf(model, join(dir, 'trained'));
      const after = await compare(model, batch, join(dir, 'trained'), dir, 'trained');
      assert.notEqual(after.loss, before.loss);
    } finally {
      model.dispose();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
