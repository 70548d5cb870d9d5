import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { readShard } from '../shards/tar-reader.ts';
import { S3Storage } from '../shards/storage/s3.ts';
import { readParquetRows } from '../sandbox/parquet-files.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { startWikimediaMirror, type WikimediaMirror } from '../sandbox/wikimedia-mirror.ts';
import { articleRecord, dumpLine, parsoidPage, writeDumpTarGz } from '../sandbox/wikipedia-dump.ts';
import { filesOf } from './helpers/pair-build.ts';
import { runCli } from './helpers/run-cli.ts';

const BIN = new URL('../bin/m4data.mjs', import.meta.url).pathname;
const FIXTURES = new URL('./fixtures/wikipedia/', import.meta.url);
const MAX_LINE = 5_000_000;

/** The originals of the fixtures' images, as their data-file-width/height say. */
const ORIGINALS = new Map(
  Object.entries({
    'Nesting_dolls.jpg': [3000, 2000],
    'Doll_painter.JPG': [1200, 1600],
    'Lindenberg_Castle_2019.jpg': [4000, 3000],
    'Germany_location_map.svg': [1000, 1353],
    'Plateau_north.jpg': [500, 375],
    'Plateau_map.svg': [800, 600],
    'Karst_spring.jpg': [300, 225],
    'Spring_flowers.jpg': [1600, 1200],
    'Winter_snow.jpg': [1600, 1200],
    'Poupées_russes.JPG': [4000, 6000],
    'Deep.jpg': [2000, 1500],
  }).map(([name, [width, height]]) => [name, { width: width!, height: height! }]),
);

async function fixture(name: string, title: string, identifier: number): Promise<string> {
  const html = await readFile(new URL(`${name}.html`, FIXTURES), 'utf8');
  return dumpLine(articleRecord({ name: title, identifier, html, revision: 1_000_000 + identifier }));
}

/** One row per line, in dump order; what each becomes is written out below, in EXPECTED. */
async function writeFixtureDump(dir: string): Promise<string> {
  const deep = parsoidPage(
    'Deep',
    `${'<div>'.repeat(100_000)}<p>Deep inside.</p><figure typeof="mw:File/Thumb"><a><img resource="./File:Deep.jpg" ` +
      `src="//upload.wikimedia.org/wikipedia/commons/thumb/d/de/Deep.jpg/220px-Deep.jpg" data-file-width="2000" data-file-height="1500" width="220" ` +
      `height="165"/></a><figcaption>At the bottom</figcaption></figure>${'</div>'.repeat(100_000)}`,
  );
  const member0 = [
    await fixture('thumb-figures', 'Nesting doll', 1),
    await fixture('infobox', 'Lindenberg Castle', 2),
    '{"name":"Broken","article_body":{"html":"<p>cut\n',
    await fixture('redirect', 'Matryoshka', 4),
    await fixture('gallery', 'Crimean plateaus', 5),
  ];
  const member1 = [
    dumpLine({ name: 'No body', identifier: 6, url: 'https://en.wikipedia.org/wiki/No_body' }),
    await fixture('math-table', 'Cyclic group', 7),
    await fixture('stub', 'Cot side', 8),
    `${'x'.repeat(MAX_LINE + 500_000)}\n`,
    await fixture('non-ascii', 'Matryoshka souvenir', 10),
    await fixture('disambiguation', 'Lindenberg', 11),
    dumpLine(articleRecord({ name: 'Deep', identifier: 12, html: deep })),
  ];
  return writeDumpTarGz(dir, 'enwiki-NS0-20230220-ENTERPRISE-HTML.json.tar.gz', [
    ['enwiki_namespace_0_0.ndjson', member0.join('')],
    ['enwiki_namespace_0_1.ndjson', member1.join('')],
  ]);
}

