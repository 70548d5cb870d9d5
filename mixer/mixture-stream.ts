import { M4Error } from '../core/errors.ts';
import { isRemote } from '../shards/storage/location.ts';
import { QualityMeter } from './mix-quality.ts';
import { checkState, freshState, mergeStates, type MixtureState, type StateContext } from './mixture-state.ts';
import type { MixedSample, MixtureStream, MixtureStreamOptions, RealisedReport, RealisedSource } from './mixture-stream-types.ts';
import type { MixPlan } from './plan.ts';
import { coalesce, fetchRanges, sampleIn, type FetchedRanges } from './range-fetch.ts';
import { RankSequence } from './rank-sequence.ts';
import { layoutOf, scheduleChunks, type ScheduledSample, type ScheduleSource } from './schedule.ts';
import { runId } from './source-order.ts';

/**
 * Positions the schedule runs ahead of the consumer (indexes only, no tar read). A run is read once its group is
 * placed, so a rank asks only for its own samples of it; a run needed before its group is placed is read whole.
 */
const LOOKAHEAD = 16_384;
const SINGLE_RANK_LOOKAHEAD = 2048;
/**
 * Bytes of runs read ahead and held: the prefetch stops there, never the consumer. A source's group is held while it
 * is read (about 64 MiB, see SourceOrder), so four sources of many shards hold about this much anyway; a mixture of
 * smaller groups reads its next ones ahead within it, instead of waiting for each at its first sample (at 128 MiB the
 * bench mixture, whose groups in use hold 150 MB, waited about 100 ms on s3rver for its second PMD group).
 */
const FETCH_BYTES = 256 << 20;
/** A run is read whole, before its group is placed, once the consumer is this close to it. */
const PREFETCH = 2048;
/** Ranged reads in flight: a few locally; many remotely, where each waits a first-byte latency. */
const LOCAL_FETCHES = 6;
const REMOTE_FETCHES = 32;
/**
 * Runs of one shard that lie end to end in one group are read with one request, up to this many bytes: a group that
 * holds several runs of a shard (a small source, or few shards) costs a request per stretch, not per run.
 */
const MERGED_READ_BYTES = 8 << 20;

/** One run of one source's epoch, as this rank reads it. */
interface RunSlot {
  key: number;
  /** Position of its first sample this rank wants (Infinity for a run read early, before any is placed). */
  first: number;
  source: number;
  epoch: number;
  shard: number;
  /** First entry of the run in its shard. */
  runStart: number;
  groupEnd: number;
  /** The runs of its group, with their bytes (see ScheduledSample); none for one read before it was asked for. */
  groupRuns: ScheduledSample['groupRuns'] | undefined;
  runOffset: number;
  runEnd: number;
  /** This rank's samples of the run not yet taken, by tar offset. */
  wanted: Map<number, ScheduledSample>;
  fetch?: Promise<FetchedRanges>;
  /** The read, once it has completed. */
  fetched?: FetchedRanges;
  /** The read it shares with the other runs of its batch: its bytes are held until every one of them is released. */
  read?: { bytes: number; holders: number };
  /** Its shard's URL, for messages and samples. */
  url: string;
  /** Read before its group was placed: the whole run, what turns out to be another rank's dropped later. */
  whole: boolean;
}

/** One of this rank's samples: its index in the sequence, the schedule's item, and the run it is read with. */
interface Mine {
  index: number;
  item: ScheduledSample;
  slot: RunSlot;
}

/**
 * The mixture's samples for one rank: the schedule (pure, from indexes), run ahead of the consumer; this rank's items of
 * it (see RankSequence); their runs read by ranged requests, a bounded number of bytes ahead. A corrupt shard's samples
 * are skipped and counted, up to `maxBadShards` shards; then the stream fails naming them.
 */
