import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { M4Error } from '../../core/errors.ts';
import { compareKeys, type Body, type ByteRange, type ObjectInfo, type Storage } from './storage.ts';

const WRITE_BATCH = 1 << 20;
/** Read chunk: 1 MiB reads a shard of large samples 1.7x faster than 256 KiB (bench shards). */
const READ_CHUNK = 1 << 20;
/**
 * A bounded range (runs of samples read by their index) is read in pieces of up to this many bytes by positioned reads
 * of a file kept open: the mixer reads stretches of runs of up to 8 MiB, each then one read into one buffer, which its
 * samples are decoded from in place (a read stream for those cost an open, a close and 1 MiB chunks to stitch).
 */
const RANGE_CHUNK = 8 << 20;

/** A folder on a local disk. Writes go to `name.tmp-<random>` and are renamed into place once complete. */
export class LocalStorage implements Storage {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  private pathOf(key: string): string {
    const path = resolve(this.root, key);
    if (path !== this.root && !path.startsWith(this.root + sep)) {
      throw new M4Error('E_UNSAFE_NAME', 'storage', `key ${JSON.stringify(key)} escapes ${this.root}`, { key });
    }
    return path;
  }

  urlOf(key: string): string {
    return this.pathOf(key);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.pathOf(key));
      return s.isFile() ? { key, size: s.size } : undefined;
    } catch (err) {
      if (notFound(err as NodeJS.ErrnoException)) return undefined;
      throw err;
    }
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    // Walk only the folders the prefix can reach, depth first in sorted order, so keys come out ascending.
    const slash = prefix.lastIndexOf('/');
    const startDir = slash >= 0 ? prefix.slice(0, slash) : '';
    yield* this.walk(startDir, prefix);
  }

  private async *walk(dirKey: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries;
    try {
      entries = await readdir(this.pathOf(dirKey), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const named = entries.map((e) => ({ e, key: dirKey ? `${dirKey}/${e.name}` : e.name }));
    // Sort as the keys sort: a folder `a` holds `a/...`, which sorts after `a-b` but before `a0`.
    named.sort((x, y) => compareKeys(x.e.isDirectory() ? `${x.key}/` : x.key, y.e.isDirectory() ? `${y.key}/` : y.key));
    for (const { e, key } of named) {
      if (e.isDirectory()) {
        if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(key, prefix);
      } else if (e.isFile() && key.startsWith(prefix) && !isTemporary(e.name)) {
        const s = await stat(this.pathOf(key));
        yield { key, size: s.size };
      }
    }
  }

  async *read(key: string, range?: ByteRange): AsyncIterable<Uint8Array> {
    const path = this.pathOf(key);
    if (range?.end !== undefined) {
      for (let at = range.start; at < range.end; ) {
        const buffer = Buffer.allocUnsafe(Math.min(RANGE_CHUNK, range.end - at));
        const bytesRead = await openFiles.read(path, buffer, at).catch((err: NodeJS.ErrnoException) => {
          throw notFound(err) ? new M4Error('E_NOT_FOUND', 'storage', `no such file: ${path}`, { key }) : err;
        });
        if (bytesRead > 0) yield buffer.subarray(0, bytesRead);
        if (bytesRead < buffer.length) return;
        at += bytesRead;
      }
      return;
    }
    // To the end of the file: a small one (an index, a manifest) with one read of its size, a larger one streamed in
    // chunks of READ_CHUNK, read ahead. A stream of a small file allocates READ_CHUNK per read all the same: for the
    // mixer's index per shard (about 36 kB) that cost a collection of the old generation per pass.
    const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
      throw notFound(err) ? new M4Error('E_NOT_FOUND', 'storage', `no such file: ${path}`, { key }) : err;
    });
    const start = range?.start ?? 0;
    const info = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw err;
    });
    if (info.isDirectory()) {
      await handle.close();
      throw new M4Error('E_NOT_FOUND', 'storage', `${path} is a folder, not a file`, { key });
    }
    // (A file of size 0 may still hold bytes: procfs; it is streamed.)
    if (info.isFile() && info.size > 0 && info.size - start <= READ_CHUNK) {
      try {
        const buffer = Buffer.allocUnsafe(Math.max(0, info.size - start));
        const { bytesRead } = buffer.length > 0 ? await handle.read(buffer, 0, buffer.length, start) : { bytesRead: 0 };
        if (bytesRead > 0) yield buffer.subarray(0, bytesRead);
      } finally {
        await handle.close();
      }
      return;
    }
    // The stream closes the file, however it ends.
    for await (const chunk of handle.createReadStream({ start, highWaterMark: READ_CHUNK })) yield chunk as Buffer;
  }

  async write(key: string, body: Body): Promise<ObjectInfo> {
    const path = this.pathOf(key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = temporaryName(path);
    let size = 0;
    try {
      const file = await open(tmp, 'w');
      try {
        // Chunks are gathered into writes of about 1 MiB (a shard arrives as one chunk per sample), and one write is in
        // flight while the next chunks are produced (and hashed, for shards): the two overlap.
        let writing: Promise<unknown> = Promise.resolve();
        let batch: Uint8Array[] = [];
        let batched = 0;
        const flush = async () => {
          const buffers = batch;
          batch = [];
          batched = 0;
          await writing;
          writing = file.writev(buffers);
        };
        for await (const chunk of body instanceof Uint8Array ? [body] : body) {
          batch.push(chunk);
          batched += chunk.byteLength;
          size += chunk.byteLength;
          if (batched >= WRITE_BATCH) await flush();
        }
        if (batch.length > 0) await flush();
        await writing;
        // Durable before visible: after a power cut a renamed file must not turn out empty.
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, path);
      openFiles.forget(path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return { key, size };
  }

  async delete(key: string): Promise<void> {
    openFiles.forget(this.pathOf(key));
    await rm(this.pathOf(key), { force: true });
  }

  async discardIncomplete(prefix: string): Promise<void> {
    // A prefix ending in '/' names a folder: its own temporary files, which start with any name.
    const path = prefix.endsWith('/') ? `${this.pathOf(prefix)}${sep}` : this.pathOf(prefix);
    const folder = prefix.endsWith('/') ? path : dirname(path);
    const start = prefix.endsWith('/') ? '' : basename(path);
    const entries = await readdir(folder).catch(() => [] as string[]);
    for (const entry of entries) {
      if (entry.startsWith(start) && isTemporary(entry)) await rm(resolve(folder, entry), { recursive: true, force: true });
    }
  }
}

/**
 * An errno that means no file is there: none by that name, a path through a file (`/etc/passwd/manifest.json`), or a
 * folder (when read).
 */
function notFound(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ENOENT' || err.code === 'ENOTDIR' || err.code === 'EISDIR';
}

/**
 * Writes one local file atomically, through LocalStorage's temporary name, fsync and rename: a reader (or a run killed
 * midway) sees the old file or the new one, never a part. Every file m4data writes outside a dataset goes through here.
 */
export async function writeFileAtomically(path: string, body: Body): Promise<void> {
  await new LocalStorage(dirname(resolve(path))).write(basename(path), body);
}

/** Removes what a killed `writeFileAtomically(path)` left (its temporary files); the file itself is kept. */
export async function discardIncompleteFile(path: string): Promise<void> {
  await new LocalStorage(dirname(resolve(path))).discardIncomplete(basename(path));
}

/** A temporary name LocalStorage writes under (`NAME.tmp-` and 12 hex digits). */
export function isTemporary(name: string): boolean {
  return TEMPORARY.test(name);
}

const TEMPORARY = /\.tmp-[0-9a-f]{12}$/;

/** A fresh temporary name for `name`, of the form `isTemporary` recognises. */
export function temporaryName(name: string): string {
  return `${name}.tmp-${randomBytes(6).toString('hex')}`;
}

/**
 * Files kept open for short ranged reads (the mixer reads runs of samples by their index): opening and closing a file
 * per read cost the mixed stream about a tenth of its CPU. A file is closed once unused for IDLE_MS, or when more than
 * OPEN_FILES are open; a file this process writes or deletes is forgotten at once.
 */
class OpenFiles {
  private readonly files = new Map<string, { handle: Promise<FileHandle>; users: number; idle?: NodeJS.Timeout }>();

  async read(path: string, buffer: Buffer, position: number): Promise<number> {
    let file = this.files.get(path);
    if (file)
      this.files.delete(path); // refreshed below: the map's first entry is the least recently used
    else file = { handle: open(path, 'r'), users: 0 };
    this.files.set(path, file);
    clearTimeout(file.idle);
    file.users++;
    try {
      const handle = await file.handle;
      let filled = 0;
      while (filled < buffer.length) {
        const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return filled;
    } catch (err) {
      this.forget(path);
      throw err;
    } finally {
      if (--file.users === 0) {
        if (this.files.get(path) === file) file.idle = setTimeout(() => this.forget(path), IDLE_MS).unref();
        else close(file.handle); // forgotten while this read was in flight
      }
      this.evict();
    }
  }

  /** Drops the file; it is closed once nobody reads it (at once if idle). */
  forget(path: string): void {
    const file = this.files.get(path);
    if (!file) return;
    this.files.delete(path);
    clearTimeout(file.idle);
    if (file.users === 0) close(file.handle);
  }

  private evict(): void {
    for (const [path, file] of this.files) {
      if (this.files.size <= OPEN_FILES) return;
      if (file.users === 0) this.forget(path);
    }
  }
}

function close(handle: Promise<FileHandle>): void {
  void handle.then((h) => h.close()).catch(() => {});
}

const IDLE_MS = 1000;
const OPEN_FILES = 64;
const openFiles = new OpenFiles();
