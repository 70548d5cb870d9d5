/**
 * Downloads one image at a time over HTTP(S), politely and within bounds: keep-alive pools capped per host,
 * deadlines on connect, headers and body, a body size cap, retries with backoff that honour Retry-After,
 * redirects followed by hand, X-Robots-Tag noai honoured, and no connection to an address the policy blocks.
 * It never throws for a bad URL or a bad server: every failure is a FetchResult; only an abort via the signal throws.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { M4Error, errorMessage } from '../../../core/errors.ts';
import { backoffDelay, retryAfterMs, sleep } from '../../../core/retry.ts';
import { createAddressPolicy, type AddressPolicy } from '../../../core/network/address-policy.ts';
import { blockedLiteral, guardedLookup } from '../../../core/network/guarded-lookup.ts';
import { resolveFetchOptions, type FetchOptions } from './fetch-options.ts';

export type FetchResult =
  | { ok: true; bytes: Buffer; finalUrl: string; httpStatus: number; contentType?: string; attempts: number }
  | { ok: false; status: 'failed_to_download' | 'opted_out'; error: string; httpStatus?: number; attempts: number };

/** Running totals over every fetch of one Fetcher, for progress displays. */
export interface FetchMetrics {
  /** HTTP requests sent, counting every attempt and every redirect hop. */
  requests: number;
  /** Attempts repeated after a retryable failure. */
  retries: number;
  /** Redirects followed. */
  redirects: number;
  /** Body bytes of the images returned. */
  bytes: number;
}

type Body = Dispatcher.ResponseData['body'];
type Hop =
  | { kind: 'image'; bytes: Buffer; httpStatus: number; contentType?: string }
  | { kind: 'opted_out'; directive: string; httpStatus: number }
  | { kind: 'redirect'; location: string; httpStatus: number };

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
// Error codes of failures that may pass if tried again.
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);
const OPT_OUT_DIRECTIVES = new Set(['noai', 'noimageai']);
// Redirect and error bodies up to this size are read to the end so the connection can be reused.
const DRAIN_LIMIT = 64 * 1024;

/** A failure raised on purpose inside a fetch; it becomes a failed_to_download result. */
class FetchFailure extends M4Error {
  readonly httpStatus: number | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, details: { httpStatus?: number; retryable?: boolean; retryAfterMs?: number } = {}, cause?: unknown) {
    super('E_FETCH', 'fetch', message, details, { cause });
    this.httpStatus = details.httpStatus;
    this.retryable = details.retryable ?? false;
    this.retryAfterMs = details.retryAfterMs;
  }
}

export class Fetcher {
  readonly options: FetchOptions;
  readonly metrics: FetchMetrics = { requests: 0, retries: 0, redirects: 0, bytes: 0 };
  readonly #policy: AddressPolicy;
  readonly #agent: Agent;

  constructor(options: Partial<FetchOptions> = {}) {
    this.options = resolveFetchOptions(options);
    this.#policy = createAddressPolicy(this.options.allowPrivateNetwork);
    this.#agent = new Agent({
      connections: this.options.maxConnectionsPerHost,
      // undici starts this when the request goes out on a socket, so time queued behind the per-host cap does not count.
      // Its timers tick about once a second: a deadline fires up to ~1 s late.
      headersTimeout: this.options.headersTimeoutMs,
      // undici's bodyTimeout is idle time between chunks; the whole-body deadline is enforced in #readBody.
      bodyTimeout: this.options.bodyTimeoutMs,
      connect: { timeout: this.options.connectTimeoutMs, lookup: guardedLookup(this.#policy, (message) => new FetchFailure(message)) },
    });
  }

  /** Downloads one URL. Throws only the signal's reason when aborted. */
  async fetch(url: string, signal?: AbortSignal): Promise<FetchResult> {
    const progress = { attempts: 0 };
    try {
      signal?.throwIfAborted();
      return await this.#follow(url, progress, signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const failure = this.#failure(err);
      return {
        ok: false,
        status: 'failed_to_download',
        error: failure.message,
        ...(failure.httpStatus === undefined ? {} : { httpStatus: failure.httpStatus }),
        attempts: progress.attempts,
      };
    }
  }

