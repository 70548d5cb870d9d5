import { M4Error } from './errors.ts';

/**
 * Every range check, with one wording: the options resolvers' (build, fetch, image, bridge), which refuse with E_USAGE,
 * and the checks of counts read from files m4data wrote (manifests, indexes, states), which say what is wrong through
 * the caller's own refusal (it names the file).
 */

/** `value` as a whole number within [min, max]; refused otherwise. */
export function wholeIn(subsystem: string, name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!isWholeIn(value, min, max)) {
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

/** A count read from a file: a whole number of at least `min`, or `bad` called with a message naming the field. */
export function wholeNumber(value: unknown, field: string, min: number, bad: (message: string) => never): number {
  if (!isWholeIn(value, min, Number.MAX_SAFE_INTEGER))
    bad(`field ${field} must be a whole number ${min === 0 ? 'of 0 or more' : `of at least ${min}`} (found ${JSON.stringify(value)})`);
  return value as number;
}

function isWholeIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

function range(min: number, max: number, unbounded: number): string {
  return max === unbounded ? `of at least ${min}` : `from ${min} to ${max}`;
}
