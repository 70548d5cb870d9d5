import { open, type FileHandle } from 'node:fs/promises';
import { M4Error } from '../core/errors.ts';

/**
 * The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header mapping each tensor name
 * to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the byte after the header) plus an optional
 * `__metadata__` map of strings, then the raw little-endian data.
 */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64';

export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  data_offsets: [number, number];
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };
/** The format's own cap on the header, against a corrupt length field. */
const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsFile {
  path: string;
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** A tensor's values as float32, whatever its stored dtype. */
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
      throw new M4Error('E_INPUT', 'trainer', `${path} is not a safetensors file: ${problem}`, { path });
    };
    const { size } = await handle.stat();
    const lengthBytes = Buffer.alloc(8);
    if (size < 8 || (await handle.read(lengthBytes, 0, 8, 0)).bytesRead !== 8) bad('shorter than 8 bytes');
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > size) bad(`header length ${headerLength} does not fit a ${size}-byte file`);
    const headerBytes = Buffer.alloc(headerLength);
    await handle.read(headerBytes, 0, headerLength, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBytes.toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      return bad(`header is not JSON (${(err as Error).message})`);
    }
    const dataStart = 8 + headerLength;
    const entries = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = value as Record<string, string>;
        continue;
      }
      const entry = value as SafetensorsEntry;
      if (!(entry.dtype in BYTES)) bad(`tensor ${name} has dtype ${entry.dtype} (supported: ${Object.keys(BYTES).join(', ')})`);
      const [begin, end] = entry.data_offsets;
      const expected = entry.shape.reduce((a, b) => a * b, 1) * BYTES[entry.dtype];
      if (end - begin !== expected || dataStart + end > size) bad(`tensor ${name}: offsets ${begin}..${end} do not hold ${entry.dtype} ${JSON.stringify(entry.shape)}`);
      entries.set(name, entry);
    }
    return {
      path,
      entries,
      metadata,
      async read(name: string): Promise<Float32Array> {
        const entry = entries.get(name);
        if (!entry) throw new M4Error('E_NOT_FOUND', 'trainer', `${path} holds no tensor named ${name}`, { path, tensor: name });
        const [begin, end] = entry.data_offsets;
        const bytes = Buffer.alloc(end - begin);
        await handle.read(bytes, 0, bytes.length, dataStart + begin);
        return toFloat32(bytes, entry.dtype);
      },
      close: () => handle.close(),
    };
  } catch (err) {
    await handle.close();
    throw err;
  }
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
  data: Float32Array;
}

/** A safetensors file of F32 tensors, as bytes (the header padded with spaces to 8-byte alignment, as the format asks). */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, at);
    at += t.data.byteLength;
  }
  return out;
}
