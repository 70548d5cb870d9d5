import { SIDE_FILES, sideFileKey } from './shard-files.ts';
import { M4Error } from '../core/errors.ts';
import type { Storage } from './storage/storage.ts';
import type { ShardRecord } from './manifest.ts';
import { jsonBytes, readJson } from './storage/json.ts';
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
  const value = (await readJson(storage, key)) as Partial<ShardIndex>;
  if (value.format !== 'm4data-shard-index' || !Array.isArray(value.entries)) {
    throw new M4Error('E_INPUT', 'shards', `${storage.urlOf(key)} is not an m4data shard index`, { url: storage.urlOf(key) });
  }
  return value as ShardIndex;
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
