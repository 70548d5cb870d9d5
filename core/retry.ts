/**
 * How m4data rides out flaky networks, one way for every client (image downloads, HTTP storage; the S3 SDK has its own
 * retries under the same deadlines): a jittered backoff, the server's Retry-After, a wait an abort ends, and what
 * counts as a dropped connection.
 */
import { setTimeout as wait } from 'node:timers/promises';

/** Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2^attempt)) ms, attempt counting from 0. */
export function backoffDelay(attempt: number, baseMs = 100, capMs = 20_000): number {
  return Math.floor(Math.random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/** The wait a Retry-After header asks for (delta-seconds or an HTTP date), in ms; undefined when absent or unreadable. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number | undefined {
  const text = header?.trim() ?? '';
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Date.parse reads bare numbers like "1.5" as dates (in 2001: a wait of 0); an HTTP date always names its weekday and month.
  const date = /[a-z]/i.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Waits `ms`; an abort ends the wait at once, rejecting with the signal's reason. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  await wait(ms, undefined, signal ? { signal } : undefined);
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
