import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isM4Error } from '../core/errors.ts';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { findSource } from '../pipelines/registry.ts';
import { newReadCounters, readShard } from '../shards/tar-reader.ts';
import { gunzipIfCompressed } from '../shards/gunzip.ts';
import { startImageServer, TEST_FETCH, writeLaionParquet } from './helpers/pair-build.ts';
import { runCli } from './helpers/run-cli.ts';

// inspect that can be trusted: a dataset folder is checked against its manifest, and tars are found and read
// whatever their compression or the case of their name.

const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-inspect-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const input = join(dir, 'laion.parquet');
await writeLaionParquet(
  input,
  server,
  [0, 1, 2, 3, 4, 5].map((i) => ({ path: `/f/good${i}.jpg`, status: 'success' })),
);
const built = join(dir, 'built');
await runBuild(resolveBuildOptions({ adapter: findSource('laion'), inputs: [input], output: built, samplesPerShard: 2, fetch: TEST_FETCH }));

async function copyOfBuild(name: string): Promise<string> {
  const copy = join(dir, name);
  execFileSync('cp', ['-r', built, copy]);
  return copy;
}

test('inspect DIR checks every shard size against the manifest: truncated and missing shards are named, exit 3', async () => {
  const copy = await copyOfBuild('sizes');
  const ok = await runCli(['inspect', copy]);
  assert.equal(ok.code, 0, ok.out + ok.err);
  assert.match(ok.out, /shard sizes checked/);

  const shard1 = join(copy, 'laion-000001.tar');
  await truncate(shard1, (await stat(shard1)).size - 512);
  await unlink(join(copy, 'laion-000002.tar'));
  const bad = await runCli(['inspect', copy, '--json']);
  assert.equal(bad.code, 3, bad.err);
  const summary = JSON.parse(bad.out);
  assert.equal(summary.badShards, 2);
  assert.match(summary.errors[0], /laion-000001\.tar: \d+ bytes, the manifest says \d+ \(truncated or replaced\)/);
  assert.match(summary.errors[1], /laion-000002\.tar: missing/);
});

test('inspect --verify checks every sha256, with progress on stderr; a flipped byte is found', async () => {
  const copy = await copyOfBuild('verify');
  const shard = join(copy, 'laion-000000.tar');
  const file = await open(shard, 'r+');
  const byte = Buffer.alloc(1);
  await file.read(byte, 0, 1, 2000);
  byte[0] = byte[0]! ^ 0xff;
  await file.write(byte, 0, 1, 2000);
  await file.close();

  const sizesOnly = await runCli(['inspect', copy]);
  assert.equal(sizesOnly.code, 0, 'the size is unchanged: only --verify can tell');
  const verify = await runCli(['inspect', copy, '--verify']);
  assert.equal(verify.code, 3, verify.err);
  assert.match(verify.out, /laion-000000\.tar: sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64} \(corrupt\)/);
  assert.match(verify.out, /shard sizes, sha256 and indexes checked\)/, 'a dataset with a problem is never called verified');
  assert.match(verify.err, /verifying shards 1\/3: laion-000000\.tar\n.*verifying shards 3\/3: laion-000002\.tar/s);
});

test('a folder without any shard is exit 1 with a message, not "shards 0"', async () => {
  const empty = join(dir, 'empty');
  await mkdir(empty);
  await writeFile(join(empty, 'notes.txt'), 'nothing here');
  const r = await runCli(['inspect', empty]);
  assert.equal(r.code, 1);
  assert.match(r.err, /no shard \(\.tar, \.tgz, \.tar\.gz\) and no manifest\.json in .*empty \[E_NOT_FOUND\]/);
});

