import { InvalidArgumentError, Option } from 'commander';
import type { MixMode } from '../mixer/plan.ts';

/** Commander argument parser for a whole number within bounds. */
export function integerIn(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        `expected a whole number from ${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`}, got ${JSON.stringify(value)}`,
      );
    }
    return n;
  };
}

/** `114.9B`, `3.192e9`, `1.5M`, `2000` -> a whole token count of at least 1 (commander argument parser). */
export function parseCount(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kKmMbBtT]?)\s*$/.exec(text);
  if (!m) throw new InvalidArgumentError(`${JSON.stringify(text)} is not a count (examples: 2000, 1.5M, 114.9B)`);
  const scale = { '': 1, k: 1e3, m: 1e6, b: 1e9, t: 1e12 }[m[2]!.toLowerCase()]!;
  const count = Math.round(Number(m[1]) * scale);
  if (!Number.isSafeInteger(count)) throw new InvalidArgumentError(`${JSON.stringify(text)} is too large a count (at most ${Number.MAX_SAFE_INTEGER})`);
  if (count < 1) throw new InvalidArgumentError(`${JSON.stringify(text)} rounds to ${count} tokens: give at least 1`);
  return count;
}

/** `proportions`, `epochs` or `anchor:NAME`: what a mix keeps when epochs and shares disagree. */
export function parseMode(text: string): MixMode {
  if (text === 'proportions' || text === 'epochs') return { kind: text };
  const m = /^anchor:([a-z0-9_-]+)$/.exec(text);
  if (m) return { kind: 'anchor', source: m[1]! };
  throw new InvalidArgumentError(`${JSON.stringify(text)}: expected proportions, epochs or anchor:NAME`);
}

/** `--allow-private-network [cidrs]`, the same flag for every command that reaches the network. */
export function privateNetworkOption(what: string): Option {
  return new Option(
    '--allow-private-network [cidrs]',
    `allow ${what} from private, loopback and link-local addresses: all, or a comma list of CIDRs (default: none)`,
  );
}

/** The flag's value as the storage layer and the fetcher take it: true, or a list of CIDRs; false when absent. */
export function allowedPrivateNetwork(flag: boolean | string | undefined): boolean | string[] {
  if (typeof flag === 'string') return flag.split(',').map((cidr) => cidr.trim());
  return flag ?? false;
}
