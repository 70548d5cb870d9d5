import { M4Error } from '../core/errors.ts';
import { wholeNumber } from '../core/ranges.ts';
import type { MixtureState } from '../mixer/mixture-stream-types.ts';
import { holds, RankSequence } from '../mixer/rank-sequence.ts';
import type { BridgeState, PackerState } from './batch.ts';

/**
 * Resume states of the bridge, checked field by field before anything trusts them, and what "consumed" means when a
 * run goes on under another world size. A rank has consumed the samples before its mixture state's next one, and the
 * first `skipUnits` units (parts, windows of long documents) of that one; samples read ahead of its last batch are not
 * consumed. Resuming the states of all W ranks saved at the same step under W' ranks keeps the global batch
 * (W x B = W' x B'), the sequence length and the image slots, and hands every sample of the single-rank stream out
 * exactly once over both worlds: the mixer merges the sample sequences (mixer/mixture-state.ts), and a sample one rank
 * had part-emitted goes on from its next unit wherever it lands (`partial`, by position).
 */

/** The run a state is checked against. */
export interface ResumeShape {
  batchSize: number;
  seqLen: number;
  maxImages: number;
  rank: number;
  worldSize: number;
  steps: number;
}

const FIELDS = ['format', 'version', 'mixture', 'batches', 'packer'];
const PACKER_FIELDS = ['skipUnits', 'seqLen', 'batchSize', 'maxImages', 'partial'];
/** A merge adds one entry per rank of the earlier world; far more is no state m4data wrote. */
const MAX_PARTIAL = 1 << 16;

/** The resume state (one, of this rank) or states (every rank of another world), checked against this run. */
export function checkBridgeResume(resume: unknown, shape: ResumeShape): BridgeState | BridgeState[] {
  if (!Array.isArray(resume)) {
    const state = checkBridgeState(resume, shape, 'the resume state');
    const { mixture, packer } = state;
    // The state of a world of one rank is every rank's state of that world.
    if (mixture.worldSize === 1 && shape.worldSize !== 1) return checkBridgeResume([resume], shape);
    if (mixture.rank !== shape.rank || mixture.worldSize !== shape.worldSize) {
      usage(
        `the resume state is rank ${mixture.rank} of ${mixture.worldSize}, this run rank ${shape.rank} of ${shape.worldSize}: to go on under another world ` +
          `size, give the states of all ${mixture.worldSize} ranks saved at the same step`,
      );
    }
    for (const [name, ours] of [
      ['seqLen', shape.seqLen],
      ['batchSize', shape.batchSize],
      ['maxImages', shape.maxImages],
    ] as const) {
      if (packer[name] !== ours) usage(`the resume state was taken with ${name} ${packer[name]}, this run has ${ours}: the batches would differ`);
    }
    return state;
  }
  if (resume.length === 0) usage('no resume state was given');
  const states = resume.map((s, i) => checkBridgeState(s, shape, `resume state ${i + 1}`));
  const first = states[0]!;
  for (const s of states) {
    if (s.batches !== first.batches)
      usage(`the resume states were saved at different steps (${first.batches} and ${s.batches} batches): give every rank's state of one step`);
    for (const name of ['seqLen', 'maxImages'] as const) {
      if (s.packer[name] !== shape[name])
        usage(`a resume state was taken with ${name} ${s.packer[name]}, this run has ${shape[name]}: keep it when the world size changes`);
    }
    const global = s.mixture.worldSize * s.packer.batchSize;
    if (global !== shape.worldSize * shape.batchSize) {
      usage(
        `the resume states were saved with a global batch of ${s.mixture.worldSize} x ${s.packer.batchSize} = ${global} sequences, this run's is ` +
          `${shape.worldSize} x ${shape.batchSize} = ${shape.worldSize * shape.batchSize}: keep world size x --batch-size when the world size changes`,
      );
    }
  }
  return states;
}

function checkBridgeState(value: unknown, shape: ResumeShape, what: string): BridgeState {
  const bad = (message: string): never => usage(`${what} ${message}`);
  if (typeof value !== 'object' || value === null) bad('is not a JSON object');
  const s = value as Record<string, unknown>;
  if (s.format !== 'm4data-bridge-state') bad(`is not an m4data bridge state (format ${JSON.stringify(s.format)})`);
  if (s.version !== 2)
    bad(`has version ${JSON.stringify(s.version)}; this m4data reads version 2 (states of version 1 predate plan fingerprints: start again)`);
  for (const key of Object.keys(s)) if (!FIELDS.includes(key)) bad(`has an unknown field ${JSON.stringify(key)}`);
  const batches = wholeNumber(s.batches, 'batches', 0, bad);
  if (batches > shape.steps) bad(`has ${batches} batches done, past --steps ${shape.steps}`);
  if (typeof s.mixture !== 'object' || s.mixture === null) bad('field mixture must be the mixer state');
  if (typeof s.packer !== 'object' || s.packer === null) bad('field packer must be {skipUnits, seqLen, batchSize, maxImages, partial}');
  const p = s.packer as Record<string, unknown>;
  for (const key of Object.keys(p)) if (!PACKER_FIELDS.includes(key)) bad(`has an unknown field packer.${key}`);
  if (!Array.isArray(p.partial) || p.partial.length > MAX_PARTIAL) bad('field packer.partial must be a list of [position, units]');
  const partial = (p.partial as unknown[]).map((entry, i): [number, number] => {
    if (!Array.isArray(entry) || entry.length !== 2) bad(`field packer.partial[${i}] must be [position, units]`);
    const [position, units] = entry as unknown[];
    return [wholeNumber(position, `packer.partial[${i}][0]`, 0, bad), wholeNumber(units, `packer.partial[${i}][1]`, 1, bad)];
  });
  const packer: PackerState = {
    skipUnits: wholeNumber(p.skipUnits, 'packer.skipUnits', 0, bad),
    seqLen: wholeNumber(p.seqLen, 'packer.seqLen', 1, bad),
    batchSize: wholeNumber(p.batchSize, 'packer.batchSize', 1, bad),
    maxImages: wholeNumber(p.maxImages, 'packer.maxImages', 1, bad),
    partial,
  };
  return { format: 'm4data-bridge-state', version: 2, mixture: s.mixture as MixtureState, batches, packer };
}

/**
 * The samples part-emitted by the earlier world(s), by position: each earlier rank's next sample with the units it had
 * emitted of it, and the earlier entries whose samples nobody has reached yet (in the new world's leftovers, or past
 * its tail). `start` is the new world's mixture state before any sample (the mixer checked and merged the states).
 */
export function partialAfterMerge(states: readonly BridgeState[], start: MixtureState): Map<number, number> {
  const partial = new Map<number, number>();
  const keep = (position: number, units: number) => partial.set(position, Math.max(units, partial.get(position) ?? 0));
  for (const s of states) {
    for (const [position, units] of s.packer.partial) {
      if (position >= start.tail || start.leftovers.some((p) => holds(p, position))) keep(position, units);
    }
  }
  for (const s of states) {
    if (s.packer.skipUnits > 0) keep(new RankSequence(s.mixture.leftovers, s.mixture.tail).positionOf(s.mixture.next), s.packer.skipUnits);
  }
  return partial;
}

function usage(message: string): never {
  throw new M4Error('E_USAGE', 'bridge', message);
}
