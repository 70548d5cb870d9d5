import type { MixedSample } from '../../mixer/mixture-stream-types.ts';
import type { Batch } from '../../trainer-bridge/batch.ts';
import { packBatches, type BatchPlan } from '../../trainer-bridge/packer.ts';
import type { PixelDecoder } from '../../trainer-bridge/pixel-pool.ts';
import type { ImageRef } from '../../trainer-bridge/sample-parts.ts';
import { newTally, type Tally } from '../../trainer-bridge/tally.ts';
import { PIXELS_PER_IMAGE } from '../../trainer-bridge/batch.ts';
import { assembleBatch } from '../../trainer-bridge/tensors.ts';
import type { SampleSpec } from './bridge-mixture.ts';

/** Stand-in pixels: every value of an image's slot is the first byte of its bytes, so a slot names its image. */
export function markerPixels(image: ImageRef): Float32Array {
  return new Float32Array(PIXELS_PER_IMAGE).fill(image.bytes[0]!);
}

export const markerDecoder: PixelDecoder = {
  decode: async (image) => markerPixels(image),
  close: async () => {},
};

export interface PackAllOptions {
  seqLen: number;
  maxImages: number;
  batchSize: number;
  maskImageTokens?: boolean;
}

/** Packs a finite list of samples to its end (last batch flushed) and assembles every batch with marker pixels. */
export async function packAll(specs: SampleSpec[], options: PackAllOptions): Promise<{ batches: Batch[]; plans: BatchPlan<number>[]; tally: Tally }> {
  const tally = newTally();
  async function* samples() {
    for (const [position, spec] of specs.entries()) yield { sample: { ...spec, position } as MixedSample, before: position };
  }
  const plans: BatchPlan<number>[] = [];
  for await (const plan of packBatches(samples(), options, { tally, endState: () => specs.length })) plans.push(plan);
  const batches = plans.map((plan) =>
    assembleBatch(
      plan.rows,
      plan.rows.map((row) => row.images.map(markerPixels)),
      { ...options, maskImageTokens: options.maskImageTokens ?? false },
    ),
  );
  return { batches, plans, tally };
}

/** Row b of a [B, L] tensor as a plain array. */
export function row(data: Int32Array | Int8Array, b: number, width: number): number[] {
  return [...data.subarray(b * width, (b + 1) * width)];
}

/** The image index each token of row b attends to in a [B, L, N] mask (-1 none), checking it is one-hot or empty. */
export function attendedImages(batch: Batch, b: number): number[] {
  const { seqLen: L, maxImages: N } = batch;
  const out: number[] = [];
  for (let l = 0; l < L; l++) {
    const slots = [...batch.imageAttentionMask.subarray((b * L + l) * N, (b * L + l + 1) * N)];
    const ones = slots.flatMap((v, n) => (v === 1 ? [n] : []));
    if (ones.length > 1 || slots.some((v) => v !== 0 && v !== 1)) throw new Error(`token ${l} of row ${b} is not one-hot: ${slots}`);
    out.push(ones[0] ?? -1);
  }
  return out;
}
