import { M4Error } from '../core/errors.ts';
import { wholeNumber } from '../core/ranges.ts';
import { RankSequence, type Progression } from './rank-sequence.ts';
import type { SchedulePoint, SourceCursor } from './schedule.ts';

/**
 * A rank's resume point, and how the states of every rank of one world become the start of another world. A state
 * names the sequence its world shares (see RankSequence), the rank's next item in it, and a point of the schedule no
 * later than anything the rank has still to read (a resume replays the schedule from there, which is cheap: indexes
 * only). Every field is checked before a stream trusts it, and a state is bound to its plan's fingerprint.
 */

export interface MixtureState {
  format: 'm4data-mixture-state';
  version: 2;
  /** The plan's fingerprint: a state resumes only the mixture it was taken from. */
  plan: string;
  seed: number;
  rank: number;
  worldSize: number;
  /** Positions an earlier world left unread, handed out first; then every position from `tail` on. */
  leftovers: Progression[];
  tail: number;
  /** The rank's next item of that sequence (rank, rank + worldSize, ...). */
  next: number;
  /** The schedule at a position no later than any this rank has still to read. */
  replay: { position: number; sources: SourceCursor[] };
}

/** What a state is checked against: the mixture it claims to resume. */
export interface StateContext {
  /** The plan's fingerprint and seed. */
  plan: string;
  seed: number;
  /** Per source, in the plan's order: samples and tokens of one epoch. */
  sources: readonly { name: string; samples: number; tokens: number }[];
}

const FORMAT = 'm4data-mixture-state';
const FIELDS = ['format', 'version', 'plan', 'seed', 'rank', 'worldSize', 'leftovers', 'tail', 'next', 'replay'];
/** More leftover progressions than this is no state m4data wrote (a merge adds one or two per rank). */
const MAX_LEFTOVERS = 1 << 16;

/** The state of a rank that has read nothing: the whole stream from position 0. */
export function freshState(context: StateContext, rank: number, worldSize: number): MixtureState {
  return {
    format: FORMAT,
    version: 2,
    plan: context.plan,
    seed: context.seed,
    rank,
    worldSize,
    leftovers: [],
    tail: 0,
    next: rank,
    replay: { position: 0, sources: context.sources.map((s) => ({ name: s.name, epoch: 0, taken: 0, tokens: 0 })) },
  };
}

