import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { PixelPool } from '../trainer-bridge/pixel-pool.ts';
import type { ImageRef } from '../trainer-bridge/sample-parts.ts';
import { isM4Error } from '../core/errors.ts';

// The reference is computed here, independently of the worker: CLIP's published mean and std, typed out again.
const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];
const normalised = (level: number, channel: number) => (level / 255 - MEAN[channel]!) / STD[channel]!;
/** The worker computes in float32: 1e-6 covers its rounding on values of magnitude up to about 2.2. */
const TOLERANCE = 1e-6;
const SIZE = 224;

const ref = (bytes: Buffer, field = 'jpg'): ImageRef => ({ field, bytes, key: '000000042', shard: 'test-000000.tar' });
const at = (pixels: Float32Array, channel: number, y: number, x: number) => pixels[channel * SIZE * SIZE + y * SIZE + x]!;

function raw(width: number, height: number, channels: 1 | 3 | 4, colour: (x: number, y: number) => number[]): Promise<Buffer> {
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(colour(x, y), (y * width + x) * channels);
  return sharp(data, { raw: { width, height, channels } }).png().toBuffer();
}

function assertPlane(pixels: Float32Array, columns: number[], rgb: number[], what: string) {
  for (let c = 0; c < 3; c++) {
    for (const x of columns) {
      for (const y of [0, 57, 111, 223]) {
        const got = at(pixels, c, y, x);
        assert.ok(Math.abs(got - normalised(rgb[c]!, c)) <= TOLERANCE, `${what}: channel ${c} at (${x}, ${y}): ${got} vs ${normalised(rgb[c]!, c)}`);
      }
    }
  }
}

test('pixels: a solid colour resizes to itself (any kernel weights sum to 1), normalised per channel, CHW', async (t) => {
  const pool = new PixelPool({ workers: 2 });
  t.after(() => pool.close());
  const pixels = await pool.decode(ref(await raw(300, 200, 3, () => [200, 100, 50])));
  assert.equal(pixels.length, 3 * SIZE * SIZE);
  assertPlane(pixels, [0, 1, 100, 222, 223], [200, 100, 50], 'solid');
});

test('pixels: transparency is flattened onto white; greyscale becomes three equal channels', async (t) => {
  const pool = new PixelPool({ workers: 1 });
  t.after(() => pool.close());
  const pixels = await pool.decode(ref(await raw(250, 250, 4, () => [0, 0, 0, 0]), 'png'));
  assertPlane(pixels, [0, 112, 223], [255, 255, 255], 'transparent');
  assertPlane(await pool.decode(ref(await raw(180, 240, 1, () => [77]), 'png')), [0, 112, 223], [77, 77, 77], 'greyscale');
});

test('pixels: the whole image is squashed to 224x224 without cropping; center-crop keeps the middle', async (t) => {
  // 448x224: black quarters at both ends, white in the middle half.
  const png = await raw(448, 224, 3, (x) => (x < 112 || x >= 336 ? [0, 0, 0] : [255, 255, 255]));
  const resize = new PixelPool({ workers: 1 });
  const crop = new PixelPool({ workers: 1, transform: 'center-crop' });
  t.after(() => Promise.all([resize.close(), crop.close()]));
  // Squashed 2:1 the black quarters cover columns 0..55 and 168..223: far from the edges (more than the bicubic kernel's
  // reach, 2 input pixels each side at this scale) the values are exact.
  const squashed = await resize.decode(ref(png));
  assertPlane(squashed, [0, 20, 50], [0, 0, 0], 'left quarter');
  assertPlane(squashed, [62, 112, 160], [255, 255, 255], 'middle');
  assertPlane(squashed, [174, 200, 223], [0, 0, 0], 'right quarter');
  // Shortest side already 224: the centre crop is the white middle, unresampled.
  assertPlane(await crop.decode(ref(png)), [0, 1, 112, 222, 223], [255, 255, 255], 'center crop');
});

test('pixels: bytes that are not an image fail with the sample and field named', async (t) => {
  const pool = new PixelPool({ workers: 1 });
  t.after(() => pool.close());
  await assert.rejects(pool.decode(ref(Buffer.from('<html>not an image</html>'), '3.jpg')), (err: unknown) => {
    assert.ok(isM4Error(err, 'E_INPUT'));
    assert.match(err.message, /test-000000\.tar: sample 000000042: image 3\.jpg cannot be decoded/);
    return true;
  });
  // The pool still works after a failure.
  assert.equal((await pool.decode(ref(await raw(10, 10, 3, () => [1, 2, 3])))).length, 3 * SIZE * SIZE);
});
