import { shardName, sideFileKey } from '../../shards/shard-files.ts';
import type { ShardRecord } from '../../shards/manifest.ts';
import { ShardBuilder } from '../../shards/shard-writer.ts';
import { jsonBytes } from '../../shards/storage/json.ts';
import type { Storage } from '../../shards/storage/storage.ts';
import { writeParquet } from './metadata/write-parquet.ts';
import { IMAGE_OUTCOME_SCHEMA, emptyCounts, outcomeSchema, topErrors, type RowOutcome, type ShardStats } from './outcomes.ts';
import type { RowResult } from './row-processor.ts';
import type { ImageRecord } from './source-adapter.ts';

/**
 * One shard of a build as its rows arrive: samples into the tar, every row's outcome and every image's record kept,
 * then published in order, the stats last (a shard with stats is done).
 */
export interface OpenShard {
  index: number;
  builder: ShardBuilder;
  add(result: RowResult): Promise<void>;
  finish(): Promise<{ stats: ShardStats; record: ShardRecord | undefined }>;
}

export function openShard(storage: Storage, prefix: string, index: number, samplesPerShard: number, recordImages: boolean): OpenShard {
  const key = shardName(prefix, index);
  const builder = new ShardBuilder(storage, key);
  const outcomes: RowOutcome[] = [];
  const images: (ImageRecord & { key: string; row: number })[] = [];
  return {
    index,
    builder,
    async add(result) {
      if (result.sample) {
        await builder.add({ key: result.outcome.key, fields: result.sample.fields }, { images: result.sample.images, tokens: result.sample.tokens });
      }
      outcomes.push(result.outcome);
      for (const record of result.imageRecords) images.push({ key: result.outcome.key, row: result.row, ...record });
    },
    async finish() {
      const record = builder.samples > 0 ? await builder.finish() : await discardEmpty(storage, builder);
      await storage.write(sideFileKey(key, 'outcomes'), await writeParquet(outcomes as unknown as Record<string, unknown>[], outcomeSchema(outcomes)));
      if (recordImages)
        await storage.write(sideFileKey(key, 'images'), await writeParquet(images as unknown as Record<string, unknown>[], IMAGE_OUTCOME_SCHEMA));
      const status = emptyCounts();
      const errors = new Map<string, number>();
      for (const o of outcomes) {
        status[o.status]++;
        if (o.error_message) errors.set(o.error_message, (errors.get(o.error_message) ?? 0) + 1);
      }
      const stats: ShardStats = {
        format: 'm4data-shard-stats',
        version: 1,
        shard: key,
        index,
        firstRow: index * samplesPerShard,
        rows: outcomes.length,
        count: outcomes.length,
        successes: status.success,
        status,
        topErrors: topErrors(errors),
      };
      await storage.write(sideFileKey(key, 'stats'), jsonBytes(stats));
      return { stats, record };
    },
  };
}

/**
 * A shard whose rows all failed gets no tar and no index: webdataset raises "No samples found" on an empty tar (and
 * a DataLoader worker dies with it), so manifest.json and wids.json could not list it anyway. Its outcome records and
 * stats are written as for any shard, so it counts as done and a resume skips it. A tar and index of an earlier
 * build of this shard (--no-resume) are removed, so no stale shard is listed.
 */
async function discardEmpty(storage: Storage, builder: ShardBuilder): Promise<undefined> {
  await builder.abort(new Error('no sample: the shard is not published'));
  await storage.delete(builder.key);
  await storage.delete(sideFileKey(builder.key, 'index'));
  return undefined;
}

/** Leftovers of a killed build of this shard; a store that cannot list them (s3rver) is not a reason to stop. */
export async function discardIncomplete(storage: Storage, key: string): Promise<void> {
  try {
    await storage.discardIncomplete(key);
  } catch (err) {
    process.emitWarning(`could not discard incomplete writes of ${storage.urlOf(key)}: ${(err as Error).message}`);
  }
}
