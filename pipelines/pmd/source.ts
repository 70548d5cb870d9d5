import { assemblePair, checkCaption, WORD_FLAGS } from '../engine/pair-sample.ts';
import { MAX_TEXT_BYTES, maxTextBytesFlag } from '../engine/text-bound.ts';
import { parseJsonField } from '../engine/json-field.ts';
import type { ImageSource, SourceAdapter } from '../engine/source-adapter.ts';

/** PMD (facebook/pmd): pairs whose image is either a URL (`image_url`) or bytes in the parquet (`image`), per row. */
interface PmdPayload {
  caption: string;
  fields: Record<string, unknown>;
}

export const pmd: SourceAdapter<PmdPayload> = {
  name: 'pmd',
  aliases: [],
  summary: "PMD image-text pairs (text, source, meta, and image_url or image bytes as Hugging Face's Image feature stores them)",
  layout: 'pair',
  columns: [
    { name: 'text', type: 'string', required: true },
    { name: 'source', type: 'string', required: false },
    { name: 'meta', type: 'json_string', required: false },
    { name: 'image_url', type: 'string', required: false },
    { name: 'image', type: 'image_struct', required: false },
  ],
  imageDefaults: {},
  // Localized Narratives captions run long, so PMD keeps no upper word bound by default.
  flags: [WORD_FLAGS[0], { ...WORD_FLAGS[1], default: undefined }, maxTextBytesFlag(MAX_TEXT_BYTES.pmd)],

  plan(row, options) {
    const url = typeof row.image_url === 'string' && row.image_url !== '' ? row.image_url : null;
    const struct = row.image as { bytes: Buffer | null; path: string | null } | null;
    let image: ImageSource;
    if (struct?.bytes && struct.bytes.length > 0) image = url ? { bytes: struct.bytes, url } : { bytes: struct.bytes };
    else if (url) image = { url };
    else return { kind: 'rejected', status: 'malformed', error: 'row has neither image_url nor image bytes', url: null };
    const captionProblem = checkCaption(row.text, options);
    if (captionProblem) return { ...captionProblem, url };
    return {
      kind: 'planned',
      images: [image],
      payload: {
        caption: typeof row.text === 'string' ? row.text : '',
        fields: { source: row.source ?? null, meta: parseJsonField(row.meta), image_path: struct?.path ?? null, inline_image: 'bytes' in image },
      },
    };
  },

  assemble(key, payload, images) {
    return assemblePair(key, payload.caption, payload.fields, images);
  },
};
