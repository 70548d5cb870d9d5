import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { M4Error } from '../core/errors.ts';
import { isImageField } from './entry-name.ts';
import { MANIFEST_NAME, readManifest, totalsProblem, type ShardRecord } from './manifest.ts';
import { indexKeyOf, readCheckedIndex } from './shard-index.ts';
import { isRemote } from './storage/location.ts';
import { openObject, openStorage, type OpenOptions } from './storage/open.ts';
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
  /** What was read well but is worth saying (a gzip file named .tar). */
  notes: string[];
  /** With a manifest: what was checked of every shard, `sizes`, or with --verify `sha256` (and its index too). */
  checked?: 'sizes' | 'sha256';
  /** With --verify: true when every check passed, the manifest's totals included (never with a problem found). */
  verified?: boolean;
  /** Where the manifest disagrees with itself (its totals against its shard records). */
  manifestErrors: string[];
}

export interface SummaryOptions {
  /** How many samples to describe (default 5). */
  first?: number;
  /** Called after each shard of a scan or a verification, for progress. */
  onShard?: (done: number, total: number, shard: string) => void;
  /** With a manifest, check every shard's sha256 too, not only its size (reads every byte). */
  verify?: boolean;
  /** How an http(s) target is reached (the private-network rule). */
  network?: OpenOptions;
}

interface ShardRef {
  storage: Storage;
  key: string;
  bytes: number;
}

/** Names a folder scan takes for shards: `.tar` in any case, and gzip-compressed `.tgz` and `.tar.gz`. */
export const SHARD_NAME = /\.(tar|tgz|tar\.gz)$/i;

/**
 * Summarises a shard (`x.tar`, `x.tgz`, `x.tar.gz`, or any existing local file), a manifest (`manifest.json`), or a
 * folder or S3 prefix (its manifest when it has one, else every shard in it, scanned). With a manifest, every shard's
 * size is checked against it (and its sha256, with `verify`). Bad and missing shards are counted, not thrown; a target
 * that holds no shard at all is E_NOT_FOUND.
 */
export async function summarizeDataset(target: string, options: SummaryOptions = {}): Promise<DatasetSummary> {
  const firstCount = options.first ?? 5;
  if (/\.json$/i.test(target)) {
    const { storage, key } = openObject(target, options.network);
    return fromManifest(target, storage, key, firstCount, options);
  }
  const shard = await asShard(target, options.network ?? {});
  if (shard) return scan(target, [shard], firstCount, options);
  const storage = openStorage(target, options.network);
  if (await storage.stat(MANIFEST_NAME)) return fromManifest(target, storage, MANIFEST_NAME, firstCount, options);
  const shards: ShardRef[] = [];
  for await (const info of storage.list()) {
    if (SHARD_NAME.test(info.key)) shards.push({ storage, key: info.key, bytes: info.size });
  }
  if (shards.length === 0) {
    throw new M4Error('E_NOT_FOUND', 'shards', `no shard (.tar, .tgz, .tar.gz) and no manifest.json in ${storage.root}`, { url: storage.root });
  }
  return scan(target, shards, firstCount, options);
}

/**
 * The target as one shard: named like one, or an existing local file or S3 object, whatever its name. Undefined for
 * a folder or prefix. (An http(s) URL not named like a shard is taken for a folder: a server answers for folders too.)
 */
async function asShard(target: string, network: OpenOptions): Promise<ShardRef | undefined> {
  const remote = isRemote(target);
  if (!SHARD_NAME.test(target)) {
    // s3://bucket/key: one HEAD tells an object from a prefix.
    if (/^s3:\/\/[^/]+\/.*[^/]$/.test(target)) {
      const { storage, key } = openObject(target, network);
      const info = await storage.stat(key);
      return info ? { storage, key, bytes: info.size } : undefined;
    }
    if (remote) return undefined;
    const path = target.startsWith('file://') ? fileURLToPath(target) : target;
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ELOOP') throw new M4Error('E_INPUT', 'shards', `${path} is a loop of symbolic links, which leads to no file`, { url: path });
      if (err.code === 'EACCES' || err.code === 'EPERM')
        throw new M4Error('E_STORAGE', 'shards', `${path} cannot be read by this user (${err.code})`, { url: path });
      return undefined;
    });
    if (!info) throw new M4Error('E_NOT_FOUND', 'shards', `no such file or folder: ${path}`, { url: path });
    if (info.isDirectory()) return undefined;
  }
  const { storage, key } = openObject(target, network);
  const info = await storage.stat(key);
  if (!info) throw new M4Error('E_NOT_FOUND', 'shards', `no such shard: ${storage.urlOf(key)}`, { url: storage.urlOf(key) });
  return { storage, key, bytes: info.size };
}

