import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isM4Error } from '../core/errors.ts';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { UNPARSED_METADATA } from '../pipelines/engine/document-sample.ts';
import { findSource } from '../pipelines/registry.ts';
import { readParquetRows, writeParquetFixture, type FixtureValue } from '../sandbox/parquet-files.ts';
import { readShard } from '../shards/tar-reader.ts';
import { startImageServer, TEST_FETCH } from './helpers/pair-build.ts';

// Issue 13, items 23-25: document rows in their publishers' shapes, as a build meets them.

const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-doc-rows-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});
const build = (source: string, input: string, output: string) =>
  runBuild(resolveBuildOptions({ adapter: findSource(source), inputs: [input], output, samplesPerShard: 10, concurrency: 4, fetch: TEST_FETCH }));

test("a file without a source's lists is refused for the first column of its schema, with that column's type", async () => {
  // The repeated-URL count reads the file before any row: it used to check only the images column, as image_list.
  const input = join(dir, 'wit-like.parquet');
  await writeParquetFixture(input, { image_url: 'VARCHAR', caption_reference_description: 'VARCHAR' }, [[server.url('/f/good0.jpg'), 'a caption']]);
  for (const [source, message] of [
    ['wikipedia', /required column "texts" is missing \(expected string_list/],
    ['obelisc', /required column "images" is missing \(expected string_list/],
  ] as const) {
    await assert.rejects(build(source, input, join(dir, `out-${source}`)), (err) => isM4Error(err, 'E_INPUT') && message.test(err.message), source);
  }
});

test('metadata that is not JSON is kept as its text and counted; null lists are malformed, not "no text"', async () => {
  const input = join(dir, 'rows.parquet');
  const image = server.url('/f/good1.jpg');
  await writeParquetFixture(input, { images: 'VARCHAR[]', texts: 'VARCHAR[]', metadata: 'VARCHAR', general_metadata: 'VARCHAR' }, [
    [[null, image], ['A page.', null], '{not json', '{"url":"https://example.org/a"}'],
    [null, ['Text without an images list.'], null, null],
    [[image], null, null, null],
  ] as FixtureValue[][]);
  const output = join(dir, 'out-rows');
  const summary = await build('obelisc', input, output);
  assert.deepEqual([summary.status.success, summary.status.malformed, summary.status.filtered], [1, 2, 0]);
  assert.ok(
    summary.topErrors.some((e) => e.error === UNPARSED_METADATA && e.count === 1),
    JSON.stringify(summary.topErrors),
  );
  const outcomes = await readParquetRows((await readdir(output)).filter((f) => f.endsWith('.outcomes.parquet')).map((f) => join(output, f)));
  assert.deepEqual(
    outcomes.map((o) => [o.status, o.error_message]),
    [
      ['success', UNPARSED_METADATA],
      ['malformed', 'the images list is null'],
      ['malformed', 'the texts list is null'],
    ],
  );
  const [sample] = await collect(readShard(join(output, 'obelisc-000000.tar')));
  const json = JSON.parse(sample!.fields.json!.toString('utf8')) as { metadata: unknown; general_metadata: unknown };
  assert.equal(json.metadata, '{not json');
  assert.deepEqual(json.general_metadata, { url: 'https://example.org/a' });
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
