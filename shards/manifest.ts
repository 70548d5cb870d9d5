import { M4Error } from '../core/errors.ts';
import { wholeNumber } from '../core/ranges.ts';
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
  return checkManifest(await readJson(storage, key), storage.urlOf(key));
}

/**
 * A manifest with every number whole and non-negative and every shard name relative, or E_INPUT naming the field.
 * (Whether its totals agree with its shards is `totalsProblem`: inspect reports that, a mix refuses it.)
 */
export function checkManifest(value: unknown, url: string): Manifest {
  const bad = (message: string): never => {
    throw new M4Error('E_INPUT', 'shards', `${url} ${message}`, { url });
  };
  const m = value as Partial<Manifest> | null;
  if (
    typeof m !== 'object' ||
    m === null ||
    m.format !== 'm4data-webdataset' ||
    !Array.isArray(m.shards) ||
    typeof m.totals !== 'object' ||
    m.totals === null
  ) {
    bad('is not an m4data manifest');
  }
  const totals = m!.totals as unknown as Record<string, unknown>;
  for (const field of ['shards', 'samples', 'images', 'tokens', 'bytes'] as const) wholeNumber(totals[field], `totals.${field}`, 0, bad);
  m!.shards!.forEach((record, i) => checkRecord(record, `shards[${i}]`, bad));
  return m as Manifest;
}

/** The fields of a shard record as a manifest or an index holds them, checked. */
export function checkRecord(record: unknown, field: string, bad: (message: string) => never): void {
  if (typeof record !== 'object' || record === null) bad(`field ${field} is not a shard record`);
  const r = record as Record<string, unknown>;
  if (typeof r.shard !== 'string' || r.shard === '' || r.shard.startsWith('/') || r.shard.split('/').includes('..') || r.shard.includes('\0')) {
    bad(`field ${field}.shard must be a shard name relative to the dataset (found ${JSON.stringify(r.shard)})`);
  }
  for (const name of ['samples', 'images', 'tokens', 'bytes'] as const) wholeNumber(r[name], `${field}.${name}`, 0, bad);
  if (typeof r.sha256 !== 'string') bad(`field ${field}.sha256 must be a string`);
}

/** What the manifest's totals say that its shard records do not, or undefined when they agree. */
export function totalsProblem(manifest: Manifest): string | undefined {
  const sums = totalsOf(manifest.shards);
  const wrong = (['shards', 'samples', 'images', 'tokens', 'bytes'] as const).filter((f) => sums[f] !== manifest.totals[f]);
  if (wrong.length === 0) return undefined;
  return `its totals disagree with its shard records: ${wrong.map((f) => `${f} ${manifest.totals[f]} against ${sums[f]}`).join(', ')}`;
}
