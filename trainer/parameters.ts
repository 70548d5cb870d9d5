import { crossLayerIndices, perceiverMlpDim, visionTokensPerImage, type ModelConfig } from './model-config.ts';

/** One weight of the model: its name (also its safetensors name), shape, whether it trains, and how it starts. */
export interface ParameterSpec {
  name: string;
  shape: number[];
  trainable: boolean;
  init: { kind: 'normal'; std: number } | { kind: 'ones' } | { kind: 'zeros' };
}

const ones = { kind: 'ones' } as const;
const zeros = { kind: 'zeros' } as const;
const normal = (std: number) => ({ kind: 'normal', std }) as const;
/** A matrix [in, out] initialised to keep activations near unit scale. */
const matrix = (name: string, rows: number, cols: number, trainable: boolean): ParameterSpec => ({
  name,
  shape: [rows, cols],
  trainable,
  init: normal(1 / Math.sqrt(rows)),
});
const bias = (name: string, width: number): ParameterSpec => ({ name, shape: [width], trainable: false, init: zeros });
/** transformers' initialisation of the added-token rows (`_init_weights`: normal, std `initializer_range`). */
const ADDED_INIT_STD = 0.02;
const layerNormSpecs = (name: string, width: number, trainable: boolean): ParameterSpec[] => [
  { name: `${name}.gain`, shape: [width], trainable, init: ones },
  { name: `${name}.bias`, shape: [width], trainable, init: zeros },
];

/**
 * Every weight, in a fixed order: those of transformers' `IdeficsForVisionText2Text` (see `hf/names.ts` for the
 * mapping to its names). Matrices are stored [in, out] (the transpose of PyTorch's Linear.weight), so a layer is
 * `x @ W`. Frozen: `vision.*` and `language.*` but the added-token rows; trainable: `perceiver.*`, `cross.*`,
 * `language.embed_added` and `language.lm_head_added`.
 */
