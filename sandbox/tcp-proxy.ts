import { createConnection, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** The port the proxy listens on, on 127.0.0.1. */
  readonly port: number;
  /** What the proxy has done so far. */
  readonly stats: { connections: number; cuts: number; answered: number };
  /**
   * Cuts a connection once `bytes` bytes of response (headers included) have passed through it, by closing it:
   * only the next connection to get that far, or every one when `every` is set. `bytes` 0 cuts before any reply.
   */
  cutAfter(bytes: number, opts?: { every?: boolean }): void;
  /**
   * Answers the first request on each of the next `count` new connections itself, with an S3 error body (503 SlowDown
   * unless told otherwise) and `Connection: close`, so a client's retry needs a new connection. Connections a client
   * already keeps alive pass through untouched: call this before the client's first request.
   */
  failRequests(count: number, opts?: { status?: number; code?: string; retryAfter?: number }): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1:0 in front of `targetPort`, for tests of connections that drop or servers that push back. */
export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const stats = { connections: 0, cuts: 0, answered: 0 };
  const sockets = new Set<Socket>();
  let cut: { bytes: number; every: boolean } | undefined;
  let failing: { count: number; status: number; code: string; retryAfter: number | undefined } | undefined;

  const server = createServer((client) => {
    stats.connections++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (failing && failing.count > 0) {
      failing.count--;
      answerWithError(client, failing.status, failing.code, failing.retryAfter, () => stats.answered++);
      return;
    }
    const upstream = createConnection({ port: targetPort, host: targetHost });
    sockets.add(upstream);
    // Pass the server's close on as a close (not a reset), after anything still buffered for the client.
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.end();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);

    let passed = 0;
    upstream.on('data', (chunk: Buffer) => {
      if (cut && passed + chunk.length > cut.bytes) {
        const keep = Math.max(0, cut.bytes - passed);
        if (!cut.every) cut = undefined;
        stats.cuts++;
        client.end(chunk.subarray(0, keep));
        upstream.destroy();
        return;
      }
      passed += chunk.length;
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');

  return {
    port: address.port,
    stats,
    cutAfter(bytes, opts = {}) {
      cut = { bytes, every: opts.every ?? false };
    },
    failRequests(count, opts = {}) {
      failing = { count, status: opts.status ?? 503, code: opts.code ?? 'SlowDown', retryAfter: opts.retryAfter };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Reads one request's head (and its body, unless the client waits for `100 Continue`), then replies with an S3 error. */
function answerWithError(client: Socket, status: number, code: string, retryAfter: number | undefined, onAnswer: () => void): void {
  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    received = Buffer.concat([received, chunk]);
    const headEnd = received.indexOf('\r\n\r\n');
    if (headEnd < 0) return;
    const head = received.subarray(0, headEnd).toString('latin1');
    const expectsContinue = /^expect:\s*100-continue/im.test(head);
    const bodyLength = Number(/^content-length:\s*(\d+)/im.exec(head)?.[1] ?? 0);
    if (!expectsContinue && received.length - headEnd - 4 < bodyLength) return;
    client.off('data', onData);
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Error><Code>${code}</Code><Message>injected by the test proxy</Message><RequestId>tcp-proxy</RequestId></Error>`;
    const headers = [
      `HTTP/1.1 ${status} ${code}`,
      'Content-Type: application/xml',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Connection: close',
      ...(retryAfter === undefined ? [] : [`Retry-After: ${retryAfter}`]),
    ];
    const isHead = head.startsWith('HEAD ');
    client.end(`${headers.join('\r\n')}\r\n\r\n${isHead ? '' : body}`);
    onAnswer();
  };
  client.on('data', onData);
}
