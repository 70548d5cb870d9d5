import { generator, IndexPermutation, permutation } from './seeded-random.ts';

/**
 * The order in which one source's samples are read, epoch after epoch, as three seeded shuffles:
 * 1. the epoch's shards in a seeded order, cut into *windows* of about WINDOW_SAMPLES samples (the indexes a schedule
 *    holds at once, as mosaic's shuffle blocks bound theirs);
 * 2. each shard of a window cut into *runs* of `run` consecutive samples (each read later with one ranged request),
 *    the window's runs in seeded *rounds* (a run of every shard each round, see RoundOrder), cut into *groups* of
 *    `groupRuns` runs;
 * 3. within a group, each run's samples in a seeded order, spread evenly over the group's span at seeded offsets, so
 *    neighbours come from different runs (different shards, as a rule).
 * A pure function of (shard sizes, layout, seed, source, epoch, position): a cursor restarts by rebuilding its group.
 */

/** How a source is cut for reading. */
export interface ReadLayout {
  /** Consecutive samples of a shard read with one request. */
  run: number;
  /** Runs spread over one another; their bytes are held together while the group is read. */
  groupRuns: number;
  /** Samples of shards shuffled together (default WINDOW_SAMPLES). */
  windowSamples?: number;
}

/** One sample of a source's order: which shard (by its place in the dataset) and which entry of it. */
export interface OrderedSample {
  epoch: number;
  /** Samples of this epoch taken before this one. */
  taken: number;
  shard: number;
  entry: number;
  /** First entry of the sample's run in its shard (the run is `[runStart, runStart + layout.run)`, cut at the shard's end). */
  runStart: number;
  /** `taken` just past the sample's group: once a schedule has placed that many samples of the epoch, the group is placed. */
  groupEnd: number;
  /** The runs of the sample's group, their lengths by `runId` (one map per group). */
  groupRuns: ReadonlyMap<number, number>;
}

/** A run's identity within a source's epoch: its shard and first entry, as one number (exact below 2^53). */
export function runId(shard: number, runStart: number): number {
  return shard * 2 ** 24 + runStart;
}

/** A run gathers at most this many bytes (by the manifest's mean sample size): one request each. */
const RUN_BYTES = 1 << 20;
const MAX_RUN = 256;
/** A group's bytes, held while it is read: what a source's shuffle costs in memory. */
const GROUP_BYTES = 64 << 20;
const MIN_GROUP_RUNS = 16;
const MAX_GROUP_RUNS = 1024;
/** Samples whose index entries a schedule holds at once (about 100 bytes each). */
export const WINDOW_SAMPLES = 1 << 19;

/**
 * The layout for a source of `shards` shards holding `samples` samples in `bytes` bytes (from its manifest). A group
 * holds a run of every shard of a window (its rounds, see RoundOrder), so runs are short enough for that many to fit in
 * GROUP_BYTES (PMD's 471 shards of 22 kB pairs: runs of 6), and at most RUN_BYTES long where shards are few.
 */
export function readLayout(samples: number, bytes: number, shards = 1): ReadLayout {
  const mean = samples > 0 ? bytes / samples : 0;
  if (mean === 0) return { run: MAX_RUN, groupRuns: MAX_GROUP_RUNS };
  // Shards of a window (at least 1: samples > 0 here).
  const perWindow = Math.max(1, Math.min(shards, Math.ceil(WINDOW_SAMPLES / Math.max(1, samples / shards))));
  const run = Math.min(MAX_RUN, Math.max(1, Math.floor(Math.min(RUN_BYTES, GROUP_BYTES / perWindow) / mean)));
  // Whole rounds: a group then holds each shard's runs equally often (once, where shards are many).
  const rounds = Math.max(1, Math.floor(GROUP_BYTES / (run * mean * perWindow)));
  const groupRuns = Math.min(MAX_GROUP_RUNS, Math.max(MIN_GROUP_RUNS, perWindow * rounds));
  return { run, groupRuns };
}

export class SourceOrder {
  /** Samples per epoch. */
  readonly epochSamples: number;

  constructor(
    /** Samples per shard, in the dataset's shard order. */
    private readonly shardSamples: readonly number[],
    readonly layout: ReadLayout,
    private readonly seed: number,
    private readonly sourceId: number,
  ) {
    this.epochSamples = shardSamples.reduce((a, b) => a + b, 0);
  }

