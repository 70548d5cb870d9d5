import { M4Error } from '../../core/errors.ts';
import type { Storage } from './storage.ts';

/** JSON as written to storage: indented for people, or compact for large machine-read files such as indexes. */
export function jsonBytes(value: unknown, pretty = true): Buffer {
  return Buffer.from(`${JSON.stringify(value, null, pretty ? 1 : undefined)}\n`);
}

export async function readJson(storage: Storage, key: string): Promise<unknown> {
  return parseJson(await readBytes(storage, key), storage.urlOf(key));
}

/** An object's bytes, whole (for small files: manifests, indexes, plans). */
export async function readBytes(storage: Storage, key: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of storage.read(key)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

export function parseJson(bytes: Buffer, url: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new M4Error('E_INPUT', 'shards', `${url} is not valid JSON: ${(err as Error).message}`, { url });
  }
}
