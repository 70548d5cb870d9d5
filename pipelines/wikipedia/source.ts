import { M4Error } from '../../core/errors.ts';
import {
  assembleDocument,
  DOCUMENT_FLAGS,
  planDocument,
  repeatedUrls,
  type DocumentItem,
  type DocumentPayload,
  type ImagePrefilter,
  type RawImage,
} from '../engine/document-sample.ts';
import { DUMP_LINE_FIELD, readDump, sniffDump, type DumpLine } from '../engine/dump/read-dump.ts';
import { resolveImageOptions, type ImageOptions } from '../engine/image/image-options.ts';
import { inputFormatOf } from '../engine/metadata/input-format.ts';
import { parseJsonField } from '../engine/json-field.ts';
import type { ImageSource, PlannedRow, PrepareRequest, RejectedRow, Row, SourceAdapter, SourceFlag, SourceOptions } from '../engine/source-adapter.ts';
import { dumpDocument } from './dump-document.ts';
import { checkWikimediaBase, mirrored, renditionTarget, UPLOAD_HOST, type RenditionTarget } from './thumbnails.ts';

/**
 * English Wikipedia as interleaved documents. The input is either the Wikimedia Enterprise HTML dump as published
 * (`enwiki-NS0-...-ENTERPRISE-HTML.json.tar.gz`, its NDJSON members, gzip or not, or a folder of them), whose Parsoid
 * HTML is extracted here (extract-article.ts), or documents already in the OBELICS layout (what `m4data extract`
 * writes): `texts`, `images` (URLs, or Hugging Face Image structs holding the bytes), `metadata`, `general_metadata`.
 * Which one is decided from the files' first bytes.
 */

/**
 * Longest dump line held, 64 MiB. A page's wikitext is at most 2 MiB ($wgMaxArticleSize on Wikimedia wikis); its
 * Parsoid HTML runs to a few times that, and a dump line holds both, JSON-escaped (the 12 real pages here: the line is
 * 1.3x the HTML), so the largest articles stay well within it.
 */
export const MAX_LINE_BYTES = 64 << 20;

export const WIKIPEDIA_FLAGS: readonly SourceFlag[] = [
  ...DOCUMENT_FLAGS,
  {
    flag: '--max-line-bytes <n>',
    key: 'maxLineBytes',
    description: 'wikipedia dump: a record line longer than this is recorded as malformed without being read',
    type: 'integer',
    default: MAX_LINE_BYTES,
  },
  {
    flag: '--wikimedia-base <url>',
    key: 'wikimediaBase',
    description: 'wikipedia: fetch upload.wikimedia.org images from this base URL instead (a mirror or caching proxy; same paths)',
    type: 'string',
    default: `https://${UPLOAD_HOST}`,
  },
];

/** What `prepare` found: dump files to extract, or metadata rows (with the URL repeat counts) to read as they are. */
export type WikipediaContext =
  | {
      kind: 'dump';
      files: string[];
      maxLineBytes: number;
      network: PrepareRequest['network'];
      base: string;
      target: RenditionTarget;
      prefilter: ImagePrefilter;
    }
  | { kind: 'metadata'; repeated: Map<string, number>; base: string; prefilter: ImagePrefilter };

export const wikipedia: SourceAdapter<DocumentPayload> = {
  name: 'wikipedia',
  aliases: ['wiki'],
  summary: 'English Wikipedia: the Wikimedia Enterprise HTML dump, or documents in the OBELICS layout (texts, images, metadata, general_metadata)',
  layout: 'document',
  columns: [
    { name: 'texts', type: 'string_list', required: true },
    { name: 'images', type: 'image_list', required: true },
    { name: 'metadata', type: 'json_string', required: false },
    { name: 'general_metadata', type: 'json_string', required: false },
  ],
  // Wikipedia's maps, diagrams and panoramas are wider than web photos: aspect ratio up to 3 (OBELICS keeps 2).
  imageDefaults: { minSide: 150, maxSide: 20_000, maxAspectRatio: 3 },
  flags: WIKIPEDIA_FLAGS,
  prepare: prepareWikipedia,

  readRows(_inputs, { limit, context }) {
    const ctx = context as WikipediaContext;
    return ctx.kind === 'dump' ? readDump(ctx.files, { limit, maxLineBytes: ctx.maxLineBytes, network: ctx.network }) : undefined;
  },

  plan(row, options, context) {
    const ctx = context as WikipediaContext;
    if (DUMP_LINE_FIELD in row) {
      if (ctx.kind !== 'dump') throw new Error('a dump row reached a build of metadata');
      const document = dumpDocument(row[DUMP_LINE_FIELD] as DumpLine, ctx.target);
      if ('status' in document) return { kind: 'rejected', status: document.status, error: document.error };
      const images = document.images.map((url): RawImage => (url ? { url } : null));
      return fetchable(planDocument(images, document.texts, document.metadata, document.general_metadata, options, new Map(), ctx.prefilter), ctx);
    }
    const images = Array.isArray(row.images) ? (row.images as unknown[]).map(toImage) : null;
    const texts = Array.isArray(row.texts) ? (row.texts as (string | null)[]) : null;
    const repeated = ctx.kind === 'metadata' ? ctx.repeated : new Map<string, number>();
    return fetchable(planDocument(images, texts, parseJsonField(row.metadata), parseJsonField(row.general_metadata), options, repeated, ctx.prefilter), ctx);
  },

  assemble(key, payload, images, options) {
    return assembleDocument(key, payload, images, options);
  },

  extract(row: Row, _options: SourceOptions, context: unknown) {
    const document = dumpDocument(row[DUMP_LINE_FIELD] as DumpLine, (context as Extract<WikipediaContext, { kind: 'dump' }>).target);
    return 'status' in document ? { kind: 'none', ...document } : { kind: 'document', ...document };
  },
};

