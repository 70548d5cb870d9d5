import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MixedSample, Mixture, MixtureStream } from '../mixer/mixture-stream-types.ts';
import { RankSequence } from '../mixer/rank-sequence.ts';
import { isImageField } from '../shards/entry-name.ts';
import { PIXELS_PER_IMAGE, type Batch, type BridgeState } from '../trainer-bridge/batch.ts';
import { openBridge, type MixtureSource } from '../trainer-bridge/bridge.ts';
import type { PixelDecoder } from '../trainer-bridge/pixel-pool.ts';
import { isM4Error } from '../core/errors.ts';
import { planFour, writeFourSources } from './helpers/mixtures.ts';
import { runCli } from './helpers/run-cli.ts';

// The bridge resumed under another world size at a constant global batch: every image of every sample the ranks
// consumed, over both worlds, is packed exactly once, and a document one rank had part-packed goes on where it stopped.

/** Image i of the sample at position p carries the number p x 8 + i + 1; the decoder fills its slot with it. */
const decoder: PixelDecoder = { decode: async (image) => new Float32Array(PIXELS_PER_IMAGE).fill(image.bytes.readUInt32BE(0)), close: async () => {} };

/** The real mixture, its images replaced by their markers. */
function marked(mixture: Mixture): MixtureSource {
  return {
    plan: mixture.plan,
    stream(options) {
      const inner: MixtureStream = mixture.stream(options);
      return {
        state: () => inner.state(),
        realised: () => inner.realised(),
        async *[Symbol.asyncIterator]() {
          for await (const sample of inner) yield mark(sample);
        },
      };
    },
  };
}

function mark(sample: MixedSample): MixedSample {
  const fields = { ...sample.fields };
  const images = Object.keys(fields)
    .filter(isImageField)
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
  images.forEach((name, i) => {
    const marker = Buffer.alloc(4);
    marker.writeUInt32BE(sample.position * 8 + i + 1);
    fields[name] = marker;
  });
  return { ...sample, fields };
}

function markers(batch: Batch): number[] {
  const out: number[] = [];
  for (let slot = 0; slot < batch.batchSize * batch.maxImages; slot++)
    if (batch.pixelValues[slot * PIXELS_PER_IMAGE] !== 0) out.push(batch.pixelValues[slot * PIXELS_PER_IMAGE]!);
  return out;
}

let dir: string;
let source: MixtureSource;
/** Images per position of the single-rank stream. */
const imagesAt = new Map<number, number>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm4-bridge-elastic-'));
  const mixture = await planFour(join(dir, 'mix'), await writeFourSources(join(dir, 'data')), { budget: 40_000 });
  source = marked(mixture);
  for await (const sample of mixture.stream({ endless: true })) {
    imagesAt.set(sample.position, sample.images);
    if (imagesAt.size >= 3000) break;
  }
});
after(() => rm(dir, { recursive: true, force: true }));

/** Short rows, so documents are cut into windows and a batch often ends inside one. */
const SHAPE = { seqLen: 48, maxImages: 8 };

async function world(worldSize: number, batchSize: number, steps: number, resume?: BridgeState[]): Promise<{ packed: number[]; states: BridgeState[] }> {
  const packed: number[] = [];
  const states: BridgeState[] = [];
  for (let rank = 0; rank < worldSize; rank++) {
    const bridge = openBridge(source, { ...SHAPE, decoder, rank, worldSize, batchSize, steps, ...(resume ? { resume } : {}) });
    for await (const batch of bridge) packed.push(...markers(batch));
    states.push(JSON.parse(JSON.stringify(bridge.state())) as BridgeState);
  }
  return { packed, states };
}

