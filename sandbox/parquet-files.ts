import { DuckDBInstance } from '@duckdb/node-api';

/** A value for a parquet fixture: null, text, number (bigint for int64s past 2^53), bytes, a list, or a struct (a plain object). */
export type FixtureValue = null | string | number | bigint | Buffer | FixtureValue[] | { [key: string]: FixtureValue };

function literal(value: FixtureValue): string {
  if (value === null) return 'NULL';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : `${value}::DOUBLE`;
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return `'${value.replaceAll("'", "''")}'`;
  if (Buffer.isBuffer(value)) return `from_hex('${value.toString('hex')}')`;
  if (Array.isArray(value)) return `[${value.map(literal).join(', ')}]`;
  return `{${Object.entries(value)
    .map(([k, v]) => `'${k}': ${literal(v)}`)
    .join(', ')}}`;
}

/**
 * Writes a real parquet file (zstd) with DuckDB: `columns` maps each name to its SQL type, `rows` gives values in that
 * order. Test fixtures only: values are inlined as SQL literals.
 */
export async function writeParquetFixture(path: string, columns: Record<string, string>, rows: FixtureValue[][]): Promise<void> {
  const db = await DuckDBInstance.create(':memory:');
  const connection = await db.connect();
  try {
    const names = Object.keys(columns);
    await connection.run(`CREATE TABLE t (${names.map((n) => `"${n}" ${columns[n]}`).join(', ')})`);
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      await connection.run(`INSERT INTO t VALUES ${chunk.map((r) => `(${r.map(literal).join(', ')})`).join(', ')}`);
    }
    await connection.run(`COPY t TO '${path.replaceAll("'", "''")}' (FORMAT parquet, COMPRESSION zstd)`);
  } finally {
    connection.disconnectSync();
    db.closeSync();
  }
}

/** Reads every row of parquet files back as plain objects, in file order. */
export async function readParquetRows(paths: string[]): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:');
  const connection = await db.connect();
  try {
    const reader = await connection.runAndReadAll(`SELECT * FROM read_parquet([${paths.map((p) => `'${p}'`).join(', ')}])`);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  } finally {
    connection.disconnectSync();
    db.closeSync();
  }
}
