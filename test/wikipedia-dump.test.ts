import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isM4Error } from '../core/errors.ts';
import { ndjsonLines } from '../pipelines/engine/dump/ndjson-lines.ts';
import { DUMP_LINE_FIELD, readDump, sniffDump, type DumpLine, type RowBatch, type RowOrigin } from '../pipelines/engine/dump/read-dump.ts';
import { dumpDocument } from '../pipelines/wikipedia/dump-document.ts';
import { S3Storage } from '../shards/storage/s3.ts';
import { writeParquetFixture } from '../sandbox/parquet-files.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { articleRecord, dumpLine, parsoidPage, writeDumpTarGz } from '../sandbox/wikipedia-dump.ts';

const TARGET = { size: 256, longer: false };

async function collect(batches: AsyncIterable<RowBatch>): Promise<{ lines: (string | null)[]; origins: RowOrigin[]; firstIndexes: number[] }> {
  const lines: (string | null)[] = [];
  const origins: RowOrigin[] = [];
  const firstIndexes: number[] = [];
  for await (const batch of batches) {
    assert.equal(batch.firstIndex, lines.length, 'batches are numbered from where the last one ended');
    firstIndexes.push(batch.firstIndex);
    for (const row of batch.rows) lines.push((row[DUMP_LINE_FIELD] as DumpLine).bytes?.toString('utf8') ?? null);
    origins.push(...batch.origins!);
  }
  return { lines, origins, firstIndexes };
}

function record(name: string, body: string): string {
  return dumpLine(articleRecord({ name, identifier: name.length, html: parsoidPage(name, body) }));
}

async function* chunksOf(...parts: (string | Buffer)[]): AsyncGenerator<Buffer> {
  for (const part of parts) yield Buffer.from(part);
}

test('lines: split across chunks, CRLF and a last line without newline; blank lines skipped but counted', async () => {
  const lines = [];
  for await (const line of ndjsonLines(chunksOf('{"a":1}\r\n{"b"', ':2}\n\n\r\n{"c":', '3}'), 100))
    lines.push([line.bytes?.toString(), line.line, line.length]);
  assert.deepEqual(lines, [
    ['{"a":1}', 1, 7],
    ['{"b":2}', 2, 7],
    ['{"c":3}', 5, 7],
  ]);
});

test('a line over the bound is passed over without being held: a 3 GB line with a 1 MiB bound', async () => {
  const chunk = Buffer.alloc(1 << 20, 0x61);
  async function* huge(): AsyncGenerator<Buffer> {
    yield Buffer.from('{"first":1}\n');
    // 3 GiB in 1 MiB chunks, the same buffer each time: held, it could not even be concatenated (Buffer's limit is 4 GiB
    // here, and the machine's memory far less).
    for (let i = 0; i < 3 * 1024; i++) yield chunk;
    yield Buffer.from('\n{"last":2}\n');
  }
  const seen: [string | null, number, number][] = [];
  for await (const line of ndjsonLines(huge(), 1 << 20)) seen.push([line.bytes?.toString() ?? null, line.length, line.line]);
  assert.deepEqual(seen, [
    ['{"first":1}', 11, 1],
    [null, 3 * 1024 * (1 << 20), 2],
    ['{"last":2}', 10, 3],
  ]);
});

test('a dump tar.gz made by GNU tar: rows in member then line order, each with its member and line', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-wikidump-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const a = [record('Alpha', '<p>a</p>'), record('Beta', '<p>b</p>')].join('');
  const b = `\n${record('Gamma', '<p>c</p>')}`;
  const archive = await writeDumpTarGz(dir, 'enwiki-NS0-ENTERPRISE-HTML.json.tar.gz', [
    ['enwiki_namespace_0_0.ndjson', a],
    ['enwiki_namespace_0_1.ndjson', b],
  ]);
  const { lines, origins } = await collect(readDump([archive], { maxLineBytes: 1 << 20 }));
  assert.deepEqual(
    lines.map((l) => (JSON.parse(l!) as { name: string }).name),
    ['Alpha', 'Beta', 'Gamma'],
  );
  assert.deepEqual(origins, [
    { file: archive, member: 'enwiki_namespace_0_0.ndjson', line: 1 },
    { file: archive, member: 'enwiki_namespace_0_0.ndjson', line: 2 },
    { file: archive, member: 'enwiki_namespace_0_1.ndjson', line: 2 },
  ]);
  // The lines are the records as written, byte for byte (Go's escapes included).
  assert.equal(`${lines[0]}\n`, record('Alpha', '<p>a</p>'));
  assert.ok(lines[0]!.includes('\\u003cp\\u003e'));

  const limited = await collect(readDump([archive], { maxLineBytes: 1 << 20, limit: 2 }));
  assert.equal(limited.lines.length, 2);
  assert.equal(await sniffDump(archive, (r) => typeof r === 'object' && r !== null && 'article_body' in r, 1 << 20), 'tar');
});

