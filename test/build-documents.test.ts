import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { findSource } from '../pipelines/registry.ts';
import { readShard } from '../shards/tar-reader.ts';
import { countTokens, documentSegments, END_OF_DOCUMENT } from '../trainer-bridge/token-layout.ts';
import { startImageServer, TEST_FETCH } from './helpers/pair-build.ts';
import { readParquetRows, writeParquetFixture, type FixtureValue } from '../sandbox/parquet-files.ts';
import { jpeg } from '../sandbox/images.ts';
import type { ReadSample } from '../shards/sample.ts';

const server = await startImageServer();
const dir = await mkdtemp(join(tmpdir(), 'm4-docs-'));
test.after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

type Doc = { images: (string | null)[]; texts: (string | null)[]; expect: string; error?: RegExp };
const img = (path: string) => server.url(path);
const T = (s: string) => s;

/** OBELICS documents exercising every rule; `expect` is the document's outcome. */
function documents(): Doc[] {
  const docs: Doc[] = [
    { images: [null, img('/f/good0.jpg'), null, img('/f/good1.jpg')], texts: [T('Intro text.'), null, T('Between images.'), null], expect: 'success' },
    { images: [img('/status/404'), null, img('/f/good2.jpg')], texts: [null, T('A page with a dead image.'), null], expect: 'success' },
    {
      images: [img('/status/404?a'), null, img('/status/500?b')],
      texts: [null, T('Only dead images.'), null],
      expect: 'failed_to_download',
      error: /no image left/,
    },
    { images: [img('/f/tiny.jpg'), null, img('/f/good3.jpg')], texts: [null, T('One image too small.'), null], expect: 'success' },
    { images: [null, img('/f/wide.jpg')], texts: [T('Only a too wide image.'), null], expect: 'filtered', error: /no image left/ },
    { images: [null, img('/f/good0.jpg?x')], texts: [T('Lists of different lengths.')], expect: 'malformed', error: /images has 2 entries, texts 1/ },
    { images: [img('/f/good0.jpg?y'), null], texts: [T('Both at position 0'), T('text')], expect: 'malformed', error: /position 0 has both/ },
    { images: [img('/f/good0.jpg?z'), null], texts: [null, null], expect: 'malformed', error: /position 1 has neither/ },
    { images: [img('/f/good4.jpg')], texts: [null], expect: 'filtered', error: /no text/ },
  ];
  // One URL in 12 documents (more than the default 10) is removed from all of them; each keeps its own image.
  for (let i = 0; i < 12; i++) {
    docs.push({
      images: [img('/f/good5.jpg?banner'), null, img(`/f/good6.jpg?doc=${i}`)],
      texts: [null, T(`Document ${i} with a site banner.`), null],
      expect: 'success',
    });
  }
  const thirty = Array.from({ length: 30 }, (_, i) => img(`/f/good7.jpg?n=${i}`));
  docs.push({ images: [...thirty, null], texts: [...thirty.map(() => null), T('Thirty images.')], expect: 'success' });
  const thirtyOne = Array.from({ length: 31 }, (_, i) => img(`/f/good7.jpg?m=${i}`));
  docs.push({ images: [...thirtyOne, null], texts: [...thirtyOne.map(() => null), T('Too many.')], expect: 'filtered', error: /31 images > 30/ });
  docs.push({
    images: [null, img('/f/good1.jpg?eod'), null],
    texts: [T(`First article ends here.\n\n${END_OF_DOCUMENT}\n\nSecond article.`), null, T('Caption of the second.')],
    expect: 'success',
  });
  return docs;
}

const docs = documents();
const input = join(dir, 'obelics.parquet');
await writeParquetFixture(
  input,
  { images: 'VARCHAR[]', texts: 'VARCHAR[]', metadata: 'VARCHAR', general_metadata: 'VARCHAR' },
  docs.map(
    (d, i) =>
      [
        d.images,
        d.texts,
        JSON.stringify(d.images.map((u) => (u ? { src: u, alt_text: 'alt' } : null))),
        JSON.stringify({ url: `https://example.org/page/${i}`, warc_record_offset: i }),
      ] as FixtureValue[],
  ),
);

async function build(output: string, extra: Record<string, unknown> = {}) {
  return runBuild(
    resolveBuildOptions({ adapter: findSource('obelics'), inputs: [input], output, samplesPerShard: 10, concurrency: 16, fetch: TEST_FETCH, ...extra }),
  );
}

