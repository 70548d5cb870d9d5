import { generator, permutation } from './seeded-random.ts';

/** One sample of a source's order: which shard (by its place in the dataset) and which entry of it. */
export interface OrderedSample {
  epoch: number;
  /** Samples of this epoch taken before this one. */
  taken: number;
  shard: number;
  entry: number;
}

/**
 * The order in which one source's samples are read, epoch after epoch: each epoch takes the shards in a new seeded
 * order, `openShards` at a time, and interleaves the samples of those open shards at random while each shard is still
 * read front to back (sequential reads, S3-friendly). A pure function of (shard sizes, seed, source, epoch, position):
 * any cursor restarts by replaying only the group of shards it falls in.
 */
export class SourceOrder {
  /** Samples per epoch. */
  readonly epochSamples: number;

  constructor(
    /** Samples per shard, in the dataset's shard order. */
    private readonly shardSamples: readonly number[],
    private readonly seed: number,
    private readonly sourceId: number,
    private readonly openShards: number,
  ) {
    this.epochSamples = shardSamples.reduce((a, b) => a + b, 0);
  }

  /** The order from a cursor on, without end (epochs follow each other). */
  *from(epoch: number, taken: number): Generator<OrderedSample> {
    if (this.epochSamples === 0) return;
    for (let e = epoch; ; e++) {
      const groups = this.groupsOf(e);
      let groupStart = 0;
      for (let g = 0; g < groups.length; g++) {
        const shards = groups[g]!;
        const size = shards.reduce((acc, s) => acc + this.shardSamples[s]!, 0);
        const skip = e === epoch ? taken - groupStart : 0;
        if (skip < size) yield* this.interleave(e, g, shards, groupStart, Math.max(0, skip));
        groupStart += size;
      }
    }
  }

  /** The epoch's shards in their seeded order, cut into groups read together. */
  private groupsOf(epoch: number): number[][] {
    const order = permutation(this.shardSamples.length, this.seed, this.sourceId, epoch).filter((s) => this.shardSamples[s]! > 0);
    const groups: number[][] = [];
    for (let i = 0; i < order.length; i += this.openShards) groups.push(order.slice(i, i + this.openShards));
    return groups;
  }

  /**
   * A uniformly random interleaving of the group's shards: each step picks a shard with probability proportional to
   * the samples it has left, and takes its next sample.
   */
  private *interleave(epoch: number, group: number, shards: number[], groupStart: number, skip: number): Generator<OrderedSample> {
    const next = generator(this.seed, this.sourceId, epoch, group);
    const left = shards.map((s) => this.shardSamples[s]!);
    const read = shards.map(() => 0);
    let remaining = left.reduce((a, b) => a + b, 0);
    for (let step = 0; remaining > 0; step++) {
      let pick = Math.floor(next() * remaining);
      let i = 0;
      while (pick >= left[i]!) pick -= left[i++]!;
      left[i]!--;
      remaining--;
      const entry = read[i]!++;
      if (step >= skip) yield { epoch, taken: groupStart + step, shard: shards[i]!, entry };
    }
  }
}
