import { M4Error } from '../../core/errors.ts';
import type { Manifest, ShardRecord } from '../../shards/manifest.ts';
import { shardName } from '../../shards/shard-files.ts';
import { checkLocalOutput } from '../../shards/storage/local-output.ts';
import { LocalStorage } from '../../shards/storage/local.ts';
import { openStorage } from '../../shards/storage/open.ts';
import { buildFingerprint, type BuildOptions } from './build-options.ts';
import { checkFingerprint, doneShards, readBuildFile, recordBuildInput, recordBuildStart, writeManifestIfComplete } from './build-record.ts';
import { discardIncomplete, openShard, type OpenShard } from './build-shard.ts';
import type { RowBatch, RowOrigin } from './dump/read-dump.ts';
import { Fetcher } from './fetch/fetcher.ts';
import { countRows } from './metadata/count-rows.ts';
import { describeInputs } from './metadata/input-files.ts';
import { readMetadata } from './metadata/read-metadata.ts';
import { orderedMap } from './ordered-map.ts';
import { emptyCounts, topErrors, type RowOutcome, type ShardStats, type StatusCounts } from './outcomes.ts';
import { RowProcessor, type RowResult } from './row-processor.ts';
import type { Row } from './source-adapter.ts';

/** Receives what a build does, for progress displays and logs. */
export interface BuildObserver {
  /** `rowsToProcess` (rows of this worker's shards still to build) is known up front for local inputs, else undefined. */
  started?(info: { shardsDone: number; rowsToProcess: number | undefined }): void;
  row?(outcome: RowOutcome): void;
  /** `record` is undefined for a shard whose rows all failed: no tar is published for it. */
  shard?(stats: ShardStats, record: ShardRecord | undefined): void;
}

export interface BuildSummary {
  output: string;
  /** Rows this run processed (resumed shards excluded). */
  rows: number;
  status: StatusCounts;
  /** Document sources: what became of each image position. */
  imageStatus: StatusCounts | undefined;
  shardsBuilt: number;
  shardsSkipped: number;
  /** Totals of the input, known once it was read to its end. */
  totalRows: number;
  totalShards: number;
  /** Set when this run wrote the dataset manifest (all shards present). */
  manifest: Manifest | undefined;
  topErrors: { error: string; count: number }[];
}

/**
 * `m4data build`: reads the source's rows in order, processes this worker's shards (k % n == i), and publishes each
 * shard as tar, index, outcome records and stats (stats last: a shard is done once its stats exist). Writes the
 * manifest when every shard of the dataset is done, whichever worker finishes last.
 */
