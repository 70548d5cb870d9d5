import { M4Error } from '../core/errors.ts';
import { isImageField } from './entry-name.ts';
import { MANIFEST_NAME, readManifest } from './manifest.ts';
import { openObject, openStorage } from './storage/open.ts';
import type { Storage } from './storage/storage.ts';
import { newReadCounters, readShard, type ReadCounters } from './tar-reader.ts';
import type { ReadSample } from './sample.ts';

export interface SampleSummary {
  key: string;
  shard: string;
  /** Field name -> size in bytes. */
  fields: Record<string, number>;
}

export interface DatasetSummary {
  target: string;
  /** 'manifest': totals from manifest.json; 'scan': every shard read. */
  from: 'manifest' | 'scan';
  shards: number;
  samples: number;
  images: number;
  tokens: number;
  bytes: number;
  first: SampleSummary[];
  skippedSamples: number;
  badShards: number;
  errors: string[];
}

export interface SummaryOptions {
  /** How many samples to describe (default 5). */
  first?: number;
  /** Called after each shard of a scan, for progress. */
  onShard?: (done: number, total: number) => void;
}

interface ShardRef {
  storage: Storage;
  key: string;
  bytes: number;
}

/**
 * Summarises a shard (`x.tar`), a manifest (`manifest.json`), or a folder or S3 prefix (its manifest when it has one,
 * else every `.tar` in it, scanned). Bad shards and samples are counted, not thrown.
 */
export async function summarizeDataset(target: string, options: SummaryOptions = {}): Promise<DatasetSummary> {
  const firstCount = options.first ?? 5;
  if (/\.json$/i.test(target)) {
    const { storage, key } = openObject(target);
    return fromManifest(target, storage, key, firstCount);
  }
  if (/\.tar$/i.test(target)) {
    const { storage, key } = openObject(target);
    const info = await storage.stat(key);
    if (!info) throw new M4Error('E_NOT_FOUND', 'shards', `no such shard: ${storage.urlOf(key)}`, { url: storage.urlOf(key) });
    return scan(target, [{ storage, key, bytes: info.size }], firstCount, options);
  }
  const storage = openStorage(target);
  if (await storage.stat(MANIFEST_NAME)) return fromManifest(target, storage, MANIFEST_NAME, firstCount);
  const shards: ShardRef[] = [];
  for await (const info of storage.list()) {
    if (info.key.endsWith('.tar')) shards.push({ storage, key: info.key, bytes: info.size });
  }
  return scan(target, shards, firstCount, options);
}

async function fromManifest(target: string, storage: Storage, key: string, firstCount: number): Promise<DatasetSummary> {
  const manifest = await readManifest(storage, key);
  // Shard names in a manifest are relative to the folder that holds it.
  const dir = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
  const counters = newReadCounters();
  const first: SampleSummary[] = [];
  for (const shard of manifest.shards) {
    if (first.length >= firstCount) break;
    for await (const sample of readShard({ storage, key: dir + shard.shard }, { onError: 'skip', counters })) {
      first.push(describe(sample));
      if (first.length >= firstCount) break;
    }
  }
  const { shards, samples, images, tokens, bytes } = manifest.totals;
  return { target, from: 'manifest', shards, samples, images, tokens, bytes, first, ...problems(counters) };
}

async function scan(target: string, refs: ShardRef[], firstCount: number, options: SummaryOptions): Promise<DatasetSummary> {
  const counters = newReadCounters();
  const summary: DatasetSummary = { target, from: 'scan', shards: refs.length, samples: 0, images: 0, tokens: 0, bytes: 0, first: [], skippedSamples: 0, badShards: 0, errors: [] };
  let done = 0;
  for (const ref of refs) {
    summary.bytes += ref.bytes;
    try {
      for await (const sample of readShard(ref, { onError: 'skip', counters })) {
        summary.samples++;
        summary.images += Object.keys(sample.fields).filter(isImageField).length;
        summary.tokens += tokensOf(sample);
        if (summary.first.length < firstCount) summary.first.push(describe(sample));
      }
    } catch (err) {
      // A shard that cannot be opened at all (missing, unreadable) is a bad shard, not the end of the scan.
      counters.badShards++;
      counters.errors.push(`${ref.storage.urlOf(ref.key)}: ${(err as Error).message}`);
    }
    options.onShard?.(++done, refs.length);
  }
  return { ...summary, ...problems(counters) };
}

function problems(counters: ReadCounters): Pick<DatasetSummary, 'skippedSamples' | 'badShards' | 'errors'> {
  return { skippedSamples: counters.skippedSamples, badShards: counters.badShards, errors: counters.errors };
}

function describe(sample: ReadSample): SampleSummary {
  const fields: Record<string, number> = {};
  for (const [name, bytes] of Object.entries(sample.fields)) fields[name] = bytes.length;
  return { key: sample.key, shard: sample.url, fields };
}

/** Token count a sample declares in its JSON (`tokens`), as m4data writes it; 0 for samples from other tools. */
function tokensOf(sample: ReadSample): number {
  const json = sample.fields.json;
  if (!json || json.length > 1 << 20) return 0;
  try {
    const value = JSON.parse(json.toString('utf8')) as { tokens?: unknown };
    return typeof value.tokens === 'number' && Number.isFinite(value.tokens) ? value.tokens : 0;
  } catch {
    return 0;
  }
}
