import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { isM4Error, type ErrorCode } from '../core/errors.ts';
import type { ReadSample, Sample } from '../shards/sample.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { LocalStorage } from '../shards/storage/local.ts';
import { entriesIn, parseTar } from '../shards/tar-parser.ts';
import { readSampleAt, readShard } from '../shards/tar-reader.ts';
import { ustarHeader } from '../shards/ustar.ts';

// readSampleAt decodes one sample from bytes in memory (what the mixer holds of a run), without an await: it must read
// every sample exactly as the streaming reader does, and refuse what the streaming reader would report.

const dir = await mkdtemp(join(tmpdir(), 'm4-tar-sample-'));
test.after(() => rm(dir, { recursive: true, force: true }));

/** Every sample of a tar file through readShard, and the same samples through readSampleAt on their byte ranges. */
async function bothWays(path: string): Promise<{ streamed: ReadSample[]; inMemory: ReadSample[] }> {
  const streamed: ReadSample[] = [];
  for await (const s of readShard(path)) streamed.push(s);
  const bytes = await readFile(path);
  const inMemory = streamed.map((s) => readSampleAt(bytes.subarray(s.offset, s.offset + s.size), s.offset, s.url));
  return { streamed, inMemory };
}

const fieldName = fc.stringMatching(/^[a-z0-9]{1,5}(\.[a-z0-9]{1,4})?$/);
const samplesArb = fc
  .array(fc.dictionary(fieldName, fc.uint8Array({ maxLength: 2000 }), { minKeys: 1, maxKeys: 4 }), { minLength: 1, maxLength: 12 })
  .map((all) => all.map((fields, i): Sample => ({ key: `k${i}`, fields })));

test('every sample of random shards decodes from its bytes in memory as the streaming reader reads it', async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(samplesArb, async (samples) => {
      const storage = new LocalStorage(join(dir, `random-${run++}`));
      const writer = new ShardWriter({ storage, prefix: 'ds', maxSamples: 100 });
      for (const sample of samples) await writer.write(sample, { tokens: 1 });
      const [record] = await writer.close();
      const { streamed, inMemory } = await bothWays(join(storage.root, record!.shard));
      assert.equal(streamed.length, samples.length);
      assert.deepEqual(inMemory, streamed);
    }),
    { numRuns: 40 },
  );
});