export async function runBuild(options: BuildOptions, observer: BuildObserver = {}): Promise<BuildSummary> {
  // Everything that can be checked is checked before build.json is written: a run that fails at once must not leave
  // a build.json that makes the next run refuse as "a build with other settings".
  const storage = openStorage(options.output);
  if (storage instanceof LocalStorage) await checkLocalOutput(storage.root);
  // Remote inputs are reached under the same private-network rule as the images.
  const network = { allowPrivateNetwork: options.fetch.allowPrivateNetwork };
  const fingerprint = { ...buildFingerprint(options), inputFiles: await describeInputs(options.inputs, network) };
  const existing = await readBuildFile(storage);
  if (existing && options.resume) checkFingerprint(storage, existing, fingerprint);
  let recorded = existing !== undefined && options.resume;
  const recordStart = async () => {
    if (!recorded) await recordBuildStart(storage, fingerprint);
    recorded = true;
  };

  const done = options.resume ? await doneShards(storage, options.prefix) : new Set<number>();
  const inputRows = await countRows(options.inputs, options.limit, options.inputFormat);
  const S = options.samplesPerShard;
  const { index: worker, count: workers } = options.worker;
  const owned = (shard: number) => shard % workers === worker && !done.has(shard);

  const request = {
    options: options.sourceOptions,
    columns: options.adapter.columns,
    limit: options.limit,
    format: options.inputFormat,
    network,
    image: options.image,
  };
  const context = await options.adapter.prepare?.(options.inputs, request);
  const fetcher = new Fetcher(options.fetch);
  observer.started?.({ shardsDone: done.size, rowsToProcess: inputRows === undefined ? undefined : rowsOfShards(inputRows, S, owned) });
  const processor = new RowProcessor({
    context,
    adapter: options.adapter,
    sourceOptions: options.sourceOptions,
    image: options.image,
    fetcher,
    downloads: options.concurrency,
    imageWork: options.imageWork,
  });

  const status = emptyCounts();
  const imageStatus = options.adapter.layout === 'document' ? emptyCounts() : undefined;
  const errors = new Map<string, number>();
  let totalRows = 0;
  let rows = 0;
  let shardsBuilt = 0;
  const skipped = new Set<number>();

  async function* ownedRows(): AsyncGenerator<{ row: Row; index: number; origin: RowOrigin | undefined }> {
    // A source may read its inputs itself (the Wikipedia dump); rows are then numbered the same way, in input order.
    const batches: AsyncIterable<RowBatch> =
      options.adapter.readRows?.(options.inputs, { ...request, context }) ??
      readMetadata(options.inputs, { columns: [...options.adapter.columns], limit: options.limit, format: options.inputFormat, network });
    for await (const batch of batches) {
      for (let i = 0; i < batch.rows.length; i++) {
        const index = batch.firstIndex + i;
        totalRows = index + 1;
        const shard = Math.floor(index / S);
        if (owned(shard)) yield { row: batch.rows[i]!, index, origin: batch.origins?.[i] };
        else if (shard % workers === worker) skipped.add(shard);
      }
    }
  }

  let current: OpenShard | undefined;
  try {
    // Enough rows ahead of the oldest unfinished one to keep every download slot busy behind a slow server; a document
    // holds up to 30 images, so fewer documents than pairs are needed for that, and fewer fit in memory.
    const perRow = options.adapter.layout === 'document' ? 8 : 1;
    const window = Math.max(Math.ceil((options.concurrency * 2) / perRow), options.imageWork * 2);
    const processRow = ({ row, index, origin }: { row: Row; index: number; origin: RowOrigin | undefined }) =>
      processor.process(row, index).then((r) => withOrigin(r, origin));
    for await (const result of orderedMap(ownedRows(), { window }, processRow)) {
      const shard = Math.floor(result.row / S);
      if (current && current.index !== shard) {
        await publish(current);
        current = undefined;
      }
      if (!current) {
        await recordStart();
        // Every file of the shard shares its stem: the tar's leftovers and its side files' (an index killed mid-write).
        await discardIncomplete(storage, shardName(options.prefix, shard).replace(/\.tar$/, '.'));
        current = openShard(storage, options.prefix, shard, S, options.adapter.layout === 'document');
      }
      await current.add(result);
      rows++;
      status[result.outcome.status]++;
      if (imageStatus) for (const record of result.imageRecords) imageStatus[record.status]++;
      if (result.outcome.error_message) errors.set(result.outcome.error_message, (errors.get(result.outcome.error_message) ?? 0) + 1);
      observer.row?.(result.outcome);
    }
    if (current) await publish(current);
    current = undefined;
  } catch (err) {
    await current?.builder.abort(err as Error);
    throw err;
  } finally {
    await fetcher.close();
  }

  async function publish(shard: OpenShard): Promise<void> {
    const { stats, record } = await shard.finish();
    shardsBuilt++;
    observer.shard?.(stats, record);
  }

  const totalShards = Math.ceil(totalRows / S);
  if (rows === 0 && totalRows === 0) {
    throw new M4Error('E_INPUT', 'build', `no input row could be read from ${options.inputs.join(', ')}`, { inputs: options.inputs });
  }
  await recordBuildInput(storage, fingerprint, { rows: totalRows, shards: totalShards });
  const manifest = await writeManifestIfComplete(storage, options.prefix, options.adapter.layout, fingerprint).catch((err: unknown) => {
    if (err instanceof M4Error && err.code === 'E_NOT_FOUND') return undefined;
    throw err;
  });
  return {
    output: storage.root,
    rows,
    status,
    imageStatus,
    shardsBuilt,
    shardsSkipped: [...skipped].length,
    totalRows,
    totalShards,
    manifest,
    topErrors: topErrors(errors),
  };
}

function withOrigin(result: RowResult, origin: RowOrigin | undefined): RowResult {
  if (!origin) return result;
  return { ...result, outcome: { ...result.outcome, input_file: origin.file, input_member: origin.member, input_line: origin.line } };
}

function rowsOfShards(totalRows: number, samplesPerShard: number, owned: (shard: number) => boolean): number {
  let rows = 0;
  for (let k = 0; k * samplesPerShard < totalRows; k++) if (owned(k)) rows += Math.min(samplesPerShard, totalRows - k * samplesPerShard);
  return rows;
}
