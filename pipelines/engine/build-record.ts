import { M4Error } from '../../core/errors.ts';
import { buildManifest, writeManifest, type Manifest } from '../../shards/manifest.ts';
import { shardName, shardNumberOf, SIDE_FILES, sideFileKey } from '../../shards/shard-files.ts';
import { collectShardRecords } from '../../shards/shard-index.ts';
import { jsonBytes, readJson } from '../../shards/storage/json.ts';
import type { Storage } from '../../shards/storage/storage.ts';
import type { InputFile } from './metadata/input-files.ts';
import { addCounts, emptyCounts, type ShardStats } from './outcomes.ts';
import type { SourceAdapter } from './source-adapter.ts';

/**
 * What a build records of itself, for a resume and for whichever worker finishes last: `build.json` (the settings
 * that decide the content, the input files, and the input's size once read), the shards done (those with stats), and
 * the manifest written once every shard is.
 */

export const BUILD_FILE = 'build.json';

export interface BuildFile {
  format: 'm4data-build';
  version: 1;
  fingerprint: Record<string, unknown>;
  input: { rows: number; shards: number } | null;
}

/** Records that a build began (its settings and inputs, the input's size still unknown), before its first shard. */
export async function recordBuildStart(storage: Storage, fingerprint: Record<string, unknown>): Promise<void> {
  await storage.write(BUILD_FILE, jsonBytes({ format: 'm4data-build', version: 1, fingerprint, input: null } satisfies BuildFile));
}

/** Records the input's size once it was read to its end: the shards the dataset has. */
export async function recordBuildInput(storage: Storage, fingerprint: Record<string, unknown>, input: { rows: number; shards: number }): Promise<void> {
  await storage.write(BUILD_FILE, jsonBytes({ format: 'm4data-build', version: 1, fingerprint, input } satisfies BuildFile));
}

export /** Shard numbers whose stats exist under the prefix: those shards are complete. */
async function doneShards(storage: Storage, prefix: string): Promise<Set<number>> {
  const done = new Set<number>();
  for await (const info of storage.list(`${prefix}-`)) {
    const k = shardNumberOf(info.key, prefix, SIDE_FILES.stats);
    if (k !== undefined) done.add(k);
  }
  return done;
}

export async function readBuildFile(storage: Storage): Promise<BuildFile | undefined> {
  return (await storage.stat(BUILD_FILE)) ? ((await readJson(storage, BUILD_FILE)) as BuildFile) : undefined;
}

/** Refuses to resume a build whose recorded settings or input files differ: it would mix two datasets. */
export function checkFingerprint(storage: Storage, existing: BuildFile, fingerprint: Record<string, unknown>): void {
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
export async function writeManifestIfComplete(
  storage: Storage,
  prefix: string,
  layout: SourceAdapter['layout'],
  fingerprint?: Record<string, unknown>,
): Promise<Manifest> {
  const build = await readBuildFile(storage);
  if (!build?.input) {
    throw new M4Error('E_NOT_FOUND', 'build', `${storage.urlOf(BUILD_FILE)} does not record the input's size yet: no worker has finished reading the input`);
  }
  const done = await doneShards(storage, prefix);
  const missing = [];
  for (let k = 0; k < build.input.shards; k++) if (!done.has(k)) missing.push(k);
  if (missing.length > 0) {
    const shown = missing
      .slice(0, 10)
      .map((k) => shardName(prefix, k))
      .join(', ');
    throw new M4Error(
      'E_NOT_FOUND',
      'build',
      `${missing.length} of ${build.input.shards} shards are not built yet: ${shown}${missing.length > 10 ? ', ...' : ''}`,
      { missing },
    );
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
