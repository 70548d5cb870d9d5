import { M4Error } from '../core/errors.ts';
import { BLOCK } from './ustar.ts';

/**
 * A streaming tar parser that knows where every entry starts. tar-stream's extractor gives no byte offsets, which the
 * shard index and our error messages need (see README, "Why the reader parses tar itself"). Reads POSIX ustar, PAX
 * (local `x` and global `g` headers) and GNU long names (`L`, `K`), sizes in octal or base-256.
 */
export interface TarEntry {
  name: string;
  type: 'file' | 'directory' | 'link' | 'other';
  /** Offset of the entry's first header block, extension headers (PAX, GNU long name) included. */
  headerOffset: number;
  /** Offset just past the entry's data padding: where the next entry starts. */
  endOffset: number;
  /** The entry's bytes; empty for anything but a file, and for a file `holdData` declined (then only `size` tells). */
  data: Buffer;
  /** The entry's size in bytes (0 for anything but a file). */
  size: number;
}

export interface TarParseOptions {
  /** Largest entry accepted, in bytes (default 1 GiB): a hostile header cannot make us buffer more. */
  maxEntryBytes?: number;
  /**
   * Whether to hold a file entry's bytes (default: every one). A declined entry is read past as it streams, so a
   * scan that needs only sizes holds no entry, however large (a gzip bomb, a sparse 1 GiB member).
   */
  holdData?: (name: string, size: number) => boolean;
  /**
   * The source is a byte range of whole entries starting at this offset of the tar (read by an index), not a whole
   * tar: offsets are the tar's, and the range's end is its end (no end-of-archive marker).
   */
  rangeStart?: number;
}

const EMPTY = Buffer.alloc(0);

export async function* parseTar(source: AsyncIterable<Uint8Array>, options: TarParseOptions = {}): AsyncGenerator<TarEntry> {
  const input = new ChunkReader(source[Symbol.asyncIterator](), options.rangeStart ?? 0);
  // The source is released however the parse ends (at the end-of-archive marker, before the source's end; on an
  // error; when the consumer stops): a file handle or an S3 connection is never left to the garbage collector.
  try {
    yield* entries(input, options.maxEntryBytes ?? 1 << 30, options.holdData ?? (() => true), options.rangeStart !== undefined);
  } finally {
    await input.close();
  }
}

/** A tar member whose bytes are streamed rather than held: `body` must be read (or left) before the next member. */
export interface TarMember {
  name: string;
  type: TarEntry['type'];
  headerOffset: number;
  /** Bytes of data (0 for anything but a file). */
  size: number;
  /** The data in the chunks it arrives in; throws E_TAR_TRUNCATED when the tar ends inside it. */
  body: AsyncIterable<Buffer>;
}

/**
 * The members of a tar of any size, each streamed: memory stays at one input chunk whatever a member's size (the
 * Wikimedia dumps hold NDJSON members of many gigabytes). What a consumer leaves of a body is skipped unread.
 */
export async function* streamTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarMember> {
  const input = new ChunkReader(source[Symbol.asyncIterator](), 0);
  try {
    for await (const header of headers(input)) {
      const size = header.type === 'file' ? header.size : 0;
      yield { name: header.name, type: header.type, headerOffset: header.entryStart, size, body: memberBody(input, header, input.position, size) };
    }
  } finally {
    await input.close();
  }
}

async function* memberBody(input: ChunkReader, header: Header, dataStart: number, size: number): AsyncGenerator<Buffer> {
  // Reading starts only if it has not moved on: a body read after its member was left gives nothing.
  if (input.position !== dataStart) return;
  let left = size;
  while (left > 0) {
    const chunk = await input.takeSome(left);
    if (chunk.length === 0) throw cutShort(input.position, header, size - left, size);
    left -= chunk.length;
    yield chunk;
  }
}

