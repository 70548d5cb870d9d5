import { isM4Error } from '../core/errors.ts';
import { readSampleAt } from '../shards/tar-reader.ts';
import type { ReadSample } from '../shards/sample.ts';
import type { SourceDataset } from './source-dataset.ts';

/**
 * What one fetch of a shard's byte ranges gave: the bytes, as the storage handed them over (pieces in shard order:
 * one per range from a local file, one per chunk of about 64 kB from a socket), and why any could not be read. Samples
 * are decoded from them only when taken (`sampleIn`): a fetch holds one buffer per piece, not several objects per
 * sample for as long as its run waits to be consumed (which the collector of the young generation copied over and
 * over). A socket's chunks are kept as they came: gathering a range into one new buffer wrote every byte once more
 * into freshly mapped memory, which cost the client more CPU than receiving it (see the README's mixer throughput);
 * only a sample that spans two chunks is copied, when it is taken.
 */
export interface FetchedRanges {
  pieces: Piece[];
  bytes: number;
  problem?: string;
}

/** Bytes of a shard from `start` on. */
interface Piece {
  start: number;
  bytes: Buffer;
}

/** Bytes `[start, end)` of a shard. */
export interface Span {
  start: number;
  end: number;
}

/** Samples of index entries closer than this are read with one request, the bytes between them included. */
export const MERGE_GAP = 64 << 10;

/** Byte ranges covering entries (offset and size, ascending), one per stretch whose gaps are under MERGE_GAP. */
export function coalesce(entries: readonly { offset: number; size: number }[]): Span[] {
  const ranges: Span[] = [];
  for (const { offset, size } of entries) {
    const last = ranges.at(-1);
    if (last && offset - last.end <= MERGE_GAP) last.end = Math.max(last.end, offset + size);
    else ranges.push({ start: offset, end: offset + size });
  }
  return ranges;
}

/**
 * Reads byte ranges of one shard, each one ranged request (local, S3 or HTTP). A missing shard is a problem reported
 * with what could be read, not thrown; a shorter one gives fewer bytes (see `sampleIn`); storage failing after its
 * retries is thrown.
 */
export async function fetchRanges(dataset: SourceDataset, shard: number, ranges: readonly Span[]): Promise<FetchedRanges> {
  const pieces: Piece[] = [];
  let bytes = 0;
  let problem: string | undefined;
  const key = dataset.shardKey(shard);
  for (const range of ranges) {
    bytes += range.end - range.start;
    let at = range.start;
    try {
      for await (const chunk of dataset.storage.read(key, range)) {
        const piece = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        pieces.push({ start: at, bytes: piece });
        at += piece.length;
      }
    } catch (err) {
      if (!isM4Error(err, 'E_NOT_FOUND')) throw err;
      problem ??= (err as Error).message;
    }
  }
  return { pieces, bytes, ...(problem !== undefined ? { problem } : {}) };
}

/** The sample an index entry places at `[offset, offset + size)` of a fetched shard, or why it cannot be read there. */
export function sampleIn(fetched: FetchedRanges, url: string, entry: { key: string; offset: number; size: number }): { sample?: ReadSample; problem?: string } {
  const { key, offset, size } = entry;
  const bytes = bytesOf(fetched.pieces, offset, offset + size);
  if (!bytes)
    return { problem: fetched.problem ?? `${url}: the shard ends before the end of sample ${key} (bytes ${offset}-${offset + size}, as its index gives them)` };
  try {
    const sample = readSampleAt(bytes, offset, url);
    if (sample.key === key && sample.offset === offset && sample.size === size) return { sample };
    return {
      problem: `${url}: the sample at byte ${offset} is ${sample.key} (${sample.size} bytes at byte ${sample.offset}), the index says ${key} (${size} bytes)`,
    };
  } catch (err) {
    if (!isM4Error(err)) throw err;
    return { problem: err.message };
  }
}

/** Bytes `[start, end)` from pieces in ascending order: a view of one piece, a copy of those it spans, or undefined if any is missing. */
function bytesOf(pieces: readonly Piece[], start: number, end: number): Buffer | undefined {
  // The last piece starting at or before `start`.
  let lo = 0;
  let hi = pieces.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (pieces[mid]!.start <= start) lo = mid;
    else hi = mid - 1;
  }
  const first = pieces[lo];
  if (!first || first.start > start) return undefined;
  if (first.start + first.bytes.length >= end) return first.bytes.subarray(start - first.start, end - first.start);
  const parts: Buffer[] = [first.bytes.subarray(start - first.start)];
  let at = first.start + first.bytes.length;
  for (let k = lo + 1; at < end; k++) {
    const piece = pieces[k];
    if (!piece || piece.start !== at) return undefined;
    parts.push(piece.bytes.subarray(0, Math.min(piece.bytes.length, end - at)));
    at += piece.bytes.length;
  }
  return Buffer.concat(parts);
}
