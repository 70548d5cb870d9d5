/**
 * An HTTP server on loopback that misbehaves on request, for tests of anything that downloads.
 *
 * Routes (`<name>` is a key of the files map; `<target>` is either a file name or a nested route without its
 * leading slash, so wrappers compose: `/redirect/2/noai/flaky/1/cat.jpg`, `/slow-headers/50/f/cat.jpg`):
 *   /f/<name>                     the file: 200, Content-Length, its contentType (default application/octet-stream) and headers; 404 if absent
 *   /status/<code>                that status (200-599) with a short text body
 *   /flaky/<n>/<target>           500 for the first n hits of this exact path, then the target
 *   /retry-after/<s>/<target>     429 with `Retry-After: <s>` on the first hit of this exact path, then the target
 *   /slow-headers/<ms>[/<target>] waits ms before answering with the target (default a small text body)
 *   /slow-body/<ms>[/<name>]      headers and half the body at once, the rest after ms (default 1024 bytes)
 *   /huge/<bytes>                 that many zero bytes with Content-Length
 *   /huge-chunked/<bytes>         that many zero bytes, chunked, without Content-Length
 *   /redirect/<n>/<target>        302 to /redirect/<n-1>/<target>; /redirect/0/<target> is the target (n hops in all)
 *   /loop/a, /loop/b              302 to each other
 *   /redirect-to?location=<url>[&status=<code>]   a redirect (default 302) to any Location, relative or absolute
 *   /noai/<target>                the target with `X-Robots-Tag: noai`
 *   /noimageai/<target>           the target with `X-Robots-Tag: googlebot: noimageai`
 *   /reset[/<name>]               Content-Length of the whole body, half of it, then a TCP reset (default 64 KiB of zeros)
 * Anything else is 404. Every request counts as a hit of its path and query as sent (`hits('/f/cat.jpg')`).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface HostileFile {
  body: Buffer;
  contentType?: string;
  headers?: Record<string, string>;
}

export interface HostileServer {
  /** The absolute URL of a path on this server, e.g. url('/f/cat.jpg'). */
  url(path: string): string;
  port: number;
  /** Requests received for exactly this path (with its query, as sent). */
  hits(path: string): number;
  /** TCP connections open now, the most open at once, and all accepted so far. */
  connections(): { open: number; peak: number; total: number };
  /** Stops listening, cuts every connection and cancels pending slow responses. */
  close(): Promise<void>;
}

export interface HostileServerOptions {
  /** Loopback address to listen on. Default 127.0.0.1. */
  host?: string;
}

// Routes whose first parameter is a number.
const NUMBERED_ROUTES = new Set(['status', 'flaky', 'retry-after', 'slow-headers', 'slow-body', 'huge', 'huge-chunked', 'redirect']);

type Respond = (res: http.ServerResponse, path: string, query: URLSearchParams, hitPath: string) => void;

