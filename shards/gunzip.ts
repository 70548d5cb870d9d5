import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { M4Error } from '../core/errors.ts';
import { peekBytes } from './peek.ts';

/** `.tgz` and `.tar.gz` name gzip-compressed tars, as in webdataset's own test data. */
export const GZIP_TAR_NAME = /\.(tgz|tar\.gz)$/i;

/** Whether bytes start with gzip's magic number (1f 8b): what decides, whatever the file is named. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Passes a byte stream on, decompressed through Node's gunzip when it starts with gzip's magic bytes; `onGzip` is
 * told when it does. A truncated or corrupt gzip stream ends in E_TAR_TRUNCATED or E_TAR_CORRUPT naming `url`.
 */
export async function* gunzipIfCompressed(source: AsyncIterable<Uint8Array>, url: string, onGzip?: () => void): AsyncGenerator<Uint8Array> {
  const input = source[Symbol.asyncIterator]();
  try {
    yield* gunzipped(input, url, onGzip);
  } finally {
    // However the reading ends (a tar parser that stops at its end-of-archive marker, an error), the source is
    // released: a file handle or an S3 connection is never left to the garbage collector.
    await input.return?.();
  }
}

async function* gunzipped(input: AsyncIterator<Uint8Array>, url: string, onGzip?: () => void): AsyncGenerator<Uint8Array> {
  const { head, stream } = await peekBytes(input, 2);
  if (!isGzip(head)) {
    yield* stream;
    return;
  }
  onGzip?.();
  const gunzip = createGunzip();
  // pipeline, not pipe: a read that fails mid-stream (a dropped connection) must end the loop below, not stall it.
  pipeline(Readable.from(stream, { objectMode: false }), gunzip, () => {});
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'Z_BUF_ERROR') throw new M4Error('E_TAR_TRUNCATED', 'shards', `${url}: gzip data ends early (truncated)`, { shard: url }, { cause: err });
    if (typeof code === 'string' && code.startsWith('Z_'))
      throw new M4Error('E_TAR_CORRUPT', 'shards', `${url}: corrupt gzip data (${(err as Error).message})`, { shard: url }, { cause: err });
    throw err;
  } finally {
    gunzip.destroy();
  }
}
