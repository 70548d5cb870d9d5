import type { MixtureState } from '../mixer/mixture-stream-types.ts';

/**
 * The contract between the bridge and every trainer (the TensorFlow.js trainer, and PyTorch through the `.npy` feed):
 * one batch of packed IDEFICS sequences. Arrays are row-major, shapes as named.
 */
export const IMAGE_SIZE = 224;
/** Floats of one image in pixel_values: 3 x 224 x 224. */
export const PIXELS_PER_IMAGE = 3 * IMAGE_SIZE * IMAGE_SIZE;
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;
/** Label value the loss ignores (PyTorch's CrossEntropyLoss default). */
export const IGNORE_INDEX = -100;
/** Padding id at the end of a sequence. */
export const PAD_ID = 0;

export interface BatchShape {
  /** Sequences per batch (B), sequence length (L), image slots per sequence (N). */
  batchSize: number;
  seqLen: number;
  maxImages: number;
}

export interface Batch extends BatchShape {
  /** [B, L] */
  inputIds: Int32Array;
  /** [B, L]: 1 on real tokens, 0 on padding. */
  attentionMask: Int32Array;
  /** [B, L]: `inputIds` with IGNORE_INDEX on padding (and on image placeholders with --mask-image-tokens). */
  labels: Int32Array;
  /** [B, N, 3, 224, 224], CLIP-normalised; unused slots are zeros. */
  pixelValues: Float32Array;
  /** [B, L, N]: 1 where token l of row b attends to image n of that row. */
  imageAttentionMask: Int8Array;
  /** What this batch holds, per source. */
  stats: BatchStats;
}

export interface BatchStats {
  /** Real (non-padding) tokens and images per source. */
  tokensBySource: Record<string, number>;
  imagesBySource: Record<string, number>;
  paddingTokens: number;
}

/** The bridge's resume point: the mixer's state plus what was read but not yet emitted in a batch. */
export interface BridgeState {
  format: 'm4data-bridge-state';
  version: 1;
  mixture: MixtureState;
  /** Batches emitted so far on this rank. */
  batches: number;
  /** Anything else the packer needs to continue exactly (small: positions, not pixels). */
  packer: unknown;
}

/** The five tensors in the order the `.npy` stream writes them. */
export const TENSOR_ORDER = ['input_ids', 'attention_mask', 'labels', 'pixel_values', 'image_attention_mask'] as const;
export type TensorName = (typeof TENSOR_ORDER)[number];
