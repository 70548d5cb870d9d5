import { Agent, interceptors, request, type Dispatcher } from 'undici';
import { M4Error } from '../../core/errors.ts';
import { backoffDelay, isConnectionDrop, resumingRead, retryAfterMs, sleep, type Segment } from '../../core/backoff.ts';
import type { Body, ByteRange, ObjectInfo, Storage } from './storage.ts';

export interface HttpStorageOptions {
  /** Tries per request, the first included, on 429, 5xx and failed connections (default 5). */
  maxAttempts?: number;
  /** How many times one read may reconnect after its connection drops (default 5). */
  maxResumes?: number;
  /** Base of the jittered exponential backoff between tries, in ms (default 100). */
  backoffBaseMs?: number;
}

/** The longest wait a Retry-After header is allowed to impose. */
const MAX_RETRY_AFTER_MS = 60_000;

const dispatcher = new Agent().compose(interceptors.redirect({ maxRedirections: 5 }));

/** Objects under an http(s) URL, read-only: HEAD for stat, GET with Range for reads. A web server cannot list. */
export class HttpStorage implements Storage {
  readonly root: string;
  private readonly maxAttempts: number;
  private readonly maxResumes: number;
  private readonly backoffBaseMs: number;

  constructor(location: string, opts: HttpStorageOptions = {}) {
    if (!/^https?:\/\/[^/]/i.test(location)) {
      throw new M4Error('E_USAGE', 'storage', `not an http(s) location: ${location}`, { location });
    }
    this.root = location.replace(/\/+$/, '');
    this.maxAttempts = opts.maxAttempts ?? 5;
    this.maxResumes = opts.maxResumes ?? 5;
    this.backoffBaseMs = opts.backoffBaseMs ?? 100;
  }

  urlOf(key: string): string {
    return `${this.root}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const res = await this.send('HEAD', key, {});
    await res.body.dump();
    if (res.statusCode === 404 || res.statusCode === 410) return undefined;
    const length = header(res, 'content-length');
    if (res.statusCode !== 200 || length === undefined) throw this.failure('stat', key, res.statusCode, length === undefined ? 'no Content-Length' : undefined);
    return { key, size: Number(length) };
  }

  list(): AsyncIterable<ObjectInfo> {
    throw new M4Error('E_USAGE', 'storage', `http storage cannot list: ${this.root}`, { root: this.root });
  }

  async write(key: string, _body: Body): Promise<ObjectInfo> {
    throw new M4Error('E_USAGE', 'storage', `http storage is read-only: cannot write ${this.urlOf(key)}`, { url: this.urlOf(key) });
  }

  async delete(key: string): Promise<void> {
    throw new M4Error('E_USAGE', 'storage', `http storage is read-only: cannot delete ${this.urlOf(key)}`, { url: this.urlOf(key) });
  }

  read(key: string, range?: ByteRange): AsyncIterable<Uint8Array> {
    const start = range?.start ?? 0;
    const end = range?.end;
    let validator: { etag: string | undefined; lastModified: string | undefined } | undefined;
    const open = async (offset: number): Promise<Segment | undefined> => {
      const headers: Record<string, string> = {};
      if (offset > 0 || end !== undefined) headers.range = `bytes=${offset}-${end === undefined ? '' : end - 1}`;
      // A resumed read must continue the same object: let the server refuse (412) if it changed.
      if (validator?.etag !== undefined && !validator.etag.startsWith('W/')) headers['if-match'] = validator.etag;
      else if (validator?.lastModified !== undefined) headers['if-unmodified-since'] = validator.lastModified;
      const res = await this.send('GET', key, headers);
      const status = res.statusCode;
      if (status !== 200 && status !== 206) {
        await res.body.dump();
        if (status === 416) return undefined; // the range starts at or past the end: nothing to read
        if (status === 412) throw this.changed(key);
        if (status === 404 || status === 410) {
          throw new M4Error('E_NOT_FOUND', 'storage', `no such object: ${this.urlOf(key)}`, { url: this.urlOf(key), status });
        }
        throw this.failure('read', key, status);
      }
      const seen = { etag: header(res, 'etag'), lastModified: header(res, 'last-modified') };
      // Servers that ignore conditional headers still show what they sent.
      if (validator && (seen.etag !== validator.etag || seen.lastModified !== validator.lastModified)) {
        res.body.destroy();
        throw this.changed(key);
      }
      validator ??= seen;
      const length = header(res, 'content-length') === undefined ? undefined : Number(header(res, 'content-length'));
      if (status === 206) {
        const first = Number(/^bytes (\d+)-/.exec(header(res, 'content-range') ?? '')?.[1]);
        if (first !== offset) {
          res.body.destroy();
          throw this.failure('read', key, status, `asked for bytes from ${offset}, got Content-Range ${header(res, 'content-range')}`);
        }
        return { body: res.body, length };
      }
      // A server that ignores Range sends the whole object: skip to the offset (resumingRead stops at the end).
      return { body: skip(res.body, offset), length: length === undefined ? undefined : Math.max(0, length - offset) };
    };
    return resumingRead(open, start, end, this.maxResumes, this.urlOf(key));
  }

  /** One request, tried again on 429, 5xx and failed connections with jittered backoff (or what Retry-After asks). */
  private async send(method: 'GET' | 'HEAD', key: string, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const url = this.urlOf(key);
    for (let attempt = 1; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, { method, headers, dispatcher });
      } catch (err) {
        if (!isConnectionDrop(err) || attempt >= this.maxAttempts) {
          throw new M4Error('E_STORAGE', 'storage', `${method} ${url} failed after ${attempt} attempts: ${(err as Error).message}`, { url, attempts: attempt }, { cause: err });
        }
        await sleep(backoffDelay(attempt - 1, this.backoffBaseMs));
        continue;
      }
      if ((res.statusCode !== 429 && res.statusCode < 500) || attempt >= this.maxAttempts) return res;
      await res.body.dump();
      const asked = retryAfterMs(header(res, 'retry-after'));
      await sleep(Math.min(MAX_RETRY_AFTER_MS, Math.max(asked ?? 0, backoffDelay(attempt - 1, this.backoffBaseMs))));
    }
  }

  private failure(op: string, key: string, status: number, detail?: string): M4Error {
    const url = this.urlOf(key);
    return new M4Error('E_STORAGE', 'storage', `HTTP ${op} of ${url} failed: ${detail ?? `status ${status}`}`, { url, op, status });
  }

  private changed(key: string): M4Error {
    const url = this.urlOf(key);
    return new M4Error('E_STORAGE', 'storage', `${url} changed while it was being read`, { url });
  }
}

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** `body` without its first `count` bytes. */
async function* skip(body: AsyncIterable<Uint8Array>, count: number): AsyncIterable<Uint8Array> {
  let left = count;
  for await (const chunk of body) {
    if (left >= chunk.byteLength) left -= chunk.byteLength;
    else {
      yield left > 0 ? chunk.subarray(left) : chunk;
      left = 0;
    }
  }
}