export async function startHostileServer(files: Map<string, HostileFile> = new Map(), options: HostileServerOptions = {}): Promise<HostileServer> {
  const host = options.host ?? '127.0.0.1';
  const hitCounts = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const sockets = { open: 0, peak: 0, total: 0 };

  /** Runs fn after ms unless the response is gone by then or the server closes. */
  const later = (res: http.ServerResponse, ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!res.destroyed) fn();
    }, ms);
    timers.add(timer);
    res.once('close', () => {
      clearTimeout(timer);
      timers.delete(timer);
    });
  };

  const sendFile = (res: http.ServerResponse, name: string) => {
    const file = files.get(name);
    if (file === undefined) return text(res, 404, `no file ${name}\n`);
    for (const [key, value] of Object.entries(file.headers ?? {})) res.setHeader(key, value);
    res.writeHead(200, { 'content-type': file.contentType ?? 'application/octet-stream', 'content-length': file.body.length });
    res.end(file.body);
  };

  /** Serves `<target>`: a file when the files map has that name, else the nested route. */
  const serveTarget = (res: http.ServerResponse, target: string, query: URLSearchParams, hitPath: string) => {
    if (files.has(target)) return sendFile(res, target);
    route(res, `/${target}`, query, hitPath);
  };

  /** The file `<name>`, or `fallback` when no name was given; undefined (after a 404) when the name is unknown. */
  const bodyOf = (res: http.ServerResponse, name: string, fallback: Buffer): Buffer | undefined => {
    if (name === '') return fallback;
    const file = files.get(name);
    if (file === undefined) text(res, 404, `no file ${name}\n`);
    return file?.body;
  };

  const route: Respond = (res, path, query, hitPath) => {
    const [, kind = '', first = '', ...more] = path.split('/');
    const afterFirst = [first, ...more].join('/');
    const rest = more.join('/');
    const count = Number(first);
    if (NUMBERED_ROUTES.has(kind) && !(/^\d+$/.test(first) && Number.isSafeInteger(count))) {
      return text(res, 400, `bad number ${first} in ${path}\n`);
    }
    switch (kind) {
      case 'f':
        return sendFile(res, afterFirst);
      case 'status':
        return count >= 200 && count <= 599 ? text(res, count, `status ${count}\n`) : text(res, 400, `bad status ${count}\n`);
      case 'flaky':
        return (hitCounts.get(hitPath) ?? 0) <= count ? text(res, 500, 'flaky\n') : serveTarget(res, rest, query, hitPath);
      case 'retry-after':
        if (hitCounts.get(hitPath) === 1) {
          res.setHeader('retry-after', String(count));
          return text(res, 429, 'slow down\n');
        }
        return serveTarget(res, rest, query, hitPath);
      case 'slow-headers':
        return later(res, count, () => (rest === '' ? text(res, 200, 'finally\n') : serveTarget(res, rest, query, hitPath)));
      case 'slow-body': {
        const body = bodyOf(res, rest, Buffer.alloc(1024, 'x'));
        if (body === undefined) return;
        const half = Math.floor(body.length / 2);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
        res.write(body.subarray(0, half));
        return later(res, count, () => res.end(body.subarray(half)));
      }
      case 'huge':
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': count });
        return writeZeros(res, count);
      case 'huge-chunked':
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        return writeZeros(res, count);
      case 'redirect':
        return count === 0 ? serveTarget(res, rest, query, hitPath) : redirect(res, 302, encodeURI(`/redirect/${count - 1}/${rest}`));
      case 'loop':
        return first === 'a' || first === 'b' ? redirect(res, 302, first === 'a' ? '/loop/b' : '/loop/a') : text(res, 404, 'no such loop\n');
      case 'redirect-to': {
        const status = Number(query.get('status') ?? 302);
        if (!(Number.isInteger(status) && status >= 300 && status <= 399)) return text(res, 400, `bad redirect status ${status}\n`);
        return redirect(res, status, query.get('location') ?? '/');
      }
      case 'noai':
        res.setHeader('x-robots-tag', 'noai');
        return serveTarget(res, afterFirst, query, hitPath);
      case 'noimageai':
        res.setHeader('x-robots-tag', 'googlebot: noimageai');
        return serveTarget(res, afterFirst, query, hitPath);
      case 'reset': {
        const body = bodyOf(res, afterFirst, Buffer.alloc(64 * 1024));
        if (body === undefined) return;
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
        // Reset only once the first half has left, so the client sees a body cut short rather than no body.
        return void res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.resetAndDestroy());
      }
      default:
        return text(res, 404, `no route ${path}\n`);
    }
  };

  const server = http.createServer((req, res) => {
    const hitPath = req.url ?? '/';
    hitCounts.set(hitPath, (hitCounts.get(hitPath) ?? 0) + 1);
    let url: URL;
    let path: string;
    try {
      url = new URL(hitPath, 'http://hostile.invalid');
      path = decodeURIComponent(url.pathname);
    } catch {
      return text(res, 400, 'bad url\n');
    }
    route(res, path, url.searchParams, hitPath);
  });
  server.on('connection', (socket: Socket) => {
    sockets.open += 1;
    sockets.total += 1;
    sockets.peak = Math.max(sockets.peak, sockets.open);
    socket.once('close', () => {
      sockets.open -= 1;
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    url: (path) => `${origin}${path}`,
    port,
    hits: (path) => hitCounts.get(path) ?? 0,
    connections: () => ({ ...sockets }),
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
      server.closeAllConnections();
      await closed;
    },
  };
}

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function redirect(res: http.ServerResponse, status: number, location: string): void {
  res.writeHead(status, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': 9 });
  res.end('redirect\n');
}

/** Streams `total` zero bytes, respecting backpressure, until done or the client goes away. */
function writeZeros(res: http.ServerResponse, total: number): void {
  const chunk = Buffer.alloc(64 * 1024);
  let left = total;
  const pump = () => {
    while (left > 0 && !res.destroyed) {
      const size = Math.min(left, chunk.length);
      left -= size;
      if (!res.write(size === chunk.length ? chunk : chunk.subarray(0, size))) return void res.once('drain', pump);
    }
    if (!res.destroyed) res.end();
  };
  pump();
}
