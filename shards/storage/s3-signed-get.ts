import { createHash, createHmac } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { backoffDelay, isConnectionDrop, retryAfterMs, sleep } from '../../core/retry.ts';

/**
 * GETs of S3 objects signed here (AWS Signature Version 4, `signGet`) and sent through undici. Each request through the
 * AWS SDK costs about 1.4 ms of CPU (its middleware stack); one here about 0.3 ms, which is what a stream of ranged
 * reads (the mixer's runs) spends per request. The SDK still decides where and as whom: a bucket's first GET goes
 * through it, and the endpoint, signing region and service of the request it sends are kept (`targetOf`); credentials
 * come from its provider chain on every request (which caches and refreshes them). The SDK's deadlines apply
 * (connect, response headers, silence in a body) and its retry rule: 429, 5xx and dropped connections are tried again
 * with jittered backoff, up to `maxAttempts` tries.
 */

/** Where a bucket's objects are reached and how requests to them are signed. */
export interface GetTarget {
  /** `https://bucket.s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`. */
  origin: string;
  host: string;
  /** The path before an object's key: '/' (virtual-hosted style) or '/bucket/' (path style). */
  pathPrefix: string;
  region: string;
  service: string;
}

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The SDK's request, as it goes out, signed (what a middleware in its deserialize step sees). */
export interface SentRequest {
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  headers: Record<string, string>;
}

/**
 * The target of the SDK's signed GET of `key` (the whole key, prefix included), or undefined when it was not signed
 * with SigV4 over plain credentials (S3 Express sessions, multi-region access points' SigV4a, a key encoded otherwise):
 * such a bucket stays with the SDK.
 */
export function targetOf(request: SentRequest, key: string): GetTarget | undefined {
  const scope = /^AWS4-HMAC-SHA256 Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request,/.exec(request.headers.authorization ?? '');
  const encoded = encodeKey(key);
  if (!scope || 'x-amz-s3session-token' in request.headers || !request.path.endsWith(encoded)) return undefined;
  const host = request.port === undefined ? request.hostname : `${request.hostname}:${request.port}`;
  return { origin: `${request.protocol}//${host}`, host, pathPrefix: request.path.slice(0, -encoded.length), region: scope[1]!, service: scope[2]! };
}

/** An object key as S3 paths carry it: every byte but A-Z a-z 0-9 - _ . ~ and '/' percent-encoded (AWS's UriEncode). */
export function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** The hash of an empty payload, which a GET signs (S3 wants it in x-amz-content-sha256). */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * The headers of a GET of `path` (already encoded) on `host`, `headers` (lower-case names) included, signed with
 * SigV4 at `date`: every header sent is signed.
 */
export function signGet(
  request: { host: string; path: string; headers: Record<string, string> },
  credentials: Credentials,
  scope: { region: string; service: string },
  date: Date,
): Record<string, string> {
  const amzDate = date.toISOString().replace(/[-:]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = { ...request.headers, host: request.host, 'x-amz-content-sha256': EMPTY_SHA256, 'x-amz-date': amzDate };
  if (credentials.sessionToken) headers['x-amz-security-token'] = credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonical = ['GET', request.path, '', ...names.map((n) => `${n}:${headers[n]!.trim().replace(/\s+/g, ' ')}`), '', names.join(';'), EMPTY_SHA256].join(
    '\n',
  );
  const credentialScope = `${day}/${scope.region}/${scope.service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, credentialScope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const signature = createHmac('sha256', signingKey(credentials.secretAccessKey, day, scope))
    .update(toSign)
    .digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${credentialScope},SignedHeaders=${names.join(';')},Signature=${signature}`;
  delete headers.host; // undici sends it from the URL
  return headers;
}

const signingKeys = new Map<string, Buffer>();

/** The day's signing key (four HMACs), kept: it changes only with the day, the region, the service or the secret. */
function signingKey(secret: string, day: string, scope: { region: string; service: string }): Buffer {
  const id = `${day}/${scope.region}/${scope.service}/${secret}`;
  let key = signingKeys.get(id);
  if (!key) {
    key = [day, scope.region, scope.service, 'aws4_request'].reduce(
      (k: Buffer | string, part) => createHmac('sha256', k).update(part).digest(),
      `AWS4${secret}`,
    ) as Buffer;
    if (signingKeys.size > 16) signingKeys.clear();
    signingKeys.set(id, key);
  }
  return key;
}

export interface SignedGetOptions {
  credentials: () => Promise<Credentials>;
  /** ms to add to this clock (the SDK's correction of a skewed one). */
  clockOffset: () => number;
  maxAttempts: number;
  dispatcher: Dispatcher;
  request: typeof import('undici').request;
}

/**
 * One signed GET of `key` (prefix included) with `headers` (range, if-match), tried again on 429, 5xx and dropped
 * connections with jittered backoff (or what Retry-After asks): the last answer is returned whatever its status, with
 * the tries it took; the last connection failure is thrown, with `attempts` set.
 */
export async function signedGet(
  target: GetTarget,
  key: string,
  headers: Record<string, string>,
  options: SignedGetOptions,
): Promise<{ response: Dispatcher.ResponseData; attempts: number }> {
  const path = target.pathPrefix + encodeKey(key);
  for (let attempt = 1; ; attempt++) {
    let res: Dispatcher.ResponseData;
    try {
      const signed = signGet({ host: target.host, path, headers }, await options.credentials(), target, new Date(Date.now() + options.clockOffset()));
      res = await options.request(target.origin + path, { method: 'GET', headers: signed, dispatcher: options.dispatcher });
    } catch (err) {
      if (!isConnectionDrop(err) || attempt >= options.maxAttempts) throw Object.assign(err as Error, { attempts: attempt });
      await sleep(backoffDelay(attempt - 1));
      continue;
    }
    if ((res.statusCode !== 429 && res.statusCode < 500) || attempt >= options.maxAttempts) return { response: res, attempts: attempt };
    await res.body.dump();
    const asked = retryAfterMs(headerOf(res, 'retry-after'));
    await sleep(Math.min(MAX_RETRY_AFTER_MS, Math.max(asked ?? 0, backoffDelay(attempt - 1))));
  }
}

/** The longest wait a Retry-After header is allowed to impose. */
const MAX_RETRY_AFTER_MS = 60_000;

export function headerOf(res: Dispatcher.ResponseData, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The `Code` and `Message` of an S3 error answer (a small XML document; at most its first 64 kB are read). */
export async function errorOf(res: Dispatcher.ResponseData): Promise<{ code?: string; message?: string }> {
  let text = '';
  for await (const chunk of res.body) {
    text += (chunk as Buffer).toString('utf8');
    if (text.length > 1 << 16) {
      res.body.destroy();
      break;
    }
  }
  const field = (name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(text)?.[1];
  return { code: field('Code'), message: field('Message') };
}
