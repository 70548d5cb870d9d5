import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { findSource } from '../pipelines/registry.ts';
import { S3Storage } from '../shards/storage/s3.ts';
import { readManifest } from '../shards/manifest.ts';
import { summarizeDataset } from '../shards/dataset-summary.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { hostileLaionRows, startImageServer, TEST_FETCH, writeLaionParquet } from './helpers/pair-build.ts';
import { writeParquetFixture } from '../sandbox/parquet-files.ts';

const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;

async function readObject(storage: S3Storage, key: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of storage.read(key)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

test('build reads parquet from S3 and writes shards to S3; inspect reads them back', async (t) => {
  const s3 = await startS3Server();
  const server = await startImageServer();
  const dir = await mkdtemp(join(tmpdir(), 'm4-s3build-'));
  t.after(async () => {
    await server.close();
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  });
  t.after(applyEnv(s3.env));

  const rows = hostileLaionRows();
  const local = join(dir, 'laion.parquet');
  await writeLaionParquet(local, server, rows);
  const bucket = new S3Storage(`s3://${s3.bucket}`);
  await bucket.write('inputs/laion.parquet', await readFile(local));

  const output = `s3://${s3.bucket}/datasets/laion`;
  const summary = await runBuild(
    resolveBuildOptions({
      adapter: findSource('laion'),
      inputs: [`s3://${s3.bucket}/inputs/laion.parquet`],
      output,
      samplesPerShard: 8,
      sourceOptions: { maxPunsafe: 0.5 },
      fetch: TEST_FETCH,
    }),
  );
  const expected = rows.filter((r) => r.status === 'success').length;
  assert.equal(summary.status.success, expected);
  const manifest = await readManifest(new S3Storage(output));
  assert.equal(manifest.totals.samples, expected);
  assert.equal(manifest.totals.shards, 3);

  const inspected = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, 'inspect', output, '--json'], { env: { ...process.env, ...s3.env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
  assert.equal(inspected.code, 0);
  const summaryJson = JSON.parse(inspected.out);
  assert.deepEqual([summaryJson.shards, summaryJson.samples, summaryJson.images, summaryJson.tokens], [3, expected, expected, manifest.totals.tokens]);
  assert.equal(summaryJson.first.length, 5);

  // An object of any name is one shard, never taken for a prefix; a shard whose size differs from the manifest is named.
  const shard = await readObject(bucket, 'datasets/laion/laion-000000.tar');
  await bucket.write('odd/name.bin', shard);
  const odd = await summarizeDataset(`s3://${s3.bucket}/odd/name.bin`);
  assert.deepEqual([odd.from, odd.shards, odd.samples], ['scan', 1, manifest.shards[0]!.samples]);
  await bucket.write('datasets/laion/laion-000001.tar', shard.subarray(0, 1024));
  const checked = await summarizeDataset(output);
  assert.equal(checked.badShards, 1);
  assert.match(checked.errors[0]!, /laion-000001\.tar: 1024 bytes, the manifest says \d+/);

  // Documents too: the repeated-URL count and the read both come through the storage layer.
  const docs = join(dir, 'docs.parquet');
  const url = (i: number) => server.url(`/f/good${i}.jpg`);
  await writeParquetFixture(
    docs,
    { images: 'VARCHAR[]', texts: 'VARCHAR[]' },
    Array.from({ length: 12 }, (_, d) => [
      [url(0), null, url(1 + (d % 6))],
      [null, `doc ${d}`, null],
    ]),
  );
  await bucket.write('inputs/docs.parquet', await readFile(docs));
  const docSummary = await runBuild(
    resolveBuildOptions({
      adapter: findSource('obelics'),
      inputs: [`s3://${s3.bucket}/inputs/docs.parquet`],
      output: `s3://${s3.bucket}/datasets/docs`,
      fetch: TEST_FETCH,
    }),
  );
  assert.equal(docSummary.status.success, 12);
  assert.equal(docSummary.imageStatus?.filtered, 12, 'good0.jpg is in 12 documents > 10: removed from each');
  assert.equal(docSummary.manifest?.totals.images, 12);
});
