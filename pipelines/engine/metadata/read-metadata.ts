import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DuckDBBlobValue,
  DuckDBListValue,
  DuckDBStructValue,
  DuckDBBlobVector,
  DuckDBStructVector,
  DuckDBVarCharVector,
  type DuckDBConnection,
  type DuckDBDataChunk,
  type DuckDBVector,
} from '@duckdb/node-api';
import { M4Error, errorMessage } from '../../../core/errors.ts';
import { checkColumns, type ColumnSpec, type SourceColumn } from './columns.ts';
import { openConnection, withConnection } from './duckdb.ts';
import { sqlName, sqlString } from './sql-text.ts';
import { inputFormatOf, scanSql, type InputFormat } from './input-format.ts';
import { isUrl } from '../../../shards/storage/location.ts';
import type { OpenOptions } from '../../../shards/storage/open.ts';

export interface ReadMetadataOptions {
  /** The columns to read, and only these (projection); a row holds one field per spec. */
  columns: ColumnSpec[];
  /** Stop after this many rows across all inputs; default: no limit. */
  limit?: number;
  /** Rows per batch, the last one possibly fewer; default 2048. */
  batchSize?: number;
  /** Folder for the temporary copies of remote files; default os.tmpdir(). */
  tempDir?: string;
  /** The inputs' format; default: each file's extension (see inputFormatOf), parquet when it names none. */
  format?: InputFormat;
  /** How remote inputs are reached (the private-network rule). */
  network?: OpenOptions;
}

export interface MetadataBatch {
  rows: Record<string, unknown>[];
  /** Position of rows[0] among all rows of all inputs, from 0. */
  firstIndex: number;
}

/**
 * Streams the rows of metadata files (parquet, or csv, tsv, json, jsonl, txt: see input-format.ts) in a deterministic
 * order: inputs in the order given, the files a glob matches in sorted order, rows in file order. Each file's schema
 * is checked against `columns` before it is read; memory stays flat however large the files, as rows are converted
 * one DuckDB chunk (2048 rows) at a time.
 */
export async function* readMetadata(inputs: string[], options: ReadMetadataOptions): AsyncIterable<MetadataBatch> {
  const batchSize = options.batchSize ?? 2048;
  checkCount('batchSize', batchSize, 1);
  if (options.limit !== undefined) checkCount('limit', options.limit, 0);
  if (options.columns.length === 0) throw new M4Error('E_USAGE', 'metadata', 'readMetadata needs at least one column');
  let remaining = options.limit ?? Infinity;
  const files = await resolveInputs(inputs);
  if (remaining === 0) return;

  const connection = await openConnection();
  let pending: Record<string, unknown>[] = [];
  let firstIndex = 0;
  try {
    for (const location of files) {
      const local = await localFile(location, options.tempDir ?? tmpdir(), options.network);
      try {
        const input = await describeInput(connection, local.path, location, inputFormatOf(location, options.format), options.columns);
        const present = checkColumns(location, input.columns, options.columns);
        const read = planRead(input.scan, options.columns, new Set(present), remaining);
        const result = await connection.stream(read.sql);
        for (let chunk = await result.fetchChunk(); chunk && chunk.rowCount > 0; chunk = await result.fetchChunk()) {
          const rows = read.convert(chunk);
          remaining -= rows.length;
          pending = pending.length === 0 ? rows : pending.concat(rows);
          let start = 0;
          for (; pending.length - start >= batchSize; start += batchSize) {
            yield { rows: pending.slice(start, start + batchSize), firstIndex };
            firstIndex += batchSize;
          }
          pending = start === 0 ? pending : pending.slice(start);
        }
      } finally {
        await local.remove();
      }
      if (remaining === 0) break;
    }
    if (pending.length > 0) yield { rows: pending, firstIndex };
  } finally {
    connection.disconnectSync();
  }
}

/** Throws M4Error E_USAGE unless `value` is an integer >= `min`. */
export function checkCount(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new M4Error('E_USAGE', 'metadata', `${name} must be an integer >= ${min}, got ${value}`);
  }
}

/**
 * The files behind the inputs, in reading order: URLs (file://, s3://, http(s)://) as given, local paths
 * checked to exist, local globs expanded and sorted, a local folder as the files in it (sorted, hidden ones left out).
 * Throws M4Error E_NOT_FOUND for a missing file, an empty glob or an empty folder.
 */
export async function resolveInputs(inputs: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const input of inputs) {
    if (isUrl(input)) {
      files.push(input);
    } else if (/[*?[]/.test(input)) {
      const matches = await withConnection(async (connection) => {
        const reader = await connection.runAndReadAll(`SELECT file FROM glob(${sqlString(input)})`);
        return reader.getColumnsJS()[0] as string[] | undefined;
      });
      if (!matches?.length) throw new M4Error('E_NOT_FOUND', 'metadata', `no file matches ${input}`, { input });
      files.push(...matches.sort());
    } else {
      const info = await stat(input).catch(() => undefined);
      if (info?.isDirectory()) {
        const entries = (await readdir(input, { withFileTypes: true })).filter((e) => e.isFile() && !e.name.startsWith('.'));
        if (entries.length === 0) throw new M4Error('E_NOT_FOUND', 'metadata', `no file in folder ${input}`, { input });
        files.push(...entries.map((e) => join(input, e.name)).sort());
        continue;
      }
      if (!info?.isFile()) throw new M4Error('E_NOT_FOUND', 'metadata', `no such file: ${input}`, { input });
      files.push(input);
    }
  }
  return files;
}

