import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import { M4Error } from '../core/errors.ts';
import type { ShardRecord } from '../shards/manifest.ts';
import type { ShardIndex } from '../shards/shard-index.ts';

/**
 * What a plan used of each source, shard by shard: `[name, samples, tokens, bytes, sha256 of its index]`. A stream
 * compares the manifest with it when it starts and each index as it loads it, so a dataset changed since the plan
 * (a shard replaced, a sample's tokens edited in an index) is refused naming the shard, never silently mixed.
 */
export type ShardPrint = [shard: string, samples: number, tokens: number, bytes: number, indexSha256: string];

/** Indexes read at once when fingerprinting a dataset. */
const CONCURRENCY = 16;

/** Every shard's print, reading (and checking) every index once, and each index against the manifest's record. */
export async function fingerprintShards(
  shards: readonly ShardRecord[],
  readIndex: (shard: number) => Promise<{ index: ShardIndex; sha256: string; url: string }>,
): Promise<ShardPrint[]> {
  const limit = pLimit(CONCURRENCY);
  return Promise.all(
    shards.map((record, k) =>
      limit(async (): Promise<ShardPrint> => {
        const { index, sha256, url } = await readIndex(k);
        checkIndexAgainstRecord(index, record, url);
        return [record.shard, record.samples, record.tokens, record.bytes, sha256];
      }),
    ),
  );
}

/** An index must describe the shard its manifest record describes. */
export function checkIndexAgainstRecord(index: ShardIndex, record: ShardRecord, url: string): void {
  for (const field of ['samples', 'images', 'tokens', 'bytes'] as const) {
    if (index[field] !== record[field]) {
      throw new M4Error(
        'E_INPUT',
        'mixer',
        `${url} says ${index[field]} ${field}, the manifest's record of ${record.shard} ${record[field]}: the dataset is inconsistent (rebuild it, or merge ` +
          `its manifest again)`,
        { url },
      );
    }
  }
}

/** Refuses a manifest whose shards are not those the plan used, naming the first shard that changed and how. */
export function checkAgainstPrint(shards: readonly ShardRecord[], print: readonly ShardPrint[], location: string): void {
  const changed = (what: string): never => {
    throw new M4Error('E_INPUT', 'mixer', `${location} changed since the plan was made: ${what}; plan the mixture again`, { location });
  };
  if (shards.length !== print.length) changed(`it lists ${shards.length} shards, the plan used ${print.length}`);
  shards.forEach((record, k) => {
    const [name, samples, tokens, bytes] = print[k]!;
    if (record.shard !== name) changed(`shard ${k + 1} is ${record.shard}, the plan used ${name}`);
    const now = { samples: record.samples, tokens: record.tokens, bytes: record.bytes };
    const then = { samples, tokens, bytes };
    for (const field of ['samples', 'tokens', 'bytes'] as const) {
      if (now[field] !== then[field]) changed(`${name} has ${now[field]} ${field}, the plan used ${then[field]}`);
    }
  });
}

/** Refuses an index whose bytes are not those the plan fingerprinted. */
export function checkIndexPrint(sha256: string, print: ShardPrint, url: string): void {
  if (sha256 !== print[4]) {
    throw new M4Error(
      'E_INPUT',
      'mixer',
      `${url} changed since the plan was made (its sha256 is ${sha256.slice(0, 12)}..., the plan's ${print[4].slice(0, 12)}...): plan the mixture again`,
      { url },
    );
  }
}

/** A plan's identity, bound into every resume state: the first 16 hex digits of the sha256 of its JSON. */
export function planId(plan: unknown): string {
  return createHash('sha256').update(JSON.stringify(plan)).digest('hex').slice(0, 16);
}
