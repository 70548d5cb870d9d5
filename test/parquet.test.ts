import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { blobValue } from '@duckdb/node-api';
import { isM4Error } from '../core/errors.ts';
import type { ColumnSpec } from '../pipelines/engine/metadata/columns.ts';
import { readMetadata, type MetadataBatch, type ReadMetadataOptions } from '../pipelines/engine/metadata/read-metadata.ts';
import { countRepeatedUrls } from '../pipelines/engine/metadata/count-url-repeats.ts';
import { writeParquet, type ParquetColumn } from '../pipelines/engine/metadata/write-parquet.ts';
import { withConnection } from '../pipelines/engine/metadata/duckdb.ts';
import { sqlString } from '../pipelines/engine/metadata/sql-text.ts';

let dir = '';

async function sql(...statements: string[]): Promise<void> {
  await withConnection(async (connection) => {
    for (const statement of statements) await connection.run(statement);
  });
}

async function readAll(inputs: string[], options: ReadMetadataOptions): Promise<{ rows: Record<string, unknown>[]; batches: MetadataBatch[] }> {
  const batches: MetadataBatch[] = [];
  for await (const batch of readMetadata(inputs, options)) batches.push(batch);
  return { rows: batches.flatMap((b) => b.rows), batches };
}

/** LAION-like rows `from` .. `to`-1, each value a function of the row number (see `laionRow`). */
function laionSelect(from: number, to: number): string {
  return `SELECT 'https://example.com/img/' || i || '.jpg' AS URL,
      CASE WHEN i % 97 = 0 THEN NULL ELSE 'caption ' || i || ' ✓' END AS TEXT,
      (100 + i)::BIGINT AS WIDTH, (200 + i % 50)::INTEGER AS HEIGHT,
      (i / 8)::DOUBLE AS similarity, ((i % 4) / 4)::FLOAT AS punsafe,
      CASE WHEN i % 10 = 0 THEN 'NaN'::FLOAT ELSE 0.5::FLOAT END AS pwatermark,
      (CASE WHEN i = 0 THEN 4611686018427387904 ELSE i * 1000003 END)::BIGINT AS hash
    FROM range(${from}, ${to}) r(i)`;
}

function laionRow(i: number): Record<string, unknown> {
  return {
    URL: `https://example.com/img/${i}.jpg`,
    TEXT: i % 97 === 0 ? null : `caption ${i} ✓`,
    WIDTH: 100 + i,
    HEIGHT: 200 + (i % 50),
    similarity: i / 8,
    punsafe: (i % 4) / 4,
    pwatermark: i % 10 === 0 ? NaN : 0.5,
    hash: i === 0 ? 2n ** 62n : i * 1000003,
  };
}

const LAION: ColumnSpec[] = [
  { name: 'URL', type: 'string', required: true },
  { name: 'TEXT', type: 'string', required: true },
  { name: 'WIDTH', type: 'integer', required: true },
  { name: 'HEIGHT', type: 'integer', required: true },
  { name: 'similarity', type: 'number', required: true },
  { name: 'punsafe', type: 'number', required: true },
  { name: 'pwatermark', type: 'number', required: true },
  { name: 'hash', type: 'integer', required: true },
];

function sqlList(items: (string | null)[] | null): string {
  return items === null ? 'NULL::VARCHAR[]' : `[${items.map((s) => (s === null ? 'NULL' : sqlString(s))).join(', ')}]::VARCHAR[]`;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'm4-parquet-'));
  await mkdir(join(dir, 'laion'));
  // Row groups of 1000 so that DuckDB's chunks do not line up with batches or files.
  await sql(
    `COPY (${laionSelect(3000, 5000)}) TO ${sqlString(join(dir, 'laion', 'part-b.parquet'))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000)`,
    `COPY (${laionSelect(0, 3000)}) TO ${sqlString(join(dir, 'laion', 'part-a.parquet'))} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000)`,
  );
});

after(() => rm(dir, { recursive: true, force: true }));

