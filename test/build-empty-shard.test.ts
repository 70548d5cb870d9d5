import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { findSource } from '../pipelines/registry.ts';
import { readParquetRows } from '../sandbox/parquet-files.ts';
import { filesOf, startImageServer, TEST_FETCH, writeLaionParquet } from './helpers/pair-build.ts';

// webdataset raises "No samples found" on an empty tar: a shard whose rows all failed is recorded but not published.

const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-empty-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

test('a shard whose rows all failed keeps its outcomes and stats, and no tar is listed or written', async () => {
  const input = join(dir, 'laion.parquet');
  await writeLaionParquet(input, server, [
    { path: '/f/good0.jpg', status: 'success' },
    { path: '/f/good1.jpg', status: 'success' },
    { path: '/status/404', status: 'failed_to_download' },
    { path: '/f/tiny.jpg', status: 'filtered' },
    { path: '/f/good2.jpg', status: 'success' },
  ]);
  const output = join(dir, 'out');
  const options = () => resolveBuildOptions({ adapter: findSource('laion'), inputs: [input], output, samplesPerShard: 2, fetch: TEST_FETCH });
  const summary = await runBuild(options());
  assert.equal(summary.shardsBuilt, 3);

  const files = await readdir(output);
  assert.ok(!files.includes('laion-000001.tar') && !files.includes('laion-000001.idx.json'), files.join(' '));
  assert.ok(files.includes('laion-000001.stats.json') && files.includes('laion-000001.outcomes.parquet'));
  const stats = JSON.parse(await readFile(join(output, 'laion-000001.stats.json'), 'utf8'));
  assert.deepEqual([stats.rows, stats.successes, stats.status.failed_to_download, stats.status.filtered], [2, 0, 1, 1]);
  const outcomes = await readParquetRows([join(output, 'laion-000001.outcomes.parquet')]);
  assert.deepEqual(
    outcomes.map((o) => o.status),
    ['failed_to_download', 'filtered'],
  );

  const manifest = JSON.parse(await readFile(join(output, 'manifest.json'), 'utf8'));
  assert.deepEqual(
    manifest.shards.map((s: { shard: string }) => s.shard),
    ['laion-000000.tar', 'laion-000002.tar'],
  );
  assert.equal(manifest.dataset.outcomes.failed_to_download, 1, 'the empty shard still counts in the outcomes');
  const wids = JSON.parse(await readFile(join(output, 'wids.json'), 'utf8'));
  assert.deepEqual(
    wids.shardlist.map((s: { url: string }) => s.url),
    ['laion-000000.tar', 'laion-000002.tar'],
  );

  // A resume sees the empty shard as done and changes nothing.
  const before = await filesOf(output);
  const again = await runBuild(options());
  assert.equal(again.shardsBuilt, 0);
  assert.deepEqual(await filesOf(output), before);
});
