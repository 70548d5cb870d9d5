import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSyntheticDataset } from '../sandbox/datasets.ts';
import { openStorage } from '../shards/storage/open.ts';
import { readShard } from '../shards/tar-reader.ts';
import { collect, planFour, writeFourSources } from './helpers/mixtures.ts';

/** Open file descriptors of this process, once closes under way have landed. */
async function openFiles(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  return readdirSync('/proc/self/fd').length;
}

// Regression: the tar parser stopped at the end-of-archive marker without releasing its source, so every shard read
// left a file open (on S3, a connection) until garbage collection; a long mixture stream ran out of descriptors.
test('reading a shard to its end, or stopping early, leaves no file open', { skip: process.platform !== 'linux' && 'reads /proc/self/fd' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-release-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeSyntheticDataset({ location: dir, source: 'laion', layout: 'pair', shardSamples: Array(12).fill(5) });
  const storage = openStorage(dir);
  const shards = [];
  for await (const info of storage.list()) if (info.key.endsWith('.tar')) shards.push(info.key);
  assert.equal(shards.length, 12);

  const before = await openFiles();
  for (const key of shards) assert.equal((await collect(readShard({ storage, key }))).length, 5);
  assert.equal(await openFiles(), before, 'after reading every shard to its end');
  for (const key of shards) assert.equal((await collect(readShard({ storage, key }), 1)).length, 1);
  assert.equal(await openFiles(), before, 'after stopping at the first sample of every shard');
});

test('a mixture stream abandoned midway, or read to its end, leaves no file open', {
  skip: process.platform !== 'linux' && 'reads /proc/self/fd',
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-release-mix-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const mixture = await planFour(join(dir, 'mix'), await writeFourSources(join(dir, 'data')), { mode: 'epochs' });
  await collect(mixture.stream(), 1); // indexes cached, the process warm
  const before = await openFiles();
  assert.equal((await collect(mixture.stream(), 40)).length, 40);
  assert.equal(await openFiles(), before, 'after stopping a stream at sample 40');
  assert.ok((await collect(mixture.stream())).length > 300);
  assert.equal(await openFiles(), before, 'after reading a stream to its end');
});
