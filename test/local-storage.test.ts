import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStorage } from '../shards/storage/local.ts';

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

test('local storage: atomic writes, ranged reads, listing in key order', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-local-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const s = new LocalStorage(dir);
  for (const key of ['b/x.tar', 'a-b', 'a/z', 'a0', 'a/y/1', 'c']) await s.write(key, Buffer.from(key));
  const keys = [];
  for await (const info of s.list()) keys.push(info.key);
  // Byte order, as S3 lists: '-' (0x2d) < '/' (0x2f) < '0' (0x30).
  assert.deepEqual(keys, ['a-b', 'a/y/1', 'a/z', 'a0', 'b/x.tar', 'c']);
  const under = [];
  for await (const info of s.list('a/')) under.push(info.key);
  assert.deepEqual(under, ['a/y/1', 'a/z']);

  await s.write('r', Buffer.from('0123456789'));
  assert.equal((await collect(s.read('r', { start: 2, end: 5 }))).toString(), '234');
  assert.equal((await collect(s.read('r', { start: 7 }))).toString(), '789');
  assert.deepEqual(await s.stat('r'), { key: 'r', size: 10 });
  assert.equal(await s.stat('missing'), undefined);
  await assert.rejects(collect(s.read('missing')), { code: 'E_NOT_FOUND' });
  assert.throws(() => s.urlOf('../outside'), { code: 'E_UNSAFE_NAME' });

  // A body that fails half-way leaves neither the object nor its temporary file.
  await assert.rejects(
    s.write(
      'half',
      (async function* () {
        yield Buffer.alloc(1000);
        throw new Error('source died');
      })(),
    ),
    /source died/,
  );
  assert.equal(await s.stat('half'), undefined);
  assert.deepEqual(
    (await readdir(dir)).filter((n) => n.startsWith('half')),
    [],
  );
  // What a killed writer left is discarded for that key only.
  await writeFile(join(dir, 'x.tar.tmp-0123456789ab'), 'partial');
  await writeFile(join(dir, 'y.tar.tmp-0123456789ab'), 'another writer');
  await s.discardIncomplete('x.tar');
  assert.deepEqual(
    (await readdir(dir)).filter((n) => n.includes('.tmp-')),
    ['y.tar.tmp-0123456789ab'],
  );

  await s.delete('r');
  await s.delete('r');
  assert.equal(await s.stat('r'), undefined);
});

test('local reads: small files in one read of their size, large ones and ranges in pieces, what is not a file as missing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'm4-local-read-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const s = new LocalStorage(dir);
  const small = randomBytes(36_000);
  const large = randomBytes(3 * 1024 * 1024 + 17);
  await s.write('small.json', small);
  await s.write('large.tar', large);
  const chunks = async (it: AsyncIterable<Uint8Array>) => {
    const sizes: number[] = [];
    for await (const c of it) sizes.push(c.byteLength);
    return sizes;
  };
  // A small file: one buffer of its own size (a stream would have allocated 1 MiB for it).
  assert.deepEqual(await chunks(s.read('small.json')), [36_000]);
  assert.deepEqual(await collect(s.read('small.json', { start: 35_000 })), small.subarray(35_000));
  assert.deepEqual(await collect(s.read('large.tar')), large);
  assert.deepEqual(await collect(s.read('large.tar', { start: 5, end: large.length - 5 })), large.subarray(5, -5));
  assert.deepEqual(await chunks(s.read('large.tar', { start: 0, end: 3 * 1024 * 1024 })), [3 * 1024 * 1024]);
  assert.equal((await collect(s.read('small.json', { start: 40_000 }))).length, 0);
  // A path through a file, and a folder, name no object, as stat says.
  await mkdir(join(dir, 'folder'));
  for (const key of ['small.json/x', 'folder', 'missing']) {
    assert.equal(await s.stat(key), undefined, key);
    await assert.rejects(collect(s.read(key)), { code: 'E_NOT_FOUND' }, key);
    await assert.rejects(collect(s.read(key, { start: 0, end: 10 })), { code: 'E_NOT_FOUND' }, key);
  }
  // A file whose size says 0 may hold bytes (procfs): it is read to its end.
  const proc = new LocalStorage('/proc/self');
  assert.match((await collect(proc.read('status'))).toString(), /^Name:/);
});