  /** The order from a cursor on, without end (epochs follow each other). */
  *from(epoch: number, taken: number): Generator<OrderedSample> {
    const cursor = this.cursor(epoch, taken);
    for (let sample = cursor.next(); sample; sample = cursor.next()) yield { ...sample };
  }

  /**
   * The order from a cursor on, a sample per `next()` (what a schedule reads: no generator, and no object, per
   * sample: the record `next()` returns is the cursor's own, valid until its next call).
   */
  cursor(epoch: number, taken: number): OrderCursor {
    return new OrderCursor(this, epoch, taken);
  }

  /** Samples of each shard, by its place in the dataset. */
  samplesOf(shard: number): number {
    return this.shardSamples[shard]!;
  }

  /** The epoch's shards in their seeded order, cut into windows of at least `windowSamples` samples (the last: the rest). */
  windowsOf(epoch: number): number[][] {
    const order = permutation(this.shardSamples.length, this.seed, this.sourceId, epoch).filter((s) => this.shardSamples[s]! > 0);
    const windows: number[][] = [[]];
    const size = this.layout.windowSamples ?? WINDOW_SAMPLES;
    let filled = 0;
    for (const s of order) {
      if (filled >= size) {
        windows.push([]);
        filled = 0;
      }
      windows.at(-1)!.push(s);
      filled += this.shardSamples[s]!;
    }
    return windows;
  }

  /** A window's order: its shards, with the words that seed it. */
  window(epoch: number, w: number, shards: readonly number[]): WindowOrder {
    return new WindowOrder(
      shards.map((s) => ({ shard: s, samples: this.shardSamples[s]! })),
      this.layout,
      [this.seed, this.sourceId, epoch, w],
    );
  }
}

/** Walks an order group by group: each group built (and sorted) once, then handed out a sample at a time. */
export class OrderCursor {
  private epoch: number;
  private windows: number[][] = [];
  private w = 0;
  /** Samples of the epoch before the current window. */
  private windowStart = 0;
  private window: WindowOrder | undefined;
  private g = 0;
  private group: GroupOrder = EMPTY_GROUP;
  private i = 0;
  private readonly sample: OrderedSample = { epoch: 0, taken: 0, shard: 0, entry: 0, runStart: 0, groupEnd: 0, groupRuns: new Map() };

  constructor(
    private readonly order: SourceOrder,
    epoch: number,
    private skip: number,
  ) {
    this.epoch = epoch;
    if (order.epochSamples > 0) this.openEpoch();
  }

  /** The shards of the window the last sample came from: whose indexes a schedule reads next. */
  get windowShards(): readonly number[] {
    return this.windows[this.w] ?? [];
  }

  next(): OrderedSample | undefined {
    while (this.i >= this.group.order.length) {
      if (this.order.epochSamples === 0) return undefined;
      this.advance();
    }
    const group = this.group;
    const k = group.order[this.i]!;
    const sample = this.sample;
    sample.epoch = group.epoch;
    sample.taken = group.start + this.i++;
    sample.shard = group.shard[k]!;
    sample.entry = group.entry[k]!;
    sample.runStart = group.runStart[k]!;
    sample.groupEnd = group.start + group.order.length;
    sample.groupRuns = group.runs;
    return sample;
  }

  private openEpoch(): void {
    this.windows = this.order.windowsOf(this.epoch);
    this.w = -1;
    this.windowStart = 0;
    this.window = undefined;
  }

  /** Moves to the next group holding samples at or past `skip` (then 0): the next window, and epoch, as needed. */
  private advance(): void {
    for (;;) {
      if (this.window && this.g + 1 < this.window.groups) {
        this.g++;
      } else {
        if (this.window) this.windowStart += this.window.samples;
        this.window = undefined;
        if (++this.w >= this.windows.length) {
          this.epoch++;
          this.skip = 0;
          this.openEpoch();
          continue;
        }
        const shards = this.windows[this.w]!;
        const size = shards.reduce((acc, shard) => acc + this.order.samplesOf(shard), 0);
        if (this.windowStart + size <= this.skip) {
          this.windowStart += size;
          continue;
        }
        this.window = this.order.window(this.epoch, this.w, shards);
        this.g = this.window.groupOf(Math.max(0, this.skip - this.windowStart));
      }
      this.group = this.window.group(this.g, this.epoch, this.windowStart);
      this.i = Math.max(0, this.skip - this.group.start);
      this.skip = 0;
      return;
    }
  }
}

