import { M4Error, isM4Error } from '../core/errors.ts';
import { openObject } from './storage/open.ts';
import type { ByteRange, Storage } from './storage/storage.ts';
import { checkEntryName, isMetaEntry, splitEntryName } from './entry-name.ts';
import { entriesIn, parseTar } from './tar-parser.ts';
import { GZIP_TAR_NAME, gunzipIfCompressed } from './gunzip.ts';
import type { ReadSample } from './sample.ts';

export interface ReadShardOptions {
  /**
   * What to do with a bad sample or shard (default 'throw'). 'skip' drops a sample with an unsafe entry name or a
   * duplicate field and goes on; a truncated or corrupt tar ends that shard after its last complete sample. Either way
   * it is counted in `counters`, like webdataset's `warn_and_continue` handler.
   */
  onError?: 'throw' | 'skip';
  counters?: ReadCounters;
  /** Largest single entry accepted, in bytes (default 1 GiB). */
  maxEntryBytes?: number;
  /**
   * Which fields to hold in memory (default: all). The others are read past as they stream and come as empty
   * buffers, their sizes in `fieldSizes`: a scan that counts samples holds no image, however large.
   */
  holdField?: (field: string, size: number) => boolean;
  /** Read only these bytes of the shard: whole samples, at the offsets and sizes its index gives (never gzip). */
  range?: ByteRange;
}

export interface ReadCounters {
  samples: number;
  skippedSamples: number;
  badShards: number;
  /** Messages of what was skipped, each naming the shard and byte offset. */
  errors: string[];
  /** What was read well but is worth saying: a gzip-compressed shard named `.tar`. */
  notes: string[];
}

export function newReadCounters(): ReadCounters {
  return { samples: 0, skippedSamples: 0, badShards: 0, errors: [], notes: [] };
}

export type ShardLocation = string | { storage: Storage; key: string };

/**
 * Streams the samples of one shard, grouped by key exactly as Python's webdataset groups them: consecutive entries
 * sharing a key make one sample. Errors name the shard and the byte offset. A gzip-compressed tar (`.tgz`,
 * `.tar.gz`, or any file starting with gzip's magic bytes) is read through gunzip; offsets are then those of the
 * decompressed tar, and a gzip file named `.tar` is noted in `counters.notes`.
 */
export async function* readShard(location: ShardLocation, options: ReadShardOptions = {}): AsyncGenerator<ReadSample> {
  const { storage, key } = typeof location === 'string' ? openObject(location) : location;
  const url = storage.urlOf(key);
  const counters = options.counters ?? newReadCounters();
  const skip = options.onError === 'skip';

  let current: ReadSample | undefined;
  let currentBad: M4Error | undefined;
  const finish = (): ReadSample | undefined => {
    const done = current;
    const bad = currentBad;
    current = undefined;
    currentBad = undefined;
    if (!done) return undefined;
    if (bad) {
      counters.skippedSamples++;
      counters.errors.push(bad.message);
      return undefined;
    }
    counters.samples++;
    return done;
  };

  try {
    const onGzip = () => {
      if (!GZIP_TAR_NAME.test(key)) counters.notes.push(`${url} is gzip-compressed, though not named .tgz or .tar.gz: read through gunzip`);
    };
    const holdField = options.holdField;
    const holdData = holdField ? (name: string, size: number) => holdField(splitEntryName(name)?.field ?? '', size) : undefined;
    const range = options.range;
    const bytes = range ? storage.read(key, range) : gunzipIfCompressed(storage.read(key), url, onGzip);
    const parseOptions = { maxEntryBytes: options.maxEntryBytes, ...(holdData ? { holdData } : {}), ...(range ? { rangeStart: range.start } : {}) };
    for await (const entry of parseTar(bytes, parseOptions)) {
      if (entry.type !== 'file' || isMetaEntry(entry.name)) continue;
      let problem: M4Error | undefined;
      try {
        checkEntryName(entry.name, { shard: url, offset: entry.headerOffset });
      } catch (err) {
        problem = withShard(err as M4Error, url);
      }
      const parts = splitEntryName(entry.name);
      if (!parts) continue; // webdataset ignores names without an extension
      if (!current || current.key !== parts.key) {
        const done = finish();
        if (done) yield done;
        current = emptySample(parts.key, url, entry.headerOffset);
      }
      if (!problem && parts.field in current.fields) problem = duplicateField(url, parts, entry.headerOffset);
      if (problem) {
        if (!skip) throw problem;
        currentBad ??= problem;
      }
      current.fields[parts.field] = entry.data;
      current.fieldSizes[parts.field] = entry.size;
      current.size = entry.endOffset - current.offset;
    }
    const last = finish();
    if (last) yield last;
  } catch (err) {
    if (!isM4Error(err) || !(err.code === 'E_TAR_TRUNCATED' || err.code === 'E_TAR_CORRUPT' || err.code === 'E_UNSAFE_NAME' || err.code === 'E_SAMPLE')) {
      throw err;
    }
    // A sample whose entries all arrived is complete when the entry that broke belongs to another key.
    const brokenName = err.context.name;
    const brokenKey = typeof brokenName === 'string' ? splitEntryName(brokenName)?.key : undefined;
    if (current && brokenKey !== undefined && brokenKey !== current.key) {
      const done = finish();
      if (done) yield done;
    }
    const error = withShard(err, url);
    if (!skip) throw error;
    // The sample being assembled, or the one the broken entry began, may be missing entries: dropped, not guessed at.
    if (current || brokenKey !== undefined) counters.skippedSamples++;
    counters.badShards++;
    counters.errors.push(error.message);
  }
}

