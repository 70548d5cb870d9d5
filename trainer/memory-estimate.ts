import { totalmem } from 'node:os';
import { M4Error } from '../core/errors.ts';
import { formatBytes } from '../core/format.ts';
import type { BackendName } from './backend.ts';
import { crossLayerIndices, parameterCounts, patchesPerImage, perceiverMlpDim, type ModelConfig } from './model-config.ts';

/** Bytes a training run holds at its peak, on paper, before anything is allocated. float32 throughout. */
export interface MemoryEstimate {
  /** Every weight, frozen and trainable. */
  weights: number;
  /** AdamW's two moments per trainable weight. */
  optimizer: number;
  /** Accumulated gradients of the trainable weights. */
  gradients: number;
  /** What one micro-batch's forward keeps for its backward (a lower bound: the decoder's and the resampler's). */
  activations: number;
  total: number;
}

const FLOAT = 4;

export function estimateTrainingMemory(config: ModelConfig, batch: { batchSize: number; seqLen: number; maxImages: number }): MemoryEstimate {
  const counts = parameterCounts(config);
  const { batchSize: b, seqLen: l, maxImages: n } = batch;
  const lang = config.language;
  // Per decoder layer: the residual, normed input, q, k, v, attention output, and the SwiGLU's three ffn-wide tensors,
  // plus the [heads, L, L] attention probabilities.
  const decoderLayer = b * l * (6 * lang.dim + 3 * lang.ffnDim) + b * lang.heads * l * l;
  const v = config.vision;
  const p = config.perceiver;
  const keys = patchesPerImage(config) + p.latents;
  const perceiverLayer =
    b * n * (keys * (2 * v.dim + 2 * p.heads * p.headDim) + p.latents * (4 * v.dim + perceiverMlpDim(config)) + p.heads * p.latents * keys);
  const cross = crossLayerIndices(config).length * b * l * (4 * lang.dim + 2 * lang.ffnDim);
  // The LM head and loss are fused and chunked (lm-loss.ts): no [B, L, vocab] logits are held.
  const activations = FLOAT * (lang.layers * decoderLayer + p.layers * perceiverLayer + cross);
  const weights = FLOAT * counts.total;
  const optimizer = 2 * FLOAT * counts.trainable;
  const gradients = FLOAT * counts.trainable;
  return { weights, optimizer, gradients, activations, total: weights + optimizer + gradients + activations };
}

/**
 * The most a backend can hold: WebAssembly's 32-bit memory tops out at 4 GiB; the cpu backend and tfjs-node keep
 * tensors in this machine's memory. tfjs-node-gpu's limit is its GPU's, which TensorFlow.js cannot tell before allocating.
 */
export function backendMemoryLimit(backend: BackendName): number | undefined {
  if (backend === 'wasm') return 4 * 2 ** 30;
  if (backend === 'tfjs-node-gpu') return undefined;
  return totalmem();
}

/** Refuses, before any weight is allocated, a model and batch shape the backend cannot hold; returns the estimate. */
export function checkTrainingMemory(
  config: ModelConfig,
  batch: { batchSize: number; seqLen: number; maxImages: number },
  backend: BackendName,
): MemoryEstimate {
  const estimate = estimateTrainingMemory(config, batch);
  const limit = backendMemoryLimit(backend);
  if (limit === undefined || estimate.total <= limit) return estimate;
  const parts =
    `weights ${formatBytes(estimate.weights)}, optimizer ${formatBytes(estimate.optimizer)}, gradients ${formatBytes(estimate.gradients)}, ` +
    `activations at least ${formatBytes(estimate.activations)}`;
  const where = backend === 'wasm' ? "WebAssembly's 4 GiB" : `this machine's ${formatBytes(limit)} of memory`;
  throw new M4Error(
    'E_USAGE',
    'trainer',
    `model ${config.name} with batches of ${batch.batchSize} x ${batch.seqLen} tokens and ${batch.maxImages} image slots needs about ` +
      `${formatBytes(estimate.total)} to train (${parts}), ` +
      `more than the ${backend} backend can hold (${where}); nothing was allocated. Train it with --backend tfjs-node-gpu on a GPU with at least ` +
      `${formatBytes(estimate.total)} of memory, ` +
      'or feed PyTorch ranks with m4data train --dry-run --dump - (README, "Data parallel"); smaller batches lower only the activations.',
    { estimate, limit, backend },
  );
}
