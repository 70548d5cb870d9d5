import * as tf from '@tensorflow/tfjs';
import type { VisionActivation } from './model-config.ts';
import { matmul, matmulNT } from './ops.ts';

/**
 * Additive attention bias for a masked-out key: float32's lowest value, as transformers masks (`torch.finfo.min`).
 * A score plus it rounds to it, so a query whose every key is masked gets the same uniform softmax as in PyTorch.
 */
export const MASKED = -3.4028234663852886e38;

/** nn.LayerNorm's default eps (IDEFICS's resampler; CLIP's comes from its config, also 1e-5). */
const LAYER_NORM_EPS = 1e-5;

/** RMSNorm (LLaMA, IdeficsRMSNorm) over the last axis of [T, d]: `weight * x / sqrt(mean(x^2) + eps)`. */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  const scale = tf.rsqrt(tf.add(tf.mean(tf.square(x), 1, true), eps));
  return tf.mul(tf.mul(x, scale), weight);
}

export interface LayerNormWeights {
  gain: tf.Tensor1D;
  bias: tf.Tensor1D;
}

/** LayerNorm over the last axis of [T, d]. */
export function layerNorm(x: tf.Tensor2D, weights: LayerNormWeights, eps = LAYER_NORM_EPS): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, 1, true);
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  return tf.add(tf.mul(normed, weights.gain), weights.bias);
}

/** A norm applied to each head's slice of [T, heads * headDim], with one weight shared by the heads (qk-norm). */
export function perHead(x: tf.Tensor2D, heads: number, norm: (rows: tf.Tensor2D) => tf.Tensor2D): tf.Tensor2D {
  const [rows, width] = x.shape;
  return tf.reshape(norm(tf.reshape(x, [rows * heads, width / heads])), [rows, width]);
}

/** GELU as PyTorch's `gelu` computes it, with erf (CLIP ViT-H/14's `hidden_act`); `quick_gelu` is OpenAI CLIP's. */
export function visionActivation(x: tf.Tensor2D, kind: VisionActivation): tf.Tensor2D {
  if (kind === 'quick_gelu') return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** Columns [h * headDim, (h + 1) * headDim) of [T, heads * headDim]. */
export function headSlice(x: tf.Tensor2D, head: number, headDim: number): tf.Tensor2D {
  return tf.slice(x, [0, head * headDim], [x.shape[0], headDim]);
}

/** Rotary tables at one head width: cos and sin, [positions, headDim], LLaMA's half-split layout. */
export interface Rotary {
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
}

/**
 * IDEFICS's rotary tables for positions 0..length-1, computed in float32 step by step as `IdeficsEmbedding` does
 * (inverse frequencies, then position x frequency, then cos and sin), so angles near 1,000 round as in PyTorch.
 */
export function rotaryTables(length: number, headDim: number, theta: number): Rotary {
  const f = Math.fround;
  const half = headDim / 2;
  const cos = new Float32Array(length * headDim);
  const sin = new Float32Array(length * headDim);
  for (let i = 0; i < half; i++) {
    const inverse = f(1 / f(theta ** f((2 * i) / headDim)));
    for (let p = 0; p < length; p++) {
      const angle = f(p * inverse);
      for (const j of [i, i + half]) {
        cos[p * headDim + j] = Math.cos(angle);
        sin[p * headDim + j] = Math.sin(angle);
      }
    }
  }
  return { cos: tf.tensor2d(cos, [length, headDim]), sin: tf.tensor2d(sin, [length, headDim]) };
}

/** `x * cos + rotate_half(x) * sin` for one head's [L, headDim]. */
export function applyRotary(x: tf.Tensor2D, rotary: Rotary): tf.Tensor2D {
  const [rows, width] = x.shape;
  const half = width / 2;
  const rotated = tf.concat([tf.neg(tf.slice(x, [0, half], [rows, half])), tf.slice(x, [0, 0], [rows, half])], 1);
  return tf.add(tf.mul(x, rotary.cos), tf.mul(rotated, rotary.sin));
}

/**
 * Multi-head attention as a loop of 2-D matmuls (batched matmuls are slow on wasm). q is [Tq, H*hd], k and v
 * [Tk, H*hd]; `bias` [Tq, Tk] is added to the scores (0 or MASKED); `prepare` transforms each head's q and k (rotary).
 */
export function multiHeadAttention(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  heads: number,
  bias: tf.Tensor2D | null,
  prepare?: (x: tf.Tensor2D) => tf.Tensor2D,
): tf.Tensor2D {
  const headDim = q.shape[1] / heads;
  const scale = 1 / Math.sqrt(headDim);
  const outputs: tf.Tensor2D[] = [];
  for (let h = 0; h < heads; h++) {
    let qh = headSlice(q, h, headDim);
    let kh = headSlice(k, h, headDim);
    if (prepare) {
      qh = prepare(qh);
      kh = prepare(kh);
    }
    let scores: tf.Tensor2D = tf.mul(matmulNT(qh, kh), scale);
    if (bias) scores = tf.add(scores, bias);
    outputs.push(matmul(tf.softmax(scores), headSlice(v, h, headDim)));
  }
  return heads === 1 ? outputs[0]! : tf.concat(outputs, 1);
}

/**
 * [L, L] self-attention bias of one row: 0 where query i may see key j (j <= i and j is not padding), MASKED
 * elsewhere, as transformers combines the causal mask with `attention_mask`. All keys real: the plain causal mask.
 */
export function causalBias(length: number, attentionMask?: ArrayLike<number>): tf.Tensor2D {
  const values = new Float32Array(length * length);
  for (let i = 0; i < length; i++) {
    for (let j = 0; j < length; j++) if (j > i || (attentionMask && attentionMask[j] === 0)) values[i * length + j] = MASKED;
  }
  return tf.tensor2d(values, [length, length]);
}
