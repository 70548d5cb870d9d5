import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { M4Error } from '../../core/errors.ts';
import { resumingRead, type Segment } from './resuming-read.ts';
import { errorOf, headerOf, signedGet, targetOf, type GetTarget, type SentRequest, type SignedGetOptions } from './s3-signed-get.ts';
import type { Body, ByteRange, ObjectInfo, Storage } from './storage.ts';

export interface S3StorageOptions {
  /** Tries per request, the first included, for the SDK's retry strategy (default 5). */
  maxAttempts?: number;
  /** The SDK's retry strategy (default standard). */
  retryMode?: 'standard' | 'adaptive';
  /** How many times one read may reconnect after its connection drops (default 5). */
  maxResumes?: number;
  /** Multipart part size in bytes (default 16 MiB, at least 5 MiB); smaller Uint8Array bodies go in one PutObject. */
  partSize?: number;
}

const MiB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MiB;
const QUEUE_SIZE = 4;

/**
 * A prefix of an S3 bucket (or of an S3-compatible store), configured from the standard AWS environment: the SDK's
 * default credential chain, AWS_REGION (default us-east-1), AWS_ENDPOINT_URL with path-style addressing.
 * Retries (429, 5xx, SlowDown, dropped connections) are the SDK's standard strategy with jittered backoff.
 */
export class S3Storage implements Storage {
  readonly root: string;
  private readonly bucket: string;
  private readonly keyPrefix: string;
  /** The client's settings, read from the environment when the storage is opened (the SDK loads later). */
  private readonly settings: ClientSettings;
  private readonly maxResumes: number;
  private readonly partSize: number;
  /** Where requests go, for messages: AWS_ENDPOINT_URL, or AWS's regional endpoint. */
  private readonly endpoint: string;

  constructor(location: string, opts: S3StorageOptions = {}) {
    const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(location);
    if (!m) throw new M4Error('E_USAGE', 'storage', `not an S3 location: ${location} (expected s3://bucket/prefix)`, { location });
    this.bucket = m[1]!;
    const prefix = m[2]!.replace(/\/+$/, '');
    this.keyPrefix = prefix === '' ? '' : `${prefix}/`;
    this.root = `s3://${this.bucket}${prefix === '' ? '' : `/${prefix}`}`;
    this.partSize = opts.partSize ?? 16 * MiB;
    if (this.partSize < MIN_PART_SIZE) {
      throw new M4Error('E_USAGE', 'storage', `S3 part size ${this.partSize} is under the 5 MiB minimum`, { partSize: this.partSize });
    }
    this.maxResumes = opts.maxResumes ?? 5;
    this.settings = clientSettings(opts.maxAttempts ?? 5, opts.retryMode ?? 'standard');
    this.endpoint = this.settings.endpointName;
  }

  /** The SDK and this storage's client, loaded on first use: opening a location costs nothing until it is read. */
  private async sdk(): Promise<{ sdk: Sdk; client: S3Client }> {
    const sdk = await loadSdk();
    return { sdk, client: sharedClient(sdk, this.settings) };
  }

