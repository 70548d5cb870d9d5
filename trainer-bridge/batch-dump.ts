import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { M4Error } from '../core/errors.ts';
import { checkLocalOutput } from '../shards/storage/local-output.ts';
import { isTemporary, LocalStorage, temporaryName, writeFileAtomically } from '../shards/storage/local.ts';
import type { Batch } from './batch.ts';
import { batchArrays } from './batch-npy.ts';
import { npyParts } from './npy.ts';

/** The file naming what a dump folder holds; a folder holding another dump's is never written into. */
export const DUMP_FILE = 'dump.json';
const BATCH_FOLDER = /^batch-\d{6,}$/;

/**
 * A folder of batches, `DIR/batch-000042/<name>.npy`. Each batch is written into a temporary folder and renamed into
 * place, so a batch appears with all five arrays or not at all. The folder is refused unless it is new, empty, or
 * holds an earlier dump of the same stream (`identity`: the mixture, the rank and the batch shape), which a resumed
 * dump continues; what a killed dump left half-written is removed.
 */
export class BatchDumpFolder {
  private constructor(readonly dir: string) {}

  static async open(dir: string, identity: Record<string, unknown>, flag = '--dump'): Promise<BatchDumpFolder> {
    await checkLocalOutput(dir, flag);
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const wanted = `${JSON.stringify({ format: 'm4data-batch-dump', version: 1, ...identity }, null, 1)}\n`;
    if (names.length > 0) {
      const found = names.includes(DUMP_FILE) ? await readFile(join(dir, DUMP_FILE), 'utf8') : undefined;
      if (found !== wanted) {
        const why =
          found === undefined
            ? `holds files m4data did not dump (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''})`
            : 'holds the batches of another mixture, rank or batch shape';
        throw new M4Error('E_USAGE', 'bridge', `${flag} ${dir} ${why}: give a new or empty folder (nothing was written)`, { dir });
      }
      const strays = names.filter((name) => name !== DUMP_FILE && !BATCH_FOLDER.test(name) && !isTemporary(name));
      if (strays.length > 0)
        throw new M4Error('E_USAGE', 'bridge', `${flag} ${dir} also holds ${strays.join(', ')}, which m4data did not write: give a new or empty folder`, {
          dir,
        });
      for (const name of names.filter(isTemporary)) await rm(join(dir, name), { recursive: true, force: true });
    }
    await mkdir(dir, { recursive: true });
    await writeFileAtomically(join(dir, DUMP_FILE), Buffer.from(wanted));
    return new BatchDumpFolder(dir);
  }

  /** Writes batch `index` whole; an earlier batch of that index (a resumed dump redoing it) is replaced. */
  async write(index: number, batch: Batch): Promise<string> {
    const name = `batch-${String(index).padStart(6, '0')}`;
    const final = join(this.dir, name);
    const temp = join(this.dir, temporaryName(name));
    try {
      const files = new LocalStorage(temp);
      for (const array of batchArrays(batch)) await files.write(`${array.name}.npy`, chunks(npyParts(array.shape, array.data)));
      await rm(final, { recursive: true, force: true });
      await rename(temp, final);
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      throw err;
    }
    return final;
  }
}

async function* chunks(parts: Buffer[]): AsyncGenerator<Buffer> {
  yield* parts;
}