// Tars made by GNU tar, gzip-compressed (`tar czf`), as webdataset's own test data ships them.
const tree = join(dir, 'tree');
await mkdir(tree);
for (const [name, content] of Object.entries({ 'a01.jpg': 'jpeg bytes', 'a01.txt': 'a caption', 'b02.jpg': 'more bytes', 'b02.txt': 'another' })) {
  await writeFile(join(tree, name), content);
}
const plainTar = join(dir, 'plain.tar');
execFileSync('tar', ['-cf', plainTar, '--sort=name', '-C', tree, 'a01.jpg', 'a01.txt', 'b02.jpg', 'b02.txt']);
const tgz = join(dir, 'gz.tgz');
execFileSync('tar', ['-czf', tgz, '--sort=name', '-C', tree, 'a01.jpg', 'a01.txt', 'b02.jpg', 'b02.txt']);

async function samplesOf(path: string) {
  const counters = newReadCounters();
  const samples = [];
  for await (const s of readShard(path, { counters }))
    samples.push({ key: s.key, fields: Object.fromEntries(Object.entries(s.fields).map(([k, v]) => [k, v.toString()])) });
  return { samples, counters };
}

test('the reader reads .tgz and .tar.gz like any tar, and says so of a gzip file named .tar', async () => {
  const expected = (await samplesOf(plainTar)).samples;
  assert.equal(expected.length, 2);
  const targz = join(dir, 'gz.tar.gz');
  await copyFile(tgz, targz);
  const disguised = join(dir, 'disguised.tar');
  await copyFile(tgz, disguised);
  for (const path of [tgz, targz]) {
    const { samples, counters } = await samplesOf(path);
    assert.deepEqual(samples, expected, path);
    assert.deepEqual(counters.notes, []);
  }
  const { samples, counters } = await samplesOf(disguised);
  assert.deepEqual(samples, expected);
  assert.match(counters.notes[0]!, /disguised\.tar is gzip-compressed, though not named \.tgz or \.tar\.gz/);

  const cut = join(dir, 'cut.tgz');
  await writeFile(cut, (await readFile(tgz)).subarray(0, 60));
  await assert.rejects(samplesOf(cut), (err: unknown) => isM4Error(err, 'E_TAR_TRUNCATED') && /cut\.tgz: gzip data ends early/.test(err.message));
});

test('a gzip shard whose read fails mid-stream ends in that error, not a stall', { timeout: 30_000 }, async () => {
  const bytes = await readFile(tgz);
  async function* dropped(): AsyncGenerator<Uint8Array> {
    yield bytes.subarray(0, 20);
    throw new Error('connection dropped');
  }
  const chunks = gunzipIfCompressed(dropped(), 'gz.tgz');
  await assert.rejects(
    (async () => {
      for await (const chunk of chunks) void chunk;
    })(),
    /connection dropped/,
  );
});

test('inspect finds .tgz, .tar.gz and .TAR in a folder, and takes a file of any name for a shard, never a folder', async () => {
  const folder = join(dir, 'mixed');
  await mkdir(folder);
  await copyFile(plainTar, join(folder, 'one.TAR'));
  await copyFile(tgz, join(folder, 'two.tgz'));
  await copyFile(tgz, join(folder, 'three.tar.gz'));
  const r = await runCli(['inspect', folder, '--json']);
  assert.equal(r.code, 0, r.err);
  const summary = JSON.parse(r.out);
  assert.deepEqual([summary.shards, summary.samples], [3, 6]);

  const disguised = join(dir, 'disguised-cli.tar');
  await copyFile(tgz, disguised);
  const said = await runCli(['inspect', disguised]);
  assert.equal(said.code, 0, said.err);
  assert.match(said.out, /note: .*disguised-cli\.tar is gzip-compressed/);

  const oddName = join(dir, 'shard.bin');
  await copyFile(plainTar, oddName);
  const odd = await runCli(['inspect', oddName, '--json']);
  assert.equal(odd.code, 0, odd.err);
  assert.deepEqual([JSON.parse(odd.out).shards, JSON.parse(odd.out).samples], [1, 2]);
});
