import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { IndexEntry } from '../shards/shard-index.ts';
import type { ShardRecord } from '../shards/manifest.ts';
import { rankSlice } from '../mixer/rank-slice.ts';
import { schedule, scheduleChunks, type IndexedDataset, type ScheduledSample, type ScheduleSource } from '../mixer/schedule.ts';
import { SourceOrder } from '../mixer/source-order.ts';

/** An in-memory indexed dataset: shards of given sizes, each sample's tokens from the list. */
function dataset(name: string, shardTokens: number[][]): IndexedDataset {
  const shards: ShardRecord[] = shardTokens.map((tokens, k) => ({ shard: `${name}-${k}.tar`, samples: tokens.length, images: tokens.length, tokens: tokens.reduce((a, b) => a + b, 0), bytes: 0, sha256: '' }));
  const entries: IndexEntry[][] = shardTokens.map((tokens, k) => tokens.map((t, i) => ({ key: `${k}_${i}`, offset: 0, size: 0, images: 1, tokens: t })));
  return { shards, entries: async (shard: number) => entries[shard]! };
}

async function collect<T>(items: AsyncIterable<T>, limit = Infinity): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) {
    out.push(item);
    if (out.length >= limit) break;
  }
  return out;
}

const tokensOf = (d: IndexedDataset) => d.shards.reduce((a, s) => a + s.tokens, 0);

const sourcesArb = fc
  .array(
    fc.record({
      shards: fc.array(fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 0, maxLength: 12 }), { minLength: 1, maxLength: 4 }),
      epochs: fc.double({ min: 0.2, max: 3, noNaN: true }),
    }),
    { minLength: 1, maxLength: 4 },
  )
  .filter((specs) => specs.every((s) => s.shards.some((shard) => shard.length > 0)));

/** Sources planned by epochs: target = epochs x tokens; shares follow, as --mode epochs plans them. */
function planned(specs: { shards: number[][]; epochs: number }[]): ScheduleSource<IndexedDataset>[] {
  const datasets = specs.map((s, i) => dataset(`s${i}`, s.shards));
  const targets = specs.map((s, i) => s.epochs * tokensOf(datasets[i]!));
  const total = targets.reduce((a, b) => a + b, 0);
  return specs.map((_, i) => ({ name: `s${i}`, share: targets[i]! / total, target: targets[i]!, dataset: datasets[i]! }));
}

test('each epoch is a permutation of the source, read shard by shard in order, in a new order each epoch', () => {
  const sizes = [5, 0, 7, 3, 9, 4];
  const order = new SourceOrder(sizes, 42, 7, 2);
  const it = order.from(0, 0);
  const epochs: { shard: number; entry: number }[][] = [[], []];
  for (let i = 0; i < 2 * 28; i++) {
    const s = it.next().value!;
    epochs[s.epoch]!.push({ shard: s.shard, entry: s.entry });
  }
  for (const epoch of epochs) {
    assert.equal(epoch.length, 28);
    const seen = new Set(epoch.map((s) => `${s.shard}/${s.entry}`));
    assert.equal(seen.size, 28, 'every sample once');
    for (const [shard, size] of sizes.entries()) {
      const entries = epoch.filter((s) => s.shard === shard).map((s) => s.entry);
      assert.deepEqual(entries, Array.from({ length: size }, (_, i) => i), `shard ${shard} read front to back`);
    }
  }
  assert.notDeepEqual(epochs[0], epochs[1]);
});

test('a cursor restarts the order exactly where it was', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 9 }), fc.integer({ min: 1, max: 4 }), fc.nat(200), fc.nat(1000), (sizes, open, at, seed) => {
      fc.pre(sizes.some((s) => s > 0));
      const order = new SourceOrder(sizes, seed, 3, open);
      const whole = [...take(order.from(0, 0), at + 30)];
      const cut = whole[at]!;
      const resumed = [...take(order.from(cut.epoch, cut.taken), 30)];
      assert.deepEqual(resumed, whole.slice(at, at + 30));
    }),
    { numRuns: 200 },
  );
});

function* take<T>(it: Iterator<T>, n: number): Generator<T> {
  for (let i = 0; i < n; i++) {
    const step = it.next();
    if (step.done) return;
    yield step.value;
  }
}

test('every prefix holds each source\'s tokens within one sample (the stream\'s largest) of its share', async () => {
  await fc.assert(
    fc.asyncProperty(sourcesArb, fc.nat(1000), async (specs, seed) => {
      const sources = planned(specs);
      const items = await collect(schedule(sources, { seed }));
      const largest = Math.max(...items.map((i) => i.tokens));
      const tokens = sources.map(() => 0);
      let total = 0;
      for (const item of items) {
        tokens[item.source] = tokens[item.source]! + item.tokens;
        total += item.tokens;
        sources.forEach((s, i) => {
          const deviation = Math.abs(tokens[i]! - s.share * total);
          assert.ok(deviation <= largest + 1e-6, `position ${item.position}: source ${i} is ${deviation} tokens off its share (largest sample ${largest})`);
        });
      }
    }),
    { numRuns: 150 },
  );
});