export function parameterSpecs(config: ModelConfig): ParameterSpec[] {
  const v = config.vision;
  const p = config.perceiver;
  const l = config.language;
  const specs: ParameterSpec[] = [];
  specs.push({ name: 'vision.class_embedding', shape: [v.dim], trainable: false, init: normal(1) });
  specs.push(matrix('vision.patch_embed', 3 * v.patchSize * v.patchSize, v.dim, false));
  specs.push({ name: 'vision.pos_embed', shape: [visionTokensPerImage(config), v.dim], trainable: false, init: normal(0.1) });
  specs.push(...layerNormSpecs('vision.pre_norm', v.dim, false));
  for (let i = 0; i < v.layers; i++) {
    const at = `vision.layers.${i}`;
    specs.push(...layerNormSpecs(`${at}.ln1`, v.dim, false));
    for (const w of ['q', 'k', 'v', 'o']) specs.push(matrix(`${at}.w${w}`, v.dim, v.dim, false), bias(`${at}.b${w}`, v.dim));
    specs.push(...layerNormSpecs(`${at}.ln2`, v.dim, false));
    specs.push(matrix(`${at}.fc1`, v.dim, v.mlpDim, false), bias(`${at}.b1`, v.mlpDim));
    specs.push(matrix(`${at}.fc2`, v.mlpDim, v.dim, false), bias(`${at}.b2`, v.dim));
  }
  // CLIP's post-LayerNorm touches only the pooled class token, which IDEFICS does not use: carried for the checkpoints.
  specs.push(...layerNormSpecs('vision.post_norm', v.dim, false));

  const inner = p.heads * p.headDim;
  specs.push({ name: 'perceiver.latents', shape: [p.latents, v.dim], trainable: true, init: normal(1) });
  for (let i = 0; i < p.layers; i++) {
    const at = `perceiver.layers.${i}`;
    specs.push(...layerNormSpecs(`${at}.context_norm`, v.dim, true), ...layerNormSpecs(`${at}.latents_norm`, v.dim, true));
    for (const w of ['wq', 'wk', 'wv']) specs.push(matrix(`${at}.${w}`, v.dim, inner, true));
    specs.push(matrix(`${at}.wo`, inner, v.dim, true));
    if (p.qkLayerNorms) specs.push(...layerNormSpecs(`${at}.q_norm`, p.headDim, true), ...layerNormSpecs(`${at}.k_norm`, p.headDim, true));
    specs.push(...layerNormSpecs(`${at}.mlp_norm`, v.dim, true));
    specs.push(matrix(`${at}.fc1`, v.dim, perceiverMlpDim(config), true), matrix(`${at}.fc2`, perceiverMlpDim(config), v.dim, true));
  }
  specs.push(...layerNormSpecs('perceiver.final_norm', v.dim, true));

  specs.push({ name: 'language.embed', shape: [l.vocabSize, l.dim], trainable: false, init: normal(1) });
  // The added tokens' rows train (IdeficsDecoupledEmbedding); transformers initialises them normal(0, 0.02).
  specs.push({ name: 'language.embed_added', shape: [l.addedTokens, l.dim], trainable: true, init: normal(ADDED_INIT_STD) });
  for (let i = 0; i < l.layers; i++) {
    const at = `language.layers.${i}`;
    specs.push({ name: `${at}.attn_norm`, shape: [l.dim], trainable: false, init: ones });
    for (const w of ['wq', 'wk', 'wv', 'wo']) specs.push(matrix(`${at}.${w}`, l.dim, l.dim, false));
    specs.push({ name: `${at}.ffn_norm`, shape: [l.dim], trainable: false, init: ones });
    specs.push(matrix(`${at}.w_gate`, l.dim, l.ffnDim, false), matrix(`${at}.w_up`, l.dim, l.ffnDim, false));
    specs.push(matrix(`${at}.w_down`, l.ffnDim, l.dim, false));
  }
  specs.push({ name: 'language.final_norm', shape: [l.dim], trainable: false, init: ones });
  specs.push(matrix('language.lm_head', l.dim, l.vocabSize, false));
  specs.push({ name: 'language.lm_head_added', shape: [l.dim, l.addedTokens], trainable: true, init: normal(ADDED_INIT_STD) });

  const headDim = l.dim / l.heads;
  for (const layer of crossLayerIndices(config)) {
    const at = `cross.${layer}`;
    specs.push({ name: `${at}.attn_norm`, shape: [l.dim], trainable: true, init: ones });
    specs.push(matrix(`${at}.wq`, l.dim, l.dim, true), matrix(`${at}.wk`, v.dim, l.dim, true), matrix(`${at}.wv`, v.dim, l.dim, true));
    specs.push(matrix(`${at}.wo`, l.dim, l.dim, true));
    if (config.crossAttention.qkLayerNorms) {
      specs.push(
        { name: `${at}.q_norm`, shape: [headDim], trainable: true, init: ones },
        { name: `${at}.k_norm`, shape: [headDim], trainable: true, init: ones },
      );
    }
    specs.push({ name: `${at}.ffn_norm`, shape: [l.dim], trainable: true, init: ones });
    specs.push(matrix(`${at}.w_gate`, l.dim, l.ffnDim, true), matrix(`${at}.w_up`, l.dim, l.ffnDim, true));
    specs.push(matrix(`${at}.w_down`, l.ffnDim, l.dim, true));
    // tanh gates start at 0: the untrained model is the frozen language model.
    specs.push({ name: `${at}.gate_attn`, shape: [], trainable: true, init: zeros }, { name: `${at}.gate_ffn`, shape: [], trainable: true, init: zeros });
  }
  return specs;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Decoupled weight decay applies to matrices (latents and the added-token rows included), not to norm gains, biases or gates. */
export function isDecayed(spec: ParameterSpec): boolean {
  return spec.trainable && spec.shape.length === 2;
}