test('LAION-like files read in order, with projection, batches and a limit across files', async () => {
  const a = join(dir, 'laion', 'part-a.parquet');
  const b = join(dir, 'laion', 'part-b.parquet');

  const all = await readAll([a, b], { columns: LAION, batchSize: 700 });
  assert.equal(all.rows.length, 5000);
  all.rows.forEach((row, i) => assert.deepEqual(row, laionRow(i)));
  all.batches.forEach((batch, k) => {
    assert.equal(batch.firstIndex, k * 700);
    assert.equal(batch.rows.length, k < all.batches.length - 1 ? 700 : 5000 % 700);
  });
  assert.equal(typeof all.rows[0]!.hash, 'bigint', 'an int64 beyond 2^53 stays a bigint');
  assert.equal(typeof all.rows[1]!.hash, 'number');

  const projected = await readAll([a, b], { columns: [LAION[0]!, LAION[4]!], limit: 3500 });
  assert.equal(projected.rows.length, 3500);
  assert.deepEqual(Object.keys(projected.rows[0]!).sort(), ['URL', 'similarity']);
  assert.deepEqual(projected.rows[3499], { URL: 'https://example.com/img/3499.jpg', similarity: 3499 / 8 });
  assert.deepEqual(
    projected.batches.map((x) => x.rows.length),
    [2048, 1452],
  );

  // A glob matches part-a before part-b whatever order they were written in; explicit inputs keep their order.
  const globbed = await readAll([join(dir, 'laion', 'part-*.parquet')], { columns: [LAION[0]!] });
  assert.deepEqual(
    globbed.rows,
    all.rows.map((r) => ({ URL: r.URL })),
  );
  const reversed = await readAll([b, a], { columns: [LAION[0]!], limit: 1 });
  assert.deepEqual(reversed.rows, [{ URL: 'https://example.com/img/3000.jpg' }]);

  assert.equal((await readAll([a], { columns: LAION, limit: 0 })).rows.length, 0);
});

test('absent optional columns read as null, whatever their type', async () => {
  const optional: ColumnSpec[] = (['string', 'number', 'integer', 'bytes', 'string_list', 'image_struct', 'json_string'] as const).map((type) => ({
    name: `missing_${type}`,
    type,
    required: false,
  }));
  const { rows } = await readAll([join(dir, 'laion', 'part-a.parquet')], { columns: [LAION[0]!, ...optional], limit: 3 });
  assert.equal(rows.length, 3);
  for (const spec of optional) assert.equal(rows[2]![spec.name], null);
  assert.equal(rows[2]!.URL, 'https://example.com/img/2.jpg');
});

test('schema mismatches stop with E_INPUT naming the file, the column, what was expected and found', async () => {
  const file = join(dir, 'bad-types.parquet');
  await sql(`COPY (SELECT 'https://x/1.jpg' AS URL, 42::INTEGER AS TEXT) TO ${sqlString(file)} (FORMAT parquet)`);

  await assert.rejects(readAll([file], { columns: [...LAION.slice(0, 1), { name: 'caption', type: 'string', required: true }] }), (err: unknown) => {
    assert.ok(isM4Error(err, 'E_INPUT'));
    assert.match(err.message, new RegExp(`${file}.*"caption".*missing.*VARCHAR`));
    assert.deepEqual(err.context, { file, column: 'caption', expected: 'VARCHAR', found: 'missing' });
    return true;
  });
  await assert.rejects(readAll([file], { columns: LAION.slice(0, 2) }), (err: unknown) => {
    assert.ok(isM4Error(err, 'E_INPUT'));
    assert.match(err.message, new RegExp(`${file}.*"TEXT" is INTEGER, expected string: VARCHAR`));
    return true;
  });
  // An integer column is a fine `number`, but a string is not an integer.
  assert.equal((await readAll([file], { columns: [{ name: 'TEXT', type: 'number', required: true }] })).rows[0]!.TEXT, 42);
  await assert.rejects(readAll([file], { columns: [{ name: 'URL', type: 'integer', required: true }] }), (err: unknown) => isM4Error(err, 'E_INPUT'));

  const notParquet = join(dir, 'not.parquet');
  await writeFile(notParquet, 'hello');
  await assert.rejects(readAll([notParquet], { columns: LAION }), (err: unknown) => isM4Error(err, 'E_INPUT') && err.message.includes(notParquet));
  await assert.rejects(readAll([join(dir, 'absent.parquet')], { columns: LAION }), (err: unknown) => isM4Error(err, 'E_NOT_FOUND'));
  await assert.rejects(readAll([join(dir, 'nothing-*.parquet')], { columns: LAION }), (err: unknown) => isM4Error(err, 'E_NOT_FOUND'));
  await assert.rejects(readAll([notParquet], { columns: LAION, batchSize: 0 }), (err: unknown) => isM4Error(err, 'E_USAGE'));
});

