import { IGNORE_INDEX, IMAGE_SIZE, PAD_ID, PIXELS_PER_IMAGE, TENSOR_ORDER, type Batch, type BatchShape, type TensorName } from './batch.ts';
import { writeImageAttentionMask } from './image-attention-mask.ts';
import type { PackedRow } from './packer.ts';
import { FAKE_TOKEN_AROUND_IMAGE, IMAGE_TOKEN } from './token-layout.ts';

/** Floats of one image slot: 3 x 224 x 224. */

export interface TensorOptions extends BatchShape {
  /** Also set IGNORE_INDEX on the two image placeholder ids in `labels` (open_flamingo did). */
  maskImageTokens: boolean;
}

/**
 * The five tensors of a batch from its packed rows and each row's decoded images (`pixels[b][i]`, CHW, normalised):
 * padding with PAD_ID at the end of each row, labels with IGNORE_INDEX on padding, unused image slots left zero.
 */
export function assembleBatch(rows: readonly PackedRow[], pixels: readonly (readonly Float32Array[])[], options: TensorOptions): Batch {
  const { batchSize: B, seqLen: L, maxImages: N } = options;
  const inputIds = new Int32Array(B * L).fill(PAD_ID);
  const attentionMask = new Int32Array(B * L);
  const labels = new Int32Array(B * L).fill(IGNORE_INDEX);
  const pixelValues = new Float32Array(B * N * PIXELS_PER_IMAGE);
  const imageAttentionMask = new Int8Array(B * L * N);
  const tokensBySource: Record<string, number> = {};
  const imagesBySource: Record<string, number> = {};
  let paddingTokens = 0;
  rows.forEach((row, b) => {
    const at = b * L;
    row.ids.forEach((id, l) => {
      inputIds[at + l] = id;
      attentionMask[at + l] = 1;
      labels[at + l] = options.maskImageTokens && (id === IMAGE_TOKEN || id === FAKE_TOKEN_AROUND_IMAGE) ? IGNORE_INDEX : id;
    });
    paddingTokens += L - row.ids.length;
    writeImageAttentionMask(row.ids, N, imageAttentionMask, b * L * N);
    pixels[b]!.forEach((image, i) => pixelValues.set(image, (b * N + i) * PIXELS_PER_IMAGE));
    for (const [source, n] of Object.entries(row.tokensBySource)) tokensBySource[source] = (tokensBySource[source] ?? 0) + n;
    for (const [source, n] of Object.entries(row.imagesBySource)) imagesBySource[source] = (imagesBySource[source] ?? 0) + n;
  });
  return {
    batchSize: B,
    seqLen: L,
    maxImages: N,
    inputIds,
    attentionMask,
    labels,
    pixelValues,
    imageAttentionMask,
    stats: { tokensBySource, imagesBySource, paddingTokens },
  };
}

/** Each tensor's name and shape, in TENSOR_ORDER. */
export function tensorShapes(shape: BatchShape): [TensorName, number[]][] {
  const { batchSize: B, seqLen: L, maxImages: N } = shape;
  const shapes: Record<TensorName, number[]> = {
    input_ids: [B, L],
    attention_mask: [B, L],
    labels: [B, L],
    pixel_values: [B, N, 3, IMAGE_SIZE, IMAGE_SIZE],
    image_attention_mask: [B, L, N],
  };
  return TENSOR_ORDER.map((name) => [name, shapes[name]]);
}
