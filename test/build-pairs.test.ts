import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { writeManifestIfComplete } from '../pipelines/engine/build-record.ts';
import { findSource } from '../pipelines/registry.ts';
import { readShard } from '../shards/tar-reader.ts';
import { readManifest } from '../shards/manifest.ts';
import { LocalStorage } from '../shards/storage/local.ts';
import { filesOf, hostileLaionRows, startImageServer, TEST_FETCH, writeLaionParquet } from './helpers/pair-build.ts';
import { readParquetRows, writeParquetFixture } from '../sandbox/parquet-files.ts';
import { jpeg } from '../sandbox/images.ts';

const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-build-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const rows = hostileLaionRows();
const laionInput = join(dir, 'laion.parquet');
await writeLaionParquet(laionInput, server, rows);

function laionOptions(output: string, extra: Partial<Parameters<typeof resolveBuildOptions>[0]> = {}) {
  return resolveBuildOptions({
    adapter: findSource('laion'),
    inputs: [laionInput],
    output,
    samplesPerShard: 4,
    sourceOptions: { maxPunsafe: 0.5 },
    concurrency: 8,
    fetch: TEST_FETCH,
    ...extra,
  });
}

async function outcomesOf(output: string) {
  const files = (await readdir(output))
    .filter((f) => f.endsWith('.outcomes.parquet'))
    .sort()
    .map((f) => join(output, f));
  return readParquetRows(files);
}

test('every hostile input row ends with the right status, and only successes are packed', async () => {
  const output = join(dir, 'single');
  const summary = await runBuild(laionOptions(output));
  assert.equal(summary.rows, rows.length);
  assert.equal(summary.shardsBuilt, Math.ceil(rows.length / 4));

  const outcomes = await outcomesOf(output);
  assert.deepEqual(
    outcomes.map((o) => Number(o.row)),
    rows.map((_, i) => i),
    'every input row exactly once, in order',
  );
  for (const [i, expected] of rows.entries()) {
    const o = outcomes[i]!;
    assert.equal(o.status, expected.status, `row ${i} ${expected.path}: ${o.error_message}`);
    if (expected.error) assert.match(String(o.error_message), expected.error, `row ${i} ${expected.path}`);
  }

  // The tars hold exactly the successful rows, with a caption, a json and an 8-bit sRGB jpg each.
  const storage = new LocalStorage(output);
  const manifest = await readManifest(storage);
  const packed = [];
  for (const shard of manifest.shards) for await (const s of readShard({ storage, key: shard.shard })) packed.push(s);
  const successes = outcomes.filter((o) => o.status === 'success');
  assert.deepEqual(
    packed.map((s) => s.key),
    successes.map((o) => o.key),
  );
  for (const sample of packed) {
    assert.deepEqual(Object.keys(sample.fields).sort(), ['jpg', 'json', 'txt']);
    const json = JSON.parse(sample.fields.json!.toString());
    assert.equal(json.key, sample.key);
    assert.equal(json.caption, sample.fields.txt!.toString());
    assert.equal(typeof json.hash, 'string');
    const meta = await sharp(sample.fields.jpg!).metadata();
    assert.equal(meta.format, 'jpeg');
    assert.equal(meta.channels, 3);
    assert.equal(Math.min(meta.width, meta.height), Math.min(256, Math.min(json.original_width, json.original_height)));
    assert.deepEqual([meta.width, meta.height], [json.width, json.height]);
  }
  // EXIF orientation 6 on a 400x300 image: upright it is 300 wide and 400 high.
  const rotated = packed.find((s) => JSON.parse(s.fields.json!.toString()).url.endsWith('rotated.jpg'))!;
  assert.deepEqual([JSON.parse(rotated.fields.json!.toString()).original_width, JSON.parse(rotated.fields.json!.toString()).original_height], [300, 400]);

  assert.equal(manifest.totals.samples, successes.length);
  assert.equal(manifest.totals.images, successes.length);
  assert.equal(
    manifest.totals.tokens,
    successes.reduce((n, o) => n + Number(o.tokens), 0),
  );
  assert.ok(manifest.totals.tokens > successes.length * 4);
  assert.equal((manifest.dataset.outcomes as Record<string, number>).success, successes.length);
  assert.equal(summary.status.success, successes.length);
});

test('a re-run resumes: published shards are kept, not rebuilt', async () => {
  const output = join(dir, 'single');
  const before = await filesOf(output);
  const again = await runBuild(laionOptions(output));
  assert.equal(again.shardsBuilt, 0);
  assert.equal(again.rows, 0);
  assert.deepEqual(await filesOf(output), before);
});