async function parquetOf(output: string, suffix: string) {
  const files = (await readdir(output))
    .filter((f) => f.endsWith(suffix))
    .sort()
    .map((f) => join(output, f));
  return readParquetRows(files);
}

async function samplesOf(output: string): Promise<ReadSample[]> {
  const samples: ReadSample[] = [];
  for (const name of (await readdir(output)).filter((f) => f.endsWith('.tar')).sort()) for await (const s of readShard(join(output, name))) samples.push(s);
  return samples;
}

test('documents: every rule ends each document and each image with the right status', async () => {
  const output = join(dir, 'obelics');
  const summary = await build(output);
  assert.equal(summary.rows, docs.length);
  const outcomes = await parquetOf(output, '.outcomes.parquet');
  for (const [i, d] of docs.entries()) {
    assert.equal(outcomes[i]!.status, d.expect, `document ${i}: ${outcomes[i]!.error_message}`);
    if (d.error) assert.match(String(outcomes[i]!.error_message), d.error, `document ${i}`);
  }

  // Every image URL of the input has exactly one record.
  const images = await parquetOf(output, '.images.parquet');
  const inputImages = docs.flatMap((d, row) => d.images.flatMap((u, position) => (u ? [`${row}:${position}:${u}`] : [])));
  assert.deepEqual(images.map((r) => `${r.row}:${r.position}:${r.url}`).sort(), inputImages.sort());
  const byUrl = (row: number, position: number) => images.find((r) => Number(r.row) === row && r.position === position)!;
  assert.equal(byUrl(1, 0).status, 'failed_to_download');
  assert.equal(byUrl(1, 2).status, 'success');
  assert.match(String(byUrl(3, 0).error), /too small/);
  assert.match(String(byUrl(9, 0).error), /url in 12 documents > 10/);
  assert.equal(byUrl(9, 2).status, 'success');
  assert.equal(byUrl(5, 1).status, 'malformed');

  // The tars hold exactly the successful documents, with exactly the successful images.
  const samples = await samplesOf(output);
  const successes = outcomes.filter((o) => o.status === 'success');
  assert.deepEqual(
    samples.map((s) => s.key),
    successes.map((o) => o.key),
  );
  const keptImages = images.filter((r) => r.status === 'success');
  assert.equal(
    samples.reduce((n, s) => n + Object.keys(s.fields).filter((f) => f.endsWith('.jpg')).length, 0),
    keptImages.length,
  );
  assert.equal(summary.manifest?.totals.images, keptImages.length);
});

test('documents round trip: the interleaving read back equals the input order minus recorded drops', async () => {
  const output = join(dir, 'obelics');
  const images = await parquetOf(output, '.images.parquet');
  for (const sample of await samplesOf(output)) {
    const row = Number(sample.key);
    const doc = docs[row]!;
    const json = JSON.parse(sample.fields.json!.toString());
    const dropped = new Set(images.filter((r) => Number(r.row) === row && r.status !== 'success').map((r) => r.position));
    const expected = doc.images.flatMap((url, position) => (url ? (dropped.has(position) ? [] : [`image:${url}`]) : [`text:${doc.texts[position]}`]));
    const actual = (json.texts as (string | null)[]).map((text, i) => (text !== null ? `text:${text}` : `image:${json.metadata[i].src}`));
    assert.deepEqual(actual, expected, `document ${row}`);
    const fields = (json.images as (string | null)[]).filter((f) => f !== null);
    assert.deepEqual(
      fields,
      fields.map((_, i) => `${i}.jpg`),
    );
    for (const field of fields) assert.ok(sample.fields[field!], `${field} is in the sample`);
    assert.equal(json.general_metadata.url, `https://example.org/page/${row}`);
    assert.equal(json.tokens, countTokens(documentSegments(json.texts.map((t: string | null) => (t === null ? { image: true } : { text: t })))));
  }
  const thirty = (await samplesOf(output)).find((s) => JSON.parse(s.fields.json!.toString()).texts.includes('Thirty images.'))!;
  assert.equal(Object.keys(thirty.fields).length, 31);
});

