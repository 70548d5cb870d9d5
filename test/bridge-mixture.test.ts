import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { findSource } from '../pipelines/registry.ts';
import { readShard } from '../shards/tar-reader.ts';
import { readShardIndex } from '../shards/shard-index.ts';
import { LocalStorage } from '../shards/storage/local.ts';
import { openMixture, readSupplies, writePlan } from '../mixer/mixture.ts';
import { planMixture } from '../mixer/plan.ts';
import { loadProfile } from '../mixer/profile.ts';
import { writeParquetFixture, type FixtureValue } from '../sandbox/parquet-files.ts';
import { hostileLaionRows, startImageServer, TEST_FETCH, writeLaionParquet } from './helpers/pair-build.ts';
import { openBridge } from '../trainer-bridge/bridge.ts';
import { batchArrays } from '../trainer-bridge/batch-npy.ts';
import { npyBytes } from '../trainer-bridge/npy.ts';
import { layoutAtoms, sampleParts } from '../trainer-bridge/sample-parts.ts';
import { END_OF_DOCUMENT, IMAGE_TOKEN } from '../trainer-bridge/token-layout.ts';
import type { Batch } from '../trainer-bridge/batch.ts';
import type { MixedSample } from '../mixer/mixture-stream-types.ts';

// Two real datasets built by the build engine (LAION pairs, OBELICS documents), planned into a mixture by the mixer's
// API, streamed through the bridge with real pixel workers.
const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-bridge-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const laionInput = join(dir, 'laion.parquet');
await writeLaionParquet(
  laionInput,
  server,
  hostileLaionRows().filter((r) => r.status === 'success'),
);
const words = (n: number, seed: number) =>
  Array.from({ length: n }, (_, i) => ['river', 'light', 'a', 'market', 'of', 'old', 'bridge'][(i * 7 + seed) % 7]).join(' ');
const img = (n: number, doc: number) => server.url(`/f/good${n % 8}.jpg?doc=${doc}`);
const documents: { images: (string | null)[]; texts: (string | null)[] }[] = [];
for (let d = 0; d < 12; d++) {
  const long = d % 3 === 0; // longer than the 64-token sequences below: cut into windows
  documents.push({
    images: [null, img(d, d), img(d + 1, d), null, img(d + 2, d), null],
    texts: [
      d === 4 ? `First story. ${END_OF_DOCUMENT} Second story, ${words(6, d)}.` : `Page ${d}: ${words(long ? 40 : 8, d)}.`,
      null,
      null,
      `Between ${words(long ? 50 : 4, d + 1)}.`,
      null,
      `The end of page ${d}.`,
    ],
  });
}
const obeliscInput = join(dir, 'obelics.parquet');
await writeParquetFixture(
  obeliscInput,
  { images: 'VARCHAR[]', texts: 'VARCHAR[]', metadata: 'VARCHAR', general_metadata: 'VARCHAR' },
  documents.map(
    (d, i) =>
      [d.images, d.texts, JSON.stringify(d.images.map((u) => (u ? { src: u } : null))), JSON.stringify({ url: `https://example.org/${i}` })] as FixtureValue[],
  ),
);
const laionDir = join(dir, 'laion');
const obeliscDir = join(dir, 'obelisc');
await runBuild(
  resolveBuildOptions({ adapter: findSource('laion'), inputs: [laionInput], output: laionDir, samplesPerShard: 4, concurrency: 8, fetch: TEST_FETCH }),
);
await runBuild(
  resolveBuildOptions({ adapter: findSource('obelics'), inputs: [obeliscInput], output: obeliscDir, samplesPerShard: 5, concurrency: 8, fetch: TEST_FETCH }),
);

const mixDir = join(dir, 'mix');
const plan = planMixture({
  profile: await loadProfile('idefics-9b'),
  mode: { kind: 'proportions' },
  supplies: await readSupplies(
    new Map([
      ['laion', laionDir],
      ['obelisc', obeliscDir],
    ]),
  ),
  seed: 7,
  budgetTokens: 4000,
  dropMissing: true,
});
await writePlan(mixDir, plan);
const SMALL = { batchSize: 2, seqLen: 64, maxImages: 3 };
/** 3 steps of SMALL's shape (2 x 64 tokens, 3 image slots), as the CLI's flags. */
const SMALL_FLAGS = ['--steps', '3', '--batch-size', '2', '--seq-len', '64', '--max-images', '3'];
const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;
const FEED = new URL('../examples/pytorch_feed.py', import.meta.url).pathname;

async function collect(options: Parameters<typeof openBridge>[1]) {
  const bridge = openBridge(await openMixture(mixDir), { workers: 2, ...options });
  const batches: Batch[] = [];
  const states = [];
  for await (const batch of bridge) {
    batches.push(batch);
    states.push(bridge.state());
  }
  return { batches, states, report: bridge.report() };
}

const digest = (batch: Batch) => batchArrays(batch).map((a) => createHash('sha256').update(npyBytes(a.shape, a.data)).digest('hex'));

