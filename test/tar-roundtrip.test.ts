import { createHash } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { LocalStorage } from '../shards/storage/local.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { readShard, readShards } from '../shards/tar-reader.ts';
import { parseTar } from '../shards/tar-parser.ts';
import { readShardIndex, indexKeyOf, collectShardRecords } from '../shards/shard-index.ts';
import { buildManifest, writeManifest, readManifest, WIDS_NAME } from '../shards/manifest.ts';
import { readJson } from '../shards/storage/json.ts';
import type { Sample } from '../shards/sample.ts';

const fieldName = fc.stringMatching(/^[a-z0-9]{1,5}(\.[a-z0-9]{1,4})?$/);
const sampleArb = (key: string) =>
  fc.dictionary(fieldName, fc.uint8Array({ maxLength: 3000 }), { minKeys: 1, maxKeys: 4 }).map((fields): Sample => ({ key, fields }));
const samplesArb = fc
  .integer({ min: 0, max: 25 })
  .chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => sampleArb(`s${String(i).padStart(4, '0')}`))))
  .map((t) => t as Sample[]);

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'm4-tar-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeAll(dir: string, samples: Sample[], maxSamples: number, maxBytes: number) {
  const storage = new LocalStorage(dir);
  const writer = new ShardWriter({ storage, prefix: 'ds', maxSamples, maxBytes });
  for (const sample of samples) await writer.write(sample, { tokens: sample.key.length });
  return { storage, records: await writer.close() };
}

test('random samples written then read back are the same samples, rolled within the limits', async () => {
  await fc.assert(
    fc.asyncProperty(samplesArb, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 2048, max: 20_000 }), async (samples, maxSamples, maxBytes) => {
      await withDir(async (dir) => {
        const { storage, records } = await writeAll(dir, samples, maxSamples, maxBytes);
        const back = [];
        for await (const s of readShards(records.map((r) => ({ storage, key: r.shard })))) back.push(s);
        assert.deepEqual(
          back.map((s) => ({ key: s.key, fields: Object.fromEntries(Object.entries(s.fields).map(([k, v]) => [k, new Uint8Array(v)])) })),
          samples.map((s) => ({ key: s.key, fields: Object.fromEntries(Object.entries(s.fields).map(([k, v]) => [k, new Uint8Array(v)])) })),
        );
        assert.equal(
          records.reduce((n, r) => n + r.samples, 0),
          samples.length,
        );
        for (const r of records) {
          assert.ok(r.samples <= maxSamples, 'count limit');
          assert.ok(r.bytes <= maxBytes || r.samples === 1, `size limit: ${r.bytes} > ${maxBytes} with ${r.samples} samples`);
          const onDisk = await readFile(join(dir, r.shard));
          assert.equal(onDisk.length, r.bytes);
        }
      });
    }),
    { numRuns: 40 },
  );
});

test('the same samples give byte-identical shards, indexes and manifests', async () => {
  await fc.assert(
    fc.asyncProperty(samplesArb, async (samples) => {
      const outputs = [];
      for (let run = 0; run < 2; run++) {
        outputs.push(
          await withDir(async (dir) => {
            const { storage, records } = await writeAll(dir, samples, 4, 1 << 20);
            await writeManifest(storage, buildManifest(records, { seed: 1 }));
            const files: Record<string, Buffer> = {};
            for await (const info of storage.list()) files[info.key] = await readFile(join(dir, info.key));
            return files;
          }),
        );
      }
      assert.deepEqual(outputs[0], outputs[1]);
    }),
    { numRuns: 15 },
  );
});

