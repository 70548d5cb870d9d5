/**
 * Which source gives the next sample, so that every prefix of the stream holds each source's tokens close to its
 * share: among the sources at or behind their share, the one whose next sample leaves the largest deviation of any
 * source smallest. The picked source was behind, so it never ends more than one sample ahead; property tests check
 * that no source strays more than one sample (the stream's largest) from its share of any prefix.
 */
export interface BalancerSource {
  share: number;
  /** Tokens contributed so far. */
  tokens: number;
  /** Tokens of its next sample. */
  next: number;
}

/** Index of the source to draw from, among `active` ones (indexes into `sources`); ties go to the lower index. */
export function pickSource(sources: readonly BalancerSource[], active: readonly number[]): number {
  const total = sources.reduce((acc, s) => acc + s.tokens, 0);
  let best = -1;
  let bestDeviation = Infinity;
  for (const c of active) {
    const candidate = sources[c]!;
    if (candidate.share * total - candidate.tokens < 0) continue;
    const after = total + candidate.next;
    let deviation = 0;
    for (const i of active) {
      const s = sources[i]!;
      deviation = Math.max(deviation, Math.abs(s.tokens + (i === c ? s.next : 0) - s.share * after));
    }
    if (deviation < bestDeviation) {
      bestDeviation = deviation;
      best = c;
    }
  }
  if (best >= 0) return best;
  // Every active source is ahead (others have finished): the one least ahead.
  let leastAhead = active[0]!;
  for (const i of active) {
    const s = sources[i]!;
    const l = sources[leastAhead]!;
    if (s.share * total - s.tokens > l.share * total - l.tokens) leastAhead = i;
  }
  return leastAhead;
}
