import type { SourceAdapter } from './source-adapter.ts';
import { M4Error } from '../../core/errors.ts';
import { buildManifest, writeManifest, type Manifest, type ShardRecord } from '../../shards/manifest.ts';
import { jsonBytes, readJson } from '../../shards/storage/json.ts';
import { shardName, shardNumberOf, SIDE_FILES, sideFileKey } from '../../shards/shard-files.ts';
import { ShardBuilder } from '../../shards/shard-writer.ts';
import { collectShardRecords } from '../../shards/shard-index.ts';
import { checkLocalOutput } from '../../shards/storage/local-output.ts';
import { LocalStorage } from '../../shards/storage/local.ts';
import { openStorage } from '../../shards/storage/open.ts';
import type { Storage } from '../../shards/storage/storage.ts';
import { buildFingerprint, type BuildOptions } from './build-options.ts';
import { Fetcher } from './fetch/fetcher.ts';
import { readMetadata } from './metadata/read-metadata.ts';
import type { RowBatch, RowOrigin } from './dump/read-dump.ts';
import { countRows } from './metadata/count-rows.ts';
import { describeInputs, type InputFile } from './metadata/input-files.ts';
import { writeParquet } from './metadata/write-parquet.ts';
import { orderedMap } from './ordered-map.ts';
import { IMAGE_OUTCOME_SCHEMA, addCounts, outcomeSchema, emptyCounts, type RowOutcome, type ShardStats, type StatusCounts } from './outcomes.ts';
import { RowProcessor, type RowResult } from './row-processor.ts';
import type { ImageRecord, Row } from './source-adapter.ts';

export const BUILD_FILE = 'build.json';

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

interface BuildFile {
  format: 'm4data-build';
  version: 1;
  fingerprint: Record<string, unknown>;
  input: { rows: number; shards: number } | null;
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
    if (!recorded) await storage.write(BUILD_FILE, jsonBytes({ format: 'm4data-build', version: 1, fingerprint, input: null } satisfies BuildFile));
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
        await discardIncomplete(storage, shardName(options.prefix, shard));
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
  await storage.write(BUILD_FILE, jsonBytes({ format: 'm4data-build', version: 1, fingerprint, input: { rows: totalRows, shards: totalShards } } satisfies BuildFile));
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

interface OpenShard {
  index: number;
  builder: ShardBuilder;
  add(result: RowResult): Promise<void>;
  finish(): Promise<{ stats: ShardStats; record: ShardRecord | undefined }>;
}

function openShard(storage: Storage, prefix: string, index: number, samplesPerShard: number, recordImages: boolean): OpenShard {
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
      if (recordImages) await storage.write(sideFileKey(key, 'images'), await writeParquet(images as unknown as Record<string, unknown>[], IMAGE_OUTCOME_SCHEMA));
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
async function discardIncomplete(storage: Storage, key: string): Promise<void> {
  try {
    await storage.discardIncomplete(key);
  } catch (err) {
    process.emitWarning(`could not discard incomplete writes of ${storage.urlOf(key)}: ${(err as Error).message}`);
  }
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

function topErrors(errors: Map<string, number>, n = 10): { error: string; count: number }[] {
  return [...errors.entries()]
    .map(([error, count]) => ({ error, count }))
    .sort((a, b) => b.count - a.count || (a.error < b.error ? -1 : 1))
    .slice(0, n);
}

/** Shard numbers whose stats exist under the prefix: those shards are complete. */
async function doneShards(storage: Storage, prefix: string): Promise<Set<number>> {
  const done = new Set<number>();
  for await (const info of storage.list(`${prefix}-`)) {
    const k = shardNumberOf(info.key, prefix, SIDE_FILES.stats);
    if (k !== undefined) done.add(k);
  }
  return done;
}

async function readBuildFile(storage: Storage): Promise<BuildFile | undefined> {
  return (await storage.stat(BUILD_FILE)) ? ((await readJson(storage, BUILD_FILE)) as BuildFile) : undefined;
}

/** Refuses to resume a build whose recorded settings or input files differ: it would mix two datasets. */
function checkFingerprint(storage: Storage, existing: BuildFile, fingerprint: Record<string, unknown>): void {
  if (JSON.stringify(existing.fingerprint) === JSON.stringify(fingerprint)) return;
  const differing = Object.keys({ ...existing.fingerprint, ...fingerprint })
    .filter((k) => JSON.stringify(existing.fingerprint[k]) !== JSON.stringify(fingerprint[k]))
    .map((k) => (k === 'inputFiles' ? inputChange(existing.fingerprint[k] as InputFile[] | undefined, fingerprint[k] as InputFile[]) : k));
  throw new M4Error(
    'E_USAGE',
    'build',
    `${storage.urlOf(BUILD_FILE)} holds a build with other settings (${differing.join(', ')}); resuming would mix two datasets. ` +
      'Use another --output, or --no-resume to rebuild it.',
  );
}

/** What changed in the input files since the build began, in words. */
function inputChange(before: InputFile[] = [], now: InputFile[]): string {
  const sizes = new Map(before.map((f) => [f.file, f.bytes]));
  for (const f of now) {
    const was = sizes.get(f.file);
    if (was === undefined) return `input files: ${f.file} is new`;
    if (was !== f.bytes) return `input files: ${f.file} was ${sizeOf(was)}, now ${sizeOf(f.bytes)}`;
  }
  const gone = before.find((f) => !now.some((n) => n.file === f.file));
  return gone ? `input files: ${gone.file} is gone` : 'input files: another order';
}

function sizeOf(bytes: number | null): string {
  return bytes === null ? 'of unknown size' : `${bytes} bytes`;
}

/**
 * Writes manifest.json and wids.json once every shard 0..n-1 has its stats. Throws E_NOT_FOUND naming what is missing
 * (a merge reports it; a worker that is not last just leaves the manifest to the one that is). The manifest records the
 * source's layout (pairs or documents), so a mix can tell a dataset given for the wrong source.
 */
export async function writeManifestIfComplete(storage: Storage, prefix: string, layout: SourceAdapter['layout'], fingerprint?: Record<string, unknown>): Promise<Manifest> {
  const build = await readBuildFile(storage);
  if (!build?.input) {
    throw new M4Error('E_NOT_FOUND', 'build', `${storage.urlOf(BUILD_FILE)} does not record the input's size yet: no worker has finished reading the input`);
  }
  const done = await doneShards(storage, prefix);
  const missing = [];
  for (let k = 0; k < build.input.shards; k++) if (!done.has(k)) missing.push(k);
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).map((k) => shardName(prefix, k)).join(', ');
    throw new M4Error('E_NOT_FOUND', 'build', `${missing.length} of ${build.input.shards} shards are not built yet: ${shown}${missing.length > 10 ? ', ...' : ''}`, { missing });
  }
  const status = emptyCounts();
  for (let k = 0; k < build.input.shards; k++) {
    const stats = (await readJson(storage, sideFileKey(shardName(prefix, k), 'stats'))) as ShardStats;
    addCounts(status, stats.status);
  }
  const wanted = new Set(Array.from({ length: build.input.shards }, (_, k) => shardName(prefix, k)));
  const records = (await collectShardRecords(storage, `${prefix}-`)).filter((r) => wanted.has(r.shard));
  const manifest = buildManifest(records, { ...(fingerprint ?? build.fingerprint), layout, rows: build.input.rows, outcomes: status });
  await writeManifest(storage, manifest, prefix);
  return manifest;
}

