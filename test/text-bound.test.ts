import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { runCliWithRss } from './helpers/run-cli.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jpeg } from '../sandbox/images.ts';
import { readParquetRows, writeParquetFixture } from '../sandbox/parquet-files.ts';
import { findSource } from '../pipelines/registry.ts';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { MAX_TEXT_BYTES } from '../pipelines/engine/text-bound.ts';

const dir = await mkdtemp(join(tmpdir(), 'm4-text-'));
test.after(() => rm(dir, { recursive: true, force: true }));

test('a PMD row with a 10 MB caption is filtered before tokenizing: fast, in bounded memory', async () => {
  const input = join(dir, 'pmd.parquet');
  const image = await jpeg(320, 240);
  const huge = 'word '.repeat(2_000_000); // 10 MB, one line: 2 million tokens if it reached the tokenizer
  await writeParquetFixture(input, { text: 'VARCHAR', image: 'STRUCT(bytes BLOB, path VARCHAR)' }, [
    [huge, { bytes: image, path: 'a.jpg' }],
    ['a small caption', { bytes: image, path: 'b.jpg' }],
  ]);
  const output = join(dir, 'pmd-out');
  // Without the bound this row took 85 s and 3.7 GB; the deadline and the memory bound tell the two apart.
  const r = await runCliWithRss(['build', '--source', 'pmd', '--input', input, '--output', output, '--quiet'], { timeoutMs: 60_000 });
  assert.equal(r.killed, false, 'the build did not finish within 60 s');
  assert.equal(r.code, 0, r.err);
  assert.ok(r.rssMb < 600, `peak RSS ${r.rssMb.toFixed(0)} MB`);
  const files = (await readdir(output)).filter((f) => f.endsWith('.outcomes.parquet')).map((f) => join(output, f));
  const outcomes = await readParquetRows(files);
  assert.deepEqual(
    outcomes.map((o) => [o.status, o.error_message]),
    [
      ['filtered', `caption over ${MAX_TEXT_BYTES.pmd} bytes (--max-text-bytes)`],
      ['success', null],
    ],
  );
});

test('documents are bounded on their texts together; the bound is a flag with per-source defaults', () => {
  const obelics = findSource('obelics');
  const plan = (texts: (string | null)[], maxTextBytes?: number) => {
    const options = resolveBuildOptions({ adapter: obelics, inputs: ['x'], output: 'o', sourceOptions: { maxTextBytes } }).sourceOptions;
    const images = texts.map((t) => (t === null ? 'http://x/a.jpg' : null));
    return obelics.plan({ images, texts, metadata: null, general_metadata: null }, options, new Map());
  };
  const page = 'x'.repeat(400_000);
  assert.equal(plan([page, null, page]).kind, 'planned'); // 800 kB: under the 1 MiB default
  const over = plan([page, null, page, page]);
  assert.equal(over.kind, 'rejected');
  assert.deepEqual(over.kind === 'rejected' && [over.status, over.error], [
    'filtered',
    `document text over ${MAX_TEXT_BYTES.document} bytes (--max-text-bytes)`,
  ]);
  assert.equal(plan(['short text', null], 5).kind, 'rejected');
  for (const [source, bytes] of [
    ['laion', MAX_TEXT_BYTES.laion],
    ['pmd', MAX_TEXT_BYTES.pmd],
    ['wikipedia', MAX_TEXT_BYTES.document],
  ] as const) {
    assert.equal(resolveBuildOptions({ adapter: findSource(source), inputs: ['x'], output: 'o' }).sourceOptions.maxTextBytes, bytes, source);
  }
});