/** One window: its runs in a seeded permutation, cut into groups, each group's samples spread. */
class WindowOrder {
  /** Samples and groups of the window. */
  readonly samples: number;
  readonly groups: number;
  private readonly runPrefix: number[] = [0];
  private readonly permutation: RoundOrder;
  /** Places (in the permutation) of the runs shorter than `layout.run`, ascending, and the samples missing before each. */
  private readonly shortPlaces: number[] = [];
  private readonly missingBefore: number[] = [0];

  constructor(
    private readonly shards: readonly { shard: number; samples: number }[],
    private readonly layout: ReadLayout,
    private readonly words: number[],
  ) {
    const short: { run: number; missing: number }[] = [];
    let samples = 0;
    for (const shard of shards) {
      samples += shard.samples;
      this.runPrefix.push(this.runPrefix.at(-1)! + Math.ceil(shard.samples / layout.run));
      if (shard.samples % layout.run !== 0) short.push({ run: this.runPrefix.at(-1)! - 1, missing: layout.run - (shard.samples % layout.run) });
    }
    this.samples = samples;
    this.permutation = new RoundOrder(this.runPrefix, words);
    this.groups = Math.ceil(this.permutation.n / layout.groupRuns);
    const places = short.map((s) => ({ place: this.permutation.indexOf(s.run), missing: s.missing })).sort((a, b) => a.place - b.place);
    for (const p of places) {
      this.shortPlaces.push(p.place);
      this.missingBefore.push(this.missingBefore.at(-1)! + p.missing);
    }
  }

  /** Samples of the window before group g: its runs in full, less what the short runs among them miss. */
  groupStart(g: number): number {
    const places = Math.min(this.permutation.n, g * this.layout.groupRuns);
    return places * this.layout.run - this.missingBefore[lowerBound(this.shortPlaces, places)]!;
  }

  /** The group holding the window's sample `taken`. */
  groupOf(taken: number): number {
    let lo = 0;
    let hi = this.groups - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.groupStart(mid) <= taken) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The k-th of a run's n samples (in a seeded order) is placed at (k + u) / n of the group's span (u seeded), then sorted. */
  group(g: number, epoch: number, windowStart: number): GroupOrder {
    const first = g * this.layout.groupRuns;
    const last = Math.min(this.permutation.n, first + this.layout.groupRuns);
    const next = generator(...this.words, g);
    const runs = [];
    const lengths = new Map<number, number>();
    let samples = 0;
    for (let p = first; p < last; p++) {
      const run = this.runAt(this.permutation.at(p));
      runs.push(run);
      lengths.set(runId(run.shard, run.start), run.length);
      samples += run.length;
    }
    // Typed arrays, not an object per sample: a group lives as long as it is read, long enough for the collector to
    // copy each object it holds a few times over.
    const shard = new Int32Array(samples);
    const entry = new Int32Array(samples);
    const runStart = new Int32Array(samples);
    const at = new Float64Array(samples);
    const slots = new Int32Array(this.layout.run);
    let n = 0;
    for (const run of runs) {
      // A run is read with one request, so its own order is free: shuffled too (a shard smaller than a run still
      // comes in another order under another seed).
      for (let i = 0; i < run.length; i++) slots[i] = i;
      for (let i = run.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [slots[i], slots[j]] = [slots[j]!, slots[i]!];
      }
      for (let i = 0; i < run.length; i++, n++) {
        at[n] = (slots[i]! + next()) / run.length;
        shard[n] = run.shard;
        entry[n] = run.start + i;
        runStart[n] = run.start;
      }
    }
    // By place, ties in the order placed (as a stable sort of the samples would leave them).
    const order = new Uint32Array(samples);
    for (let i = 0; i < samples; i++) order[i] = i;
    order.sort((a, b) => at[a]! - at[b]! || a - b);
    return { epoch, start: windowStart + this.groupStart(g), order, shard, entry, runStart, runs: lengths };
  }

