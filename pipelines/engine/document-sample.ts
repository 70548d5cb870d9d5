import { countTokens, documentSegments } from '../../trainer-bridge/token-layout.ts';
import { MAX_TEXT_BYTES, maxTextBytesFlag, textTooLong } from './text-bound.ts';
import type {
  AssembledSample,
  DroppedRow,
  ImageOutcome,
  ImageRecord,
  ImageSource,
  PlannedRow,
  RejectedRow,
  SourceFlag,
  SourceOptions,
  PrepareRequest,
} from './source-adapter.ts';

/**
 * Interleaved web documents (OBELICS, Wikipedia): the rules the published builders applied, shared by every document
 * source. A document is a list of positions, each exactly one text or one image.
 */
export type DocumentItem = { kind: 'text'; text: string } | { kind: 'image'; position: number; source: ImageSource; metadata: unknown };

export interface DocumentPayload {
  items: DocumentItem[];
  /** Image positions removed before any download (URL repeated across documents), with their records. */
  removed: ImageRecord[];
  generalMetadata: unknown;
  /** The `metadata` column's text when it is not JSON: the sample keeps it in place of the per-image list. */
  unparsedMetadata?: string;
}

export interface DocumentOptions {
  minImages: number;
  maxImages: number;
  maxUrlRepeats: number;
  strictDocs: boolean;
}

export const DOCUMENT_FLAGS: readonly SourceFlag[] = [
  { flag: '--min-images <n>', key: 'minImages', description: 'documents: drop documents left with fewer images', type: 'integer', default: 1 },
  { flag: '--max-images <n>', key: 'maxImages', description: 'documents: drop documents with more images', type: 'integer', default: 30 },
  {
    flag: '--max-url-repeats <n>',
    key: 'maxUrlRepeats',
    description: 'documents: remove image URLs found in more than n documents of the input',
    type: 'integer',
    default: 10,
  },
  {
    flag: '--strict-docs',
    key: 'strictDocs',
    description: 'documents: drop a document when any of its images fails (default: drop the image, keep the document)',
    type: 'boolean',
    default: false,
  },
  maxTextBytesFlag(MAX_TEXT_BYTES.document),
];

export function documentOptions(options: SourceOptions): DocumentOptions {
  return {
    minImages: options.minImages as number,
    maxImages: options.maxImages as number,
    maxUrlRepeats: options.maxUrlRepeats as number,
    strictDocs: options.strictDocs === true,
  };
}

/** Counts, with one DuckDB query over the input, the image URLs that appear in more than `maxUrlRepeats` documents. */
export function repeatedUrls(column: string) {
  return async (inputs: readonly string[], request: PrepareRequest): Promise<Map<string, number>> =>
    // Loaded when a build runs: DuckDB is not needed to list the sources (`m4data build --help`).
    (await import('./metadata/count-url-repeats.ts')).countRepeatedUrls([...inputs], {
      column,
      columns: request.columns,
      threshold: documentOptions(request.options).maxUrlRepeats,
      limit: request.limit,
      format: request.format,
      network: request.network,
    });
}

/** An image position as the source found it: a URL, or bytes stored in the parquet. */
export type RawImage = ImageSource | null;

/** Why a source drops an image before downloading it (its metadata says it fails a filter), or undefined. */
export type ImagePrefilter = (source: ImageSource, metadata: unknown) => string | undefined;

/**
 * Checks a document's lists and plans its downloads. Malformed (lists of different lengths, a position with both or
 * neither) is recorded with the position, never guessed at. Images whose URL is repeated across documents, or that
 * `prefilter` drops, are recorded as filtered and not downloaded.
 */
export function planDocument(
  images: RawImage[] | null,
  texts: (string | null)[] | null,
  /** The `metadata` column: a list parallel to the positions, or the text of one that is not JSON (kept as it is). */
  metadata: unknown,
  generalMetadata: unknown,
  options: SourceOptions,
  repeated: Map<string, number>,
  prefilter?: ImagePrefilter,
): PlannedRow<DocumentPayload> | RejectedRow {
  const opts = documentOptions(options);
  const imageList = images ?? [];
  const textList = texts ?? [];
  const records = (status: 'malformed' | 'filtered', error: string) =>
    imageList.flatMap((image, position) => (image ? [record(position, image, status, error)] : []));
  const reject = (status: 'malformed' | 'filtered', error: string): RejectedRow => ({
    kind: 'rejected',
    status,
    error,
    url: firstImageUrl(imageList),
    imageRecords: records(status, `document ${status}: ${error}`),
  });

  if (images === null || texts === null) return reject('malformed', `the ${images === null ? 'images' : 'texts'} list is null`);
  if (imageList.length !== textList.length) return reject('malformed', `images has ${imageList.length} entries, texts ${textList.length}`);
  const tooLong = textTooLong(
    textList.filter((t): t is string => typeof t === 'string'),
    options,
    'document text',
  );
  if (tooLong) return reject('filtered', tooLong);
  const items: DocumentItem[] = [];
  for (let position = 0; position < imageList.length; position++) {
    const image = imageList[position];
    const text = textList[position];
    if (image && text !== null && text !== undefined) return reject('malformed', `position ${position} has both an image and a text`);
    if (!image && (text === null || text === undefined)) return reject('malformed', `position ${position} has neither an image nor a text`);
    if (image) items.push({ kind: 'image', position, source: image, metadata: Array.isArray(metadata) ? (metadata[position] ?? null) : null });
    else items.push({ kind: 'text', text: text! });
  }

  const imageCount = items.filter((i) => i.kind === 'image').length;
  if (imageCount > opts.maxImages) return reject('filtered', `document has ${imageCount} images > ${opts.maxImages}`);
  if (!items.some((i) => i.kind === 'text' && i.text.trim() !== '')) return reject('filtered', 'document has no text');

  const removed: ImageRecord[] = [];
  const kept = items.filter((item) => {
    if (item.kind !== 'image') return true;
    const documents = item.source.url ? repeated.get(item.source.url) : undefined;
    const reason = documents !== undefined ? `url in ${documents} documents > ${opts.maxUrlRepeats}` : prefilter?.(item.source, item.metadata);
    if (reason === undefined) return true;
    removed.push(record(item.position, item.source, 'filtered', reason));
    return false;
  });
  const planned = kept.filter((i): i is Extract<DocumentItem, { kind: 'image' }> => i.kind === 'image');
  if (planned.length < opts.minImages) {
    const removedWhat = prefilter ? 'repeated URLs and filtered images' : 'repeated URLs';
    const reason = imageCount === 0 ? 'document has no image' : `document has ${planned.length} images left < ${opts.minImages} after removing ${removedWhat}`;
    return {
      ...reject('filtered', reason),
      imageRecords: [...removed, ...planned.map((i) => record(i.position, i.source, 'filtered', `document filtered: ${reason}`))],
    };
  }
  const unparsedMetadata = typeof metadata === 'string' ? metadata : undefined;
  return {
    kind: 'planned',
    images: planned.map((i) => i.source),
    payload: { items: kept, removed, generalMetadata, ...(unparsedMetadata !== undefined ? { unparsedMetadata } : {}) },
  };
}

