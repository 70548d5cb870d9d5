import { tmpdir } from 'node:os';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { OpenOptions } from '../../../shards/storage/open.ts';
import { accepts, checkColumns, type ColumnSpec } from './columns.ts';
import { withConnection } from './duckdb.ts';
import { sqlName, sqlString } from './sql-text.ts';
import { checkCount, describeInput, localFile, resolveInputs, type LocalFile } from './read-metadata.ts';
import { inputFormatOf, type InputFormat } from './input-format.ts';

export interface CountUrlRepeatsOptions {
  /** The images column: URLs (VARCHAR[], e.g. OBELICS `images`) or image structs, which hold no URL to count. */
  column: string;
  /** The source's whole schema, checked first, so a file is refused for the column it lacks whichever that is (default: the images column alone). */
  columns?: readonly ColumnSpec[];
  /** Report URLs found in more than this many documents. */
  threshold: number;
  /** Count only the first `limit` rows of the inputs, in readMetadata's order; default: all rows. */
  limit?: number;
  /** Folder for the temporary copies of remote files; default os.tmpdir(). */
  tempDir?: string;
  /** The inputs' format; default: each file's extension. */
  format?: InputFormat;
  /** How remote inputs are reached. */
  network?: OpenOptions;
}

/**
 * The URLs of a list column that occur in more than `threshold` distinct documents (rows), with their document
 * counts, most repeated first. Takes the same inputs as readMetadata; remote files are all copied locally first,
 * since the count is one query over every file.
 */
export async function countRepeatedUrls(inputs: string[], options: CountUrlRepeatsOptions): Promise<Map<string, number>> {
  checkCount('threshold', options.threshold, 0);
  if (options.limit !== undefined) checkCount('limit', options.limit, 0);
  const files = await resolveInputs(inputs);
  const locals: LocalFile[] = [];
  try {
    return await withConnection(async (connection) => {
      const parts: string[] = [];
      let remaining = options.limit ?? Infinity;
      const column = sqlName(options.column);
      for (const location of files) {
        if (remaining === 0) break;
        const local = await localFile(location, options.tempDir ?? tmpdir(), options.network);
        locals.push(local);
        const format = inputFormatOf(location, options.format);
        const { columns: described, scan } = await describeInput(connection, local.path, location, format);
        checkColumns(location, described, options.columns ?? [{ name: options.column, type: 'image_list', required: true }]);
        const file = sqlString(local.path);
        const rows = await rowCount(connection, file, format, scan);
        // A list of image structs (bytes in the file) names no URL: its rows count toward the limit, nothing else.
        const urlList = accepts('string_list', described.find((c) => c.name === options.column)!.type);
        if (!urlList) {
          remaining -= Math.min(rows, remaining);
          continue;
        }
        // file_row_number picks the first rows exactly, where a LIMIT inside a UNION would rely on scan order.
        // Text formats have no file_row_number; one DuckDB thread reads them in file order, so a LIMIT is exact there.
        parts.push(
          rows <= remaining
            ? `SELECT ${column} AS urls FROM ${scan}`
            : format === 'parquet'
              ? `SELECT ${column} AS urls FROM read_parquet(${file}, file_row_number = true) WHERE file_row_number < ${remaining}`
              : `SELECT * FROM (SELECT ${column} AS urls FROM ${scan} LIMIT ${remaining})`,
        );
        remaining -= Math.min(rows, remaining);
      }
      if (parts.length === 0) return new Map();
      // list_distinct drops repeats within a document and NULL items, so count(*) counts distinct documents.
      const reader = await connection.runAndReadAll(
        `SELECT url, count(*) AS docs FROM (SELECT unnest(list_distinct(urls)) AS url FROM (${parts.join(' UNION ALL ')}))
         GROUP BY url HAVING count(*) > ${options.threshold} ORDER BY docs DESC, url`,
      );
      const counts = new Map<string, number>();
      for (const [url, docs] of reader.getRowsJS()) counts.set(url as string, Number(docs));
      return counts;
    });
  } finally {
    await Promise.all(locals.map((local) => local.remove()));
  }
}

async function rowCount(connection: DuckDBConnection, file: string, format: InputFormat, scan: string): Promise<number> {
  const sql = format === 'parquet' ? `SELECT num_rows FROM parquet_file_metadata(${file})` : `SELECT count(*) FROM ${scan}`;
  const reader = await connection.runAndReadAll(sql);
  return Number(reader.getRowsJS()[0]?.[0] ?? 0);
}
