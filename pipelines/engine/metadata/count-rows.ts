import { fileURLToPath } from 'node:url';
import { resolveInputs } from './read-parquet.ts';
import { sqlString, withConnection } from './duckdb.ts';

/**
 * Rows in the inputs (capped by `limit`), from the parquet footers alone, for progress and ETA. Remote inputs would have
 * to be copied first, so for them the count is left unknown (undefined) rather than paid for twice.
 */
export async function countRows(inputs: readonly string[], limit?: number): Promise<number | undefined> {
  const files = await resolveInputs(inputs);
  if (files.some((f) => /^[a-z][a-z0-9+.-]*:\/\//i.test(f) && !f.startsWith('file://'))) return undefined;
  const list = files.map((f) => sqlString(f.startsWith('file://') ? fileURLToPath(f) : f)).join(', ');
  const total = await withConnection(async (connection) => {
    const reader = await connection.runAndReadAll(`SELECT sum(num_rows)::BIGINT FROM parquet_file_metadata([${list}])`);
    return Number(reader.getRows()[0]?.[0] ?? 0);
  });
  return limit === undefined ? total : Math.min(total, limit);
}
