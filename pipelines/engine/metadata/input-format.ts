import { M4Error } from '../../../core/errors.ts';
import { sqlString } from './sql-text.ts';

/** The metadata formats img2dataset takes, all read through DuckDB. */
export const INPUT_FORMATS = ['parquet', 'csv', 'tsv', 'json', 'jsonl', 'txt'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

const BY_EXTENSION: Record<string, InputFormat> = {
  parquet: 'parquet',
  csv: 'csv',
  tsv: 'tsv',
  json: 'json',
  jsonl: 'jsonl',
  ndjson: 'jsonl',
  txt: 'txt',
};

/** The format of one input: `given` (--input-format) when set, else its extension (`.csv.gz` is csv), else parquet. */
export function inputFormatOf(location: string, given?: InputFormat): InputFormat {
  if (given !== undefined) {
    if (!INPUT_FORMATS.includes(given)) throw new M4Error('E_USAGE', 'metadata', `--input-format must be one of ${INPUT_FORMATS.join(', ')}, got ${given}`);
    return given;
  }
  const name = location
    .replace(/[?#].*$/, '')
    .toLowerCase()
    .replace(/\.(gz|zst)$/, '');
  const extension = /\.([a-z0-9]+)$/.exec(name)?.[1];
  return (extension && BY_EXTENSION[extension]) || 'parquet';
}

/**
 * The DuckDB table function reading one local file. `textColumns` are read as VARCHAR whatever csv sniffing guesses
 * (a caption column of digits is still text). A txt file is a list of URLs, one per line, as img2dataset reads it:
 * column `URL`, with `TEXT` null and blank lines skipped.
 */
export function scanSql(path: string, format: InputFormat, textColumns: readonly string[] = []): string {
  const file = sqlString(path);
  const types = textColumns.length > 0 ? `, types = {${textColumns.map((c) => `${sqlString(c)}: 'VARCHAR'`).join(', ')}}` : '';
  switch (format) {
    case 'parquet':
      return `read_parquet(${file})`;
    case 'csv':
      return `read_csv(${file}, header = true${types})`;
    case 'tsv':
      return `read_csv(${file}, header = true, sep = '\t'${types})`;
    case 'json':
      return `read_json(${file}, format = 'auto')`;
    case 'jsonl':
      return `read_json(${file}, format = 'newline_delimited')`;
    case 'txt':
      // No separator, quote or escape: a line is a URL whatever it holds (chr(1) never occurs in a URL).
      return (
        `(SELECT trim(URL) AS URL, CAST(NULL AS VARCHAR) AS TEXT FROM read_csv(${file}, header = false, columns = {'URL': 'VARCHAR'}, sep = chr(1), ` +
        `quote = '', escape = '') WHERE trim(URL) <> '')`
      );
  }
}
