import { M4Error } from '../core/errors.ts';
import type { ModelTable } from '../mixer/profile.ts';

/**
 * The ATUM architecture's sizes, as data: a frozen CLIP ViT, a trainable Perceiver resampler, a frozen LLaMA decoder
 * and trainable gated cross-attention blocks before every `crossAttention.interval`-th decoder layer, with the
 * components of transformers' `IdeficsForVisionText2Text`. What transformers fixes is not a field here: the
 * resampler's MLP is 4x the vision width, the cross-attention blocks use the decoder's heads and MLP width, and the
 * rotary base is 10,000 (`IdeficsEmbedding`'s default, whatever the LLaMA config says).
 */
export interface ModelConfig {
  name: string;
  /** `activation` is the config's `hidden_act` (laion/CLIP-ViT-H-14: exact `gelu`; OpenAI's CLIPs: `quick_gelu`). */
  vision: {
    imageSize: number;
    patchSize: number;
    dim: number;
    layers: number;
    heads: number;
    mlpDim: number;
    activation: VisionActivation;
    layerNormEps: number;
  };
  /** The resampler works at the vision width; `heads * headDim` is its attention width. `qkLayerNorms`: LayerNorm on q and k per head. */
  perceiver: { layers: number; latents: number; heads: number; headDim: number; qkLayerNorms: boolean };
  /** `vocabSize` frozen LLaMA rows plus `addedTokens` trained ones (IDEFICS's decoupled embedding and head). */
  language: { vocabSize: number; addedTokens: number; dim: number; layers: number; heads: number; ffnDim: number; rmsNormEps: number };
  /** `qkLayerNorms`: RMSNorm (weight only, the language's eps) on q and k per head, as IDEFICS's `qk_layer_norms`. */
  crossAttention: { interval: number; qkLayerNorms: boolean };
  /** Seed of the random frozen weights (and of the trainable ones' initialisation). */
  seed: number;
}

export type VisionActivation = 'gelu' | 'quick_gelu';
export const VISION_ACTIVATIONS: readonly VisionActivation[] = ['gelu', 'quick_gelu'];

/** IDEFICS's rotary base (`IdeficsEmbedding(head_dim)`, base 10,000). */
export const ROPE_THETA = 10_000;

/** LLaMA's 32,000 ids, then IDEFICS's `<fake_token_around_image>` and `<image>` (ids 32000 and 32001). */
const LLAMA_VOCAB = 32000;
const ADDED_TOKENS = 2;

/** laion/CLIP-ViT-H-14-laion2B-s32B-b79K, as IDEFICS's vision_config states it. */
const VIT_H_14 = { imageSize: 224, patchSize: 14, dim: 1280, layers: 32, heads: 16, mlpDim: 5120, activation: 'gelu', layerNormEps: 1e-5 } as const;
/** The draft card's resampler (6 layers, 64 latents, 16 heads x 96, layer norm on q and k); runs take it from the profile. */
const CARD_PERCEIVER = { layers: 6, latents: 64, heads: 16, headDim: 96, qkLayerNorms: true };

export const MODEL_PRESETS: Record<string, ModelConfig> = {
  tiny: {
    name: 'tiny',
    vision: { imageSize: 224, patchSize: 14, dim: 32, layers: 1, heads: 2, mlpDim: 64, activation: 'gelu', layerNormEps: 1e-5 },
    perceiver: { layers: 1, latents: 8, heads: 2, headDim: 16, qkLayerNorms: true },
    language: { vocabSize: LLAMA_VOCAB, addedTokens: ADDED_TOKENS, dim: 64, layers: 4, heads: 4, ffnDim: 128, rmsNormEps: 1e-6 },
    crossAttention: { interval: 2, qkLayerNorms: true },
    seed: 1,
  },
  // LLaMA-7B (huggyllama/llama-7b, rms_norm_eps 1e-6) + CLIP ViT-H/14: the card's 9B.
  'atum-9b': {
    name: 'atum-9b',
    vision: VIT_H_14,
    perceiver: CARD_PERCEIVER,
    language: { vocabSize: LLAMA_VOCAB, addedTokens: ADDED_TOKENS, dim: 4096, layers: 32, heads: 32, ffnDim: 11008, rmsNormEps: 1e-6 },
    crossAttention: { interval: 4, qkLayerNorms: true },
    seed: 1,
  },
  // LLaMA-65B (huggyllama/llama-65b, rms_norm_eps 1e-5) + CLIP ViT-H/14: the card's 80B.
  'atum-80b': {
    name: 'atum-80b',
    vision: VIT_H_14,
    perceiver: CARD_PERCEIVER,
    language: { vocabSize: LLAMA_VOCAB, addedTokens: ADDED_TOKENS, dim: 8192, layers: 80, heads: 64, ffnDim: 22016, rmsNormEps: 1e-5 },
    crossAttention: { interval: 4, qkLayerNorms: true },
    seed: 1,
  },
};

