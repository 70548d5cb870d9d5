/**
 * A JSON-string column (PMD's `meta`, OBELICS's `metadata` and `general_metadata`) as the sample keeps it: parsed when
 * it parses, else the string it is, never dropped; null when the column holds no string.
 */
export function parseJsonField(value: unknown): unknown {
  if (typeof value !== 'string') return null;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return value;
  }
}
