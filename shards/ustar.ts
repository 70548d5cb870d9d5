/**
 * The one tar header this project writes: POSIX ustar, a regular file, mode 0644, uid/gid 0, mtime 0, no user or group
 * names. Fixed fields make the same samples give byte-identical tars anywhere. Names are checked beforehand to be ASCII
 * and at most 100 bytes (see entry-name.ts), so no PAX or GNU extension header is ever needed.
 */
export const BLOCK = 512;
const MAX_OCTAL_11 = 8 ** 11 - 1; // largest size the 12-byte size field holds: 8 GiB - 1

export function ustarHeader(name: string, size: number): Buffer {
  if (name.length > 100 || !/^[\x20-\x7e]+$/.test(name)) throw new Error(`tar name ${JSON.stringify(name)} does not fit a ustar header`);
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_OCTAL_11) throw new Error(`tar entry size ${size} out of range`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 'ascii');
  h.write('0000644\0', 100, 'ascii');
  h.write('0000000\0', 108, 'ascii');
  h.write('0000000\0', 116, 'ascii');
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  h.write('00000000000\0', 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum counts its own field as spaces
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('0000000\0', 329, 'ascii');
  h.write('0000000\0', 337, 'ascii');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** Bytes an entry of `size` bytes takes: its header plus its data padded to whole blocks. */
export function entryBytes(size: number): number {
  return BLOCK + Math.ceil(size / BLOCK) * BLOCK;
}

export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
