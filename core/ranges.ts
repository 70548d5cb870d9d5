import { M4Error } from './errors.ts';

/**
 * The range checks of every options resolver (build, fetch, image, bridge): one wording for every refusal,
 * `NAME must be a whole number from MIN to MAX, got VALUE`, raised as E_USAGE in the resolver's subsystem.
 */

/** `value` as a whole number within [min, max]; refused otherwise. */
export function wholeIn(subsystem: string, name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new M4Error('E_USAGE', subsystem, `${name} must be a whole number ${range(min, max, Number.MAX_SAFE_INTEGER)}, got ${String(value)}`, {
      option: name,
    });
  }
  return value;
}

/** `value` as a finite number within [min, max]; refused otherwise. */
export function numberIn(subsystem: string, name: string, value: unknown, min: number, max = Infinity): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new M4Error('E_USAGE', subsystem, `${name} must be a number ${range(min, max, Infinity)}, got ${String(value)}`, { option: name });
  }
  return value;
}

function range(min: number, max: number, unbounded: number): string {
  return max === unbounded ? `of at least ${min}` : `from ${min} to ${max}`;
}
