import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { isM4Error } from '../core/errors.ts';
import { HttpStorage } from '../shards/storage/http.ts';
import { startTcpProxy, type TcpProxy } from '../sandbox/tcp-proxy.ts';

const MiB = 1024 * 1024;
/** The servers here are on loopback, which storage reaches only when allowed, as for image downloads. */
const LOOPBACK = { allowPrivateNetwork: ['127.0.0.1/32'] };

interface Served {
  data: Buffer;
  etag: string;
}

/**
 * A file server: `/files/<name>` with Range and If-Match, `/plain/<name>` the same files ignoring Range and If-Match,
 * `/moved/<name>` a redirect to `/files/<name>`.
 */
const files = new Map<string, Served>();

function serve(name: string, data: Buffer): void {
  files.set(name, { data, etag: `"${createHash('md5').update(data).digest('hex')}"` });
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const [, route, ...rest] = new URL(req.url ?? '/', 'http://x').pathname.split('/');
  const name = decodeURIComponent(rest.join('/'));
  if (route === 'moved') {
    res.writeHead(302, { location: `/files/${rest.join('/')}` }).end();
    return;
  }
  const file = files.get(name);
  if (!file) {
    res.writeHead(404).end('not found');
    return;
  }
  const headers: Record<string, string | number> = { etag: file.etag, 'last-modified': new Date(0).toUTCString(), 'accept-ranges': 'bytes' };
  if (route !== 'plain' && req.headers['if-match'] !== undefined && req.headers['if-match'] !== file.etag) {
    res.writeHead(412, headers).end();
    return;
  }
  let [start, end] = [0, file.data.length];
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (range && route !== 'plain') {
    start = Number(range[1]);
    end = range[2] ? Math.min(Number(range[2]) + 1, file.data.length) : file.data.length;
    if (start >= file.data.length) {
      res.writeHead(416, { 'content-range': `bytes */${file.data.length}` }).end();
      return;
    }
    headers['content-range'] = `bytes ${start}-${end - 1}/${file.data.length}`;
  }
  headers['content-length'] = end - start;
  res.writeHead(headers['content-range'] ? 206 : 200, headers);
  res.end(req.method === 'HEAD' ? undefined : file.data.subarray(start, end));
}

let server: Server;
let origin: string;
const data = randomBytes(4 * MiB + 123);

