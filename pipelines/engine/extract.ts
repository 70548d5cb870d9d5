import { createReadStream } from 'node:fs';
import { link, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { M4Error } from '../../core/errors.ts';
import { checkLocalOutput } from '../../shards/storage/local-output.ts';
import { LocalStorage } from '../../shards/storage/local.ts';
import { openObject } from '../../shards/storage/open.ts';
import type { ImageOptions } from './image/image-options.ts';
import { withConnection } from './metadata/duckdb.ts';
import { sqlString } from './metadata/sql-text.ts';
import { writeParquet, type ParquetColumn } from './metadata/write-parquet.ts';
import type { SourceAdapter, SourceOptions } from './source-adapter.ts';

/**
 * `m4data extract`: a source's dump as documents in the OBELICS column layout, one parquet file, without downloading
 * anything, so they can be read, counted and filtered (DuckDB, pandas) before a build downloads their images. Rows
 * stream through; documents are written as parquet parts of bounded size in a temporary folder, which one DuckDB query
 * then copies, in order, into the output, published whole (local: temporary name then rename; S3: completed upload).
 */
export interface ExtractOptions {
  adapter: SourceAdapter;
  inputs: string[];
  /** A local path or `s3://bucket/key` of the parquet file to write; never overwritten. */
  output: string;
  /** Read at most this many rows. */
  limit?: number;
  /** The source's options, defaults applied. */
  sourceOptions: SourceOptions;
  /** The build's image settings the extraction needs (the rendition each image URL names). */
  image: ImageOptions;
}

export interface ExtractSummary {
  output: string;
  rows: number;
  documents: number;
  images: number;
  /** Rows that gave no document, by status. */
  skipped: { filtered: number; malformed: number };
  topReasons: { reason: string; count: number }[];
}

/** The OBELICS layout, as HuggingFaceM4/OBELICS publishes it. */
export const DOCUMENT_SCHEMA: ParquetColumn[] = [
  { name: 'texts', type: 'VARCHAR[]' },
  { name: 'images', type: 'VARCHAR[]' },
  { name: 'metadata', type: 'VARCHAR' },
  { name: 'general_metadata', type: 'VARCHAR' },
];

/** Documents per part, or fewer once a part holds this many bytes of text: what sits in memory at once. */
const PART_DOCUMENTS = 2000;
const PART_BYTES = 32 << 20;

export async function runExtract(options: ExtractOptions, progress?: (rows: number, documents: number) => void): Promise<ExtractSummary> {
  const { adapter } = options;
  if (!adapter.extract || !adapter.readRows) throw new M4Error('E_USAGE', 'extract', `m4data extract does not apply to --source ${adapter.name}`);
  const { storage, key } = openObject(options.output);
  const local = storage instanceof LocalStorage;
  if (local) await checkLocalOutput(dirname(resolve(options.output)));
  if (await storage.stat(key)) {
    throw new M4Error('E_USAGE', 'extract', `--output ${options.output} exists; extract never overwrites a file (remove it, or choose another name)`);
  }
  const request = { options: options.sourceOptions, columns: adapter.columns, limit: options.limit, image: options.image };
  const context = await adapter.prepare?.(options.inputs, request);
  const rows = adapter.readRows(options.inputs, { ...request, context });
  if (!rows)
    throw new M4Error('E_USAGE', 'extract', `${options.inputs.join(', ')}: not a ${adapter.name} dump; extract reads a dump (documents need no extracting)`);

  // Parts live beside a local output (same file system: the final rename cannot cross one), else in the temp folder.
  const work = await mkdtemp(join(local ? dirname(resolve(options.output)) : tmpdir(), '.m4data-extract-'));
  const summary: ExtractSummary = { output: storage.urlOf(key), rows: 0, documents: 0, images: 0, skipped: { filtered: 0, malformed: 0 }, topReasons: [] };
  const reasons = new Map<string, number>();
  try {
    const parts: string[] = [];
    let part: Record<string, unknown>[] = [];
    let partBytes = 0;
    const writePart = async () => {
      const path = join(work, `part-${String(parts.length).padStart(6, '0')}.parquet`);
      await writeFile(path, await writeParquet(part, DOCUMENT_SCHEMA));
      parts.push(path);
      part = [];
      partBytes = 0;
    };
    for await (const batch of rows) {
      for (const row of batch.rows) {
        summary.rows++;
        const extracted = adapter.extract(row, options.sourceOptions, context);
        if (extracted.kind === 'none') {
          summary.skipped[extracted.status]++;
          reasons.set(extracted.error, (reasons.get(extracted.error) ?? 0) + 1);
          continue;
        }
        summary.documents++;
        summary.images += extracted.images.filter((i) => i !== null).length;
        const metadata = JSON.stringify(extracted.metadata);
        part.push({ texts: extracted.texts, images: extracted.images, metadata, general_metadata: JSON.stringify(extracted.general_metadata) });
        partBytes += metadata.length + extracted.texts.reduce((n, t) => n + (t?.length ?? 0), 0);
        if (part.length >= PART_DOCUMENTS || partBytes >= PART_BYTES) await writePart();
      }
      progress?.(summary.rows, summary.documents);
    }
    if (summary.rows === 0) throw new M4Error('E_INPUT', 'extract', `no record could be read from ${options.inputs.join(', ')}`, { inputs: options.inputs });
    if (part.length > 0 || parts.length === 0) await writePart();
    const merged = join(work, local ? `${basename(options.output)}.tmp` : 'documents.parquet');
    await withConnection((connection) =>
      connection.run(`COPY (SELECT * FROM read_parquet([${parts.map(sqlString).join(', ')}])) TO ${sqlString(merged)} (FORMAT parquet, COMPRESSION zstd)`),
    );
    if (local) {
      const handle = await open(merged, 'r');
      await handle.sync();
      await handle.close();
      // link, not rename: it fails rather than replace a file that appeared at the output meanwhile.
      await link(merged, resolve(options.output)).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') throw new M4Error('E_USAGE', 'extract', `--output ${options.output} appeared while extracting; it was left as it is`);
        throw err;
      });
    } else {
      await storage.write(key, createReadStream(merged));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  summary.topReasons = [...reasons.entries()]
    .map(([reason, count]) => ({ reason, count }))
    .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1))
    .slice(0, 10);
  return summary;
}
