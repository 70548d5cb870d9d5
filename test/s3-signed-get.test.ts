import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import { isM4Error } from '../core/errors.ts';
import { applyEnv } from '../sandbox/s3-server.ts';
import { encodeKey, signGet, targetOf } from '../shards/storage/s3-signed-get.ts';
import { S3Storage } from '../shards/storage/s3.ts';

// S3 GETs signed by m4data itself (SigV4) once the SDK has shown where a bucket is: the signature checked against AWS's
// published example and, on every request a real server receives, against the SDK's own signer.

test('a GET is signed as AWS documents it (the GET Object example of the SigV4 guide)', () => {
  const headers = signGet(
    { host: 'examplebucket.s3.amazonaws.com', path: '/test.txt', headers: { range: 'bytes=0-9' } },
    { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    { region: 'us-east-1', service: 's3' },
    new Date('2013-05-24T00:00:00Z'),
  );
  assert.equal(
    headers.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,' +
      'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
  );
  assert.equal(headers['x-amz-date'], '20130524T000000Z');
  assert.equal(headers['x-amz-content-sha256'], 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test("keys are encoded as S3 paths carry them, and the SDK's request gives the bucket's target", () => {
  assert.equal(encodeKey("pre fix/a+b(1)!*'~_.-ü.tar"), 'pre%20fix/a%2Bb%281%29%21%2A%27~_.-%C3%BC.tar');
  const authorization = 'AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00';
  const sent = (path: string, extra: Record<string, string> = {}) => ({
    protocol: 'https:',
    hostname: 'b.s3.eu-west-1.amazonaws.com',
    path,
    headers: { authorization, ...extra },
  });
  assert.deepEqual(targetOf(sent('/data/a%20b.tar'), 'data/a b.tar'), {
    origin: 'https://b.s3.eu-west-1.amazonaws.com',
    host: 'b.s3.eu-west-1.amazonaws.com',
    pathPrefix: '/',
    region: 'eu-west-1',
    service: 's3',
  });
  assert.deepEqual(targetOf({ protocol: 'http:', hostname: '127.0.0.1', port: 9000, path: '/bucket/x.tar', headers: { authorization } }, 'x.tar'), {
    origin: 'http://127.0.0.1:9000',
    host: '127.0.0.1:9000',
    pathPrefix: '/bucket/',
    region: 'eu-west-1',
    service: 's3',
  });
  // What m4data does not sign itself stays with the SDK.
  assert.equal(targetOf(sent('/x.tar', { 'x-amz-s3session-token': 't' }), 'x.tar'), undefined);
  assert.equal(targetOf(sent('/x.tar', { authorization: authorization.replace('AWS4-HMAC-SHA256', 'AWS4-ECDSA-P256-SHA256') }), 'x.tar'), undefined);
  assert.equal(targetOf(sent('/a b.tar'), 'a b.tar'), undefined);
});

function bytes(data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof data === 'string') return data;
  return data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** An S3-like server holding objects in memory, which checks every request's signature with the SDK's signer. */
async function verifyingServer(objects: Map<string, Buffer>) {
  const seen = { sdk: 0, direct: 0, badSignatures: [] as string[], failNext: 0, silent: false };
  const sha256 = class {
    private readonly hash;
    constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
      this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
    }
    update(data: string | ArrayBuffer | ArrayBufferView) {
      this.hash.update(bytes(data));
    }
    async digest() {
      return new Uint8Array(this.hash.digest());
    }
  };
  const check = async (req: IncomingMessage): Promise<void> => {
    const auth = /Credential=([^/]+)\/\d{8}\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)/.exec(req.headers.authorization ?? '');
    if (!auth) return void seen.badSignatures.push(`${req.url}: no SigV4 authorization`);
    const signed = auth[3]!.split(';');
    const headers = Object.fromEntries(signed.map((name) => [name, String(req.headers[name])]));
    const [path, query] = req.url!.split('?');
    const signer = new SignatureV4({
      credentials: { accessKeyId: auth[1]!, secretAccessKey: 'SECRET', sessionToken: 'TOKEN' },
      region: auth[2]!,
      service: 's3',
      sha256,
      uriEscapePath: false,
    });
    const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(headers['x-amz-date']!)!;
    const again = await signer.sign(
      { method: 'GET', protocol: 'http:', hostname: '127.0.0.1', path: path!, headers, query: Object.fromEntries(new URLSearchParams(query ?? '')) },
      { signingDate: new Date(`${date[1]}-${date[2]}-${date[3]}T${date[4]}:${date[5]}:${date[6]}Z`) },
    );
    const expected = /Signature=([0-9a-f]+)/.exec(String(again.headers.authorization))![1];
    if (expected !== auth[4]) seen.badSignatures.push(`${req.url}: signature ${auth[4]}, the SDK's signer gives ${expected}`);
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      await check(req);
      if ('amz-sdk-invocation-id' in req.headers) seen.sdk++;
      else seen.direct++;
      if (seen.silent) return; // the request is never answered
      const key = decodeURIComponent(req.url!.split('?')[0]!.replace(/^\/bucket\//, ''));
      const object = objects.get(key);
      const reply = (status: number, code: string) => {
        res.writeHead(status, { 'content-type': 'application/xml' }).end(`<Error><Code>${code}</Code><Message>from the test server</Message></Error>`);
      };
      if (seen.failNext > 0 && !('amz-sdk-invocation-id' in req.headers)) {
        seen.failNext--;
        return reply(503, 'SlowDown');
      }
      if (!object) return reply(404, 'NoSuchKey');
      const etag = `"${createHash('md5').update(object).digest('hex')}"`;
      if (req.headers['if-match'] !== undefined && req.headers['if-match'] !== etag) return reply(412, 'PreconditionFailed');
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (!range) return void res.writeHead(200, { etag, 'content-length': object.length }).end(object);
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), object.length - 1) : object.length - 1;
      if (start >= object.length) return reply(416, 'InvalidRange');
      res
        .writeHead(206, { etag, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${object.length}` })
        .end(object.subarray(start, end + 1));
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { endpoint, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

test("after the SDK's first GET of a bucket, reads are signed here: every signature verifies, every byte is right", async (t) => {
  const key = "data set/shard*(1)!'~+ü.tar";
  const data = randomBytes(300_000);
  const server = await verifyingServer(new Map([[`pre/${key}`, data]]));
  t.after(server.close);
  t.after(
    applyEnv({
      AWS_ENDPOINT_URL: server.endpoint,
      AWS_ACCESS_KEY_ID: 'AKID',
      AWS_SECRET_ACCESS_KEY: 'SECRET',
      AWS_SESSION_TOKEN: 'TOKEN',
      AWS_REGION: 'eu-west-1',
    }),
  );
  const storage = new S3Storage('s3://bucket/pre', { maxAttempts: 3 });
  const read = async (range?: { start: number; end?: number }) => {
    const chunks: Buffer[] = [];
    for await (const chunk of storage.read(key, range)) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks);
  };
  assert.deepEqual(await read({ start: 0, end: 1000 }), data.subarray(0, 1000));
  assert.deepEqual(server.seen, { sdk: 1, direct: 0, badSignatures: [], failNext: 0, silent: false });
  assert.deepEqual(await read(), data);
  assert.deepEqual(await read({ start: 123_456, end: 200_001 }), data.subarray(123_456, 200_001));
  assert.deepEqual(await read({ start: 299_999 }), data.subarray(299_999));
  assert.equal((await read({ start: 300_000 })).length, 0);
  assert.deepEqual(server.seen, { sdk: 1, direct: 4, badSignatures: [], failNext: 0, silent: false });

  // Throttled twice, then answered; throttled past maxAttempts, an error naming the tries; a missing key, E_NOT_FOUND.
  server.seen.failNext = 2;
  assert.deepEqual(await read({ start: 10, end: 20 }), data.subarray(10, 20));
  server.seen.failNext = 3;
  await assert.rejects(
    read({ start: 10, end: 20 }),
    (err: unknown) =>
      isM4Error(err, 'E_STORAGE') &&
      /S3 read of s3:\/\/bucket\/pre\/data set\/shard\*\(1\)!'~\+ü\.tar at http:\/\/127\.0\.0\.1:\d+ failed after 3 attempts: SlowDown/.test(err.message),
  );
  await assert.rejects(
    (async () => {
      for await (const chunk of storage.read('nothing.tar')) void chunk;
    })(),
    (err: unknown) => isM4Error(err, 'E_NOT_FOUND') && err.message === 'no such object: s3://bucket/pre/nothing.tar',
  );
  assert.equal(server.seen.sdk, 1);
  assert.deepEqual(server.seen.badSignatures, []);
});

test('a GET signed here has the S3 deadlines: an endpoint that stops answering fails the read, naming it', async (t) => {
  const server = await verifyingServer(new Map([['pre/a.tar', randomBytes(1000)]]));
  t.after(server.close);
  t.after(applyEnv({ AWS_ENDPOINT_URL: server.endpoint, AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'SECRET', AWS_SESSION_TOKEN: 'TOKEN' }));
  t.after(applyEnv({ M4DATA_S3_CONNECT_TIMEOUT_MS: '300', M4DATA_S3_REQUEST_TIMEOUT_MS: '300', M4DATA_S3_IDLE_TIMEOUT_MS: '300' }));
  const storage = new S3Storage('s3://bucket/pre', { maxAttempts: 2 });
  const read = async () => {
    for await (const chunk of storage.read('a.tar', { start: 0, end: 10 })) void chunk;
  };
  await read(); // through the SDK, which shows the bucket's endpoint
  server.seen.silent = true;
  // Without a deadline the read never ends: the race fails the test instead of hanging it.
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('still waiting after 30 s')), 30_000)));
  t.after(() => clearTimeout(timer));
  await assert.rejects(
    Promise.race([read(), hung]),
    (err: unknown) => isM4Error(err, 'E_STORAGE') && err.message.includes(` at ${server.endpoint} failed after 2 attempts`) && /Timeout/.test(err.message),
  );
  assert.equal(server.seen.sdk, 1);
  assert.equal(server.seen.direct, 2);
});
