import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { IndexEntry } from '../shards/shard-index.ts';
import type { ShardRecord } from '../shards/manifest.ts';
import { schedule, type IndexedDataset, type ScheduledSample, type ScheduleSource } from '../mixer/schedule.ts';
import { IndexPermutation } from '../mixer/seeded-random.ts';
import { readLayout, SourceOrder, type OrderedSample, type ReadLayout } from '../mixer/source-order.ts';
import { JITTER } from '../mixer/token-balancer.ts';
import { collect } from './helpers/mixtures.ts';

/** An in-memory indexed dataset: shards of given sizes, each sample's tokens from the list (its bytes 10 per token). */
function dataset(name: string, shardTokens: number[][]): IndexedDataset {
  const entries: IndexEntry[][] = shardTokens.map((tokens, k) => {
    let offset = 0;
    return tokens.map((t, i) => {
      const entry = { key: `${k}_${i}`, offset, size: 10 * t, images: 1, tokens: t };
      offset += entry.size;
      return entry;
    });
  });
  const shards: ShardRecord[] = shardTokens.map((tokens, k) => ({
    shard: `${name}-${k}.tar`,
    samples: tokens.length,
    images: tokens.length,
    tokens: tokens.reduce((a, b) => a + b, 0),
    bytes: 10 * tokens.reduce((a, b) => a + b, 0),
    sha256: '',
  }));
  return { shards, entries: async (shard: number) => entries[shard]! };
}

const tokensOf = (d: IndexedDataset) => d.shards.reduce((a, s) => a + s.tokens, 0);

/** Small runs, groups and windows, so that a few dozen samples cross every level of the order. */
const layoutArb: fc.Arbitrary<ReadLayout> = fc.record({
  run: fc.integer({ min: 1, max: 5 }),
  groupRuns: fc.integer({ min: 1, max: 6 }),
  windowSamples: fc.integer({ min: 1, max: 40 }),
});

/** Sample sizes with a heavy tail: mostly short, now and then a long document. */
const sizeArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 60 }) }, { weight: 1, arbitrary: fc.integer({ min: 200, max: 3000 }) });

const sourcesArb = fc
  .array(
    fc.record({
      shards: fc.array(fc.array(sizeArb, { minLength: 0, maxLength: 12 }), { minLength: 1, maxLength: 4 }),
      epochs: fc.double({ min: 0.2, max: 3, noNaN: true }),
      layout: layoutArb,
    }),
    { minLength: 1, maxLength: 4 },
  )
  .filter((specs) => specs.every((s) => s.shards.some((shard) => shard.length > 0)));

type Spec = { shards: number[][]; epochs: number; layout?: ReadLayout };

/** Sources planned by epochs: target = epochs x tokens; shares follow, as --mode epochs plans them. */
function planned(specs: Spec[]): ScheduleSource<IndexedDataset>[] {
  const datasets = specs.map((s, i) => dataset(`s${i}`, s.shards));
  const targets = specs.map((s, i) => s.epochs * tokensOf(datasets[i]!));
  const total = targets.reduce((a, b) => a + b, 0);
  return specs.map((s, i) => ({
    name: `s${i}`,
    share: targets[i]! / total,
    target: targets[i]!,
    dataset: datasets[i]!,
    ...(s.layout ? { layout: s.layout } : {}),
  }));
}

function* take<T>(it: Iterator<T>, n: number): Generator<T> {
  for (let i = 0; i < n; i++) {
    const step = it.next();
    if (step.done) return;
    yield step.value;
  }
}

test('the seeded index permutation is a bijection, and indexOf inverts it', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 3000 }), fc.nat(), (n, seed) => {
      const p = new IndexPermutation(n, seed, 3);
      const seen = new Set<number>();
      for (let i = 0; i < n; i++) {
        const j = p.at(i);
        assert.ok(j >= 0 && j < n);
        assert.equal(p.indexOf(j), i);
        seen.add(j);
      }
      assert.equal(seen.size, n);
    }),
    { numRuns: 60 },
  );
});

test('each epoch is a permutation of the source; runs are consecutive samples of a shard, spread over their group', () => {
  const sizes = [5, 0, 7, 3, 9, 4];
  const layout = { run: 3, groupRuns: 3, windowSamples: 12 };
  const order = new SourceOrder(sizes, layout, 42, 7);
  const it = order.from(0, 0);
  const epochs: OrderedSample[][] = [[], []];
  for (let i = 0; i < 2 * 28; i++) {
    const s = it.next().value!;
    assert.equal(s.taken, i % 28);
    epochs[s.epoch]!.push(s);
  }
  for (const epoch of epochs) {
    assert.equal(new Set(epoch.map((s) => `${s.shard}/${s.entry}`)).size, 28, 'every sample once');
    for (const s of epoch) assert.ok(s.entry >= s.runStart && s.entry < s.runStart + layout.run && s.runStart % layout.run === 0);
    // A group's samples all come before the next group's.
    epoch.forEach((s, i) => assert.ok(s.taken < s.groupEnd && (i === 0 || epoch[i - 1]!.groupEnd <= s.groupEnd)));
  }
  assert.notDeepEqual(epochs[0], epochs[1]);
});