export class MixtureSampleStream implements MixtureStream {
  private readonly rank: number;
  private readonly worldSize: number;
  private readonly maxBadShards: number;
  private readonly origin: MixtureState;
  private readonly sequence: RankSequence;
  /** The last item this stream processed (yielded, or lost to a bad shard). */
  private last: Mine | undefined;
  private readonly delivered: { tokens: number; samples: number; images: number; lostSamples: number; lostTokens: number }[];
  private readonly badShards = new Map<string, string>();
  private readonly quality: QualityMeter;
  private remainder = 0;
  private started = false;

  constructor(
    private readonly plan: MixPlan,
    planId: string,
    private readonly sources: readonly ScheduleSource[],
    private readonly options: MixtureStreamOptions = {},
  ) {
    this.rank = options.rank ?? 0;
    this.worldSize = options.worldSize ?? 1;
    if (!(Number.isSafeInteger(this.worldSize) && this.worldSize >= 1 && Number.isSafeInteger(this.rank) && this.rank >= 0 && this.rank < this.worldSize)) {
      throw new M4Error('E_USAGE', 'mixer', `rank ${this.rank} of world size ${this.worldSize}: the rank must be a whole number from 0 to world size - 1`);
    }
    this.maxBadShards = options.maxBadShards ?? 3;
    const context: StateContext = {
      plan: planId,
      seed: plan.seed,
      sources: sources.map((s) => ({ name: s.name, samples: sum(s.dataset.shards.map((r) => r.samples)), tokens: sum(s.dataset.shards.map((r) => r.tokens)) })),
    };
    this.origin = this.resumeState(context);
    this.sequence = new RankSequence(this.origin.leftovers, this.origin.tail);
    this.delivered = sources.map(() => ({ tokens: 0, samples: 0, images: 0, lostSamples: 0, lostTokens: 0 }));
    this.quality = new QualityMeter(
      sources.map((s) => s.name),
      sources.map((s) => s.share),
    );
  }

  /** Where this rank starts: from scratch, from its own state, or from the states of every rank of another world. */
  private resumeState(context: StateContext): MixtureState {
    const resume = this.options.resume;
    if (resume === undefined) return freshState(context, this.rank, this.worldSize);
    if (Array.isArray(resume)) {
      const states = resume.map((s, i) => checkState(s, context, `resume state ${i + 1}`));
      if (states.length === 0) throw new M4Error('E_USAGE', 'mixer', 'no resume state was given');
      return { ...freshState(context, this.rank, this.worldSize), ...mergeStates(states) };
    }
    const state = checkState(resume, context);
    if (state.rank !== this.rank || state.worldSize !== this.worldSize) {
      throw new M4Error(
        'E_USAGE',
        'mixer',
        `the resume state belongs to rank ${state.rank} of ${state.worldSize}, not rank ${this.rank} of ${this.worldSize}: to go on under another world ` +
          `size, give the states of all ${state.worldSize} ranks, saved at the same point`,
      );
    }
    return state;
  }

  state(): MixtureState {
    const last = this.last;
    if (!last) return structuredClone(this.origin);
    const inTail = last.index >= this.sequence.leftoverCount;
    return {
      ...structuredClone(this.origin),
      next: last.index + this.worldSize,
      replay: inTail
        ? { position: last.item.resumeFrom.position, sources: last.item.resumeFrom.sources.map((c) => ({ ...c })) }
        : structuredClone(this.origin.replay),
    };
  }

