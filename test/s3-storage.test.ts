import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import pLimit from 'p-limit';
import { request } from 'undici';
import { isM4Error } from '../core/errors.ts';
import { S3Storage, type S3StorageOptions } from '../shards/storage/s3.ts';
import { compareKeys } from '../shards/storage/storage.ts';
import { applyEnv, startS3Server, type S3Server } from '../sandbox/s3-server.ts';
import { startTcpProxy, type TcpProxy } from '../sandbox/tcp-proxy.ts';

const MiB = 1024 * 1024;

let s3: S3Server;
let restoreEnv: () => void;

before(async () => {
  s3 = await startS3Server();
  restoreEnv = applyEnv(s3.env);
});

after(async () => {
  restoreEnv();
  await s3.stop();
});

async function readAll(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of it) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

async function* inChunks(data: Buffer, size: number): AsyncIterable<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

/** A storage that reaches s3rver through a fresh proxy (so through a fresh client and fresh connections). */
async function viaProxy(
  t: { after(fn: () => Promise<void>): void },
  prefix: string,
  opts?: S3StorageOptions,
): Promise<{ storage: S3Storage; proxy: TcpProxy }> {
  const proxy = await startTcpProxy(Number(new URL(s3.endpoint).port));
  t.after(() => proxy.close());
  const undo = applyEnv({ AWS_ENDPOINT_URL: `http://127.0.0.1:${proxy.port}` });
  try {
    return { storage: new S3Storage(`s3://${s3.bucket}/${prefix}`, opts), proxy };
  } finally {
    undo();
  }
}

describe('S3Storage locations', () => {
  test('root and urlOf, with and without a prefix', () => {
    const a = new S3Storage('s3://bucket/some/prefix/');
    assert.equal(a.root, 's3://bucket/some/prefix');
    assert.equal(a.urlOf('shard-000.tar'), 's3://bucket/some/prefix/shard-000.tar');
    const b = new S3Storage('s3://bucket');
    assert.equal(b.root, 's3://bucket');
    assert.equal(b.urlOf('x/y.tar'), 's3://bucket/x/y.tar');
  });

  test('bad locations and part sizes are usage errors', () => {
    assert.throws(
      () => new S3Storage('s3://'),
      (e) => isM4Error(e, 'E_USAGE'),
    );
    assert.throws(
      () => new S3Storage('s3://b/p', { partSize: MiB }),
      (e) => isM4Error(e, 'E_USAGE'),
    );
  });
});

describe('S3Storage against s3rver', () => {
  test('multipart upload of a 12 MiB object in 5 MiB parts reads back byte-identical', async () => {
    const storage = new S3Storage(`s3://${s3.bucket}/multipart`, { partSize: 5 * MiB });
    const data = randomBytes(12 * MiB);
    assert.deepEqual(await storage.write('streamed.tar', inChunks(data, 1 * MiB + 17)), { key: 'streamed.tar', size: data.length });
    assert.deepEqual(await storage.write('buffer.tar', data), { key: 'buffer.tar', size: data.length });
    for (const key of ['streamed.tar', 'buffer.tar']) {
      assert.equal(sha256(await readAll(storage.read(key))), sha256(data), key);
      assert.deepEqual(await storage.stat(key), { key, size: data.length });
    }
  });

  test('a small buffer is one PutObject, and delete removes it', async () => {
    const storage = new S3Storage(`s3://${s3.bucket}/small`);
    const data = randomBytes(1000);
    assert.deepEqual(await storage.write('a.json', data), { key: 'a.json', size: 1000 });
    assert.deepEqual(await readAll(storage.read('a.json')), data);
    await storage.delete('a.json');
    assert.equal(await storage.stat('a.json'), undefined);
    await storage.delete('a.json'); // already absent: no error
  });

  test('a body that throws mid-upload leaves no object and its error reaches the caller', async () => {
    const storage = new S3Storage(`s3://${s3.bucket}/failed`, { partSize: 5 * MiB });
    const boom = new Error('source failed');
    async function* body(): AsyncIterable<Uint8Array> {
      for (let i = 0; i < 3; i++) yield randomBytes(4 * MiB); // two full parts go up before the failure
      throw boom;
    }
    await assert.rejects(storage.write('partial.tar', body()), (e) => e === boom);
    assert.equal(await storage.stat('partial.tar'), undefined);
    const listed = [];
    for await (const o of storage.list()) listed.push(o);
    assert.deepEqual(listed, []);
  });

  test('list returns 2,500 keys across pages, ascending and relative to the prefix', async () => {
    const storage = new S3Storage(`s3://${s3.bucket}/listing`);
    // Names whose creation order is not their sort order, and a sibling the prefix must leave out.
    // Over 1,000 keys, so the listing takes several pages (S3 and s3rver send at most 1,000 a page).
    const scrambled = (i: number): string => createHash('md5').update(String(i)).digest('hex').slice(0, 8);
    const keys = Array.from({ length: 2500 }, (_, i) => `many/${scrambled(i)}-${i}.tar`);
    // Put there by plain PUTs (s3rver takes them unsigned): S3Storage's writes are tested above, and 2,501 of them through
    // the SDK cost this test most of its 15 s.
    const limit = pLimit(16);
    await Promise.all(
      [...keys, 'more/x.tar'].map((key) =>
        limit(async () => {
          const put = await request(`${s3.endpoint}/${s3.bucket}/listing/${key}`, { method: 'PUT', body: key });
          await put.body.dump();
          assert.equal(put.statusCode, 200);
        }),
      ),
    );
    const listed = [];
    for await (const o of storage.list('many/')) listed.push(o);
    assert.equal(listed.length, 2500);
    assert.deepEqual(
      listed.map((o) => o.key),
      [...keys].sort(compareKeys),
    );
    assert.ok(listed.every((o) => o.size === Buffer.byteLength(o.key)));
    let all = 0;
    for await (const _ of storage.list()) all++;
    assert.equal(all, 2501);
  });

  test('ranged reads', async () => {
    const storage = new S3Storage(`s3://${s3.bucket}/ranges`);
    const data = randomBytes(100_000);
    await storage.write('r.bin', data);
    assert.deepEqual(await readAll(storage.read('r.bin', { start: 1000, end: 5000 })), data.subarray(1000, 5000));
    assert.deepEqual(await readAll(storage.read('r.bin', { start: 99_000 })), data.subarray(99_000));
    assert.deepEqual(await readAll(storage.read('r.bin', { start: 0, end: 1 })), data.subarray(0, 1));
    assert.equal((await readAll(storage.read('r.bin', { start: 500, end: 500 }))).length, 0);
    assert.equal((await readAll(storage.read('r.bin', { start: 200_000 }))).length, 0);
  });

  test('stat of a missing key is undefined; read of one is E_NOT_FOUND naming its s3:// URL', async () => {
    const storage = new S3Storage(`s3://${s3.bucket}/missing`);
    assert.equal(await storage.stat('nope.tar'), undefined);
    await assert.rejects(readAll(storage.read('nope.tar')), (e) => isM4Error(e, 'E_NOT_FOUND') && e.message.includes(`s3://${s3.bucket}/missing/nope.tar`));
  });
});

