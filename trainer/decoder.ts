import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from './model-config.ts';
import { applyRotary, multiHeadAttention, perHead, rmsNorm, type Rotary } from './layers.ts';
import { frozenLinear, matmul } from './ops.ts';
import type { Weights } from './weights.ts';

/** What a gated cross-attention block attends to, per batch row. */
export interface VisualContext {
  /** Resampled latents of every image in the batch, in (row, slot) order: [images * latents, vision.dim]. */
  latents: tf.Tensor2D;
  /** Per row, its images' range in `latents` and its mask; null for a row with no image. */
  rows: (VisualRow | null)[];
}

export interface VisualRow {
  firstImage: number;
  images: number;
  /** [L, images * latents]: 0 where the token may attend to that image's latents, MASKED elsewhere. */
  bias: tf.Tensor2D;
  /** [L, 1]: 1 for a token that attends to some image, 0 for one that attends to none (its output is zeroed). */
  hasImage: tf.Tensor2D;
}

/** What every decoder layer of one forward pass shares. */
export interface SequenceLayout {
  rows: number;
  length: number;
  /**
   * Per row: rotary tables at the row's positions (`cumsum(attention_mask) - 1`, padding at 1, as transformers makes
   * them) and the self-attention bias (causal, padding keys masked).
   */
  perRow: { rotary: Rotary; bias: tf.Tensor2D }[];
}

const rowSlice = (t: tf.Tensor2D, row: number, length: number) => tf.slice(t, [row * length, 0], [length, t.shape[1]]);

/** One frozen LLaMA layer on [B*L, d]: RMSNorm, rotary attention, RMSNorm, SwiGLU; weights get no gradient. */
export function decoderLayer(weights: Weights, config: ModelConfig, layer: number, h: tf.Tensor2D, seq: SequenceLayout): tf.Tensor2D {
  const at = `language.layers.${layer}`;
  const eps = config.language.rmsNormEps;
  const linear = (x: tf.Tensor2D, name: string) => frozenLinear(x, weights.matrix(`${at}.${name}`));
  const a = rmsNorm(h, weights.get(`${at}.attn_norm`) as tf.Tensor1D, eps);
  const q = linear(a, 'wq');
  const k = linear(a, 'wk');
  const v = linear(a, 'wv');
  const attended = seq.perRow.map(({ rotary, bias }, row) =>
    multiHeadAttention(rowSlice(q, row, seq.length), rowSlice(k, row, seq.length), rowSlice(v, row, seq.length), config.language.heads, bias, (x) =>
      applyRotary(x, rotary),
    ),
  );
  h = tf.add(h, linear(seq.rows === 1 ? attended[0]! : (tf.concat(attended, 0) as tf.Tensor2D), 'wo'));
  const f = rmsNorm(h, weights.get(`${at}.ffn_norm`) as tf.Tensor1D, eps);
  return tf.add(h, linear(swiglu(linear(f, 'w_gate'), linear(f, 'w_up')), 'w_down'));
}

function swiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
}

/**
 * A trainable gated cross-attention block (transformers' `IdeficsGatedCrossAttentionLayer`):
 * `h + tanh(a) * xattn(RMSNorm(h), visual)`, then `h + tanh(b) * mlp(RMSNorm(h))`, at the decoder's width and heads,
 * with RMSNorm on q and k per head when `qkLayerNorms`. A token attends only to the latents of the images its mask
 * row allows; a token with none gets a zero cross-attention output (transformers' `cross_attention_gate`).
 */
export function gatedCrossAttention(
  weights: Weights,
  config: ModelConfig,
  layer: number,
  h: tf.Tensor2D,
  seq: SequenceLayout,
  visual: VisualContext | null,
): tf.Tensor2D {
  const at = `cross.${layer}`;
  const { heads, dim, rmsNormEps: eps } = config.language;
  const w = (name: string) => weights.get(`${at}.${name}`);
  const linear = (input: tf.Tensor2D, name: string) => matmul(input, w(name) as tf.Tensor2D);
  const qkNorm = (x: tf.Tensor2D, name: 'q_norm' | 'k_norm') =>
    config.crossAttention.qkLayerNorms ? perHead(x, heads, (r) => rmsNorm(r, w(name) as tf.Tensor1D, eps)) : x;
  if (visual) {
    const q = qkNorm(linear(rmsNorm(h, w('attn_norm') as tf.Tensor1D, eps), 'wq'), 'q_norm');
    const k = qkNorm(linear(visual.latents, 'wk'), 'k_norm');
    const v = linear(visual.latents, 'wv');
    const perImage = config.perceiver.latents;
    const attended = visual.rows.map((row, index) => {
      if (!row) return tf.zeros([seq.length, dim]) as tf.Tensor2D;
      const keys = tf.slice(k, [row.firstImage * perImage, 0], [row.images * perImage, dim]);
      const values = tf.slice(v, [row.firstImage * perImage, 0], [row.images * perImage, dim]);
      return tf.mul(multiHeadAttention(rowSlice(q, index, seq.length), keys, values, heads, row.bias), row.hasImage) as tf.Tensor2D;
    });
    const out = linear(attended.length === 1 ? attended[0]! : (tf.concat(attended, 0) as tf.Tensor2D), 'wo');
    h = tf.add(h, tf.mul(tf.tanh(w('gate_attn')), out));
  }
  const f = rmsNorm(h, w('ffn_norm') as tf.Tensor1D, eps);
  const dense = linear(swiglu(linear(f, 'w_gate'), linear(f, 'w_up')), 'w_down');
  return tf.add(h, tf.mul(tf.tanh(w('gate_ffn')), dense));
}