  /** Closes the keep-alive connections once requests in flight are done. */
  async close(): Promise<void> {
    await this.#agent.close();
  }

  async #follow(start: string, progress: { attempts: number }, signal: AbortSignal | undefined): Promise<FetchResult> {
    let url = this.#target(start);
    const visited = new Set([url.href]);
    for (let redirects = 0; ; ) {
      const hop = await this.#withRetries(url, progress, signal);
      const { attempts } = progress;
      if (hop.kind === 'image') {
        const contentType = hop.contentType === undefined ? {} : { contentType: hop.contentType };
        return { ok: true, bytes: hop.bytes, finalUrl: url.href, httpStatus: hop.httpStatus, ...contentType, attempts };
      }
      if (hop.kind === 'opted_out') {
        return { ok: false, status: 'opted_out', error: `X-Robots-Tag: ${hop.directive}`, httpStatus: hop.httpStatus, attempts };
      }
      redirects += 1;
      if (redirects > this.options.maxRedirects) throw new FetchFailure(`too many redirects (${redirects})`, { httpStatus: hop.httpStatus });
      const next = this.#target(hop.location, { base: url, httpStatus: hop.httpStatus });
      if (visited.has(next.href)) throw new FetchFailure('redirect loop', { httpStatus: hop.httpStatus });
      visited.add(next.href);
      this.metrics.redirects += 1;
      url = next;
    }
  }

  /**
   * Parses a URL (a redirect's Location is relative to the URL that sent it, whose status its failures carry)
   * and refuses other schemes and blocked IP literals before any request.
   */
  #target(text: string, redirect?: { base: URL; httpStatus: number }): URL {
    const status = redirect === undefined ? {} : { httpStatus: redirect.httpStatus };
    let url: URL;
    try {
      url = new URL(text, redirect?.base);
    } catch {
      throw new FetchFailure('invalid url', status);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchFailure(`unsupported scheme ${url.protocol}`, status);
    url.hash = '';
    const blocked = blockedLiteral(url, this.#policy);
    if (blocked) throw new FetchFailure(blocked, status);
    return url;
  }

  async #withRetries(url: URL, progress: { attempts: number }, signal: AbortSignal | undefined): Promise<Hop> {
    // Attempts count tries of the whole fetch, not hops: redirects share one retry budget.
    progress.attempts = Math.max(progress.attempts, 1);
    for (;;) {
      try {
        return await this.#attempt(url, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const failure = this.#failure(err);
        const delay = this.#retryDelay(failure, progress.attempts);
        if (delay === undefined) throw failure;
        this.metrics.retries += 1;
        progress.attempts += 1;
        await sleep(delay, signal);
      }
    }
  }

  /** How long to wait before trying again, or undefined when this failure is final. */
  #retryDelay(failure: FetchFailure, attempts: number): number | undefined {
    const { retries, retryBaseDelayMs, retryMaxDelayMs } = this.options;
    if (!failure.retryable || attempts > retries) return undefined;
    // A server asking for more patience than we allow is left alone rather than asked again too early.
    if (failure.retryAfterMs !== undefined) return failure.retryAfterMs <= retryMaxDelayMs ? failure.retryAfterMs : undefined;
    return backoffDelay(attempts - 1, retryBaseDelayMs, retryMaxDelayMs);
  }

  /** One request to one URL, without following anything. */
  async #attempt(url: URL, signal: AbortSignal | undefined): Promise<Hop> {
    this.metrics.requests += 1;
    const {
      statusCode: httpStatus,
      headers,
      body,
    } = await request(url, {
      dispatcher: this.#agent,
      method: 'GET',
      headers: { 'user-agent': this.options.userAgent, accept: 'image/*,*/*;q=0.8' },
      signal,
    });
    if (REDIRECT_STATUSES.has(httpStatus)) {
      await this.#discard(body, DRAIN_LIMIT, signal);
      const location = firstHeader(headers.location);
      if (location === undefined) throw new FetchFailure(`redirect ${httpStatus} without location`, { httpStatus });
      return { kind: 'redirect', location, httpStatus };
    }
    if (httpStatus < 200 || httpStatus > 299) {
      await this.#discard(body, DRAIN_LIMIT, signal);
      const retryable = httpStatus === 429 || (httpStatus >= 500 && httpStatus !== 501);
      const retryAfter = retryable ? retryAfterMs(firstHeader(headers['retry-after'])) : undefined;
      throw new FetchFailure(`http ${httpStatus}`, { httpStatus, retryable, ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }) });
    }
    const directive = optOutDirective(headers['x-robots-tag']);
    if (directive !== undefined) {
      await this.#discard(body, DRAIN_LIMIT, signal);
      return { kind: 'opted_out', directive, httpStatus };
    }
    const bytes = await this.#readBody(body, httpStatus, firstHeader(headers['content-length']));
    const contentType = firstHeader(headers['content-type']);
    return { kind: 'image', bytes, httpStatus, ...(contentType === undefined ? {} : { contentType }) };
  }

  /** Reads a body into memory, failing as soon as it is known to exceed maxBodyBytes or outlasts bodyTimeoutMs. */
  async #readBody(body: Body, httpStatus: number, contentLength: string | undefined): Promise<Buffer> {
    const { maxBodyBytes, bodyTimeoutMs } = this.options;
    const tooLarge = () => new FetchFailure(`body larger than ${maxBodyBytes} bytes`, { httpStatus });
    if (Number(contentLength) > maxBodyBytes) {
      // A limit of 1 makes dump() drop the connection instead of reading a body we refuse.
      await this.#discard(body, 1, undefined);
      throw tooLarge();
    }
    const deadline = setTimeout(() => {
      body.destroy(new FetchFailure(`timeout: body after ${bodyTimeoutMs} ms`, { httpStatus, retryable: true }));
    }, bodyTimeoutMs);
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        // Leaving the loop destroys the body, which closes the connection.
        if (size > maxBodyBytes) throw tooLarge();
        chunks.push(chunk);
      }
    } catch (err) {
      throw this.#failure(err, httpStatus);
    } finally {
      clearTimeout(deadline);
    }
    this.metrics.bytes += size;
    return Buffer.concat(chunks, size);
  }

  /** Drops a body we do not keep: one up to `limit` bytes is drained for connection reuse, a longer one closes the connection. */
  async #discard(body: Body, limit: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = AbortSignal.timeout(this.options.bodyTimeoutMs);
    await body.dump({ limit, signal: signal === undefined ? deadline : AbortSignal.any([signal, deadline]) }).catch(() => undefined);
  }

  /** Turns anything thrown during a fetch into a FetchFailure with a short, stable message. */
  #failure(err: unknown, httpStatus?: number): FetchFailure {
    if (err instanceof FetchFailure) return err;
    const status = httpStatus === undefined ? {} : { httpStatus };
    const code = (err as { code?: unknown } | null)?.code;
    switch (code) {
      case 'UND_ERR_CONNECT_TIMEOUT':
        return new FetchFailure(`timeout: connect after ${this.options.connectTimeoutMs} ms`, { retryable: true }, err);
      case 'UND_ERR_HEADERS_TIMEOUT':
        return new FetchFailure(`timeout: headers after ${this.options.headersTimeoutMs} ms`, { retryable: true }, err);
      case 'UND_ERR_BODY_TIMEOUT':
        return new FetchFailure(`timeout: body after ${this.options.bodyTimeoutMs} ms`, { ...status, retryable: true }, err);
      case 'UND_ERR_SOCKET':
        return new FetchFailure('network: connection closed', { ...status, retryable: true }, err);
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return new FetchFailure(`dns: ${code}`, { retryable: code === 'EAI_AGAIN' }, err);
    }
    if (typeof code === 'string') return new FetchFailure(`network: ${code}`, { ...status, retryable: TRANSIENT_CODES.has(code) }, err);
    return new FetchFailure(`network: ${errorMessage(err)}`, status, err);
  }
}

/** The opt-out directive (`noai` or `noimageai`) in X-Robots-Tag values, whatever bot they name; undefined when none. */
function optOutDirective(header: string | string[] | undefined): string | undefined {
  const values = header === undefined ? [] : [header].flat();
  // `noai, noindex`, `googlebot: noimageai` and `bot: noindex, other: noai` all split into plain tokens.
  const tokens = values.flatMap((value) => value.toLowerCase().split(/[\s,:;]+/));
  return tokens.find((token) => OPT_OUT_DIRECTIVES.has(token));
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
