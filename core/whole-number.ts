/** Checking counts read from files m4data wrote (manifests, indexes, states): one rule, one message. */

/** `value` as a whole number of at least `min`, or `bad` called with a message naming the field and what was found. */
export function wholeNumber(value: unknown, field: string, min: number, bad: (message: string) => never): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    bad(`field ${field} must be a whole number of ${min === 0 ? '0 or more' : `at least ${min}`} (found ${JSON.stringify(value)})`);
  return value as number;
}
