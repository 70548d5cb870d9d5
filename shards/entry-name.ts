import { M4Error } from '../core/errors.ts';

/** Field suffixes that hold an image, counted as images in shard indexes. */
export const IMAGE_EXTENSIONS = new Set(['jpg', 'jpeg', 'png', 'webp', 'gif', 'ppm', 'pgm', 'pbm', 'bmp', 'tif', 'tiff']);

/** Whether a field name (`jpg`, `0.jpg`, `txt`) holds an image, judged by its last extension. */
export function isImageField(field: string): boolean {
  return IMAGE_EXTENSIONS.has(field.slice(field.lastIndexOf('.') + 1));
}

/** Refuses entry names that could escape a folder when unpacked: `..` segments, absolute paths, NUL, backslash roots. */
export function checkEntryName(name: string, context: Record<string, unknown> = {}): void {
  const reason = unsafeReason(name);
  if (reason) {
    throw new M4Error('E_UNSAFE_NAME', 'shards', `unsafe tar entry name ${JSON.stringify(name)}: ${reason}`, { ...context, name });
  }
}

function unsafeReason(name: string): string | undefined {
  if (name.includes('\0')) return 'contains NUL';
  if (name.startsWith('/') || name.startsWith('\\') || /^[a-zA-Z]:/.test(name)) return 'absolute path';
  // Split only a name that holds '..' at all (every entry of every sample is checked: the split was most of the cost).
  if (name.includes('..') && name.split(/[\\/]/).includes('..')) return "contains a '..' segment";
  return undefined;
}

/**
 * WebDataset's grouping rule: the key is the path up to the first dot of the basename, the field is the rest,
 * lower-cased (`webdataset.tariterators.base_plus_ext` with `lcase=True`). Names without a dot belong to no sample.
 */
export function splitEntryName(name: string): { key: string; field: string } | undefined {
  // As /^((?:.*\/|)[^./]+)\.([^/]*)$/ splits it, without the match's array and strings: the first dot of the basename,
  // with something before it. A line terminator (which `.` does not match) takes the pattern itself.
  if (LINE_TERMINATOR.test(name)) return splitByPattern(name);
  const base = name.lastIndexOf('/') + 1;
  const dot = name.indexOf('.', base);
  if (dot <= base) return undefined;
  return { key: name.slice(0, dot), field: name.slice(dot + 1).toLowerCase() };
}

const LINE_TERMINATOR = /[\n\r\u2028\u2029]/;

function splitByPattern(name: string): { key: string; field: string } | undefined {
  const match = /^((?:.*\/|)[^./]+)\.([^/]*)$/.exec(name);
  if (!match) return undefined;
  return { key: match[1]!, field: match[2]!.toLowerCase() };
}

/** WebDataset skips meta entries such as `__index__` or `__meta__/x`. */
export function isMetaEntry(name: string): boolean {
  return /(^|\/)__[^/]*__($|\/)/.test(name);
}

const KEY_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const FIELD_PATTERN = /^[a-z0-9_-]{1,16}(\.[a-z0-9_-]{1,8}){0,2}$/;

/**
 * Keys and fields this project writes: flat, dot-free keys and lower-case fields, so that every name fits one
 * 512-byte ustar header (at most 64 + 1 + 34 bytes) and reads back under the same key and field.
 */
export function checkWritableName(key: string, field: string): void {
  if (!KEY_PATTERN.test(key)) {
    throw new M4Error('E_SAMPLE', 'shards', `sample key ${JSON.stringify(key)} must be 1-64 characters of A-Z a-z 0-9 _ -`, { key });
  }
  if (!FIELD_PATTERN.test(field)) {
    throw new M4Error('E_SAMPLE', 'shards', `field ${JSON.stringify(field)} of sample ${key} must be lower-case dotted words such as jpg, 0.jpg, json`, {
      key,
      field,
    });
  }
}
