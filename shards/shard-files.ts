/**
 * The names of a dataset's files, in one place: shards `{prefix}-{000042}.tar` (img2dataset's and webdataset's
 * naming) and the files written beside each shard, which share its name up to `.tar`.
 */

/** The side files of a shard: its index, and a build's outcome records, image records and stats. */
export const SIDE_FILES = {
  index: '.idx.json',
  outcomes: '.outcomes.parquet',
  images: '.images.parquet',
  stats: '.stats.json',
} as const;
export type SideFile = keyof typeof SIDE_FILES;

export function shardName(prefix: string, index: number): string {
  return `${prefix}-${String(index).padStart(6, '0')}.tar`;
}

/** `laion-000000.tar` -> `laion-000000.idx.json` (or another side file), beside the shard. */
export function sideFileKey(shardKey: string, kind: SideFile): string {
  return `${shardKey.replace(/\.tar$/, '')}${SIDE_FILES[kind]}`;
}

/** The shard number in a key named `{prefix}-{000042}{ending}`, or undefined for any other key. */
export function shardNumberOf(key: string, prefix: string, ending: string): number | undefined {
  if (!key.startsWith(`${prefix}-`) || !key.endsWith(ending)) return undefined;
  const digits = key.slice(prefix.length + 1, key.length - ending.length);
  return /^\d{6,}$/.test(digits) ? Number(digits) : undefined;
}