test('resuming with other settings is refused instead of mixing two datasets', async () => {
  await assert.rejects(runBuild(laionOptions(join(dir, 'single'), { image: { imageSize: 128 } })), { code: 'E_USAGE', message: /imageSize|image/ });
});

test('resuming after the input file changed is refused, naming the file and its sizes', async () => {
  const input = join(dir, 'changing.parquet');
  const output = join(dir, 'changing');
  await writeLaionParquet(input, server, rows.slice(0, 3));
  await runBuild(laionOptions(output, { inputs: [input] }));
  await writeLaionParquet(input, server, rows.slice(0, 4));
  await assert.rejects(runBuild(laionOptions(output, { inputs: [input] })), {
    code: 'E_USAGE',
    message: /input files: .*changing\.parquet was \d+ bytes, now \d+/,
  });
});

test('two workers plus a merge give the same dataset, byte for byte, as one worker', async () => {
  const single = join(dir, 'single');
  const split = join(dir, 'split');
  const first = await runBuild(laionOptions(split, { worker: { index: 0, count: 2 } }));
  assert.equal(first.manifest, undefined, 'worker 0 alone cannot write the manifest');
  await assert.rejects(writeManifestIfComplete(new LocalStorage(split), 'laion', 'pair'), { code: 'E_NOT_FOUND', message: /shards are not built yet/ });
  const second = await runBuild(laionOptions(split, { worker: { index: 1, count: 2 } }));
  assert.ok(second.manifest, 'the last worker writes the manifest');
  await writeManifestIfComplete(new LocalStorage(split), 'laion', 'pair');
  assert.deepEqual(await filesOf(split), await filesOf(single));
});

test('pmd: image bytes in the parquet and image URLs in one build; a row with neither is malformed', async () => {
  const input = join(dir, 'pmd.parquet');
  const inline = await jpeg(320, 240, { seed: 9 });
  const struct = (bytes: Buffer | null, path: string | null) => ({ bytes, path });
  await writeParquetFixture(input, { text: 'VARCHAR', source: 'VARCHAR', meta: 'VARCHAR', image_url: 'VARCHAR', image: 'STRUCT(bytes BLOB, path VARCHAR)' }, [
    ['a cat on a mat', 'coco', '{"id": 1}', null, struct(inline, 'cat.jpg')],
    ['a dog in a fog', 'localized_narratives__coco', '{"id": 2}', server.url('/f/good1.jpg'), null],
    ['nothing to see', 'sbu', 'not json', null, null],
    ['broken bytes', 'coco', null, null, struct(Buffer.from('not an image at all'), 'x.jpg')],
  ]);
  const output = join(dir, 'pmd');
  const summary = await runBuild(resolveBuildOptions({ adapter: findSource('pmd'), inputs: [input], output, fetch: TEST_FETCH }));
  const outcomes = await outcomesOf(output);
  assert.deepEqual(
    outcomes.map((o) => o.status),
    ['success', 'success', 'malformed', 'failed_to_decode'],
  );
  assert.equal(outcomes[0]!.url, null);
  assert.equal(summary.manifest?.totals.samples, 2);
  const samples = [];
  for await (const s of readShard(join(output, 'pmd-000000.tar'))) samples.push(JSON.parse(s.fields.json!.toString()));
  assert.deepEqual(
    samples.map((s) => [s.source, s.meta, s.inline_image]),
    [
      ['coco', { id: 1 }, true],
      ['localized_narratives__coco', { id: 2 }, false],
    ],
  );
});

test('a missing column or a wrong type stops with a message naming the file, the column and what was expected', async () => {
  const input = join(dir, 'bad.parquet');
  await writeParquetFixture(input, { URL: 'VARCHAR', TEXT: 'INTEGER' }, [['http://x/', 1]]);
  await assert.rejects(
    runBuild(laionOptions(join(dir, 'bad-out'), { inputs: [input] })),
    (err: Error & { code?: string }) =>
      err.code === 'E_INPUT' && err.message.includes('bad.parquet') && err.message.includes('TEXT') && /VARCHAR/.test(err.message),
  );
  const noUrl = join(dir, 'nourl.parquet');
  await writeParquetFixture(noUrl, { TEXT: 'VARCHAR' }, [['hello']]);
  await assert.rejects(runBuild(laionOptions(join(dir, 'bad-out2'), { inputs: [noUrl] })), { code: 'E_INPUT', message: /nourl\.parquet.*URL/ });
});
