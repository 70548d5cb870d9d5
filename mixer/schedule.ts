import pLimit from 'p-limit';
import { totalsOf } from '../shards/manifest.ts';
import type { IndexEntry } from '../shards/shard-index.ts';
import type { SourceDataset } from './source-dataset.ts';
import { readLayout, SourceOrder, WINDOW_SAMPLES, type OrderedSample, type ReadLayout } from './source-order.ts';
import { Brackets } from './long-sample-brackets.ts';
import { pickSource, type BalancerSource } from './token-balancer.ts';
import { hashInts, nameId } from './seeded-random.ts';

/** What the schedule reads of a dataset: shard records and index entries (SourceDataset, or anything indexed). */
export type IndexedDataset = Pick<SourceDataset, 'shards' | 'entries'>;

/** One source as the schedule draws from it. */
export interface ScheduleSource<D extends IndexedDataset = SourceDataset> {
  name: string;
  /** Planned share of the mixture's tokens, a fraction of 1. */
  share: number;
  /** Planned tokens: the source is drawn from until it is within half a sample of this many. */
  target: number;
  dataset: D;
  /** How the source is cut for reading (default: from its manifest's sizes, `readLayout`). */
  layout?: ReadLayout;
}

/** One position of the single-rank stream: which sample of which source, and the cursors just after it. */
export interface ScheduledSample {
  position: number;
  /** Index of the source in the schedule's list. */
  source: number;
  epoch: number;
  /** Samples of the epoch before this one, in the source's order. */
  taken: number;
  shard: number;
  entry: number;
  /** First entry of the sample's run, and `taken` past its group (see SourceOrder). */
  runStart: number;
  groupEnd: number;
  /** The run's bytes in the shard's tar: `[runOffset, runEnd)`. */
  runOffset: number;
  runEnd: number;
  key: string;
  tokens: number;
  images: number;
  /** Where the sample lies in its shard's tar. */
  offset: number;
  size: number;
  /**
   * Where a replay starts to go on after this sample (read-only): the next position and the cursors just after it, or,
   * inside a long sample's bracket, the bracket's first position and the cursors before it (see `Brackets`).
   */
  resumeFrom: SchedulePoint;
  /**
   * The runs of the sample's group, by `runId`, with their bytes (one map per group): what a reader may read with a
   * neighbour before any of their samples is placed.
   */
  groupRuns: ReadonlyMap<number, { runOffset: number; runEnd: number }>;
}

/** Where one source's order stands. */
export interface SourceCursor {
  name: string;
  /** Epoch being read (0-based) and how many samples of it were taken. */
  epoch: number;
  taken: number;
  /** Tokens the source has contributed to the stream so far. */
  tokens: number;
}

/** The schedule at a position: every source's cursor just before it. */
export interface SchedulePoint {
  position: number;
  sources: readonly SourceCursor[];
}

export interface ScheduleOptions {
  seed: number;
  /** Ignore the targets and go on forever. */
  endless?: boolean;
  /** Start here instead of at position 0. */
  start?: SchedulePoint;
}

/**
 * The single-rank stream as a pure function of (plan, seed, position), read from the sources' indexes only (no tar is
 * opened): each source in its seeded order (SourceOrder), the sources merged by tokens (pickSource).
 */
export async function* schedule(sources: readonly ScheduleSource<IndexedDataset>[], options: ScheduleOptions): AsyncGenerator<ScheduledSample> {
  for await (const chunk of scheduleChunks(sources, options)) yield* chunk;
}

/** Positions handed on together: one await per chunk rather than per sample keeps the schedule off the profile. */
const CHUNK = 256;

/** The layout a source is read with: its own, or the one its manifest's sizes give. */
export function layoutOf(source: ScheduleSource<IndexedDataset>): ReadLayout {
  if (source.layout) return source.layout;
  const { samples, bytes } = totalsOf(source.dataset.shards);
  return readLayout(samples, bytes, source.dataset.shards.length);
}

/** A source's period: its mean sample over its share, the stream's tokens between two of its samples. */
function periodOf(source: ScheduleSource<IndexedDataset>): number {
  const { tokens, samples } = totalsOf(source.dataset.shards);
  return source.share > 0 && samples > 0 ? tokens / samples / source.share : Infinity;
}

