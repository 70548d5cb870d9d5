import { isM4Error } from '../core/errors.ts';
import { ReadAhead } from '../core/read-ahead.ts';
import type { ReadSample } from '../shards/sample.ts';
import { newReadCounters, readShard, type ReadCounters } from '../shards/tar-reader.ts';
import type { SourceDataset } from './source-dataset.ts';

/** Read-ahead per open shard, bounded in samples and bytes (samples held long cost garbage-collection time). */
const AHEAD_SAMPLES = 16;
const AHEAD_BYTES = 8 << 20;

/**
 * One shard read front to back once, ahead of its consumer, which takes the samples it needs by key (a rank skips
 * the others'). A truncated or corrupt tar ends the shard early; what could not be read is reported, not thrown.
 */
export class ShardSampleReader {
  readonly url: string;
  private readonly counters: ReadCounters = newReadCounters();
  private readonly ahead: ReadAhead<ReadSample>;
  /** Place of each key in the shard's index, to tell a skipped sample from one still to come. */
  private readonly places: Map<string, number>;
  /** A sample read past a wanted one that turned out missing, kept for the next take. */
  private held: ReadSample | undefined;
  /** Why the shard could not be read in full, once known. */
  problem: string | undefined;

  constructor(dataset: SourceDataset, shard: number, keys: readonly string[]) {
    this.url = dataset.shardUrl(shard);
    this.places = new Map(keys.map((key, i) => [key, i]));
    const samples = readShard({ storage: dataset.storage, key: dataset.shardKey(shard) }, { onError: 'skip', counters: this.counters });
    this.ahead = new ReadAhead(samples, AHEAD_SAMPLES, AHEAD_BYTES, sizeOf);
  }

  /** The sample with this key, skipping those before it; undefined when the shard ends (or breaks) first. */
  async take(key: string): Promise<ReadSample | undefined> {
    const wanted = this.places.get(key) ?? -1;
    for (;;) {
      let sample = this.held;
      this.held = undefined;
      try {
        sample ??= this.ahead.ready() ?? (await this.ahead.next());
      } catch (err) {
        // A shard that cannot be opened is a bad shard like a corrupt one; storage failing after its retries is not.
        if (!isM4Error(err, 'E_NOT_FOUND')) throw err;
        this.problem ??= (err as Error).message;
        return undefined;
      }
      if (sample === undefined) {
        this.problem ??= this.counters.errors[0] ?? `${this.url}: sample ${key} is listed in the index but not in the shard`;
        return undefined;
      }
      if (sample.key === key) return sample;
      if ((this.places.get(sample.key) ?? -1) > wanted) {
        // The tar skipped the wanted sample (a bad entry): it is lost, the one read stays for later.
        this.held = sample;
        this.problem ??= this.counters.errors[0] ?? `${this.url}: sample ${key} is listed in the index but not in the shard`;
        return undefined;
      }
    }
  }

  async close(): Promise<void> {
    await this.ahead.close();
  }
}

function sizeOf(sample: ReadSample): number {
  return sample.size;
}