async function* entries(
  input: ChunkReader,
  maxEntryBytes: number,
  holdData: (name: string, size: number) => boolean,
  range: boolean,
): AsyncGenerator<TarEntry> {
  for await (const header of headers(input, range)) {
    const { name, type, size, padded, headerOffset } = header;
    // Links and special files carry no data even when their size field says otherwise.
    const dataBytes = type === 'file' ? size : 0;
    const skipBytes = type === 'file' ? 0 : padded;
    const hold = dataBytes > 0 && holdData(name, dataBytes);
    if (hold && dataBytes > maxEntryBytes) {
      throw new M4Error(
        'E_TAR_CORRUPT',
        'shards',
        `entry ${JSON.stringify(name)} at byte ${headerOffset} is ${dataBytes} bytes, over the ${maxEntryBytes}-byte limit`,
        { offset: headerOffset, name },
      );
    }
    const data = hold ? await input.take(dataBytes) : EMPTY;
    const present = hold ? data.length : await input.skip(dataBytes);
    if (present < dataBytes) throw cutShort(input.position, header, present, dataBytes);
    const rest = type === 'file' ? padded - size : skipBytes;
    if (rest > 0) await input.skip(rest);
    yield { name, type, headerOffset: header.entryStart, endOffset: input.position, data, size: dataBytes };
  }
}

interface Header {
  name: string;
  type: TarEntry['type'];
  /** The entry's first header block, extension headers included. */
  entryStart: number;
  /** Its own (last) header block. */
  headerOffset: number;
  size: number;
  /** The size rounded up to whole blocks: where the next header starts, counted from the data's start. */
  padded: number;
  /** The typeflag of an extension header (PAX `x`, `g`; GNU `L`, `K`), whose body applies to what follows. */
  extension?: string;
}

/**
 * The tar's headers in order, extension headers (PAX, GNU long names) applied. Each is yielded with the input at its
 * data; whatever of the data and its padding the consumer has not read is skipped before the next header. A `range` of
 * whole entries ends where its bytes end, with no end-of-archive marker.
 */
async function* headers(input: ChunkReader, range = false): AsyncGenerator<Header> {
  const decoder = new HeaderDecoder();
  for (;;) {
    const headerOffset = input.position;
    const block = await input.take(BLOCK);
    if (block.length < BLOCK) {
      decoder.endsBefore(headerOffset, block.length, range);
      return;
    }
    const header = decoder.decode(block, 0, headerOffset);
    if (!header) return; // end of archive; a second zero block and any trailing padding are not read
    if (header.extension) {
      const body = await input.take(header.padded);
      if (body.length < header.padded) throw truncated(`tar ends at byte ${input.position} inside an extension header at byte ${headerOffset}`, headerOffset);
      decoder.extend(header, body);
      continue;
    }
    const dataEnd = input.position + header.padded;
    yield header;
    if (input.position < dataEnd) await input.skip(dataEnd - input.position);
  }
}

/**
 * The whole entries of a byte range held in memory (`bytes` lie at `offset` of the tar: runs of samples read by their
 * index), decoded as the streaming parser decodes them, without an await: each entry's data is a view of `bytes`. The
 * range ends where its bytes end; one that ends inside an entry is E_TAR_TRUNCATED.
 */
export function* entriesIn(bytes: Buffer, offset: number): Generator<TarEntry> {
  const decoder = new HeaderDecoder();
  let at = 0;
  for (;;) {
    if (bytes.length - at < BLOCK) {
      decoder.endsBefore(offset + at, bytes.length - at, true);
      return;
    }
    const header = decoder.decode(bytes, at, offset + at);
    if (!header) return;
    at += BLOCK;
    if (header.extension) {
      if (bytes.length - at < header.padded)
        throw truncated(`tar ends at byte ${offset + bytes.length} inside an extension header at byte ${header.headerOffset}`, header.headerOffset);
      decoder.extend(header, bytes.subarray(at, at + header.padded));
      at += header.padded;
      continue;
    }
    // Links and special files carry no data even when their size field says otherwise.
    const size = header.type === 'file' ? header.size : 0;
    if (bytes.length - at < size) throw cutShort(offset + bytes.length, header, bytes.length - at, size);
    const data = bytes.subarray(at, at + size);
    at = Math.min(bytes.length, at + header.padded);
    yield { name: header.name, type: header.type, headerOffset: header.entryStart, endOffset: offset + at, data, size };
  }
}

