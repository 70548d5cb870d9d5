import { M4Error } from '../core/errors.ts';
import { isRemote } from '../shards/storage/location.ts';
import type { MixPlan } from './plan.ts';
import type { MixedSample, MixtureState, MixtureStream, MixtureStreamOptions, RealisedReport, RealisedSource, SourceCursor } from './mixture-stream-types.ts';
import { rankSlice, type SliceEvent } from './rank-slice.ts';
import { scheduleChunks, type ScheduleSource } from './schedule.ts';
import { ShardSampleReader } from './shard-sample-reader.ts';

/**
 * Slice events looked at ahead of the consumer: shards they name are opened (and start reading) that early. Locally a
 * short window is best (every open shard holds read buffers; 16 at once cost 30% more CPU than 4 here); remotely a
 * long one hides the first-byte latency of each shard.
 */
const LOCAL_LOOKAHEAD = 64;
const REMOTE_LOOKAHEAD = 1024;

interface OpenShard {
  reader: ShardSampleReader;
  /** Samples of this rank still to take from it, within the lookahead. */
  pending: number;
  /** The schedule has passed the shard's last sample: once `pending` is 0 it can close. */
  ended: boolean;
}

/**
 * The mixture's samples for one rank: the schedule (pure, from indexes), sliced by rank, with the shards it names read
 * ahead so a consumer never waits at a shard boundary. A corrupt shard's samples are skipped and counted, up to
 * `maxBadShards` shards; then the stream fails naming them.
 */
export class MixtureSampleStream implements MixtureStream {
  private readonly rank: number;
  private readonly worldSize: number;
  private readonly maxBadShards: number;
  /** The state after the last sample this stream processed (yielded, or lost to a bad shard). */
  private start: MixtureState;
  private last: { position: number; after: readonly SourceCursor[] } | undefined;
  private readonly delivered: { tokens: number; samples: number; images: number; lostSamples: number; lostTokens: number }[];
  private readonly badShards = new Map<string, string>();
  private remainder = 0;
  private started = false;

  constructor(
    private readonly plan: MixPlan,
    private readonly sources: readonly ScheduleSource[],
    private readonly options: MixtureStreamOptions = {},
  ) {
    this.rank = options.rank ?? 0;
    this.worldSize = options.worldSize ?? 1;
    if (!(Number.isSafeInteger(this.worldSize) && this.worldSize >= 1 && Number.isSafeInteger(this.rank) && this.rank >= 0 && this.rank < this.worldSize)) {
      throw new M4Error('E_USAGE', 'mixer', `rank ${this.rank} of world size ${this.worldSize}: the rank must be a whole number from 0 to world size - 1`);
    }
    this.maxBadShards = options.maxBadShards ?? 3;
    const resume = options.resume;
    if (resume) checkResume(resume, plan, this.rank, this.worldSize, sources);
    this.start = resume ?? {
      format: 'm4data-mixture-state',
      version: 1,
      seed: plan.seed,
      position: 0,
      rank: this.rank,
      worldSize: this.worldSize,
      sources: sources.map((s) => ({ name: s.name, epoch: 0, taken: 0, tokens: 0 })),
    };
    this.delivered = sources.map(() => ({ tokens: 0, samples: 0, images: 0, lostSamples: 0, lostTokens: 0 }));
  }

