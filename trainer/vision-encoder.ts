import * as tf from '@tensorflow/tfjs';
import { visionTokensPerImage, type ModelConfig } from './model-config.ts';
import { layerNorm, multiHeadAttention, visionActivation, type LayerNormWeights } from './layers.ts';
import type { Weights } from './weights.ts';

/**
 * The frozen ViT, IDEFICS's `IdeficsVisionTransformer` (CLIP's vision tower), run outside the gradient tape (nothing
 * before it trains): patch embedding without bias, the class token prepended, learned positions for all
 * `patches + 1` tokens, `pre_layrnorm`, then pre-norm blocks with biases on q, k, v, out, fc1 and fc2 and the
 * config's activation. The output is `last_hidden_state`, every token with the class token first: CLIP's
 * post-LayerNorm touches only the pooled class token, which IDEFICS does not use.
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

/** Vision tokens [images * (patches + 1), vision.dim] of the images starting at `imageOffsets` in `pixels`. */
export function encodeImages(weights: Weights, config: ModelConfig, pixels: Float32Array, imageOffsets: readonly number[]): tf.Tensor2D {
  const v = config.vision;
  const count = imageOffsets.length;
  const tokens = visionTokensPerImage(config);
  return tf.tidy(() => {
    const patches = patchify(pixels, imageOffsets, v.imageSize, v.patchSize);
    const embedded = tf.reshape(tf.matMul(patches, weights.get('vision.patch_embed') as tf.Tensor2D), [count, tokens - 1, v.dim]);
    const classTokens = tf.broadcastTo(tf.reshape(weights.get('vision.class_embedding'), [1, 1, v.dim]), [count, 1, v.dim]);
    const positioned = tf.add(tf.concat([classTokens, embedded], 1), weights.get('vision.pos_embed'));
    const norm = (name: string): LayerNormWeights => ({ gain: weights.get(`${name}.gain`) as tf.Tensor1D, bias: weights.get(`${name}.bias`) as tf.Tensor1D });
    const layerNormOf = (input: tf.Tensor2D, name: string) => layerNorm(input, norm(name), v.layerNormEps);
    const linear = (input: tf.Tensor2D, weight: string, bias: string): tf.Tensor2D =>
      tf.add(tf.matMul(input, weights.get(weight) as tf.Tensor2D), weights.get(bias));
    let x = layerNormOf(tf.reshape(positioned, [count * tokens, v.dim]) as tf.Tensor2D, 'vision.pre_norm');
    for (let i = 0; i < v.layers; i++) {
      const at = `vision.layers.${i}`;
      const h = layerNormOf(x, `${at}.ln1`);
      const q = linear(h, `${at}.wq`, `${at}.bq`);
      const k = linear(h, `${at}.wk`, `${at}.bk`);
      const val = linear(h, `${at}.wv`, `${at}.bv`);
      const rows = (t: tf.Tensor2D, image: number) => tf.slice(t, [image * tokens, 0], [tokens, v.dim]);
      const attended = Array.from({ length: count }, (_, image) => multiHeadAttention(rows(q, image), rows(k, image), rows(val, image), v.heads, null));
      x = tf.add(x, linear(count === 1 ? attended[0]! : tf.concat(attended, 0), `${at}.wo`, `${at}.bo`));
      const up = linear(layerNormOf(x, `${at}.ln2`), `${at}.fc1`, `${at}.b1`);
      x = tf.add(x, linear(visionActivation(up, v.activation), `${at}.fc2`, `${at}.b2`));
    }
    return x;
  });
}
