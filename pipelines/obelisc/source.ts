import { assembleDocument, DOCUMENT_FLAGS, planDocument, repeatedUrls, type DocumentPayload, type RawImage } from '../engine/document-sample.ts';
import { parseJsonField } from '../engine/json-field.ts';
import type { SourceAdapter } from '../engine/source-adapter.ts';

/**
 * OBELICS web documents: `images` and `texts` are parallel lists, exactly one of the two non-null at each position;
 * `metadata` is a JSON list of the same length (null at text positions), `general_metadata` a JSON object.
 */
export const obelisc: SourceAdapter<DocumentPayload> = {
  name: 'obelisc',
  aliases: ['obelics'],
  summary: 'OBELICS interleaved web documents (images, texts, metadata, general_metadata)',
  layout: 'document',
  columns: [
    { name: 'images', type: 'string_list', required: true },
    { name: 'texts', type: 'string_list', required: true },
    { name: 'metadata', type: 'json_string', required: false },
    { name: 'general_metadata', type: 'json_string', required: false },
  ],
  // The OBELICS builders' image filters: jpg/png/webp, sides 150..20,000 px, aspect ratio at most 2.
  imageDefaults: { allowedFormats: ['jpeg', 'png', 'webp'], minSide: 150, maxSide: 20_000, maxAspectRatio: 2 },
  flags: DOCUMENT_FLAGS,
  prepare: repeatedUrls('images'),

  plan(row, options, context) {
    const images = Array.isArray(row.images) ? (row.images as (string | null)[]).map((url): RawImage => (url ? { url } : null)) : null;
    const texts = Array.isArray(row.texts) ? (row.texts as (string | null)[]) : null;
    return planDocument(images, texts, parseJsonField(row.metadata), parseJsonField(row.general_metadata), options, context as Map<string, number>);
  },

  assemble(key, payload, images, options) {
    return assembleDocument(key, payload, images, options);
  },
};