test('a cursor restarts the order exactly where it was, across runs, groups, windows and epochs', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 9 }), layoutArb, fc.nat(200), fc.nat(1000), (sizes, layout, at, seed) => {
      fc.pre(sizes.some((s) => s > 0));
      const order = new SourceOrder(sizes, layout, seed, 3);
      const whole = [...take(order.from(0, 0), at + 30)];
      const cut = whole[at]!;
      const resumed = [...take(order.from(cut.epoch, cut.taken), 30)];
      assert.deepEqual(resumed, whole.slice(at, at + 30));
    }),
    { numRuns: 200 },
  );
});

test('a single shard: two seeds give two orders of the same samples', () => {
  const layout = { run: 4, groupRuns: 8 };
  const keys = (seed: number) => [...take(new SourceOrder([64], layout, seed, 9).from(0, 0), 64)].map((s) => s.entry);
  const a = keys(1);
  const b = keys(2);
  assert.notDeepEqual(a, b);
  assert.deepEqual(
    [...a].sort((x, y) => x - y),
    [...b].sort((x, y) => x - y),
  );
  assert.deepEqual(keys(1), a, 'the same seed gives the same order');
});

test('neighbours come from different shards: with 64 shards, under 5% of consecutive pairs share one', () => {
  const order = new SourceOrder(Array(64).fill(100), { run: 8, groupRuns: 32 }, 5, 1);
  const samples = [...take(order.from(0, 0), 6400)];
  let same = 0;
  for (let i = 1; i < samples.length; i++) if (samples[i]!.shard === samples[i - 1]!.shard) same++;
  assert.ok(same / (samples.length - 1) < 0.05, `${same} of ${samples.length - 1} pairs from one shard`);
  const distinct = new Set(samples.slice(0, 1000).map((s) => s.shard)).size;
  assert.ok(distinct >= 50, `${distinct} shards among the first 1,000 samples`);
});

test('a group of one run from every shard: its runs are of as many shards, and 1,000 consecutive samples of 471 shards touch nearly all', () => {
  // PMD's card-like layout (readLayout: 471 shards of 22 kB pairs give runs of 6 in groups of 471).
  assert.deepEqual(readLayout(470_000, 470_000 * 22_500, 471), { run: 6, groupRuns: 471 });
  const shards = Array.from({ length: 471 }, (_, k) => 60 + (k % 3));
  const order = new SourceOrder(shards, { run: 6, groupRuns: 471 }, 3, 1);
  const samples = [...take(order.from(0, 0), 471 * 60)];
  // Every group while each shard still has a run to give (10 rounds of 6): one run of each of the 471 shards.
  for (const at of [0, 471 * 6, 5 * 471 * 6, 9 * 471 * 6]) {
    const runs = [...samples[at]!.groupRuns.keys()];
    assert.equal(new Set(runs.map((id) => Math.floor(id / 2 ** 24))).size, 471, `the group at ${at}`);
  }
  let same = 0;
  for (let i = 1; i < samples.length; i++) if (samples[i]!.shard === samples[i - 1]!.shard) same++;
  assert.ok(same / (samples.length - 1) <= 0.002, `${same} of ${samples.length - 1} neighbours from one shard (uniform draws: 1 in 471)`);
  // Uniform draws over 471 shards would give 471 (1 - e^(-1000/471)) = 414.
  for (const at of [0, 7_000, 20_000]) {
    const distinct = new Set(samples.slice(at, at + 1000).map((s) => s.shard)).size;
    assert.ok(distinct >= 414, `${distinct} shards among 1,000 samples from ${at}`);
  }
});

