import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { openObject } from '../shards/storage/open.ts';
import { newReadCounters, readShard, type ShardLocation } from '../shards/tar-reader.ts';
import type { ReadSample } from '../shards/sample.ts';

// Tars written by other tools: GNU tar (gnu and posix/PAX formats) and Python's tarfile, plus hand-made hostile ones.

const dir = await mkdtemp(join(tmpdir(), 'm4-foreign-'));
test.after(() => rm(dir, { recursive: true, force: true }));

const LONG_KEY = `sample_${'x'.repeat(140)}`; // past ustar's 100-byte name field
const FILES: Record<string, string> = {
  [`a/${LONG_KEY}.jpg`]: 'long-jpg',
  [`a/${LONG_KEY}.txt`]: 'long-txt',
  'a/b01.jpg': 'jpeg bytes',
  'a/b01.JSON': '{"tokens": 7}',
  'a/b01.txt': 'a caption',
  'a/c02.seg.png': 'png bytes',
  'a/c02.txt': 'another',
  'a/noextension': 'ignored by webdataset',
  'a/__meta__': 'skipped',
};

async function makeTree(root: string): Promise<void> {
  for (const [name, content] of Object.entries(FILES)) {
    await mkdir(dirname(join(root, name)), { recursive: true });
    await writeFile(join(root, name), content);
  }
}

async function readAll(path: ShardLocation, onError: 'throw' | 'skip' = 'throw') {
  const counters = newReadCounters();
  const samples: ReadSample[] = [];
  for await (const s of readShard(path, { onError, counters })) samples.push(s);
  return { samples, counters };
}

function simplify(samples: ReadSample[]) {
  return samples.map((s) => ({ key: s.key, fields: Object.fromEntries(Object.entries(s.fields).map(([k, v]) => [k, v.toString()])) }));
}

const EXPECTED = [
  { key: 'a/b01', fields: { jpg: 'jpeg bytes', json: '{"tokens": 7}', txt: 'a caption' } },
  { key: 'a/c02', fields: { 'seg.png': 'png bytes', txt: 'another' } },
  { key: `a/${LONG_KEY}`, fields: { jpg: 'long-jpg', txt: 'long-txt' } },
];

function sortedTarArgs(): string[] {
  return ['--sort=name', '--owner=0', '--group=0', '--numeric-owner'];
}

for (const format of ['gnu', 'posix']) {
  test(`reads a GNU tar archive in ${format} format, long names included`, async () => {
    const root = join(dir, `tree-${format}`);
    await makeTree(root);
    const tarPath = join(dir, `gnu-${format}.tar`);
    execFileSync('tar', ['-cf', tarPath, `--format=${format}`, ...sortedTarArgs(), '-C', root, 'a']);
    const { samples, counters } = await readAll(tarPath);
    assert.deepEqual(simplify(samples), EXPECTED);
    assert.equal(counters.samples, 3);
  });
}

test("reads an archive written by Python's tarfile (PAX, long names)", async () => {
  const root = join(dir, 'tree-py');
  await makeTree(root);
  const tarPath = join(dir, 'py.tar');
  const script = [
    'import os, sys, tarfile',
    'root, out = sys.argv[1], sys.argv[2]',
    'with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:',
    '    for dp, dns, fns in sorted(os.walk(root)):',
    '        dns.sort()',
    '        for fn in sorted(fns):',
    '            p = os.path.join(dp, fn)',
    '            t.add(p, arcname=os.path.relpath(p, root))',
  ].join('\n');
  execFileSync('python3', ['-c', script, root, tarPath]);
  const { samples } = await readAll(tarPath);
  assert.deepEqual(simplify(samples), EXPECTED);
});

test('reads a shard over http(s) as it reads a local one', async (t) => {
  const { startHostileServer } = await import('../sandbox/hostile-server.ts');
  const root = join(dir, 'tree-http');
  await makeTree(root);
  const tarPath = join(dir, 'served.tar');
  execFileSync('tar', ['-cf', tarPath, '--format=posix', ...sortedTarArgs(), '-C', root, 'a']);
  const server = await startHostileServer(new Map([['served.tar', { body: await readFile(tarPath), contentType: 'application/x-tar' }]]));
  t.after(() => server.close());
  // The server is on loopback, which storage reaches only when allowed (as image downloads).
  const { samples } = await readAll(openObject(server.url('/f/served.tar'), { allowPrivateNetwork: ['127.0.0.1/32'] }));
  assert.deepEqual(simplify(samples), EXPECTED);
});

