/**
 * Mixer benchmark, one run (`--quick` for a smoke run):
 *
 *   node --import tsx bench/mixer.bench.ts [--quick]
 *
 * 1. Local: the mixed stream of four built datasets (every source one epoch, so both sides read every sample once)
 *    against reading the same shards one after another, unmixed. Aim: samples/s ratio >= 0.9.
 * 2. S3 (s3rver on 127.0.0.1): the same mixed stream from the bucket against a raw GET of the same shard objects.
 * 3. Planning over generated manifests totalling 100,000 shards and 10^9 samples (no tars): time and peak RSS.
 *    Aim: under 10 s and 1 GB.
 * 4. A long endless stream: RSS at its start and end (flat memory).
 * Ends with one JSON line {"bench":"mixer", ...}.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { openMixture, readSupplies, writePlan } from '../mixer/mixture.ts';
import { planMixture } from '../mixer/plan.ts';
import { checkProfile, loadProfile, type MixProfile } from '../mixer/profile.ts';
import { writeSyntheticDataset } from '../sandbox/datasets.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { buildManifest, writeManifest, type ShardRecord } from '../shards/manifest.ts';
import { LocalStorage } from '../shards/storage/local.ts';
import { openStorage } from '../shards/storage/open.ts';
import { readShards } from '../shards/tar-reader.ts';
import { bestOf, isQuick, MB, ratio, report, rssSampler, timed } from './harness.ts';

const quick = isQuick();
const scale = quick ? 0.2 : 1;
const SOURCES = [
  { name: 'pmd', layout: 'pair', shards: 16, samples: 500 },
  { name: 'laion', layout: 'pair', shards: 8, samples: 500 },
  { name: 'obelisc', layout: 'document', shards: 8, samples: 120 },
  { name: 'wikipedia', layout: 'document', shards: 8, samples: 120 },
] as const;

/** atum-9b's shares with one epoch of every source, so a mixed pass reads each sample once. */
async function oneEpochProfile(): Promise<MixProfile> {
  const profile = structuredClone(await loadProfile('atum-9b'));
  profile.name = 'bench-one-epoch';
  for (const s of profile.sources) s.epochs = 1;
  return checkProfile(profile);
}

async function writeDatasets(root: string): Promise<Map<string, string>> {
  const locations = new Map<string, string>();
  for (const s of SOURCES) {
    const location = `${root}/${s.name}`;
    await writeSyntheticDataset({ location, source: s.name, layout: s.layout, shardSamples: Array(Math.max(2, Math.round(s.shards * scale))).fill(s.samples) });
    locations.set(s.name, location);
  }
  return locations;
}

async function mixedPass(mixDir: string): Promise<number> {
  let n = 0;
  for await (const sample of (await openMixture(mixDir)).stream()) n += sample.fields.json ? 1 : 0;
  return n;
}

async function shardKeys(locations: Map<string, string>): Promise<{ location: string; keys: string[] }[]> {
  const out = [];
  for (const location of locations.values()) {
    const keys: string[] = [];
    for await (const info of openStorage(location).list()) if (info.key.endsWith('.tar')) keys.push(info.key);
    out.push({ location, keys });
  }
  return out;
}

async function plan(mixDir: string, locations: Map<string, string>): Promise<number> {
  const p = planMixture({ profile: await oneEpochProfile(), mode: { kind: 'epochs' }, supplies: await readSupplies(locations), seed: 1 });
  await writePlan(mixDir, p);
  return p.sources.reduce((a, s) => a + s.samples, 0);
}

