import { join } from 'node:path';
import { readdir, readFile } from 'node:fs/promises';
import { startHostileServer, type HostileFile, type HostileServer } from '../../sandbox/hostile-server.ts';
import { animatedGif, cmykJpeg, exifRotatedJpeg, jpeg, notAnImage, pixelBombPng, png, truncatedJpeg } from '../../sandbox/images.ts';
import { writeParquetFixture, type FixtureValue } from '../../sandbox/parquet-files.ts';

/** One LAION row of the hostile fixture and the outcome it must end with. */
export interface ExpectedRow {
  path: string;
  status: string;
  error?: RegExp;
  text?: string;
  punsafe?: number;
}

/**
 * Images served by the hostile server for build tests: every failure mode the build must survive, and good images.
 */
export async function startImageServer(): Promise<HostileServer> {
  const files = new Map<string, HostileFile>();
  const add = (name: string, body: Buffer, contentType = 'image/jpeg') => files.set(name, { body, contentType });
  for (let i = 0; i < 8; i++) add(`good${i}.jpg`, await jpeg(200 + 37 * i, 180 + 23 * i, { seed: i }));
  add('alpha.png', await png(300, 200, { alpha: true }), 'image/png');
  add('cmyk.jpg', await cmykJpeg(320, 240));
  add('rotated.jpg', await exifRotatedJpeg(400, 300, 6));
  add('anim.gif', await animatedGif(3, 200, 160), 'image/gif');
  add('truncated.jpg', await truncatedJpeg(400, 300));
  add('html.jpg', notAnImage());
  add('bomb.png', pixelBombPng(), 'image/png');
  add('tiny.jpg', await jpeg(100, 80));
  add('wide.jpg', await jpeg(1000, 200));
  return startHostileServer(files);
}

/** The LAION rows every pair-build test uses, in input order, with the status each must end with. */
export function hostileLaionRows(): ExpectedRow[] {
  return [
    { path: '/f/good0.jpg', status: 'success' },
    { path: '/status/404', status: 'failed_to_download', error: /http 404/ },
    { path: '/flaky/1/good1.jpg', status: 'success' },
    { path: '/slow-headers/4000/good2.jpg', status: 'failed_to_download', error: /timeout/ },
    { path: '/huge/3000000', status: 'failed_to_download', error: /larger than/ },
    { path: '/redirect/3/good3.jpg', status: 'success' },
    { path: '/loop/a', status: 'failed_to_download', error: /loop/ },
    { path: '/redirect-to?location=http://127.0.0.2:1/f/good4.jpg', status: 'failed_to_download', error: /blocked address 127\.0\.0\.2/ },
    { path: '/f/truncated.jpg', status: 'failed_to_decode' },
    { path: '/f/html.jpg', status: 'failed_to_decode', error: /not an image/ },
    { path: '/f/cmyk.jpg', status: 'success' },
    { path: '/f/alpha.png', status: 'success' },
    { path: '/f/rotated.jpg', status: 'success' },
    { path: '/f/anim.gif', status: 'success' },
    { path: '/f/bomb.png', status: 'failed_to_decode', error: /pixel/ },
    { path: '/noai/good5.jpg', status: 'opted_out', error: /noai/ },
    { path: '/f/tiny.jpg', status: 'filtered', error: /too small/ },
    { path: '/f/wide.jpg', status: 'filtered', error: /aspect ratio/ },
    { path: '/f/good6.jpg', status: 'filtered', error: /punsafe/, punsafe: 0.9 },
    { path: '/f/good7.jpg', status: 'filtered', error: /caption/, text: '' },
    { path: '/f/good7.jpg', status: 'success', text: 'the same image again, another caption' },
  ];
}

export async function writeLaionParquet(path: string, server: HostileServer, rows: ExpectedRow[]): Promise<void> {
  const values: FixtureValue[][] = rows.map((r, i) => [
    server.url(r.path),
    r.text ?? `a photo number ${i} of a thing`,
    640,
    480,
    0.31,
    r.punsafe ?? 0.01,
    0.1,
    1234567890123456789n - BigInt(i), // a LAION hash: an int64 past 2^53, kept exact
  ]);
  await writeParquetFixture(
    path,
    { URL: 'VARCHAR', TEXT: 'VARCHAR', WIDTH: 'INTEGER', HEIGHT: 'INTEGER', similarity: 'DOUBLE', punsafe: 'DOUBLE', pwatermark: 'DOUBLE', hash: 'BIGINT' },
    values,
  );
}

/** Fetch settings for tests: loopback 127.0.0.1 only, short timeouts and backoff. */
export const TEST_FETCH = {
  allowPrivateNetwork: ['127.0.0.1/32'],
  connectTimeoutMs: 2000,
  headersTimeoutMs: 1000,
  bodyTimeoutMs: 2000,
  retries: 1,
  retryBaseDelayMs: 20,
  retryMaxDelayMs: 200,
  maxBodyBytes: 1_000_000,
};

/** Every file under a folder (not temporary ones) with its bytes, for byte-for-byte comparisons of two builds. */
export async function filesOf(dir: string): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    if (/\.tmp-[0-9a-f]{12}$/.test(name)) continue;
    const path = join(dir, name);
    try {
      out[name] = await readFile(path);
    } catch {
      // a folder
    }
  }
  return out;
}