test('rounds: a group holds min(G, S) shards, each as often; within a group of one run per shard, neighbours share a shard only where the runs must', () => {
  // S shards of R full runs of L samples, one window. Rounds are then S places each, so groups of G runs (G dividing S,
  // or q whole rounds, R a multiple of q) never straddle a round. Within a group of distinct shards, the k-th sample of
  // every run lies in [k/L, (k+1)/L) of the group's span, so the group's order is L slices of G different shards: two
  // neighbours share a shard only across the L - 1 seams between slices, at most once each, fewer than 1 pair in G
  // (uniform draws: 1 in S). And a shard's runs come round after round end to end, from a seeded one, wrapping once.
  const shapeArb = fc.record({
    g: fc.integer({ min: 1, max: 12 }),
    many: fc.integer({ min: 1, max: 3 }),
    groupsPerRound: fc.boolean(),
    run: fc.integer({ min: 1, max: 6 }),
    runs: fc.integer({ min: 1, max: 4 }),
  });
  const shardOf = (id: number) => Math.floor(id / 2 ** 24);
  fc.assert(
    fc.property(shapeArb, fc.nat(1000), ({ g, many, groupsPerRound, run, runs }, seed) => {
      const shards = groupsPerRound ? g * many : g;
      const groupRuns = groupsPerRound ? g : g * many;
      const perShard = groupsPerRound ? runs : runs * many;
      const samples = shards * perShard * run;
      const order = new SourceOrder(Array(shards).fill(perShard * run), { run, groupRuns, windowSamples: samples }, seed, 2);
      const epoch = [...take(order.from(0, 0), samples)];
      const runStarts = new Map<number, number[]>();
      for (let start = 0; start < samples; start = epoch[start]!.groupEnd) {
        const group = epoch.slice(start, epoch[start]!.groupEnd);
        const runsOf = new Map<number, number>();
        for (const id of group[0]!.groupRuns.keys()) runsOf.set(shardOf(id), (runsOf.get(shardOf(id)) ?? 0) + 1);
        assert.equal(runsOf.size, Math.min(groupRuns, shards), `the group at ${start}: shards`);
        assert.deepEqual(new Set(runsOf.values()), new Set([Math.max(1, groupRuns / shards)]), `the group at ${start}: runs a shard`);
        if (groupRuns > shards) continue;
        for (const id of group[0]!.groupRuns.keys()) runStarts.set(shardOf(id), [...(runStarts.get(shardOf(id)) ?? []), id % 2 ** 24]);
        let same = 0;
        for (let i = 1; i < group.length; i++) if (group[i]!.shard === group[i - 1]!.shard) same++;
        assert.ok(same <= run - 1, `the group at ${start}: ${same} neighbours from one shard, in runs of ${run}`);
      }
      for (const [shard, starts] of runStarts) {
        const rounds = Array.from({ length: perShard }, (_, j) => ((starts[0]! / run + j) % perShard) * run);
        assert.deepEqual(starts, rounds, `shard ${shard}'s runs, round by round`);
      }
    }),
    { numRuns: 300 },
  );
});

test("every prefix holds each source's tokens within one sample (the sources' largest) of its share", async () => {
  await fc.assert(
    fc.asyncProperty(sourcesArb, fc.nat(1000), async (specs, seed) => {
      const sources = planned(specs);
      const items = await collect(schedule(sources, { seed }));
      // The sources' largest sample, streamed or not: a source whose target is under half its one sample never starts,
      // and the others then run over its share by what it would have taken.
      const largest = Math.max(...specs.flatMap((s) => s.shards.flat()));
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
        const largest = Math.max(...specs[i]!.shards.flat());
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
    { shards: [[10, 20, 30], [5, 5], [40]], epochs: 3, layout: { run: 2, groupRuns: 2 } },
    {
      shards: [
        [100, 200],
        [300, 50, 60, 70],
      ],
      epochs: 1,
    },
    { shards: [[7, 8, 9, 10, 11, 12]], epochs: 2, layout: { run: 1, groupRuns: 3, windowSamples: 2 } },
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

test(
  'no source runs longer than its share allows: with samples of one size, at most ceil((1 + jitter) share / smallest other share) + 2 in a ' + 'row',
  async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 2, maxLength: 5 }),
        fc.integer({ min: 1, max: 500 }),
        fc.nat(1000),
        async (weights, size, seed) => {
          const total = weights.reduce((a, b) => a + b, 0);
          const sources = weights.map((w, i) => ({ name: `s${i}`, share: w / total, target: Infinity, dataset: dataset(`s${i}`, [Array(20).fill(size)]) }));
          const items = await collect(schedule(sources, { seed, endless: true }), 2000);
          let run = 0;
          items.forEach((item, k) => {
            run = k > 0 && items[k - 1]!.source === item.source ? run + 1 : 1;
            const others = Math.min(...sources.filter((_, j) => j !== item.source).map((s) => s.share));
            const limit = Math.ceil(((1 + JITTER) * sources[item.source]!.share) / others) + 2;
            assert.ok(
              run <= limit,
              `source ${item.source} (share ${sources[item.source]!.share.toFixed(3)}) ran ${run} samples at position ${k}, over ${limit}`,
            );
          });
        },
      ),
      { numRuns: 100 },
    );
  },
);

