/**
 * Randomness as a pure function of a seed and a position: every mixing decision is `unitFloat(seed, ...coordinates)`,
 * so any point of a stream can be recomputed without replaying what came before it.
 */

/** A 32-bit hash of whole numbers (murmur3's finaliser over each word, chained). */
export function hashInts(...words: number[]): number {
  let h = 0x9e3779b9;
  for (const word of words) {
    // Split so numbers up to 2^53 all count, not just their low 32 bits.
    h = mix(h ^ (word >>> 0));
    h = mix(h ^ Math.floor(word / 0x1_0000_0000));
  }
  return h >>> 0;
}

function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  x ^= x >>> 16;
  return Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) ^ (x >>> 12);
}

/** A float in [0, 1) determined by its coordinates. */
export function unitFloat(...words: number[]): number {
  return hashInts(...words) / 0x1_0000_0000;
}

/** A sequential generator (sfc32) seeded from coordinates, for loops that draw many numbers in order. */
export function generator(...words: number[]): () => number {
  let a = hashInts(...words, 1);
  let b = hashInts(...words, 2);
  let c = hashInts(...words, 3);
  let d = 1;
  return () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 0x1_0000_0000;
  };
}

/** A seeded permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, ...words: number[]): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const next = generator(...words);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** A stable number for a name (a source), so seeds differ by source without depending on the plan's order. */
export function nameId(name: string): number {
  return hashInts(...Buffer.from(name, 'utf8'));
}

/**
 * A seeded bijection of 0..n-1 evaluated one index at a time, in O(1) memory: a balanced Feistel network over the
 * smallest even number of bits holding n, with cycle walking back into range. `at(i)` is the permuted index of i,
 * `indexOf` its inverse, so a source of 10^8 runs needs no table of 10^8 entries.
 */
export class IndexPermutation {
  private readonly half: number;
  private readonly mask: number;
  private readonly keys: number[];

  constructor(
    readonly n: number,
    ...words: number[]
  ) {
    let bits = 2;
    while (2 ** bits < n) bits += 2;
    this.half = bits / 2;
    this.mask = 2 ** this.half - 1;
    this.keys = Array.from({ length: ROUNDS }, (_, round) => hashInts(...words, round));
  }

  at(i: number): number {
    let x = i;
    do x = this.encrypt(x);
    while (x >= this.n);
    return x;
  }

  indexOf(j: number): number {
    let x = j;
    do x = this.decrypt(x);
    while (x >= this.n);
    return x;
  }

  private encrypt(x: number): number {
    let left = Math.floor(x / 2 ** this.half);
    let right = x & this.mask;
    for (const key of this.keys) [left, right] = [right, (left ^ hashInts(key, right)) & this.mask];
    return left * 2 ** this.half + right;
  }

  private decrypt(x: number): number {
    let left = Math.floor(x / 2 ** this.half);
    let right = x & this.mask;
    for (let r = this.keys.length - 1; r >= 0; r--) [left, right] = [(right ^ hashInts(this.keys[r]!, left)) & this.mask, left];
    return left * 2 ** this.half + right;
  }
}

/** Four rounds: enough for a shuffle whose every output bit depends on every input bit. */
const ROUNDS = 4;
