import { isM4Error } from '../core/errors.ts';
import type { ReadSample } from '../shards/sample.ts';
import { newReadCounters, readShard } from '../shards/tar-reader.ts';
import type { SourceDataset } from './source-dataset.ts';

/** What one fetch of a shard's byte ranges gave: its samples by tar offset, and why any could not be read. */
export interface FetchedRanges {
  samples: Map<number, ReadSample>;
  bytes: number;
  problem?: string;
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
 * Reads byte ranges of one shard, each one ranged request (local, S3 or HTTP), and parses the samples in them. A
 * missing, truncated or corrupt shard is a problem reported with what could be read, not thrown; storage failing
 * after its retries is thrown.
 */
export async function fetchRanges(dataset: SourceDataset, shard: number, ranges: readonly Span[]): Promise<FetchedRanges> {
  const samples = new Map<number, ReadSample>();
  const counters = newReadCounters();
  let bytes = 0;
  let problem: string | undefined;
  const location = { storage: dataset.storage, key: dataset.shardKey(shard) };
  for (const range of ranges) {
    bytes += range.end - range.start;
    try {
      for await (const sample of readShard(location, { onError: 'skip', counters, range })) samples.set(sample.offset, sample);
    } catch (err) {
      if (!isM4Error(err, 'E_NOT_FOUND')) throw err;
      problem ??= (err as Error).message;
    }
  }
  problem ??= counters.errors[0];
  return { samples, bytes, ...(problem !== undefined ? { problem } : {}) };
}
