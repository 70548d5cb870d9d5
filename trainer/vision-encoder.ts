import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from './model-config.ts';
import { layerNorm, multiHeadAttention, type LayerNormWeights } from './layers.ts';
import type { Weights } from './weights.ts';

/**
 * The frozen ViT, run outside the gradient tape (nothing before it trains). Pre-norm blocks with quick-GELU as in
 * CLIP, without CLIP's class token and biases: every patch's features go to the resampler.
 */

/** [images * patches, 3 * patch * patch]: each image's patches in raster order, each patch flattened channel-major. */
export function patchify(pixels: Float32Array, imageOffsets: readonly number[], imageSize: number, patchSize: number): tf.Tensor2D {
  const side = imageSize / patchSize;
  const patchWidth = 3 * patchSize * patchSize;
  const plane = imageSize * imageSize;
  const out = new Float32Array(imageOffsets.length * side * side * patchWidth);
  let at = 0;
  for (const offset of imageOffsets) {
    for (let py = 0; py < side; py++) {
      for (let px = 0; px < side; px++) {
        for (let c = 0; c < 3; c++) {
          for (let iy = 0; iy < patchSize; iy++) {
            const rowStart = offset + c * plane + (py * patchSize + iy) * imageSize + px * patchSize;
            out.set(pixels.subarray(rowStart, rowStart + patchSize), at);
            at += patchSize;
          }
        }
      }
    }
  }
  return tf.tensor2d(out, [imageOffsets.length * side * side, patchWidth]);
}

/** Patch features [images * patches, vision.dim] of the images starting at `imageOffsets` in `pixels`. */
export function encodeImages(weights: Weights, config: ModelConfig, pixels: Float32Array, imageOffsets: readonly number[]): tf.Tensor2D {
  const v = config.vision;
  const count = imageOffsets.length;
  return tf.tidy(() => {
    const patches = patchify(pixels, imageOffsets, v.imageSize, v.patchSize);
    const perImage = patches.shape[0] / count;
    const embedded = tf.matMul(patches, weights.get('vision.patch_embed') as tf.Tensor2D);
    let x = tf.reshape(tf.add(tf.reshape(embedded, [count, perImage, v.dim]), weights.get('vision.pos_embed')), [count * perImage, v.dim]) as tf.Tensor2D;
    const norm = (name: string): LayerNormWeights => ({ gain: weights.get(`${name}.gain`) as tf.Tensor1D, bias: weights.get(`${name}.bias`) as tf.Tensor1D });
    const linear = (input: tf.Tensor2D, name: string): tf.Tensor2D => tf.matMul(input, weights.get(name) as tf.Tensor2D);
    for (let i = 0; i < v.layers; i++) {
      const at = `vision.layers.${i}`;
      const h = layerNorm(x, norm(`${at}.ln1`));
      const q = linear(h, `${at}.wq`);
      const k = linear(h, `${at}.wk`);
      const val = linear(h, `${at}.wv`);
      const rows = (t: tf.Tensor2D, image: number) => tf.slice(t, [image * perImage, 0], [perImage, v.dim]);
      const attended = Array.from({ length: count }, (_, image) => multiHeadAttention(rows(q, image), rows(k, image), rows(val, image), v.heads, null));
      x = tf.add(x, linear(count === 1 ? attended[0]! : tf.concat(attended, 0), `${at}.wo`));
      const up = linear(layerNorm(x, norm(`${at}.ln2`)), `${at}.fc1`);
      x = tf.add(x, linear(tf.mul(up, tf.sigmoid(tf.mul(up, 1.702))), `${at}.fc2`));
    }
    return layerNorm(x, norm('vision.final_norm'));
  });
}
