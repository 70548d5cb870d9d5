import type { SourceCursor } from './mixture-stream-types.ts';
import type { SourceDataset } from './source-dataset.ts';
import { SourceOrder, type OrderedSample } from './source-order.ts';
import { pickSource, type BalancerSource } from './token-balancer.ts';
import { nameId } from './seeded-random.ts';

/** One source as the schedule draws from it. */
export interface ScheduleSource {
  name: string;
  /** Planned share of the mixture's tokens, a fraction of 1. */
  share: number;
  /** Planned tokens: the source is drawn from until it has given this many. */
  target: number;
  dataset: SourceDataset;
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
  /** The cursors after this sample: a state taken here resumes at the next position. */
  after: SourceCursor[];
}

export interface ScheduleOptions {
  seed: number;
  /** Shards of one source read (and interleaved) together (default 4). */
  openShards?: number;
  /** Ignore the targets and go on forever. */
  endless?: boolean;
  /** Start here instead of at position 0. */
  start?: { position: number; sources: SourceCursor[] };
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
export async function* schedule(sources: readonly ScheduleSource[], options: ScheduleOptions): AsyncGenerator<ScheduledSample> {
  const openShards = options.openShards ?? 4;
  const cursors: SourceCursor[] = sources.map((s, i) => options.start?.sources[i] ?? { name: s.name, epoch: 0, taken: 0, tokens: 0 });
  const orders = sources.map((s) => new SourceOrder(s.dataset.shards.map((r) => r.samples), options.seed, nameId(s.name), openShards));
  const heads: (Head | undefined)[] = [];
  for (let i = 0; i < sources.length; i++) heads.push(await headOf(sources[i]!, orders[i]!.from(cursors[i]!.epoch, cursors[i]!.taken)));

  const balance: BalancerSource[] = sources.map((s, i) => ({ share: s.share, tokens: cursors[i]!.tokens, next: heads[i]?.tokens ?? 0 }));
  for (let position = options.start?.position ?? 0; ; position++) {
    const active: number[] = [];
    sources.forEach((s, i) => {
      if (heads[i] && s.share > 0 && (options.endless || cursors[i]!.tokens < s.target)) active.push(i);
    });
    if (active.length === 0) return;
    const c = pickSource(balance, active);
    const head = heads[c]!;
    const cursor = cursors[c]!;
    const taken = head.next.taken + 1;
    const epochSamples = orders[c]!.epochSamples;
    cursors[c] = { name: cursor.name, epoch: taken === epochSamples ? head.next.epoch + 1 : head.next.epoch, taken: taken === epochSamples ? 0 : taken, tokens: cursor.tokens + head.tokens };
    balance[c]!.tokens = cursors[c]!.tokens;
    const shardSamples = sources[c]!.dataset.shards[head.next.shard]!.samples;
    yield {
      position,
      source: c,
      epoch: head.next.epoch,
      shard: head.next.shard,
      entry: head.next.entry,
      key: head.key,
      tokens: head.tokens,
      images: head.images,
      lastOfShard: head.next.entry === shardSamples - 1,
      after: cursors.map((x) => ({ ...x })),
    };
    heads[c] = await headOf(sources[c]!, head.order);
    balance[c]!.next = heads[c]?.tokens ?? 0;
  }
}

async function headOf(source: ScheduleSource, order: Iterator<OrderedSample>): Promise<Head | undefined> {
  const step = order.next();
  if (step.done) return undefined;
  const entry = (await source.dataset.entries(step.value.shard))[step.value.entry]!;
  return { order, next: step.value, key: entry.key, tokens: entry.tokens, images: entry.images };
}
