import { M4Error } from '../core/errors.ts';
import type { ModelTable } from '../mixer/profile.ts';

/**
 * The ATUM architecture's sizes, as data: a frozen ViT, a trainable Perceiver resampler, a frozen LLaMA-style decoder
 * and trainable gated cross-attention blocks before every `crossAttention.interval`-th decoder layer.
 */
export interface ModelConfig {
  name: string;
  vision: { imageSize: number; patchSize: number; dim: number; layers: number; heads: number; mlpDim: number };
  /** The resampler works at the vision width; `heads * headDim` is its attention width. */
  perceiver: { layers: number; latents: number; heads: number; headDim: number; mlpDim: number };
  language: { vocabSize: number; dim: number; layers: number; heads: number; ffnDim: number; ropeTheta: number };
  crossAttention: { interval: number; heads: number; headDim: number; ffnDim: number };
  /** Seed of the random frozen weights (and of the trainable ones' initialisation). */
  seed: number;
}

/** LLaMA's 32,000 ids plus IDEFICS's `<fake_token_around_image>` and `<image>`. */
const VOCAB = 32002;

const VIT_H_14 = { imageSize: 224, patchSize: 14, dim: 1280, layers: 32, heads: 16, mlpDim: 5120 };
/** The draft card's resampler; runs take it from the profile (`modelPreset(name, profile.model)`). */
const CARD_PERCEIVER = { layers: 6, latents: 64, heads: 16, headDim: 96, mlpDim: 4 * 1280 };

