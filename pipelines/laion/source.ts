import { assemblePair, checkCaption, WORD_FLAGS } from '../engine/pair-sample.ts';
import { MAX_TEXT_BYTES, maxTextBytesFlag } from '../engine/text-bound.ts';
import type { RejectedRow, SourceAdapter } from '../engine/source-adapter.ts';

/** LAION-2B-en metadata: one row per image-caption pair ("joined" variant columns optional). */
interface LaionPayload {
  caption: string;
  fields: Record<string, unknown>;
}

export const laion: SourceAdapter<LaionPayload> = {
  name: 'laion',
  aliases: [],
  summary: 'LAION-2B-en image-caption pairs (URL, TEXT, optional WIDTH, HEIGHT, similarity, punsafe, pwatermark, hash)',
  layout: 'pair',
  columns: [
    { name: 'URL', type: 'string', required: true },
    { name: 'TEXT', type: 'string', required: true },
    { name: 'WIDTH', type: 'number', required: false },
    { name: 'HEIGHT', type: 'number', required: false },
    { name: 'similarity', type: 'number', required: false },
    { name: 'punsafe', type: 'number', required: false },
    { name: 'pwatermark', type: 'number', required: false },
    { name: 'hash', type: 'integer', required: false },
  ],
  // The original trainers' LAION pair filter: sides 150..10,000 px, aspect ratio at most 3.
  imageDefaults: { minSide: 150, maxSide: 10_000, maxAspectRatio: 3 },
  flags: [
    ...WORD_FLAGS,
    maxTextBytesFlag(MAX_TEXT_BYTES.laion),
    { flag: '--max-punsafe <p>', key: 'maxPunsafe', description: 'laion: drop rows whose punsafe is above p (default: keep all)', type: 'number' },
    { flag: '--max-pwatermark <p>', key: 'maxPwatermark', description: 'laion: drop rows whose pwatermark is above p (default: keep all)', type: 'number' },
    {
      flag: '--min-similarity <s>',
      key: 'minSimilarity',
      description: 'laion: drop rows whose CLIP similarity is below s (default: keep all)',
      type: 'number',
    },
  ],

  plan(row, options) {
    const url = typeof row.URL === 'string' ? row.URL : null;
    if (!url) return { kind: 'rejected', status: 'malformed', error: 'URL is empty', url };
    const reject = (error: string): RejectedRow => ({ kind: 'rejected', status: 'filtered', error, url });
    const score = (name: string) => (typeof row[name] === 'number' ? (row[name] as number) : undefined);
    const { maxPunsafe, maxPwatermark, minSimilarity } = options as { maxPunsafe?: number; maxPwatermark?: number; minSimilarity?: number };
    const punsafe = score('punsafe');
    const pwatermark = score('pwatermark');
    const similarity = score('similarity');
    if (maxPunsafe !== undefined && punsafe !== undefined && punsafe > maxPunsafe) return reject(`punsafe ${punsafe} > ${maxPunsafe}`);
    if (maxPwatermark !== undefined && pwatermark !== undefined && pwatermark > maxPwatermark) return reject(`pwatermark ${pwatermark} > ${maxPwatermark}`);
    if (minSimilarity !== undefined && similarity !== undefined && similarity < minSimilarity) return reject(`similarity ${similarity} < ${minSimilarity}`);
    const captionProblem = checkCaption(row.TEXT, options);
    if (captionProblem) return { ...captionProblem, url };
    return {
      kind: 'planned',
      images: [{ url }],
      payload: {
        caption: typeof row.TEXT === 'string' ? row.TEXT : '',
        fields: {
          similarity: similarity ?? null,
          punsafe: punsafe ?? null,
          pwatermark: pwatermark ?? null,
          // int64 hashes exceed JSON's safe integers: kept exact as a decimal string.
          hash: row.hash === null || row.hash === undefined ? null : String(row.hash),
          metadata_width: score('WIDTH') ?? null,
          metadata_height: score('HEIGHT') ?? null,
        },
      },
    };
  },

  assemble(key, payload, images) {
    return assemblePair(key, payload.caption, payload.fields, images);
  },
};