/** No PAX record: the state between entries (extension headers replace it, never change it). */
const NO_PAX: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Decodes header blocks in order: checks each, and applies PAX (`x`, `g`) and GNU long-name (`L`, `K`) extension
 * headers to the entry they precede. Shared by the streaming parser and `entriesIn`, so both read a tar alike.
 */
class HeaderDecoder {
  private longName: string | undefined;
  private paxLocal: Record<string, string> = NO_PAX;
  private paxGlobal: Record<string, string> = NO_PAX;
  /** First header of the entry being assembled (extension headers come first). */
  private entryStart = 0;
  /** An extension header was read: the entry it belongs to must follow. */
  private pending = false;

  /**
   * The header in the block at `bytes[at]`, byte `headerOffset` of the tar, or undefined at the end-of-archive
   * marker. A header with `extension` set needs its body (`padded` bytes) handed to `extend` before the next block.
   * Fields are read in place (a view per field cost more than the rest of the header's decoding).
   */
  decode(bytes: Buffer, at: number, headerOffset: number): Header | undefined {
    if (!this.pending) this.entryStart = headerOffset;
    if (!checkHeader(bytes, at, headerOffset)) {
      if (this.pending) throw corrupt(`end-of-archive marker at byte ${headerOffset} right after an extension header`, headerOffset);
      return undefined;
    }
    const typeflag = String.fromCharCode(bytes[at + 156]!);
    const paxSize = this.paxLocal.size ?? this.paxGlobal.size;
    const size = paxSize !== undefined ? Number(paxSize) : parseNumber(bytes, at + 124, at + 136, headerOffset);
    if (!Number.isSafeInteger(size) || size < 0) throw corrupt(`bad entry size in header at byte ${headerOffset}`, headerOffset);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > 1 << 20) throw corrupt(`extension header of ${size} bytes at byte ${headerOffset}`, headerOffset);
      return { name: '', type: 'other', entryStart: this.entryStart, headerOffset, size, padded, extension: typeflag };
    }
    const name = this.paxLocal.path ?? this.longName ?? ustarName(bytes, at);
    // What local extension headers said applies to this entry only (reset without a new object when there was none).
    if (this.longName !== undefined || this.paxLocal !== NO_PAX) {
      this.longName = undefined;
      this.paxLocal = NO_PAX;
    }
    this.pending = false;
    return { name, type: entryType(typeflag), entryStart: this.entryStart, headerOffset, size, padded };
  }

  /** Applies an extension header's body (its `padded` bytes) to what follows. */
  extend(header: Header, body: Buffer): void {
    const content = body.subarray(0, header.size);
    if (header.extension === 'x') this.paxLocal = { ...this.paxLocal, ...parsePax(content, header.headerOffset) };
    else if (header.extension === 'g') this.paxGlobal = { ...this.paxGlobal, ...parsePax(content, header.headerOffset) };
    else if (header.extension === 'L') this.longName = cString(content, 0, content.length);
    // 'K' (GNU long link name) is read past: links carry no sample data.
    this.pending = header.extension !== 'g';
  }

  /**
   * The input ends at `headerOffset` with `partial` bytes of a header block: fine between the entries of a range,
   * otherwise E_TAR_TRUNCATED (a tar ends with its end-of-archive marker).
   */
  endsBefore(headerOffset: number, partial: number, range: boolean): void {
    if (partial === 0 && !this.pending) {
      if (range) return;
      throw truncated(`tar ends at byte ${headerOffset} without its end-of-archive marker`, headerOffset);
    }
    throw truncated(`tar ends at byte ${headerOffset + partial} inside a header that starts at byte ${headerOffset}`, headerOffset);
  }
}

/** The tar ended at byte `end`, inside an entry's data. */
function cutShort(end: number, header: Header, present: number, size: number): M4Error {
  const where = `(header at byte ${header.headerOffset}, ${present} of ${size} bytes present)`;
  const error = truncated(`tar ends at byte ${end} inside entry ${JSON.stringify(header.name)} ${where}`, header.entryStart);
  error.context.name = header.name;
  return error;
}

