import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { ustarHeader, END_OF_ARCHIVE } from '../shards/ustar.ts';
import { runCliWithRss } from './helpers/run-cli.ts';

// Issue 13, item 5: inspect held every entry it read, so a small .tgz or a sparse tar with one huge member took GBs.

const dir = await mkdtemp(join(tmpdir(), 'm4-inspect-mem-'));
test.after(() => rm(dir, { recursive: true, force: true }));

/** An entry this large, held, would take at least as much memory; read past as it streams, almost none. */
const HUGE = 768 * 2 ** 20;

test('inspect streams past a huge entry: a sparse tar and a tiny .tgz holding 768 MiB each stay far under that', async () => {
  // Sparse: the header, then a hole the file system stores as nothing, then the end-of-archive marker.
  const sparse = join(dir, 'sparse.tar');
  const file = await open(sparse, 'w');
  await file.write(ustarHeader('000000001.bin', HUGE), 0, 512, 0);
  await file.write(ustarHeader('000000001.json', 13), 0, 512, 512 + HUGE);
  await file.write(Buffer.from('{"tokens":42}'), 0, 13, 1024 + HUGE);
  await file.write(END_OF_ARCHIVE, 0, END_OF_ARCHIVE.length, 1536 + HUGE);
  await file.close();
  const gzipped = join(dir, 'bomb.tgz');
  await pipeline(Readable.from(zeroTar()), createGzip({ level: 1 }), createWriteStream(gzipped));

  for (const target of [sparse, gzipped]) {
    const r = await runCliWithRss(['inspect', target, '--json'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.err);
    const summary = JSON.parse(r.out) as { samples: number; tokens: number; first: { fields: Record<string, number> }[] };
    assert.equal(summary.samples, 1);
    assert.equal(summary.first[0]!.fields.bin, HUGE, 'the size is still reported');
    if (target === sparse) assert.equal(summary.tokens, 42, 'small JSON fields are still read');
    assert.ok(r.rssMb < 400, `${target}: peak RSS ${r.rssMb.toFixed(0)} MB`);
  }
  await writeFile(join(dir, 'done'), '');
});

/** One sample whose `bin` field is HUGE zero bytes, in a tar, produced in 1 MiB chunks. */
async function* zeroTar(): AsyncGenerator<Buffer> {
  yield ustarHeader('000000001.bin', HUGE);
  const chunk = Buffer.alloc(2 ** 20);
  for (let done = 0; done < HUGE; done += chunk.length) yield chunk;
  yield END_OF_ARCHIVE;
}