  /** Dataset shard, first entry and length of the window's run q. */
  private runAt(q: number): { shard: number; start: number; length: number } {
    const k = lowerBound(this.runPrefix, q + 1) - 1;
    const { shard, samples } = this.shards[k]!;
    const start = (q - this.runPrefix[k]!) * this.layout.run;
    return { shard, start, length: Math.min(this.layout.run, samples - start) };
  }
}

/**
 * A window's runs in rounds: round j holds one run of every shard that has more than j runs, the shards in a seeded
 * order of their own each round, so consecutive places within a round hold runs of as many different shards (a group
 * of whole rounds, or inside one, holds each of its shards equally often; one straddling two may hold a shard twice).
 * A shard's j-th run is its (j + a seeded offset)-th, wrapping: consecutive rounds read runs that lie end to end, and
 * the first rounds are not all the shards' heads. A bijection of [0, n) with its inverse.
 */
class RoundOrder {
  readonly n: number;
  /** Shards (by place in the window) by run count, most first: round j's are the first `roundStart[j + 1] - roundStart[j]`. */
  private readonly byRuns: number[];
  private readonly rankOf: Int32Array;
  private readonly roundStart: number[] = [0];
  private readonly offsets: number[];
  /** The shard orders of the rounds last used (a window may have 2^19 rounds: a few are kept, each rebuilt at once). */
  private readonly rounds = new Map<number, IndexPermutation>();

  constructor(
    private readonly runPrefix: readonly number[],
    private readonly words: readonly number[],
  ) {
    const shards = runPrefix.length - 1;
    const runs = (k: number) => runPrefix[k + 1]! - runPrefix[k]!;
    this.n = runPrefix[shards]!;
    this.byRuns = Array.from({ length: shards }, (_, k) => k).sort((a, b) => runs(b) - runs(a) || a - b);
    this.rankOf = new Int32Array(shards);
    this.byRuns.forEach((k, i) => (this.rankOf[k] = i));
    const next = generator(...words, -1);
    this.offsets = Array.from({ length: shards }, (_, k) => Math.floor(next() * runs(k)));
    let members = shards;
    for (let j = 0; this.roundStart.at(-1)! < this.n; j++) {
      while (members > 0 && runs(this.byRuns[members - 1]!) <= j) members--;
      this.roundStart.push(this.roundStart.at(-1)! + members);
    }
  }

  /** The run at place p. */
  at(p: number): number {
    const j = lowerBound(this.roundStart, p + 1) - 1;
    const k = this.byRuns[this.round(j).at(p - this.roundStart[j]!)]!;
    const runs = this.runPrefix[k + 1]! - this.runPrefix[k]!;
    return this.runPrefix[k]! + ((j + this.offsets[k]!) % runs);
  }

  /** The place of run q. */
  indexOf(q: number): number {
    const k = lowerBound(this.runPrefix, q + 1) - 1;
    const runs = this.runPrefix[k + 1]! - this.runPrefix[k]!;
    const j = (((q - this.runPrefix[k]! - this.offsets[k]!) % runs) + runs) % runs;
    return this.roundStart[j]! + this.round(j).indexOf(this.rankOf[k]!);
  }

  private round(j: number): IndexPermutation {
    let round = this.rounds.get(j);
    if (!round) {
      if (this.rounds.size >= 8) this.rounds.delete(this.rounds.keys().next().value!);
      round = new IndexPermutation(this.roundStart[j + 1]! - this.roundStart[j]!, ...this.words, j);
      this.rounds.set(j, round);
    }
    return round;
  }
}

/** One group's samples: the i-th of the group is sample `order[i]` of the arrays, `taken` start + i of its epoch. */
interface GroupOrder {
  epoch: number;
  start: number;
  order: Uint32Array;
  shard: Int32Array;
  entry: Int32Array;
  runStart: Int32Array;
  /** Its runs' lengths, by `runId`. */
  runs: ReadonlyMap<number, number>;
}

const EMPTY_GROUP: GroupOrder = {
  epoch: 0,
  start: 0,
  order: new Uint32Array(0),
  shard: new Int32Array(0),
  entry: new Int32Array(0),
  runStart: new Int32Array(0),
  runs: new Map(),
};

/** The first index of a sorted array whose value is >= x. */
function lowerBound(sorted: readonly number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
