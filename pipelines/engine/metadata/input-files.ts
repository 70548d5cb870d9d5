import { M4Error } from '../../../core/errors.ts';
import { openObject } from '../../../shards/storage/open.ts';
import { resolveInputs } from './read-parquet.ts';

export interface InputFile {
  file: string;
  bytes: number;
}

/**
 * The files behind the inputs, in reading order, each with its size. Part of a build's fingerprint: a resumed build
 * whose input was replaced, grew, or whose glob now matches other files would otherwise mix two datasets.
 */
export async function describeInputs(inputs: readonly string[]): Promise<InputFile[]> {
  const files = await resolveInputs(inputs);
  return Promise.all(
    files.map(async (file) => {
      const { storage, key } = openObject(file);
      const info = await storage.stat(key);
      if (!info) throw new M4Error('E_NOT_FOUND', 'metadata', `no such input: ${file}`, { input: file });
      return { file, bytes: info.size };
    }),
  );
}
