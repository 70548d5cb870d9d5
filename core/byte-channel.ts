/**
 * A bounded queue of bytes between a producer that pushes chunks and a consumer that iterates: `push` waits while more
 * than `highWaterMark` bytes are queued, so a slow consumer (a disk, an upload) slows the producer instead of filling
 * memory. `fail` makes the consumer's iteration throw, which is how a writer tells storage to discard an object.
 */
export class ByteChannel implements AsyncIterable<Uint8Array> {
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  private ended = false;
  private error: Error | undefined;
  private wakeReader: (() => void) | undefined;
  private wakeWriters: (() => void)[] = [];

  constructor(private readonly highWaterMark = 8 << 20) {}

  async push(chunk: Uint8Array): Promise<void> {
    return this.pushAll([chunk]);
  }

  /** Queues several chunks at once: a consumer never sees part of them without the rest being queued. */
  async pushAll(chunks: readonly Uint8Array[]): Promise<void> {
    if (this.error) throw this.error;
    if (this.ended) throw new Error('push after end');
    for (const chunk of chunks) {
      this.queue.push(chunk);
      this.queued += chunk.length;
    }
    this.wake();
    while (this.queued > this.highWaterMark && !this.error) await new Promise<void>((resolve) => this.wakeWriters.push(resolve));
    if (this.error) throw this.error;
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  fail(error: Error): void {
    this.error ??= error;
    this.wake();
    this.releaseWriters();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      if (this.error) throw this.error;
      const chunk = this.queue.shift();
      if (chunk) {
        this.queued -= chunk.length;
        if (this.queued <= this.highWaterMark) this.releaseWriters();
        yield chunk;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
    }
  }

  private wake(): void {
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }

  private releaseWriters(): void {
    const writers = this.wakeWriters;
    this.wakeWriters = [];
    for (const resolve of writers) resolve();
  }
}
