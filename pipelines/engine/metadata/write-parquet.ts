import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LIST, VARCHAR, type DuckDBAppender } from '@duckdb/node-api';
import { M4Error } from '../../../core/errors.ts';
import { withConnection } from './duckdb.ts';
import { sqlName, sqlString } from './sql-text.ts';

export type ParquetColumnType = 'VARCHAR' | 'BIGINT' | 'INTEGER' | 'DOUBLE' | 'BOOLEAN' | 'VARCHAR[]';

const VARCHAR_LIST = LIST(VARCHAR);

export interface ParquetColumn {
  name: string;
  type: ParquetColumnType;
}

/**
 * The bytes of a zstd parquet file holding `rows` in order, one column per schema entry; a null or undefined
 * field is NULL. Identical input gives identical bytes. Meant for tables that fit in memory (per-shard outcome records,
 * one part of an extraction).
 */
export async function writeParquet(rows: Record<string, unknown>[], schema: ParquetColumn[]): Promise<Buffer> {
  if (schema.length === 0) throw new M4Error('E_USAGE', 'metadata', 'writeParquet needs at least one column');
  const path = join(tmpdir(), `m4data-${randomBytes(8).toString('hex')}.parquet`);
  try {
    await withConnection(async (connection) => {
      // A temporary table belongs to this connection, so concurrent calls cannot collide.
      await connection.run(`CREATE TEMP TABLE outcome (${schema.map((c) => `${sqlName(c.name)} ${c.type}`).join(', ')})`);
      const appender = await connection.createAppender('outcome', 'main', 'temp');
      try {
        rows.forEach((row, index) => {
          for (const column of schema) append(appender, row[column.name], column, index);
          appender.endRow();
        });
        appender.flushSync();
      } finally {
        appender.closeSync();
      }
      await connection.run(`COPY outcome TO ${sqlString(path)} (FORMAT parquet, COMPRESSION zstd)`);
    });
    return await readFile(path);
  } finally {
    await rm(path, { force: true });
  }
}

function append(appender: DuckDBAppender, value: unknown, column: ParquetColumn, row: number): void {
  if (value === null || value === undefined) {
    appender.appendNull();
    return;
  }
  switch (column.type) {
    case 'VARCHAR':
      if (typeof value === 'string') {
        appender.appendVarchar(value);
        return;
      }
      break;
    case 'BIGINT':
      if (typeof value === 'bigint') {
        appender.appendBigInt(value);
        return;
      }
      if (Number.isSafeInteger(value)) {
        appender.appendBigInt(BigInt(value as number));
        return;
      }
      break;
    case 'INTEGER':
      if (Number.isInteger(value) && (value as number) >= -(2 ** 31) && (value as number) < 2 ** 31) {
        appender.appendInteger(value as number);
        return;
      }
      break;
    case 'DOUBLE':
      if (typeof value === 'number') {
        appender.appendDouble(value);
        return;
      }
      break;
    case 'BOOLEAN':
      if (typeof value === 'boolean') {
        appender.appendBoolean(value);
        return;
      }
      break;
    case 'VARCHAR[]':
      if (Array.isArray(value) && value.every((v) => v === null || typeof v === 'string')) {
        appender.appendList(value as (string | null)[], VARCHAR_LIST);
        return;
      }
      break;
  }
  throw new M4Error('E_USAGE', 'metadata', `writeParquet: row ${row}, column "${column.name}": ${String(value)} is not a ${column.type}`, {
    row,
    column: column.name,
  });
}