function truncated(message: string, offset: number): M4Error {
  return new M4Error('E_TAR_TRUNCATED', 'shards', message, { offset });
}

function corrupt(message: string, offset: number): M4Error {
  return new M4Error('E_TAR_CORRUPT', 'shards', message, { offset });
}

/**
 * Checks the checksum of the header block at `bytes[at]`; false for a block of zeros (an end-of-archive marker). One
 * tight sum over the block serves both; the signed sum is only worked out when it is needed.
 */
function checkHeader(bytes: Buffer, at: number, offset: number): boolean {
  const all = byteSum(bytes, at);
  if (all === 0) return false;
  const stored = parseOctal(bytes, at + 148, at + 156);
  if (Number.isNaN(stored)) throw corrupt(`bad tar header checksum at byte ${offset} (the checksum field holds no number): not a tar, or corrupt`, offset);
  // The checksum field counts as eight spaces.
  let unsigned = all + 8 * 0x20;
  for (let i = at + 148; i < at + 156; i++) unsigned -= bytes[i]!;
  let signed = unsigned;
  if (stored !== unsigned) for (let i = 0; i < BLOCK; i++) if ((i < 148 || i >= 156) && bytes[at + i]! > 127) signed -= 256;
  // Some old writers summed signed bytes; accept both, as GNU tar and Python's tarfile do.
  if (stored !== unsigned && stored !== signed) {
    throw corrupt(`bad tar header checksum at byte ${offset} (stored ${stored}, computed ${unsigned}): not a tar, or corrupt`, offset);
  }
  return true;
}

/**
 * The sum of the block's 512 bytes: copied into an aligned scratch block, then read as 32-bit words, the four bytes of
 * a word added in two 16-bit lanes at once (64 words fit one 31-bit sum). A view over the block itself needs it aligned
 * (a socket's chunks rarely are) and costs an object per header; the copy is cheaper than either that or a byte loop.
 */
function byteSum(bytes: Buffer, at: number): number {
  bytes.copy(SCRATCH_BYTES, 0, at, at + BLOCK);
  let sum = 0;
  for (let half = 0; half < BLOCK >> 2; half += 64) {
    let lanes = 0;
    for (let i = half; i < half + 64; i++) {
      const w = SCRATCH_WORDS[i]!;
      lanes += (w & 0x00ff00ff) + ((w >>> 8) & 0x00ff00ff);
    }
    sum += (lanes & 0xffff) + (lanes >>> 16);
  }
  return sum;
}

const SCRATCH_WORDS = new Uint32Array(BLOCK >> 2);
const SCRATCH_BYTES = Buffer.from(SCRATCH_WORDS.buffer);

/** The number field `bytes[start, end)`: octal, or GNU base-256. */
function parseNumber(bytes: Buffer, start: number, end: number, offset: number): number {
  if (bytes[start]! & 0x80) {
    // GNU base-256: big-endian, the top bit of the first byte flags the encoding.
    let value = bytes[start]! & 0x7f;
    for (let i = start + 1; i < end; i++) value = value * 256 + bytes[i]!;
    return value;
  }
  const value = parseOctal(bytes, start, end);
  if (Number.isNaN(value)) throw corrupt(`unreadable number in tar header at byte ${offset}`, offset);
  return value;
}

/**
 * The octal field `bytes[start, end)` as tar writers fill it: NULs or spaces around the digits. After the digits, a NUL
 * ends the field (what follows is ignored) and spaces may run to its end; anything else is no number. An empty field is 0.
 */
function parseOctal(bytes: Buffer, start: number, end: number): number {
  let i = start;
  while (i < end && (bytes[i] === 0 || bytes[i] === 0x20)) i++;
  let value = 0;
  for (; i < end; i++) {
    const c = bytes[i]!;
    if (c < 0x30 || c > 0x37) break;
    value = value * 8 + (c - 0x30);
  }
  if (i === end || bytes[i] === 0) return value;
  if (bytes[i] !== 0x20) return Number.NaN;
  for (; i < end; i++) if (bytes[i] !== 0x20 && bytes[i] !== 0) return Number.NaN;
  return value;
}

