import { assembleDocument, DOCUMENT_FLAGS, planDocument, repeatedUrls, type DocumentItem, type DocumentPayload, type RawImage } from '../engine/document-sample.ts';
import type { SourceAdapter } from '../engine/source-adapter.ts';
import { parseJsonField } from '../engine/json-field.ts';

/**
 * Multimodal English Wikipedia: the OBELICS document layout, with images given as URLs or, as the WIT images ship,
 * as bytes in the parquet (a list of Hugging Face Image structs).
 */
export const wikipedia: SourceAdapter<DocumentPayload> = {
  name: 'wikipedia',
  aliases: ['wiki'],
  summary: 'Wikipedia interleaved documents (texts, images as URLs or WIT image bytes, metadata, general_metadata)',
  layout: 'document',
  columns: [
    { name: 'texts', type: 'string_list', required: true },
    { name: 'images', type: 'image_list', required: true },
    { name: 'metadata', type: 'json_string', required: false },
    { name: 'general_metadata', type: 'json_string', required: false },
  ],
  // Wikipedia's maps, diagrams and panoramas are wider than web photos: aspect ratio up to 3 (OBELICS keeps 2).
  imageDefaults: { minSide: 150, maxSide: 20_000, maxAspectRatio: 3 },
  flags: DOCUMENT_FLAGS,
  prepare: repeatedUrls('images'),

  plan(row, options, context) {
    const images = Array.isArray(row.images) ? (row.images as unknown[]).map(toImage) : null;
    const texts = Array.isArray(row.texts) ? (row.texts as (string | null)[]) : null;
    const plan = planDocument(images, texts, parseJsonField(row.metadata), parseJsonField(row.general_metadata), options, context as Map<string, number>);
    if (plan.kind === 'rejected') return plan;
    return { ...plan, payload: { ...plan.payload, items: mergeSections(plan.payload.items) } };
  },

  assemble(key, payload, images, options) {
    return assembleDocument(key, payload, images, options);
  },
};

function toImage(value: unknown): RawImage {
  if (typeof value === 'string') return value === '' ? null : { url: value };
  const struct = value as { bytes?: Buffer | null } | null;
  return struct?.bytes && struct.bytes.length > 0 ? { bytes: struct.bytes } : null;
}

/**
 * Wikipedia dumps cut an article into one text per section or paragraph. Consecutive texts are joined with a blank
 * line (section titles stay as their own lines), and whitespace-only texts are dropped, so a document's tokens do not
 * depend on how the dump happened to split it.
 */
function mergeSections(items: DocumentItem[]): DocumentItem[] {
  const merged: DocumentItem[] = [];
  for (const item of items) {
    if (item.kind === 'image') {
      merged.push(item);
      continue;
    }
    const text = item.text.trim();
    if (text === '') continue;
    const last = merged[merged.length - 1];
    if (last?.kind === 'text') last.text = `${last.text}\n\n${text}`;
    else merged.push({ kind: 'text', text });
  }
  return merged;
}