test('PMD-like image structs and BLOBs round-trip byte for byte; null structs, bytes and URLs stay null', async () => {
  const file = join(dir, 'pmd.parquet');
  const payloads = [
    Buffer.alloc(0),
    Buffer.from([0, 255, 0]),
    Buffer.alloc(12, 7),
    Buffer.alloc(13, 9),
    Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) % 256)),
  ];
  await withConnection(async (connection) => {
    await connection.run('CREATE TEMP TABLE pmd (image STRUCT(bytes BLOB, path VARCHAR), image_url VARCHAR, text VARCHAR, thumb BLOB)');
    for (const [i, bytes] of payloads.entries()) {
      await connection.run(`INSERT INTO pmd VALUES ({'bytes': $1, 'path': $2}, $3, $4, $5)`, [
        blobValue(bytes),
        `img-${i}.jpg`,
        i % 2 === 0 ? null : `https://pmd/${i}.jpg`,
        `text ${i}`,
        blobValue(bytes.subarray(0, 5)),
      ]);
    }
    await connection.run(`INSERT INTO pmd VALUES (NULL, 'https://pmd/null.jpg', 'no image', NULL)`);
    await connection.run(`INSERT INTO pmd VALUES ({'bytes': NULL, 'path': 'only-a-path.jpg'}, NULL, 'path only', NULL)`);
    await connection.run(`COPY pmd TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`);
  });

  const columns: ColumnSpec[] = [
    { name: 'image', type: 'image_struct', required: true },
    { name: 'image_url', type: 'string', required: false },
    { name: 'text', type: 'string', required: true },
    { name: 'thumb', type: 'bytes', required: true },
  ];
  const { rows } = await readAll([file], { columns });
  assert.equal(rows.length, payloads.length + 2);
  for (const [i, bytes] of payloads.entries()) {
    const image = rows[i]!.image as { bytes: Buffer; path: string };
    assert.ok(Buffer.isBuffer(image.bytes));
    assert.ok(image.bytes.equals(bytes), `payload ${i} (${bytes.length} bytes)`);
    assert.equal(image.path, `img-${i}.jpg`);
    assert.equal(rows[i]!.image_url, i % 2 === 0 ? null : `https://pmd/${i}.jpg`);
    assert.ok((rows[i]!.thumb as Buffer).equals(bytes.subarray(0, 5)));
  }
  assert.deepEqual(rows[payloads.length], { image: null, image_url: 'https://pmd/null.jpg', text: 'no image', thumb: null });
  assert.deepEqual(rows[payloads.length + 1]!.image, { bytes: null, path: 'only-a-path.jpg' });
});

test('OBELICS-like lists keep their null items; JSON strings come back as strings', async () => {
  const file = join(dir, 'obelics.parquet');
  const docs = [
    { images: [null, 'https://i/1.png', null], texts: ['Intro', null, 'Outro "quoted" \\ \n tab\t'], metadata: '[{"document_url": "https://d/1"}]' },
    { images: null, texts: [], metadata: '{}' },
    { images: ['https://i/2.png', null], texts: [null, 'Ünïcödé 😀 中文'], metadata: '[{"a": [1, 2]}]' },
  ];
  const values = docs.map((d) => `(${sqlList(d.images)}, ${sqlList(d.texts)}, ${sqlString(d.metadata)}, ${sqlString(d.metadata)}::JSON)`);
  await sql(
    `COPY (SELECT * FROM (VALUES ${values.join(', ')}) v(images, texts, metadata, general_metadata)) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`,
  );

  const { rows } = await readAll([file], {
    columns: [
      { name: 'images', type: 'string_list', required: true },
      { name: 'texts', type: 'string_list', required: true },
      { name: 'metadata', type: 'json_string', required: true },
      { name: 'general_metadata', type: 'json_string', required: true },
    ],
  });
  // The JSON-typed column comes back as its text, not as parsed JSON.
  assert.deepEqual(
    rows,
    docs.map((d) => ({ ...d, general_metadata: d.metadata })),
  );
});

test('strings of any Unicode survive the JSON route exactly', async () => {
  const file = join(dir, 'strings.parquet');
  await fc.assert(
    fc.asyncProperty(fc.array(fc.option(fc.string({ unit: 'grapheme', maxLength: 40 }), { nil: null }), { minLength: 1, maxLength: 30 }), async (strings) => {
      const bytes = await writeParquet(
        strings.map((s) => ({ s })),
        [{ name: 's', type: 'VARCHAR' }],
      );
      await writeFile(file, bytes);
      const { rows } = await readAll([file], { columns: [{ name: 's', type: 'string', required: true }] });
      assert.deepEqual(
        rows.map((r) => r.s),
        strings,
      );
    }),
    { numRuns: 25, examples: [[['\u0000', '\u0001\u001f\u007f', '"\\/\b\f\n\r\t', '\u2028\u2029', '\ud83d\ude00', '']]] },
  );
});

