/** One WebDataset sample: files sharing a key, by field name (`jpg`, `txt`, `json`, `0.jpg`). */
export interface Sample {
  key: string;
  fields: Record<string, Uint8Array>;
}

/** What an index and a manifest count for one sample. */
export interface SampleCounts {
  images: number;
  tokens: number;
}

/** A sample read back from a shard, with where it lies in the tar. */
export interface ReadSample extends Sample {
  fields: Record<string, Buffer>;
  /** The shard it came from, as a URL or path. */
  url: string;
  /** Byte offset of its first tar header, and bytes up to the end of its last entry's padding. */
  offset: number;
  size: number;
  /** Each field's size in bytes, also for fields read past without holding them (`holdField`). */
  fieldSizes: Record<string, number>;
}
