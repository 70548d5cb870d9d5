import sharp from 'sharp';
import type { Sample, SampleCounts } from '../shards/sample.ts';
import { countTokens } from '../trainer-bridge/token-layout.ts';

const WORDS = ['a', 'red', 'small', 'photo', 'of', 'the', 'dog', 'cat', 'river', 'city', 'at', 'night', 'old', 'bridge', 'over', 'green', 'field', 'with', 'two', 'people', 'walking', 'near', 'mountain', 'lake'];

/** A tiny deterministic generator (mulberry32), so the demo data is the same on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function caption(random: () => number): string {
  const n = 4 + Math.floor(random() * 10);
  return Array.from({ length: n }, () => WORDS[Math.floor(random() * WORDS.length)]).join(' ');
}

/** A JPEG of a two-colour gradient: cheap to make, and decodes like a real photo. */
export async function gradientJpeg(width: number, height: number, random: () => number): Promise<Buffer> {
  const [r1, g1, b1, r2, g2, b2] = Array.from({ length: 6 }, () => Math.floor(random() * 256));
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><defs><linearGradient id="g"><stop offset="0" stop-color="rgb(${r1},${g1},${b1})"/><stop offset="1" stop-color="rgb(${r2},${g2},${b2})"/></linearGradient></defs><rect width="100%" height="100%" fill="url(#g)"/></svg>`;
  return sharp(Buffer.from(svg)).jpeg({ quality: 90 }).toBuffer();
}

/** Image-caption samples as the pair pipelines write them: `jpg`, `txt`, `json` with the token count. */
export async function* syntheticPairs(count: number, seed: number): AsyncGenerator<{ sample: Sample; counts: SampleCounts }> {
  const random = seededRandom(seed);
  for (let i = 0; i < count; i++) {
    const text = caption(random);
    const width = 64 + Math.floor(random() * 192);
    const height = 64 + Math.floor(random() * 192);
    const key = String(i).padStart(9, '0');
    const tokens = countTokens([{ type: 'image' }, { type: 'text', text }]);
    const json = { key, caption: text, width, height, tokens };
    yield {
      sample: { key, fields: { jpg: await gradientJpeg(width, height, random), txt: Buffer.from(text), json: Buffer.from(JSON.stringify(json)) } },
      counts: { images: 1, tokens },
    };
  }
}
