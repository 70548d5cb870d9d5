/**
 * A stand-in for upload.wikimedia.org on loopback, for builds pointed at it with `--wikimedia-base`: it answers the
 * paths of Wikimedia's upload scheme with seeded images of the size the path asks for.
 *   /wikipedia/<project>/thumb/<h>/<hh>/<File>/<prefix><W>px-<name>   a thumbnail W px wide, the original's proportions
 *   /wikipedia/<project>/<h>/<hh>/<File>                              the original
 * Originals have the size given for their file name (as Parsoid's data-file-width/height would say), else 640x480.
 * `.jpg`/`.jpeg` names get JPEG bytes, any other name PNG (an SVG's `.svg.png` rendition included). Anything else is 404.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { jpeg, png } from './images.ts';

export interface WikimediaMirror {
  /** The `--wikimedia-base` value that points a build here. */
  base: string;
  /** Requests for exactly this path (decoded, without the base). */
  hits(path: string): number;
  /** Every path requested, in order. */
  requested(): string[];
  close(): Promise<void>;
}

export interface WikimediaMirrorOptions {
  /** Original sizes by file name as it appears in the path, decoded (`Nesting_dolls.jpg`). */
  originals?: ReadonlyMap<string, { width: number; height: number }>;
  /** Wait this long before each answer (to make a build last long enough to be killed). */
  delayMs?: number;
}

export async function startWikimediaMirror(options: WikimediaMirrorOptions = {}): Promise<WikimediaMirror> {
  const requested: string[] = [];
  const cache = new Map<string, Promise<Buffer>>();
  const sizeOf = (file: string) => options.originals?.get(file) ?? { width: 640, height: 480 };

  /** The image a path names, or undefined when it is not an upload path. */
  const imageFor = (path: string): { width: number; height: number; kind: 'jpeg' | 'png' } | undefined => {
    const parts = path.split('/');
    if (parts[1] !== 'wikipedia' || parts.length < 6) return undefined;
    const name = parts[parts.length - 1]!;
    const kind = /\.jpe?g$/i.test(name) ? 'jpeg' : 'png';
    if (parts[3] === 'thumb') {
      if (parts.length !== 8) return undefined;
      const width = Number(/(\d+)px-[^/]+$/.exec(name)?.[1]);
      if (!(width > 0)) return undefined;
      const original = sizeOf(parts[6]!);
      return { width, height: Math.max(1, Math.round((width * original.height) / original.width)), kind };
    }
    return parts.length === 6 ? { ...sizeOf(name), kind } : undefined;
  };

  const server = http.createServer((req, res) => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://mirror.invalid').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    requested.push(path);
    const image = imageFor(path);
    if (!image) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not an upload path: ${path}\n`);
      return;
    }
    let seed = 7;
    for (const c of path) seed = (Math.imul(seed, 31) + c.charCodeAt(0)) | 0;
    let bytes = cache.get(path);
    if (!bytes) {
      bytes = image.kind === 'jpeg' ? jpeg(image.width, image.height, { seed }) : png(image.width, image.height, { seed });
      cache.set(path, bytes);
    }
    const answer = () =>
      void bytes.then(
        (body) => res.writeHead(200, { 'content-type': `image/${image.kind}`, 'content-length': body.length }).end(body),
        () => res.writeHead(500).end(),
      );
    if (options.delayMs) setTimeout(answer, options.delayMs);
    else answer();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    hits: (path) => requested.filter((p) => p === path).length,
    requested: () => [...requested],
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
