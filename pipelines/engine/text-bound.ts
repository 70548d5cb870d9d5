import type { SourceFlag, SourceOptions } from './source-adapter.ts';

/**
 * How much text one sample may hold, in UTF-8 bytes: a caption, or a document's texts together. Checked before
 * anything else reads the text (word counts, the tokenizer), so a 10 MB caption costs one byte count, not 2 million
 * tokens. LAION's bound follows from its published filter of at most 256 words (at 64 bytes a word); the published
 * PMD, OBELICS and Wikipedia builders state no text bound, so theirs are m4data's, far above any real sample.
 */
export const MAX_TEXT_BYTES = { laion: 16_384, pmd: 65_536, document: 1_048_576 } as const;

export function maxTextBytesFlag(defaultBytes: number): SourceFlag {
  return {
    flag: '--max-text-bytes <n>',
    key: 'maxTextBytes',
    description:
      `filter a row whose text (a caption, or a document's texts together) is over n UTF-8 bytes, before tokenizing ` +
      `(default: laion ${MAX_TEXT_BYTES.laion}, pmd ${MAX_TEXT_BYTES.pmd}, obelics and wikipedia ${MAX_TEXT_BYTES.document})`,
    type: 'integer',
    default: defaultBytes,
  };
}

/** The filter reason when `texts` together exceed the row's bound, else undefined. Stops counting at the bound. */
export function textTooLong(texts: Iterable<string>, options: SourceOptions, what: string): string | undefined {
  const max = options.maxTextBytes as number | undefined;
  if (max === undefined) return undefined;
  let bytes = 0;
  for (const text of texts) {
    bytes += Buffer.byteLength(text);
    if (bytes > max) return `${what} over ${max} bytes (--max-text-bytes)`;
  }
  return undefined;
}
