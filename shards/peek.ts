/**
 * The first bytes of a stream, to tell what it holds (gzip's magic number, a tar header), and the whole stream again
 * from its start. The source is released however the returned stream ends.
 */
export async function peekBytes(source: AsyncIterator<Uint8Array>, n: number): Promise<{ head: Buffer; stream: AsyncGenerator<Uint8Array> }> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  while (size < n) {
    const next = await source.next();
    if (next.done) {
      ended = true;
      break;
    }
    chunks.push(next.value);
    size += next.value.byteLength;
  }
  async function* stream(): AsyncGenerator<Uint8Array> {
    try {
      yield* chunks;
      if (ended) return;
      for (let next = await source.next(); !next.done; next = await source.next()) yield next.value;
    } finally {
      await source.return?.();
    }
  }
  const head = chunks.length === 1 ? Buffer.from(chunks[0]!.buffer, chunks[0]!.byteOffset, chunks[0]!.byteLength) : Buffer.concat(chunks);
  return { head: head.subarray(0, n), stream: stream() };
}
