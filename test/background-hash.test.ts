import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { BackgroundHash } from '../core/background-hash.ts';

const digest = (algorithm: string, chunks: Uint8Array[]) => chunks.reduce((h, c) => h.update(c), createHash(algorithm)).digest('hex');

test('a background hash equals a sha256 and an md5 of the same bytes, however they are chunked', async () => {
  // Chunk sizes straddle the 1 MiB staging buffers: empty, tiny, just under, over, and several buffers at once.
  const size = fc.oneof(fc.constantFrom(0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 << 20), fc.integer({ min: 0, max: 300_000 }));
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(size, fc.integer({ min: 0, max: 255 })), { maxLength: 12 }), async (shape) => {
      const chunks = shape.map(([n, fill]) => new Uint8Array(n).map((_, i) => (i * 31 + fill) & 255));
      const hash = new BackgroundHash();
      for (const chunk of chunks) await hash.update(chunk);
      assert.deepEqual(await hash.digest(), { sha256: digest('sha256', chunks), md5: digest('md5', chunks) });
    }),
    { numRuns: 30 },
  );
});

test('hashes running at once stay apart, and a chunk is copied when given (the caller may reuse it)', async () => {
  const reused = new Uint8Array(700_000);
  const hashes = [0, 1, 2].map(() => new BackgroundHash());
  const expected = [0, 1, 2].map(() => createHash('sha256'));
  for (let round = 0; round < 20; round++) {
    for (const [i, hash] of hashes.entries()) {
      reused.fill(round * 3 + i);
      expected[i]!.update(reused);
      await hash.update(reused);
    }
  }
  assert.deepEqual(
    (await Promise.all(hashes.map((h) => h.digest()))).map((d) => d.sha256),
    expected.map((h) => h.digest('hex')),
  );
});

test('hashing works in a process started with --input-type=module', () => {
  const script = `
    import { BackgroundHash } from './core/background-hash.ts';
    const hash = new BackgroundHash();
    await hash.update(new Uint8Array(3 << 20));
    console.log((await hash.digest()).md5);
  `;
  const cwd = new URL('..', import.meta.url).pathname;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), digest('md5', [new Uint8Array(3 << 20)]));
});

test('an abandoned hash does not keep the process alive', () => {
  const script = `
    import { BackgroundHash } from './core/background-hash.ts';
    const hash = new BackgroundHash();
    await hash.update(new Uint8Array(3 << 20));
    hash.dispose();
    new BackgroundHash().update(new Uint8Array(10));
    console.log('left');
  `;
  const cwd = new URL('..', import.meta.url).pathname;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, null, 'the process had to be killed');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'left');
});
