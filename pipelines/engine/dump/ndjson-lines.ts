/**
 * The lines of an NDJSON byte stream, as they arrive, each bounded: a line longer than `maxLineBytes` is passed over
 * without being held (its bytes are counted, not kept), so one hostile or runaway line cannot exhaust memory.
 */
export interface NdjsonLine {
  /** The line's bytes without its `\n` (nor a `\r` before it); null when it was over the bound and not kept. */
  bytes: Buffer | null;
  /** Its length in bytes, also when it was not kept. */
  length: number;
  /** 1-based line number in the stream. */
  line: number;
}

const NEWLINE = 0x0a;
const RETURN = 0x0d;

/** Yields every non-empty line; blank lines (an empty line, or a lone `\r`) are skipped but counted in line numbers. */
export async function* ndjsonLines(source: AsyncIterable<Uint8Array>, maxLineBytes: number): AsyncGenerator<NdjsonLine> {
  let parts: Uint8Array[] = [];
  let length = 0;
  let over = false;
  let line = 1;
  const finish = (): NdjsonLine | undefined => {
    // A copy, never a view: the chunk it came from would otherwise stay alive as long as the row.
    let bytes = over ? null : Buffer.concat(parts, length);
    let size = length;
    if (bytes && bytes[size - 1] === RETURN) {
      bytes = bytes.subarray(0, --size);
    }
    const out = size === 0 && !over ? undefined : { bytes, length: size, line };
    parts = [];
    length = 0;
    over = false;
    return out;
  };
  for await (const chunk of source) {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline < 0 ? chunk.length : newline;
      const piece = end - start;
      if (!over && length + piece > maxLineBytes) {
        over = true;
        parts = [];
      }
      if (!over && piece > 0) parts.push(chunk.subarray(start, end));
      length += piece;
      if (newline < 0) break;
      const done = finish();
      if (done) yield done;
      line++;
      start = newline + 1;
    }
  }
  const last = finish();
  if (last) yield last;
}
