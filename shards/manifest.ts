import { M4Error } from '../core/errors.ts';
import { jsonBytes, readJson } from './storage/json.ts';
import type { Storage } from './storage/storage.ts';
import { compareKeys } from './storage/storage.ts';

/** One published shard as the manifest and its index describe it. */
export interface ShardRecord {
  /** Shard file name relative to the dataset root, e.g. `laion-000000.tar`. */
  shard: string;
  samples: number;
  images: number;
  tokens: number;
  bytes: number;
  sha256: string;
  /** MD5 of the tar, as wids' shard index records it; absent from indexes written before m4data computed it. */
  md5?: string;
}

export interface Totals {
  shards: number;
  samples: number;
  images: number;
  tokens: number;
  bytes: number;
}

export interface Manifest {
  format: 'm4data-webdataset';
  version: 1;
  /** What built it (source, options); free-form but deterministic: no clocks, no host names. */
  dataset: Record<string, unknown>;
  totals: Totals;
  shards: ShardRecord[];
}

export const MANIFEST_NAME = 'manifest.json';
export const WIDS_NAME = 'wids.json';

export function totalsOf(records: readonly ShardRecord[]): Totals {
  const totals: Totals = { shards: records.length, samples: 0, images: 0, tokens: 0, bytes: 0 };
  for (const r of records) {
    totals.samples += r.samples;
    totals.images += r.images;
    totals.tokens += r.tokens;
    totals.bytes += r.bytes;
  }
  return totals;
}

export function buildManifest(records: readonly ShardRecord[], dataset: Record<string, unknown> = {}): Manifest {
  const shards = [...records].sort((a, b) => compareKeys(a.shard, b.shard));
  return { format: 'm4data-webdataset', version: 1, dataset, totals: totalsOf(shards), shards };
}

/**
 * The shard list Python's `wids.ShardListDataset` opens for random access; URLs are relative to this file. Each shard
 * has the fields wids' own index writer (`python -m wids.wids_index create`) gives it: url, nsamples, filesize, md5sum.
 */
export function widsIndex(manifest: Manifest, name?: string): object {
  return {
    __kind__: 'wids-shard-index-v1',
    wids_version: 1,
    ...(name ? { name } : {}),
    shardlist: manifest.shards.map((s) => ({ url: s.shard, nsamples: s.samples, filesize: s.bytes, ...(s.md5 ? { md5sum: s.md5 } : {}) })),
  };
}

/** Writes `manifest.json` and `wids.json` at the dataset root, each atomically. */
export async function writeManifest(storage: Storage, manifest: Manifest, name?: string): Promise<void> {
  await storage.write(WIDS_NAME, jsonBytes(widsIndex(manifest, name)));
  await storage.write(MANIFEST_NAME, jsonBytes(manifest));
}

export async function readManifest(storage: Storage, key = MANIFEST_NAME): Promise<Manifest> {
  const value = await readJson(storage, key);
  const m = value as Partial<Manifest>;
  if (m.format !== 'm4data-webdataset' || !Array.isArray(m.shards) || !m.totals) {
    throw new M4Error('E_INPUT', 'shards', `${storage.urlOf(key)} is not an m4data manifest`, { url: storage.urlOf(key) });
  }
  return m as Manifest;
}