/**
 * The one sample whose entries are `bytes`, which lie at byte `offset` of the shard at `url`: a sample's bytes as its
 * index gives them, read with others by one ranged request. Decoded as readShard decodes a shard, without an await;
 * its fields are views of `bytes`. What readShard would skip (an unsafe name, a duplicate field, a truncated or corrupt
 * entry) is thrown, naming the shard; so are bytes that hold no sample, or entries of two.
 */
export function readSampleAt(bytes: Buffer, offset: number, url: string): ReadSample {
  let sample: ReadSample | undefined;
  try {
    for (const entry of entriesIn(bytes, offset)) {
      if (entry.type !== 'file' || isMetaEntry(entry.name)) continue;
      const parts = splitEntryName(entry.name);
      if (!parts) continue; // webdataset ignores names without an extension
      checkEntryName(entry.name, { shard: url, offset: entry.headerOffset });
      sample ??= emptySample(parts.key, url, entry.headerOffset);
      if (parts.key !== sample.key) {
        throw new M4Error('E_SAMPLE', 'shards', `bytes ${offset}-${offset + bytes.length} hold samples ${sample.key} and ${parts.key}, not one`, { offset });
      }
      if (parts.field in sample.fields) throw duplicateField(url, parts, entry.headerOffset);
      sample.fields[parts.field] = entry.data;
      sample.fieldSizes[parts.field] = entry.size;
      sample.size = entry.endOffset - sample.offset;
    }
  } catch (err) {
    throw isM4Error(err) ? withShard(err, url) : err;
  }
  if (!sample) throw new M4Error('E_SAMPLE', 'shards', `${url}: bytes ${offset}-${offset + bytes.length} hold no sample`, { shard: url, offset });
  return sample;
}

/** Streams the samples of several shards in order. */
export async function* readShards(locations: Iterable<ShardLocation>, options: ReadShardOptions = {}): AsyncGenerator<ReadSample> {
  for (const location of locations) yield* readShard(location, options);
}

/** A sample with no field yet (fields by name in objects without a prototype: a field may be called `__proto__`). */
function emptySample(key: string, url: string, offset: number): ReadSample {
  return { key, url, offset, size: 0, fields: Object.create(null) as Record<string, Buffer>, fieldSizes: Object.create(null) as Record<string, number> };
}

function duplicateField(url: string, parts: { key: string; field: string }, offset: number): M4Error {
  return new M4Error('E_SAMPLE', 'shards', `${url}: duplicate field ${parts.field} in sample ${parts.key} at byte ${offset}`, { shard: url, offset });
}

function withShard(err: M4Error, url: string): M4Error {
  if (err.message.startsWith(url)) return err;
  return new M4Error(err.code, err.subsystem, `${url}: ${err.message}`, { ...err.context, shard: url }, { cause: err });
}
