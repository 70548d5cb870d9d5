import { shardName } from './shard-files.ts';
import { M4Error } from '../core/errors.ts';
import { BackgroundHash, type Digests } from '../core/background-hash.ts';
import { ByteChannel } from '../core/byte-channel.ts';
import type { Storage } from './storage/storage.ts';
import { checkWritableName, isImageField } from './entry-name.ts';
import type { Sample, SampleCounts } from './sample.ts';
import type { ShardRecord } from './manifest.ts';
import { writeShardIndex, type IndexEntry } from './shard-index.ts';
import { BLOCK, END_OF_ARCHIVE, entryBytes, ustarHeader } from './ustar.ts';

const ZERO_PADDING = Buffer.alloc(BLOCK);

/**
 * One shard being written: a tar streamed to storage as samples arrive, visible only once `finish()` has completed
 * the upload, then indexed. `add` waits while more than a few MiB are queued for storage, so a slow disk or upload
 * slows the producer instead of filling memory. Fields of a sample are written in sorted order.
 */
export class ShardBuilder {
  readonly key: string;
  private readonly storage: Storage;
  private readonly channel = new ByteChannel();
  private readonly hash = new BackgroundHash();
  private readonly upload: Promise<unknown>;
  private readonly uploadFailed: Promise<never>;
  private readonly entries: IndexEntry[] = [];
  private readonly keys = new Set<string>();
  private offset = 0;
  private written = 0;
  private images = 0;
  private tokens = 0;

  constructor(storage: Storage, key: string) {
    this.storage = storage;
    this.key = key;
    this.upload = storage.write(key, this.hashed());
    this.uploadFailed = this.upload.then(
      () => new Promise<never>(() => {}),
      (err: unknown) => Promise.reject(err),
    );
    this.uploadFailed.catch(() => {}); // observed by add() and finish()
  }

  get samples(): number {
    return this.entries.length;
  }

  /** Bytes the tar will hold once finished, end-of-archive marker included. */
  get bytes(): number {
    return this.offset + END_OF_ARCHIVE.length;
  }

  private async *hashed(): AsyncGenerator<Uint8Array> {
    for await (const chunk of this.channel) {
      await this.hash.update(chunk);
      this.written += chunk.length;
      yield chunk;
    }
  }

  async add(sample: Sample, counts?: Partial<SampleCounts>): Promise<void> {
    const fields = Object.keys(sample.fields).sort();
    if (fields.length === 0) throw new M4Error('E_SAMPLE', 'shards', `sample ${sample.key} has no fields`, { key: sample.key, shard: this.key });
    for (const field of fields) checkWritableName(sample.key, field);
    if (this.keys.has(sample.key)) {
      throw new M4Error('E_SAMPLE', 'shards', `duplicate sample key ${sample.key} in ${this.key}`, { key: sample.key, shard: this.key });
    }
    this.keys.add(sample.key);

    // Header, data and padding go to storage as they are, uncopied (the local store gathers them into large writes).
    const pieces: Uint8Array[] = [];
    let size = 0;
    for (const field of fields) {
      const data = sample.fields[field]!;
      const padding = entryBytes(data.byteLength) - BLOCK - data.byteLength;
      pieces.push(ustarHeader(`${sample.key}.${field}`, data.byteLength), data);
      if (padding > 0) pieces.push(ZERO_PADDING.subarray(0, padding));
      size += entryBytes(data.byteLength);
    }
    await Promise.race([this.channel.pushAll(pieces), this.uploadFailed]);

    const images = counts?.images ?? fields.filter(isImageField).length;
    const tokens = counts?.tokens ?? 0;
    this.images += images;
    this.tokens += tokens;
    this.entries.push({ key: sample.key, offset: this.offset, size, images, tokens });
    this.offset += size;
  }

  /** Completes the tar, waits until storage has published it, then writes its index. */
  async finish(): Promise<ShardRecord> {
    let digests: Digests;
    try {
      await Promise.race([this.channel.push(END_OF_ARCHIVE), this.uploadFailed]);
      this.channel.end();
      await this.upload;
      if (this.written !== this.bytes) {
        throw new M4Error('E_STORAGE', 'shards', `${this.key}: wrote ${this.written} bytes, expected ${this.bytes}`, { shard: this.key });
      }
      digests = await this.hash.digest();
    } finally {
      this.hash.dispose();
    }
    const record: ShardRecord = {
      shard: this.key,
      samples: this.entries.length,
      images: this.images,
      tokens: this.tokens,
      bytes: this.written,
      sha256: digests.sha256,
      md5: digests.md5,
    };
    await writeShardIndex(this.storage, this.key, record, this.entries);
    return record;
  }

  /** Abandons the shard: the body fails, so storage discards the temporary file or aborts the upload. */
  async abort(reason: Error): Promise<void> {
    this.channel.fail(reason);
    await this.upload.catch(() => {});
    this.hash.dispose();
  }
}

export interface ShardWriterOptions {
  storage: Storage;
  /** Shards are named `{prefix}-{000000}.tar`; the prefix may hold a folder (`train/laion`). */
  prefix: string;
  /** Roll to the next shard after this many samples (default 10,000). */
  maxSamples?: number;
  /** Roll before a sample would take the shard past this many bytes (default 1 GiB); a larger lone sample still gets a shard. */
  maxBytes?: number;
  /** Number of the first shard (default 0). */
  firstShard?: number;
}

/** Writes a stream of samples into as many shards as the count and size limits require. */
export class ShardWriter {
  private readonly options: Required<ShardWriterOptions>;
  private current: ShardBuilder | undefined;
  private next: number;
  private readonly records: ShardRecord[] = [];

  constructor(options: ShardWriterOptions) {
    this.options = { maxSamples: 10_000, maxBytes: 1 << 30, firstShard: 0, ...options };
    if (!(this.options.maxSamples >= 1) || !(this.options.maxBytes >= BLOCK * 4)) {
      throw new M4Error('E_USAGE', 'shards', 'maxSamples must be at least 1 and maxBytes at least 2048');
    }
    this.next = this.options.firstShard;
  }

  async write(sample: Sample, counts?: Partial<SampleCounts>): Promise<void> {
    const size = Object.values(sample.fields).reduce((sum, f) => sum + entryBytes(f.byteLength), 0);
    if (this.current && (this.current.samples >= this.options.maxSamples || this.current.bytes + size > this.options.maxBytes)) {
      await this.roll();
    }
    this.current ??= new ShardBuilder(this.options.storage, shardName(this.options.prefix, this.next++));
    try {
      await this.current.add(sample, counts);
    } catch (err) {
      if (!(err instanceof M4Error && err.code === 'E_SAMPLE')) await this.abort(err as Error);
      throw err;
    }
  }

  private async roll(): Promise<void> {
    const shard = this.current!;
    this.current = undefined;
    this.records.push(await shard.finish());
  }

  /** Finishes the last shard and returns the records of every shard written, in order. */
  async close(): Promise<ShardRecord[]> {
    if (this.current) await this.roll();
    return [...this.records];
  }

  async abort(reason: Error): Promise<void> {
    const shard = this.current;
    this.current = undefined;
    await shard?.abort(reason);
  }
}
