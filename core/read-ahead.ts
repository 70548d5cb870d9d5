/**
 * Pulls items from an async iterable ahead of its consumer, up to a limit of items or of summed weight (bytes), so
 * the next item is ready when asked for; once full, it refills from half full. The source is read in order by one
 * pump; errors reach the consumer in turn.
 */
export class ReadAhead<T> {
  private readonly queue: T[] = [];
  private weight = 0;
  private done = false;
  private error: unknown;
  private stopped = false;
  private wakeConsumer: (() => void) | undefined;
  private wakePump: (() => void) | undefined;
  private readonly iterator: AsyncIterator<T>;

  constructor(
    source: AsyncIterable<T>,
    private readonly maxItems: number,
    private readonly maxWeight = Infinity,
    private readonly weigh: (item: T) => number = () => 0,
  ) {
    this.iterator = source[Symbol.asyncIterator]();
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      while (!this.stopped) {
        while (!this.stopped && (this.queue.length >= this.maxItems || (this.queue.length > 0 && this.weight >= this.maxWeight))) {
          await new Promise<void>((resolve) => (this.wakePump = resolve));
        }
        if (this.stopped) break;
        const next = await this.iterator.next();
        if (next.done) break;
        this.queue.push(next.value);
        this.weight += this.weigh(next.value);
        this.wakeConsumer?.();
      }
    } catch (err) {
      this.error = err;
    } finally {
      this.done = true;
      this.wakeConsumer?.();
    }
  }

  /** The next item if one is already read, without waiting (undefined otherwise: then call `next`). */
  ready(): T | undefined {
    return this.queue.length > 0 ? this.taken(this.queue.shift()!) : undefined;
  }

  /** The next item, or undefined at the end; throws what the source threw, after the items before it. */
  async next(): Promise<T | undefined> {
    while (this.queue.length === 0 && !this.done) await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
    this.wakeConsumer = undefined;
    const item = this.queue.shift();
    if (item === undefined) {
      if (this.error !== undefined) throw this.error;
      return undefined;
    }
    return this.taken(item);
  }

  private taken(item: T): T {
    this.weight -= this.weigh(item);
    // Refill from half full: one wake-up per half queue, not per item.
    if (this.wakePump && this.queue.length <= this.maxItems / 2 && this.weight <= this.maxWeight / 2) {
      this.wakePump();
      this.wakePump = undefined;
    }
    return item;
  }

  /** Stops reading and lets the source clean up (its `return`). */
  async close(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    this.wakePump?.();
    await this.iterator.return?.().catch(() => {});
  }
}