export const MODEL_PRESETS: Record<string, ModelConfig> = {
  tiny: {
    name: 'tiny',
    vision: { imageSize: 224, patchSize: 14, dim: 32, layers: 1, heads: 2, mlpDim: 64 },
    perceiver: { layers: 1, latents: 8, heads: 2, headDim: 16, mlpDim: 64 },
    language: { vocabSize: VOCAB, dim: 64, layers: 4, heads: 4, ffnDim: 128, ropeTheta: 10_000 },
    crossAttention: { interval: 2, heads: 4, headDim: 16, ffnDim: 128 },
    seed: 1,
  },
  // LLaMA-7B (huggyllama/llama-7b) + CLIP ViT-H/14: the card's 9B.
  'atum-9b': {
    name: 'atum-9b',
    vision: VIT_H_14,
    perceiver: CARD_PERCEIVER,
    language: { vocabSize: VOCAB, dim: 4096, layers: 32, heads: 32, ffnDim: 11008, ropeTheta: 10_000 },
    crossAttention: { interval: 4, heads: 32, headDim: 128, ffnDim: 11008 },
    seed: 1,
  },
  // LLaMA-65B (huggyllama/llama-65b) + CLIP ViT-H/14: the card's 80B.
  'atum-80b': {
    name: 'atum-80b',
    vision: VIT_H_14,
    perceiver: CARD_PERCEIVER,
    language: { vocabSize: VOCAB, dim: 8192, layers: 80, heads: 64, ffnDim: 22016, ropeTheta: 10_000 },
    crossAttention: { interval: 4, heads: 64, headDim: 128, ffnDim: 22016 },
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

/** Checks the divisibility rules the model relies on. */
export function checkModelConfig(config: ModelConfig): ModelConfig {
  const fail = (problem: string): never => {
    throw new M4Error('E_USAGE', 'trainer', `model ${config.name}: ${problem}`);
  };
  const { vision, language } = config;
  if (vision.imageSize % vision.patchSize !== 0) fail('vision.imageSize must be a multiple of vision.patchSize');
  if (vision.dim % vision.heads !== 0) fail('vision.dim must be a multiple of vision.heads');
  if (language.dim % language.heads !== 0) fail('language.dim must be a multiple of language.heads');
  if ((language.dim / language.heads) % 2 !== 0) fail('the language head dimension must be even (rotary pairs)');
  if (config.crossAttention.interval < 1) fail('crossAttention.interval must be at least 1');
  return config;
}

/** Decoder layer indices that get a gated cross-attention block before them (IDEFICS: `idx % interval == 0`). */
export function crossLayerIndices(config: ModelConfig): number[] {
  const out: number[] = [];
  for (let i = 0; i < config.language.layers; i += config.crossAttention.interval) out.push(i);
  return out;
}

export function patchesPerImage(config: ModelConfig): number {
  return (config.vision.imageSize / config.vision.patchSize) ** 2;
}

export interface ParameterCounts {
  vision: number;
  perceiver: number;
  language: number;
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
  const x = config.crossAttention;
  const patchDim = 3 * v.patchSize * v.patchSize;
  const vitLayer = 4 * v.dim * v.dim + 2 * v.dim * v.mlpDim + 4 * v.dim;
  const vision = patchDim * v.dim + patchesPerImage(config) * v.dim + v.layers * vitLayer + 2 * v.dim;
  const inner = p.heads * p.headDim;
  const perceiverLayer = 4 * v.dim + 4 * v.dim * inner + 2 * p.headDim * 2 + 2 * v.dim + 2 * v.dim * p.mlpDim;
  const perceiver = p.latents * v.dim + p.layers * perceiverLayer + 2 * v.dim;
  const decoderLayer = 4 * l.dim * l.dim + 3 * l.dim * l.ffnDim + 2 * l.dim;
  const language = 2 * l.vocabSize * l.dim + l.layers * decoderLayer + l.dim;
  const xInner = x.heads * x.headDim;
  const crossBlock = 2 * l.dim * xInner + 2 * v.dim * xInner + 2 * x.headDim * 2 + 3 * l.dim * x.ffnDim + 2 * l.dim + 2;
  const crossAttention = crossLayerIndices(config).length * crossBlock;
  const trainable = perceiver + crossAttention;
  const frozen = vision + language;
  return { vision, perceiver, language, crossAttention, total: trainable + frozen, trainable, frozen };
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
 * Matmul FLOPs (2 per multiply-add) of one training step, per token, on paper. Embedding gathers, norms and
 * element-wise work are left out; attention scores count with causal averaging (L/2 keys per query).
 */
export function flopsPerToken(config: ModelConfig, options: { seqLen: number; imagesPerToken: number }): FlopEstimate {
  const v = config.vision;
  const p = config.perceiver;
  const l = config.language;
  const x = config.crossAttention;
  const blocks = crossLayerIndices(config).length;
  const decoderMatmul = l.layers * (4 * l.dim * l.dim + 3 * l.dim * l.ffnDim) + l.vocabSize * l.dim;
  const decoderAttention = l.layers * 2 * (options.seqLen / 2) * l.dim;
  // Frozen path: forward (2 per weight) and the backward for activations only (2 more); no weight gradients.
  const decoder = 4 * (decoderMatmul + decoderAttention);
  const crossPerToken = blocks * (2 * l.dim * x.heads * x.headDim + 3 * l.dim * x.ffnDim);
  const crossAttentionScores = blocks * 2 * p.latents * x.heads * x.headDim;
  const cross = 6 * crossPerToken + 4 * crossAttentionScores;
  const patches = patchesPerImage(config);
  const vitPerPatch = v.layers * (4 * v.dim * v.dim + 2 * v.dim * v.mlpDim + 2 * patches * v.dim) + 3 * v.patchSize ** 2 * v.dim;
  const vision = 2 * patches * vitPerPatch;
  const inner = p.heads * p.headDim;
  const keys = patches + p.latents;
  const perceiverLayer = keys * 2 * v.dim * inner + p.latents * (2 * v.dim * inner + 2 * v.dim * p.mlpDim + 2 * keys * inner);
  const perceiver = 6 * p.layers * perceiverLayer;
  // Cross-attention keys and values are computed per image from its latents.
  const crossKeys = 6 * blocks * p.latents * 2 * v.dim * x.heads * x.headDim;
  const perImage = vision + perceiver + crossKeys;
  const perTextToken = decoder + cross;
  return { perTextToken, perImage, perToken: perTextToken + options.imagesPerToken * perImage };
}
