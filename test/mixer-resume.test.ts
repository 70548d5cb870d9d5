import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { Mixture, MixtureState } from '../mixer/mixture-stream-types.ts';
import { mergeStates } from '../mixer/mixture-state.ts';
import { RankSequence } from '../mixer/rank-sequence.ts';
import { collect, planFour, writeFourSources } from './helpers/mixtures.ts';

// Elastic resume: the states every rank of one world saved go on under another world size, and over all worlds every
// sample of the single-rank stream is read exactly once.

let dir: string;
let mixture: Mixture;
/** The single-rank stream: position -> source/key. */
let whole: string[];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm4-mix-resume-'));
  mixture = await planFour(join(dir, 'mix'), await writeFourSources(join(dir, 'data')), { mode: 'epochs' });
  whole = (await collect(mixture.stream())).map((s) => `${s.source}/${s.key}`);
});
after(() => rm(dir, { recursive: true, force: true }));

/** Runs world after world: in each but the last every rank reads a share of what it could, then saves its state. */
async function runWorlds(worlds: number[], shares: number[]): Promise<{ read: Map<number, string>; remainder: number; sequence: RankSequence }> {
  const read = new Map<number, string>();
  let states: MixtureState[] | undefined;
  let remainder = 0;
  let sequence = new RankSequence([], 0);
  for (const [k, worldSize] of worlds.entries()) {
    const last = k === worlds.length - 1;
    const next: MixtureState[] = [];
    for (let rank = 0; rank < worldSize; rank++) {
      const stream = mixture.stream({ rank, worldSize, ...(states ? { resume: states } : {}) });
      const start = stream.state();
      sequence = new RankSequence(start.leftovers, start.tail);
      const limit = last ? Infinity : Math.floor(shares[(k * 7 + rank) % shares.length]! * (whole.length / worldSize + 2));
      for (const sample of await collect(stream, limit)) {
        assert.ok(!read.has(sample.position), `position ${sample.position} read twice (world ${k}, rank ${rank} of ${worldSize})`);
        assert.equal(`${sample.source}/${sample.key}`, whole[sample.position], `position ${sample.position} holds the single-rank stream's sample`);
        read.set(sample.position, `${sample.source}/${sample.key}`);
      }
      next.push(JSON.parse(JSON.stringify(stream.state())) as MixtureState); // as saved in a checkpoint
      remainder = stream.realised().remainder;
    }
    states = next.reverse(); // any order
  }
  return { read, remainder, sequence };
}

test('states of every rank resume under other world sizes: over all worlds, the single-rank stream exactly once', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 2, maxLength: 3 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 9 }),
      async (worlds, shares) => {
        const { read, remainder } = await runWorlds(worlds, shares);
        const missing = whole.map((_, p) => p).filter((p) => !read.has(p));
        // What the last world could not share out evenly (its last incomplete round) is all that is left unread.
        assert.equal(missing.length, remainder, `unread positions ${missing.join(', ')}, remainder ${remainder}`);
        assert.ok(remainder < worlds.at(-1)!);
      },
    ),
    { numRuns: 25 },
  );
});

test('a merge hands out what lagging ranks left, then the rest of the stream; the states are a few hundred bytes', async () => {
  const { read, remainder, sequence } = await runWorlds([3, 2], [0.9, 0.1, 0.5]);
  assert.equal(read.size, whole.length - remainder);
  assert.ok(sequence.leftoverCount > 0, 'the lagging ranks left samples to hand out first');
  const state = mixture.stream({ rank: 0, worldSize: 3 });
  await collect(state, 40);
  assert.ok(JSON.stringify(state.state()).length < 600);
});

test("a state of one rank of another world is refused, saying to give every rank's; a merge needs every rank once", async () => {
  const states = await Promise.all(
    [0, 1].map(async (rank) => {
      const stream = mixture.stream({ rank, worldSize: 2 });
      await collect(stream, 10 + rank);
      return stream.state();
    }),
  );
  assert.throws(
    () => mixture.stream({ rank: 0, worldSize: 3, resume: states[0] }),
    /belongs to rank 0 of 2, not rank 0 of 3: to go on under another world size, give the states of all 2 ranks/,
  );
  assert.throws(() => mixture.stream({ rank: 0, worldSize: 3, resume: [states[0]!] }), /needs the states of all 2 ranks/);
  assert.throws(() => mixture.stream({ rank: 0, worldSize: 3, resume: [states[0]!, states[0]!] }), /needs the states of all 2 ranks/);
  const merged = mergeStates(states);
  // Rank 0 read items 0, 2, ..., 18 (next 20); rank 1 items 1, ..., 21 (next 23): everything below 22 but item 20 was read.
  assert.deepEqual(merged.leftovers, [{ first: 20, step: 2, count: 1 }]);
  assert.equal(merged.tail, 22);
});
