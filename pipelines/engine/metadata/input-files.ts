import { isM4Error, M4Error } from '../../../core/errors.ts';
import { openObject, type OpenOptions } from '../../../shards/storage/open.ts';
import { resolveInputs } from './read-metadata.ts';

export interface InputFile {
  file: string;
  /** null where the store would not tell (an HTTP server without Content-Length in its answer to HEAD). */
  bytes: number | null;
}

/**
 * The files behind the inputs, in reading order, each with its size. Part of a build's fingerprint: a resumed build
 * whose input was replaced, grew, or whose glob now matches other files would otherwise mix two datasets.
 */
export async function describeInputs(inputs: readonly string[], network: OpenOptions = {}): Promise<InputFile[]> {
  const files = await resolveInputs(inputs);
  return Promise.all(
    files.map(async (file) => {
      const { storage, key } = openObject(file, network);
      const info = await storage.stat(key).catch((err: unknown) => {
        // Reading the file will say what is wrong with it; a size is only a check.
        if (isM4Error(err, 'E_STORAGE')) return null;
        throw err;
      });
      if (info === undefined) throw new M4Error('E_NOT_FOUND', 'metadata', `no such input: ${file}`, { input: file });
      return { file, bytes: info?.size ?? null };
    }),
  );
}