/**
 * A preset by name; E_USAGE naming the known ones otherwise. The card's shapes (`atum-*`) take their resampler sizes and
 * cross-attention interval from a profile's model table when one is given, so a profile, not this file, decides them.
 */
export function modelPreset(name: string, card?: ModelTable): ModelConfig {
  const preset = MODEL_PRESETS[name];
  if (!preset) throw new M4Error('E_USAGE', 'trainer', `no model preset named ${name} (known: ${Object.keys(MODEL_PRESETS).join(', ')})`);
  const config = structuredClone(preset);
  if (card && name.startsWith('atum-')) {
    const { layers, latents, heads, headDim } = card.perceiver;
    config.perceiver = { ...config.perceiver, layers, latents, heads, headDim };
    config.crossAttention = { ...config.crossAttention, interval: card.crossLayerInterval };
  }
  return config;
}

/** Checks the rules the model (and transformers' IDEFICS, which these shapes must load into) relies on. */
export function checkModelConfig(config: ModelConfig): ModelConfig {
  const fail = (problem: string): never => {
    throw new M4Error('E_USAGE', 'trainer', `model ${config.name}: ${problem}`);
  };
  const { vision, language } = config;
  if (vision.imageSize % vision.patchSize !== 0) fail('vision.imageSize must be a multiple of vision.patchSize');
  if (vision.dim % vision.heads !== 0) fail('vision.dim must be a multiple of vision.heads');
  if (!VISION_ACTIVATIONS.includes(vision.activation)) fail(`vision.activation ${vision.activation} is not one of ${VISION_ACTIVATIONS.join(', ')}`);
  if (language.dim % language.heads !== 0) fail('language.dim must be a multiple of language.heads');
  if ((language.dim / language.heads) % 2 !== 0) fail('the language head dimension must be even (rotary pairs)');
  if (config.crossAttention.interval < 1) fail('crossAttention.interval must be at least 1');
  // IdeficsModel makes num_hidden_layers // interval blocks and indexes them by layer // interval.
  if (language.layers % config.crossAttention.interval !== 0)
    fail('language.layers must be a multiple of crossAttention.interval (as transformers builds the blocks)');
  return config;
}

/** Decoder layer indices that get a gated cross-attention block before them (IDEFICS: `idx % interval == 0`). */
export function crossLayerIndices(config: ModelConfig): number[] {
  const out: number[] = [];
  for (let i = 0; i < config.language.layers; i += config.crossAttention.interval) out.push(i);
  return out;
}

/** Patches of one image; the ViT's sequence is these plus the class token. */
export function patchesPerImage(config: ModelConfig): number {
  return (config.vision.imageSize / config.vision.patchSize) ** 2;
}

/** Tokens of one image the resampler reads: the class token and every patch (`last_hidden_state`). */
export function visionTokensPerImage(config: ModelConfig): number {
  return patchesPerImage(config) + 1;
}

/** IDEFICS's resampler MLP width: 4x the vision width (`IdeficsPerceiverResampler.intermediate_dim`). */
export function perceiverMlpDim(config: ModelConfig): number {
  return 4 * config.vision.dim;
}

export interface ParameterCounts {
  vision: number;
  perceiver: number;
  /** The frozen LLaMA: its 32,000-row embedding and head, layers and final norm. */
  language: number;
  /** The trained rows of the added tokens: the embedding's and the head's (IDEFICS's decoupled embedding and head). */
  addedTokens: number;
  crossAttention: number;
  total: number;
  trainable: number;
  frozen: number;
}

