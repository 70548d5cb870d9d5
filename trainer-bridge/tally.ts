/**
 * Where every token and image of the stream went, per source. For a stream read to its end:
 * `inputTokens + addedTokens = packedTokens + truncatedTokens + droppedTokens` and
 * `inputImages = packedImages + droppedImages`; while batches are still being filled the difference is pending.
 */
export interface SourceTally {
  /** Samples read, and their tokens and images as the layout counts them (what the shard index recorded). */
  samples: number;
  inputTokens: number;
  inputImages: number;
  /** `<s>`, `</s>` and reopened `<fake_token_around_image>` that cutting long parts into windows added. */
  addedTokens: number;
  /** Windows cut from parts longer than the sequence. */
  windows: number;
  /** In emitted sequences. */
  packedTokens: number;
  packedImages: number;
  /** Cut off the end of a pair longer than the sequence. */
  truncatedTokens: number;
  /** Parts or windows under the minimum length, windows without an image, and images over --max-images. */
  droppedTokens: number;
  droppedImages: number;
  droppedUnits: number;
}

export type Tally = Map<string, SourceTally>;

export function newTally(): Tally {
  return new Map();
}

export function tallyOf(tally: Tally, source: string): SourceTally {
  let t = tally.get(source);
  if (!t) {
    t = {
      samples: 0,
      inputTokens: 0,
      inputImages: 0,
      addedTokens: 0,
      windows: 0,
      packedTokens: 0,
      packedImages: 0,
      truncatedTokens: 0,
      droppedTokens: 0,
      droppedImages: 0,
      droppedUnits: 0,
    };
    tally.set(source, t);
  }
  return t;
}

/** Tokens read or added but not yet in an emitted sequence, truncated or dropped. */
export function pendingTokens(t: SourceTally): number {
  return t.inputTokens + t.addedTokens - t.packedTokens - t.truncatedTokens - t.droppedTokens;
}
