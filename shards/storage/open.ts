import { fileURLToPath } from 'node:url';
import { M4Error } from '../../core/errors.ts';
import { isUrl } from './location.ts';
import { LocalStorage } from './local.ts';
import { S3Storage } from './s3.ts';
import { HttpStorage } from './http.ts';
import type { Storage } from './storage.ts';

export interface OpenOptions {
  /** http(s) locations: private, loopback and link-local addresses allowed (all, or these CIDRs); default none. */
  allowPrivateNetwork?: boolean | readonly string[];
}

/** Opens the storage rooted at a location: a local path, `file://...`, `s3://bucket/prefix`, or `http(s)://...` (read-only). */
export function openStorage(location: string, options: OpenOptions = {}): Storage {
  if (location.startsWith('s3://')) return new S3Storage(location);
  if (location.startsWith('http://') || location.startsWith('https://'))
    return new HttpStorage(location, { allowPrivateNetwork: options.allowPrivateNetwork ?? false });
  if (location.startsWith('file://')) return new LocalStorage(fileURLToPath(location));
  if (isUrl(location)) {
    throw new M4Error('E_USAGE', 'storage', `unsupported location ${location}: use a local path, file://, s3:// or http(s)://`);
  }
  return new LocalStorage(location);
}

/** Splits the location of one object into the storage holding it and its key there. */
export function openObject(location: string, options: OpenOptions = {}): { storage: Storage; key: string } {
  // file:// URLs carry percent-escapes (`my%20file`); the path they name does not.
  if (location.startsWith('file://')) return openObject(fileURLToPath(location), options);
  const cut = location.replace(/\/+$/, '').lastIndexOf('/');
  if (cut < 0) return { storage: openStorage('.', options), key: location };
  const root = location.slice(0, cut);
  // `s3://bucket` alone is a valid root; `/file` is a file at the filesystem root.
  const parent = root === '' && !isUrl(location) ? '/' : root;
  return { storage: openStorage(parent, options), key: location.slice(cut + 1) };
}