test("tokens per sample from the bridge's layout equal the tokens the build's index recorded", async () => {
  let checked = 0;
  for (const [source, folder] of [
    ['laion', laionDir],
    ['obelisc', obeliscDir],
  ] as const) {
    const storage = new LocalStorage(folder);
    for (const name of (await readdir(folder)).filter((f) => f.endsWith('.tar')).sort()) {
      const index = await readShardIndex(storage, name.replace(/\.tar$/, '.idx.json'));
      let i = 0;
      for await (const read of readShard(join(folder, name))) {
        const entry = index.entries[i++]!;
        const sample: MixedSample = { position: 0, source, key: read.key, shard: read.url, tokens: entry.tokens, images: entry.images, fields: read.fields };
        const parts = sampleParts(sample);
        assert.equal(
          parts.reduce((n, p) => n + layoutAtoms(p.atoms).length, 0),
          entry.tokens,
          `${source} ${read.key}`,
        );
        assert.equal(JSON.parse(read.fields.json!.toString()).tokens, entry.tokens);
        checked++;
      }
    }
  }
  assert.ok(checked >= 15, `${checked} samples checked`);
});

test('the real mixture through the bridge: shapes, pixels in use, windows; resuming gives the identical next batches', async () => {
  const { batches, states, report } = await collect({ ...SMALL, steps: 6 });
  assert.equal(batches.length, 6);
  assert.ok(report.sources.obelisc!.windows > 0, 'long documents were cut into windows');
  assert.ok(report.sources.obelisc!.packedTokens > 0 && report.sources.laion!.packedTokens > 0, 'both sources packed');
  for (const batch of batches) {
    assert.equal(batch.inputIds.length, 2 * 64);
    assert.equal(batch.pixelValues.length, 2 * 3 * 3 * 224 * 224);
    const imageTokens = batch.inputIds.filter((id) => id === IMAGE_TOKEN).length;
    assert.equal(
      imageTokens,
      Object.values(batch.stats.imagesBySource).reduce((a, b) => a + b, 0),
    );
  }
  for (const cut of [1, 3]) {
    const resumed = await collect({ ...SMALL, steps: 6, resume: JSON.parse(JSON.stringify(states[cut - 1])) });
    assert.equal(resumed.batches.length, 6 - cut);
    assert.deepEqual(resumed.batches.map(digest), batches.slice(cut).map(digest), `resumed after batch ${cut}`);
    assert.deepEqual(resumed.states.at(-1), states.at(-1));
  }
  const state = states[2]!;
  assert.ok(JSON.stringify(state).length < 1000, 'the state is small');
});

test('ranks: each yields exactly --steps batches from an endless stream', async () => {
  for (const rank of [0, 1, 2]) {
    const { batches, states } = await collect({ ...SMALL, steps: 4, rank, worldSize: 3 });
    assert.equal(batches.length, 4);
    assert.deepEqual([states.at(-1)!.mixture.rank, states.at(-1)!.mixture.worldSize, states.at(-1)!.batches], [rank, 3, 4]);
  }
});

test('m4data train --dry-run prints shapes per batch; --dump DIR writes the same arrays the bridge yields', async () => {
  const out = join(dir, 'dump');
  const r = spawnSync(process.execPath, [BIN, 'train', '--dry-run', '--mixture', mixDir, ...SMALL_FLAGS, '--workers', '2', '--dump', out], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /batch 0 {2}input_ids \[2, 64\] {2}attention_mask \[2, 64\] {2}labels \[2, 64\] {2}pixel_values \[2, 3, 3, 224, 224\] {2}image_attention_mask \[2, 64, 3\]/,
  );
  assert.match(r.stdout, /batch 2 /);
  assert.match(r.stdout, /tokens (laion|obelisc) \d+.*images .*padding \d+\.\d%/);
  assert.match(r.stdout, /throughput +[\d,]+ tokens\/s, [\d.]+ sequences\/s, [\d,]+ images\/s/);
  const { batches } = await collect({ ...SMALL, steps: 3 });
  for (const [k, batch] of batches.entries()) {
    for (const array of batchArrays(batch)) {
      const file = await readFile(join(out, `batch-${String(k).padStart(6, '0')}`, `${array.name}.npy`));
      assert.ok(file.equals(npyBytes(array.shape, array.data)), `batch ${k} ${array.name}`);
    }
  }
  const usage = spawnSync(process.execPath, [BIN, 'train', '--dry-run', '--mixture', mixDir, '--rank', '3', '--world-size', '2'], { encoding: 'utf8' });
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /--rank 3 must be below --world-size 2/);
});

test('python: examples/pytorch_feed.py receives, byte for byte, the arrays the bridge sends', async (t) => {
  const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0);
  if (!python) {
    t.skip('no python3 with numpy (.ci/run installs python3-numpy)');
    return;
  }
  const r = spawnSync(python, [FEED, '--digest', '--mixture', mixDir, '--', ...SMALL_FLAGS, '--rank', '1', '--world-size', '2'], {
    encoding: 'utf8',
    env: { ...process.env, M4DATA: `${process.execPath} ${BIN}` },
  });
  assert.equal(r.status, 0, r.stderr);
  const received = r.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, [string, number[], string]>);
  const { batches } = await collect({ ...SMALL, steps: 3, rank: 1, worldSize: 2 });
  assert.equal(received.length, batches.length);
  for (const [k, batch] of batches.entries()) {
    const sent = Object.fromEntries(
      batchArrays(batch).map((a) => [
        a.name,
        [
          a.dtype,
          a.shape,
          createHash('sha256')
            .update(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength))
            .digest('hex'),
        ],
      ]),
    );
    assert.deepEqual(received[k], sent, `batch ${k}`);
  }
});
