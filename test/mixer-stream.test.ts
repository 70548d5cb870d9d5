import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { materialize } from '../mixer/materialize.ts';
import { openMixture } from '../mixer/mixture.ts';
import type { MixedSample } from '../mixer/mixture-stream-types.ts';
import { summarizeDataset } from '../shards/dataset-summary.ts';
import { collect, FOUR_SOURCES, planFour, writeFourSources } from './helpers/mixtures.ts';

let dir: string;
let locations: Map<string, string>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm4-mix-'));
  locations = await writeFourSources(join(dir, 'data'));
});
after(() => rm(dir, { recursive: true, force: true }));

const id = (s: MixedSample) => `${s.position} ${s.source}/${s.key}`;

test("the stream delivers the scheduled samples, read from their shards, with the plan's shares", async () => {
  const mixture = await planFour(join(dir, 'mix-a'), locations);
  const stream = mixture.stream();
  const samples = await collect(stream);
  assert.deepEqual(
    samples.map((s) => s.position),
    samples.map((_, i) => i),
  );
  for (const s of samples) {
    const json = JSON.parse(s.fields.json!.toString()) as { key: string; tokens: number };
    assert.equal(json.key, s.key);
    assert.equal(json.tokens, s.tokens, 'the index and the sample agree on tokens');
  }
  const report = stream.realised();
  assert.equal(report.samples, samples.length);
  const largest = Math.max(...samples.map((s) => s.tokens));
  for (const source of report.sources) {
    assert.ok(Math.abs(source.tokens - source.plannedTokens) <= largest, `${source.name}: ${source.tokens} tokens against ${source.plannedTokens} planned`);
  }
  assert.deepEqual(report.badShards, []);
});

test('ranks read disjoint slices of equal length whose union is the single-rank stream', async () => {
  const mixture = await openMixture(join(dir, 'mix-a'));
  const whole = (await collect(mixture.stream())).map(id);
  const world = 3;
  const slices = await Promise.all(Array.from({ length: world }, async (_, rank) => (await collect(mixture.stream({ rank, worldSize: world }))).map(id)));
  const kept = whole.length - (whole.length % world);
  for (const slice of slices) assert.equal(slice.length, kept / world);
  assert.deepEqual(slices.flat().sort(), whole.slice(0, kept).sort());
});

test('a state taken anywhere resumes the stream exactly, on any rank', async () => {
  const mixture = await openMixture(join(dir, 'mix-a'));
  const worlds = [1, 2, 4];
  const wholes = await Promise.all(worlds.map(async (w) => (await collect(mixture.stream({ rank: w - 1, worldSize: w }))).map(id)));
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 2 }), fc.double({ min: 0, max: 1, noNaN: true }), async (which, where) => {
      const worldSize = worlds[which]!;
      const rank = worldSize - 1;
      const whole = wholes[which]!;
      const cut = Math.floor(where * whole.length);
      const first = mixture.stream({ rank, worldSize });
      const head = await collect(first, cut);
      const state = JSON.parse(JSON.stringify(first.state())); // as saved in a checkpoint
      const rest = await collect(mixture.stream({ rank, worldSize, resume: state }));
      assert.deepEqual([...head.map(id), ...rest.map(id)], whole);
    }),
    { numRuns: 12 },
  );
  const state = mixture.stream({ rank: 1, worldSize: 2 }).state();
  assert.throws(
    () => mixture.stream({ rank: 1, worldSize: 4, resume: state }),
    /belongs to rank 1 of 2, not rank 1 of 4: to go on under another world size, give the states of all 2 ranks/,
  );
});

test('the same seed gives the same stream; another seed another order of the same multiset', async () => {
  const a = (await collect((await planFour(join(dir, 'mix-e1'), locations, { mode: 'epochs', seed: 1 })).stream())).map((s) => `${s.source}/${s.key}`);
  const b = (await collect((await openMixture(join(dir, 'mix-e1'))).stream())).map((s) => `${s.source}/${s.key}`);
  const c = (await collect((await planFour(join(dir, 'mix-e2'), locations, { mode: 'epochs', seed: 2 })).stream())).map((s) => `${s.source}/${s.key}`);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual([...a].sort(), [...c].sort());
  // atum-9b's epochs: PMD 3, LAION 1, OBELISC 3, Wikipedia 1.
  const counts = new Map<string, number>();
  for (const k of a) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const [k, n] of counts) assert.equal(n, k.startsWith('pmd/') || k.startsWith('obelisc/') ? 3 : 1, k);
  assert.equal(counts.size, 75 + 75 + 21 + 19);
});

test('a single shard per source: two seeds give two orders of the same samples', async () => {
  const { writeSyntheticDataset } = await import('../sandbox/datasets.ts');
  const single = new Map<string, string>();
  for (const s of FOUR_SOURCES) {
    const location = join(dir, 'single', s.name);
    await writeSyntheticDataset({
      location,
      source: s.name,
      layout: s.layout,
      shardSamples: [(s.shardSamples as readonly number[]).reduce((a, b) => a + b, 0)],
    });
    single.set(s.name, location);
  }
  const order = async (seed: number) =>
    (await collect((await planFour(join(dir, `mix-single-${seed}`), single, { mode: 'epochs', seed })).stream())).map((s) => `${s.source}/${s.key}`);
  const [a, b] = [await order(1), await order(2)];
  assert.notDeepEqual(a, b);
  assert.deepEqual([...a].sort(), [...b].sort());
  for (const source of ['pmd', 'laion'])
    assert.notDeepEqual(
      a.filter((k) => k.startsWith(source)),
      b.filter((k) => k.startsWith(source)),
      `${source}'s own order`,
    );
});

