import { M4Error, errorMessage, isM4Error } from '../../../core/errors.ts';
import { gunzipIfCompressed } from '../../../shards/gunzip.ts';
import { peekBytes } from '../../../shards/peek.ts';
import { streamTar } from '../../../shards/tar-parser.ts';
import { openObject, type OpenOptions } from '../../../shards/storage/open.ts';
import type { MetadataBatch } from '../metadata/read-metadata.ts';
import { ndjsonLines, type NdjsonLine } from './ndjson-lines.ts';

/**
 * Reads a dump of NDJSON records as rows, the way the Wikimedia Enterprise HTML dumps are published: a tar (gzip or
 * not) of NDJSON members, or NDJSON files (gzip or not). Rows are the records in dump order, file by file, member by
 * member, line by line, so a row's position is the same however the build is split, as for metadata files. Everything
 * streams (gunzip, tar, lines): memory holds one chunk and the lines in flight, whatever the dump's size.
 */

/** Where a row came from: named in its outcome record. */
export interface RowOrigin {
  /** The input file as given (a path or URL). */
  file: string;
  /** The tar member holding the line, or null for an NDJSON file. */
  member: string | null;
  /** 1-based line number in the member or file. */
  line: number;
}

/** A batch of rows with, for rows read from a dump, the origin of each. */
export interface RowBatch extends MetadataBatch {
  origins?: RowOrigin[];
}

/** One dump line as a row: its bytes, left unparsed (rows of other workers' shards cost no parsing), or null when over the bound. */
export interface DumpLine {
  bytes: Buffer | null;
  length: number;
  maxLineBytes: number;
}

export const DUMP_LINE_FIELD = 'dumpLine';

export interface ReadDumpOptions {
  /** Stop after this many rows across all files. */
  limit?: number;
  /** Longest line held, in bytes; a longer one becomes a row whose bytes are null. */
  maxLineBytes: number;
  /** How remote files are reached (the private-network rule). */
  network?: OpenOptions;
}

const BATCH_ROWS = 64;
const BATCH_BYTES = 16 << 20;

export async function* readDump(files: readonly string[], options: ReadDumpOptions): AsyncGenerator<RowBatch> {
  let remaining = options.limit ?? Infinity;
  let firstIndex = 0;
  let rows: Record<string, unknown>[] = [];
  let origins: RowOrigin[] = [];
  let bytes = 0;
  const flush = (): RowBatch => {
    const batch = { rows, origins, firstIndex };
    firstIndex += rows.length;
    rows = [];
    origins = [];
    bytes = 0;
    return batch;
  };
  for (const file of files) {
    if (remaining <= 0) break;
    let at: RowOrigin = { file, member: null, line: 0 };
    try {
      for await (const { member, lines } of dumpMembers(file, options.maxLineBytes, options.network)) {
        at = { file, member, line: 0 };
        for await (const line of lines) {
          at = { file, member, line: line.line };
          const row: DumpLine = { bytes: line.bytes, length: line.length, maxLineBytes: options.maxLineBytes };
          rows.push({ [DUMP_LINE_FIELD]: row });
          origins.push(at);
          bytes += line.bytes?.length ?? 0;
          if (--remaining <= 0) break;
          if (rows.length >= BATCH_ROWS || bytes >= BATCH_BYTES) yield flush();
        }
        if (remaining <= 0) break;
      }
    } catch (err) {
      const where = at.member === null ? '' : ` member ${at.member}`;
      const after = at.line > 0 ? ` after line ${at.line}` : '';
      // A cut or corrupt gzip or tar is bad input; a storage failure keeps its own code.
      const code = isM4Error(err) && err.code !== 'E_TAR_TRUNCATED' && err.code !== 'E_TAR_CORRUPT' ? err.code : 'E_INPUT';
      throw new M4Error(code, 'metadata', `dump ${file}${where}${after}: ${errorMessage(err)}`, { file, member: at.member, line: at.line }, { cause: err });
    }
  }
  if (rows.length > 0) yield flush();
}

/** The NDJSON streams of one dump file: each member of a tar, or the file itself. */
async function* dumpMembers(
  file: string,
  maxLineBytes: number,
  network?: OpenOptions,
): AsyncGenerator<{ member: string | null; lines: AsyncIterable<NdjsonLine> }> {
  const { storage, key } = openObject(file, network);
  const { head, stream } = await peekBytes(gunzipIfCompressed(storage.read(key), storage.urlOf(key))[Symbol.asyncIterator](), TAR_HEADER);
  if (!isTarHeader(head)) {
    yield { member: null, lines: ndjsonLines(stream, maxLineBytes) };
    return;
  }
  for await (const member of streamTar(stream)) {
    if (member.type !== 'file') continue;
    yield { member: member.name, lines: ndjsonLines(member.body, maxLineBytes) };
  }
}

export type DumpKind = 'tar' | 'ndjson' | 'other';

/**
 * What a file holds, from its first bytes (decompressed when gzip): a tar, NDJSON records the caller recognises
 * (`isRecord` of the first line's object), or something else (metadata for DuckDB). Reads only the head of the file.
 */
export async function sniffDump(file: string, isRecord: (record: unknown) => boolean, maxLineBytes: number, network?: OpenOptions): Promise<DumpKind> {
  const { storage, key } = openObject(file, network);
  const iterator: AsyncIterator<Uint8Array> = gunzipIfCompressed(storage.read(key), storage.urlOf(key))[Symbol.asyncIterator]();
  try {
    const { head, stream } = await peekBytes(iterator, TAR_HEADER);
    if (isTarHeader(head)) return 'tar';
    const start = head.findIndex((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
    if (start < 0 || head[start] !== 0x7b) return 'other'; // `{`
    for await (const line of ndjsonLines(stream, maxLineBytes)) {
      // Only a dump has lines over the bound; a line that is not JSON is left to the metadata reader to name.
      if (line.bytes === null) return 'ndjson';
      try {
        return isRecord(JSON.parse(line.bytes.toString('utf8'))) ? 'ndjson' : 'other';
      } catch {
        return 'other';
      }
    }
    return 'other';
  } catch (err) {
    if (isM4Error(err)) throw err;
    throw new M4Error('E_INPUT', 'metadata', `${file}: cannot read: ${errorMessage(err)}`, { file }, { cause: err });
  } finally {
    await iterator.return?.();
  }
}

const TAR_HEADER = 512;

/** A ustar header (POSIX `ustar\0` or GNU `ustar  `) at the start: the tar writers of the dumps write one. */
function isTarHeader(head: Buffer): boolean {
  return head.length >= TAR_HEADER && head.toString('latin1', 257, 262) === 'ustar';
}
