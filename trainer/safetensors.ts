import { open, type FileHandle } from 'node:fs/promises';
import { M4Error } from '../core/errors.ts';
import { writeFileAtomically } from '../shards/storage/local.ts';

/**
 * The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header mapping each tensor name
 * to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the byte after the header) plus an optional
 * `__metadata__` map of strings, then the raw little-endian data. The reader holds only the header: each tensor is
 * read by its offsets when asked for, so a checkpoint of any size is read in bounded memory. It refuses what the
 * format's own reader refuses: offsets that overlap, leave gaps, run past the file or disagree with dtype and shape.
 */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  data_offsets: [number, number];
}

const BYTES: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};
/** What `read` turns into float32; integer tensors (buffers such as CLIP's `position_ids`) are never weights. */
export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'F64'];
/** The format's own cap on the header (the safetensors crate refuses larger), against a corrupt length field. */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsFile {
  path: string;
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** A tensor's values as float32, from F32, F16, BF16 or F64. */
  read(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new M4Error('E_NOT_FOUND', 'trainer', `cannot open safetensors file ${path}: ${(err as Error).message}`, { path });
  }
  try {
    const bad = (problem: string): never => {
      throw new M4Error('E_INPUT', 'trainer', `${path} is not a valid safetensors file: ${problem}`, { path });
    };
    const { size } = await handle.stat();
    const lengthBytes = Buffer.alloc(8);
    if (size < 8 || (await handle.read(lengthBytes, 0, 8, 0)).bytesRead !== 8) bad(`it has ${size} bytes, fewer than the 8 of the header length`);
    const headerLength = lengthBytes.readBigUInt64LE(0);
    if (headerLength > BigInt(MAX_HEADER_BYTES))
      bad(`its header length field says ${headerLength} bytes, over the format's cap of ${MAX_HEADER_BYTES.toLocaleString('en-US')}`);
    const headerBytes = Buffer.alloc(Number(headerLength));
    if (8 + headerBytes.length > size) bad(`truncated: its header length field says ${headerBytes.length} bytes, the file has ${size - 8} after it`);
    await handle.read(headerBytes, 0, headerBytes.length, 8);
    const header = parseHeader(headerBytes, bad);
    const dataStart = 8 + headerBytes.length;
    const entries = checkEntries(header, size - dataStart, bad);
    const metadata = checkMetadata(header.__metadata__, bad);
    return {
      path,
      entries,
      metadata,
      async read(name: string): Promise<Float32Array> {
        const entry = entries.get(name);
        if (!entry) throw new M4Error('E_NOT_FOUND', 'trainer', `${path} holds no tensor named ${name}`, { path, tensor: name });
        if (!FLOAT_DTYPES.includes(entry.dtype)) {
          throw new M4Error('E_INPUT', 'trainer', `${path}: tensor ${name} is ${entry.dtype}, not a floating-point dtype (${FLOAT_DTYPES.join(', ')})`, {
            path,
            tensor: name,
          });
        }
        const [begin, end] = entry.data_offsets;
        const bytes = Buffer.alloc(end - begin);
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, dataStart + begin);
        if (bytesRead !== bytes.length)
          throw new M4Error('E_INPUT', 'trainer', `${path}: tensor ${name} is cut short (the file shrank while read)`, { path, tensor: name });
        return toFloat32(bytes, entry.dtype);
      },
      close: () => handle.close(),
    };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function parseHeader(bytes: Buffer, bad: (problem: string) => never): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    return bad(`its header is not JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('its header is not a JSON object');
  return header as Record<string, unknown>;
}

function checkMetadata(value: unknown, bad: (problem: string) => never): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Object.values(value).some((v) => typeof v !== 'string')) bad('__metadata__ is not a map of strings');
  return value as Record<string, string>;
}

/** Every tensor's dtype, shape and offsets; together the offsets must tile the data exactly (no overlap, gap or overrun). */
function checkEntries(header: Record<string, unknown>, dataBytes: number, bad: (problem: string) => never): Map<string, SafetensorsEntry> {
  const entries = new Map<string, SafetensorsEntry>();
  const count = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = value as Partial<SafetensorsEntry> | null;
    if (typeof entry !== 'object' || entry === null) return bad(`tensor ${name} is not described by an object`);
    if (typeof entry.dtype !== 'string' || !(entry.dtype in BYTES))
      bad(`tensor ${name} has dtype ${JSON.stringify(entry.dtype)} (known: ${Object.keys(BYTES).join(', ')})`);
    if (!Array.isArray(entry.shape) || !entry.shape.every(count)) bad(`tensor ${name} has shape ${JSON.stringify(entry.shape)}, not a list of sizes`);
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(count) || offsets[0]! > offsets[1]!) {
      bad(`tensor ${name} has data_offsets ${JSON.stringify(offsets)}, not [begin, end] with begin <= end`);
    }
    const [begin, end] = offsets!;
    const needed = entry.shape!.reduce((a, b) => a * b, 1) * BYTES[entry.dtype!];
    if (end - begin !== needed) bad(`tensor ${name}: offsets ${begin}..${end} hold ${end - begin} bytes, ${entry.dtype} [${entry.shape}] needs ${needed}`);
    entries.set(name, { dtype: entry.dtype!, shape: entry.shape!, data_offsets: [begin, end] });
  }
  let reached = 0;
  const byOffset = [...entries].sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1]);
  for (const [
    name,
    {
      data_offsets: [begin, end],
    },
  ] of byOffset) {
    if (begin < reached) bad(`tensor ${name} at bytes ${begin}..${end} overlaps the tensor before it (which ends at ${reached})`);
    if (begin > reached) bad(`bytes ${reached}..${begin} before tensor ${name} belong to no tensor`);
    if (end > dataBytes) bad(`truncated: tensor ${name} ends at data byte ${end}, the file holds ${dataBytes} bytes of data`);
    reached = end;
  }
  if (reached !== dataBytes) bad(`${dataBytes - reached} bytes after the last tensor belong to no tensor`);
  return entries;
}

function toFloat32(bytes: Buffer, dtype: SafetensorsDtype): Float32Array {
  const count = bytes.length / BYTES[dtype];
  // Node runs on little-endian hosts, so F32 data is copied as is.
  if (dtype === 'F32') return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const out = new Float32Array(count);
  if (dtype === 'F64') for (let i = 0; i < count; i++) out[i] = bytes.readDoubleLE(8 * i);
  else if (dtype === 'F16') for (let i = 0; i < count; i++) out[i] = halfToFloat(bytes.readUInt16LE(2 * i));
  else {
    // bfloat16 is the top half of a float32.
    const word = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) word[i] = bytes.readUInt16LE(2 * i) << 16;
  }
  return out;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  /** The values, asked for when the tensor's turn comes (so only one tensor's data need exist at a time). */
  data: Float32Array | (() => Float32Array);
}

/** The header of a file of F32 tensors laid out in order, padded with spaces so the data starts 8-byte aligned. */
function encodeHeader(tensors: readonly TensorToWrite[], metadata: Record<string, string>): { header: Buffer; dataBytes: number } {
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) json.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = 4 * t.shape.reduce((a, b) => a * b, 1);
    json[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const body = Buffer.from(text, 'utf8');
  const header = Buffer.alloc(8 + body.length);
  header.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(header, 8);
  return { header, dataBytes: offset };
}

const valuesOf = (t: TensorToWrite): Float32Array => {
  const data = typeof t.data === 'function' ? t.data() : t.data;
  if (data.length !== t.shape.reduce((a, b) => a * b, 1)) throw new Error(`tensor ${t.name}: ${data.length} values for shape [${t.shape}]`);
  return data;
};

/**
 * Writes a safetensors file of F32 tensors one tensor at a time (memory: one tensor), to a temp name beside `path`,
 * synced, then renamed over `path`: the file appears only complete. Returns its size in bytes.
 */
export async function writeSafetensorsFile(path: string, tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}): Promise<number> {
  const { header, dataBytes } = encodeHeader(tensors, metadata);
  // One tensor's values at a time, through the one atomic write (temporary name, fsync, rename).
  async function* chunks(): AsyncGenerator<Uint8Array> {
    yield header;
    for (const t of tensors) {
      const data = valuesOf(t);
      yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
  }
  await writeFileAtomically(path, chunks());
  return header.length + dataBytes;
}
