import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MixtureSampleStream } from '../mixer/mixture-stream.ts';
import type { MixedSample, Mixture, MixtureStreamOptions } from '../mixer/mixture-stream-types.ts';
import { layoutOf } from '../mixer/schedule.ts';
import { SourceDataset } from '../mixer/source-dataset.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { LocalStorage } from '../shards/storage/local.ts';
import { S3Storage } from '../shards/storage/s3.ts';
import type { Storage } from '../shards/storage/storage.ts';
import { writeSyntheticDataset } from '../sandbox/datasets.ts';
import { collect, FOUR_SOURCES, planFour, writeFourSources } from './helpers/mixtures.ts';

// What the storages serve for a stream: each run of a shard once, with one ranged request, and no byte twice. A
// stream that read whole shards for a sample, or a run twice, would read far more.

interface Served {
  reads: number;
  bytes: number;
}

/** Counts the tar reads a storage class serves (indexes and manifests apart) while `fn` runs. */
async function counting(storage: { prototype: Pick<Storage, 'read'> }, fn: () => Promise<void>): Promise<Served> {
  const served: Served = { reads: 0, bytes: 0 };
  const original = storage.prototype.read;
  storage.prototype.read = function (this: Storage, key, range) {
    const chunks = original.call(this, key, range);
    if (!key.endsWith('.tar')) return chunks;
    served.reads++;
    return (async function* () {
      for await (const chunk of chunks) {
        served.bytes += chunk.byteLength;
        yield chunk;
      }
    })();
  };
  try {
    await fn();
  } finally {
    storage.prototype.read = original;
  }
  return served;
}

/** The bytes and runs of one pass of every source over its epochs (an epochs plan: every sample that many times). */
async function expected(mixture: Mixture): Promise<Served> {
  let bytes = 0;
  let reads = 0;
  for (const planned of mixture.plan.sources) {
    const dataset = await SourceDataset.open(planned.location!);
    const { run } = layoutOf({ name: planned.name, share: planned.share, target: planned.tokens, dataset });
    for (let k = 0; k < dataset.shards.length; k++) {
      bytes += planned.epochs * (await dataset.entries(k)).reduce((acc, e) => acc + e.size, 0);
      reads += planned.epochs * Math.ceil(dataset.shards[k]!.samples / run);
    }
  }
  return { reads, bytes };
}

test("a local stream reads each run once, with one request, and every sample's bytes exactly once", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-mix-reads-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const mixture = await planFour(join(dir, 'mix'), await writeFourSources(join(dir, 'data')), { mode: 'epochs' });
  const want = await expected(mixture);
  let samples = 0;
  const served = await counting(LocalStorage, async () => {
    samples = (await collect(mixture.stream())).length;
  });
  assert.equal(samples, 75 * 3 + 75 + 21 * 3 + 19);
  assert.deepEqual(served, want, `${served.reads} reads of ${served.bytes} bytes; one per run of the stream's ${want.bytes} bytes expected`);
  assert.ok(served.reads < samples / 3, 'runs of several samples per request');

  // Two ranks: each reads only the ranges holding its samples (what lies between two of them, when under 64 kB), so
  // never more than the whole stream, and at most a request per sample.
  for (const rank of [0, 1]) {
    let mine = 0;
    const served = await counting(LocalStorage, async () => {
      mine = (await collect(mixture.stream({ rank, worldSize: 2 }))).length;
    });
    assert.ok(served.bytes < want.bytes && served.reads <= mine, `rank ${rank}: ${served.reads} reads of ${served.bytes} bytes for ${mine} samples`);
  }
});

test('on S3 too: one ranged GET per run, no byte twice', async (t) => {
  const s3 = await startS3Server();
  const dir = await mkdtemp(join(tmpdir(), 'm4-mix-reads-s3-'));
  t.after(async () => {
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  });
  t.after(applyEnv(s3.env));
  const mixture = await planFour(`s3://${s3.bucket}/mix`, await writeFourSources(`s3://${s3.bucket}/data`), { mode: 'epochs' });
  const want = await expected(mixture);
  const served = await counting(S3Storage, async () => void (await collect(mixture.stream())));
  assert.deepEqual(served, want);
});

test('a single rank reads the runs of a group with their neighbour before they are asked for: a one-group shard is one request an epoch', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-mix-reads-early-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // One shard per source, read as one group. PMD: 2,600 small pairs in runs of 2, so a run's first sample may come
  // anywhere in the first half of the group, which spans more positions than the schedule runs ahead: when the shard is
  // first read, half its runs have not been asked for. The others: runs of 5 (LAION 75 samples, OBELISC 21, Wikipedia 19).
  const single = new Map<string, string>();
  for (const s of FOUR_SOURCES) {
    const location = join(dir, 'data', s.name);
    const samples = s.name === 'pmd' ? 2600 : (s.shardSamples as readonly number[]).reduce((a, b) => a + b, 0);
    await writeSyntheticDataset({ location, source: s.name, layout: s.layout, shardSamples: [samples], imageSide: s.name === 'pmd' ? 16 : undefined });
    single.set(s.name, location);
  }
  const mixture = await planFour(join(dir, 'mix'), single, { mode: 'epochs' });
  const sources = await Promise.all(
    mixture.plan.sources.map(async (p) => ({
      name: p.name,
      share: p.share,
      target: p.tokens,
      dataset: await SourceDataset.open(p.location!, { print: p.fingerprint! }),
      layout: p.name === 'pmd' ? { run: 2, groupRuns: 1300 } : { run: 5, groupRuns: 16 },
    })),
  );
  const want = await expected(mixture);
  const stream = (options?: MixtureStreamOptions) => new MixtureSampleStream(mixture.plan, mixture.planId, sources, options);
  let whole: MixedSample[] = [];
  const served = await counting(LocalStorage, async () => {
    whole = await collect(stream());
  });
  // atum-9b's epochs: PMD 3, LAION 1, OBELISC 3, Wikipedia 1; each epoch of each source one request, no byte twice.
  assert.deepEqual(served, { reads: 3 + 1 + 3 + 1, bytes: want.bytes });
  // Two ranks read only their samples' ranges, and between them the same samples, byte for byte.
  const ranks: MixedSample[][] = [];
  for (const rank of [0, 1]) {
    const served = await counting(LocalStorage, async () => void ranks.push(await collect(stream({ rank, worldSize: 2 }))));
    assert.ok(served.bytes < want.bytes, `rank ${rank}: ${served.bytes} bytes`);
  }
  const byPosition = ranks.flat().sort((a, b) => a.position - b.position);
  assert.deepEqual(byPosition, whole.slice(0, byPosition.length));
});