before(async () => {
  serve('object.bin', data);
  serve('dir/with space.bin', Buffer.from('spaced'));
  server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function readAll(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of it) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function proxied(t: { after(fn: () => Promise<void>): void }): Promise<TcpProxy> {
  const proxy = await startTcpProxy(Number(new URL(origin).port));
  t.after(() => proxy.close());
  return proxy;
}

describe('HttpStorage', () => {
  test('stat by HEAD: the size, or undefined for a 404', async () => {
    const storage = new HttpStorage(`${origin}/files/`, LOOPBACK);
    assert.equal(storage.root, `${origin}/files`);
    assert.deepEqual(await storage.stat('object.bin'), { key: 'object.bin', size: data.length });
    assert.deepEqual(await storage.stat('dir/with space.bin'), { key: 'dir/with space.bin', size: 6 });
    assert.equal(await storage.stat('missing.bin'), undefined);
  });

  test('full and ranged reads', async () => {
    const storage = new HttpStorage(`${origin}/files`, LOOPBACK);
    assert.ok((await readAll(storage.read('object.bin'))).equals(data));
    assert.deepEqual(await readAll(storage.read('object.bin', { start: 10, end: 70_000 })), data.subarray(10, 70_000));
    assert.deepEqual(await readAll(storage.read('object.bin', { start: data.length - 5 })), data.subarray(data.length - 5));
    assert.equal((await readAll(storage.read('object.bin', { start: 7, end: 7 }))).length, 0);
    assert.equal((await readAll(storage.read('object.bin', { start: data.length + 1 }))).length, 0);
  });

  test('a server that ignores Range still gives exactly the range asked for', async () => {
    const storage = new HttpStorage(`${origin}/plain`, LOOPBACK);
    assert.deepEqual(await readAll(storage.read('object.bin', { start: 1000, end: 2000 })), data.subarray(1000, 2000));
  });

  test('a read cut every 1.5 MiB resumes into identical bytes', async (t) => {
    const proxy = await proxied(t);
    proxy.cutAfter(1.5 * MiB, { every: true });
    const storage = new HttpStorage(`http://127.0.0.1:${proxy.port}/files`, LOOPBACK);
    assert.ok((await readAll(storage.read('object.bin'))).equals(data));
    assert.ok(proxy.stats.cuts >= 2, `cuts: ${proxy.stats.cuts}`);
  });

  test('a ranged read cut from a server that ignores Range resumes into identical bytes', async (t) => {
    const proxy = await proxied(t);
    proxy.cutAfter(MiB); // once: every answer starts again from byte 0, so cutting every one would never get past 1 MiB
    const storage = new HttpStorage(`http://127.0.0.1:${proxy.port}/plain`, LOOPBACK);
    assert.deepEqual(await readAll(storage.read('object.bin', { start: 5, end: 3 * MiB })), data.subarray(5, 3 * MiB));
    assert.equal(proxy.stats.cuts, 1);
  });

  for (const route of ['files', 'plain']) {
    test(`a file replaced while it is read is an error, not a splice (/${route})`, async (t) => {
      serve('changing.bin', data);
      const proxy = await proxied(t);
      proxy.cutAfter(MiB);
      const it = new HttpStorage(`http://127.0.0.1:${proxy.port}/${route}`, LOOPBACK).read('changing.bin')[Symbol.asyncIterator]();
      assert.equal((await it.next()).done, false);
      serve('changing.bin', randomBytes(data.length));
      await assert.rejects(
        (async () => {
          while (!(await it.next()).done);
        })(),
        (e) => isM4Error(e, 'E_STORAGE') && /changed while it was being read/.test(e.message),
      );
    });
  }

  test('a 404 read is E_NOT_FOUND; list, write and delete are E_USAGE', async () => {
    const storage = new HttpStorage(`${origin}/files`, LOOPBACK);
    await assert.rejects(readAll(storage.read('missing.bin')), (e) => isM4Error(e, 'E_NOT_FOUND') && e.message.includes(`${origin}/files/missing.bin`));
    assert.throws(
      () => storage.list(),
      (e) => isM4Error(e, 'E_USAGE') && /cannot list/.test(e.message),
    );
    await assert.rejects(storage.write('x.bin', Buffer.from('x')), (e) => isM4Error(e, 'E_USAGE') && /read-only/.test(e.message));
    await assert.rejects(storage.delete('x.bin'), (e) => isM4Error(e, 'E_USAGE') && /read-only/.test(e.message));
  });

  test('503 twice, then success', async (t) => {
    const proxy = await proxied(t);
    proxy.failRequests(2);
    const storage = new HttpStorage(`http://127.0.0.1:${proxy.port}/files`, { ...LOOPBACK, backoffBaseMs: 10 });
    assert.deepEqual(await readAll(storage.read('object.bin', { start: 0, end: 100 })), data.subarray(0, 100));
    assert.equal(proxy.stats.answered, 2);
  });

  test('too many 5xx is E_STORAGE', async (t) => {
    const proxy = await proxied(t);
    proxy.failRequests(10, { status: 500, code: 'InternalError' });
    const storage = new HttpStorage(`http://127.0.0.1:${proxy.port}/files`, { ...LOOPBACK, maxAttempts: 3, backoffBaseMs: 10 });
    await assert.rejects(storage.stat('object.bin'), (e) => isM4Error(e, 'E_STORAGE'));
    assert.equal(proxy.stats.answered, 3);
  });

  test('429 waits as long as Retry-After asks', async (t) => {
    const proxy = await proxied(t);
    proxy.failRequests(1, { status: 429, code: 'TooManyRequests', retryAfter: 1 });
    const storage = new HttpStorage(`http://127.0.0.1:${proxy.port}/files`, { ...LOOPBACK, backoffBaseMs: 1 });
    const t0 = Date.now();
    assert.deepEqual(await storage.stat('object.bin'), { key: 'object.bin', size: data.length });
    assert.ok(Date.now() - t0 >= 950, `waited ${Date.now() - t0} ms`);
    assert.equal(proxy.stats.answered, 1);
  });

  test('redirects are followed', async () => {
    const storage = new HttpStorage(`${origin}/moved`, LOOPBACK);
    assert.deepEqual(await readAll(storage.read('object.bin', { start: 3, end: 9 })), data.subarray(3, 9));
  });
});

describe('http storage follows the private-network rule', () => {
  test('a loopback, private or link-local server is refused unless allowed, by literal and by name', async () => {
    for (const url of ['http://127.0.0.1:9/files', 'http://10.0.0.1/x', 'http://169.254.169.254/latest', 'http://[::1]:9/x']) {
      assert.throws(
        () => new HttpStorage(url),
        (err) => isM4Error(err, 'E_USAGE') && /blocked address .* is not reached unless --allow-private-network allows it/.test(err.message),
        url,
      );
    }
    // A host name is judged by what it resolves to, when the connection is made.
    const byName = new HttpStorage(`http://localhost:${new URL(origin).port}/files`);
    await assert.rejects(byName.stat('object.bin'), (err) => isM4Error(err, 'E_USAGE') && /blocked address (127\.0\.0\.1|::1) \(loopback\)/.test(err.message));
    assert.ok(await new HttpStorage(`${origin}/files`, LOOPBACK).stat('object.bin'));
  });
});
