/** How m4data rides out flaky remote storage: waits between attempts, and reads that resume where a dropped connection stopped. */
import { M4Error } from './errors.ts';

/** Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2^attempt)) ms, attempt counting from 0. */
export function backoffDelay(attempt: number, baseMs = 100, capMs = 20_000): number {
  return Math.floor(Math.random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/** The wait a Retry-After header asks for (delta-seconds or an HTTP date), in ms; undefined when absent or unreadable. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(header)) return Number(header) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const DROP_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/** Whether an error means the connection failed or dropped (worth another try), as opposed to an answer from the server. */
export function isConnectionDrop(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 5) return false;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && DROP_CODES.has(code)) return true;
  // The S3 client's idle deadline (no code): the connection is given up, and a resumed read opens a new one.
  if (err.name === 'TimeoutError') return true;
  if (/socket hang up|^aborted$|premature close|other side closed/i.test(err.message)) return true;
  return isConnectionDrop(err.cause, depth + 1);
}

/** One response of a resumable read: its body and, when the server said, how many bytes that body should hold. */
export interface Segment {
  body: AsyncIterable<Uint8Array>;
  length: number | undefined;
}

/**
 * Streams bytes `[start, end)` of a remote object (to its end when `end` is undefined) as one uninterrupted stream.
 * `open(offset)` asks for the bytes from `offset` on (undefined: nothing there); when a body breaks off, or ends short
 * of its length, it is opened again from the first byte not yet delivered, at most `maxResumes` times. Nothing past
 * `end` is passed on, whatever the server sends. `open` is where a changed object must be caught.
 */
export async function* resumingRead(
  open: (offset: number) => Promise<Segment | undefined>,
  start: number,
  end: number | undefined,
  maxResumes: number,
  what: string,
): AsyncIterable<Uint8Array> {
  const stop = end ?? Infinity;
  let offset = start;
  if (offset >= stop) return;
  for (let resumes = 0; ; resumes++) {
    const segment = await open(offset);
    if (segment === undefined) return;
    let received = 0;
    let dropped: unknown;
    try {
      for await (const chunk of segment.body) {
        const piece = chunk.byteLength > stop - offset ? chunk.subarray(0, stop - offset) : chunk;
        received += piece.byteLength;
        offset += piece.byteLength;
        if (piece.byteLength > 0) yield piece;
        if (offset >= stop) return;
      }
      if (segment.length === undefined || received >= segment.length) return;
      dropped = new Error(`body ended after ${received} of ${segment.length} bytes`);
    } catch (err) {
      if (!isConnectionDrop(err)) throw err;
      dropped = err;
    }
    if (resumes >= maxResumes) {
      const message = `reading ${what}: connection dropped at byte ${offset}, ${maxResumes} resumes used up`;
      throw new M4Error('E_STORAGE', 'storage', message, { url: what, offset, resumes }, { cause: dropped });
    }
  }
}