/** The NUL-terminated text field `bytes[start, end)` (or one filling its bytes). */
function cString(bytes: Buffer, start: number, end: number): string {
  let stop = start;
  let ascii = true;
  for (; stop < end && bytes[stop] !== 0; stop++) if (bytes[stop]! > 0x7f) ascii = false;
  // ASCII, what tars almost always hold, decodes fastest as latin1, to the same text.
  return bytes.toString(ascii ? 'latin1' : 'utf8', start, stop);
}

/** Only POSIX ustar ("ustar\0" at byte 257) has a prefix field; GNU ("ustar  ") keeps other data there. */
const USTAR_MAGIC = Buffer.from('ustar\0', 'latin1');

function ustarName(bytes: Buffer, at: number): string {
  const name = cString(bytes, at, at + 100);
  for (let i = 0; i < USTAR_MAGIC.length; i++) if (bytes[at + 257 + i] !== USTAR_MAGIC[i]) return name;
  const prefix = cString(bytes, at + 345, at + 500);
  return prefix ? `${prefix}/${name}` : name;
}

function entryType(typeflag: string): TarEntry['type'] {
  switch (typeflag) {
    case '0':
    case '\0':
    case '7':
      return 'file';
    case '5':
      return 'directory';
    case '1':
    case '2':
      return 'link';
    default:
      return 'other';
  }
}

/** PAX records: "<length> <key>=<value>\n", the length counting the whole record in bytes. */
function parsePax(content: Buffer, offset: number): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < content.length) {
    if (content[at] === 0) break;
    const space = content.indexOf(0x20, at);
    const length = space < 0 ? Number.NaN : Number(content.toString('latin1', at, space));
    if (!Number.isSafeInteger(length) || length <= 0 || at + length > content.length) {
      throw corrupt(`malformed PAX record in extension header at byte ${offset}`, offset);
    }
    const record = content.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return out;
}

/** Hands out exact byte counts from a chunked stream, copying only when a read spans chunks. */
class ChunkReader {
  private chunks: Buffer[] = [];
  private head = 0; // bytes of chunks[0] already consumed
  private buffered = 0;
  private done = false;

  constructor(
    private readonly source: AsyncIterator<Uint8Array>,
    public position: number,
  ) {}

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.done) {
      const next = await this.source.next();
      if (next.done) {
        this.done = true;
      } else if (next.value.length > 0) {
        const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
        this.chunks.push(chunk);
        this.buffered += chunk.length;
      }
    }
  }

  /** Exactly n bytes, or fewer only at the end of the stream. */
  async take(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    await this.fill(n);
    const want = Math.min(n, this.buffered);
    if (want === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length - this.head >= want) {
      out = first.subarray(this.head, this.head + want);
      this.consume(want);
    } else {
      out = Buffer.allocUnsafe(want);
      let filled = 0;
      while (filled < want) {
        const chunk = this.chunks[0]!;
        const part = Math.min(chunk.length - this.head, want - filled);
        chunk.copy(out, filled, this.head, this.head + part);
        filled += part;
        this.consume(part);
      }
    }
    return out;
  }

  /** Up to `max` bytes, without copying: what the first buffered chunk holds; empty only at the end of the stream. */
  async takeSome(max: number): Promise<Buffer> {
    if (this.buffered === 0) await this.fill(1);
    if (this.buffered === 0 || max <= 0) return EMPTY;
    const first = this.chunks[0]!;
    const out = first.subarray(this.head, this.head + Math.min(max, first.length - this.head));
    this.consume(out.length);
    return out;
  }

  /** Reads past n bytes as they arrive, holding none of them; returns how many there were (fewer at the end). */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      if (this.buffered === 0) await this.fill(1);
      if (this.buffered === 0) break;
      const part = Math.min(this.chunks[0]!.length - this.head, n - skipped);
      this.consume(part);
      skipped += part;
    }
    return skipped;
  }

  /** Ends the source early if it has more (its `return` closes a file or a connection). */
  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.source.return?.();
  }

  private consume(n: number): void {
    this.head += n;
    this.buffered -= n;
    this.position += n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