const dir = await mkdtemp(join(tmpdir(), 'm4-bench-mix-'));
const figures: Record<string, unknown> = { quick };
try {
  // 1. Local.
  const local = await writeDatasets(join(dir, 'local'));
  const samples = await plan(join(dir, 'mix-local'), local);
  const localShards = await shardKeys(local);
  const times = await bestOf(3, {
    unmixed: async () => {
      let n = 0;
      for (const { location, keys } of localShards) {
        const storage = openStorage(location);
        for await (const _ of readShards(keys.map((key) => ({ storage, key })))) n++;
      }
      if (n !== samples) throw new Error(`unmixed read ${n} samples, expected ${samples}`);
    },
    mixed: async () => {
      const n = await mixedPass(join(dir, 'mix-local'));
      if (n !== samples) throw new Error(`mixed stream gave ${n} samples, expected ${samples}`);
    },
  });
  Object.assign(figures, {
    samples,
    localUnmixedSamplesPerSec: Math.round(samples / times.unmixed!),
    localMixedSamplesPerSec: Math.round(samples / times.mixed!),
    localRatio: ratio(times.unmixed!, times.mixed!),
  });
  console.log(`local: ${samples} samples; unmixed ${figures.localUnmixedSamplesPerSec}/s, mixed ${figures.localMixedSamplesPerSec}/s, ratio ${figures.localRatio} (aim >= 0.9)`);

  // 2. S3.
  const s3 = await startS3Server({ bucket: 'bench' });
  const restore = applyEnv(s3.env);
  try {
    const remote = await writeDatasets(`s3://${s3.bucket}/data`);
    await plan(`s3://${s3.bucket}/mix`, remote);
    const remoteShards = await shardKeys(remote);
    let bytes = 0;
    const s3Times = await bestOf(3, {
      rawGet: async () => {
        bytes = 0;
        for (const { location, keys } of remoteShards) {
          for (const key of keys) {
            const res = await request(`${s3.endpoint}/${location.slice('s3://'.length)}/${key}`);
            for await (const chunk of res.body) bytes += (chunk as Buffer).length;
          }
        }
      },
      mixed: async () => {
        const n = await mixedPass(`s3://${s3.bucket}/mix`);
        if (n !== samples) throw new Error(`S3 mixed stream gave ${n} samples, expected ${samples}`);
      },
    });
    Object.assign(figures, {
      s3Bytes: bytes,
      s3RawGetMBps: Math.round(bytes / MB / s3Times.rawGet!),
      s3MixedSamplesPerSec: Math.round(samples / s3Times.mixed!),
      s3Ratio: ratio(s3Times.rawGet!, s3Times.mixed!),
    });
    console.log(`s3rver: raw GET of every shard ${figures.s3RawGetMBps} MB/s; mixed ${figures.s3MixedSamplesPerSec} samples/s; ratio ${figures.s3Ratio}`);
  } finally {
    restore();
    await s3.stop();
  }

  // 3. Planning over 100,000 shards and 10^9 samples.
  const manifests = new Map<string, string>();
  for (const s of SOURCES) {
    const records: ShardRecord[] = Array.from({ length: 25_000 }, (_, k) => ({
      shard: `${s.name}-${String(k).padStart(6, '0')}.tar`,
      samples: 10_000,
      images: s.layout === 'pair' ? 10_000 : 25_000,
      tokens: s.layout === 'pair' ? 350_000 : 4_000_000,
      bytes: 300_000_000,
      sha256: 'f'.repeat(64),
    }));
    const location = join(dir, 'huge', s.name);
    await writeManifest(new LocalStorage(location), buildManifest(records, { source: s.name }), s.name);
    manifests.set(s.name, location);
  }
  const rss = rssSampler();
  const planning = await timed(async () => {
    const supplies = await readSupplies(manifests);
    const p = planMixture({ profile: await loadProfile('atum-80b'), mode: { kind: 'proportions' }, supplies, seed: 1 });
    await writePlan(join(dir, 'mix-huge'), p);
    return supplies.reduce((a, s) => a + s.samples, 0);
  });
  const planningPeak = rss.stop();
  Object.assign(figures, { planShards: 100_000, planSamples: planning.value, planSeconds: Math.round(planning.seconds * 100) / 100, planPeakRssMB: Math.round(planningPeak / MB) });
  console.log(`planning over 100,000 shards / ${planning.value.toExponential(1)} samples: ${figures.planSeconds} s, peak RSS ${figures.planPeakRssMB} MB (aim < 10 s, < 1,000 MB)`);

  // 4. Flat memory over a long stream.
  const mixture = await openMixture(join(dir, 'mix-local'));
  const long = quick ? 30_000 : 200_000;
  let n = 0;
  let startRss = 0;
  for await (const _ of mixture.stream({ endless: true })) {
    if (++n === 2_000) startRss = process.memoryUsage.rss();
    if (n >= long) break;
  }
  Object.assign(figures, { longStreamSamples: long, rssAt2kMB: Math.round(startRss / MB), rssAtEndMB: Math.round(process.memoryUsage.rss() / MB) });
  console.log(`endless stream: RSS ${figures.rssAt2kMB} MB after 2,000 samples, ${figures.rssAtEndMB} MB after ${long}`);
  report('mixer', figures);
} finally {
  await rm(dir, { recursive: true, force: true });
}
