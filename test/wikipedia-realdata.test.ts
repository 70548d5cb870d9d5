import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readShard } from '../shards/tar-reader.ts';
import { readParquetRows } from '../sandbox/parquet-files.ts';
import { startWikimediaMirror } from '../sandbox/wikimedia-mirror.ts';
import { runCli } from './helpers/run-cli.ts';

// The 12 real pages of the Wikimedia Enterprise HTML dump layout in the project's shared folder (provenance in its
// README). They are read from there, never copied here.
const DUMP = fileURLToPath(new URL('../../shared/realdata/wikipedia-dump/enwiki-sample-NS0-ENTERPRISE-HTML.json.tar.gz', import.meta.url));
const present = await access(DUMP).then(
  () => true,
  () => false,
);

test('the 12 real pages: what each becomes, as a reader of the articles would agree', {
  skip: present ? false : `${DUMP} is absent (../shared is not beside this checkout)`,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-wikireal-'));
  const mirror = await startWikimediaMirror();
  t.after(async () => {
    await mirror.close();
    await rm(dir, { recursive: true, force: true });
  });
  const output = join(dir, 'out');
  const run = await runCli(
    [
      'build',
      '--source',
      'wikipedia',
      '--input',
      DUMP,
      '--output',
      output,
      '--wikimedia-base',
      mirror.base,
      '--allow-private-network',
      '127.0.0.1/32',
      '--quiet',
    ],
    {
      timeoutMs: 120_000,
    },
  );
  assert.equal(run.code, 0, run.err);
  const outcomes = await readParquetRows([join(output, 'wikipedia-000000.outcomes.parquet')]);
  assert.deepEqual(
    outcomes.map((o) => [o.input_member, Number(o.input_line), o.status, o.error_message]),
    [
      ['enwiki_namespace_0_0.ndjson', 1, 'success', null],
      ['enwiki_namespace_0_0.ndjson', 2, 'success', null],
      ['enwiki_namespace_0_0.ndjson', 3, 'success', null],
      ['enwiki_namespace_0_0.ndjson', 4, 'success', null],
      ['enwiki_namespace_0_0.ndjson', 5, 'filtered', 'redirect to Aşkale'],
      ['enwiki_namespace_0_0.ndjson', 6, 'success', null],
      // Cot side: a stub whose only pictures are maintenance and stub icons.
      ['enwiki_namespace_0_0.ndjson', 7, 'filtered', 'document has no image'],
      ['enwiki_namespace_0_0.ndjson', 8, 'success', null],
      ['enwiki_namespace_0_0.ndjson', 9, 'filtered', 'disambiguation page'],
      ['enwiki_namespace_0_0.ndjson', 10, 'success', null],
      // ISO/IEC 8859-2: text and a code-page table, no picture.
      ['enwiki_namespace_0_0.ndjson', 11, 'filtered', 'document has no image'],
      ['enwiki_namespace_0_0.ndjson', 12, 'success', null],
    ],
  );

  const docs = new Map<
    string,
    {
      texts: (string | null)[];
      images: (string | null)[];
      metadata: ({ src: string; caption?: string; rendered_width: number; rendered_height: number } | null)[];
    }
  >();
  for (const name of (await readdir(output)).filter((f) => f.endsWith('.tar'))) {
    for await (const sample of readShard(join(output, name))) {
      const json = JSON.parse((sample.fields.json as Buffer).toString());
      docs.set(json.general_metadata.name, json);
    }
  }
  assert.deepEqual([...docs.keys()].sort(), [
    'Caryophyllales',
    'Coset',
    'Crimean Mountains',
    'Foobar',
    'Matryoshka doll',
    'Organic acid anhydride',
    'Thoor Ballylee',
    'Yoshua Bengio',
  ]);
  const text = (name: string) =>
    docs
      .get(name)!
      .texts.filter((t): t is string => t !== null)
      .join('\n\n');

  // Foobar: its one content picture, with its caption after it; the portal and sister-project icons are gone.
  const foobar = docs.get('Foobar')!;
  assert.equal(foobar.images.filter((i) => i !== null).length, 1);
  assert.equal(foobar.metadata.find((m) => m !== null)!.caption, 'Smokey Stover driving a "foomobile"');
  assert.ok(text('Foobar').startsWith('Foobar\n\nThe terms foobar (/ˈfuːbɑːr/), foo, bar, baz, and others are used as metasyntactic variables'));
  // Matryoshka doll: the infobox picture first, then the eight thumbnails (the audio, flag and Commons icons are gone).
  const matryoshka = docs.get('Matryoshka doll')!;
  assert.equal(matryoshka.images.filter((i) => i !== null).length, 9);
  assert.equal(matryoshka.metadata[1]!.caption, 'Matryoshka dolls set in a row');
  assert.ok(text('Matryoshka doll').includes('In 2020, the Unicode Consortium approved the matryoshka doll (🪆)'));
  // Coset: display math as its TeX; the Cayley table is not text.
  assert.ok(text('Coset').includes('\n\n|G|=[G:H]|H|.\n\n'));
  assert.ok(text('Coset').includes('the entire Cayley table:\n\nLet T be the subgroup'), 'the table between them is not text');
  // Yoshua Bengio: the video's caption went with the video.
  assert.ok(!/Bengio speaking|video/i.test(text('Yoshua Bengio')));
  for (const [name, doc] of docs) {
    const all = doc.texts.filter((t): t is string => t !== null).join('\n');
    assert.ok(!/\[\d+\]/.test(all), `${name}: a citation marker`);
    assert.ok(!/\n(References|External links|See also|Notes)\n/.test(`\n${all}\n`), `${name}: an appendix heading`);
    assert.ok(!all.includes('citation needed') && !all.includes('This article'), `${name}: a maintenance note`);
    for (const m of doc.metadata)
      if (m) assert.ok(Math.max(m.rendered_width, m.rendered_height) > 60 && m.src.startsWith('https://upload.wikimedia.org/'), `${name}: ${m.src}`);
  }
});
