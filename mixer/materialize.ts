import { buildManifest, jsonBytes, writeManifest, type Manifest } from '../shards/manifest.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { openStorage } from '../shards/storage/open.ts';
import type { MixedSample, Mixture, RealisedReport } from './mixture-stream-types.ts';
import { planSvg } from './plan-svg.ts';
import { PLAN_SVG_NAME } from './mixture.ts';

export const REALISED_NAME = 'realised.json';

export interface MaterializeOptions {
  /** Samples per shard (default 10,000). */
  samplesPerShard?: number;
  /** Corrupt source shards skipped (and reported) before the stream fails (default: the stream's, 3). */
  maxBadShards?: number;
  /** Called after each sample, for progress. */
  onSample?: (written: number) => void;
  signal?: AbortSignal;
}

export interface MaterializeResult {
  manifest: Manifest;
  realised: RealisedReport;
}

/**
 * Writes the single-rank stream, in order, as a WebDataset dataset beside the plan (`mix-000000.tar`, indexes,
 * `manifest.json`, `wids.json`), then `realised.json` and the plan's SVG with the realised shares. Keys are stream
 * positions, so a sample drawn twice (epochs) stays unique; each JSON gains `source` and `source_key`.
 */
export async function materialize(mixture: Mixture, options: MaterializeOptions = {}): Promise<MaterializeResult> {
  const storage = openStorage(mixture.location);
  const stream = mixture.stream({ ...(options.signal ? { signal: options.signal } : {}), ...(options.maxBadShards !== undefined ? { maxBadShards: options.maxBadShards } : {}) });
  const writer = new ShardWriter({ storage, prefix: 'mix', maxSamples: options.samplesPerShard ?? 10_000 });
  let written = 0;
  try {
    for await (const sample of stream) {
      await writer.write(renamed(sample), { images: sample.images, tokens: sample.tokens });
      options.onSample?.(++written);
    }
  } catch (err) {
    await writer.abort(err as Error);
    throw err;
  }
  const records = await writer.close();
  const realised = stream.realised();
  const manifest = buildManifest(records, { kind: 'mixture', profile: mixture.plan.profile.name, mode: mixture.plan.mode, seed: mixture.plan.seed });
  await writeManifest(storage, manifest, 'mix');
  await storage.write(REALISED_NAME, jsonBytes(realised));
  await storage.write(PLAN_SVG_NAME, Buffer.from(planSvg(mixture.plan, realised)));
  return { manifest, realised };
}

function renamed(sample: MixedSample): { key: string; fields: Record<string, Uint8Array> } {
  const fields: Record<string, Uint8Array> = { ...sample.fields };
  const json = sample.fields.json;
  const meta = json ? (JSON.parse(json.toString('utf8')) as Record<string, unknown>) : {};
  fields.json = Buffer.from(JSON.stringify({ ...meta, source: sample.source, source_key: sample.key }));
  return { key: String(sample.position).padStart(9, '0'), fields };
}
