import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, truncate, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStorage } from '../shards/storage/local.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { buildManifest, writeManifest } from '../shards/manifest.ts';

const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;

function m4data(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('--help lists every command, and each has its own help', () => {
  const r = m4data('--help');
  assert.equal(r.code, 0);
  for (const command of ['build', 'mix', 'train', 'inspect']) assert.match(r.out, new RegExp(`\\n  ${command}\\b`));
  const inspect = m4data('inspect', '--help');
  assert.equal(inspect.code, 0);
  assert.match(inspect.out, /--json/);
});

test('usage errors exit 2 with a message', () => {
  const unknown = m4data('inspect', 'x', '--no-such-flag');
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown option/);
  const badNumber = m4data('inspect', 'x', '-n', 'many');
  assert.equal(badNumber.code, 2);
  assert.match(badNumber.err, /expected a whole number/);
  assert.equal(m4data('frobnicate').code, 2);
});

test('inspect summarises a dataset folder, a manifest and a shard; exit 3 on bad data, 1 when missing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const storage = new LocalStorage(dir);
  const writer = new ShardWriter({ storage, prefix: 'ds', maxSamples: 2 });
  for (let i = 0; i < 5; i++) {
    await writer.write(
      { key: `k${i}`, fields: { jpg: Buffer.alloc(10, i), json: Buffer.from(JSON.stringify({ tokens: 4 })), txt: Buffer.from('hi') } },
      { tokens: 4 },
    );
  }
  const records = await writer.close();
  await writeManifest(storage, buildManifest(records));

  const viaManifest = m4data('inspect', dir, '--json', '-n', '3');
  assert.equal(viaManifest.code, 0, viaManifest.err);
  const summary = JSON.parse(viaManifest.out);
  assert.equal(summary.from, 'manifest');
  assert.deepEqual(
    { shards: summary.shards, samples: summary.samples, images: summary.images, tokens: summary.tokens, bytes: summary.bytes },
    { shards: 3, samples: 5, images: 5, tokens: 20, bytes: records.reduce((n, r) => n + r.bytes, 0) },
  );
  assert.deepEqual(
    summary.first.map((s: { key: string }) => s.key),
    ['k0', 'k1', 'k2'],
  );
  assert.deepEqual(summary.first[0].fields, { jpg: 10, json: 12, txt: 2 });

  const oneShard = m4data('inspect', join(dir, 'ds-000001.tar'), '--json');
  assert.equal(oneShard.code, 0);
  const shardSummary = JSON.parse(oneShard.out);
  assert.equal(shardSummary.from, 'scan');
  assert.deepEqual([shardSummary.shards, shardSummary.samples, shardSummary.images, shardSummary.tokens], [1, 2, 2, 8]);

  const text = m4data('inspect', dir);
  assert.match(text.out, /samples\s+5/);

  const size = (await stat(join(dir, 'ds-000002.tar'))).size;
  await truncate(join(dir, 'ds-000002.tar'), size - 1500);
  const bad = m4data('inspect', join(dir, 'ds-000002.tar'));
  assert.equal(bad.code, 3);
  assert.match(bad.out, /1 bad shard/);
  assert.match(bad.out, /ds-000002\.tar: tar ends at byte/);

  const missing = m4data('inspect', join(dir, 'nope.tar'));
  assert.equal(missing.code, 1);
  assert.match(missing.err, /no such shard/);
});

test('train: usage errors exit 2 with a message', () => {
  const noRunDir = m4data('train', '--mixture', 'out/mix');
  assert.equal(noRunDir.code, 2);
  assert.match(noRunDir.err, /required option --run-dir <dir> is missing \(or give --dry-run/);
  const noMixture = m4data('train', '--dry-run', '--steps', '3');
  assert.equal(noMixture.code, 2);
  assert.match(noMixture.err, /--mixture/);
  const badTransform = m4data('train', '--dry-run', '--mixture', 'out/mix', '--image-transform', 'zoom');
  assert.equal(badTransform.code, 2);
});

test('build: usage errors exit 2, an unreadable input exits 1, each with a clear message', () => {
  const noSource = m4data('build', '--input', 'x.parquet', '--output', 'out');
  assert.equal(noSource.code, 2);
  assert.match(noSource.err, /needs --source/);
  const badWorker = m4data('build', '--source', 'laion', '--input', 'x.parquet', '--output', 'out', '--worker', '3/2');
  assert.equal(badWorker.code, 2);
  assert.match(badWorker.err, /i\/n with 0 <= i < n/);
  const badSource = m4data('build', '--source', 'flickr', '--input', 'x.parquet', '--output', 'out');
  assert.equal(badSource.code, 2);
  const wrongFlag = m4data('build', '--source', 'pmd', '--input', 'x.parquet', '--output', 'out', '--max-punsafe', '0.5');
  assert.equal(wrongFlag.code, 2);
  assert.match(wrongFlag.err, /--max-punsafe does not apply to --source pmd/);
  const missing = m4data('build', '--source', 'laion', '--input', '/nonexistent/x.parquet', '--output', '/tmp/m4-never-written');
  assert.equal(missing.code, 1);
  assert.match(missing.err, /no such file: \/nonexistent\/x\.parquet/);
  const mergeNothing = m4data('build', '--output', '/tmp/m4-never-written-either', '--merge');
  assert.equal(mergeNothing.code, 1);
  assert.match(mergeNothing.err, /nothing was built there/);
});
