import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from './model-config.ts';
import { layerNorm, multiHeadAttention, perHead, type LayerNormWeights } from './layers.ts';
import { matmul } from './ops.ts';
import type { Weights } from './weights.ts';

/**
 * The trainable Perceiver resampler (transformers' `IdeficsPerceiverResampler`): per layer, the latents attend to the
 * image's vision tokens (class token included) concatenated with the latents themselves, optionally with LayerNorm on
 * the projected queries and keys per head (the card's stability fix, `qk_layer_norms_perceiver`), then a ReLU MLP of
 * 4x the vision width; a final LayerNorm. Every LayerNorm here has PyTorch's default eps. Returns
 * [images * latents, vision.dim].
 */
export function resample(weights: Weights, config: ModelConfig, features: tf.Tensor2D, images: number): tf.Tensor2D {
  const { latents: count, heads } = config.perceiver;
  const tokens = features.shape[0] / images;
  const latentsWeight = weights.get('perceiver.latents') as tf.Tensor2D;
  let latents =
    images === 1
      ? latentsWeight
      : (tf.concat(
          Array.from({ length: images }, () => latentsWeight),
          0,
        ) as tf.Tensor2D);
  const norm = (name: string): LayerNormWeights => ({ gain: weights.get(`${name}.gain`) as tf.Tensor1D, bias: weights.get(`${name}.bias`) as tf.Tensor1D });
  const linear = (x: tf.Tensor2D, name: string) => matmul(x, weights.get(name) as tf.Tensor2D);
  const rows = (t: tf.Tensor2D, start: number, length: number) => tf.slice(t, [start, 0], [length, t.shape[1]]);
  for (let i = 0; i < config.perceiver.layers; i++) {
    const at = `perceiver.layers.${i}`;
    const context = layerNorm(features, norm(`${at}.context_norm`));
    const normed = layerNorm(latents, norm(`${at}.latents_norm`));
    const qkNorm = (x: tf.Tensor2D, name: 'q_norm' | 'k_norm') =>
      config.perceiver.qkLayerNorms ? perHead(x, heads, (r) => layerNorm(r, norm(`${at}.${name}`))) : x;
    const q = qkNorm(linear(normed, `${at}.wq`), 'q_norm');
    const kContext = qkNorm(linear(context, `${at}.wk`), 'k_norm');
    const kLatents = qkNorm(linear(normed, `${at}.wk`), 'k_norm');
    const vContext = linear(context, `${at}.wv`);
    const vLatents = linear(normed, `${at}.wv`);
    const attended: tf.Tensor2D[] = [];
    for (let image = 0; image < images; image++) {
      const keys = tf.concat([rows(kContext, image * tokens, tokens), rows(kLatents, image * count, count)], 0) as tf.Tensor2D;
      const values = tf.concat([rows(vContext, image * tokens, tokens), rows(vLatents, image * count, count)], 0) as tf.Tensor2D;
      attended.push(multiHeadAttention(rows(q, image * count, count), keys, values, heads, null));
    }
    latents = tf.add(latents, linear(images === 1 ? attended[0]! : (tf.concat(attended, 0) as tf.Tensor2D), `${at}.wo`));
    const hidden = tf.relu(linear(layerNorm(latents, norm(`${at}.mlp_norm`)), `${at}.fc1`));
    latents = tf.add(latents, linear(hidden, `${at}.fc2`));
  }
  return layerNorm(latents, norm('perceiver.final_norm'));
}