test('a file rewritten in place at the same size reads back new, never cached', async () => {
  // Two versions whose files have the same size (333 bytes): DuckDB's external file cache served the first
  // version's blocks for the second ("ZSTD Decompression failure") until the cache was switched off.
  const versions = [
    ['𐧭⪇⿏ﷁ𑄿𝌭ѓ𛄟㈖', '꛵𝠌', '', 'ᦨⵯ🏁𞄗ꪄᘕ𖬟ꗥ𐳻'],
    ['𒐶⡸', 'Ṗ🎁ᖏ𖡝', '💹᧼ጤꤣἾ᪑Ⓤ𓇾ꑛ'],
  ];
  const file = join(dir, 'rewritten.parquet');
  const sizes: number[] = [];
  for (const strings of versions) {
    const bytes = await writeParquet(
      strings.map((s) => ({ s })),
      [{ name: 's', type: 'VARCHAR' }],
    );
    sizes.push(bytes.length);
    await writeFile(file, bytes);
    const { rows } = await readAll([file], { columns: [{ name: 's', type: 'string', required: true }] });
    assert.deepEqual(
      rows.map((r) => r.s),
      strings,
    );
  }
  assert.equal(sizes[0], sizes[1], 'the premise: both versions have the same size');
});

test('a 300k-row file streams with bounded memory', async () => {
  const file = join(dir, 'big.parquet');
  await sql(`COPY (${laionSelect(0, 300_000)}) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`);
  const startRss = process.memoryUsage().rss;
  let peakRss = startRss;
  let count = 0;
  let last: Record<string, unknown> | undefined;
  for await (const batch of readMetadata([file], { columns: LAION })) {
    assert.equal(batch.firstIndex, count);
    count += batch.rows.length;
    last = batch.rows.at(-1);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }
  assert.equal(count, 300_000);
  assert.deepEqual(last, laionRow(299_999));
  // The rows themselves would take ~150 MB as JS objects if all were kept; growth stays well below 2x that.
  assert.ok(peakRss - startRss < 300e6, `rss grew by ${Math.round((peakRss - startRss) / 1e6)} MB`);
});

test('countRepeatedUrls counts the documents a URL occurs in, once per document, within the limit', async () => {
  const [A, B, C] = ['https://a/x.jpg', 'https://b/x.jpg', 'https://c/x.jpg'];
  const doc = (k: number): (string | null)[] | null => {
    if (k === 22) return null;
    if (k === 23) return [];
    const urls: (string | null)[] = [`https://unique/${k}.jpg`, null];
    if (k <= 10) urls.push(...(k === 0 ? [A!, A!] : [A!])); // A: 11 documents, twice in one
    if (k <= 9) urls.push(...(k === 1 ? [B!, B!, B!] : [B!])); // B: 10 documents
    if (k >= 11) urls.push(C!); // C: documents 11..21, so 11 of them, 10 within the first 21 rows
    return urls;
  };
  const write = (name: string, from: number, to: number) => {
    const values = Array.from({ length: to - from }, (_, j) => `(${from + j}, ${sqlList(doc(from + j))})`);
    return `COPY (SELECT * FROM (VALUES ${values.join(', ')}) v(id, images)) TO ${sqlString(join(dir, 'repeats', name))} (FORMAT parquet)`;
  };
  await mkdir(join(dir, 'repeats'));
  await sql(write('1.parquet', 0, 12), write('2.parquet', 12, 24));
  const files = [join(dir, 'repeats', '1.parquet'), join(dir, 'repeats', '2.parquet')];

  assert.deepEqual(
    await countRepeatedUrls(files, { column: 'images', threshold: 10 }),
    new Map([
      [A, 11],
      [C, 11],
    ]),
  );
  assert.deepEqual(await countRepeatedUrls([join(dir, 'repeats', '*.parquet')], { column: 'images', threshold: 10, limit: 21 }), new Map([[A, 11]]));
  assert.deepEqual(
    await countRepeatedUrls(files, { column: 'images', threshold: 9, limit: 12 }),
    new Map([
      [A, 11],
      [B, 10],
    ]),
  );
  assert.deepEqual(await countRepeatedUrls(files, { column: 'images', threshold: 10, limit: 0 }), new Map());
  await assert.rejects(countRepeatedUrls(files, { column: 'id', threshold: 1 }), (err: unknown) => isM4Error(err, 'E_INPUT') && err.message.includes('"id"'));

  const tempDir = join(dir, 'repeats-temp');
  await mkdir(tempDir);
  const viaStorage = await countRepeatedUrls([pathToFileURL(files[0]!).href, files[1]!], { column: 'images', threshold: 10, tempDir });
  assert.deepEqual(
    viaStorage,
    new Map([
      [A, 11],
      [C, 11],
    ]),
  );
  assert.deepEqual(await readdir(tempDir), [], 'the temporary copy is deleted');
});