test('under another world size at the same global batch, every consumed image is packed exactly once', async () => {
  // The first step after which some rank stopped inside a sample (a window of a document, or a later part).
  let first = await world(4, 2, 4);
  while (!first.states.some((s) => s.packer.skipUnits > 0)) first = await world(4, 2, first.states[0]!.batches + 1);
  const second = await world(2, 4, first.states[0]!.batches + 8, first.states);
  const third = await world(8, 1, second.states[0]!.batches + 6, second.states.reverse());
  const all = [...first.packed, ...second.packed, ...third.packed];
  assert.equal(new Set(all).size, all.length, 'no image packed twice');
  // Consumed: everything before the positions the last world's ranks still have to read.
  const frontier = Math.min(
    ...third.states.map((s) => new RankSequence(s.mixture.leftovers, s.mixture.tail).firstPositionFrom(s.mixture.next, s.mixture.worldSize)),
  );
  const seen = new Map<number, Set<number>>();
  for (const m of all) {
    const position = Math.floor((m - 1) / 8);
    seen.set(position, (seen.get(position) ?? new Set()).add((m - 1) % 8));
  }
  for (let p = 0; p < frontier; p++) {
    const images = imagesAt.get(p)!;
    // A sample before the frontier was consumed: all its images were packed (none is over the slots: 3 at most).
    assert.equal(seen.get(p)?.size ?? 0, images, `position ${p}: ${seen.get(p)?.size ?? 0} of ${images} images packed`);
  }
  for (const [p, images] of seen) {
    // A sample part-packed at the end holds its first images only: nothing was skipped inside it.
    assert.deepEqual(
      [...images].sort(),
      Array.from({ length: images.size }, (_, i) => i),
      `position ${p}`,
    );
  }
});

test('resume states of one step are checked: another global batch, mixed steps, batches past --steps, bad fields', async () => {
  const { states } = await world(2, 2, 3);
  const refused = (resume: unknown, shape: object, pattern: RegExp) =>
    assert.throws(
      () => openBridge(source, { ...SHAPE, decoder, steps: 10, ...shape, resume: resume as BridgeState }),
      (err: unknown) => isM4Error(err, 'E_USAGE') && pattern.test(err.message),
    );
  refused(states, { worldSize: 3, batchSize: 2 }, /global batch of 2 x 2 = 4 sequences, this run's is 3 x 2 = 6: keep world size x --batch-size/);
  refused([states[0], { ...states[1]!, batches: 2 }], { worldSize: 4, batchSize: 1 }, /saved at different steps/);
  refused(states[0], { worldSize: 2, batchSize: 2, steps: 2 }, /has 3 batches done, past --steps 2/);
  refused(states[0], { worldSize: 4, batchSize: 1 }, /is rank 0 of 2, this run rank 0 of 4: to go on under another world size, give the states of all 2 ranks/);
  refused({ ...states[0]!, batches: -1 }, { worldSize: 2, batchSize: 2 }, /field batches must be a whole number of 0 or more \(found -1\)/);
  refused(
    { ...states[0]!, packer: { ...states[0]!.packer, skipUnits: 'two' } },
    { worldSize: 2, batchSize: 2 },
    /field packer\.skipUnits must be a whole number/,
  );
  refused({ ...states[0]!, version: 1 }, { worldSize: 2, batchSize: 2 }, /version 1; this m4data reads version 2/);
});

test("m4data train --dry-run --resume-state takes every rank's states, and goes on under another world size", async () => {
  const mixDir = join(dir, 'mix');
  const state = (rank: number) => join(dir, `state-${rank}.json`);
  const dryRun = (...flags: string[]) => runCli(['train', '--dry-run', '--mixture', mixDir, '--seq-len', '64', '--quiet', ...flags]);
  for (const rank of [0, 1]) {
    const r = await dryRun('--steps', '2', '--rank', String(rank), '--world-size', '2', '--save-state', state(rank));
    assert.equal(r.code, 0, r.err);
  }
  const resumed = await dryRun('--steps', '4', '--batch-size', '4', '--world-size', '1', '--resume-state', state(0), state(1));
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(resumed.out, /rank 0 of 1: 4 batches of 4 x 64 tokens, 16 image slots per sequence \(resuming after batch 2\)/);
  assert.match(resumed.out, /2 batches on rank 0 of 1 \(4 of 4 in all\)/);
  assert.match(resumed.out, /how well mixed, the samples this rank read/);
  const alone = await dryRun('--steps', '4', '--batch-size', '4', '--resume-state', state(0));
  assert.equal(alone.code, 2);
  assert.match(alone.err, /is rank 0 of 2, this run rank 0 of 1: to go on under another world size, give the states of all 2 ranks/);
});
