import { availableParallelism, totalmem } from 'node:os';
import { M4Error } from '../core/errors.ts';
import { formatBytes } from '../core/format.ts';
import { wholeIn } from '../core/ranges.ts';
import type { MixPlan } from '../mixer/plan.ts';
import { MIN_SEQUENCE_LENGTH } from '../mixer/profile.ts';
import { PIXELS_PER_IMAGE, type BridgeState } from './batch.ts';
import { checkBridgeResume } from './bridge-state.ts';
import { IMAGE_TRANSFORMS, type ImageTransform, type PixelDecoder } from './pixel-pool.ts';

/** Options of `openBridge`; every default is applied in `resolveBridgeOptions`. */
export interface BridgeOptions {
  /** Sequences per batch on this rank (B; default 2). */
  batchSize?: number;
  /** Tokens per sequence (L; default the profile's sequenceLength, 1024 for the card's profiles). */
  seqLen?: number;
  /**
   * Image slots per sequence (N; default 16). pixel_values holds B x N x 602 KB of float32 and IDEFICS encodes every
   * slot, used or not; but the card's mixture carries about 11 images per 1024 tokens, so at the original's 5 slots
   * rows fill with images first and about 55% of the token slots are padding (16 slots: about 11-18%). See README.
   */
  maxImages?: number;
  /** Batches this rank yields in all, a resumed run included (default: the plan's tokens / (worldSize x B x L), at least 1). */
  steps?: number;
  /** This rank and the world size (default 0 of 1). */
  rank?: number;
  worldSize?: number;
  /** Also set -100 on the image placeholder ids in `labels` (default false). */
  maskImageTokens?: boolean;
  /** How images become 224x224 (default 'resize', IDEFICS's: the whole image, bicubic, no crop). */
  imageTransform?: ImageTransform;
  /** Batches packed and decoded ahead of the consumer (default 3). */
  prefetch?: number;
  /** Pixel worker threads (default: the cores available). */
  workers?: number;
  /**
   * Continue from a state taken by `state()` after some batch: the next batches are the ones that followed it. Or, to go
   * on under another world size, the states of every rank of the earlier world taken after the same batch (see
   * bridge-state.ts: the global batch, sequence length and image slots must stay as they were).
   */
  resume?: BridgeState | readonly BridgeState[];
  /** Corrupt source shards the mixture stream skips (and reports) before it fails (default the mixer's, 3). */
  maxBadShards?: number;
  signal?: AbortSignal;
  /** Decodes images (default: a pool of worker threads running sharp); tests may pass their own. */
  decoder?: PixelDecoder;
}

export interface ResolvedBridgeOptions {
  batchSize: number;
  seqLen: number;
  maxImages: number;
  steps: number;
  rank: number;
  worldSize: number;
  maskImageTokens: boolean;
  imageTransform: ImageTransform;
  prefetch: number;
  workers: number | undefined;
  resume: BridgeState | BridgeState[] | undefined;
  /** What was adjusted and why (workers capped at the cores), for the caller to print. */
  notes: string[];
}

export const DEFAULT_BATCH_SIZE = 2;
export const DEFAULT_MAX_IMAGES = 16;
export const DEFAULT_PREFETCH = 3;

export function resolveBridgeOptions(options: BridgeOptions, plan: Pick<MixPlan, 'budget' | 'profile'>): ResolvedBridgeOptions {
  const usage = (message: string): never => {
    throw new M4Error('E_USAGE', 'bridge', message);
  };
  const whole = (name: string, value: number | undefined, min: number, fallback: number): number => wholeIn('bridge', name, value ?? fallback, min);
  const batchSize = whole('--batch-size', options.batchSize, 1, DEFAULT_BATCH_SIZE);
  const seqLen = whole('--seq-len', options.seqLen, MIN_SEQUENCE_LENGTH, plan.profile.sequenceLength);
  const maxImages = whole('--max-images', options.maxImages, 1, DEFAULT_MAX_IMAGES);
  const worldSize = whole('--world-size', options.worldSize, 1, 1);
  const rank = whole('--rank', options.rank, 0, 0);
  if (rank >= worldSize) usage(`--rank ${rank} must be below --world-size ${worldSize}`);
  const defaultSteps = Math.max(1, Math.floor(plan.budget.tokens / (worldSize * batchSize * seqLen)));
  const steps = whole('--steps', options.steps, 1, defaultSteps);
  const imageTransform = options.imageTransform ?? 'resize';
  if (!IMAGE_TRANSFORMS.includes(imageTransform)) usage(`--image-transform ${JSON.stringify(imageTransform)}: expected ${IMAGE_TRANSFORMS.join(' or ')}`);
  const prefetch = whole('--prefetch', options.prefetch, 1, DEFAULT_PREFETCH);
  const asked = options.workers === undefined ? undefined : whole('--workers', options.workers, 1, 1);
  // More pixel workers than cores only add threads and their memory; the pool never needs them.
  const cores = availableParallelism();
  const workers = asked === undefined ? undefined : Math.min(asked, cores);
  const notes = asked !== undefined && asked > cores ? [`workers: ${asked} capped at ${cores}, the cores available`] : [];
  checkBridgeMemory(batchSize, seqLen, maxImages, prefetch, usage);

  const resume = options.resume === undefined ? undefined : checkBridgeResume(options.resume, { batchSize, seqLen, maxImages, rank, worldSize, steps });
  return {
    batchSize,
    seqLen,
    maxImages,
    steps,
    rank,
    worldSize,
    maskImageTokens: options.maskImageTokens ?? false,
    imageTransform,
    prefetch,
    workers,
    resume,
    notes,
  };
}

/**
 * The bridge holds `prefetch` batches decoding ahead, the one being assembled and the one its consumer holds; each
 * batch's pixels exist twice at the peak (decoded images, then the assembled tensor). Shapes that cannot fit in half
 * of this machine's memory are refused up front rather than found out by the allocator.
 */
export function bridgeMemory(batchSize: number, seqLen: number, maxImages: number, prefetch: number): number {
  const perBatch = 2 * batchSize * maxImages * PIXELS_PER_IMAGE * 4 + batchSize * seqLen * (3 * 4 + maxImages);
  return (prefetch + 2) * perBatch;
}

function checkBridgeMemory(batchSize: number, seqLen: number, maxImages: number, prefetch: number, usage: (message: string) => never): void {
  const needed = bridgeMemory(batchSize, seqLen, maxImages, prefetch);
  const limit = totalmem() / 2;
  if (needed > limit) {
    usage(
      `batches of ${batchSize} x ${seqLen} tokens with ${maxImages} image slots, ${prefetch} decoding ahead, need about ${formatBytes(needed)} ` +
        `(${formatBytes(2 * maxImages * PIXELS_PER_IMAGE * 4)} of pixels per sequence), over half of this machine's ${formatBytes(totalmem())}: lower ` +
        `--batch-size, --max-images or --prefetch`,
    );
  }
}