/** The schedule in chunks of consecutive positions (what the stream consumes). */
export async function* scheduleChunks(sources: readonly ScheduleSource<IndexedDataset>[], options: ScheduleOptions): AsyncGenerator<ScheduledSample[]> {
  const n = sources.length;
  const cursors: SourceCursor[] = sources.map((s, i) => options.start?.sources[i] ?? { name: s.name, epoch: 0, taken: 0, tokens: 0 });
  const ids = sources.map((s) => nameId(s.name));
  const layouts = sources.map(layoutOf);
  const orders = sources.map(
    (s, i) =>
      new SourceOrder(
        s.dataset.shards.map((r) => r.samples),
        layouts[i]!,
        options.seed,
        ids[i]!,
      ),
  );
  const walks = orders.map((order, i) => order.cursor(cursors[i]!.epoch, cursors[i]!.taken));
  const indexes = new IndexCache(sources);
  // Each source's next sample, and its shard's index entries.
  const heads: (OrderedSample | undefined)[] = Array(n);
  const entries: IndexEntry[][] = Array(n);
  await Promise.all(
    walks.map(async (walk, i) => {
      const next = walk.next();
      heads[i] = next;
      if (next) entries[i] = await indexes.load(i, next.shard, walk.windowShards);
    }),
  );

  // Each source's group's runs, with their bytes from their indexes (those of its window, already loaded).
  const groups: { runs: ReadonlyMap<number, number>; bytes: Map<number, { runOffset: number; runEnd: number }> }[] = sources.map(() => ({
    runs: new Map(),
    bytes: new Map(),
  }));
  const runBytes = (c: number, runs: ReadonlyMap<number, number>): ReadonlyMap<number, { runOffset: number; runEnd: number }> => {
    const known = groups[c]!;
    if (runs !== known.runs) {
      known.runs = runs;
      known.bytes = new Map();
      for (const [id, length] of runs) {
        const shardEntries = indexes.get(c, Math.floor(id / 2 ** 24));
        if (!shardEntries) continue;
        const runStart = id % 2 ** 24;
        const last = shardEntries[runStart + length - 1]!;
        known.bytes.set(id, { runOffset: shardEntries[runStart]!.offset, runEnd: last.offset + last.size });
      }
    }
    return known.bytes;
  };
  const balance: BalancerSource[] = sources.map((s, i) => ({
    share: s.share,
    tokens: cursors[i]!.tokens,
    next: heads[i] ? entries[i]![heads[i]!.entry]!.tokens : 0,
  }));
  const brackets = new Brackets<SchedulePoint>(sources.map(periodOf));
  const active: number[] = [];
  let chunk: ScheduledSample[] = [];
  for (let position = options.start?.position ?? 0; ; position++) {
    active.length = 0;
    for (let i = 0; i < n; i++) {
      if (heads[i] && sources[i]!.share > 0 && (options.endless || wantsMore(cursors[i]!.tokens, balance[i]!.next, sources[i]!.target))) active.push(i);
    }
    if (active.length === 0) {
      if (chunk.length > 0) yield chunk;
      return;
    }
    let c = brackets.next(balance, active);
    if (c === undefined) {
      // The jitter of each candidate is a pure function of (seed, position, source): any start gives the same picks.
      const picked = active.length === 1 ? active[0]! : pickSource(balance, active, (i) => hashInts(options.seed, position, ids[i]!) / 0x1_0000_0000);
      c = brackets.open(picked, balance, active, () => ({ position, sources: cursors.slice() }));
    }
    const head = heads[c]!;
    const shardEntries = entries[c]!;
    const { key, tokens, images, offset, size } = shardEntries[head.entry]!;
    const runLast = shardEntries[Math.min(head.runStart + layouts[c]!.run, shardEntries.length) - 1]!;
    const taken = head.taken + 1;
    const rollover = taken === orders[c]!.epochSamples;
    cursors[c] = { name: cursors[c]!.name, epoch: rollover ? head.epoch + 1 : head.epoch, taken: rollover ? 0 : taken, tokens: cursors[c]!.tokens + tokens };
    balance[c]!.tokens = cursors[c]!.tokens;
    chunk.push({
      position,
      source: c,
      epoch: head.epoch,
      taken: head.taken,
      shard: head.shard,
      entry: head.entry,
      runStart: head.runStart,
      groupEnd: head.groupEnd,
      runOffset: shardEntries[head.runStart]!.offset,
      runEnd: runLast.offset + runLast.size,
      key,
      tokens,
      images,
      offset,
      size,
      // Cursor objects are replaced, never changed, so a shallow copy is a snapshot.
      resumeFrom: brackets.start ?? { position: position + 1, sources: cursors.slice() },
      groupRuns: runBytes(c, head.groupRuns),
    });
    if (chunk.length === CHUNK) {
      yield chunk;
      chunk = [];
    }
    const next = walks[c]!.next();
    heads[c] = next;
    if (next) {
      entries[c] = indexes.get(c, next.shard) ?? (await indexes.load(c, next.shard, walks[c]!.windowShards));
      balance[c]!.next = entries[c]![next.entry]!.tokens;
    } else {
      balance[c]!.next = 0;
    }
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

/**
 * The index entries of the shards each source is reading, at hand without an await once loaded. A source reads one
 * window of shards at a time (WINDOW_SAMPLES samples): when a shard's index is missing, every index of its window is
 * read, INDEX_READS at once (remote indexes would otherwise be read one latency after another). A few more than a
 * window are kept; the least recently loaded go.
 */
class IndexCache {
  private readonly loaded: Map<number, IndexEntry[]>[];
  private readonly held: number[];
  private readonly limit = pLimit(INDEX_READS);

  constructor(private readonly sources: readonly ScheduleSource<IndexedDataset>[]) {
    this.loaded = sources.map(() => new Map());
    this.held = sources.map(() => 0);
  }

  get(source: number, shard: number): IndexEntry[] | undefined {
    return this.loaded[source]!.get(shard);
  }

  async load(source: number, shard: number, window: readonly number[]): Promise<IndexEntry[]> {
    const map = this.loaded[source]!;
    const dataset = this.sources[source]!.dataset;
    const missing = [shard, ...window.filter((s) => s !== shard && !map.has(s))];
    const entries = await Promise.all(missing.map((s) => this.limit(() => dataset.entries(s))));
    missing.forEach((s, i) => this.keep(source, s, entries[i]!));
    return entries[0]!;
  }

  private keep(source: number, shard: number, entries: IndexEntry[]): void {
    const map = this.loaded[source]!;
    map.set(shard, entries);
    this.held[source]! += entries.length;
    while (this.held[source]! > 2 * WINDOW_SAMPLES && map.size > 1) {
      const [oldest, dropped] = map.entries().next().value!;
      map.delete(oldest);
      this.held[source]! -= dropped.length;
    }
  }
}

/** Indexes read at once. */
const INDEX_READS = 16;