test('a truncated tar names the shard and the byte offset; skip mode keeps the samples before it', async () => {
  const root = join(dir, 'tree-trunc');
  await makeTree(root);
  const tarPath = join(dir, 'truncated.tar');
  execFileSync('tar', ['-cf', tarPath, '--format=gnu', ...sortedTarArgs(), '-C', root, 'a']);
  // Cut inside the data of the last sample's first entry (a/c02.seg.png): header + 4 bytes survive.
  const full = await readFile(tarPath);
  const at = full.indexOf('png bytes');
  await truncate(tarPath, at + 4);
  await assert.rejects(readAll(tarPath), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'E_TAR_TRUNCATED');
    assert.match(err.message, /truncated\.tar/);
    assert.match(err.message, new RegExp(`tar ends at byte ${at + 4} inside entry "a/c02.seg.png"`));
    return true;
  });
  const { samples, counters } = await readAll(tarPath, 'skip');
  assert.deepEqual(simplify(samples), EXPECTED.slice(0, 1));
  assert.equal(counters.badShards, 1);
  assert.equal(counters.skippedSamples, 1);
  assert.match(counters.errors[0]!, /truncated\.tar: tar ends at byte/);
});

test('a tar cut exactly between entries is reported, not read as complete', async () => {
  const root = join(dir, 'tree-cut');
  await makeTree(root);
  const tarPath = join(dir, 'cut.tar');
  execFileSync('tar', ['-cf', tarPath, '--format=ustar', ...sortedTarArgs(), '-C', root, 'a/b01.jpg', 'a/b01.txt']);
  await truncate(tarPath, 2048); // two entries of one block each; the end-of-archive marker is gone
  await assert.rejects(readAll(tarPath), { code: 'E_TAR_TRUNCATED', message: /without its end-of-archive marker/ });
});

test('a file that is not a tar fails on the header checksum', async () => {
  const path = join(dir, 'not-a.tar');
  await writeFile(path, Buffer.alloc(4096, 'garbage'));
  await assert.rejects(readAll(path), { code: 'E_TAR_CORRUPT', message: /not-a\.tar: bad tar header checksum at byte 0/ });
});

/** A ustar header block with a valid checksum, for names no well-behaved tool would write. */
function header(name: string, size: number, typeflag = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write(typeflag, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

function entry(name: string, body: string, typeflag = '0'): Buffer {
  const data = Buffer.from(body);
  return Buffer.concat([header(name, data.length, typeflag), data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

function pax(records: Record<string, string>): Buffer {
  let body = '';
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(rest) + 1;
    while (String(len).length + Buffer.byteLength(rest) !== len) len = String(len).length + Buffer.byteLength(rest);
    body += `${len}${rest}`;
  }
  return entry('PaxHeader', body, 'x');
}

const END = Buffer.alloc(1024);

for (const [label, evil] of [
  ['a .. segment', entry('../evil.txt', 'x')],
  ['an absolute path', entry('/etc/evil.txt', 'x')],
  ['a NUL inside a PAX path', Buffer.concat([pax({ path: 'ok\0/evil.txt' }), entry('placeholder.txt', 'x')])],
  ['a .. segment in a GNU long name', Buffer.concat([entry('././@LongLink', `a/../../${'y'.repeat(120)}.txt\0`, 'L'), entry('short.txt', 'x')])],
] as const) {
  test(`an entry name with ${label} is refused, or skipped and counted`, async () => {
    const path = join(dir, `evil-${label.replace(/\W+/g, '-')}.tar`);
    await writeFile(path, Buffer.concat([entry('good.txt', 'fine'), evil, entry('after.txt', 'still read'), END]));
    await assert.rejects(readAll(path), { code: 'E_UNSAFE_NAME' });
    const { samples, counters } = await readAll(path, 'skip');
    assert.deepEqual(simplify(samples), [
      { key: 'good', fields: { txt: 'fine' } },
      { key: 'after', fields: { txt: 'still read' } },
    ]);
    assert.equal(counters.skippedSamples, 1);
    assert.match(counters.errors[0]!, /unsafe tar entry name/);
  });
}

test('a duplicate field in one sample is an error, as in webdataset', async () => {
  const path = join(dir, 'dup.tar');
  await writeFile(path, Buffer.concat([entry('k.txt', 'one'), entry('k.TXT', 'two'), END]));
  await assert.rejects(readAll(path), { code: 'E_SAMPLE', message: /duplicate field txt/ });
});

test('a PAX size overrides the header size, and base-256 sizes parse', async () => {
  const big = header('b.bin', 0);
  const data = Buffer.from('0123456789');
  // GNU base-256: top bit set, value big-endian in the remaining bytes.
  big.fill(0, 124, 136);
  big[124] = 0x80;
  big[135] = data.length;
  big.fill(' ', 148, 156);
  let sum = 0;
  for (const b of big) sum += b;
  big.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const path = join(dir, 'numbers.tar');
  await writeFile(path, Buffer.concat([big, data, Buffer.alloc(502), pax({ size: '3' }), header('c.bin', 0), Buffer.from('abc'), Buffer.alloc(509), END]));
  const { samples } = await readAll(path);
  assert.deepEqual(simplify(samples), [
    { key: 'b', fields: { bin: '0123456789' } },
    { key: 'c', fields: { bin: 'abc' } },
  ]);
});