test('index offsets and sizes locate each sample exactly, and counts add up in the manifest', async () => {
  await withDir(async (dir) => {
    const samples: Sample[] = Array.from({ length: 9 }, (_, i) => ({
      key: `k${i}`,
      fields: { jpg: Buffer.alloc(100 * i + 1, i), '0.png': Buffer.alloc(600, 1), txt: Buffer.from(`caption ${i}`) },
    }));
    const { storage, records } = await writeAll(dir, samples, 4, 1 << 20);
    assert.deepEqual(
      records.map((r) => r.shard),
      ['ds-000000.tar', 'ds-000001.tar', 'ds-000002.tar'],
    );
    for (const record of records) {
      const index = await readShardIndex(storage, indexKeyOf(record.shard));
      assert.equal(index.entries.length, record.samples);
      const tar = await readFile(join(dir, record.shard));
      for (const entry of index.entries) {
        assert.equal(entry.images, 2);
        const slice = tar.subarray(entry.offset, entry.offset + entry.size);
        const names = [];
        for await (const e of parseTar(
          (async function* () {
            yield slice;
            yield Buffer.alloc(1024);
          })(),
        ))
          names.push(e.name);
        assert.deepEqual(names, [`${entry.key}.0.png`, `${entry.key}.jpg`, `${entry.key}.txt`]);
      }
      // What the reader reports agrees with the index.
      const read = [];
      for await (const s of readShard({ storage, key: record.shard })) read.push({ key: s.key, offset: s.offset, size: s.size });
      assert.deepEqual(
        read,
        index.entries.map(({ key, offset, size }) => ({ key, offset, size })),
      );
    }
    const manifest = buildManifest(await collectShardRecords(storage), { source: 'test' });
    await writeManifest(storage, manifest, 'test');
    const back = await readManifest(storage);
    assert.deepEqual(back.totals, { shards: 3, samples: 9, images: 18, tokens: 9 * 2, bytes: records.reduce((n, r) => n + r.bytes, 0) });
    assert.deepEqual(await readJson(storage, WIDS_NAME), {
      __kind__: 'wids-shard-index-v1',
      wids_version: 1,
      name: 'test',
      shardlist: await Promise.all(
        records.map(async (r) => {
          // As wids' index writer gives them: the file's size and the md5 of its bytes.
          const tar = await readFile(join(dir, r.shard));
          return { url: r.shard, nsamples: r.samples, filesize: tar.length, md5sum: createHash('md5').update(tar).digest('hex') };
        }),
      ),
    });
    for (const r of back.shards)
      assert.equal(
        r.md5,
        createHash('md5')
          .update(await readFile(join(dir, r.shard)))
          .digest('hex'),
      );
  });
});

test('a sample too big for the size limit gets a shard of its own', async () => {
  await withDir(async (dir) => {
    const samples: Sample[] = [
      { key: 'a', fields: { bin: Buffer.alloc(100) } },
      { key: 'b', fields: { bin: Buffer.alloc(10_000) } },
      { key: 'c', fields: { bin: Buffer.alloc(100) } },
    ];
    const { records } = await writeAll(dir, samples, 100, 4096);
    assert.deepEqual(
      records.map((r) => r.samples),
      [1, 1, 1],
    );
  });
});

test('bad samples are refused before anything is written, and the shard stays valid', async () => {
  await withDir(async (dir) => {
    const storage = new LocalStorage(dir);
    const writer = new ShardWriter({ storage, prefix: 'ds' });
    await writer.write({ key: 'ok', fields: { txt: Buffer.from('x') } });
    await assert.rejects(writer.write({ key: '../evil', fields: { txt: Buffer.from('x') } }), { code: 'E_SAMPLE' });
    await assert.rejects(writer.write({ key: 'a.b', fields: { txt: Buffer.from('x') } }), { code: 'E_SAMPLE' });
    await assert.rejects(writer.write({ key: 'k', fields: { TXT: Buffer.from('x') } }), { code: 'E_SAMPLE' });
    await assert.rejects(writer.write({ key: 'k', fields: {} }), { code: 'E_SAMPLE' });
    await assert.rejects(writer.write({ key: 'ok', fields: { txt: Buffer.from('again') } }), { code: 'E_SAMPLE' });
    const [record] = await writer.close();
    const back = [];
    for await (const s of readShard({ storage, key: record!.shard })) back.push(s.key);
    assert.deepEqual(back, ['ok']);
  });
});

test('an abandoned shard leaves nothing visible', async () => {
  await withDir(async (dir) => {
    const storage = new LocalStorage(dir);
    const writer = new ShardWriter({ storage, prefix: 'ds' });
    await writer.write({ key: 'a', fields: { bin: Buffer.alloc(5000) } });
    await writer.abort(new Error('killed'));
    const left = [];
    for await (const info of storage.list()) left.push(info.key);
    assert.deepEqual(left, []);
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(dir), []);
  });
});
