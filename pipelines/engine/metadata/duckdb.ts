import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

let instance: Promise<DuckDBInstance> | undefined;

/** The process's one in-memory DuckDB, created on first use. */
function duckdb(): Promise<DuckDBInstance> {
  instance ??= DuckDBInstance.create(':memory:', {
    // One worker: the machine has two cores and image decoding needs the other.
    threads: '1',
    // Rows must come out in file order; this is the default, stated because the readers depend on it.
    preserve_insertion_order: 'true',
    // Offline machines: fail at once rather than try to download an extension (httpfs is not bundled).
    autoinstall_known_extensions: 'false',
    // Off: its cache served stale blocks for a file rewritten in place at the same size (see test/parquet.test.ts),
    // and a process may reread a file it has just rewritten (a resumed build, tests).
    enable_external_file_cache: 'false',
  });
  return instance;
}

/**
 * Runs `work` on a connection of its own, closed afterwards.
 * A connection per task, not one shared: a query on a connection silently ends any result still streaming on it.
 */
export async function withConnection<T>(work: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
  const connection = await (await duckdb()).connect();
  try {
    return await work(connection);
  } finally {
    connection.disconnectSync();
  }
}

/** A connection of its own for a long-lived reader, which must close it with `disconnectSync()`. */
export async function openConnection(): Promise<DuckDBConnection> {
  return (await duckdb()).connect();
}