test('NDJSON members as files: plain, gzip, and a folder of them, in name order', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-wikidump-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const folder = join(dir, 'members');
  await mkdir(folder);
  await writeFile(join(folder, 'part_1.ndjson'), record('Two', '<p>2</p>'));
  await writeFile(join(folder, 'part_0.ndjson.gz'), gzipSync(record('One', '<p>1</p>')));
  await writeFile(join(folder, '.hidden.ndjson'), record('Hidden', '<p>h</p>'));
  const { resolveInputs } = await import('../pipelines/engine/metadata/read-metadata.ts');
  const files = await resolveInputs([folder]);
  assert.deepEqual(files, [join(folder, 'part_0.ndjson.gz'), join(folder, 'part_1.ndjson')]);
  const { lines, origins } = await collect(readDump(files, { maxLineBytes: 1 << 20 }));
  assert.deepEqual(
    lines.map((l) => (JSON.parse(l!) as { name: string }).name),
    ['One', 'Two'],
  );
  assert.deepEqual(
    origins.map((o) => [o.member, o.line]),
    [
      [null, 1],
      [null, 1],
    ],
  );

  const isRecord = (r: unknown) => typeof r === 'object' && r !== null && 'article_body' in r;
  assert.equal(await sniffDump(files[0]!, isRecord, 1 << 20), 'ndjson');
  assert.equal(await sniffDump(files[1]!, isRecord, 1 << 20), 'ndjson');
  const documents = join(dir, 'docs.jsonl');
  await writeFile(documents, '{"texts":["a",null],"images":[null,"http://x/y.jpg"]}\n');
  assert.equal(await sniffDump(documents, isRecord, 1 << 20), 'other');
  const parquet = join(dir, 'docs.parquet');
  await writeParquetFixture(parquet, { texts: 'VARCHAR[]' }, [[['a']]]);
  assert.equal(await sniffDump(parquet, isRecord, 1 << 20), 'other');
});

test('a dump on S3 (s3rver) streams the same rows as the local file', async (t) => {
  const s3 = await startS3Server();
  const dir = await mkdtemp(join(tmpdir(), 'm4-wikidump-'));
  t.after(async () => {
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  });
  t.after(applyEnv(s3.env));
  const archive = await writeDumpTarGz(dir, 'dump.json.tar.gz', [
    ['enwiki_namespace_0_0.ndjson', [record('Alpha', '<p>a</p>'), record('Beta', '<p>b</p>')].join('')],
  ]);
  await new S3Storage(`s3://${s3.bucket}`).write('dumps/dump.json.tar.gz', await readFile(archive));
  const url = `s3://${s3.bucket}/dumps/dump.json.tar.gz`;
  const remote = await collect(readDump([url], { maxLineBytes: 1 << 20 }));
  const local = await collect(readDump([archive], { maxLineBytes: 1 << 20 }));
  assert.deepEqual(remote.lines, local.lines);
  assert.deepEqual(
    remote.origins.map((o) => o.file),
    [url, url],
  );
});

