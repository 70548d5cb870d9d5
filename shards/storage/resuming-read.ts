import { M4Error } from '../../core/errors.ts';
import { isConnectionDrop } from '../../core/retry.ts';

/** One response of a resumable read: its body and, when the server said, how many bytes that body should hold. */
export interface Segment {
  body: AsyncIterable<Uint8Array>;
  length: number | undefined;
}

/**
 * Streams bytes `[start, end)` of a remote object (to its end when `end` is undefined) as one uninterrupted stream.
 * `open(offset)` asks for the bytes from `offset` on (undefined: nothing there); when a body breaks off, or ends short
 * of its length, it is opened again from the first byte not yet delivered, at most `maxResumes` times. Nothing past
 * `end` is passed on, whatever the server sends. `open` is where a changed object must be caught.
 */
export async function* resumingRead(
  open: (offset: number) => Promise<Segment | undefined>,
  start: number,
  end: number | undefined,
  maxResumes: number,
  what: string,
): AsyncIterable<Uint8Array> {
  const stop = end ?? Infinity;
  let offset = start;
  if (offset >= stop) return;
  for (let resumes = 0; ; resumes++) {
    const segment = await open(offset);
    if (segment === undefined) return;
    let received = 0;
    let dropped: unknown;
    try {
      for await (const chunk of segment.body) {
        const piece = chunk.byteLength > stop - offset ? chunk.subarray(0, stop - offset) : chunk;
        received += piece.byteLength;
        offset += piece.byteLength;
        if (piece.byteLength > 0) yield piece;
        // A body holding just the bytes asked for is read to its end: leaving it at its last chunk destroys it,
        // which costs an error object (with its stack) per request.
        if (offset >= stop && (segment.length === undefined || received < segment.length)) return;
      }
      if (segment.length === undefined || received >= segment.length) return;
      dropped = new Error(`body ended after ${received} of ${segment.length} bytes`);
    } catch (err) {
      if (!isConnectionDrop(err)) throw err;
      dropped = err;
    }
    if (resumes >= maxResumes) {
      const message = `reading ${what}: connection dropped at byte ${offset}, ${maxResumes} resumes used up`;
      throw new M4Error('E_STORAGE', 'storage', message, { url: what, offset, resumes }, { cause: dropped });
    }
  }
}