test('a source that stops short of its share leaves the others reaching their targets together, not one after another', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 2, maxLength: 4 }),
      fc.integer({ min: 100, max: 3000 }),
      fc.double({ min: 1.05, max: 1.45, noNaN: true }),
      fc.nat(1000),
      async (weights, documentTokens, documentEpochs, seed) => {
        // Pairs of 10 tokens, one epoch each; a document source of one sample whose target (documentEpochs of it) it
        // stops short of by up to half its sample, so that the pair sources are ahead of their shares from then on.
        const specs: Spec[] = [
          ...weights.map((w) => ({ shards: [Array(20 * w).fill(10)], epochs: 1 })),
          { shards: [[documentTokens]], epochs: documentEpochs },
        ];
        const sources = planned(specs);
        const items = await collect(schedule(sources, { seed }));
        const pairs = sources.slice(0, weights.length);
        const lastOf = pairs.map((_, i) => items.map((x) => x.source).lastIndexOf(i));
        const firstDone = Math.min(...lastOf);
        pairs.forEach((source, i) => {
          // When the first pair source is done, each other has about what its share gives against that one's last sample.
          const left = items.slice(firstDone + 1).filter((x) => x.source === i).length;
          const others = Math.min(...pairs.filter((_, j) => j !== i).map((s) => s.share));
          const limit = Math.ceil(((1 + JITTER) * source.share) / others) + 2;
          assert.ok(left <= limit, `source ${i} had ${left} samples left when the first pair source was done (of ${items.length}), over ${limit}`);
        });
      },
    ),
    { numRuns: 100 },
  );
});

test('a long sample comes bracketed: the frequent sources right before and right after it, the rarest next to it', async () => {
  // Shares about 54%, 5.4% and 41%: a document of 1,500 tokens lasts 8 of the small pair source's periods (185 tokens).
  const sources = planned([
    { shards: [Array(400).fill(10)], epochs: 1 },
    { shards: [Array(40).fill(10)], epochs: 1 },
    { shards: [[1500, 1500]], epochs: 1 },
  ]);
  for (let seed = 0; seed < 20; seed++) {
    const items = await collect(schedule(sources, { seed }));
    const around = (k: number) => [-2, -1, 1, 2].map((d) => items[k + d]?.source);
    items.forEach((item, k) => {
      if (item.source === 2) assert.deepEqual(around(k), [0, 1, 1, 0], `seed ${seed}: the document at position ${k} has ${around(k)} around it`);
    });
  }
});

test('same seed, same stream; another seed, another order of the same multiset', async () => {
  const specs = [
    {
      shards: [
        [10, 20, 30, 15],
        [5, 5, 6],
      ],
      epochs: 2,
      layout: { run: 2, groupRuns: 2 },
    },
    {
      shards: [
        [100, 200],
        [300, 50, 60],
      ],
      epochs: 1,
    },
  ];
  const key = (x: ScheduledSample) => `${x.source}/${x.key}`;
  const a = (await collect(schedule(planned(specs), { seed: 1 }))).map(key);
  const b = (await collect(schedule(planned(specs), { seed: 1 }))).map(key);
  const c = (await collect(schedule(planned(specs), { seed: 2 }))).map(key);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual([...a].sort(), [...c].sort());
});

test("the schedule resumes from the point taken at any position, inside a long sample's bracket too", async () => {
  await fc.assert(
    fc.asyncProperty(sourcesArb, fc.nat(1000), async (specs, seed) => {
      const sources = planned(specs);
      const whole = await collect(schedule(sources, { seed }));
      const strip = (x: ScheduledSample) => [x.position, x.source, x.key, x.epoch, x.offset, x.runOffset];
      for (const at of whole) {
        // A resume point is the next position, or, inside a long sample's bracket, the bracket's start: never later.
        const from = at.resumeFrom;
        assert.ok(from.position <= at.position + 1);
        const resumed = await collect(schedule(sources, { seed, start: from }));
        assert.deepEqual(resumed.map(strip), whole.slice(from.position).map(strip), `resumed after position ${at.position}`);
      }
    }),
    { numRuns: 100 },
  );
});

test('endless goes on past the plan by the same rule', async () => {
  const sources = planned([
    { shards: [[10, 20]], epochs: 1 },
    { shards: [[5]], epochs: 1 },
  ]);
  const finite = await collect(schedule(sources, { seed: 3 }));
  const endless = await collect(schedule(sources, { seed: 3, endless: true }), 50);
  assert.equal(finite.length, 3);
  assert.equal(endless.length, 50);
  assert.deepEqual(
    endless.slice(0, 3).map((x) => x.key),
    finite.map((x) => x.key),
  );
});
