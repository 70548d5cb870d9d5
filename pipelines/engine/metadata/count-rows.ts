import { isRemote } from '../../../shards/storage/location.ts';
import { fileURLToPath } from 'node:url';
import { resolveInputs } from './read-metadata.ts';
import { withConnection } from './duckdb.ts';
import { sqlString } from './sql-text.ts';
import { inputFormatOf, type InputFormat } from './input-format.ts';

/**
 * Rows in the inputs (capped by `limit`), from the parquet footers alone, for progress and ETA. Remote inputs would have
 * to be copied first, and text formats read whole, so for them the count is left unknown (undefined) rather than paid
 * for twice.
 */
export async function countRows(inputs: readonly string[], limit?: number, format?: InputFormat): Promise<number | undefined> {
  const files = await resolveInputs(inputs);
  if (files.some(isRemote)) return undefined;
  if (files.some((f) => inputFormatOf(f, format) !== 'parquet')) return undefined;
  const list = files.map((f) => sqlString(f.startsWith('file://') ? fileURLToPath(f) : f)).join(', ');
  // A file that is not parquet is left to the reader, whose message names it.
  const total = await withConnection(async (connection) => {
    const reader = await connection.runAndReadAll(`SELECT sum(num_rows)::BIGINT FROM parquet_file_metadata([${list}])`);
    return Number(reader.getRows()[0]?.[0] ?? 0);
  }).catch(() => undefined);
  if (total === undefined) return undefined;
  return limit === undefined ? total : Math.min(total, limit);
}