  state(): MixtureState {
    if (!this.last) return structuredClone(this.start);
    return { ...this.start, position: this.last.position + 1, sources: this.last.after.map((c) => ({ ...c })) };
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
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<MixedSample> {
    if (this.started) throw new M4Error('E_USAGE', 'mixer', 'a mixture stream is read once; open another with mixture.stream({ resume: state })');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<MixedSample> {
    const start = this.options.resume ? { position: this.start.position, sources: this.start.sources } : undefined;
    const items = scheduleChunks(this.sources, { seed: this.plan.seed, endless: this.options.endless, ...(start ? { start } : {}) });
    const events = rankSlice(items, this.rank, this.worldSize, (n) => (this.remainder = n))[Symbol.asyncIterator]();
    const remote = this.sources.some((s) => isRemote(s.dataset.storage.root));
    const lookahead = this.options.lookahead ?? (remote ? REMOTE_LOOKAHEAD : LOCAL_LOOKAHEAD);
    const window: SliceEvent[] = [];
    const open = new Map<string, OpenShard>();
    let exhausted = false;
    try {
      for (;;) {
        while (!exhausted && window.length < lookahead) {
          this.options.signal?.throwIfAborted();
          const step = await events.next();
          if (step.done) {
            exhausted = true;
            break;
          }
          for (const event of step.value) {
            window.push(event);
            if (event.kind !== 'sample') continue;
            const { source, epoch, shard } = event.item;
            (open.get(shardId(source, epoch, shard)) ?? (await this.open(open, source, epoch, shard))).pending++;
          }
        }
        const event = window.shift();
        if (!event) return;
        if (event.kind === 'shard-end') {
          const id = shardId(event.source, event.epoch, event.shard);
          const shard = open.get(id);
          if (shard) {
            shard.ended = true;
            if (shard.pending === 0) await this.close(open, id);
          }
          continue;
        }
        const item = event.item;
        const id = shardId(item.source, item.epoch, item.shard);
        const shard = open.get(id)!;
        const sample = await shard.reader.take(item.key);
        shard.pending--;
        if (shard.reader.problem !== undefined) this.recordBadShard(shard.reader);
        if (shard.ended && shard.pending === 0) await this.close(open, id);
        this.last = item;
        const d = this.delivered[item.source]!;
        if (!sample) {
          d.lostSamples++;
          d.lostTokens += item.tokens;
          continue;
        }
        d.samples++;
        d.tokens += item.tokens;
        d.images += item.images;
        yield {
          position: item.position,
          source: this.sources[item.source]!.name,
          key: item.key,
          shard: shard.reader.url,
          tokens: item.tokens,
          images: item.images,
          fields: sample.fields,
        };
      }
    } finally {
      await Promise.all([...open.keys()].map((id) => this.close(open, id)));
      await events.return?.(undefined);
    }
  }

  private async open(open: Map<string, OpenShard>, source: number, epoch: number, shard: number): Promise<OpenShard> {
    const dataset = this.sources[source]!.dataset;
    const keys = (await dataset.entries(shard)).map((e) => e.key);
    const entry: OpenShard = { reader: new ShardSampleReader(dataset, shard, keys), pending: 0, ended: false };
    open.set(shardId(source, epoch, shard), entry);
    return entry;
  }

  private async close(open: Map<string, OpenShard>, id: string): Promise<void> {
    const shard = open.get(id);
    open.delete(id);
    await shard?.reader.close();
  }

  private recordBadShard(reader: ShardSampleReader): void {
    if (this.badShards.has(reader.url)) return;
    this.badShards.set(reader.url, reader.problem!);
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

function shardId(source: number, epoch: number, shard: number): string {
  return `${source}:${epoch}:${shard}`;
}

function checkResume(state: MixtureState, plan: MixPlan, rank: number, worldSize: number, sources: readonly ScheduleSource[]): void {
  if (state.format !== 'm4data-mixture-state' || state.version !== 1) throw new M4Error('E_USAGE', 'mixer', 'the resume state is not an m4data mixture state');
  if (state.seed !== plan.seed) throw new M4Error('E_USAGE', 'mixer', `the resume state was taken with seed ${state.seed}, the mixture has seed ${plan.seed}`);
  if (state.worldSize !== worldSize || state.rank !== rank) {
    throw new M4Error(
      'E_USAGE',
      'mixer',
      `the resume state belongs to rank ${state.rank} of ${state.worldSize}, not rank ${rank} of ${worldSize}: resuming with another world size would repeat or skip samples, so it is refused`,
    );
  }
  const names = sources.map((s) => s.name).join(',');
  if (state.sources.map((s: SourceCursor) => s.name).join(',') !== names) throw new M4Error('E_USAGE', 'mixer', `the resume state's sources differ from the mixture's (${names})`);
}
