import type { BalancerSource } from './token-balancer.ts';

/** A source is bracketed around a sample that lasts at least this many of its periods. */
export const BRACKET_PERIODS = 4;

/**
 * Long samples come bracketed by the frequent sources. A sample is long for a source when it lasts at least
 * BRACKET_PERIODS of the source's periods (its mean sample over its share: the stream's tokens between two of its
 * samples); WF2Q alone lets each such source come back after it at its own pace, the rarest (whose finish is furthest)
 * last, so windows just after a long article lacked it. A bracket serves each such source once right before the long
 * sample and once right after, largest share outermost, so the rarest is next to the long sample on both sides and its
 * absence is the long sample itself.
 *
 * The bound is kept: a bracketing sample is served only if it is short beside the long one (its tokens at most the long
 * sample's share of the source over BRACKET_PERIODS) and leaves every source within the long sample's tokens of its
 * share; otherwise it is left out. A bracket is decided from the cursors where it starts, so a replay from there gives
 * it again: inside a bracket, a resume point is the bracket's start (`start`; `Point` is the schedule's SchedulePoint).
 */
export class Brackets<Point> {
  /** Sources still to serve, in order (the long sample's among them), and the long sample's source and tokens. */
  private queue: number[] = [];
  private long = -1;
  private longTokens = 0;
  /** Where the open bracket began, while samples of it are still to come. */
  start: Point | undefined;

  /** No sample shorter than this is long for any source: most picks open nothing, and cost nothing here. */
  private readonly shortestLong: number;

  constructor(
    /** Each source's period, in tokens of the stream (Infinity for a source without share). */
    private readonly periods: readonly number[],
  ) {
    this.shortestLong = Math.min(...periods) * BRACKET_PERIODS;
  }

  /** The source an open bracket serves next, if any may come (one that may not is left out). */
  next(balance: readonly BalancerSource[], active: readonly number[]): number | undefined {
    while (this.queue.length > 0) {
      const c = this.queue.shift()!;
      if (!active.includes(c)) continue;
      if (c === this.long || this.fits(c, balance)) return this.close(c);
    }
    return this.close(undefined);
  }

  /** The source to serve now, given WF2Q's pick `c`: `c`, or the first of the bracket it opens (made only then: `point`). */
  open(c: number, balance: readonly BalancerSource[], active: readonly number[], point: () => Point): number {
    const long = balance[c]!.next;
    if (long < this.shortestLong) return c;
    const around = active.filter((i) => i !== c && this.periods[i]! * BRACKET_PERIODS <= long).sort((a, b) => balance[b]!.share - balance[a]!.share || a - b);
    if (around.length === 0) return c;
    this.queue = [...around, c, ...around.slice().reverse()];
    this.long = c;
    this.longTokens = long;
    this.start = point();
    return this.next(balance, active)!;
  }

  private close<T>(served: T): T {
    if (this.queue.length === 0) this.start = undefined;
    return served;
  }

  /** Whether source `i`'s next sample may join the bracket (see the class). */
  private fits(i: number, balance: readonly BalancerSource[]): boolean {
    const s = balance[i]!;
    if (s.next * BRACKET_PERIODS > this.longTokens * s.share) return false;
    let total = s.next;
    for (const b of balance) total += b.tokens;
    return balance.every((b, j) => Math.abs(b.tokens + (j === i ? s.next : 0) - b.share * total) <= this.longTokens);
  }
}