test('END_OF_DOCUMENT separates documents in the token layout: each part gets <s> ... </s>', () => {
  const one = countTokens(documentSegments([{ text: 'Alpha beta.' }, { image: true }]));
  const two = countTokens(documentSegments([{ text: `Alpha beta.\n\n${END_OF_DOCUMENT}\n\nGamma.` }, { image: true }]));
  const gamma = countTokens(documentSegments([{ text: 'Gamma.' }])) - 2;
  assert.equal(two, one + 2 + gamma, 'one </s><s> pair more, plus the second text');
  assert.deepEqual(documentSegments([{ text: `${END_OF_DOCUMENT} a ${END_OF_DOCUMENT}${END_OF_DOCUMENT}` }]), [{ type: 'text', text: 'a' }]);
});

test('--strict-docs drops a document when any image fails', async () => {
  const output = join(dir, 'strict');
  await build(output, { sourceOptions: { strictDocs: true } });
  const outcomes = await parquetOf(output, '.outcomes.parquet');
  assert.equal(outcomes[0]!.status, 'success');
  assert.equal(outcomes[1]!.status, 'failed_to_download');
  assert.match(String(outcomes[1]!.error_message), /strict: image 0: http 404/);
  assert.equal(outcomes[3]!.status, 'filtered');
});

test('wikipedia: image bytes inside the parquet and URLs, consecutive section texts merged', async () => {
  const wiki = join(dir, 'wiki.parquet');
  const a = await jpeg(300, 220, { seed: 3 });
  const b = await jpeg(260, 260, { seed: 4 });
  const image = (bytes: Buffer) => ({ bytes, path: 'File:x.jpg' });
  await writeParquetFixture(wiki, { texts: 'VARCHAR[]', images: 'STRUCT(bytes BLOB, path VARCHAR)[]' }, [
    [
      ['Title', 'First section.', null, '  ', 'Second section.', null],
      [null, null, image(a), null, null, image(b)],
    ],
    [['Only text'], [null]],
  ]);
  const wikiUrls = join(dir, 'wiki-urls.parquet');
  await writeParquetFixture(wikiUrls, { texts: 'VARCHAR[]', images: 'VARCHAR[]' }, [
    [
      [null, 'Caption'],
      [img('/f/good2.jpg?w'), null],
    ],
  ]);
  const output = join(dir, 'wiki');
  const summary = await runBuild(resolveBuildOptions({ adapter: findSource('wikipedia'), inputs: [wiki, wikiUrls], output, fetch: TEST_FETCH }));
  assert.deepEqual([summary.status.success, summary.status.filtered], [2, 1]);
  const [first, second] = await samplesOf(output);
  const json = JSON.parse(first!.fields.json!.toString());
  assert.deepEqual(json.texts, ['Title\n\nFirst section.', null, 'Second section.', null]);
  assert.deepEqual(json.images, [null, '0.jpg', null, '1.jpg']);
  assert.deepEqual(JSON.parse(second!.fields.json!.toString()).images, ['0.jpg', null]);
});

test("a built shard reads with Python's tarfile and webdataset's grouping rule", async () => {
  const output = join(dir, 'obelics');
  const script = `
import json, re, sys, tarfile
samples = []
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        if not m.isfile():
            continue
        key, field = re.match(r"^((?:.*/|)[^./]+)[.]([^/]*)$", m.name).groups()
        if not samples or samples[-1]["__key__"] != key:
            samples.append({"__key__": key})
        samples[-1][field.lower()] = t.extractfile(m).read()
out = []
for s in samples:
    doc = json.loads(s["json"])
    out.append({"key": s["__key__"], "fields": sorted(k for k in s if k != "__key__"), "images": [f for f in doc["images"] if f], "jpeg": all(s[f][:2] == b"\\xff\\xd8" for f in doc["images"] if f)})
print(json.dumps(out))
`;
  const shard = join(output, 'obelisc-000000.tar');
  const fromPython = JSON.parse(execFileSync('python3', ['-c', script, shard], { encoding: 'utf8' }));
  const ours = [];
  for await (const s of readShard(shard)) {
    const doc = JSON.parse(s.fields.json!.toString());
    ours.push({ key: s.key, fields: Object.keys(s.fields).sort(), images: doc.images.filter((f: string | null) => f), jpeg: true });
  }
  assert.ok(ours.length > 0);
  assert.deepEqual(fromPython, ours);
});