test('PAX and GNU long names, meta entries and names without an extension: read alike from memory', async () => {
  const root = join(dir, 'tree');
  const files: Record<string, string> = {
    [`a/s_${'x'.repeat(140)}.jpg`]: 'long-jpg',
    [`a/s_${'x'.repeat(140)}.txt`]: 'long-txt',
    'a/b01.jpg': 'jpeg bytes',
    'a/b01.txt': 'a caption',
    'a/noextension': 'ignored',
    'a/__meta__': 'skipped',
  };
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, name)), { recursive: true });
    await writeFile(join(root, name), content);
  }
  for (const format of ['gnu', 'posix']) {
    const tar = join(dir, `${format}.tar`);
    execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--format=${format}`, '-cf', tar, '-C', root, 'a']);
    const { streamed, inMemory } = await bothWays(tar);
    assert.deepEqual(streamed.map((s) => s.key).sort(), ['a/b01', `a/s_${'x'.repeat(140)}`]);
    assert.deepEqual(inMemory, streamed, format);
  }
});

test('a header is checked alike wherever its bytes lie in memory (summed by words when aligned, else by bytes)', async () => {
  const root = join(dir, 'unicode');
  await mkdir(join(root, 'a'), { recursive: true });
  // Names of bytes over 127 (UTF-8) in the ustar name field, and in a header's checksum.
  await writeFile(join(root, 'a', 'ünïcödé_ß.txt'), 'text');
  await writeFile(join(root, 'a', 'ünïcödé_ß.jpg'), Buffer.alloc(1000, 0xff));
  const tar = join(dir, 'unicode.tar');
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--format=ustar', '-cf', tar, '-C', root, 'a']);
  const { streamed } = await bothWays(tar);
  assert.equal(streamed.length, 1);
  const [sample] = streamed;
  const bytes = (await readFile(tar)).subarray(sample!.offset, sample!.offset + sample!.size);
  for (const shift of [0, 1, 2, 3, 4]) {
    const moved = Buffer.alloc(bytes.length + 8).subarray(shift, shift + bytes.length);
    bytes.copy(moved);
    assert.deepEqual(readSampleAt(moved, sample!.offset, sample!.url), sample, `shifted by ${shift}`);
    moved[100]! ^= 0x80; // the mode field: a byte the checksum counts
    assert.throws(() => readSampleAt(moved, sample!.offset, sample!.url), /bad tar header checksum/, `shifted by ${shift}`);
  }
});

test('a local PAX header names its entry only, even when a global one comes between them (streamed and in memory)', async () => {
  // Blocks by hand: an extension header is a ustar header with another typeflag, its checksum recomputed.
  const header = (name: string, size: number, typeflag = '0') => {
    const block = ustarHeader(name, size);
    block.write(typeflag, 156, 'ascii');
    block.write('        ', 148, 'ascii');
    let sum = 0;
    for (const byte of block) sum += byte;
    block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    return block;
  };
  const padded = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
  // PAX records: "<length> <key>=<value>\n", the length counting the whole record.
  const local = Buffer.from('15 path=k1.txt\n');
  const global = Buffer.from('13 comment=x\n');
  const tar = Buffer.concat([
    header('PaxHeader', local.length, 'x'),
    padded(local),
    header('GlobalHead', global.length, 'g'),
    padded(global),
    header('ignored.txt', 3),
    padded(Buffer.from('one')),
    header('k2.txt', 3),
    padded(Buffer.from('two')),
    Buffer.alloc(1024),
  ]);
  const streamed = [];
  for await (const entry of parseTar(
    (async function* () {
      yield tar;
    })(),
  ))
    streamed.push(entry.name);
  const inMemory = [...entriesIn(tar.subarray(0, tar.length - 1024), 0)].map((e) => e.name);
  assert.deepEqual(streamed, ['k1.txt', 'k2.txt']);
  assert.deepEqual(inMemory, ['k1.txt', 'k2.txt']);
});

test('bytes that are not one whole, sound sample are refused, naming the shard and the byte', async () => {
  const storage = new LocalStorage(join(dir, 'bad'));
  const writer = new ShardWriter({ storage, prefix: 'bad', maxSamples: 100 });
  for (const key of ['a', 'b']) await writer.write({ key, fields: { txt: Buffer.from(`caption ${key}`), jpg: Buffer.alloc(700, 9) } }, { tokens: 1 });
  const [record] = await writer.close();
  const bytes = await readFile(join(storage.root, record!.shard));
  const url = 'file:///bad-000000.tar';
  const [a, b] = (await bothWays(join(storage.root, record!.shard))).streamed;
  const refused = (slice: Buffer, offset: number, code: ErrorCode, pattern: RegExp) =>
    assert.throws(
      () => readSampleAt(slice, offset, url),
      (err: unknown) => isM4Error(err, code) && err.message.startsWith(url) && pattern.test(err.message),
      pattern.source,
    );

  // A flipped byte in b's first header.
  const flipped = Buffer.from(bytes);
  flipped[b!.offset + 10]! ^= 0xff;
  refused(flipped.subarray(b!.offset, b!.offset + b!.size), b!.offset, 'E_TAR_CORRUPT', new RegExp(`bad tar header checksum at byte ${b!.offset}`));
  // Cut inside its image (its first entry: a header, then 700 bytes padded to 1,024).
  const cut = b!.offset + 1024;
  refused(
    bytes.subarray(b!.offset, cut),
    b!.offset,
    'E_TAR_TRUNCATED',
    new RegExp(`tar ends at byte ${cut} inside entry "b\\.jpg" \\(header at byte ${b!.offset}, 512 of 700 bytes present\\)`),
  );
  // Two samples' bytes, and none.
  refused(
    bytes.subarray(a!.offset, b!.offset + b!.size),
    a!.offset,
    'E_SAMPLE',
    new RegExp(`bytes ${a!.offset}-${b!.offset + b!.size} hold samples a and b, not one`),
  );
  refused(Buffer.alloc(0), 0, 'E_SAMPLE', /bytes 0-0 hold no sample/);
  // A field twice: a's entries, then its image again.
  const twice = Buffer.concat([bytes.subarray(a!.offset, a!.offset + a!.size), bytes.subarray(a!.offset, a!.offset + 1536)]);
  refused(twice, a!.offset, 'E_SAMPLE', new RegExp(`duplicate field jpg in sample a at byte ${a!.offset + a!.size}`));
});
