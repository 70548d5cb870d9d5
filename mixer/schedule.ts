import type { IndexEntry } from '../shards/shard-index.ts';
import type { SourceCursor } from './mixture-stream-types.ts';
import type { SourceDataset } from './source-dataset.ts';
import { SourceOrder, type OrderedSample } from './source-order.ts';
import { pickSource, type BalancerSource } from './token-balancer.ts';
import { nameId } from './seeded-random.ts';

/** What the schedule reads of a dataset: shard sizes and index entries (SourceDataset, or anything indexed). */
export type IndexedDataset = Pick<SourceDataset, 'shards' | 'entries'>;

/** One source as the schedule draws from it. */
export interface ScheduleSource<D extends IndexedDataset = SourceDataset> {
  name: string;
  /** Planned share of the mixture's tokens, a fraction of 1. */
  share: number;
  /** Planned tokens: the source is drawn from until it is within half a sample of this many. */
  target: number;
  dataset: D;
}

/** One position of the single-rank stream: which sample of which source, and the cursors just after it. */
export interface ScheduledSample {
  position: number;
  /** Index of the source in the schedule's list. */
  source: number;
  epoch: number;
  shard: number;
  entry: number;
  key: string;
  tokens: number;
  images: number;
  /** True when this is the last sample of its shard in this epoch. */
  lastOfShard: boolean;
  /** The cursors after this sample (read-only): a state taken here resumes at the next position. */
  after: readonly SourceCursor[];
}

export interface ScheduleOptions {
  seed: number;
  /** Shards of one source read (and interleaved) together (default 2). */
  openShards?: number;
  /** Ignore the targets and go on forever. */
  endless?: boolean;
  /** Start here instead of at position 0. */
  start?: { position: number; sources: readonly SourceCursor[] };
}

interface Head {
  order: Iterator<OrderedSample>;
  next: OrderedSample;
  key: string;
  tokens: number;
  images: number;
}

/**
 * The single-rank stream as a pure function of (plan, seed, position), read from the sources' indexes only (no tar is
 * opened): each source in its seeded order (SourceOrder), the sources merged by tokens (pickSource).
 */
export async function* schedule(sources: readonly ScheduleSource<IndexedDataset>[], options: ScheduleOptions): AsyncGenerator<ScheduledSample> {
  for await (const chunk of scheduleChunks(sources, options)) yield* chunk;
}

/** Positions handed on together: one await per chunk rather than per sample keeps the schedule off the profile. */
const CHUNK = 64;

/** The schedule in chunks of consecutive positions (what the stream consumes). */
export async function* scheduleChunks(sources: readonly ScheduleSource<IndexedDataset>[], options: ScheduleOptions): AsyncGenerator<ScheduledSample[]> {
  const openShards = options.openShards ?? 2;
  const cursors: SourceCursor[] = sources.map((s, i) => options.start?.sources[i] ?? { name: s.name, epoch: 0, taken: 0, tokens: 0 });
  const orders = sources.map((s) => new SourceOrder(s.dataset.shards.map((r) => r.samples), options.seed, nameId(s.name), openShards));
  const indexes = new IndexCache(sources, 2 * openShards);
  const heads: (Head | undefined)[] = [];
  for (let i = 0; i < sources.length; i++) heads.push(await headOf(indexes, i, orders[i]!.from(cursors[i]!.epoch, cursors[i]!.taken)));

  const balance: BalancerSource[] = sources.map((s, i) => ({ share: s.share, tokens: cursors[i]!.tokens, next: heads[i]?.tokens ?? 0 }));
  let chunk: ScheduledSample[] = [];
  for (let position = options.start?.position ?? 0; ; position++) {
    const active: number[] = [];
    sources.forEach((s, i) => {
      if (heads[i] && s.share > 0 && (options.endless || wantsMore(cursors[i]!.tokens, heads[i]!.tokens, s.target))) active.push(i);
    });
    if (active.length === 0) {
      if (chunk.length > 0) yield chunk;
      return;
    }
    const c = pickSource(balance, active);
    const head = heads[c]!;
    const cursor = cursors[c]!;
    const taken = head.next.taken + 1;
    const epochSamples = orders[c]!.epochSamples;
    cursors[c] = { name: cursor.name, epoch: taken === epochSamples ? head.next.epoch + 1 : head.next.epoch, taken: taken === epochSamples ? 0 : taken, tokens: cursor.tokens + head.tokens };
    balance[c]!.tokens = cursors[c]!.tokens;
    const shardSamples = sources[c]!.dataset.shards[head.next.shard]!.samples;
    chunk.push({
      position,
      source: c,
      epoch: head.next.epoch,
      shard: head.next.shard,
      entry: head.next.entry,
      key: head.key,
      tokens: head.tokens,
      images: head.images,
      lastOfShard: head.next.entry === shardSamples - 1,
      // Cursor objects are replaced, never changed, so a shallow copy is a snapshot.
      after: [...cursors],
    });
    if (chunk.length === CHUNK) {
      yield chunk;
      chunk = [];
    }
    const next = headOf(indexes, c, head.order);
    heads[c] = next instanceof Promise ? await next : next;
    balance[c]!.next = heads[c]?.tokens ?? 0;
  }
}

/**
 * A source takes its next sample while that brings it nearer its target than stopping would: it ends within half a
 * sample of the target, and exactly on it when the target is whole epochs.
 */
function wantsMore(tokens: number, next: number, target: number): boolean {
  // A tie (half a sample either way) stops; the margin keeps float noise in a target (0.2 x 840) from breaking one.
  return tokens + next / 2 < target * (1 - 1e-12);
}

/** The source's next sample; a promise only when its shard's index must be read first. */
function headOf(indexes: IndexCache, source: number, order: Iterator<OrderedSample>): Head | undefined | Promise<Head | undefined> {
  const step = order.next();
  if (step.done) return undefined;
  const next = step.value;
  const head = (entries: IndexEntry[]): Head => {
    const entry = entries[next.entry]!;
    return { order, next, key: entry.key, tokens: entry.tokens, images: entry.images };
  };
  const cached = indexes.get(source, next.shard);
  return cached ? head(cached) : indexes.load(source, next.shard).then(head);
}

/** The index entries of the shards each source is reading, at hand without an await once loaded. */
class IndexCache {
  private readonly loaded: Map<number, IndexEntry[]>[];

  constructor(
    private readonly sources: readonly ScheduleSource<IndexedDataset>[],
    private readonly perSource: number,
  ) {
    this.loaded = sources.map(() => new Map());
  }

  get(source: number, shard: number): IndexEntry[] | undefined {
    return this.loaded[source]!.get(shard);
  }

  async load(source: number, shard: number): Promise<IndexEntry[]> {
    const entries = await this.sources[source]!.dataset.entries(shard);
    const map = this.loaded[source]!;
    map.set(shard, entries);
    // Shards are read a group at a time: the oldest loaded is the first done with.
    if (map.size > this.perSource) map.delete(map.keys().next().value!);
    return entries;
  }
}