async function prepareWikipedia(inputs: readonly string[], request: PrepareRequest): Promise<WikipediaContext> {
  const { options, format, network } = request;
  const base = checkWikimediaBase(String(options.wikimediaBase));
  if (base === undefined)
    throw new M4Error('E_USAGE', 'wikipedia', `--wikimedia-base must be an http(s) URL without query, got ${JSON.stringify(options.wikimediaBase)}`);
  const maxLineBytes = Number(options.maxLineBytes);
  if (!(Number.isSafeInteger(maxLineBytes) && maxLineBytes >= 1))
    throw new M4Error('E_USAGE', 'wikipedia', `--max-line-bytes must be a whole number of at least 1, got ${options.maxLineBytes}`);
  const image = request.image ?? resolveImageOptions({ ...wikipedia.imageDefaults });
  // Loaded when a build runs: DuckDB and sharp are not needed to list the sources (`m4data build --help`).
  const { resolveInputs } = await import('../engine/metadata/read-metadata.ts');
  const prefilter = originalSizeFilter((await import('../engine/image/process-image.ts')).filterReason, image);
  const files = await resolveInputs(inputs);
  // --input-format says the inputs are metadata; so do the extensions of the formats a dump never has.
  // One file at a time: a folder of dump members on S3 is not opened all at once.
  const kinds: string[] = [];
  for (const file of files) kinds.push(format !== undefined || isMetadataName(file) ? 'other' : await sniffDump(file, isDumpRecord, maxLineBytes, network));
  const dumps = files.filter((_, i) => kinds[i] !== 'other');
  if (dumps.length === 0) return { kind: 'metadata', repeated: await repeatedUrls('images')(inputs, request), base, prefilter };
  if (dumps.length < files.length) {
    const other = files.find((_, i) => kinds[i] === 'other');
    throw new M4Error('E_USAGE', 'wikipedia', `the inputs mix a Wikipedia dump (${dumps[0]}) with other files (${other}): give one kind per build`);
  }
  return { kind: 'dump', files, maxLineBytes, network, base, target: renditionTarget(image), prefilter };
}

/** Parquet, csv, tsv and txt are metadata; json and jsonl may be either, and a name without a known extension (a `.tar.gz`) is looked at. */
function isMetadataName(file: string): boolean {
  const name = file
    .replace(/[?#].*$/, '')
    .toLowerCase()
    .replace(/\.(gz|zst)$/, '');
  const format = inputFormatOf(file);
  return format !== 'parquet' ? format === 'csv' || format === 'tsv' || format === 'txt' : name.endsWith('.parquet');
}

/** A dump record, told from a document of the OBELICS layout by its `article_body`. */
function isDumpRecord(record: unknown): boolean {
  return typeof record === 'object' && record !== null && 'article_body' in record;
}

/** A planned article's images as they are fetched (from the mirror when one is given), its texts merged. */
function fetchable(plan: PlannedRow<DocumentPayload> | RejectedRow, ctx: WikipediaContext): PlannedRow<DocumentPayload> | RejectedRow {
  if (plan.kind === 'rejected') return plan;
  // The images' metadata keeps the upload.wikimedia.org URLs.
  for (const source of plan.images) if (source.url) (source as { url: string }).url = mirrored(source.url, ctx.base);
  return { ...plan, payload: { ...plan.payload, items: mergeSections(plan.payload.items) } };
}

/**
 * Drops, before any download, an image whose original the image filters would refuse, when the metadata gives the
 * original's size (`m4data extract` and the dump do): the rendition has the original's proportions, and a bitmap's is
 * never larger than the original. A drawing (SVG) renders at any size, so only its proportions count.
 */
function originalSizeFilter(filterReason: (width: number, height: number, options: ImageOptions) => string | undefined, image: ImageOptions): ImagePrefilter {
  return (_source: ImageSource, metadata: unknown) => {
    const m = metadata as { original_width?: unknown; original_height?: unknown; scalable?: unknown } | null;
    const width = Number(m?.original_width);
    const height = Number(m?.original_height);
    if (!(width > 0 && height > 0)) return undefined;
    const reason = m?.scalable === true ? filterReason(width, height, { ...image, minSide: 0, maxSide: Infinity }) : filterReason(width, height, image);
    return reason === undefined ? undefined : `original ${reason}`;
  };
}

function toImage(value: unknown): RawImage {
  if (typeof value === 'string') return value === '' ? null : { url: value };
  const struct = value as { bytes?: Buffer | null } | null;
  return struct?.bytes && struct.bytes.length > 0 ? { bytes: struct.bytes } : null;
}

/**
 * Consecutive texts are joined with a blank line and whitespace-only texts dropped, so a document's tokens do not
 * depend on how its source happened to split it (one text per section or paragraph).
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