const M0 = 'enwiki_namespace_0_0.ndjson';
const M1 = 'enwiki_namespace_0_1.ndjson';
/** [member, line, status, error (a pattern), images kept] per row. */
const EXPECTED: [string, number, string, RegExp | null, number][] = [
  [M0, 1, 'success', null, 2],
  [M0, 2, 'success', null, 2],
  [M0, 3, 'malformed', /^line is not JSON \(/, 0],
  [M0, 4, 'filtered', /^redirect to Nesting doll$/, 0],
  [M0, 5, 'success', null, 5],
  [M1, 1, 'malformed', /^record has no article_body\.html$/, 0],
  [M1, 2, 'filtered', /^document has no image$/, 0],
  [M1, 3, 'filtered', /^document has no image$/, 0],
  [M1, 4, 'malformed', new RegExp(`^line of ${MAX_LINE + 500_000} bytes is over --max-line-bytes ${MAX_LINE}$`), 0],
  [M1, 5, 'success', null, 1],
  [M1, 6, 'filtered', /^disambiguation page$/, 0],
  [M1, 7, 'success', null, 1],
];

function buildArgs(input: string, output: string, mirror: WikimediaMirror, extra: string[] = []): string[] {
  return [
    'build',
    '--source',
    'wikipedia',
    '--input',
    input,
    '--output',
    output,
    '--wikimedia-base',
    mirror.base,
    '--allow-private-network',
    '127.0.0.1/32',
    '--max-line-bytes',
    String(MAX_LINE),
    '--quiet',
    ...extra,
  ];
}

async function setup(t: { after(fn: () => Promise<void>): void }, delayMs = 0) {
  const dir = await mkdtemp(join(tmpdir(), 'm4-wikibuild-'));
  const mirror = await startWikimediaMirror({ originals: ORIGINALS, delayMs });
  t.after(async () => {
    await mirror.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, mirror, dump: await writeFixtureDump(dir) };
}

async function samples(output: string): Promise<Map<string, Record<string, Buffer>>> {
  const out = new Map<string, Record<string, Buffer>>();
  for (const name of (await readdir(output)).filter((f) => f.endsWith('.tar')).sort()) {
    for await (const sample of readShard(join(output, name))) out.set(sample.key, sample.fields as Record<string, Buffer>);
  }
  return out;
}

test('build --source wikipedia from a dump tar.gz: every row packed or recorded with its member, line and reason', async (t) => {
  const { dir, mirror, dump } = await setup(t);
  const output = join(dir, 'out');
  const run = await runCli(buildArgs(dump, output, mirror, ['--samples-per-shard', '5']), { timeoutMs: 120_000 });
  assert.equal(run.code, 0, run.err);

  const outcomes = await readParquetRows(
    (await readdir(output))
      .filter((f) => f.endsWith('.outcomes.parquet'))
      .sort()
      .map((f) => join(output, f)),
  );
  assert.equal(outcomes.length, EXPECTED.length);
  EXPECTED.forEach(([member, line, status, error, images], row) => {
    const o = outcomes[row]!;
    assert.equal(o.row, BigInt(row));
    assert.equal(o.input_file, dump);
    assert.deepEqual([o.input_member, o.input_line, o.status], [member, BigInt(line), status], `row ${row}`);
    if (error) assert.match(String(o.error_message), error, `row ${row}`);
    assert.equal(o.images, images, `row ${row}: images kept`);
  });

  const built = await samples(output);
  assert.deepEqual([...built.keys()], ['000000000', '000000001', '000000004', '000000009', '000000011']);
  const doll = JSON.parse(built.get('000000000')!.json!.toString());
  assert.deepEqual(doll.texts, [
    'Nesting doll\n\nA nesting doll is a set of wooden dolls of decreasing size placed one inside another. The smallest doll is solid.\n\nHistory',
    null,
    'A set of nesting dolls opened\n\nThe first set was carved in 1890. It had eight dolls.',
    null,
    'Makers\n\nSergiev Posad workshops\nSemenov factory\nfounded 1924',
  ]);
  assert.deepEqual(doll.images, [null, '0.jpg', null, '1.jpg', null]);
  assert.equal(doll.metadata[1].caption, 'A set of nesting dolls opened');
  assert.equal(doll.metadata[1].src, 'https://upload.wikimedia.org/wikipedia/commons/thumb/1/1a/Nesting_dolls.jpg/500px-Nesting_dolls.jpg');
  assert.equal(doll.metadata[1].original_url, 'https://upload.wikimedia.org/wikipedia/commons/1/1a/Nesting_dolls.jpg');
  assert.equal(doll.metadata[3].alt_text, 'A painter at work');
  assert.deepEqual(doll.general_metadata, {
    url: 'https://en.wikipedia.org/wiki/Nesting_doll',
    name: 'Nesting doll',
    identifier: 1,
    date_modified: '2023-02-01T00:00:00Z',
    revision: 1_000_001,
  });
  // The 500 px rendition (500x333) was downloaded from the mirror and brought to 256 on its shorter side.
  assert.equal(mirror.hits('/wikipedia/commons/thumb/1/1a/Nesting_dolls.jpg/500px-Nesting_dolls.jpg'), 1);
  const first = await sharp(built.get('000000000')!['0.jpg']!).metadata();
  assert.deepEqual([first.width, first.height], [384, 256]);
  // The 330 px rendition of the 4000x6000 portrait, 330x495, to 256x384.
  const souvenir = await sharp(built.get('000000009')!['0.jpg']!).metadata();
  assert.deepEqual([souvenir.width, souvenir.height], [256, 384]);
  assert.equal(mirror.hits('/wikipedia/commons/thumb/8/8d/Poupées_russes.JPG/330px-Poupées_russes.JPG'), 1);
  // Originals are fetched only where no standard width is smaller than them; nothing else was asked for.
  assert.equal(mirror.hits('/wikipedia/commons/b/b4/Plateau_north.jpg'), 1);
  assert.equal(mirror.requested().length, 11);

  const gallery = JSON.parse(built.get('000000004')!.json!.toString());
  assert.deepEqual(gallery.images, [null, '0.jpg', null, '1.jpg', null, '2.jpg', '3.jpg', null, '4.jpg', null]);
  const deep = JSON.parse(built.get('000000011')!.json!.toString());
  assert.deepEqual(deep.texts, ['Deep\n\nDeep inside.', null, 'At the bottom']);
});

test('extract writes the OBELICS layout, and building from it gives the same shards as building from the dump', async (t) => {
  const { dir, mirror, dump } = await setup(t);
  const docs = join(dir, 'docs.parquet');
  const extracted = await runCli(['extract', '--source', 'wikipedia', '--input', dump, '--output', docs, '--max-line-bytes', String(MAX_LINE), '--json'], {
    timeoutMs: 120_000,
  });
  assert.equal(extracted.code, 0, extracted.err);
  const summary = JSON.parse(extracted.out);
  assert.deepEqual([summary.rows, summary.documents, summary.images, summary.skipped], [12, 7, 11, { filtered: 2, malformed: 3 }]);
  const rows = await readParquetRows([docs]);
  assert.deepEqual(
    rows.map((r) => JSON.parse(r.general_metadata as string).name),
    ['Nesting doll', 'Lindenberg Castle', 'Crimean plateaus', 'Cyclic group', 'Cot side', 'Matryoshka souvenir', 'Deep'],
  );
  assert.deepEqual(rows[1]!.images, [
    null,
    'https://upload.wikimedia.org/wikipedia/commons/thumb/5/5c/Lindenberg_Castle_2019.jpg/500px-Lindenberg_Castle_2019.jpg',
    null,
    'https://upload.wikimedia.org/wikipedia/commons/thumb/e/e4/Germany_location_map.svg/330px-Germany_location_map.svg.png',
    null,
  ]);
  assert.deepEqual(rows[1]!.texts, [
    'Lindenberg Castle',
    null,
    'The castle from the south in 2019',
    null,
    'Lindenberg Castle (Burg Lindenberg) is a castle in Bavaria, Germany.',
  ]);
  assert.equal(JSON.parse(rows[1]!.metadata as string)[1].caption, 'The castle from the south in 2019');

  const again = await runCli(['extract', '--source', 'wikipedia', '--input', dump, '--output', docs], { timeoutMs: 60_000 });
  assert.equal(again.code, 2, 'an existing output is refused');
  assert.match(again.err, /exists; extract never overwrites/);

  const fromDump = join(dir, 'from-dump');
  const fromDocs = join(dir, 'from-docs');
  assert.equal((await runCli(buildArgs(dump, fromDump, mirror), { timeoutMs: 120_000 })).code, 0);
  const run = await runCli(buildArgs(docs, fromDocs, mirror), { timeoutMs: 120_000 });
  assert.equal(run.code, 0, run.err);
  // Row keys differ (the parquet holds only the documents), samples do not.
  const a = [...(await samples(fromDump)).values()];
  const b = [...(await samples(fromDocs)).values()];
  assert.equal(a.length, 5);
  assert.equal(b.length, 5);
  for (let i = 0; i < a.length; i++) {
    const ja = JSON.parse(a[i]!.json!.toString());
    const jb = JSON.parse(b[i]!.json!.toString());
    assert.deepEqual({ ...jb, key: undefined }, { ...ja, key: undefined });
    for (const field of Object.keys(a[i]!)) if (field !== 'json') assert.ok(a[i]![field]!.equals(b[i]![field]!), field);
  }
});

test('the dump read from s3rver gives the same shards as read locally', async (t) => {
  const { dir, mirror, dump } = await setup(t);
  const s3 = await startS3Server();
  t.after(() => s3.stop());
  const restore = applyEnv(s3.env);
  await new S3Storage(`s3://${s3.bucket}`).write('dumps/enwiki.json.tar.gz', await readFile(dump));
  restore();
  const local = join(dir, 'local');
  const remote = join(dir, 'remote');
  assert.equal((await runCli(buildArgs(dump, local, mirror), { timeoutMs: 120_000 })).code, 0);
  const run = await runCli(buildArgs(`s3://${s3.bucket}/dumps/enwiki.json.tar.gz`, remote, mirror), { timeoutMs: 120_000, env: { ...process.env, ...s3.env } });
  assert.equal(run.code, 0, run.err);
  const a = await filesOf(local);
  const b = await filesOf(remote);
  for (const name of Object.keys(a).filter((n) => n.endsWith('.tar') || n.endsWith('.idx.json') || n.endsWith('.images.parquet'))) {
    assert.ok(a[name]!.equals(b[name]!), `${name} differs`);
  }
  const outcomes = await readParquetRows([join(remote, 'wikipedia-000000.outcomes.parquet')]);
  assert.equal(outcomes[0]!.input_file, `s3://${s3.bucket}/dumps/enwiki.json.tar.gz`);
});

test('--worker builds and a build killed with SIGKILL then resumed are byte-identical to one uninterrupted build', async (t) => {
  const { dir, mirror, dump } = await setup(t, 150);
  const shardArgs = ['--samples-per-shard', '2', '--concurrency', '2'];
  const clean = join(dir, 'clean');
  assert.equal((await runCli(buildArgs(dump, clean, mirror, shardArgs), { timeoutMs: 120_000 })).code, 0);

  const split = join(dir, 'split');
  const workers = await Promise.all([0, 1].map((i) => runCli(buildArgs(dump, split, mirror, [...shardArgs, '--worker', `${i}/2`]), { timeoutMs: 120_000 })));
  for (const w of workers) assert.equal(w.code, 0, w.err);
  const merged = await runCli(['build', '--output', split, '--merge'], { timeoutMs: 60_000 });
  assert.equal(merged.code, 0, merged.err);

  const killed = join(dir, 'killed');
  const child = spawn(process.execPath, [BIN, ...buildArgs(dump, killed, mirror, shardArgs)], { stdio: 'ignore' });
  const published = async () => (await readdir(killed).catch(() => [] as string[])).filter((f) => f.endsWith('.stats.json')).length;
  const deadline = Date.now() + 60_000;
  while ((await published()) < 2 && Date.now() < deadline) await sleep(20);
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  const atKill = await published();
  assert.ok(atKill >= 2 && atKill < 6, `killed mid-way (${atKill} of 6 shards published)`);
  const resumed = await runCli(buildArgs(dump, killed, mirror, shardArgs), { timeoutMs: 120_000 });
  assert.equal(resumed.code, 0, resumed.err);

  const expected = await filesOf(clean);
  assert.ok('manifest.json' in expected);
  for (const [name, other] of [
    ['split', await filesOf(split)],
    ['resumed', await filesOf(killed)],
  ] as const) {
    assert.deepEqual(Object.keys(other), Object.keys(expected), name);
    for (const file of Object.keys(expected)) assert.ok(other[file]!.equals(expected[file]!), `${name}: ${file} differs`);
  }
});
