import type { ColumnSpec } from './metadata/columns.ts';
import type { RowBatch } from './dump/read-dump.ts';
import type { ImageOptions, OutputFormat } from './image/image-options.ts';
import type { Status } from './outcomes.ts';
import type { InputFormat } from './metadata/input-format.ts';
import type { OpenOptions } from '../../shards/storage/open.ts';

/**
 * What a source folder provides: its row schema, and how a row becomes a sample. Everything else (reading parquet,
 * fetching, image work, shards, outcomes) is the engine's and is written once.
 */
export type Row = Record<string, unknown>;

/** Where one image of a row comes from: a URL to download, or bytes stored in the parquet. */
export type ImageSource = { url: string } | { bytes: Buffer; url?: string };

/** What became of one image position of a document (`{shard}.images.parquet`); every image URL of the input gets one. */
export interface ImageRecord {
  /** Position in the document's images/texts lists. */
  position: number;
  url: string | null;
  status: Status;
  error: string | null;
  /** The sample field holding it (`0.jpg`) when it was kept. */
  field: string | null;
  original_width: number | null;
  original_height: number | null;
  width: number | null;
  height: number | null;
}

/** A row the source could not or would not use before any download (a metadata filter, a malformed row). */
export interface RejectedRow {
  kind: 'rejected';
  status: 'filtered' | 'malformed';
  error: string;
  /** The row's image URL when it has one, for the outcome record. */
  url?: string | null;
  imageRecords?: ImageRecord[];
}

export interface PlannedRow<P> {
  kind: 'planned';
  images: ImageSource[];
  /** Whatever the source needs again to assemble the sample (caption, metadata). */
  payload: P;
}

export type ImageOutcome =
  | { ok: true; source: ImageSource; bytes: Buffer; format: OutputFormat; width: number; height: number; originalWidth: number; originalHeight: number }
  | { ok: false; source: ImageSource; status: Exclude<Status, 'success' | 'malformed'>; error: string; originalWidth?: number; originalHeight?: number };

/** A sample ready for the shard: its fields, and what the manifest counts. */
export interface AssembledSample {
  kind: 'sample';
  fields: Record<string, Uint8Array>;
  images: number;
  tokens: number;
  imageRecords?: ImageRecord[];
  /** Something worth counting about a packed row (metadata kept unparsed): its outcome's `error_message`. */
  note?: string;
}

/** A row dropped after its images were tried (its only image failed, or a document kept no image). */
export interface DroppedRow {
  kind: 'dropped';
  status: Exclude<Status, 'success'>;
  error: string;
  imageRecords?: ImageRecord[];
}

/** What `prepare` reads the inputs with: the build's source options, and how the rows will be read. */
export interface PrepareRequest {
  options: SourceOptions;
  /** The source's whole schema, checked before anything else is read from an input. */
  columns: readonly ColumnSpec[];
  limit?: number;
  format?: InputFormat;
  /** How remote inputs are reached (the private-network rule). */
  network?: OpenOptions;
  /** The build's image settings (the Wikipedia dump chooses its image renditions by them). */
  image?: ImageOptions;
}

/** A source-specific flag of `m4data build`. */
export interface SourceFlag {
  /** Commander flag syntax, e.g. `--max-punsafe <p>`. */
  flag: string;
  /** Key in the source options object, e.g. `maxPunsafe`. */
  key: string;
  description: string;
  type: 'number' | 'integer' | 'boolean' | 'string';
  default?: number | boolean | string;
}

export type SourceOptions = Record<string, number | boolean | string | undefined>;

/** A row as a document in the OBELICS layout (`m4data extract`), or the reason it is none. */
export type ExtractedRow =
  | { kind: 'document'; texts: (string | null)[]; images: (string | null)[]; metadata: unknown[]; general_metadata: unknown }
  | { kind: 'none'; status: 'filtered' | 'malformed'; error: string };

export interface SourceAdapter<P = unknown> {
  name: string;
  aliases: readonly string[];
  summary: string;
  /** Whether a sample holds one image-text pair or a whole interleaved document. */
  layout: 'pair' | 'document';
  columns: readonly ColumnSpec[];
  /** Image filters this source's published builders used, applied unless the user overrides them. */
  imageDefaults: Partial<ImageOptions>;
  flags: readonly SourceFlag[];
  /** Work over the whole input before any row is planned (e.g. counting repeated URLs); its result reaches `plan`. */
  prepare?(inputs: readonly string[], request: PrepareRequest): Promise<unknown>;
  /**
   * Rows the source reads itself rather than as metadata tables (the Wikipedia dump), in their order, each batch with
   * the origin of its rows; undefined when the inputs are metadata after all, for readMetadata. `context` is what
   * `prepare` returned.
   */
  readRows?(inputs: readonly string[], request: PrepareRequest & { context: unknown }): AsyncIterable<RowBatch> | undefined;
  /** `m4data extract`: a row as a document, without downloading anything. */
  extract?(row: Row, options: SourceOptions, context: unknown): ExtractedRow;
  plan(row: Row, options: SourceOptions, context: unknown): PlannedRow<P> | RejectedRow;
  assemble(key: string, payload: P, images: ImageOutcome[], options: SourceOptions): AssembledSample | DroppedRow;
}

/** The URL an outcome record names for a source: the first image URL, if any. */
export function firstUrl(images: readonly ImageSource[]): string | null {
  for (const image of images) if (image.url) return image.url;
  return null;
}