/** `value` as a state of this mixture, every field checked (E_USAGE naming the field otherwise). */
export function checkState(value: unknown, context: StateContext, what = 'the resume state'): MixtureState {
  const bad = (message: string): never => {
    throw new M4Error('E_USAGE', 'mixer', `${what} ${message}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('is not a JSON object');
  const s = value as Record<string, unknown>;
  if (s.format !== FORMAT) bad(`is not an m4data mixture state (format ${JSON.stringify(s.format)})`);
  if (s.version !== 2)
    bad(`has version ${JSON.stringify(s.version)}; this m4data reads version 2 (states of version 1 predate plan fingerprints: start the stream again)`);
  for (const key of Object.keys(s)) if (!FIELDS.includes(key)) bad(`has an unknown field ${JSON.stringify(key)}`);
  if (s.plan !== context.plan) bad(`was taken from another mixture (plan fingerprint ${JSON.stringify(s.plan)}, this mixture's ${context.plan})`);
  if (s.seed !== context.seed) bad(`was taken with seed ${JSON.stringify(s.seed)}, the mixture has seed ${context.seed}`);
  const worldSize = wholeNumber(s.worldSize, 'worldSize', 1, bad);
  const rank = wholeNumber(s.rank, 'rank', 0, bad);
  if (rank >= worldSize) bad(`has rank ${rank}, not below its world size ${worldSize}`);
  const tail = wholeNumber(s.tail, 'tail', 0, bad);
  const next = wholeNumber(s.next, 'next', 0, bad);
  if (next % worldSize !== rank) bad(`has next ${next}, which is not an item of rank ${rank} of ${worldSize}`);
  if (!Array.isArray(s.leftovers) || s.leftovers.length > MAX_LEFTOVERS) bad('field leftovers must be a list of progressions');
  const leftovers = (s.leftovers as unknown[]).map((p, i): Progression => {
    if (typeof p !== 'object' || p === null) bad(`field leftovers[${i}] must be {first, step, count}`);
    const q = p as Record<string, unknown>;
    const out = {
      first: wholeNumber(q.first, `leftovers[${i}].first`, 0, bad),
      step: wholeNumber(q.step, `leftovers[${i}].step`, 1, bad),
      count: wholeNumber(q.count, `leftovers[${i}].count`, 1, bad),
    };
    if (Object.keys(q).length !== 3 || !Number.isSafeInteger(out.first + (out.count - 1) * out.step) || out.first + (out.count - 1) * out.step >= tail) {
      bad(`field leftovers[${i}] must be {first, step, count} with every position before the tail ${tail}`);
    }
    return out;
  });
  const replay = checkReplay(s.replay, context, bad);
  const sequence = new RankSequence(leftovers, tail);
  if (replay.position > sequence.firstPositionFrom(next, worldSize)) {
    bad(`replays the schedule from position ${replay.position}, past the position of its next sample (${sequence.firstPositionFrom(next, worldSize)})`);
  }
  return { format: FORMAT, version: 2, plan: context.plan, seed: context.seed, rank, worldSize, leftovers, tail, next, replay };
}

/**
 * The cursors of a schedule point, each source's checked against its sizes: an epoch's tokens lie between the epochs
 * before it and the one after, a source with no sample taken in its epoch holds whole epochs of tokens, and every
 * position took one sample, so the samples taken add up to the position.
 */
function checkReplay(value: unknown, context: StateContext, bad: (message: string) => never): MixtureState['replay'] {
  if (typeof value !== 'object' || value === null) bad('field replay must be {position, sources}');
  const r = value as Record<string, unknown>;
  const position = wholeNumber(r.position, 'replay.position', 0, bad);
  if (!Array.isArray(r.sources) || r.sources.length !== context.sources.length)
    bad(`field replay.sources must list the mixture's ${context.sources.length} sources`);
  let samples = 0;
  const sources = (r.sources as unknown[]).map((c, i): SourceCursor => {
    const source = context.sources[i]!;
    const field = `replay.sources[${i}]`;
    if (typeof c !== 'object' || c === null) bad(`field ${field} must be {name, epoch, taken, tokens}`);
    const cursor = c as Record<string, unknown>;
    if (cursor.name !== source.name) bad(`field ${field}.name is ${JSON.stringify(cursor.name)}, the mixture's source ${i} is ${source.name}`);
    const epoch = wholeNumber(cursor.epoch, `${field}.epoch`, 0, bad);
    const taken = wholeNumber(cursor.taken, `${field}.taken`, 0, bad);
    const tokens = wholeNumber(cursor.tokens, `${field}.tokens`, 0, bad);
    if (source.samples === 0 ? epoch + taken > 0 : taken >= source.samples)
      bad(`field ${field}.taken is ${taken}, past the ${source.samples} samples of an epoch of ${source.name}`);
    const below = epoch * source.tokens;
    if (tokens < below || tokens > below + source.tokens || (taken === 0 && tokens !== below)) {
      bad(`field ${field}.tokens is ${tokens}, impossible after ${epoch} epochs and ${taken} samples of ${source.name} (${source.tokens} tokens an epoch)`);
    }
    samples += epoch * source.samples + taken;
    return { name: source.name, epoch, taken, tokens };
  });
  if (samples !== position) bad(`field replay.position is ${position}, but its cursors have taken ${samples} samples (one per position)`);
  return { position, sources };
}

/** The start of a new world: the sequence, and where the schedule replays from. */
export interface WorldStart {
  leftovers: Progression[];
  tail: number;
  replay: SchedulePoint & MixtureState['replay'];
}

/**
 * The states of every rank of one world (checked, any order) as the start of another world: what each rank had not yet
 * read before the furthest rank's next item becomes leftovers, handed out first; the rest of the sequence follows.
 * Every item of the earlier sequence is then read exactly once over both worlds.
 */
export function mergeStates(states: readonly MixtureState[]): WorldStart {
  const worldSize = states[0]!.worldSize;
  const sequenceOf = (s: MixtureState) => JSON.stringify([s.leftovers, s.tail]);
  const ranks = new Set(states.map((s) => s.rank));
  if (states.length !== worldSize || ranks.size !== worldSize || states.some((s) => s.worldSize !== worldSize)) {
    throw new M4Error(
      'E_USAGE',
      'mixer',
      `resuming under another world size needs the states of all ${worldSize} ranks of the world that saved them (got ranks ` +
        `${[...ranks].sort((a, b) => a - b).join(', ')} of ${[...new Set(states.map((s) => s.worldSize))].join(' and ')})`,
    );
  }
  if (states.some((s) => sequenceOf(s) !== sequenceOf(states[0]!)))
    throw new M4Error('E_USAGE', 'mixer', 'the resume states come from different resumed runs (their sequences differ)');
  const sequence = new RankSequence(states[0]!.leftovers, states[0]!.tail);
  const byRank = [...states].sort((a, b) => a.rank - b.rank);
  // Every item below the cut was read by its rank or is a leftover; none at or past it was read.
  const cut = Math.max(...byRank.map((s) => s.next)) - worldSize + 1;
  const pieces: Progression[] = [];
  for (const s of byRank) pieces.push(...sequence.map(s.next, worldSize, s.next < cut ? Math.ceil((cut - s.next) / worldSize) : 0));
  let tail = sequence.tail;
  if (cut < sequence.leftoverCount) pieces.push(...sequence.map(cut, 1, sequence.leftoverCount - cut));
  else tail = sequence.positionOf(cut);
  const replay = byRank.reduce((least, s) => (s.replay.position < least.position ? s.replay : least), byRank[0]!.replay);
  return { leftovers: compact(pieces), tail, replay: structuredClone(replay) };
}

/** Joins progressions that continue one another. */
function compact(pieces: readonly Progression[]): Progression[] {
  const out: Progression[] = [];
  for (const p of pieces) {
    const last = out.at(-1);
    if (last && last.count === 1 && p.first > last.first && (p.count === 1 || p.first - last.first === p.step)) {
      last.step = p.first - last.first;
      last.count += p.count;
    } else if (last && p.first === last.first + last.count * last.step && (p.count === 1 || p.step === last.step)) {
      last.count += p.count;
    } else {
      out.push({ ...p });
    }
  }
  return out;
}
