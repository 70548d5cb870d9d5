/**
 * Maps an async iterable with up to `concurrency` calls in flight and yields results in input order. At most `window`
 * items are pulled ahead of the oldest unfinished one, so a slow item holds back memory, not correctness; the source is
 * pulled only as fast as results are consumed (backpressure).
 */
export async function* orderedMap<T, U>(source: AsyncIterable<T>, options: { window: number }, fn: (item: T) => Promise<U>): AsyncGenerator<U> {
  const iterator = source[Symbol.asyncIterator]();
  const pending: Promise<U>[] = [];
  let exhausted = false;
  try {
    for (;;) {
      while (!exhausted && pending.length < options.window) {
        const next = await iterator.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        const result = fn(next.value);
        result.catch(() => {}); // observed in order below; this stops an early failure from being "unhandled"
        pending.push(result);
      }
      const head = pending.shift();
      if (!head) return;
      yield await head;
    }
  } finally {
    if (!exhausted) await iterator.return?.();
  }
}