describe('S3Storage on a flaky network', () => {
  const data = randomBytes(6 * MiB);
  before(async () => {
    await new S3Storage(`s3://${s3.bucket}/flaky`).write('object.bin', data);
  });

  test('a stream whose connection is cut every 1.5 MiB resumes into identical bytes', async (t) => {
    const { storage, proxy } = await viaProxy(t, 'flaky');
    proxy.cutAfter(1.5 * MiB, { every: true });
    assert.equal(sha256(await readAll(storage.read('object.bin'))), sha256(data));
    assert.ok(proxy.stats.cuts >= 3, `cuts: ${proxy.stats.cuts}`);
  });

  test('a ranged stream cut once resumes within its range', async (t) => {
    const { storage, proxy } = await viaProxy(t, 'flaky');
    proxy.cutAfter(MiB);
    const range = { start: 100, end: 4 * MiB + 3 };
    assert.deepEqual(await readAll(storage.read('object.bin', range)), data.subarray(range.start, range.end));
    assert.equal(proxy.stats.cuts, 1);
  });

  test('more drops than maxResumes is E_STORAGE', async (t) => {
    const { storage, proxy } = await viaProxy(t, 'flaky', { maxResumes: 2 });
    proxy.cutAfter(512 * 1024, { every: true });
    await assert.rejects(readAll(storage.read('object.bin')), (e) => isM4Error(e, 'E_STORAGE') && /resumes used up/.test(e.message));
    assert.equal(proxy.stats.cuts, 3);
  });

  test('an object replaced while it is read is an error, not a splice', async (t) => {
    const direct = new S3Storage(`s3://${s3.bucket}/flaky`);
    await direct.write('changing.bin', data);
    const { storage, proxy } = await viaProxy(t, 'flaky');
    proxy.cutAfter(MiB);
    const it = storage.read('changing.bin')[Symbol.asyncIterator]();
    assert.equal((await it.next()).done, false);
    await direct.write('changing.bin', randomBytes(data.length));
    await assert.rejects(
      (async () => {
        while (!(await it.next()).done);
      })(),
      (e) => isM4Error(e, 'E_STORAGE') && /changed while it was being read/.test(e.message),
    );
  });

  test('503 SlowDown twice, then success: write and read both get through', async (t) => {
    const payload = randomBytes(64 * 1024);
    const [w, r] = [await viaProxy(t, 'flaky'), await viaProxy(t, 'flaky')];
    w.proxy.failRequests(2);
    r.proxy.failRequests(2);
    // Side by side, so the two rounds of throttling backoff (1 s base in the SDK) overlap.
    const [written, read] = await Promise.all([w.storage.write('slow.bin', payload), readAll(r.storage.read('object.bin'))]);
    assert.deepEqual(written, { key: 'slow.bin', size: payload.length });
    assert.equal(sha256(read), sha256(data));
    assert.deepEqual([w.proxy.stats.answered, r.proxy.stats.answered], [2, 2]);
    assert.deepEqual(await readAll(r.storage.read('slow.bin')), payload);
  });

  test('429, 500 and a connection dropped before the reply are retried too', async (t) => {
    for (const fault of [
      { status: 429, code: 'TooManyRequests' },
      { status: 500, code: 'InternalError' },
    ]) {
      const { storage, proxy } = await viaProxy(t, 'flaky');
      proxy.failRequests(1, fault);
      assert.deepEqual(await storage.stat('object.bin'), { key: 'object.bin', size: data.length });
      assert.equal(proxy.stats.answered, 1, `status ${fault.status}`);
    }
    const { storage, proxy } = await viaProxy(t, 'flaky');
    proxy.cutAfter(0);
    assert.deepEqual(await storage.stat('object.bin'), { key: 'object.bin', size: data.length });
    assert.equal(proxy.stats.cuts, 1);
  });

  test('maxAttempts bounds the retries, then the failure is E_STORAGE', async (t) => {
    const { storage, proxy } = await viaProxy(t, 'flaky', { maxAttempts: 2 });
    proxy.failRequests(3, { status: 500, code: 'InternalError' });
    await assert.rejects(storage.write('never.bin', Buffer.from('x')), (e) => isM4Error(e, 'E_STORAGE') && e.context.attempts === 2);
    assert.equal(proxy.stats.answered, 2);
  });
});