/**
 * The sample of a document, in order: `key.json` holds `texts` and `images` as parallel lists (an image entry names
 * its field, e.g. "0.jpg"), the images' metadata, general_metadata and the token count; the images are `key.0.jpg`,
 * `key.1.jpg`, ... A failed image is dropped and the document kept while it still has enough images, unless strict.
 */
export function assembleDocument(key: string, payload: DocumentPayload, outcomes: ImageOutcome[], options: SourceOptions): AssembledSample | DroppedRow {
  const opts = documentOptions(options);
  const records: ImageRecord[] = [...payload.removed];
  const fields: Record<string, Uint8Array> = {};
  const texts: (string | null)[] = [];
  const images: (string | null)[] = [];
  const metadata: unknown[] = [];
  const failures: string[] = [];
  let firstFailure: DroppedRow['status'] | undefined;
  let next = 0;
  let kept = 0;
  for (const item of payload.items) {
    if (item.kind === 'text') {
      texts.push(item.text);
      images.push(null);
      metadata.push(null);
      continue;
    }
    const outcome = outcomes[next++]!;
    if (!outcome.ok) {
      firstFailure ??= outcome.status;
      failures.push(`image ${item.position}: ${outcome.error}`);
      records.push({
        ...record(item.position, item.source, outcome.status, outcome.error),
        original_width: outcome.originalWidth ?? null,
        original_height: outcome.originalHeight ?? null,
      });
      continue;
    }
    const field = `${kept++}.${outcome.format}`;
    fields[field] = outcome.bytes;
    texts.push(null);
    images.push(field);
    metadata.push(item.metadata);
    records.push({
      position: item.position,
      url: item.source.url ?? null,
      status: 'success',
      error: null,
      field,
      original_width: outcome.originalWidth,
      original_height: outcome.originalHeight,
      width: outcome.width,
      height: outcome.height,
    });
  }
  records.sort((a, b) => a.position - b.position);

  const drop = (error: string): DroppedRow => ({
    kind: 'dropped',
    status: firstFailure ?? 'filtered',
    error,
    // Images that did download are not in any sample either: say so, and why.
    imageRecords: records.map((r) => (r.status === 'success' ? { ...r, status: 'filtered' as const, error: `document dropped: ${error}`, field: null } : r)),
  });
  if (opts.strictDocs && failures.length > 0) return drop(`strict: ${failures[0]}${failures.length > 1 ? ` (+${failures.length - 1} more)` : ''}`);
  if (kept < opts.minImages) return drop(`no image left (${failures.slice(0, 3).join('; ')}${failures.length > 3 ? '; ...' : ''})`);

  const segments = documentSegments(texts.map((text) => (text === null ? { image: true as const } : { text })));
  const tokens = countTokens(segments);
  const json = { key, texts, images, metadata: payload.unparsedMetadata ?? metadata, general_metadata: payload.generalMetadata, tokens };
  fields.json = Buffer.from(JSON.stringify(json));
  const note = payload.unparsedMetadata !== undefined ? UNPARSED_METADATA : undefined;
  return { kind: 'sample', fields, images: kept, tokens, imageRecords: records, ...(note ? { note } : {}) };
}

/** The outcome note of a document kept with metadata that does not parse, counted among the build's reasons. */
export const UNPARSED_METADATA = 'metadata is not JSON: kept as its text';

function record(position: number, source: ImageSource, status: ImageRecord['status'], error: string): ImageRecord {
  return { position, url: source.url ?? null, status, error, field: null, original_width: null, original_height: null, width: null, height: null };
}

function firstImageUrl(images: RawImage[]): string | null {
  for (const image of images) if (image?.url) return image.url;
  return null;
}
