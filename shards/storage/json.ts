import { M4Error } from '../../core/errors.ts';
import type { Storage } from './storage.ts';

/** JSON as written to storage: indented for people, or compact for large machine-read files such as indexes. */
export function jsonBytes(value: unknown, pretty = true): Buffer {
  return Buffer.from(`${JSON.stringify(value, null, pretty ? 1 : undefined)}\n`);
}

export async function readJson(storage: Storage, key: string): Promise<unknown> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of storage.read(key)) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new M4Error('E_INPUT', 'shards', `${storage.urlOf(key)} is not valid JSON: ${(err as Error).message}`, { url: storage.urlOf(key) });
  }
}