test('materialising twice gives byte-identical shards and manifest that inspect and Python read', async () => {
  const outputs = [join(dir, 'mat-1'), join(dir, 'mat-2')];
  const results = [];
  for (const out of outputs) {
    const mixture = await planFour(out, locations, { budget: 6000 });
    results.push(await materialize(mixture, { samplesPerShard: 40 }));
  }
  const files = (await readdir(outputs[0]!)).sort();
  assert.deepEqual(files, (await readdir(outputs[1]!)).sort());
  assert.ok(files.includes('mix-000000.tar') && files.includes('manifest.json') && files.includes('realised.json') && files.includes('plan.svg'));
  for (const f of files) assert.deepEqual(await readFile(join(outputs[0]!, f)), await readFile(join(outputs[1]!, f)), f);

  const summary = await summarizeDataset(outputs[0]!);
  assert.equal(summary.samples, results[0]!.realised.samples);
  assert.equal(summary.tokens, results[0]!.realised.tokens);
  const python = execFileSync('python3', [
    '-c',
    `
import tarfile, json, sys, glob
keys = []
for path in sorted(glob.glob(sys.argv[1] + '/mix-*.tar')):
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.name.endswith('.json'):
                j = json.load(tar.extractfile(m))
                keys.append((m.name.split('.')[0], j['source'], j['source_key']))
print(json.dumps(keys))
`,
    outputs[0]!,
  ]).toString();
  const keys = JSON.parse(python) as [string, string, string][];
  assert.equal(keys.length, summary.samples);
  assert.equal(new Set(keys.map((k) => k[0])).size, keys.length, 'keys unique although samples repeat');
  assert.deepEqual(
    keys.map((k) => k[0]),
    keys.map((_, i) => String(i).padStart(9, '0')),
  );
  assert.ok(keys.every(([, source]) => ['pmd', 'laion', 'obelisc', 'wikipedia'].includes(source)));
});

test('a corrupt shard is skipped and reported; past --max-bad-shards the stream fails naming the shards', async () => {
  const copy = join(dir, 'corrupt');
  await cp(join(dir, 'data'), copy, { recursive: true });
  const broken = new Map([...locations].map(([name]) => [name, join(copy, name)]));
  await truncate(join(copy, 'pmd', 'pmd-000001.tar'), 3000);
  await writeFile(join(copy, 'laion', 'laion-000002.tar'), Buffer.alloc(10_000, 7));
  const mixture = await planFour(join(dir, 'mix-c'), broken, { mode: 'epochs' });
  const stream = mixture.stream({ maxBadShards: 2 });
  const samples = await collect(stream);
  const report = stream.realised();
  assert.equal(report.badShards.length, 2);
  assert.match(report.badShards.join('\n'), /pmd-000001\.tar/);
  assert.match(report.badShards.join('\n'), /laion-000002\.tar/);
  const lost = report.sources.reduce((a, s) => a + s.lostSamples, 0);
  assert.ok(lost > 0);
  assert.equal(samples.length + lost, 75 * 3 + 75 + 21 * 3 + 19 - report.remainder);
  await assert.rejects(
    collect(mixture.stream({ maxBadShards: 1 })),
    /2 shards could not be read in full \(more than --max-bad-shards 1\).*(pmd-000001|laion-000002)/s,
  );
});

test('a dataset changed since the plan, or planned only by assumption, is refused when streaming', async () => {
  const copy = join(dir, 'changing');
  await cp(join(dir, 'data'), copy, { recursive: true });
  const changing = new Map([...locations].map(([name]) => [name, join(copy, name)]));
  const mixDir = join(dir, 'mix-changed');
  await planFour(mixDir, changing);
  const { writeSyntheticDataset } = await import('../sandbox/datasets.ts');
  await rm(join(copy, 'wikipedia'), { recursive: true });
  await writeSyntheticDataset({ location: join(copy, 'wikipedia'), source: 'wikipedia', layout: 'document', shardSamples: [4] });
  await assert.rejects(openMixture(mixDir), /wikipedia changed since the plan was made: it lists 1 shards, the plan used 2; plan the mixture again/);
  await assert.rejects(openMixture(join(dir, 'nowhere')), /plan\.json does not exist: make the mixture first/);
  const { loadProfile } = await import('../mixer/profile.ts');
  const { planMixture } = await import('../mixer/plan.ts');
  const { writePlan } = await import('../mixer/mixture.ts');
  const assumedDir = join(dir, 'mix-assumed');
  const supplies = ['pmd', 'laion', 'obelisc', 'wikipedia'].map((name) => ({ name, tokens: 1e9, samples: 0, images: 0, shards: 0, assumed: true }));
  await writePlan(assumedDir, planMixture({ profile: await loadProfile('atum-9b'), mode: { kind: 'epochs' }, supplies, seed: 0 }));
  await assert.rejects(openMixture(assumedDir), /source pmd of .* was planned with --assume-tokens: build it, then plan again/);
});
