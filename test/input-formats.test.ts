import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { inputFormatOf } from '../pipelines/engine/metadata/input-format.ts';
import { readMetadata } from '../pipelines/engine/metadata/read-metadata.ts';
import { findSource } from '../pipelines/registry.ts';
import { readParquetRows } from '../sandbox/parquet-files.ts';
import { readShard } from '../shards/tar-reader.ts';
import { startImageServer, TEST_FETCH } from './helpers/pair-build.ts';
import { runCli } from './helpers/run-cli.ts';

// img2dataset's other input formats, as real files: csv, tsv, json, jsonl and txt, all read through DuckDB.

const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-formats-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const LAION = findSource('laion');

async function rowsOf(file: string, format?: Parameters<typeof inputFormatOf>[1]) {
  const rows: Record<string, unknown>[] = [];
  for await (const batch of readMetadata([file], { columns: [...LAION.columns], format })) rows.push(...batch.rows);
  return rows.map((r) => ({ URL: r.URL, TEXT: r.TEXT, WIDTH: r.WIDTH }));
}

test('the format comes from the extension unless given', () => {
  assert.equal(inputFormatOf('a/b.parquet'), 'parquet');
  assert.equal(inputFormatOf('a/b.CSV'), 'csv');
  assert.equal(inputFormatOf('s3://b/x.tsv.gz'), 'tsv');
  assert.equal(inputFormatOf('x.ndjson'), 'jsonl');
  assert.equal(inputFormatOf('urls.txt'), 'txt');
  assert.equal(inputFormatOf('no-extension'), 'parquet');
  assert.equal(inputFormatOf('rows.data', 'jsonl'), 'jsonl');
});

test('csv, tsv, json, jsonl and txt read into the same rows; a caption of digits stays text', async () => {
  const a = server.url('/f/good0.jpg');
  const b = server.url('/f/good1.jpg');
  const csv = join(dir, 'rows.csv');
  await writeFile(csv, `URL,TEXT,WIDTH\n${a},"a cat, sitting",640\n${b},1984,480\n`);
  const tsv = join(dir, 'rows.tsv');
  await writeFile(tsv, `URL\tTEXT\tWIDTH\n${a}\ta cat, sitting\t640\n${b}\t1984\t480\n`);
  const json = join(dir, 'rows.json');
  await writeFile(
    json,
    JSON.stringify([
      { URL: a, TEXT: 'a cat, sitting', WIDTH: 640 },
      { URL: b, TEXT: '1984', WIDTH: 480 },
    ]),
  );
  const jsonl = join(dir, 'rows.jsonl');
  await writeFile(jsonl, `${JSON.stringify({ URL: a, TEXT: 'a cat, sitting', WIDTH: 640 })}\n${JSON.stringify({ URL: b, TEXT: '1984', WIDTH: 480 })}\n`);
  const expected = [
    { URL: a, TEXT: 'a cat, sitting', WIDTH: 640 },
    { URL: b, TEXT: '1984', WIDTH: 480 },
  ];
  for (const file of [csv, tsv, json, jsonl]) assert.deepEqual(await rowsOf(file), expected, file);

  const named = join(dir, 'rows.data');
  await writeFile(named, `URL,TEXT,WIDTH\n${a},"a cat, sitting",640\n${b},1984,480\n`);
  assert.deepEqual(await rowsOf(named, 'csv'), expected);

  const txt = join(dir, 'urls.txt');
  await writeFile(txt, `${a}\n\n  ${b}?x=1,2  \n`);
  assert.deepEqual(await rowsOf(txt), [
    { URL: a, TEXT: null, WIDTH: null },
    { URL: `${b}?x=1,2`, TEXT: null, WIDTH: null },
  ]);
});

test('a csv made with printf builds like parquet; a txt of URLs builds with --min-words 0', async () => {
  const csv = join(dir, 'tiny.csv');
  await writeFile(csv, `URL,TEXT\n${server.url('/f/good2.jpg')},a cat\n${server.url('/f/tiny.jpg')},a small cat\n`);
  const output = join(dir, 'tiny');
  const r = await runCli(['build', '--source', 'laion', '--input', csv, '--output', output, '--allow-private-network', '127.0.0.1/32', '--quiet']);
  assert.equal(r.code, 0, r.err);
  const outcomes = await readParquetRows((await readdir(output)).filter((f) => f.endsWith('.outcomes.parquet')).map((f) => join(output, f)));
  assert.deepEqual(
    outcomes.map((o) => o.status),
    ['success', 'filtered'],
  );
  assert.match(String(outcomes[1]!.error_message), /too small/);

  const txt = join(dir, 'list.txt');
  await writeFile(txt, `${server.url('/f/good3.jpg')}\n${server.url('/f/good4.jpg')}\n`);
  const summary = await runBuild(
    resolveBuildOptions({ adapter: LAION, inputs: [txt], output: join(dir, 'from-txt'), sourceOptions: { minWords: 0 }, fetch: TEST_FETCH }),
  );
  assert.equal(summary.status.success, 2);
  const samples = [];
  for await (const s of readShard(join(dir, 'from-txt', 'laion-000000.tar'))) samples.push(s);
  assert.deepEqual(
    samples.map((s) => s.fields.txt?.toString()),
    ['', ''],
  );
});

test('documents from jsonl: lists read as lists, repeated URLs counted across the file', async () => {
  const jsonl = join(dir, 'docs.jsonl');
  const image = server.url('/f/good5.jpg');
  const lines = Array.from({ length: 3 }, (_, d) =>
    JSON.stringify({ images: [null, image], texts: [`document ${d}`, null], general_metadata: JSON.stringify({ url: `https://e/${d}` }) }),
  );
  await writeFile(jsonl, `${lines.join('\n')}\n`);
  const summary = await runBuild(
    resolveBuildOptions({ adapter: findSource('obelics'), inputs: [jsonl], output: join(dir, 'docs'), sourceOptions: { maxUrlRepeats: 2 }, fetch: TEST_FETCH }),
  );
  assert.equal(summary.rows, 3);
  assert.equal(summary.status.filtered, 3, 'the image is in 3 documents > 2');
});