/** A path DuckDB can read for one input; `remove` deletes it when it is a temporary copy. */
export interface LocalFile {
  path: string;
  remove(): Promise<void>;
}

/**
 * A local path for one resolved input: the input itself, or for a URL a temporary copy made through the
 * storage layer (DuckDB cannot reach remote files here: httpfs is not bundled and cannot be downloaded).
 * Copying whole files is the simple first step; ranged reads of the footer and the needed column chunks are a later improvement.
 */
export async function localFile(location: string, tempDir: string, network: OpenOptions = {}): Promise<LocalFile> {
  if (!isUrl(location)) return { path: location, remove: async () => {} };
  // Loaded on first use: it pulls in the S3 and HTTP clients, which local reads do not need.
  const { openObject } = await import('../../../shards/storage/open.ts');
  const { storage, key } = openObject(location, network);
  const dir = await mkdtemp(join(tempDir, 'm4data-parquet-'));
  const remove = () => rm(dir, { recursive: true, force: true });
  // The name keeps the input's own, extension included: DuckDB sees compressed text (`.csv.gz`) by it.
  const path = join(dir, basename(location.replace(/[?#].*$/, '')) || 'input');
  try {
    await pipeline(Readable.from(storage.read(key)), createWriteStream(path));
  } catch (err) {
    await remove();
    throw err;
  }
  return { path, remove };
}

/** One input file as DuckDB reads it: its columns, and the table function (`scan`) that reads it. */
export interface DescribedInput {
  columns: SourceColumn[];
  scan: string;
}

/**
 * The columns of a metadata file in `format`; `shownAs` names it in errors, and the text columns among `specs` are
 * read as text whatever csv sniffing guesses. Throws M4Error E_INPUT when the file cannot be read in that format.
 */
export async function describeInput(
  connection: DuckDBConnection,
  path: string,
  shownAs: string,
  format: InputFormat,
  specs: readonly ColumnSpec[] = [],
): Promise<DescribedInput> {
  let columns = await describeScan(connection, scanSql(path, format), shownAs, format);
  if (format === 'csv' || format === 'tsv') {
    const text = specs.filter((s) => (s.type === 'string' || s.type === 'json_string') && columns.some((c) => c.name === s.name)).map((s) => s.name);
    if (text.length > 0) {
      const scan = scanSql(path, format, text);
      columns = await describeScan(connection, scan, shownAs, format);
      return { columns, scan };
    }
  }
  return { columns, scan: scanSql(path, format) };
}

async function describeScan(connection: DuckDBConnection, scan: string, shownAs: string, format: InputFormat): Promise<SourceColumn[]> {
  let prepared;
  try {
    // Preparing binds the query, which reads a parquet footer, or sniffs the start of a text file.
    prepared = await connection.prepare(`SELECT * FROM ${scan}`);
  } catch (err) {
    const message = errorMessage(err);
    if (format === 'parquet' && /magic bytes|too small to be a Parquet file/i.test(message)) {
      const hint = 'for csv, tsv, json, jsonl or txt metadata give --input-format or the matching extension';
      throw new M4Error('E_INPUT', 'metadata', `${shownAs} is not a parquet file (${hint})`, { file: shownAs }, { cause: err });
    }
    throw new M4Error('E_INPUT', 'metadata', `${shownAs}: cannot read as ${format}: ${message.split('\n')[0]}`, { file: shownAs, format }, { cause: err });
  }
  const columns: SourceColumn[] = [];
  for (let i = 0; i < prepared.columnCount; i++) columns.push({ name: prepared.columnName(i), type: prepared.columnType(i) });
  prepared.destroySync();
  return columns;
}

interface ReadPlan {
  sql: string;
  convert(chunk: DuckDBDataChunk): Record<string, unknown>[];
}

/**
 * The query for one file and the conversion of its chunks to rows. Text columns (strings and string lists)
 * travel as one `to_json` document per row, which is much faster than reading each string from its vector
 * (one native call per string); numbers and BLOBs, which JSON would mangle (NaN, int64, bytes), are read from
 * their vectors. Absent optional columns are selected as typed NULLs so every column takes the same path.
 */
function planRead(scan: string, specs: readonly ColumnSpec[], present: ReadonlySet<ColumnSpec>, limit: number): ReadPlan {
  const textSpecs = specs.filter((s) => !isVectorSpec(s));
  const vectorSpecs = specs.filter(isVectorSpec);
  const select: string[] = [];
  if (textSpecs.length > 0) {
    select.push(`to_json(struct_pack(${textSpecs.map((s) => `${sqlName(s.name)} := ${selectExpression(s, present.has(s))}`).join(', ')}))`);
  }
  for (const spec of vectorSpecs) select.push(selectExpression(spec, present.has(spec)));
  const sql = `SELECT ${select.join(', ')} FROM ${scan}${limit === Infinity ? '' : ` LIMIT ${limit}`}`;

  return {
    sql,
    convert(chunk) {
      const count = chunk.rowCount;
      const rows: Record<string, unknown>[] = new Array(count);
      let column = 0;
      if (textSpecs.length > 0) {
        const json = chunk.getColumnVector(column++);
        for (let i = 0; i < count; i++) rows[i] = JSON.parse(json.getItem(i) as string) as Record<string, unknown>;
      } else {
        for (let i = 0; i < count; i++) rows[i] = {};
      }
      for (const spec of vectorSpecs) readVector(chunk.getColumnVector(column++), spec, rows);
      return rows;
    },
  };
}

function selectExpression(spec: ColumnSpec, present: boolean): string {
  const column = present ? sqlName(spec.name) : 'NULL';
  switch (spec.type) {
    case 'string':
    case 'json_string':
      // The cast turns a JSON-typed column into text: to_json would embed it as an object.
      return `CAST(${column} AS VARCHAR)`;
    case 'string_list':
      return `CAST(${column} AS VARCHAR[])`;
    case 'number':
      return `CAST(${column} AS DOUBLE)`;
    case 'integer':
      return present ? column : 'CAST(NULL AS INTEGER)';
    case 'bytes':
      return `CAST(${column} AS BLOB)`;
    case 'image_struct':
      return present ? column : 'CAST(NULL AS STRUCT(bytes BLOB, path VARCHAR))';
    case 'image_list':
      return present ? column : 'CAST(NULL AS VARCHAR[])';
  }
}

type VectorSpec = ColumnSpec & { type: 'number' | 'integer' | 'bytes' | 'image_struct' | 'image_list' };

function isVectorSpec(spec: ColumnSpec): spec is VectorSpec {
  return spec.type === 'number' || spec.type === 'integer' || spec.type === 'bytes' || spec.type === 'image_struct' || spec.type === 'image_list';
}

/** Sets `spec.name` on every row from a vector of the type `selectExpression` gives that spec. */
function readVector(vector: DuckDBVector, spec: VectorSpec, rows: Record<string, unknown>[]): void {
  const name = spec.name;
  switch (spec.type) {
    case 'number':
      for (let i = 0; i < rows.length; i++) rows[i]![name] = vector.getItem(i);
      return;
    case 'integer':
      for (let i = 0; i < rows.length; i++) rows[i]![name] = toInteger(vector.getItem(i) as number | bigint | null);
      return;
    case 'bytes': {
      const blobs = expectVector(vector, DuckDBBlobVector);
      for (let i = 0; i < rows.length; i++) rows[i]![name] = copyBytes(blobs.getItemBytes(i));
      return;
    }
    case 'image_struct': {
      const struct = expectVector(vector, DuckDBStructVector);
      const bytes = expectVector(struct.entryVectorAt(struct.type.indexForEntry('bytes')), DuckDBBlobVector);
      const paths = expectVector(struct.entryVectorAt(struct.type.indexForEntry('path')), DuckDBVarCharVector);
      for (let i = 0; i < rows.length; i++) {
        rows[i]![name] = struct.isItemValid(i) ? { bytes: copyBytes(bytes.getItemBytes(i)), path: paths.getItem(i) } : null;
      }
      return;
    }
    case 'image_list':
      // Documents hold a handful of images each, so the generic (slower) value conversion is fine here.
      for (let i = 0; i < rows.length; i++) rows[i]![name] = imageListValue(vector.getItem(i));
      return;
  }
}

function imageListValue(value: unknown): (string | { bytes: Buffer | null; path: string | null } | null)[] | null {
  if (!(value instanceof DuckDBListValue)) return null;
  return value.items.map((item) => {
    if (item === null || typeof item === 'string') return item;
    if (item instanceof DuckDBStructValue) {
      const bytes = item.entries.bytes;
      const path = item.entries.path;
      return { bytes: bytes instanceof DuckDBBlobValue ? Buffer.from(bytes.bytes) : null, path: typeof path === 'string' ? path : null };
    }
    return null;
  });
}

function expectVector<T extends DuckDBVector>(vector: DuckDBVector, kind: abstract new (...args: never[]) => T): T {
  if (!(vector instanceof kind)) throw new Error(`expected a ${kind.name}, DuckDB gave a ${vector.constructor.name}`);
  return vector;
}

/** A Buffer of its own: short BLOBs come back as views into the chunk's memory, which DuckDB frees. */
function copyBytes(bytes: Uint8Array | null): Buffer | null {
  return bytes === null ? null : Buffer.from(bytes);
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** 64- and 128-bit integers come from DuckDB as bigint: a number when exact, else left a bigint. */
function toInteger(value: number | bigint | null): number | bigint | null {
  return typeof value === 'bigint' && value >= MIN_SAFE && value <= MAX_SAFE ? Number(value) : value;
}