test('a truncated gzip is an error naming the dump, the member and the last line read; never a hang', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-wikidump-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const big = Array.from({ length: 200 }, (_, i) => record(`Article ${i}`, `<p>${'text '.repeat(200)}${i}</p>`)).join('');
  const archive = await writeDumpTarGz(dir, 'dump.json.tar.gz', [['enwiki_namespace_0_0.ndjson', big]]);
  const bytes = await readFile(archive);
  const cut = join(dir, 'cut.json.tar.gz');
  await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
  let read = 0;
  await assert.rejects(
    (async () => {
      for await (const batch of readDump([cut], { maxLineBytes: 1 << 20 })) read += batch.rows.length;
    })(),
    (err: unknown) =>
      isM4Error(err, 'E_INPUT') && err.message.includes(cut) && /member enwiki_namespace_0_0\.ndjson after line \d+: .*truncated/.test(err.message),
  );
  assert.ok(read > 0 && read < 200, `the rows before the cut were read (${read})`);
});

test('records: non-JSON, no article_body, over the bound, another namespace, a redirect are each a reason, not a crash', () => {
  const line = (text: string): DumpLine => ({ bytes: Buffer.from(text), length: Buffer.byteLength(text), maxLineBytes: 1 << 20 });
  const notJson = dumpDocument(line('{"name": "X", '), TARGET);
  assert.ok('status' in notJson && notJson.status === 'malformed' && /^line is not JSON \(.*position 14/.test(notJson.error), JSON.stringify(notJson));
  assert.deepEqual(dumpDocument(line('[1,2]'), TARGET), { status: 'malformed', error: 'line is not a JSON object' });
  assert.deepEqual(dumpDocument(line('{"name":"X","article_body":{"wikitext":""}}'), TARGET), {
    status: 'malformed',
    error: 'record has no article_body.html',
  });
  assert.deepEqual(dumpDocument({ bytes: null, length: 5_000_000, maxLineBytes: 1 << 20 }, TARGET), {
    status: 'malformed',
    error: 'line of 5000000 bytes is over --max-line-bytes 1048576',
  });
  const talk = dumpLine(articleRecord({ name: 'Talk:X', identifier: 1, html: parsoidPage('Talk:X', '<p>t</p>'), namespace: 1 }));
  assert.deepEqual(dumpDocument(line(talk), TARGET), { status: 'filtered', error: 'namespace 1 is not the article namespace' });
  const redirect = dumpLine(
    articleRecord({ name: 'Matryoshka', identifier: 2, html: parsoidPage('Matryoshka', '<link rel="mw:PageProp/redirect" href="./Nesting_doll"/>') }),
  );
  assert.deepEqual(dumpDocument(line(redirect), TARGET), { status: 'filtered', error: 'redirect to Nesting doll' });
  const empty = dumpLine(articleRecord({ name: 'Empty', identifier: 3, html: parsoidPage('Empty', '<section><div class="navbox">nav</div></section>') }));
  assert.deepEqual(dumpDocument(line(empty), TARGET), { status: 'filtered', error: 'no text' });
});

test('a record becomes the OBELICS layout with the article in general_metadata', () => {
  const html = parsoidPage(
    'Doll',
    '<p>Wooden.</p><figure typeof="mw:File/Thumb"><a><img resource="./File:D.jpg" ' +
      'src="//upload.wikimedia.org/wikipedia/commons/thumb/d/dd/D.jpg/220px-D.jpg" data-file-width="1000" data-file-height="1000" width="220" ' +
      'height="220"/></a><figcaption>A doll</figcaption></figure>',
  );
  const text = dumpLine(articleRecord({ name: 'Doll', identifier: 42, html, revision: 1234, dateModified: '2023-01-02T03:04:05Z', wikidata: 'Q1' }));
  const document = dumpDocument({ bytes: Buffer.from(text), length: text.length, maxLineBytes: 1 << 20 }, TARGET);
  assert.ok(!('status' in document));
  assert.deepEqual(document.texts, ['Doll\n\nWooden.', null, 'A doll']);
  assert.deepEqual(document.images, [null, 'https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/D.jpg/330px-D.jpg', null]);
  assert.equal(document.metadata[1]!.caption, 'A doll');
  assert.deepEqual(document.general_metadata, {
    url: 'https://en.wikipedia.org/wiki/Doll',
    name: 'Doll',
    identifier: 42,
    date_modified: '2023-01-02T03:04:05Z',
    revision: 1234,
    wikidata: 'Q1',
  });
});
