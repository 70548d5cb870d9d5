import * as tf from '@tensorflow/tfjs';
import { matmul, matmulNT } from './ops.ts';

/** Additive attention bias for a masked-out key: large enough that softmax gives it exactly 0 in float32. */
export const MASKED = -1e9;

const RMS_EPS = 1e-6;
const LAYER_NORM_EPS = 1e-5;

/** LLaMA's RMSNorm over the last axis of [T, d]. */
export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D): tf.Tensor2D {
  const scale = tf.rsqrt(tf.add(tf.mean(tf.square(x), 1, true), RMS_EPS));
  return tf.mul(tf.mul(x, scale), weight);
}

export interface LayerNormWeights {
  gain: tf.Tensor1D;
  bias: tf.Tensor1D;
}

/** LayerNorm over the last axis of [T, d]. */
export function layerNorm(x: tf.Tensor2D, weights: LayerNormWeights): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, 1, true);
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LAYER_NORM_EPS)));
  return tf.add(tf.mul(normed, weights.gain), weights.bias);
}

/** LayerNorm of each head's slice of [T, heads * headDim], one gain and bias shared by the heads (qk-norm). */
export function headLayerNorm(x: tf.Tensor2D, heads: number, weights: LayerNormWeights): tf.Tensor2D {
  const [rows, width] = x.shape;
  return tf.reshape(layerNorm(tf.reshape(x, [rows * heads, width / heads]), weights), [rows, width]);
}

/** Columns [h * headDim, (h + 1) * headDim) of [T, heads * headDim]. */
export function headSlice(x: tf.Tensor2D, head: number, headDim: number): tf.Tensor2D {
  return tf.slice(x, [0, head * headDim], [x.shape[0], headDim]);
}

/** Rotary tables for positions 0..length-1 at one head width: cos and sin, [length, headDim], LLaMA's half-split layout. */
export interface Rotary {
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
}

export function rotaryTables(length: number, headDim: number, theta: number): Rotary {
  const half = headDim / 2;
  const cos = new Float32Array(length * headDim);
  const sin = new Float32Array(length * headDim);
  for (let p = 0; p < length; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p / theta ** ((2 * i) / headDim);
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

/** [L, L] causal bias: 0 on and below the diagonal, MASKED above. */
export function causalBias(length: number): tf.Tensor2D {
  const values = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) values[i * length + j] = MASKED;
  return tf.tensor2d(values, [length, length]);
}
