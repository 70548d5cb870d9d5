import type { ParquetColumn } from './metadata/write-parquet.ts';

/** What became of an input row (or of one image of a document): img2dataset's statuses plus `malformed`. */
export const STATUSES = ['success', 'failed_to_download', 'failed_to_decode', 'filtered', 'opted_out', 'malformed'] as const;
export type Status = (typeof STATUSES)[number];

/** One row of `{shard}.outcomes.parquet`: every input row of the shard appears exactly once. */
export interface RowOutcome {
  key: string;
  /** Position of the row in the input, 0-based across all input files. */
  row: number;
  url: string | null;
  status: Status;
  error_message: string | null;
  /** Images the sample kept, and images the row named. */
  images: number;
  images_total: number;
  original_width: number | null;
  original_height: number | null;
  width: number | null;
  height: number | null;
  /** Bytes of the sample in the tar (0 when not packed). */
  bytes: number;
  tokens: number;
  /** Rows read from a dump: the input file, the tar member (null for an NDJSON file) and the 1-based line. */
  input_file?: string;
  input_member?: string | null;
  input_line?: number;
}

export const OUTCOME_SCHEMA: ParquetColumn[] = [
  { name: 'key', type: 'VARCHAR' },
  { name: 'row', type: 'BIGINT' },
  { name: 'url', type: 'VARCHAR' },
  { name: 'status', type: 'VARCHAR' },
  { name: 'error_message', type: 'VARCHAR' },
  { name: 'images', type: 'INTEGER' },
  { name: 'images_total', type: 'INTEGER' },
  { name: 'original_width', type: 'INTEGER' },
  { name: 'original_height', type: 'INTEGER' },
  { name: 'width', type: 'INTEGER' },
  { name: 'height', type: 'INTEGER' },
  { name: 'bytes', type: 'BIGINT' },
  { name: 'tokens', type: 'BIGINT' },
];

/** The outcome columns of a shard: with the dump position of each row when its rows came from a dump. */
export function outcomeSchema(outcomes: readonly RowOutcome[]): ParquetColumn[] {
  if (!outcomes.some((o) => o.input_line !== undefined)) return OUTCOME_SCHEMA;
  return [...OUTCOME_SCHEMA, { name: 'input_file', type: 'VARCHAR' }, { name: 'input_member', type: 'VARCHAR' }, { name: 'input_line', type: 'BIGINT' }];
}

/** One row of `{shard}.images.parquet` (document sources): every image position of every input document. */
export const IMAGE_OUTCOME_SCHEMA: ParquetColumn[] = [
  { name: 'key', type: 'VARCHAR' },
  { name: 'row', type: 'BIGINT' },
  { name: 'position', type: 'INTEGER' },
  { name: 'url', type: 'VARCHAR' },
  { name: 'status', type: 'VARCHAR' },
  { name: 'error', type: 'VARCHAR' },
  { name: 'field', type: 'VARCHAR' },
  { name: 'original_width', type: 'INTEGER' },
  { name: 'original_height', type: 'INTEGER' },
  { name: 'width', type: 'INTEGER' },
  { name: 'height', type: 'INTEGER' },
];

export type StatusCounts = Record<Status, number>;

export function emptyCounts(): StatusCounts {
  return Object.fromEntries(STATUSES.map((s) => [s, 0])) as StatusCounts;
}

export function addCounts(into: StatusCounts, from: Partial<StatusCounts>): StatusCounts {
  for (const s of STATUSES) into[s] += from[s] ?? 0;
  return into;
}

/** `{shard}.stats.json`, img2dataset's `_stats.json` plus what a merge needs; written last, so it marks a shard done. */
export interface ShardStats {
  format: 'm4data-shard-stats';
  version: 1;
  shard: string;
  /** Shard number k: it holds input rows [k * samplesPerShard, (k + 1) * samplesPerShard). */
  index: number;
  firstRow: number;
  rows: number;
  count: number;
  successes: number;
  status: StatusCounts;
  /** Most frequent error messages with their counts, for a quick look without opening the parquet. */
  topErrors: { error: string; count: number }[];
}

/** The most frequent messages with their counts, most frequent first (ties by message), for stats and summaries. */
export function topErrors(errors: Map<string, number>, n = 10): { error: string; count: number }[] {
  return [...errors.entries()]
    .map(([error, count]) => ({ error, count }))
    .sort((a, b) => b.count - a.count || (a.error < b.error ? -1 : 1))
    .slice(0, n);
}
