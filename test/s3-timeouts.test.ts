import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { isM4Error } from '../core/errors.ts';
import { S3Storage, s3Timeouts } from '../shards/storage/s3.ts';
import { applyEnv } from '../sandbox/s3-server.ts';

// An S3 endpoint that accepts connections and never answers hung every call forever: each now fails, naming the
// endpoint, within its deadlines and retries.

const sockets = new Set<Socket>();
const silent = createServer((socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  socket.on('error', () => {});
});
await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
const endpoint = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
test.after(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
});

const restore = applyEnv({
  AWS_ENDPOINT_URL: endpoint,
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
  AWS_REGION: 'us-east-1',
  M4DATA_S3_CONNECT_TIMEOUT_MS: '300',
  M4DATA_S3_REQUEST_TIMEOUT_MS: '300',
  M4DATA_S3_IDLE_TIMEOUT_MS: '300',
});
// Credentials are read at the first request, so the environment stays until the end.
test.after(restore);
const storage = new S3Storage('s3://bucket/prefix', { maxAttempts: 3 });

/** The call's error, or a failure when it has not ended by the deadline: without timeouts it never ends. */
async function failureOf(call: () => Promise<unknown>, deadlineMs = 30_000): Promise<{ error: unknown; ms: number }> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${deadlineMs} ms`)), deadlineMs)));
  try {
    await Promise.race([call(), hung]);
  } catch (error) {
    return { error, ms: Date.now() - start };
  } finally {
    clearTimeout(timer);
  }
  throw new Error('the call succeeded against a server that never answers');
}

const calls: Record<string, () => Promise<unknown>> = {
  stat: () => storage.stat('a.tar'),
  read: async () => {
    for await (const chunk of storage.read('a.tar')) void chunk;
  },
  list: async () => {
    for await (const info of storage.list()) void info;
  },
  write: () => storage.write('a.json', Buffer.from('{}')),
  'multipart write': () =>
    storage.write(
      'b.tar',
      (async function* () {
        yield Buffer.alloc(1024);
      })(),
    ),
};

for (const [op, call] of Object.entries(calls)) {
  test(`S3 ${op} against an endpoint that never answers fails with a message naming the endpoint`, async () => {
    const { error } = await failureOf(call);
    assert.ok(isM4Error(error, 'E_STORAGE'), String(error));
    assert.ok(error.message.includes(` at ${endpoint} failed after 3 attempts`), error.message);
    assert.match(error.message, /TimeoutError|timed out|exceeded/);
  });
}

test('S3 timeouts come from the environment, and a bad value names its variable', () => {
  assert.deepEqual(s3Timeouts({}), { connectMs: 10_000, requestMs: 60_000, idleMs: 60_000 });
  assert.deepEqual(s3Timeouts({ M4DATA_S3_CONNECT_TIMEOUT_MS: '50', M4DATA_S3_REQUEST_TIMEOUT_MS: '60', M4DATA_S3_IDLE_TIMEOUT_MS: '70' }), {
    connectMs: 50,
    requestMs: 60,
    idleMs: 70,
  });
  assert.throws(
    () => s3Timeouts({ M4DATA_S3_REQUEST_TIMEOUT_MS: 'soon' }),
    (err: unknown) => isM4Error(err, 'E_USAGE') && err.message.includes('M4DATA_S3_REQUEST_TIMEOUT_MS'),
  );
});
