/**
 * How well a stream is mixed, measured as it passes: per source, the share of fixed-size token windows without it
 * (against what is expected of it: the windows an ideal token-fair interleave leaves without it, or those lying inside
 * one sample of another source, where no order could put it, whichever are more), its longest absence in tokens, its
 * longest run of consecutive samples, and, among its own samples in stream order, how often two neighbours come from
 * the same shard and how many shards 1,000 consecutive ones come from. O(1) memory per source.
 */
export interface SourceQuality {
  name: string;
  samples: number;
  /** Fraction of the stream's complete windows holding none of its tokens, and the fraction expected (see above). */
  windowsWithout: number;
  windowsWithoutExpected: number;
  /** Longest stretch of the stream without it, in tokens (from the stream's start or its previous sample). */
  longestAbsence: number;
  /** Longest run of consecutive samples from it. */
  longestRun: number;
  /** Fraction of its consecutive sample pairs from the same shard. */
  adjacentSameShard: number;
  /** Mean distinct shards per 1,000 consecutive samples of it (or over all of them, when fewer). */
  distinctShardsPer1000: number;
}

export interface MixQuality {
  /** Window size, in tokens. */
  window: number;
  windows: number;
  sources: SourceQuality[];
}

export const QUALITY_WINDOW = 8192;
const BLOCK = 1000;

interface Tally {
  samples: number;
  tokens: number;
  /** Tokens of windows lying wholly in the gaps an ideal interleave leaves before its samples. */
  gaps: number;
  absent: number;
  /** Windows lying wholly inside one of its samples. */
  inside: number;
  lastEnd: number;
  longestAbsence: number;
  longestRun: number;
  pairs: number;
  sameShard: number;
  lastShard: string | undefined;
  block: Set<string>;
  blockSamples: number;
  blocks: number;
  distinctInBlocks: number;
}

export class QualityMeter {
  private readonly tallies: Tally[];
  private readonly index = new Map<string, number>();
  private offset = 0;
  private open = 0;
  private present: boolean[];
  private windows = 0;
  private runSource = -1;
  private run = 0;

  constructor(
    names: readonly string[],
    /** Each source's planned share of the tokens (what an ideal interleave spaces it by). */
    private readonly shares: readonly number[],
    private readonly window = QUALITY_WINDOW,
  ) {
    names.forEach((name, i) => this.index.set(name, i));
    this.tallies = names.map(() => ({
      samples: 0,
      tokens: 0,
      gaps: 0,
      absent: 0,
      inside: 0,
      lastEnd: 0,
      longestAbsence: 0,
      longestRun: 0,
      pairs: 0,
      sameShard: 0,
      lastShard: undefined,
      block: new Set(),
      blockSamples: 0,
      blocks: 0,
      distinctInBlocks: 0,
    }));
    this.present = names.map(() => false);
  }

  /** The next sample of the stream. */
  add(source: string, tokens: number, shard: string): void {
    const i = this.index.get(source);
    if (i === undefined) return;
    const t = this.tallies[i]!;
    const start = this.offset;
    const end = start + tokens;
    this.offset = end;
    t.samples++;
    t.tokens += tokens;
    // A source of share s served token-fairly owes the others n (1/s - 1) tokens after a sample of n: windows fitting
    // in that gap are without it, whatever the order. (So a 30k-token article of a 17% source costs about 17 windows.)
    const share = this.shares[i]!;
    if (share > 0) t.gaps += Math.max(0, tokens * (1 / share - 1) - this.window);
    t.longestAbsence = Math.max(t.longestAbsence, start - t.lastEnd);
    t.lastEnd = end;
    this.run = this.runSource === i ? this.run + 1 : 1;
    this.runSource = i;
    t.longestRun = Math.max(t.longestRun, this.run);
    if (t.lastShard !== undefined) {
      t.pairs++;
      if (t.lastShard === shard) t.sameShard++;
    }
    t.lastShard = shard;
    t.block.add(shard);
    if (++t.blockSamples === BLOCK) {
      t.blocks++;
      t.distinctInBlocks += t.block.size;
      t.block.clear();
      t.blockSamples = 0;
    }
    if (tokens === 0) return;
    const first = Math.floor(start / this.window);
    const last = Math.floor((end - 1) / this.window);
    if (first > this.open) this.close(first);
    this.present[i] = true;
    for (let k = first; k < last; k++) {
      this.close(k + 1);
      this.present[i] = true;
    }
    // Windows wholly inside this sample: no order could put another source there.
    t.inside += Math.max(0, Math.floor(end / this.window) - Math.ceil(start / this.window));
  }

  report(): MixQuality {
    if (this.offset > 0 && this.offset % this.window === 0 && this.open < this.offset / this.window) this.close(this.open + 1);
    const insideAll = this.tallies.reduce((acc, t) => acc + t.inside, 0);
    const sources = [...this.index.keys()].map((name, i): SourceQuality => {
      const t = this.tallies[i]!;
      const unreachable = this.windows > 0 ? (insideAll - t.inside) / this.windows : 0;
      return {
        name,
        samples: t.samples,
        windowsWithout: this.windows > 0 ? t.absent / this.windows : 0,
        windowsWithoutExpected: Math.min(1, Math.max(this.offset > 0 ? t.gaps / this.offset : 0, unreachable)),
        longestAbsence: t.longestAbsence,
        longestRun: t.longestRun,
        adjacentSameShard: t.pairs > 0 ? t.sameShard / t.pairs : 0,
        distinctShardsPer1000: t.blocks > 0 ? t.distinctInBlocks / t.blocks : t.block.size,
      };
    });
    return { window: this.window, windows: this.windows, sources };
  }

  /** Closes the open window and opens window `next`. */
  private close(next: number): void {
    this.windows++;
    this.present.forEach((seen, i) => {
      if (!seen) this.tallies[i]!.absent++;
    });
    this.present.fill(false);
    this.open = next;
  }
}
