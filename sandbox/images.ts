/**
 * Real image bytes for tests and benchmarks, all deterministic: the same arguments give the same bytes
 * (for a given sharp/libvips build). Generators that need an encoder are async; hand-built ones are not.
 */
import { crc32, deflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';

export interface RawImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 3 | 4;
}

export interface PhotoOptions {
  /** PRNG seed; default 1. */
  seed?: number;
  /** Per-pixel noise amplitude in 0..255 levels; default 10 (photo-like JPEG sizes). 0 gives graphic-like content. */
  noise?: number;
}

/** Seeded RGB content with gradients, waves, a few flat "objects" and noise: compressible but not trivial. */
export function photoLike(width: number, height: number, seed = 1, noise = 10): RawImage {
  const random = seededRandom(seed);
  const data = Buffer.alloc(width * height * 3);
  // Separable waves: one table per axis and channel keeps the per-pixel cost to a few additions.
  const cols = [0, 1, 2].map(() => waves(width, random));
  const rows = [0, 1, 2].map(() => waves(height, random));
  const [c0, c1, c2] = cols as [Float32Array, Float32Array, Float32Array];
  const [base0, base1, base2] = [0, 1, 2].map(() => 60 + random() * 120) as [number, number, number];
  for (let y = 0; y < height; y++) {
    const r0 = base0 + rows[0]![y]!;
    const r1 = base1 + rows[1]![y]!;
    const r2 = base2 + rows[2]![y]!;
    let state = (Math.imul(seed, 0x9e3779b1) ^ Math.imul(y + 1, 0x85ebca6b)) | 1;
    for (let x = 0, at = y * width * 3; x < width; x++, at += 3) {
      // xorshift32: cheap per-pixel noise
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      const n = ((state & 0xff) / 127.5 - 1) * noise;
      data[at] = clamp(r0 + c0[x]! + n);
      data[at + 1] = clamp(r1 + c1[x]! + n);
      data[at + 2] = clamp(r2 + c2[x]! + n);
    }
  }
  const objects = 3 + Math.floor(random() * 5);
  for (let i = 0; i < objects; i++) {
    const w = Math.max(1, Math.floor(width * (0.1 + random() * 0.4)));
    const h = Math.max(1, Math.floor(height * (0.1 + random() * 0.4)));
    const x0 = Math.floor(random() * (width - w));
    const y0 = Math.floor(random() * (height - h));
    const shift = [0, 1, 2].map(() => (random() - 0.5) * 160);
    for (let y = y0; y < y0 + h; y++) {
      for (let x = x0; x < x0 + w; x++) {
        const at = (y * width + x) * 3;
        for (let c = 0; c < 3; c++) data[at + c] = clamp(data[at + c]! + shift[c]!);
      }
    }
  }
  return { data, width, height, channels: 3 };
}

/** A baseline JPEG of photoLike content. */
export async function jpeg(width: number, height: number, opts: PhotoOptions & { quality?: number } = {}): Promise<Buffer> {
  return fromRaw(photo(width, height, opts))
    .jpeg({ quality: opts.quality ?? 90 })
    .toBuffer();
}

/** An 8-bit PNG; with `alpha`, the left half is fully transparent and the right half opaque. */
export async function png(width: number, height: number, opts: PhotoOptions & { alpha?: boolean } = {}): Promise<Buffer> {
  const raw = photo(width, height, opts);
  if (!opts.alpha) return fromRaw(raw).png().toBuffer();
  const rgba = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    raw.data.copy(rgba, i * 4, i * 3, i * 3 + 3);
    rgba[i * 4 + 3] = i % width < width / 2 ? 0 : 255;
  }
  return fromRaw({ data: rgba, width, height, channels: 4 }).png().toBuffer();
}

/** A 4-channel CMYK JPEG without an ICC profile, as print workflows publish them. */
export async function cmykJpeg(width: number, height: number, seed = 1): Promise<Buffer> {
  return fromRaw(photoLike(width, height, seed))
    .toColourspace('cmyk')
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** A 16-bit-per-channel RGB PNG. */
export async function png16(width: number, height: number, seed = 1): Promise<Buffer> {
  return fromRaw(photoLike(width, height, seed))
    .toColourspace('rgb16')
    .png()
    .toBuffer();
}

/** A JPEG stored `width`x`height` whose EXIF Orientation tag (1..8) says how to display it (5..8 swap the sides). */
export async function exifRotatedJpeg(width: number, height: number, orientation: number, seed = 1): Promise<Buffer> {
  return fromRaw(photoLike(width, height, seed))
    .withMetadata({ orientation })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Solid colours of the frames of `animatedGif`, in order, repeating. */
export const GIF_FRAME_COLOURS = [
  { r: 255, g: 0, b: 0 },
  { r: 0, g: 255, b: 0 },
  { r: 0, g: 0, b: 255 },
] as const;

/** An animated GIF of `frames` solid frames: frame 0 red, then green, blue, red... */
export async function animatedGif(frames: number, width = 200, height = 160): Promise<Buffer> {
  const pngs = await Promise.all(
    Array.from({ length: frames }, (_, i) =>
      sharp({ create: { width, height, channels: 3, background: GIF_FRAME_COLOURS[i % GIF_FRAME_COLOURS.length]! } })
        .png()
        .toBuffer(),
    ),
  );
  return sharp(pngs, { join: { animated: true } })
    .gif()
    .toBuffer();
}

/** The first `keep` share of a JPEG: a download cut off mid-scan. */
export async function truncatedJpeg(width = 400, height = 300, keep = 0.6): Promise<Buffer> {
  const whole = await jpeg(width, height);
  return whole.subarray(0, Math.floor(whole.length * keep));
}

/** What servers send instead of an image, often under a `.jpg` URL and an image Content-Type. */
export function notAnImage(): Buffer {
  return Buffer.from('<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n');
}

/**
 * A valid-looking RGB PNG whose IHDR claims `width`x`height` (default 100000x100000, 30 GB decoded) but
 * whose IDAT holds a single deflated row: a few hundred bytes on disk.
 */
export function pixelBombPng(width = 100_000, height = 100_000): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type RGB, deflate, no filter, no interlace
  const row = deflateSync(Buffer.alloc(1 + width * 3));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', row),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function chunk(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body, crc32(head.subarray(4))), 0); // CRC over type and data, not length
  return Buffer.concat([head, body, crc]);
}

function photo(width: number, height: number, opts: PhotoOptions): RawImage {
  return photoLike(width, height, opts.seed ?? 1, opts.noise ?? 10);
}

function fromRaw(raw: RawImage): Sharp {
  return sharp(raw.data, { raw: { width: raw.width, height: raw.height, channels: raw.channels } });
}

/** A sum of three sine waves of random wavelength, phase and amplitude along one axis. */
function waves(length: number, random: () => number): Float32Array {
  const out = new Float32Array(length);
  for (let k = 0; k < 3; k++) {
    const period = length * (0.05 + random());
    const phase = random() * 2 * Math.PI;
    const amplitude = 10 + random() * 30;
    for (let i = 0; i < length; i++) out[i]! += amplitude * Math.sin((2 * Math.PI * i) / period + phase);
  }
  return out;
}

function clamp(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
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