  realised(): RealisedReport {
    const total = this.delivered.reduce((acc, d) => acc + d.tokens, 0);
    const sources: RealisedSource[] = this.plan.sources.map((p, i) => {
      const d = this.delivered[i]!;
      return {
        name: p.name,
        plannedTokens: p.tokens / this.worldSize,
        plannedSamples: p.samples / this.worldSize,
        ...d,
        epochs: p.available.tokens > 0 ? (d.tokens * this.worldSize) / p.available.tokens : 0,
        share: total > 0 ? d.tokens / total : 0,
        plannedShare: p.share,
      };
    });
    return {
      samples: this.delivered.reduce((acc, d) => acc + d.samples, 0),
      tokens: total,
      sources,
      badShards: [...this.badShards.values()],
      remainder: this.remainder,
      quality: this.quality.report(),
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<MixedSample> {
    if (this.started) throw new M4Error('E_USAGE', 'mixer', 'a mixture stream is read once; open another with mixture.stream({ resume: state })');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<MixedSample> {
    const { rank, worldSize, sequence } = this;
    const remote = this.sources.some((s) => isRemote(s.dataset.storage.root));
    const reader = new RunReader(this.sources, remote ? REMOTE_FETCHES : LOCAL_FETCHES, worldSize === 1);
    const chunks = scheduleChunks(this.sources, { seed: this.plan.seed, endless: this.options.endless, start: this.origin.replay })[Symbol.asyncIterator]();
    let generated = this.origin.replay.position;
    let ended = false;
    // This rank's leftover items, found as the schedule passes their positions; then its tail items in order.
    const leftoverIndex = new Map<number, number>();
    for (let v = this.origin.next; v < sequence.leftoverCount; v += worldSize) leftoverIndex.set(sequence.positionOf(v), v);
    const leftovers = new Map<number, Mine>();
    const tail: Mine[] = [];
    let tailHead = 0;

    const extend = async (until: number): Promise<void> => {
      while (!ended && generated <= until) {
        this.options.signal?.throwIfAborted();
        const step = await chunks.next();
        if (step.done) {
          ended = true;
          reader.streamEnded();
          break;
        }
        for (const item of step.value) {
          reader.placed(item);
          if (item.position < sequence.tail) {
            const v = leftoverIndex.get(item.position);
            if (v !== undefined) leftovers.set(v, { index: v, item, slot: reader.want(item) });
          } else {
            const v = sequence.indexOfTail(item.position);
            if (v >= this.origin.next && v % worldSize === rank) tail.push({ index: v, item, slot: reader.want(item) });
          }
          generated = item.position + 1;
        }
        reader.sweep();
        reader.pump();
      }
    };

    try {
      for (let v = this.origin.next; ; v += worldSize) {
        const roundLast = v - rank + worldSize - 1;
        const needed = Math.max(sequence.positionOf(v), sequence.positionOf(roundLast));
        // The schedule is run on in chunks of half the lookahead, not a call per sample; at the start the lookahead
        // grows from a little, so that the first runs are being read while the rest is scheduled. A single rank reads
        // whole runs anyway: it looks ahead only to prefetch (items held longer cost garbage collection).
        const ahead = Math.min(worldSize === 1 ? SINGLE_RANK_LOOKAHEAD : LOOKAHEAD, 1024 + 4 * (v - this.origin.next));
        if (generated <= needed + ahead / 2) await extend(needed + ahead);
        if (generated <= needed) {
          // A finite stream ended inside this round: no rank takes any of it.
          let existing = 0;
          for (let u = v - rank; u <= roundLast; u++) if (sequence.positionOf(u) < generated) existing++;
          this.remainder = existing;
          return;
        }
        let mine: Mine;
        if (v < sequence.leftoverCount) {
          mine = leftovers.get(v)!;
          leftovers.delete(v);
        } else {
          mine = tail[tailHead]!;
          tail[tailHead++] = undefined as unknown as Mine;
          if (tailHead > 4096 && tailHead * 2 > tail.length) {
            tail.splice(0, tailHead);
            tailHead = 0;
          }
        }
        const { item } = mine;
        reader.consumer = item.position;
        const taken = mine.slot.fetched ? reader.takeFrom(mine.slot, item) : await reader.take(mine.slot, item);
        if (taken.problem !== undefined) this.recordBadShard(taken.url, taken.problem);
        this.last = mine;
        const d = this.delivered[item.source]!;
        if (!taken.sample) {
          d.lostSamples++;
          d.lostTokens += item.tokens;
          continue;
        }
        d.samples++;
        d.tokens += item.tokens;
        d.images += item.images;
        const source = this.sources[item.source]!.name;
        this.quality.add(source, item.tokens, taken.url);
        yield { position: item.position, source, key: item.key, shard: taken.url, tokens: item.tokens, images: item.images, fields: taken.sample.fields };
      }
    } finally {
      await chunks.return?.(undefined);
    }
  }

  private recordBadShard(url: string, problem: string): void {
    if (this.badShards.has(url)) return;
    this.badShards.set(url, problem);
    if (this.badShards.size > this.maxBadShards) {
      throw new M4Error(
        'E_TAR_CORRUPT',
        'mixer',
        `${this.badShards.size} shards could not be read in full (more than --max-bad-shards ${this.maxBadShards}): ${[...this.badShards.values()].join('; ')}`,
        { shards: [...this.badShards.keys()] },
      );
    }
  }
}

/**
 * The runs this rank reads, in the order it first needs them, a bounded number of bytes and requests ahead. A run is
 * read once its group is placed (then only the ranges of this rank's samples, gaps under MERGE_GAP read through), or
 * whole when the consumer comes within PREFETCH positions of it first. Each run is read once, and released once its
 * samples are taken and no more of them can be placed.
 */
class RunReader {
  /** Per source, the runs wanted, by epoch, shard and run (see `keyOf`). */
  private readonly slots: Map<number, RunSlot>[];
  /** Per source, the runs wanted by where they start and end in their shard (see `edgeKey`): a run's neighbours. */
  private readonly edges: Map<string, RunSlot>[];
  /** Slots in the order their first sample was wanted; those not yet fetched are read in this order. */
  private readonly queue: RunSlot[] = [];
  private queueHead = 0;
  /** Where the schedule has got to in each source: epoch and samples of it placed. */
  private readonly placedUpTo: { epoch: number; taken: number }[];
  /** Runs read whole whose other samples may still be placed (kept until their group is). */
  private readonly lingering = new Set<RunSlot>();
  private ended = false;
  private inFlight = 0;
  private heldBytes = 0;
  /** The position of the consumer's next sample. */
  consumer = 0;

  /** Samples per run, by source. */
  private readonly runLength: number[];

  constructor(
    private readonly sources: readonly ScheduleSource[],
    private readonly concurrency: number,
    /** This rank reads every sample (a world of one): whole runs, and a group's runs with a neighbour before they are asked for. */
    private readonly single: boolean,
  ) {
    this.runLength = sources.map((s) => layoutOf(s).run);
    this.placedUpTo = sources.map(() => ({ epoch: 0, taken: 0 }));
    this.slots = sources.map(() => new Map());
    this.edges = sources.map(() => new Map());
  }

  placed(item: ScheduledSample): void {
    const p = this.placedUpTo[item.source]!;
    p.epoch = item.epoch;
    p.taken = item.taken + 1;
  }

  streamEnded(): void {
    this.ended = true;
    this.sweep();
  }

  /** Releases the runs read whole whose groups are now placed and whose samples are taken. */
  sweep(): void {
    for (const slot of this.lingering) this.releaseIfDone(slot);
  }

  want(item: ScheduledSample): RunSlot {
    let slot = this.slots[item.source]!.get(this.keyOf(item.source, item.epoch, item.shard, item.runStart));
    if (!slot) {
      slot = this.slotFor(item.source, item.epoch, item.shard, item.runStart, item);
      slot.groupRuns = item.groupRuns;
      slot.first = item.position;
      this.queue.push(slot);
    }
    slot.wanted.set(item.offset, item);
    return slot;
  }

  /** A new slot for a run, known by its neighbour from the schedule. */
  private slotFor(source: number, epoch: number, shard: number, runStart: number, run: Pick<RunSlot, 'groupEnd' | 'runOffset' | 'runEnd'>): RunSlot {
    const key = this.keyOf(source, epoch, shard, runStart);
    const url = this.sources[source]!.dataset.shardUrl(shard);
    const { groupEnd, runOffset, runEnd } = run;
    const slot: RunSlot = {
      key,
      first: Infinity,
      source,
      epoch,
      shard,
      runStart,
      groupEnd,
      groupRuns: undefined,
      runOffset,
      runEnd,
      wanted: new Map(),
      whole: false,
      url,
    };
    this.slots[source]!.set(key, slot);
    this.edges[source]!.set(edgeKey('start', epoch, shard, runOffset), slot);
    this.edges[source]!.set(edgeKey('end', epoch, shard, runEnd), slot);
    return slot;
  }

  /** Starts reads in queue order while requests and bytes allow, and while runs are placed or about to be needed. */
  pump(): void {
    while (this.queueHead < this.queue.length && this.inFlight < this.concurrency) {
      const slot = this.queue[this.queueHead]!;
      if (!slot.fetch) {
        if (this.heldBytes > FETCH_BYTES) break;
        if (!this.groupPlaced(slot) && slot.first > this.consumer + PREFETCH) break;
        this.start(slot);
      }
      this.queueHead++;
    }
    if (this.queueHead > 4096 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
  }

  /** The sample of a wanted item, once its run is read. The consumer never waits on the byte budget: its run is read now. */
  async take(slot: RunSlot, item: ScheduledSample): Promise<Taken> {
    if (!slot.fetch) this.start(slot);
    await slot.fetch;
    return this.takeFrom(slot, item);
  }

  /** The sample of a wanted item from its run, read; a problem when the shard did not hold it as the index says. */
  takeFrom(slot: RunSlot, item: ScheduledSample): Taken {
    const taken = { url: slot.url, ...sampleIn(slot.fetched!, slot.url, item) };
    slot.wanted.delete(item.offset);
    this.releaseIfDone(slot);
    if (this.inFlight < this.concurrency) this.pump();
    return taken;
  }

  private start(slot: RunSlot): void {
    // Of several ranks, one reads only its own samples of a placed group; a single rank reads whole runs.
    const placed = this.groupPlaced(slot) && !this.single;
    const batch = this.neighbours(slot);
    const wanted = batch.flatMap((s) => [...s.wanted.values()]).sort((a, b) => a.offset - b.offset);
    const ranges = placed ? coalesce(wanted) : [{ start: batch[0]!.runOffset, end: batch.at(-1)!.runEnd }];
    const total = ranges.reduce((acc, r) => acc + r.end - r.start, 0);
    this.heldBytes += total;
    this.inFlight++;
    const dataset = this.sources[slot.source]!.dataset;
    const fetch = fetchRanges(dataset, slot.shard, ranges).then(
      (fetched) => {
        for (const s of batch) s.fetched = fetched;
        this.inFlight--;
        this.pump();
        return fetched;
      },
      (err: unknown) => {
        this.inFlight--;
        throw err;
      },
    );
    // Awaited by take(); a read abandoned by a consumer that stopped early must not surface as unhandled.
    fetch.catch(() => {});
    // The batch shares one read, whose buffers its runs' samples are views of: its bytes count until all are released.
    const read = { bytes: total, holders: batch.length };
    for (const s of batch) {
      s.fetch = fetch;
      s.read = read;
      s.whole = !placed && !this.groupPlaced(s);
      if (s.whole) this.lingering.add(s);
    }
  }

  /**
   * The slot with the runs not yet read that lie end to end with it in its shard, in shard order, up to
   * MERGED_READ_BYTES: those of its group (placed alike) asked for; for a single rank, which reads whole runs, those of
   * any group asked for, and the runs of its group not yet asked for, which it reads now (its group is held whole while
   * it is read all the same). So a source whose runs of a shard fall in one group (a small source, few shards) reads
   * the shard with one request, however the schedule has got to its runs.
   */
  private neighbours(slot: RunSlot): RunSlot[] {
    const batch = [slot];
    let bytes = slot.runEnd - slot.runOffset;
    for (const step of [-1, 1] as const) {
      for (let s = this.beside(slot, slot, step, bytes); s; s = this.beside(slot, s, step, bytes)) {
        if (step < 0) batch.unshift(s);
        else batch.push(s);
        bytes += s.runEnd - s.runOffset;
      }
    }
    return batch;
  }

  /**
   * The run before (step -1) or after (step 1) `run` in its shard that may join `origin`'s batch of `batchBytes`, if
   * any: one asked for and not read yet, or (a single rank) one of `origin`'s group, which is then asked for here.
   */
  private beside(origin: RunSlot, run: RunSlot, step: -1 | 1, batchBytes: number): RunSlot | undefined {
    const fits = (r: { runOffset: number; runEnd: number }) => batchBytes + r.runEnd - r.runOffset <= MERGED_READ_BYTES;
    const s = this.edges[run.source]!.get(step < 0 ? edgeKey('end', run.epoch, run.shard, run.runOffset) : edgeKey('start', run.epoch, run.shard, run.runEnd));
    if (s) return !s.fetch && (s.groupEnd === origin.groupEnd || this.single) && fits(s) ? s : undefined;
    if (!this.single || !origin.groupRuns) return undefined;
    const runStart = run.runStart + step * this.runLength[run.source]!;
    const early = origin.groupRuns.get(runId(run.shard, runStart));
    if (!early || !fits(early)) return undefined;
    return this.slotFor(run.source, run.epoch, run.shard, runStart, { groupEnd: origin.groupEnd, ...early });
  }

  /** Whether every sample of the slot's group has been placed: no sample of its run can be wanted any more. */
  private groupPlaced(slot: RunSlot): boolean {
    const placed = this.placedUpTo[slot.source]!;
    return this.ended || placed.epoch > slot.epoch || placed.taken >= slot.groupEnd;
  }

  /** Frees a run once this rank has taken all it wants of it and no more of its samples can be placed. */
  private releaseIfDone(slot: RunSlot): void {
    if (slot.wanted.size > 0 || !slot.fetch) return;
    if (slot.whole) {
      if (!this.groupPlaced(slot)) return;
      this.lingering.delete(slot);
    }
    const slots = this.slots[slot.source]!;
    if (slots.get(slot.key) !== slot) return;
    slots.delete(slot.key);
    const edges = this.edges[slot.source]!;
    for (const key of [edgeKey('start', slot.epoch, slot.shard, slot.runOffset), edgeKey('end', slot.epoch, slot.shard, slot.runEnd)]) {
      if (edges.get(key) === slot) edges.delete(key);
    }
    if (--slot.read!.holders === 0) this.heldBytes -= slot.read!.bytes;
    // Its bytes go with it (a started slot stays in the queue a while, and its read resolved to them).
    slot.fetched = undefined;
    slot.fetch = RELEASED;
  }

  /** A run's key within its source: its epoch, shard and place in the shard, as one number (exact below 2^53). */
  private keyOf(source: number, epoch: number, shard: number, runStart: number): number {
    return epoch * this.sources[source]!.dataset.shards.length * 2 ** 24 + runId(shard, runStart);
  }
}

/** What a released slot's read stands for: nothing left to take. */
const RELEASED: Promise<FetchedRanges> = Promise.resolve({ pieces: [], bytes: 0 });

/** Where a run starts or ends in its shard's bytes, in one epoch. */
function edgeKey(side: 'start' | 'end', epoch: number, shard: number, offset: number): string {
  return `${side}:${epoch}:${shard}:${offset}`;
}

/** A wanted sample as its run gave it, or why it could not. */
interface Taken {
  sample?: { fields: Record<string, Buffer> };
  url: string;
  problem?: string;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