test('writeParquet writes rows in order with nulls, reads back through DuckDB, and is byte-deterministic', async () => {
  const schema: ParquetColumn[] = [
    { name: 'shard', type: 'VARCHAR' },
    { name: 'bytes', type: 'BIGINT' },
    { name: 'samples', type: 'INTEGER' },
    { name: 'seconds', type: 'DOUBLE' },
    { name: 'ok', type: 'BOOLEAN' },
  ];
  const rows = Array.from({ length: 10_000 }, (_, i) => ({
    shard: i % 13 === 0 ? null : `shard-${String(i).padStart(5, '0')} ✓`,
    bytes: i === 1 ? 2n ** 60n : i * 1_000_000,
    samples: i % 7 === 0 ? undefined : i,
    seconds: i / 3,
    ok: i % 2 === 0,
  }));
  const bytes = await writeParquet(rows, schema);
  assert.equal(bytes.subarray(0, 4).toString(), 'PAR1');
  assert.ok(bytes.equals(await writeParquet(rows, schema)), 'same rows, same bytes');

  const file = join(dir, 'outcomes.parquet');
  await writeFile(file, bytes);
  await withConnection(async (connection) => {
    const described = await connection.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlString(file)})`);
    assert.deepEqual(
      described.getRowObjectsJS().map((r) => [r.column_name, r.column_type]),
      schema.map((c) => [c.name, c.type]),
    );
    const codecs = await connection.runAndReadAll(`SELECT DISTINCT compression FROM parquet_metadata(${sqlString(file)})`);
    assert.deepEqual(codecs.getRowsJS(), [['ZSTD']]);
    const back = (await connection.runAndReadAll(`SELECT * FROM read_parquet(${sqlString(file)})`)).getRowObjectsJS();
    assert.equal(back.length, rows.length);
    back.forEach((row, i) => {
      const want = rows[i]!;
      assert.deepEqual(row, { ...want, bytes: BigInt(want.bytes), samples: want.samples ?? null });
    });
  });

  const empty = await writeParquet([], schema);
  await writeFile(file, empty);
  assert.equal((await readAll([file], { columns: [{ name: 'shard', type: 'string', required: true }] })).rows.length, 0);
  await assert.rejects(writeParquet([{ shard: 1 }], schema), (err: unknown) => isM4Error(err, 'E_USAGE') && err.message.includes('"shard"'));
  await assert.rejects(writeParquet([{ shard: 'x', bytes: 1.5 }], schema), (err: unknown) => isM4Error(err, 'E_USAGE'));
});

test('URLs are read through the storage layer via a temporary copy that is deleted, even when reading stops early', async () => {
  const local = join(dir, 'laion', 'part-a.parquet');
  const url = pathToFileURL(local).href;
  const tempDir = join(dir, 'remote-temp');
  await mkdir(tempDir);

  const viaStorage = await readAll([url, join(dir, 'laion', 'part-b.parquet')], { columns: LAION, tempDir, limit: 3100 });
  assert.equal(viaStorage.rows.length, 3100);
  viaStorage.rows.forEach((row, i) => assert.deepEqual(row, laionRow(i)));
  assert.deepEqual(await readdir(tempDir), []);

  for await (const batch of readMetadata([url], { columns: LAION, tempDir, batchSize: 10 })) {
    assert.equal(batch.rows.length, 10);
    assert.ok((await readdir(tempDir)).length > 0, 'the copy exists while it is read');
    break;
  }
  assert.deepEqual(await readdir(tempDir), []);

  await assert.rejects(readAll([pathToFileURL(join(dir, 'absent.parquet')).href], { columns: LAION, tempDir }), (err: unknown) =>
    isM4Error(err, 'E_NOT_FOUND'),
  );
  assert.deepEqual(await readdir(tempDir), []);
});
