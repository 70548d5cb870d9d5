import { test } from 'node:test';
import assert from 'node:assert/strict';
import { documentSample, listMixture, pairSample, type SampleSpec } from './helpers/bridge-mixture.ts';
import { openBridge } from '../trainer-bridge/bridge.ts';
import type { Batch, BridgeState } from '../trainer-bridge/batch.ts';
import type { PixelDecoder } from '../trainer-bridge/pixel-pool.ts';
import { PIXELS_PER_IMAGE } from '../trainer-bridge/batch.ts';
import { isM4Error } from '../core/errors.ts';

/** Every image's first two bytes number it; the decoder fills its slot with that number. */
const decoder: PixelDecoder = { decode: async (image) => new Float32Array(PIXELS_PER_IMAGE).fill(image.bytes.readUInt16BE(0)), close: async () => {} };
let next = 1;
const image = () => {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(next++);
  return b;
};
const WORDS = 'river light market of old bridge a photo under the morning'.split(' ');
const words = (n: number, seed: number) => Array.from({ length: n }, (_, i) => WORDS[(i * 5 + seed) % WORDS.length]).join(' ');
const samples: SampleSpec[] = Array.from({ length: 150 }, (_, i) =>
  i % 3 === 0
    ? documentSample('obelisc', `d${i}`, [words(3 + (i % 9), i), image(), words(10 + (i % 40), i + 1), image(), image(), words(4, i)])
    : pairSample(i % 2 ? 'laion' : 'pmd', `p${i}`, words(2 + (i % 12), i), image()),
);
const SHAPE = { batchSize: 2, seqLen: 48, maxImages: 3 };

async function run(options: Parameters<typeof openBridge>[1]): Promise<{ batches: Batch[]; states: BridgeState[] }> {
  const bridge = openBridge(listMixture(samples, { budgetTokens: 10_000 }), { decoder, ...SHAPE, ...options });
  const batches: Batch[] = [];
  const states: BridgeState[] = [];
  for await (const batch of bridge) {
    batches.push(batch);
    states.push(JSON.parse(JSON.stringify(bridge.state())));
  }
  return { batches, states };
}

const tensors = (b: Batch) =>
  [b.inputIds, b.attentionMask, b.labels, b.pixelValues, b.imageAttentionMask].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64'));
const markers = (b: Batch) => {
  const out: number[] = [];
  for (let slot = 0; slot < b.batchSize * b.maxImages; slot++)
    if (b.pixelValues[slot * PIXELS_PER_IMAGE] !== 0) out.push(b.pixelValues[slot * PIXELS_PER_IMAGE]!);
  return out;
};

test('resume: from the state after any batch, the next batches are identical', async () => {
  const { batches, states } = await run({ steps: 14 });
  assert.equal(batches.length, 14);
  assert.ok(
    states.some((s) => (s.packer as { skipUnits: number }).skipUnits > 0),
    'some batch ends inside a sample (a window or a later part)',
  );
  for (let cut = 1; cut < 14; cut++) {
    const resumed = await run({ steps: 14, resume: states[cut - 1] });
    assert.equal(resumed.batches.length, 14 - cut);
    assert.deepEqual(resumed.batches.map(tensors), batches.slice(cut).map(tensors), `after batch ${cut}`);
    assert.deepEqual(resumed.states, states.slice(cut));
  }
  assert.equal((await run({ steps: 14, resume: states[13] })).batches.length, 0, 'a state taken at the last step yields nothing more');
});

test('resume: a state taken under another shape or rank is refused', async () => {
  const { states } = await run({ steps: 2 });
  for (const other of [{ seqLen: 64 }, { maxImages: 4 }, { batchSize: 3 }, { rank: 1, worldSize: 2 }]) {
    assert.throws(
      () => openBridge(listMixture(samples), { decoder, ...SHAPE, ...other, resume: states[1] }),
      (err: unknown) => isM4Error(err, 'E_USAGE'),
    );
  }
});

test('ranks: disjoint samples, the same number of batches each; steps default to the plan budget', async () => {
  const seen = new Map<number, number>();
  for (const rank of [0, 1, 2]) {
    const { batches, states } = await run({ steps: 4, rank, worldSize: 3 });
    assert.equal(batches.length, 4);
    assert.equal(states.at(-1)!.mixture.next % 3, rank, 'the rank reads positions r, r + w, ...');
    for (const m of batches.flatMap(markers)) {
      assert.ok(!seen.has(m) || seen.get(m) === rank, `image ${m} on ranks ${seen.get(m)} and ${rank}`);
      seen.set(m, rank);
    }
  }
  assert.ok(seen.size > 20);
  // 10,000 planned tokens / (2 ranks x 2 rows x 48 tokens) = 52 batches per rank.
  assert.equal(openBridge(listMixture(samples, { budgetTokens: 10_000 }), { decoder, ...SHAPE, worldSize: 2, rank: 1 }).options.steps, 52);
});
