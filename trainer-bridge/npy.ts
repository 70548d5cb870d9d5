import { endianness } from 'node:os';
import { M4Error } from '../core/errors.ts';

/** The dtypes the bridge writes, as NumPy spells them (little-endian; int8 has no byte order). */
export type NpyDtype = '<i4' | '<f4' | '|i1';
export type NpyData = Int32Array | Float32Array | Int8Array;

export interface NpyArray {
  name: string;
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY, format version 1.0

/** The dtype NumPy reads a typed array as. */
export function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Int32Array) return '<i4';
  if (data instanceof Float32Array) return '<f4';
  return '|i1';
}

/**
 * An array as a `.npy` file of format 1.0: magic, version, a little-endian uint16 header length, a Python dict literal
 * padded with spaces to a multiple of 64 bytes and ended by a newline, then the C-order data. Returned as two buffers
 * (header, and a view of the data, not a copy).
 */
export function npyParts(shape: readonly number[], data: NpyData): [Buffer, Buffer] {
  if (endianness() !== 'LE') throw new M4Error('E_USAGE', 'bridge', 'writing .npy needs a little-endian machine');
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new M4Error('E_USAGE', 'bridge', `shape [${shape.join(', ')}] holds ${count} values, the array ${data.length}`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  const dict = `{'descr': '${dtypeOf(data)}', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = MAGIC.length + 2 + dict.length + 1;
  const headerLength = dict.length + 1 + ((64 - (unpadded % 64)) % 64);
  const header = Buffer.alloc(MAGIC.length + 2 + headerLength, 0x20);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(headerLength, MAGIC.length);
  header.write(dict, MAGIC.length + 2, 'latin1');
  header[header.length - 1] = 0x0a;
  return [header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)];
}

export function npyBytes(shape: readonly number[], data: NpyData): Buffer {
  return Buffer.concat(npyParts(shape, data));
}