/** Counted on paper from the shapes the model allocates (nothing is allocated here). */
export function parameterCounts(config: ModelConfig): ParameterCounts {
  const v = config.vision;
  const p = config.perceiver;
  const l = config.language;
  const patchDim = 3 * v.patchSize * v.patchSize;
  // Per layer: q, k, v, out and the MLP with their biases, two LayerNorms.
  const vitLayer = 4 * v.dim * v.dim + 2 * v.dim * v.mlpDim + 9 * v.dim + v.mlpDim;
  // Class token, patch embedding (no bias), positions, pre- and post-LayerNorm.
  const vision = v.dim + patchDim * v.dim + visionTokensPerImage(config) * v.dim + v.layers * vitLayer + 4 * v.dim;
  const inner = p.heads * p.headDim;
  const mlp = perceiverMlpDim(config);
  const perceiverQk = p.qkLayerNorms ? 4 * p.headDim : 0;
  const perceiverLayer = 6 * v.dim + 3 * v.dim * inner + inner * v.dim + perceiverQk + 2 * v.dim * mlp;
  const perceiver = p.latents * v.dim + p.layers * perceiverLayer + 2 * v.dim;
  const decoderLayer = 4 * l.dim * l.dim + 3 * l.dim * l.ffnDim + 2 * l.dim;
  const language = 2 * l.vocabSize * l.dim + l.layers * decoderLayer + l.dim;
  const addedTokens = 2 * l.addedTokens * l.dim;
  // Cross-attention works at the decoder's width and heads: q and out d x d, k and v from the vision width.
  const crossQk = config.crossAttention.qkLayerNorms ? 2 * (l.dim / l.heads) : 0;
  const crossBlock = 2 * l.dim * l.dim + 2 * v.dim * l.dim + crossQk + 3 * l.dim * l.ffnDim + 2 * l.dim + 2;
  const crossAttention = crossLayerIndices(config).length * crossBlock;
  const trainable = perceiver + crossAttention + addedTokens;
  const frozen = vision + language;
  return { vision, perceiver, language, addedTokens, crossAttention, total: trainable + frozen, trainable, frozen };
}

export interface FlopEstimate {
  /** Training FLOPs per text token: frozen decoder forward + activation backward (4N), cross-attention 6N, attention. */
  perTextToken: number;
  /** Training FLOPs per image: ViT forward only (frozen, off the tape), resampler forward and backward. */
  perImage: number;
  /** Per token including images at `imagesPerToken`. */
  perToken: number;
}

/**
 * Matmul FLOPs (2 per multiply-add) of one training step, per token, on paper. Embedding gathers, norms, biases and
 * element-wise work are left out; attention scores count with causal averaging (L/2 keys per query).
 */
export function flopsPerToken(config: ModelConfig, options: { seqLen: number; imagesPerToken: number }): FlopEstimate {
  const v = config.vision;
  const p = config.perceiver;
  const l = config.language;
  const blocks = crossLayerIndices(config).length;
  const vocab = l.vocabSize + l.addedTokens;
  const decoderMatmul = l.layers * (4 * l.dim * l.dim + 3 * l.dim * l.ffnDim) + vocab * l.dim;
  const decoderAttention = l.layers * 2 * (options.seqLen / 2) * l.dim;
  // Frozen path: forward (2 per weight) and the backward for activations only (2 more); no weight gradients.
  const decoder = 4 * (decoderMatmul + decoderAttention);
  const crossPerToken = blocks * (2 * l.dim * l.dim + 3 * l.dim * l.ffnDim);
  const crossAttentionScores = blocks * 2 * p.latents * l.dim;
  const cross = 6 * crossPerToken + 4 * crossAttentionScores;
  const tokens = visionTokensPerImage(config);
  const vitPerToken = v.layers * (4 * v.dim * v.dim + 2 * v.dim * v.mlpDim + 2 * tokens * v.dim) + 3 * v.patchSize ** 2 * v.dim;
  const vision = 2 * tokens * vitPerToken;
  const inner = p.heads * p.headDim;
  const keys = tokens + p.latents;
  const perceiverLayer = keys * 2 * v.dim * inner + p.latents * (2 * v.dim * inner + 2 * v.dim * perceiverMlpDim(config) + 2 * keys * inner);
  const perceiver = 6 * p.layers * perceiverLayer;
  // Cross-attention keys and values are computed per image from its latents.
  const crossKeys = 6 * blocks * p.latents * 2 * v.dim * l.dim;
  const perImage = vision + perceiver + crossKeys;
  const perTextToken = decoder + cross;
  return { perTextToken, perImage, perToken: perTextToken + options.imagesPerToken * perImage };
}
