import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { seededRandom } from '../../sandbox/images.ts';

/**
 * Hugging Face checkpoints written at test time, byte by byte as the safetensors format lays them out (independent of
 * the trainer's writer): any dtype the tests need, single files or shards with their index, and a config.json.
 */
export type RawDtype = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32';

export interface RawTensor {
  name: string;
  dtype: RawDtype;
  shape: number[];
  values: ArrayLike<number>;
}

const SIZES: Record<RawDtype, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4 };

// One float32 seen as its bits, shared by the conversions below (a typed array per value made them the slowest part of
// the checkpoint tests).
const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** float32 -> bfloat16 bits, rounding to nearest even. */
export function bf16Bits(value: number): number {
  scratch[0] = value;
  const bits = scratchBits[0]!;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float -> IEEE half bits, for normal values and zero (what the tests write), rounding to nearest (ties away from 0). */
export function f16Bits(value: number): number {
  if (value === 0) return 0;
  scratch[0] = value;
  const bits = scratchBits[0]!;
  const exponent = ((bits >>> 23) & 0xff) - 127;
  if (scratch[0] !== value || exponent < -14 || exponent > 15) return f16BitsOfDouble(value);
  // The 23 fraction bits rounded to 10; a carry out of the fraction moves into the exponent, as it should.
  return (((bits >>> 16) & 0x8000) | ((exponent + 15) << 10)) + (((bits & 0x7fffff) + 0x1000) >>> 13);
}

/** The same for a value float32 does not hold exactly, or one outside half's normal range (refused). */
function f16BitsOfDouble(value: number): number {
  const sign = value < 0 ? 0x8000 : 0;
  const a = Math.abs(value);
  const exponent = Math.floor(Math.log2(a));
  if (exponent < -14 || exponent > 15) throw new Error(`${value} is not a normal half`);
  const fraction = Math.round((a / 2 ** exponent - 1) * 1024);
  return fraction === 1024 ? sign | ((exponent + 16) << 10) : sign | ((exponent + 15) << 10) | fraction;
}

function encode(t: RawTensor): Buffer {
  const n = t.values.length;
  const out = Buffer.alloc(n * SIZES[t.dtype]);
  const v = t.values;
  switch (t.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out.writeFloatLE(v[i]!, 4 * i);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out.writeUInt16LE(f16Bits(v[i]!), 2 * i);
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) out.writeUInt16LE(bf16Bits(v[i]!), 2 * i);
      break;
    case 'I64':
      for (let i = 0; i < n; i++) out.writeBigInt64LE(BigInt(v[i]!), 8 * i);
      break;
    case 'I32':
      for (let i = 0; i < n; i++) out.writeInt32LE(v[i]!, 4 * i);
      break;
  }
  return out;
}

/** A safetensors file by hand: 8-byte length, JSON header (offsets in order), raw little-endian data. */
export function safetensorsBytes(tensors: readonly RawTensor[], metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const parts: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    const data = encode(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + data.length] };
    parts.push(data);
    offset += data.length;
  }
  return rawSafetensors(header, Buffer.concat(parts));
}

/** Any header (a lying one included) followed by `data`. */
export function rawSafetensors(header: Record<string, unknown>, data: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

/**
 * A checkpoint folder: config.json (when given) and the tensors in `shards` files (1: model.safetensors; more:
 * model-0000k-of-0000n.safetensors and model.safetensors.index.json).
 */
export async function writeCheckpoint(
  dir: string,
  tensors: readonly RawTensor[],
  options: { config?: Record<string, unknown>; shards?: number } = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  if (options.config) await writeFile(join(dir, 'config.json'), JSON.stringify(options.config));
  const shards = options.shards ?? 1;
  if (shards === 1) {
    await writeFile(join(dir, 'model.safetensors'), safetensorsBytes(tensors));
    return dir;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let k = 0; k < shards; k++) {
    const name = `model-${String(k + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(k * per, (k + 1) * per);
    for (const t of part) weightMap[t.name] = name;
    await writeFile(join(dir, name), safetensorsBytes(part));
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return dir;
}

/**
 * Seeded values for a checkpoint's tensors, so every component matters: norm weights near 1, biases and gates away
 * from 0, matrices scaled by their fan-in, embeddings and latents of unit scale.
 */
export function randomValues(name: string, shape: readonly number[], seed: number): Float32Array {
  const random = seededRandom(seed ^ hash(name));
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const count = shape.reduce((a, b) => a * b, 1);
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  let value: () => number;
  if (/alpha_(cross_attn|dense)$/.test(name)) value = () => 0.3 + 0.4 * random();
  else if (/(norm|layrnorm|layer_norm\d?|\.ln)\.weight$/.test(name)) value = () => 1 + 0.2 * gaussian();
  else if (name.endsWith('.bias')) value = () => 0.1 * gaussian();
  else if (/embed|latents|class_embedding/.test(name) || shape.length === 1) value = gaussian;
  else value = () => gaussian() / Math.sqrt(fanIn);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = value();
  return values;
}

function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
