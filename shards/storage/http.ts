import type { Dispatcher } from 'undici';
import { isM4Error, M4Error } from '../../core/errors.ts';
import { createAddressPolicy, type AddressPolicy } from '../../core/network/address-policy.ts';
import { blockedLiteral, guardedLookup } from '../../core/network/guarded-lookup.ts';
import { backoffDelay, isConnectionDrop, retryAfterMs, sleep } from '../../core/retry.ts';
import { resumingRead, type Segment } from './resuming-read.ts';
import type { Body, ByteRange, ObjectInfo, Storage } from './storage.ts';

export interface HttpStorageOptions {
  /** Tries per request, the first included, on 429, 5xx and failed connections (default 5). */
  maxAttempts?: number;
  /** How many times one read may reconnect after its connection drops (default 5). */
  maxResumes?: number;
  /** Base of the jittered exponential backoff between tries, in ms (default 100). */
  backoffBaseMs?: number;
  /**
   * Private, loopback and link-local addresses are refused, as for image downloads, unless allowed: `true` for all,
   * or a list of CIDRs (default none).
   */
  allowPrivateNetwork?: boolean | readonly string[];
}

/** The longest wait a Retry-After header is allowed to impose. */
const MAX_RETRY_AFTER_MS = 60_000;

/** Objects under an http(s) URL, read-only: HEAD for stat, GET with Range for reads. A web server cannot list. */
export class HttpStorage implements Storage {
  readonly root: string;
  private readonly maxAttempts: number;
  private readonly maxResumes: number;
  private readonly backoffBaseMs: number;
  private readonly policy: AddressPolicy;
  private readonly refusal: (message: string) => M4Error;
  private undici: Promise<{ request: typeof import('undici').request; dispatcher: Dispatcher }> | undefined;

  constructor(location: string, opts: HttpStorageOptions = {}) {
    if (!/^https?:\/\/[^/]/i.test(location)) {
      throw new M4Error('E_USAGE', 'storage', `not an http(s) location: ${location}`, { location });
    }
    this.root = location.replace(/\/+$/, '');
    this.maxAttempts = opts.maxAttempts ?? 5;
    this.maxResumes = opts.maxResumes ?? 5;
    this.backoffBaseMs = opts.backoffBaseMs ?? 100;
    this.policy = createAddressPolicy(opts.allowPrivateNetwork ?? false);
    this.refusal = (message: string) =>
      new M4Error('E_USAGE', 'storage', `${message}: ${this.root} is not reached unless --allow-private-network allows it`, { root: this.root });
    const blocked = blockedLiteral(new URL(this.root), this.policy);
    if (blocked) throw this.refusal(blocked);
  }

  /** undici and this storage's agent, loaded on the first request. */
  private client(): Promise<{ request: typeof import('undici').request; dispatcher: Dispatcher }> {
    this.undici ??= import('undici').then(({ Agent, interceptors, request }) => ({
      request,
      // Redirects are followed by the same agent, so every hop's address goes through the guarded lookup.
      dispatcher: new Agent({ connect: { lookup: guardedLookup(this.policy, this.refusal) } }).compose(interceptors.redirect({ maxRedirections: 5 })),
    }));
    return this.undici;
  }

  urlOf(key: string): string {
    return `${this.root}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const res = await this.send('HEAD', key, {});
    await res.body.dump();
    if (res.statusCode === 404 || res.statusCode === 410) return undefined;
    const length = header(res, 'content-length');
    if (res.statusCode !== 200) throw this.failure('stat', key, res.statusCode);
    if (length === undefined) throw this.failure('stat', key, res.statusCode, 'no Content-Length in the answer to HEAD');
    return { key, size: Number(length) };
  }

  list(): AsyncIterable<ObjectInfo> {
    throw new M4Error('E_USAGE', 'storage', `http storage cannot list: ${this.root}`, { root: this.root });
  }

  async write(key: string, _body: Body): Promise<ObjectInfo> {
    throw this.readOnly('write', key);
  }

  async delete(key: string): Promise<void> {
    throw this.readOnly('delete', key);
  }

  async discardIncomplete(key: string): Promise<void> {
    throw this.readOnly('discard incomplete writes of', key);
  }

  read(key: string, range?: ByteRange): AsyncIterable<Uint8Array> {
    const start = range?.start ?? 0;
    const end = range?.end;
    // What identifies the version being read: its ETag, else its Last-Modified; fixed by the first answer.
    let version: { name: 'etag' | 'last-modified'; value: string } | undefined;
    let opened = false;
    const open = async (offset: number): Promise<Segment | undefined> => {
      const headers: Record<string, string> = {};
      if (offset > 0 || end !== undefined) headers.range = `bytes=${offset}-${end === undefined ? '' : end - 1}`;
      // A resumed read must continue the same version: let the server refuse (412) if it changed.
      if (version?.name === 'etag' && !version.value.startsWith('W/')) headers['if-match'] = version.value;
      if (version?.name === 'last-modified') headers['if-unmodified-since'] = version.value;
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
      if (!opened) {
        const etag = header(res, 'etag');
        const lastModified = header(res, 'last-modified');
        if (etag !== undefined) version = { name: 'etag', value: etag };
        else if (lastModified !== undefined) version = { name: 'last-modified', value: lastModified };
        opened = true;
      } else if (version && header(res, version.name) !== version.value) {
        // A server that ignores conditional headers still shows what it sent.
        res.body.destroy();
        throw this.changed(key);
      }
      const lengthHeader = header(res, 'content-length');
      const length = lengthHeader === undefined ? undefined : Number(lengthHeader);
      if (status === 206) {
        const first = Number(/^bytes (\d+)-/.exec(header(res, 'content-range') ?? '')?.[1]);
        if (first !== offset) {
          res.body.destroy();
          throw this.failure('read', key, status, `asked for bytes from ${offset}, got ${header(res, 'content-range')}`);
        }
        return { body: res.body, length };
      }
      if (offset === 0) return { body: res.body, length };
      // A server that ignores Range sends the whole object: skip to the offset (resumingRead stops at the end).
      return { body: skip(res.body, offset), length: length === undefined ? undefined : Math.max(0, length - offset) };
    };
    return resumingRead(open, start, end, this.maxResumes, this.urlOf(key));
  }

  /** One request, tried again on 429, 5xx and failed connections with jittered backoff (or what Retry-After asks). */
  private async send(method: 'GET' | 'HEAD', key: string, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const url = this.urlOf(key);
    const { request, dispatcher } = await this.client();
    for (let attempt = 1; ; attempt++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, { method, headers, dispatcher });
      } catch (err) {
        if (isM4Error(err)) throw err;
        if (!isConnectionDrop(err) || attempt >= this.maxAttempts) {
          const message = `${method} ${url} failed after ${attempt} attempts: ${(err as Error).message}`;
          throw new M4Error('E_STORAGE', 'storage', message, { url, attempts: attempt }, { cause: err });
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
    const retried = status === 429 || status >= 500 ? ` after ${this.maxAttempts} attempts` : '';
    const message = `HTTP ${op} of ${url} failed: ${detail ?? `status ${status}${retried}`}`;
    return new M4Error('E_STORAGE', 'storage', message, { url, op, status });
  }

  private readOnly(op: string, key: string): M4Error {
    const url = this.urlOf(key);
    return new M4Error('E_USAGE', 'storage', `http storage is read-only: cannot ${op} ${url}`, { url });
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
