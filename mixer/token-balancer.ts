/**
 * Which source gives the next sample: worst-case fair weighted fair queuing (WF2Q, Bennett and Zhang 1996) on tokens.
 * Serving the whole stream at one token per token, a source of share s owes s tokens per token of stream; its next
 * sample *starts* (in that virtual time) at tokens / s and *finishes* at (tokens + next) / s. Among the sources whose
 * next sample has started (those at or behind their share of the stream so far), the one that finishes first is
 * served. WF2Q keeps every source within one sample (the stream's largest) of its share of every prefix, behind or
 * ahead, and serves each source at a steady rate, so a small source is never starved by a burst of a large one (the
 * earlier rule, "largest deficit first", let the largest catch up in one long run after every long document).
 * `jitter` in [0, 1) stretches a candidate's next sample by up to JITTER of its size when finish times are compared:
 * it breaks the periodic patterns equal sample sizes would give, and never lets an ahead source in.
 */
export interface BalancerSource {
  share: number;
  /** Tokens contributed so far. */
  tokens: number;
  /** Tokens of its next sample. */
  next: number;
}

/** How far a seeded draw may stretch a sample's virtual size (a fraction of it). */
export const JITTER = 0.25;

/** Index of the source to draw from, among `active` ones (indexes into `sources`). */
export function pickSource(sources: readonly BalancerSource[], active: readonly number[], jitter: (source: number) => number): number {
  let total = 0;
  for (const s of sources) total += s.tokens;
  // Among the sources whose next sample has started; when every active source is ahead (others have finished, or
  // stopped short of their share by less than half a sample), among them all: so the sources left still advance at
  // their shares' rates, and reach their targets together rather than one after another in long runs.
  const eligible = firstFinish(sources, active, jitter, total);
  return eligible >= 0 ? eligible : firstFinish(sources, active, jitter, Infinity);
}

/** The active source whose next sample finishes first, among those at or below `share x total` tokens (-1 if none). */
function firstFinish(sources: readonly BalancerSource[], active: readonly number[], jitter: (source: number) => number, total: number): number {
  let best = -1;
  let bestFinish = Infinity;
  for (const c of active) {
    const s = sources[c]!;
    if (s.tokens > s.share * total) continue; // its next sample has not started yet
    const finish = (s.tokens + s.next * (1 + JITTER * jitter(c))) / s.share;
    if (finish < bestFinish) {
      bestFinish = finish;
      best = c;
    }
  }
  return best;
}
