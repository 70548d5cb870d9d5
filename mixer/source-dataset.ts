import { isM4Error, M4Error } from '../core/errors.ts';
import { MANIFEST_NAME, readManifest, totalsProblem, type Manifest, type ShardRecord } from '../shards/manifest.ts';
import { indexKeyOf, readCheckedIndex, type IndexEntry, type ShardIndex } from '../shards/shard-index.ts';
import { openObject, openStorage, type OpenOptions } from '../shards/storage/open.ts';
import type { Storage } from '../shards/storage/storage.ts';
import { checkAgainstPrint, checkIndexAgainstRecord, checkIndexPrint, fingerprintShards, type ShardPrint } from './plan-fingerprint.ts';

/**
 * One built dataset as the mixer sees it, through `shards/` only: its manifest (shards and their sample counts) and,
 * on demand, each shard's index (every sample's key, tar offset and size, tokens and images), checked. Opened with a
 * plan's fingerprint, it refuses a manifest or an index that changed since the plan. Indexes are cached a few at a time.
 */
export class SourceDataset {
  private readonly indexes = new Map<number, Promise<IndexEntry[]>>();
  private readonly urls: string[] = [];

  private constructor(
    /** As the user gave it. */
    readonly location: string,
    readonly storage: Storage,
    /** Key prefix of the shards (the manifest's folder inside the storage). */
    private readonly dir: string,
    readonly manifest: Manifest,
    private readonly print: readonly ShardPrint[] | undefined,
    private readonly cacheSize: number,
  ) {}

  /**
   * A dataset folder, an `s3://` prefix, or the URL of its `manifest.json` (http(s) under the network rule); with the
   * plan's prints, checked against them.
   */
  static async open(location: string, options: { network?: OpenOptions; print?: readonly ShardPrint[]; cacheSize?: number } = {}): Promise<SourceDataset> {
    const network = options.network ?? {};
    const isManifest = /\.json$/i.test(location);
    const { storage, key } = isManifest ? openObject(location, network) : { storage: openStorage(location, network), key: MANIFEST_NAME };
    // Read at once, not asked for first (on S3 a HEAD, one more request per source and pass).
    const manifest = await readManifest(storage, key).catch((err: unknown) => {
      if (!isM4Error(err, 'E_NOT_FOUND')) throw err;
      throw new M4Error(
        'E_NOT_FOUND',
        'mixer',
        `${storage.urlOf(key)} does not exist: is ${location} a dataset built by m4data build (a folder or prefix holding manifest.json)?`,
        { location },
      );
    });
    const problem = totalsProblem(manifest);
    if (problem) throw new M4Error('E_INPUT', 'mixer', `${storage.urlOf(key)}: ${problem}; the dataset cannot be mixed as it is`, { location });
    if (options.print) checkAgainstPrint(manifest.shards, options.print, location);
    const dir = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
    return new SourceDataset(location, storage, dir, manifest, options.print, options.cacheSize ?? 16);
  }

  get shards(): readonly ShardRecord[] {
    return this.manifest.shards;
  }

  /** Storage key of a shard, by its place in the manifest. */
  shardKey(shard: number): string {
    return this.dir + this.manifest.shards[shard]!.shard;
  }

  shardUrl(shard: number): string {
    this.urls[shard] ??= this.storage.urlOf(this.shardKey(shard));
    return this.urls[shard];
  }

  /** Every shard's print (reads every index once): what a plan records of this dataset. */
  fingerprint(): Promise<ShardPrint[]> {
    return fingerprintShards(this.shards, (shard) => this.readIndex(shard));
  }

  /** The index entries of one shard, checked against the manifest's record and the plan's fingerprint. */
  entries(shard: number): Promise<IndexEntry[]> {
    let cached = this.indexes.get(shard);
    if (cached) {
      // Refresh its place: the map keeps insertion order, so the first key is the least recently used.
      this.indexes.delete(shard);
      this.indexes.set(shard, cached);
      return cached;
    }
    cached = this.loadEntries(shard);
    this.indexes.set(shard, cached);
    cached.catch(() => this.indexes.delete(shard));
    while (this.indexes.size > this.cacheSize) this.indexes.delete(this.indexes.keys().next().value!);
    return cached;
  }

  private async loadEntries(shard: number): Promise<IndexEntry[]> {
    const { index, sha256, url } = await this.readIndex(shard);
    checkIndexAgainstRecord(index, this.manifest.shards[shard]!, url);
    if (this.print) checkIndexPrint(sha256, this.print[shard]!, url);
    return index.entries;
  }

  private async readIndex(shard: number): Promise<{ index: ShardIndex; sha256: string; url: string }> {
    const key = indexKeyOf(this.shardKey(shard));
    return { ...(await readCheckedIndex(this.storage, key)), url: this.storage.urlOf(key) };
  }
}
