/**
 * One small interface over every place shards live: a local folder, an S3 prefix, or (read-only) an HTTP server.
 * A Storage is rooted at a location; keys are relative, '/'-separated, and never start with '/'.
 */
export interface ObjectInfo {
  /** Key relative to the storage root. */
  key: string;
  /** Size in bytes. */
  size: number;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, exclusive; read to the end when absent. */
  end?: number;
}

export type Body = Uint8Array | AsyncIterable<Uint8Array>;

export interface Storage {
  /** The root as a URL or path a user would type (`/data/out`, `s3://bucket/prefix`). */
  readonly root: string;
  /** Size of one object, or undefined when it does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with `prefix`, in ascending key order, however many there are. */
  list(prefix?: string): AsyncIterable<ObjectInfo>;
  /** A byte stream of one object (or a range of it) with bounded memory. Throws M4Error E_NOT_FOUND if absent. */
  read(key: string, range?: ByteRange): AsyncIterable<Uint8Array>;
  /**
   * Writes an object atomically: readers see either nothing or the complete object, never a part
   * (local: temporary name then rename; S3: multipart upload completed only at the end, aborted on failure).
   */
  write(key: string, body: Body): Promise<ObjectInfo>;
  /** Removes an object; no error when it is already absent. */
  delete(key: string): Promise<void>;
  /**
   * Discards what killed writers of keys starting with `prefix` left behind (local temporary files, S3 multipart
   * uploads never completed); a whole key is its own prefix. Call it only for keys no other live writer is writing.
   */
  discardIncomplete(prefix: string): Promise<void>;
  /** A URL or path for one key, for messages and shard lists. */
  urlOf(key: string): string;
}

/** Byte-wise comparison of keys: the order `list` yields them in, as S3 does. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
