import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../trainer/backend.ts';
import { MASKED, perHead, rmsNorm, visionActivation } from '../trainer/layers.ts';
import { modelPreset, type ModelConfig } from '../trainer/model-config.ts';
import { AtumModel } from '../trainer/model.ts';
import { matmul } from '../trainer/ops.ts';
import { parameterSpecs } from '../trainer/parameters.ts';
import { encodeImages } from '../trainer/vision-encoder.ts';
import { Weights } from '../trainer/weights.ts';
import type { Batch } from '../trainer-bridge/batch.ts';
import { BOS, FAKE_TOKEN_AROUND_IMAGE, IMAGE_TOKEN } from '../trainer-bridge/token-layout.ts';

// Each component IDEFICS has and the trainer once lacked, against values worked out by hand.
await selectBackend('wasm');
const close = (actual: number, expected: number, tolerance = 1e-6) =>
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)), `${actual} != ${expected}`);
const rowsOf = (t: tf.Tensor) => (t.arraySync() as number[][]).map((r) => [...r]);

/** A ViT of width 2 on 2 x 2 images with 1-pixel patches (4 patches and the class token), every weight given. */
function microConfig(): ModelConfig {
  return {
    name: 'micro',
    vision: { imageSize: 2, patchSize: 1, dim: 2, layers: 1, heads: 1, mlpDim: 2, activation: 'gelu', layerNormEps: 1e-5 },
    perceiver: { layers: 0, latents: 1, heads: 1, headDim: 2, qkLayerNorms: false },
    language: { vocabSize: 4, addedTokens: 2, dim: 2, layers: 0, heads: 1, ffnDim: 2, rmsNormEps: 1e-6 },
    crossAttention: { interval: 1, qkLayerNorms: true },
    seed: 1,
  };
}

