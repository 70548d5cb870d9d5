/**
 * What one world of ranks shares, and how it is split. A fresh run's sequence is the single-rank stream's positions
 * 0, 1, 2, ...; a run resumed under another world size first hands out the positions the earlier world left unread
 * (`leftovers`, arithmetic progressions in order), then every position from `tail` on. Rank r of w takes the
 * sequence's items r, r + w, r + 2w, ... in rounds of w: a round is handed out only once all its w items exist, so
 * every rank yields as many samples; a last, incomplete round of a finite stream is dropped by every rank.
 */
export interface Progression {
  first: number;
  step: number;
  count: number;
}

export class RankSequence {
  /** Items before the tail. */
  readonly leftoverCount: number;
  /** Sequence index of each progression's first item. */
  private readonly starts: number[] = [];

  constructor(
    readonly leftovers: readonly Progression[],
    readonly tail: number,
  ) {
    let n = 0;
    for (const p of leftovers) {
      this.starts.push(n);
      n += p.count;
    }
    this.leftoverCount = n;
  }

  /** The position of item v. */
  positionOf(v: number): number {
    if (v >= this.leftoverCount) return this.tail + (v - this.leftoverCount);
    const k = this.progressionOf(v);
    const p = this.leftovers[k]!;
    return p.first + (v - this.starts[k]!) * p.step;
  }

  /** The item at a position of the tail. */
  indexOfTail(position: number): number {
    return this.leftoverCount + (position - this.tail);
  }

  /** The smallest position among items v, v + w, v + 2w, ... (the first from which a replay must start). */
  firstPositionFrom(v: number, worldSize: number): number {
    let least = v >= this.leftoverCount ? this.positionOf(v) : this.tail;
    for (const piece of this.map(v, worldSize, Math.max(0, Math.ceil((this.leftoverCount - v) / worldSize)))) least = Math.min(least, piece.first);
    return least;
  }

  /**
   * Items v, v + w, ... (`count` of them) as progressions of positions, in sequence order: one per leftover progression
   * they cross, and one for the tail.
   */
  map(v: number, w: number, count: number): Progression[] {
    const out: Progression[] = [];
    if (count <= 0) return out;
    for (let k = 0; k < this.leftovers.length; k++) {
      const p = this.leftovers[k]!;
      const lo = this.starts[k]!;
      const hi = lo + p.count - 1;
      const first = Math.max(0, Math.ceil((lo - v) / w));
      const last = Math.min(count - 1, Math.floor((hi - v) / w));
      if (first > last) continue;
      out.push({ first: p.first + (v + first * w - lo) * p.step, step: p.step * w, count: last - first + 1 });
    }
    const firstInTail = Math.max(0, Math.ceil((this.leftoverCount - v) / w));
    if (firstInTail < count) out.push({ first: this.positionOf(v + firstInTail * w), step: w, count: count - firstInTail });
    return out;
  }

  private progressionOf(v: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= v) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** Whether a position is one of a progression's. */
export function holds(p: Progression, position: number): boolean {
  return position >= p.first && (position - p.first) % p.step === 0 && (position - p.first) / p.step < p.count;
}