  urlOf(key: string): string {
    return `s3://${this.bucket}/${this.keyPrefix}${key}`;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const { sdk, client } = await this.sdk();
      const out = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
      return { key, size: out.ContentLength ?? 0 };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.failure('stat', key, err);
    }
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      let out;
      try {
        const { sdk, client } = await this.sdk();
        out = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.keyPrefix + prefix, ContinuationToken: token }));
      } catch (err) {
        throw this.failure('list', prefix, err);
      }
      for (const o of out.Contents ?? []) {
        if (o.Key !== undefined) yield { key: o.Key.slice(this.keyPrefix.length), size: o.Size ?? 0 };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  read(key: string, range?: ByteRange): AsyncIterable<Uint8Array> {
    const start = range?.start ?? 0;
    const end = range?.end;
    let etag: string | undefined;
    const open = async (offset: number): Promise<Segment | undefined> => {
      // S3 ranges are inclusive; with no range, a read from 0 is a plain GET.
      const bytes = offset === 0 && end === undefined ? undefined : `bytes=${offset}-${end === undefined ? '' : end - 1}`;
      // A resumed read must continue the same object, not splice in a newer one.
      const got = await this.get(key, bytes, offset, etag);
      if (!got) return undefined; // the range starts at or past the end: nothing to read
      // Some S3-compatible stores ignore If-Match: compare the ETag too.
      if (etag !== undefined && got.etag !== etag) {
        (got.body as Readable).destroy();
        throw this.changed(key, etag, got.etag);
      }
      etag ??= got.etag;
      return { body: got.body, length: got.length };
    };
    return resumingRead(open, start, end, this.maxResumes, this.urlOf(key));
  }

  /**
   * One GET, from `offset` when `range` is set: signed here once the SDK has shown where this bucket is reached (see
   * s3-signed-get.ts), else through the SDK, which then shows it. Undefined when the range starts past the end.
   */
  private async get(key: string, range: string | undefined, offset: number, ifMatch: string | undefined): Promise<Got | undefined> {
    const { sdk, client } = await this.sdk();
    const direct = await directGets(client, this.settings, this.bucket);
    if (direct.target) return this.signedGet(direct.target, direct.options, key, range, offset, ifMatch);
    const command = new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key, Range: range, IfMatch: ifMatch });
    // The request as the SDK sends it, signed: where and how this bucket is reached, once it has answered.
    let sent: SentRequest | undefined;
    command.middlewareStack.add(
      (next) => async (args) => {
        sent = args.request as SentRequest;
        return next(args);
      },
      { step: 'deserialize', name: 'm4dataSentRequest' },
    );
    let out;
    try {
      out = await client.send(command);
    } catch (err) {
      if (statusOf(err) === 416) return undefined;
      throw this.failure('read', key, err);
    }
    if (sent) direct.target ??= targetOf(sent, this.keyPrefix + key) ?? null;
    return { body: out.Body as AsyncIterable<Uint8Array>, length: out.ContentLength, etag: out.ETag };
  }

  private async signedGet(
    target: GetTarget,
    options: SignedGetOptions,
    key: string,
    range: string | undefined,
    offset: number,
    ifMatch: string | undefined,
  ): Promise<Got | undefined> {
    const headers: Record<string, string> = {};
    if (range) headers.range = range;
    if (ifMatch) headers['if-match'] = ifMatch;
    let sent;
    try {
      sent = await signedGet(target, this.keyPrefix + key, headers, options);
    } catch (err) {
      throw this.failure('read', key, Object.assign(err as Error, { $metadata: { attempts: (err as { attempts?: number }).attempts } }));
    }
    const { response: res, attempts } = sent;
    const status = res.statusCode;
    if (status === 416) {
      await res.body.dump();
      return undefined;
    }
    if (status !== 200 && status !== 206) {
      // Dressed as the SDK's errors are, so that one mapping (missing, changed, failed after retries) serves both.
      const { code, message } = await errorOf(res);
      const failed = Object.assign(new Error(message ?? `status ${status}`), {
        name: code ?? `HTTP ${status}`,
        $metadata: { httpStatusCode: status, attempts },
      });
      throw this.failure('read', key, failed);
    }
    const first = status === 206 ? Number(/^bytes (\d+)-/.exec(headerOf(res, 'content-range') ?? '')?.[1]) : 0;
    if (first !== offset) {
      res.body.destroy();
      throw this.failure('read', key, new Error(`asked for bytes from ${offset}, got ${headerOf(res, 'content-range') ?? 'the whole object'}`));
    }
    const length = headerOf(res, 'content-length');
    return { body: res.body, length: length === undefined ? undefined : Number(length), etag: headerOf(res, 'etag') };
  }

  async write(key: string, body: Body): Promise<ObjectInfo> {
    const Key = this.keyPrefix + key;
    if (body instanceof Uint8Array && body.byteLength < this.partSize) {
      try {
        const { sdk, client } = await this.sdk();
        await client.send(new sdk.PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.byteLength }));
      } catch (err) {
        throw this.failure('write', key, err);
      }
      return { key, size: body.byteLength };
    }
    // The body's own failure is passed on as it is, not dressed up as a storage error.
    let size = 0;
    let bodyError: unknown;
    async function* counted(source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
      try {
        for await (const chunk of source) {
          size += chunk.byteLength;
          yield chunk;
        }
      } catch (err) {
        bodyError = err;
        throw err;
      }
    }
    const { client } = await this.sdk();
    const { Upload } = await import('@aws-sdk/lib-storage');
    const upload = new Upload({
      client,
      params: { Bucket: this.bucket, Key, Body: body instanceof Uint8Array ? body : Readable.from(counted(body), { objectMode: false }) },
      partSize: this.partSize,
      queueSize: QUEUE_SIZE,
      leavePartsOnError: false, // abort the multipart upload on any failure, so no part of it is ever visible
    });
    try {
      await upload.done();
    } catch (err) {
      if (bodyError !== undefined) throw bodyError;
      throw this.failure('write', key, err);
    }
    return { key, size: body instanceof Uint8Array ? body.byteLength : size };
  }

  async delete(key: string): Promise<void> {
    try {
      const { sdk, client } = await this.sdk();
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyPrefix + key }));
    } catch (err) {
      throw this.failure('delete', key, err);
    }
  }

  async discardIncomplete(prefix: string): Promise<void> {
    // Unfinished multipart uploads are invisible but billed; a killed build leaves one per open shard.
    const Prefix = this.keyPrefix + prefix;
    try {
      const { sdk, client } = await this.sdk();
      const listed = await client.send(new sdk.ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix }));
      for (const upload of listed.Uploads ?? []) {
        if (!upload.Key?.startsWith(Prefix) || !upload.UploadId) continue;
        await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }));
      }
    } catch (err) {
      // A store without multipart listing (s3rver) has no unfinished upload to discard.
      if (statusOf(err) === 501) return;
      throw this.failure('discard of unfinished uploads', prefix, err);
    }
  }

  private failure(op: string, key: string, err: unknown): M4Error {
    const url = this.urlOf(key);
    const status = statusOf(err);
    const name = err instanceof Error ? err.name : undefined;
    const attempts = (err as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts;
    if (name === 'NoSuchBucket') {
      const message = `no such bucket: s3://${this.bucket} (${op} ${url})`;
      return new M4Error('E_NOT_FOUND', 'storage', message, { url, op, status }, { cause: err });
    }
    if (status === 404 || name === 'NoSuchKey') {
      return new M4Error('E_NOT_FOUND', 'storage', `no such object: ${url}`, { url, op, status }, { cause: err });
    }
    if (status === 412) return this.changed(key, undefined, undefined, err);
    const detail = `${name ?? ''} ${err instanceof Error ? err.message : String(err)}`.trim();
    const message = `S3 ${op} of ${url} at ${this.endpoint} failed${attempts ? ` after ${attempts} attempts` : ''}: ${detail}`;
    return new M4Error('E_STORAGE', 'storage', message, { url, op, status, attempts, endpoint: this.endpoint }, { cause: err });
  }

  private changed(key: string, expected: string | undefined, got: string | undefined, cause?: unknown): M4Error {
    const url = this.urlOf(key);
    const context = { url, expectedEtag: expected, etag: got };
    return new M4Error('E_STORAGE', 'storage', `${url} changed while it was being read`, context, { cause });
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/**
 * Deadlines of every S3 request, in ms, from the environment. Without them an endpoint that accepts connections and
 * never answers hangs a build forever. Each attempt is bounded, and the SDK retries a timed-out attempt like any
 * transient failure (maxAttempts in all), so one call ends within about maxAttempts x (connect + request) plus backoff.
 */
export interface S3Timeouts {
  /** TCP (and TLS) connect. M4DATA_S3_CONNECT_TIMEOUT_MS, default 10,000. */
  connectMs: number;
  /** From sending a request (an uploaded part's bytes included) to its response headers. M4DATA_S3_REQUEST_TIMEOUT_MS, default 60,000. */
  requestMs: number;
  /** Silence on an open connection, a response body's included. M4DATA_S3_IDLE_TIMEOUT_MS, default 60,000. */
  idleMs: number;
}

export function s3Timeouts(env: NodeJS.ProcessEnv = process.env): S3Timeouts {
  return {
    connectMs: envMs(env, 'M4DATA_S3_CONNECT_TIMEOUT_MS', 10_000),
    requestMs: envMs(env, 'M4DATA_S3_REQUEST_TIMEOUT_MS', 60_000),
    idleMs: envMs(env, 'M4DATA_S3_IDLE_TIMEOUT_MS', 60_000),
  };
}

function envMs(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const ms = Number(text);
  if (!Number.isSafeInteger(ms) || ms < 1)
    throw new M4Error('E_USAGE', 'storage', `${name} must be a whole number of milliseconds of at least 1, got ${JSON.stringify(text)}`);
  return ms;
}

type Sdk = typeof import('@aws-sdk/client-s3');
let sdkLoading: Promise<Sdk> | undefined;

/** The AWS SDK, imported once, when a storage first talks to S3 (it costs ~0.2 s to load). */
function loadSdk(): Promise<Sdk> {
  // The SDK's version is pinned in package-lock.json, and Node 20 is one of the supported versions (package.json's
  // engines): its notice that later releases need Node 22 asks nothing of a user, in the CLI, tests or benchmarks.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  sdkLoading ??= import('@aws-sdk/client-s3');
  return sdkLoading;
}

interface ClientSettings {
  endpoint: string | undefined;
  region: string;
  maxAttempts: number;
  retryMode: 'standard' | 'adaptive';
  timeouts: S3Timeouts;
  /** The endpoint as messages name it: AWS_ENDPOINT_URL, or AWS's regional endpoint. */
  endpointName: string;
}

/** Endpoint, region and deadlines from the environment. */
function clientSettings(maxAttempts: number, retryMode: 'standard' | 'adaptive'): ClientSettings {
  const endpoint = process.env.AWS_ENDPOINT_URL || undefined;
  const region = process.env.AWS_REGION || 'us-east-1';
  return { endpoint, region, maxAttempts, retryMode, timeouts: s3Timeouts(), endpointName: endpoint ?? `https://s3.${region}.amazonaws.com` };
}

const clients = new Map<string, S3Client>();

/** One client (and so one connection pool) per endpoint, region, retry and timeout setting in the process. */
function sharedClient(sdk: Sdk, settings: ClientSettings): S3Client {
  const { endpoint, region, maxAttempts, retryMode, timeouts } = settings;
  const id = JSON.stringify([endpoint, region, maxAttempts, retryMode, timeouts]);
  let client = clients.get(id);
  if (!client) {
    client = new sdk.S3Client({
      region,
      endpoint,
      forcePathStyle: endpoint !== undefined, // S3-compatible stores rarely have per-bucket host names
      maxAttempts,
      retryMode,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // The SDK builds its NodeHttpHandler from these; throwOnRequestTimeout makes the request deadline an error
      // (otherwise only a logged warning).
      requestHandler: {
        connectionTimeout: timeouts.connectMs,
        requestTimeout: timeouts.requestMs,
        throwOnRequestTimeout: true,
        socketTimeout: timeouts.idleMs,
      },
    });
    clients.set(id, client);
  }
  return client;
}

/** What one GET gave: its body, how many bytes it holds, and which version of the object. */
interface Got {
  body: AsyncIterable<Uint8Array>;
  length: number | undefined;
  etag: string | undefined;
}

/** How a bucket's GETs are sent: `target` undefined until the SDK has sent one, null when they stay with the SDK. */
interface DirectGets {
  target?: GetTarget | null;
  options: SignedGetOptions;
}

const directGetsByBucket = new Map<string, DirectGets>();
const dispatchers = new Map<string, import('undici').Dispatcher>();

/** The direct GETs of a bucket through a client (one record per client and bucket in the process). */
async function directGets(client: S3Client, settings: ClientSettings, bucket: string): Promise<DirectGets> {
  const id = JSON.stringify([settings.endpoint, settings.region, settings.maxAttempts, settings.retryMode, settings.timeouts, bucket]);
  let record = directGetsByBucket.get(id);
  if (!record) {
    const { Agent, request } = await import('undici');
    const { connectMs, requestMs, idleMs } = settings.timeouts;
    const agentId = JSON.stringify(settings.timeouts);
    let dispatcher = dispatchers.get(agentId);
    if (!dispatcher) {
      dispatcher = new Agent({ connect: { timeout: connectMs }, headersTimeout: requestMs, bodyTimeout: idleMs });
      dispatchers.set(agentId, dispatcher);
    }
    record = directGetsByBucket.get(id) ?? {
      options: {
        credentials: () => client.config.credentials(),
        clockOffset: () => client.config.systemClockOffset ?? 0,
        maxAttempts: settings.maxAttempts,
        dispatcher,
        request,
      },
    };
    directGetsByBucket.set(id, record);
  }
  return record;
}
