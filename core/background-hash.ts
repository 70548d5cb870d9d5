import { Worker } from 'node:worker_threads';

/** The digests of one stream of bytes, in hex: the manifest's sha256, and the md5 wids' shard index records. */
export interface Digests {
  sha256: string;
  md5: string;
}

/**
 * A SHA-256 and an MD5 computed on a worker thread while the caller goes on writing. Hashing on the main thread held shard
 * writing to about 620 MB/s on this 2-core machine, against 680 from a worker (bench/shards.bench.ts); where a core
 * is free for it, the hash leaves the writer's path altogether. Bytes are copied into a few fixed staging buffers
 * that travel to the worker and back (transferred, not cloned), so memory stays bounded: `update` waits while every
 * buffer is with the worker.
 */
export class BackgroundHash {
  private readonly id = nextId++;
  private readonly free: ArrayBuffer[] = [];
  private waitingForBuffer: (() => void) | undefined;
  private staging: Uint8Array | undefined;
  private filled = 0;
  private outstanding = 0;
  private done = false;
  private failure: Error | undefined;

  constructor() {
    pool.open(this.id, this);
  }

  /** Takes a copy of `chunk`'s bytes; resolves once they are staged (at once, unless the worker is behind). */
  async update(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new Error('BackgroundHash: update after digest');
    if (this.failure) throw this.failure;
    let at = 0;
    while (at < chunk.byteLength) {
      this.staging ??= await this.takeBuffer();
      const n = Math.min(chunk.byteLength - at, STAGING_BYTES - this.filled);
      this.staging.set(chunk.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === STAGING_BYTES) this.send();
    }
  }

  /** The hex digests of every byte given to `update`. */
  async digest(): Promise<Digests> {
    if (this.failure) throw this.failure;
    if (this.staging && this.filled > 0) this.send();
    this.done = true;
    return pool.digest(this.id);
  }

  /** Forgets the hash (an abandoned shard); the worker drops its state. */
  dispose(): void {
    if (!this.done) pool.drop(this.id);
    this.done = true;
  }

  /** Called by the pool when the worker hands a staging buffer back. */
  returned(buffer: ArrayBuffer): void {
    this.outstanding--;
    this.free.push(buffer);
    this.wake();
  }

  /** Called by the pool when the worker died: this hash cannot be finished. */
  failed(err: Error): void {
    this.failure = err;
    this.wake();
  }

  private wake(): void {
    const wake = this.waitingForBuffer;
    this.waitingForBuffer = undefined;
    wake?.();
  }

  private send(): void {
    const buffer = this.staging!.buffer as ArrayBuffer;
    this.outstanding++;
    pool.update(this.id, buffer, this.filled);
    this.staging = undefined;
    this.filled = 0;
  }

  private async takeBuffer(): Promise<Uint8Array> {
    for (;;) {
      const buffer = this.free.pop();
      if (buffer) return new Uint8Array(buffer);
      if (this.outstanding < STAGING_BUFFERS) return new Uint8Array(new ArrayBuffer(STAGING_BYTES));
      await new Promise<void>((resolve) => (this.waitingForBuffer = resolve));
      if (this.failure) throw this.failure;
    }
  }
}

const STAGING_BYTES = 1 << 20;
const STAGING_BUFFERS = 4;
let nextId = 1;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
const hashOf = (id) => hashes.get(id) ?? hashes.set(id, { sha256: createHash('sha256'), md5: createHash('md5') }).get(id);
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    const bytes = new Uint8Array(m.buffer, 0, m.length);
    const hash = hashOf(m.id);
    hash.sha256.update(bytes);
    hash.md5.update(bytes);
    parentPort.postMessage({ op: 'returned', id: m.id, buffer: m.buffer }, [m.buffer]);
  } else if (m.op === 'digest') {
    const hash = hashOf(m.id);
    const digests = { sha256: hash.sha256.digest('hex'), md5: hash.md5.digest('hex') };
    hashes.delete(m.id);
    parentPort.postMessage({ op: 'digest', id: m.id, digests });
  } else if (m.op === 'drop') {
    hashes.delete(m.id);
  }
});
`;

type WorkerReply = { op: 'returned'; id: number; buffer: ArrayBuffer } | { op: 'digest'; id: number; digests: Digests };

/**
 * The one hashing worker of the process, started on first use. It keeps the process alive only while it holds
 * bytes or owes a digest, so an abandoned hash never stops the process from exiting.
 */
class HashWorkerPool {
  private worker: Worker | undefined;
  private busy = 0;
  private readonly hashes = new Map<number, BackgroundHash>();
  private readonly digests = new Map<number, { resolve: (digests: Digests) => void; reject: (err: Error) => void }>();

  open(id: number, hash: BackgroundHash): void {
    this.hashes.set(id, hash);
  }

  update(id: number, buffer: ArrayBuffer, length: number): void {
    this.hold().postMessage({ op: 'update', id, buffer, length }, [buffer]);
  }

  digest(id: number): Promise<Digests> {
    return new Promise((resolve, reject) => {
      this.digests.set(id, { resolve, reject });
      this.hold().postMessage({ op: 'digest', id });
    });
  }

  drop(id: number): void {
    this.hashes.delete(id);
    this.worker?.postMessage({ op: 'drop', id });
  }

  private hold(): Worker {
    const worker = this.started();
    if (this.busy++ === 0) worker.ref();
    return worker;
  }

  private release(): void {
    if (--this.busy === 0) this.worker?.unref();
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    // No execArgv: the source is CommonJS, which a parent's --input-type=module would otherwise turn into a module.
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    worker.unref();
    worker.on('message', (reply: WorkerReply) => {
      this.release();
      if (reply.op === 'returned') {
        this.hashes.get(reply.id)?.returned(reply.buffer);
      } else {
        this.digests.get(reply.id)?.resolve(reply.digests);
        this.digests.delete(reply.id);
        this.hashes.delete(reply.id);
      }
    });
    worker.on('error', (err) => this.fail(worker, err));
    worker.on('exit', (code) => this.fail(worker, new Error(`the hashing worker exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  /** A dead worker fails every open hash; the next hash starts a new worker. */
  private fail(worker: Worker, err: Error): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.busy = 0;
    for (const pending of this.digests.values()) pending.reject(err);
    this.digests.clear();
    for (const hash of this.hashes.values()) hash.failed(err);
    this.hashes.clear();
  }
}

const pool = new HashWorkerPool();