async function fromManifest(target: string, storage: Storage, key: string, firstCount: number, options: SummaryOptions): Promise<DatasetSummary> {
  const manifest = await readManifest(storage, key);
  const totals = totalsProblem(manifest);
  const manifestErrors = totals ? [`${storage.urlOf(key)}: ${totals}`] : [];
  // Shard names in a manifest are relative to the folder that holds it.
  const dir = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
  const counters = newReadCounters();
  const good: ShardRecord[] = [];
  let done = 0;
  for (const shard of manifest.shards) {
    const problem = await checkShard(storage, dir + shard.shard, shard, options.verify === true);
    if (problem) {
      counters.badShards++;
      counters.errors.push(problem);
    } else {
      good.push(shard);
    }
    if (options.verify) options.onShard?.(++done, manifest.shards.length, shard.shard);
  }
  const first: SampleSummary[] = [];
  for (const shard of good) {
    if (first.length >= firstCount) break;
    for await (const sample of readShard({ storage, key: dir + shard.shard }, { onError: 'skip', counters, holdField: holdJson })) {
      first.push(describe(sample));
      if (first.length >= firstCount) break;
    }
  }
  const { shards, samples, images, tokens, bytes } = manifest.totals;
  const found = problems(counters);
  const verified = options.verify === true && manifestErrors.length === 0 && found.badShards === 0 && found.skippedSamples === 0;
  return {
    target,
    from: 'manifest',
    shards,
    samples,
    images,
    tokens,
    bytes,
    first,
    ...found,
    checked: options.verify ? 'sha256' : 'sizes',
    verified,
    manifestErrors,
  };
}

/**
 * What is wrong with one shard the manifest lists: missing, another size, or (verifying) another sha256, or an index
 * that is missing, malformed or describes another shard than the manifest's record.
 */
async function checkShard(storage: Storage, key: string, record: ShardRecord, verify: boolean): Promise<string | undefined> {
  const url = storage.urlOf(key);
  const info = await storage.stat(key);
  if (!info) return `${url}: missing (the manifest lists it)`;
  if (info.size !== record.bytes) return `${url}: ${info.size} bytes, the manifest says ${record.bytes} (truncated or replaced)`;
  if (!verify) return undefined;
  const hash = createHash('sha256');
  for await (const chunk of storage.read(key)) hash.update(chunk);
  const sha256 = hash.digest('hex');
  if (sha256 !== record.sha256) return `${url}: sha256 ${sha256}, the manifest says ${record.sha256} (corrupt)`;
  let index;
  try {
    index = (await readCheckedIndex(storage, indexKeyOf(key))).index;
  } catch (err) {
    return `${url}: its index cannot be used: ${(err as Error).message}`;
  }
  const differ = (['samples', 'images', 'tokens', 'bytes', 'sha256'] as const).filter((f) => index[f] !== record[f]);
  return differ.length === 0
    ? undefined
    : `${url}: its index says ${differ.map((f) => `${f} ${index[f]}`).join(', ')}; the manifest ${differ.map((f) => `${f} ${record[f]}`).join(', ')}`;
}

async function scan(target: string, refs: ShardRef[], firstCount: number, options: SummaryOptions): Promise<DatasetSummary> {
  const counters = newReadCounters();
  const summary: DatasetSummary = {
    target,
    from: 'scan',
    shards: refs.length,
    samples: 0,
    images: 0,
    tokens: 0,
    bytes: 0,
    first: [],
    skippedSamples: 0,
    badShards: 0,
    errors: [],
    notes: [],
    manifestErrors: [],
  };
  let done = 0;
  for (const ref of refs) {
    summary.bytes += ref.bytes;
    try {
      for await (const sample of readShard(ref, { onError: 'skip', counters, holdField: holdJson })) {
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
    options.onShard?.(++done, refs.length, ref.key);
  }
  return { ...summary, ...problems(counters) };
}

function problems(counters: ReadCounters): Pick<DatasetSummary, 'skippedSamples' | 'badShards' | 'errors' | 'notes'> {
  return { skippedSamples: counters.skippedSamples, badShards: counters.badShards, errors: counters.errors, notes: counters.notes };
}

function describe(sample: ReadSample): SampleSummary {
  const fields: Record<string, number> = {};
  for (const [name, bytes] of Object.entries(sample.fieldSizes)) fields[name] = bytes;
  return { key: sample.key, shard: sample.url, fields };
}

/**
 * A summary reads each sample's JSON (for its token count) and only the sizes of the rest: images are read past as they
 * stream, so a shard of huge entries (a gzip bomb, a sparse 1 GiB member) costs no memory.
 */
function holdJson(field: string, size: number): boolean {
  return field === 'json' && size <= MAX_JSON_BYTES;
}

const MAX_JSON_BYTES = 1 << 20;

/** Token count a sample declares in its JSON (`tokens`), as m4data writes it; 0 for samples from other tools. */
function tokensOf(sample: ReadSample): number {
  const json = sample.fields.json;
  if (!json || json.length === 0) return 0;
  try {
    const value = JSON.parse(json.toString('utf8')) as { tokens?: unknown };
    return typeof value.tokens === 'number' && Number.isFinite(value.tokens) ? value.tokens : 0;
  } catch {
    return 0;
  }
}
