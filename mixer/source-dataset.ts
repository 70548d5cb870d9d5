import { M4Error } from '../core/errors.ts';
import { MANIFEST_NAME, readManifest, type Manifest, type ShardRecord } from '../shards/manifest.ts';
import { indexKeyOf, readShardIndex, type IndexEntry } from '../shards/shard-index.ts';
import { openObject, openStorage, type OpenOptions } from '../shards/storage/open.ts';
import type { Storage } from '../shards/storage/storage.ts';

/**
 * One built dataset as the mixer sees it, through `shards/` only: its manifest (shards and their sample counts) and,
 * on demand, each shard's index (every sample's key, tokens and images). Indexes are cached a few at a time.
 */
export class SourceDataset {
  private readonly indexes = new Map<number, Promise<IndexEntry[]>>();

  private constructor(
    /** As the user gave it. */
    readonly location: string,
    readonly storage: Storage,
    /** Key prefix of the shards (the manifest's folder inside the storage). */
    private readonly dir: string,
    readonly manifest: Manifest,
    private readonly cacheSize: number,
  ) {}

  /** A dataset folder, an `s3://` prefix, or the URL of its `manifest.json`; http(s) under the network rule. */
  static async open(location: string, network: OpenOptions = {}, cacheSize = 16): Promise<SourceDataset> {
    const isManifest = /\.json$/i.test(location);
    const { storage, key } = isManifest ? openObject(location, network) : { storage: openStorage(location, network), key: MANIFEST_NAME };
    if (!(await storage.stat(key))) {
      throw new M4Error('E_NOT_FOUND', 'mixer', `${storage.urlOf(key)} does not exist: is ${location} a dataset built by m4data build (a folder or prefix holding manifest.json)?`, { location });
    }
    const manifest = await readManifest(storage, key);
    const dir = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
    return new SourceDataset(location, storage, dir, manifest, cacheSize);
  }

  get shards(): readonly ShardRecord[] {
    return this.manifest.shards;
  }

  /** Storage key of a shard, by its place in the manifest. */
  shardKey(shard: number): string {
    return this.dir + this.manifest.shards[shard]!.shard;
  }

  shardUrl(shard: number): string {
    return this.storage.urlOf(this.shardKey(shard));
  }

  /** The index entries of one shard, checked against the manifest's sample count. */
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
    const record = this.manifest.shards[shard]!;
    const index = await readShardIndex(this.storage, indexKeyOf(this.shardKey(shard)));
    if (index.entries.length !== record.samples) {
      throw new M4Error('E_INPUT', 'mixer', `${this.storage.urlOf(indexKeyOf(this.shardKey(shard)))} lists ${index.entries.length} samples, the manifest ${record.samples}`, { shard: this.shardUrl(shard) });
    }
    return index.entries;
  }
}