test('whole epochs give each sample exactly that many times; a fractional epoch stops within half a sample of its target', async () => {
  await fc.assert(
    fc.asyncProperty(sourcesArb, fc.nat(1000), async (specs, seed) => {
      const sources = planned(specs);
      const items = await collect(schedule(sources, { seed }));
      sources.forEach((source, i) => {
        const mine = items.filter((x) => x.source === i);
        const largest = Math.max(...source.dataset.shards.map((_, k) => k).flatMap((k) => specs[i]!.shards[k]!));
        const delivered = mine.reduce((acc, x) => acc + x.tokens, 0);
        // It stopped within half a sample of its target...
        assert.ok(delivered + largest / 2 >= source.target - 1e-6, `source ${i} stopped at ${delivered}, short of ${source.target}`);
        if (mine.length === 0) return;
        // ... and its last sample brought it nearer the target than stopping before it would have.
        const last = mine[mine.length - 1]!.tokens;
        assert.ok(delivered - last / 2 < source.target, `source ${i}: the last sample took it further from its target`);
        const counts = new Map<string, number>();
        for (const x of mine) counts.set(x.key, (counts.get(x.key) ?? 0) + 1);
        const samples = source.dataset.shards.reduce((a, s) => a + s.samples, 0);
        const full = Math.floor(mine.length / samples);
        // Every sample appears `full` or `full + 1` times: whole epochs, then a subset of the next.
        for (const c of counts.values()) assert.ok(c === full || c === full + 1);
        assert.equal(counts.size, full >= 1 ? samples : mine.length);
      });
    }),
    { numRuns: 100 },
  );
});

test('integer epochs: every sample exactly `epochs` times', async () => {
  const specs = [
    { shards: [[10, 20, 30], [5, 5], [40]], epochs: 3 },
    { shards: [[100, 200], [300, 50, 60, 70]], epochs: 1 },
    { shards: [[7, 8, 9, 10, 11, 12]], epochs: 2 },
  ];
  const sources = planned(specs);
  const items = await collect(schedule(sources, { seed: 9 }));
  specs.forEach((spec, i) => {
    const counts = new Map<string, number>();
    for (const x of items.filter((x) => x.source === i)) counts.set(x.key, (counts.get(x.key) ?? 0) + 1);
    assert.equal(counts.size, spec.shards.flat().length);
    assert.deepEqual(new Set(counts.values()), new Set([spec.epochs]));
  });
});

test('same seed, same stream; another seed, another order of the same multiset', async () => {
  const specs = [
    { shards: [[10, 20, 30, 15], [5, 5, 6]], epochs: 2 },
    { shards: [[100, 200], [300, 50, 60]], epochs: 1 },
  ];
  const key = (x: ScheduledSample) => `${x.source}/${x.key}`;
  const a = (await collect(schedule(planned(specs), { seed: 1 }))).map(key);
  const b = (await collect(schedule(planned(specs), { seed: 1 }))).map(key);
  const c = (await collect(schedule(planned(specs), { seed: 2 }))).map(key);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual([...a].sort(), [...c].sort());
});

test('rank slices are disjoint, equal in length, and their union is the single-rank stream less the last incomplete round', async () => {
  await fc.assert(
    fc.asyncProperty(sourcesArb, fc.nat(1000), fc.integer({ min: 1, max: 7 }), async (specs, seed, world) => {
      const sources = planned(specs);
      const whole = await collect(schedule(sources, { seed }));
      const slices: number[][] = [];
      const remainders: number[] = [];
      for (let rank = 0; rank < world; rank++) {
        const events = (await collect(rankSlice(scheduleChunks(sources, { seed }), rank, world, (n) => remainders.push(n)))).flat();
        slices.push(events.flatMap((e) => (e.kind === 'sample' ? [e.item.position] : [])));
      }
      const kept = whole.length - (whole.length % world);
      for (const slice of slices) assert.equal(slice.length, kept / world);
      const union = slices.flat().sort((x, y) => x - y);
      assert.deepEqual(union, Array.from({ length: kept }, (_, i) => i));
      if (whole.length % world > 0) assert.deepEqual(remainders, Array(world).fill(whole.length % world));
    }),
    { numRuns: 60 },
  );
});

test('the schedule resumes from the cursors taken at any position', async () => {
  await fc.assert(
    fc.asyncProperty(sourcesArb, fc.nat(1000), fc.double({ min: 0, max: 1, noNaN: true }), async (specs, seed, where) => {
      const sources = planned(specs);
      const whole = await collect(schedule(sources, { seed }));
      if (whole.length === 0) return; // every target under half a sample: nothing to resume
      const cut = Math.min(whole.length - 1, Math.floor(where * whole.length));
      const at = whole[cut]!;
      const resumed = await collect(schedule(sources, { seed, start: { position: at.position + 1, sources: at.after } }));
      const strip = (x: ScheduledSample) => [x.position, x.source, x.key, x.epoch];
      assert.deepEqual(resumed.map(strip), whole.slice(cut + 1).map(strip));
    }),
    { numRuns: 100 },
  );
});

test('endless goes on past the plan by the same rule', async () => {
  const sources = planned([{ shards: [[10, 20]], epochs: 1 }, { shards: [[5]], epochs: 1 }]);
  const finite = await collect(schedule(sources, { seed: 3 }));
  const endless = await collect(schedule(sources, { seed: 3, endless: true }), 50);
  assert.equal(finite.length, 3);
  assert.equal(endless.length, 50);
  assert.deepEqual(endless.slice(0, 3).map((x) => x.key), finite.map((x) => x.key));
});
