import type { ScheduledSample } from './schedule.ts';

/** What a rank's slice of the schedule holds: its samples, and where shards end (for any rank) so readers can close. */
export type SliceEvent =
  | { kind: 'sample'; item: ScheduledSample }
  | { kind: 'shard-end'; source: number; epoch: number; shard: number };

/**
 * Rank r of w takes positions r, r + w, r + 2w, ... in rounds of w: a round is handed out only once all w of its
 * positions exist, so every rank yields the same number of samples; a last, incomplete round (fewer than w samples
 * at the end of a finite stream) is dropped by every rank and counted in `remainder`.
 */
export async function* rankSlice(
  chunks: AsyncIterable<readonly ScheduledSample[]>,
  rank: number,
  worldSize: number,
  onRemainder: (samples: number) => void,
): AsyncGenerator<SliceEvent[]> {
  let pending: SliceEvent[] = [];
  let inRound = 0;
  for await (const chunk of chunks) {
    const ready: SliceEvent[] = [];
    for (const item of chunk) {
      if (item.position % worldSize === rank) pending.push({ kind: 'sample', item });
      if (item.lastOfShard) pending.push({ kind: 'shard-end', source: item.source, epoch: item.epoch, shard: item.shard });
      inRound++;
      if (item.position % worldSize === worldSize - 1) {
        for (const event of pending) ready.push(event);
        pending = [];
        inRound = 0;
      }
    }
    if (ready.length > 0) yield ready;
  }
  if (inRound > 0) onRemainder(inRound);
  // Shard ends still matter (readers close); the round's samples do not.
  const ends = pending.filter((event) => event.kind === 'shard-end');
  if (ends.length > 0) yield ends;
}
