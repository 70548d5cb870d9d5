import { createHash } from 'node:crypto';
import { M4Error } from '../core/errors.ts';
import { wholeNumber } from '../core/ranges.ts';
import { checkRecord, type ShardRecord } from './manifest.ts';
import { SIDE_FILES, sideFileKey } from './shard-files.ts';
import { jsonBytes, parseJson, readBytes } from './storage/json.ts';
import type { Storage } from './storage/storage.ts';
import { compareKeys } from './storage/storage.ts';

/** Where one sample lies in its tar, and what it counts. */
export interface IndexEntry {
  key: string;
  offset: number;
  size: number;
  images: number;
  tokens: number;
}

/** `{shard}.idx.json`: the shard's record plus one entry per sample, for random access without a scan. */
export interface ShardIndex extends ShardRecord {
  format: 'm4data-shard-index';
  version: 1;
  entries: IndexEntry[];
}

/** `laion-000000.tar` -> `laion-000000.idx.json`, beside the shard. */
export function indexKeyOf(shardKey: string): string {
  return sideFileKey(shardKey, 'index');
}

export async function writeShardIndex(storage: Storage, shardKey: string, record: ShardRecord, entries: IndexEntry[]): Promise<void> {
  const index: ShardIndex = { format: 'm4data-shard-index', version: 1, ...record, entries };
  await storage.write(indexKeyOf(shardKey), jsonBytes(index, false));
}

export async function readShardIndex(storage: Storage, key: string): Promise<ShardIndex> {
  return (await readCheckedIndex(storage, key)).index;
}

/**
 * A shard index, checked (every number whole and non-negative; entries in tar order without overlap, within the tar's
 * bytes; the record's samples, images and tokens their sums), and the sha256 of its bytes: E_INPUT naming the field.
 */
export async function readCheckedIndex(storage: Storage, key: string): Promise<{ index: ShardIndex; sha256: string }> {
  const url = storage.urlOf(key);
  const bytes = await readBytes(storage, key);
  const value = parseJson(bytes, url) as Partial<ShardIndex> | null;
  const bad = (message: string): never => {
    throw new M4Error('E_INPUT', 'shards', `${url} ${message}`, { url });
  };
  if (typeof value !== 'object' || value === null || value.format !== 'm4data-shard-index' || !Array.isArray(value.entries))
    bad('is not an m4data shard index');
  const index = value as ShardIndex;
  checkRecord(index, 'record', bad);
  let end = 0;
  let images = 0;
  let tokens = 0;
  index.entries.forEach((entry, i) => {
    if (typeof entry !== 'object' || entry === null || typeof entry.key !== 'string' || entry.key === '') bad(`field entries[${i}].key must be a sample key`);
    // The message (a string per field) only for an entry that has a bad number: an index holds thousands of entries.
    if (!(isCount(entry.offset) && isCount(entry.size) && isCount(entry.images) && isCount(entry.tokens))) {
      for (const field of ['offset', 'size', 'images', 'tokens'] as const) wholeNumber(entry[field], `entries[${i}].${field}`, 0, bad);
    }
    if (entry.offset < end) bad(`field entries[${i}].offset ${entry.offset} overlaps the sample before it (which ends at byte ${end})`);
    end = entry.offset + entry.size;
    images += entry.images;
    tokens += entry.tokens;
  });
  if (end > index.bytes) bad(`lists samples up to byte ${end}, past the shard's ${index.bytes} bytes`);
  const sums = { samples: index.entries.length, images, tokens };
  for (const field of ['samples', 'images', 'tokens'] as const) {
    if (sums[field] !== index[field]) bad(`says ${index[field]} ${field}, its entries hold ${sums[field]}`);
  }
  return { index, sha256: createHash('sha256').update(bytes).digest('hex') };
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** The records of every indexed shard under a storage root whose name starts with `prefix`, in name order. */
export async function collectShardRecords(storage: Storage, prefix = ''): Promise<ShardRecord[]> {
  const records: ShardRecord[] = [];
  for await (const info of storage.list(prefix)) {
    if (!info.key.endsWith(SIDE_FILES.index)) continue;
    const { shard, samples, images, tokens, bytes, sha256, md5 } = await readShardIndex(storage, info.key);
    records.push({ shard, samples, images, tokens, bytes, sha256, ...(md5 ? { md5 } : {}) });
  }
  return records.sort((a, b) => compareKeys(a.shard, b.shard));
}