test('vision: the class token first, learned positions for all 5 tokens, pre-LayerNorm, biases on out and fc2, exact GELU; no final norm', async () => {
  const config = microConfig();
  const given: Record<string, number[]> = {
    'vision.class_embedding': [3, -1],
    // patch @ W keeps channel 0 as the first feature: a patch of pixel value v embeds as [v, 0].
    'vision.patch_embed': [1, 0, 0, 0, 0, 0],
    'vision.pos_embed': [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
    'vision.pre_norm.gain': [2, 1],
    'vision.pre_norm.bias': [0.5, -0.5],
    // Zero q, k, v matrices: every query sees equal scores, the output is bv @ Wo + bo = bo.
    'vision.layers.0.bv': [7, 7],
    'vision.layers.0.bo': [0.25, -0.125],
    // Zero fc1: its output is b1 whatever the input; fc2 = I: the block adds gelu(b1) + b2.
    'vision.layers.0.b1': [1, -1],
    'vision.layers.0.fc2': [1, 0, 0, 1],
    'vision.layers.0.b2': [0.5, 0.5],
  };
  const zeros = (name: string) =>
    parameterSpecs(config)
      .find((s) => s.name === name)!
      .shape.reduce((a, b) => a * b, 1);
  const weights = await Weights.create(config, {
    has: (name) => name.startsWith('vision.'),
    read: async (name) => Float32Array.from(given[name] ?? (name.endsWith('.gain') ? [1, 1] : Array(zeros(name)).fill(0))),
  });
  // Channel 0 of the image is [[1, 2], [3, 4]] in raster order; channels 1 and 2 are ignored by the patch matrix.
  const pixels = Float32Array.from([1, 2, 3, 4, 9, 9, 9, 9, -9, -9, -9, -9]);
  const out = encodeImages(weights, config, pixels, [0]);
  // Pre-LayerNorm of [a, b]: +-(a - b)/2 / sqrt(((a - b)/2)^2 + eps), times the gain, plus the bias.
  const preNorm = ([a, b]: number[]) => {
    const n = (a! - b!) / 2 / Math.sqrt(((a! - b!) / 2) ** 2 + 1e-5);
    return [2 * n + 0.5, -n - 0.5];
  };
  const gelu = [0.8413447460685429, -0.15865525393145707]; // x * Phi(x) at 1 and -1
  const tokens = [
    [3, -1],
    [1, 0],
    [2, 1],
    [3, 0],
    [4, 0],
  ]; // class; patches (0,0), (0,1) + its position, (1,0), (1,1)
  const expected = tokens.map((t) => preNorm(t).map((v, j) => v + [0.25, -0.125][j]! + gelu[j]! + 0.5));
  rowsOf(out).forEach((row, i) => row.forEach((v, j) => close(v, expected[i]![j]!, 1e-5)));
  tf.dispose(out);
  weights.dispose();
});

test('GELU is the exact erf form (CLIP ViT-H/14), not quick-GELU', () => {
  const x = tf.tensor2d([[-1, 0, 0.5, 2]]);
  const exact = visionActivation(x, 'gelu').dataSync();
  [-0.15865525393145707, 0, 0.34573123063700656, 1.9544997361036416].forEach((v, i) => close(exact[i]!, v, 1e-6));
  // quick-GELU at 1 is sigmoid(1.702) = 0.8457957, 4e-3 away from the exact 0.8413447.
  close(visionActivation(tf.tensor2d([[1]]), 'quick_gelu').dataSync()[0]!, 1 / (1 + Math.exp(-1.702)), 1e-6);
  x.dispose();
});

test('cross-attention q/k norm: RMSNorm per head, weight only, at the config eps (1e-6 and 1e-5 give different values)', () => {
  const x = tf.tensor2d([[3, 4, 1e-3, 1e-3]]);
  const weight = tf.tensor1d([2, 0.5]);
  const at = (eps: number) => perHead(x, 2, (r) => rmsNorm(r, weight, eps)).dataSync();
  const loose = at(1e-5);
  const tight = at(1e-6);
  // Head 1: [3, 4] / sqrt(12.5 + eps); head 2: [1e-3, 1e-3] / sqrt(1e-6 + eps), times [2, 0.5].
  [6 / Math.sqrt(12.5 + 1e-6), 2 / Math.sqrt(12.5 + 1e-6), 2e-3 / Math.sqrt(2e-6), 0.5e-3 / Math.sqrt(2e-6)].forEach((v, i) => close(tight[i]!, v, 1e-5));
  close(loose[2]!, 2e-3 / Math.sqrt(1.1e-5), 1e-5);
  // The model's q/k norms are that: one [head dim] weight each, no bias.
  const names = parameterSpecs(modelPreset('tiny')).filter((s) => /^cross\.0\.[qk]_norm/.test(s.name));
  assert.deepEqual(
    names.map((s) => [s.name, s.shape]),
    [
      ['cross.0.q_norm', [16]],
      ['cross.0.k_norm', [16]],
    ],
  );
  tf.dispose([x, weight]);
});

/** One row of `ids` with the attention mask's trailing zeros as padding, no images. */
function textBatch(ids: number[], mask: number[]): Batch {
  const L = ids.length;
  return {
    batchSize: 1,
    seqLen: L,
    maxImages: 1,
    inputIds: Int32Array.from(ids),
    attentionMask: Int32Array.from(mask),
    labels: Int32Array.from(ids.map((id, t) => (mask[t] ? id : -100))),
    pixelValues: new Float32Array(3 * 224 * 224),
    imageAttentionMask: new Int8Array(L),
    stats: { tokensBySource: {}, imagesBySource: {}, paddingTokens: mask.filter((m) => m === 0).length },
  };
}

test('decoupled embedding: an added token is its trained row, an ordinary one its frozen row, bit for bit', async () => {
  const model = await AtumModel.create(modelPreset('tiny'));
  const prepared = model.prepare(textBatch([BOS, 319, FAKE_TOKEN_AROUND_IMAGE, IMAGE_TOKEN], [1, 1, 1, 1]));
  const rows = tf.tidy(() => tf.add(prepared.embeddings, matmul(prepared.addedOneHot!, model.weights.get('language.embed_added') as tf.Tensor2D)).dataSync());
  const embed = model.weights.get('language.embed').dataSync();
  const added = model.weights.get('language.embed_added').dataSync();
  assert.deepEqual(rows.subarray(64, 128), embed.subarray(319 * 64, 320 * 64));
  assert.deepEqual(rows.subarray(128, 192), added.subarray(0, 64));
  assert.deepEqual(rows.subarray(192, 256), added.subarray(64, 128));
  prepared.dispose();
  model.dispose();
});

test('positions are cumsum(attention_mask) - 1 (padding at 1) and padding keys are masked: padding changes nothing for real tokens', async () => {
  const model = await AtumModel.create(modelPreset('tiny'));
  const ids = [BOS, 319, 6635, 0, 0];
  const padded = model.prepare(textBatch(ids, [1, 1, 1, 0, 0]));
  const { rotary, bias } = padded.sequence.perRow[0]!;
  const M = MASKED;
  assert.deepEqual(
    rowsOf(bias),
    [
      [0, M, M, M, M],
      [0, 0, M, M, M],
      [0, 0, 0, M, M],
      [0, 0, 0, M, M],
      [0, 0, 0, M, M],
    ].map((r) => r.map((v) => Math.fround(v))),
  );
  const whole = model.prepare(textBatch([...ids.slice(0, 3), 1000, 1001], [1, 1, 1, 1, 1]));
  const table = rowsOf(whole.sequence.perRow[0]!.rotary.cos);
  assert.deepEqual(
    rowsOf(rotary.cos),
    [0, 1, 2, 1, 1].map((p) => table[p]),
  );
  // The real tokens' logits do not depend on what fills the padding, bit for bit.
  const other = model.prepare(textBatch([BOS, 319, 6635, 5000, IMAGE_TOKEN], [1, 1, 1, 0, 0]));
  const logits = (p: typeof padded) => {
    const t = model.logits(p);
    const values = t.dataSync().slice(0, 3 * 32002);
    t.dispose();
    return values;
  };
  assert.deepEqual(logits(other), logits(padded));
  // And they equal those of the same three tokens with no padding at all (another sequence length: float32 rounding).
  const short = model.prepare(textBatch(ids.slice(0, 3), [1, 1, 1]));
  const a = logits(short);
  const b = logits(padded);
  a.forEach((v, i) => close(v, b[i]!, 1e-5));
  for (const p of [padded, whole, other, short]) p.dispose();
  model.dispose();
});
