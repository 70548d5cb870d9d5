import { EOS, IMAGE_TOKEN } from './token-layout.ts';

/**
 * The image each token of a packed row attends to, as transformers' `image_attention_mask_for_packed_input_ids`
 * computes it (PyTorch variant), then capped at the tensor's `maxImages` slots as `incremental_to_binary_attention_mask`
 * does: images are numbered across the row; a token attends to the most recent `<image>` at or before it; `</s>` still
 * attends to its sample's last image and every token after it to none until the next `<image>`. -1 is none.
 */
export function imageIndexPerToken(ids: ArrayLike<number>, maxImages: number): Int32Array {
  const out = new Int32Array(ids.length);
  let count = -1;
  let seenEos = false;
  for (let l = 0; l < ids.length; l++) {
    const id = ids[l]!;
    if (id === IMAGE_TOKEN) {
      count++;
      seenEos = false;
    }
    out[l] = seenEos || count >= maxImages ? -1 : count;
    if (id === EOS) seenEos = true;
  }
  return out;
}

/** Writes the one-hot mask [L, N] of one row into `target` (zeros elsewhere are the caller's). */
export function writeImageAttentionMask(ids: ArrayLike<number>, maxImages: number, target: Int8Array, offset: number): void {
  const index = imageIndexPerToken(ids, maxImages);
  for (let l = 0; l < index.length; l++) if (index[l]! >= 0) target[offset + l * maxImages + index[l]!] = 1;
}
