import { buildManifest, writeManifest, type Manifest, type ShardRecord } from '../shards/manifest.ts';
import { jsonBytes } from '../shards/storage/json.ts';
import { shardNumberOf, SIDE_FILES, sideFileKey } from '../shards/shard-files.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { openStorage } from '../shards/storage/open.ts';
import type { MixedSample, Mixture, RealisedReport } from './mixture-stream-types.ts';
import { MIX_SHARD_PREFIX, PLAN_SVG_NAME, REALISED_NAME } from './mix-output.ts';
import { planSvg } from './plan-svg.ts';
import type { Storage } from '../shards/storage/storage.ts';

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
  // The folder holds only this mixture's files (checked when its plan was written): what a killed run left is ours.
  await storage.discardIncomplete(`${MIX_SHARD_PREFIX}-`);
  const stream = mixture.stream({
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.maxBadShards !== undefined ? { maxBadShards: options.maxBadShards } : {}),
  });
  const writer = new ShardWriter({ storage, prefix: MIX_SHARD_PREFIX, maxSamples: options.samplesPerShard ?? 10_000 });
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
  await writeManifest(storage, manifest, MIX_SHARD_PREFIX);
  await removeStaleShards(storage, records);
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

/** Shards an earlier run wrote that this one did not (it had other `--samples-per-shard`): listed nowhere now, so removed. */
async function removeStaleShards(storage: Storage, records: readonly ShardRecord[]): Promise<void> {
  const kept = new Set(records.flatMap((r) => [r.shard, sideFileKey(r.shard, 'index')]));
  const stale: string[] = [];
  for await (const { key } of storage.list(`${MIX_SHARD_PREFIX}-`)) {
    const ours = shardNumberOf(key, MIX_SHARD_PREFIX, '.tar') ?? shardNumberOf(key, MIX_SHARD_PREFIX, SIDE_FILES.index);
    if (ours !== undefined && !kept.has(key)) stale.push(key);
  }
  for (const key of stale) await storage.delete(key);
}
