import { DuckDBTypeId, type DuckDBType } from '@duckdb/node-api';
import { M4Error } from '../../../core/errors.ts';

/**
 * What a pipeline expects of one source column, and the JS value it gets for it:
 * - `string`: VARCHAR → string
 * - `number`: DOUBLE, FLOAT, DECIMAL or any integer type → number
 * - `integer`: any integer type → number, or bigint beyond ±2^53 (LAION's int64 `hash` mostly is)
 * - `bytes`: BLOB → Buffer
 * - `string_list`: VARCHAR[] → (string | null)[], null items kept
 * - `image_struct`: Hugging Face's Image feature, STRUCT(bytes BLOB, path VARCHAR) → { bytes: Buffer | null; path: string | null }
 * - `json_string`: VARCHAR or JSON holding a JSON document → the string, unparsed
 * - `image_list`: VARCHAR[] of URLs, or a list of Image structs (WIT ships bytes) → (string | { bytes, path } | null)[]
 * A NULL value is null whatever the type.
 */
export type ColumnType = 'string' | 'number' | 'integer' | 'bytes' | 'string_list' | 'image_struct' | 'json_string' | 'image_list';

export interface ColumnSpec {
  name: string;
  type: ColumnType;
  /** A missing required column stops the read; a missing optional one reads as null. */
  required: boolean;
}

/** A column of a parquet file as DuckDB reads it. */
export interface SourceColumn {
  name: string;
  type: DuckDBType;
}

const INTEGER_TYPES = new Set<DuckDBTypeId>([
  DuckDBTypeId.TINYINT,
  DuckDBTypeId.SMALLINT,
  DuckDBTypeId.INTEGER,
  DuckDBTypeId.BIGINT,
  DuckDBTypeId.HUGEINT,
  DuckDBTypeId.UTINYINT,
  DuckDBTypeId.USMALLINT,
  DuckDBTypeId.UINTEGER,
  DuckDBTypeId.UBIGINT,
  DuckDBTypeId.UHUGEINT,
]);

/** The DuckDB types each column type accepts, as a message shows them. */
export const EXPECTED: Record<ColumnType, string> = {
  string: 'VARCHAR',
  number: 'DOUBLE, FLOAT, DECIMAL or an integer type',
  integer: 'an integer type (TINYINT … UHUGEINT)',
  bytes: 'BLOB',
  string_list: 'VARCHAR[]',
  image_struct: 'STRUCT(bytes BLOB, path VARCHAR)',
  json_string: 'VARCHAR or JSON',
  image_list: 'VARCHAR[] or STRUCT(bytes BLOB, path VARCHAR)[]',
};

/** Whether a DuckDB type can be read as a column type. */
export function accepts(columnType: ColumnType, type: DuckDBType): boolean {
  switch (columnType) {
    case 'string':
    case 'json_string': // JSON is VARCHAR with an alias, so the type id alone decides
      return type.typeId === DuckDBTypeId.VARCHAR;
    case 'number':
      return (
        type.typeId === DuckDBTypeId.DOUBLE || type.typeId === DuckDBTypeId.FLOAT || type.typeId === DuckDBTypeId.DECIMAL || INTEGER_TYPES.has(type.typeId)
      );
    case 'integer':
      return INTEGER_TYPES.has(type.typeId);
    case 'bytes':
      return type.typeId === DuckDBTypeId.BLOB;
    case 'string_list':
      return type.typeId === DuckDBTypeId.LIST && type.valueType.typeId === DuckDBTypeId.VARCHAR;
    case 'image_struct':
      return (
        type.typeId === DuckDBTypeId.STRUCT &&
        hasEntry(type.entryNames, type.entryTypes, 'bytes', DuckDBTypeId.BLOB) &&
        hasEntry(type.entryNames, type.entryTypes, 'path', DuckDBTypeId.VARCHAR)
      );
    case 'image_list':
      return type.typeId === DuckDBTypeId.LIST && (accepts('string', type.valueType) || accepts('image_struct', type.valueType));
  }
}

function hasEntry(names: readonly string[], types: readonly DuckDBType[], name: string, typeId: DuckDBTypeId): boolean {
  const index = names.indexOf(name);
  return index >= 0 && types[index]?.typeId === typeId;
}

/**
 * Checks a file's columns against the specs and returns the specs it holds (in spec order).
 * Throws M4Error E_INPUT naming the file, the column, what was expected and what was found.
 */
export function checkColumns(file: string, source: readonly SourceColumn[], specs: readonly ColumnSpec[]): ColumnSpec[] {
  const present: ColumnSpec[] = [];
  for (const spec of specs) {
    const column = source.find((c) => c.name === spec.name);
    if (!column) {
      if (!spec.required) continue;
      throw new M4Error('E_INPUT', 'metadata', `${file}: required column "${spec.name}" is missing (expected ${spec.type}: ${EXPECTED[spec.type]})`, {
        file,
        column: spec.name,
        expected: EXPECTED[spec.type],
        found: 'missing',
      });
    }
    if (!accepts(spec.type, column.type)) {
      const found = column.type.toString();
      throw new M4Error('E_INPUT', 'metadata', `${file}: column "${spec.name}" is ${found}, expected ${spec.type}: ${EXPECTED[spec.type]}`, {
        file,
        column: spec.name,
        expected: EXPECTED[spec.type],
        found,
      });
    }
    present.push(spec);
  }
  return present;
}
