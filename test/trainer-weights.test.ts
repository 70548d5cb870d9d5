import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { isM4Error } from '../core/errors.ts';
import { loadProfile } from '../mixer/profile.ts';
import { selectBackend } from '../trainer/backend.ts';
import { MODEL_PRESETS, flopsPerToken, modelPreset, parameterCounts } from '../trainer/model-config.ts';
import { AtumModel } from '../trainer/model.ts';
import { elementCount, parameterSpecs } from '../trainer/parameters.ts';
import { openSafetensors, writeSafetensorsFile } from '../trainer/safetensors.ts';
import { withTempDir } from './helpers/temp-dir.ts';

await selectBackend('cpu');

const withDir = <T>(fn: (dir: string) => Promise<T>) => withTempDir('m4-trainer-weights-', fn);

/** A safetensors file by hand: header length, JSON header, then raw bytes. */
function rawSafetensors(header: Record<string, unknown>, data: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

test('safetensors: F32 written and read back, F16 and BF16 decoded, metadata kept', async () => {
  await withDir(async (dir) => {
    const path = join(dir, 'a.safetensors');
    const values = new Float32Array([1.5, -2.25, 3e-3, 0, 7, 8]);
    await writeSafetensorsFile(path, [{ name: 'x', shape: [2, 3], data: values }], { note: 'hi' });
    const file = await openSafetensors(path);
    assert.deepEqual(file.entries.get('x')?.shape, [2, 3]);
    assert.deepEqual(file.metadata, { note: 'hi' });
    assert.deepEqual([...(await file.read('x'))], [...values]);
    await file.close();

    // 1.5 as F16 is 0x3E00, -2 is 0xC000, 2^-24 (the smallest subnormal) is 0x0001; 1.5 as BF16 is 0x3FC0.
    const half = Buffer.alloc(6);
    [0x3e00, 0xc000, 0x0001].forEach((h, i) => half.writeUInt16LE(h, 2 * i));
    const brain = Buffer.alloc(4);
    [0x3fc0, 0xc0a0].forEach((h, i) => brain.writeUInt16LE(h, 2 * i));
    const mixed = join(dir, 'b.safetensors');
    await writeFile(
      mixed,
      rawSafetensors(
        { h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] }, b: { dtype: 'BF16', shape: [2], data_offsets: [6, 10] } },
        Buffer.concat([half, brain]),
      ),
    );
    const decoded = await openSafetensors(mixed);
    assert.deepEqual([...(await decoded.read('h'))], [1.5, -2, 2 ** -24]);
    assert.deepEqual([...(await decoded.read('b'))], [1.5, -5]);
    await decoded.close();

    const broken = join(dir, 'c.safetensors');
    await writeFile(broken, rawSafetensors({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8)));
    await assert.rejects(openSafetensors(broken), (err) => isM4Error(err, 'E_INPUT'));
  });
});

test('parameter counts on paper equal the specs the model allocates, for every preset; the card sizes come out near 9B and 80B', async () => {
  for (const name of Object.keys(MODEL_PRESETS)) {
    const config = modelPreset(name);
    const specs = parameterSpecs(config);
    const counts = parameterCounts(config);
    const sum = (trainable: boolean) => specs.filter((s) => s.trainable === trainable).reduce((a, s) => a + elementCount(s.shape), 0);
    assert.equal(counts.trainable, sum(true), `${name} trainable`);
    assert.equal(counts.frozen, sum(false), `${name} frozen`);
  }
  const nine = parameterCounts(modelPreset('atum-9b'));
  const eighty = parameterCounts(modelPreset('atum-80b'));
  // The card's 8.9B and 80B; the trainable part includes the 2 added rows of the embedding and of the head.
  assert.equal((nine.total / 1e9).toFixed(1), '8.9');
  assert.equal(Math.round(eighty.total / 1e9), 80);
  assert.equal(nine.addedTokens, 2 * 2 * 4096);
  assert.equal(nine.trainable, nine.perceiver + nine.crossAttention + nine.addedTokens);
  // The card's shapes take the resampler and cross-attention interval from a profile's model table (data), not code.
  const profile = await loadProfile('atum-9b');
  assert.deepEqual(modelPreset('atum-9b', profile.model), modelPreset('atum-9b'), 'the presets agree with the draft card');
  const other = modelPreset('atum-9b', { ...profile.model, perceiver: { layers: 2, latents: 32, heads: 8, headDim: 64 }, crossLayerInterval: 8 });
  assert.deepEqual(
    [other.perceiver.layers, other.perceiver.latents, other.perceiver.heads, other.perceiver.headDim, other.crossAttention.interval],
    [2, 32, 8, 64, 8],
  );
  assert.deepEqual(modelPreset('tiny', profile.model), modelPreset('tiny'), 'tiny keeps its own sizes');
  const tiny = modelPreset('tiny');
  const model = await AtumModel.create(tiny);
  let allocated = 0;
  for (const t of [...model.weights.frozen.values(), ...model.weights.trainable.values()]) allocated += t.size;
  assert.equal(allocated, parameterCounts(tiny).total);
  model.dispose();
  // Training FLOPs per text token of the frozen decoder alone are at least 4 per frozen weight of the 7B decoder.
  assert.ok(flopsPerToken(modelPreset('atum-9b'), { seqLen: 1024, imagesPerToken: 0 }).perTextToken > 4 * 6.4e9);
  assert.equal(tf.memory().numTensors, 0);
});
