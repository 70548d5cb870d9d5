import { countTokens } from '../../trainer-bridge/token-layout.ts';
import { textTooLong } from './text-bound.ts';
import type { AssembledSample, DroppedRow, ImageOutcome, RejectedRow, SourceOptions } from './source-adapter.ts';

/** Caption rules shared by the pair sources: the text bound, then the word bounds (the original trainers' LAION filter, 1..256). */
export function checkCaption(caption: unknown, options: SourceOptions): RejectedRow | undefined {
  const { minWords, maxWords } = options as { minWords?: number; maxWords?: number };
  // --min-words 0 keeps pairs without a caption (a txt input is a list of URLs only).
  if (typeof caption !== 'string' || caption.trim() === '')
    return minWords === 0 ? undefined : { kind: 'rejected', status: 'filtered', error: 'empty caption' };
  const tooLong = textTooLong([caption], options, 'caption');
  if (tooLong) return { kind: 'rejected', status: 'filtered', error: tooLong };
  const words = caption.trim().split(/\s+/).length;
  if (minWords !== undefined && words < minWords) return { kind: 'rejected', status: 'filtered', error: `caption has ${words} words < ${minWords}` };
  if (maxWords !== undefined && words > maxWords) return { kind: 'rejected', status: 'filtered', error: `caption has ${words} words > ${maxWords}` };
  return undefined;
}

export const WORD_FLAGS = [
  { flag: '--min-words <n>', key: 'minWords', description: 'pairs: drop pairs whose caption has fewer words', type: 'integer', default: 1 },
  {
    flag: '--max-words <n>',
    key: 'maxWords',
    description: 'pairs: drop pairs whose caption has more words (default: laion 256, pmd no limit)',
    type: 'integer',
    default: 256,
  },
] as const;

/**
 * The sample of an image-caption pair, as img2dataset writes it: `key.jpg` (or webp/png), `key.txt` with the caption,
 * `key.json` with the source's fields, sizes and the token count of the layout the trainer sees (<s>, image, caption, </s>).
 */
export function assemblePair(key: string, caption: string, fields: Record<string, unknown>, images: ImageOutcome[]): AssembledSample | DroppedRow {
  const image = images[0];
  if (!image) return { kind: 'dropped', status: 'malformed', error: 'row has no image' };
  if (!image.ok) return { kind: 'dropped', status: image.status, error: image.error };
  const tokens = countTokens([{ type: 'image' }, { type: 'text', text: caption }]);
  const json = {
    key,
    caption,
    ...fields,
    url: image.source.url ?? null,
    original_width: image.originalWidth,
    original_height: image.originalHeight,
    width: image.width,
    height: image.height,
    tokens,
  };
  return {
    kind: 'sample',
    fields: { [image.format]: image.bytes, txt: Buffer.from(caption), json: Buffer.from(JSON.stringify(json)) },
    images: 1,
    tokens,
  };
}
