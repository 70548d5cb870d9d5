import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import { isM4Error } from '../core/errors.ts';
import { resolveImageOptions, type ImageOptions } from '../pipelines/engine/image/image-options.ts';
import { processImage, roundHalfEven, type ImageResult } from '../pipelines/engine/image/process-image.ts';
import { sniffFormat } from '../pipelines/engine/image/sniff-format.ts';
import * as images from '../sandbox/images.ts';

const defaults = resolveImageOptions();

function options(partial: Partial<ImageOptions> = {}): ImageOptions {
  return resolveImageOptions(partial);
}

type Success = Extract<ImageResult, { status: 'success' }>;
type Failure = Exclude<ImageResult, Success>;

function expectSuccess(result: ImageResult): Success {
  assert.equal(result.status, 'success', result.status === 'success' ? '' : result.error);
  return result as Success;
}

function expectFailure(result: ImageResult, status: Failure['status']): string {
  assert.equal(result.status, status);
  return (result as Failure).error;
}

/** RGB of the pixel at (x, y). */
async function pixel(bytes: Buffer, x: number, y: number): Promise<[number, number, number]> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * info.channels;
  return [data[at]!, data[at + 1]!, data[at + 2]!];
}

function assertNear(actual: readonly number[], expected: readonly number[], tolerance: number): void {
  assert.ok(
    actual.every((v, i) => Math.abs(v - expected[i]!) <= tolerance),
    `${JSON.stringify(actual)} not within ${tolerance} of ${JSON.stringify(expected)}`,
  );
}

describe('resolveImageOptions', () => {
  it('applies the documented defaults', () => {
    assert.equal(defaults.resizeMode, 'keep_ratio');
    assert.equal(defaults.imageSize, 256);
    assert.equal(defaults.format, 'jpg');
    assert.equal(defaults.quality, 95);
    assert.equal(defaults.upscale, false);
    assert.equal(defaults.minSide, 150);
    assert.equal(defaults.maxSide, 20000);
    assert.equal(defaults.maxAspectRatio, undefined);
    assert.deepEqual(defaults.allowedFormats, ['jpeg', 'png', 'webp', 'gif']);
  });

  it('refuses bad values and unknown keys with E_USAGE', () => {
    const bad: unknown[] = [
      { quality: 0 },
      { quality: 101 },
      { imageSize: 12.5 },
      { resizeMode: 'stretch' },
      { format: 'gif' },
      { maxAspectRatio: 0.5 },
      { minSide: 500, maxSide: 400 },
      { allowedFormats: [] },
      { allowedFormats: ['jpeg', 'exe'] },
      { upscale: 'yes' },
      { imagesize: 256 },
      { toString: 'x' },
    ];
    for (const partial of bad) {
      assert.throws(
        () => resolveImageOptions(partial as Partial<ImageOptions>),
        (err) => isM4Error(err, 'E_USAGE'),
        JSON.stringify(partial),
      );
    }
  });
});

describe('sniffFormat', () => {
  it('names formats from their magic numbers', async () => {
    const base = sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } });
    assert.equal(sniffFormat(await images.jpeg(16, 16)), 'jpeg');
    assert.equal(sniffFormat(await images.png(16, 16)), 'png');
    assert.equal(sniffFormat(await images.animatedGif(2, 8, 8)), 'gif');
    assert.equal(sniffFormat(await base.clone().webp().toBuffer()), 'webp');
    assert.equal(sniffFormat(await base.clone().avif().toBuffer()), 'avif');
    assert.equal(sniffFormat(await base.clone().tiff().toBuffer()), 'tiff');
    const bmp = Buffer.alloc(54);
    bmp.write('BM', 0, 'latin1');
    bmp.writeUInt32LE(40, 14);
    assert.equal(sniffFormat(bmp), 'bmp');
    const svg = '\uFEFF<?xml version="1.0"?>\n<!-- logo -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n<svg width="10" height="10"/>';
    assert.equal(sniffFormat(Buffer.from(svg)), 'svg');
  });

  it('names nothing for what is not an image, whatever its name', () => {
    assert.equal(sniffFormat(images.notAnImage()), undefined);
    assert.equal(sniffFormat(new Uint8Array(0)), undefined);
    assert.equal(sniffFormat(Buffer.from('BM is not a bitmap')), undefined);
    assert.equal(sniffFormat(Buffer.from('{"svg": "<svg>"}')), undefined);
  });
});

describe('test image helpers', () => {
  it('draws the same pixels for the same seed and others for another', () => {
    const a = images.photoLike(64, 48, 3);
    assert.ok(a.data.equals(images.photoLike(64, 48, 3).data));
    assert.ok(!a.data.equals(images.photoLike(64, 48, 4).data));
  });

  it('builds a bomb PNG whose header claims the asked size', async () => {
    const meta = await sharp(images.pixelBombPng(30_000, 20_000), { limitInputPixels: false }).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 30_000, 20_000]);
  });
});

describe('processImage', () => {
  it('converts CMYK to 3-channel 8-bit sRGB with the colours kept', async () => {
    const result = expectSuccess(await processImage(await images.cmykJpeg(400, 300), options({ resizeMode: 'no', format: 'png' })));
    const meta = await sharp(result.bytes).metadata();
    assert.equal(meta.space, 'srgb');
    assert.equal(meta.channels, 3);
    assert.equal(meta.depth, 'uchar');
    // Inverted (Adobe) CMYK read wrongly would come out as a negative; the print profile clips saturated blues.
    const rgb = expectSuccess(await processImage(await images.png(400, 300), options({ resizeMode: 'no', format: 'png' })));
    const [a, b] = await Promise.all([sharp(result.bytes).stats(), sharp(rgb.bytes).stats()]);
    assertNear(
      a.channels.map((c) => c.mean),
      b.channels.map((c) => c.mean),
      40,
    );
  });

  it('flattens PNG alpha onto white', async () => {
    const bytes = await images.png(400, 300, { alpha: true });
    const result = expectSuccess(await processImage(bytes, defaults));
    assert.deepEqual([result.width, result.height], [341, 256]);
    assertNear(await pixel(result.bytes, 5, 128), [255, 255, 255], 3);
    // The opaque half keeps its pixels.
    const opaque = expectSuccess(await processImage(await images.png(400, 300), defaults));
    assertNear(await pixel(result.bytes, 300, 128), await pixel(opaque.bytes, 300, 128), 6);
  });

  it('applies EXIF orientation before sizing, filtering and resizing, and strips metadata', async () => {
    const result = expectSuccess(await processImage(await images.exifRotatedJpeg(400, 300, 6), defaults));
    assert.deepEqual([result.originalWidth, result.originalHeight], [300, 400]);
    assert.deepEqual([result.width, result.height], [256, 341]);
    const meta = await sharp(result.bytes).metadata();
    assert.equal(meta.orientation, undefined);
    assert.equal(meta.exif, undefined);
    assert.equal(meta.icc, undefined);
  });

  it('reduces a 16-bit PNG to 8 bits', async () => {
    const bytes = await images.png16(400, 300);
    assert.equal((await sharp(bytes).metadata()).depth, 'ushort');
    const result = expectSuccess(await processImage(bytes, options({ format: 'png' })));
    const meta = await sharp(result.bytes).metadata();
    assert.equal(meta.depth, 'uchar');
    assert.equal(meta.bitsPerSample, 8);
  });

  it('keeps the first frame of an animated GIF', async () => {
    const result = expectSuccess(await processImage(await images.animatedGif(3), defaults));
    assert.equal(result.originalFormat, 'gif');
    assert.deepEqual([result.width, result.height], [200, 160]);
    assertNear(await pixel(result.bytes, 100, 80), [255, 0, 0], 8);
  });

  it('fails a truncated JPEG rather than keeping a grey remainder', async () => {
    const result = await processImage(await images.truncatedJpeg(), defaults);
    assert.match(expectFailure(result, 'failed_to_decode'), /corrupt or truncated/);
  });

  it('fails HTML served as a .jpg, naming what it got', async () => {
    const result = await processImage(images.notAnImage(), defaults);
    assert.match(expectFailure(result, 'failed_to_decode'), /not an image: .*<!DOCTYPE html>/);
    assert.equal(expectFailure(await processImage(new Uint8Array(0), defaults), 'failed_to_decode'), 'not an image: empty');
  });

  it('refuses a pixel bomb from its header', async () => {
    // 10^10 pixels would need 30 GB to decode: an answer at all means only the header was read.
    const bytes = images.pixelBombPng(100_000, 100_000);
    assert.ok(bytes.length < 2048);
    const result = await processImage(bytes, defaults);
    assert.match(expectFailure(result, 'failed_to_decode'), /pixel.*100000x100000/);
  });

  it('filters on size and aspect ratio with the reason', async () => {
    const small = await processImage(await images.jpeg(120, 90), defaults);
    assert.deepEqual(small, { status: 'filtered', error: 'too small: 120x90 < 150', originalWidth: 120, originalHeight: 90, originalFormat: 'jpeg' });
    const wide = await processImage(await images.jpeg(1020, 300), options({ maxAspectRatio: 3 }));
    assert.equal(expectFailure(wide, 'filtered'), 'aspect ratio 3.4 > 3');
    const large = await processImage(await images.jpeg(1200, 400), options({ maxSide: 1000 }));
    assert.equal(expectFailure(large, 'filtered'), 'too large: 1200x400 > 1000');
  });

  it('filters formats that are not allowed, decided by the bytes', async () => {
    const tiff = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#808080' } })
      .tiff()
      .toBuffer();
    assert.deepEqual(await processImage(tiff, defaults), { status: 'filtered', error: 'format tiff not allowed', originalFormat: 'tiff' });
    expectSuccess(await processImage(tiff, options({ allowedFormats: ['tiff'] })));
  });

  it('sizes each resize mode', async () => {
    const landscape = await images.jpeg(800, 600);
    const portrait = await images.jpeg(600, 800);
    const cases: [ImageOptions['resizeMode'], Buffer, [number, number]][] = [
      ['keep_ratio', landscape, [341, 256]],
      ['keep_ratio', portrait, [256, 341]],
      ['keep_ratio_largest', landscape, [256, 192]],
      ['keep_ratio_largest', portrait, [192, 256]],
      ['center_crop', landscape, [256, 256]],
      ['center_crop', portrait, [256, 256]],
      ['border', landscape, [256, 256]],
      ['border', portrait, [256, 256]],
      ['no', landscape, [800, 600]],
    ];
    for (const [resizeMode, bytes, size] of cases) {
      const result = expectSuccess(await processImage(bytes, options({ resizeMode })));
      assert.deepEqual([result.width, result.height], size, resizeMode);
    }
    // border pads the 256x192 picture with white bands above and below.
    const border = expectSuccess(await processImage(landscape, options({ resizeMode: 'border' })));
    assertNear(await pixel(border.bytes, 128, 5), [255, 255, 255], 3);
    assertNear(await pixel(border.bytes, 128, 250), [255, 255, 255], 3);
  });

  it('never upscales unless asked', async () => {
    const bytes = await images.jpeg(200, 160);
    const sizes = async (partial: Partial<ImageOptions>): Promise<[number, number]> => {
      const result = expectSuccess(await processImage(bytes, options(partial)));
      return [result.width, result.height];
    };
    assert.deepEqual(await sizes({}), [200, 160]);
    assert.deepEqual(await sizes({ resizeMode: 'center_crop' }), [160, 160]);
    assert.deepEqual(await sizes({ resizeMode: 'keep_ratio_largest' }), [200, 160]);
    assert.deepEqual(await sizes({ upscale: true, resizeMode: 'keep_ratio_largest' }), [256, 205]);
    assert.deepEqual(await sizes({ resizeMode: 'border' }), [256, 256]);
    assert.deepEqual(await sizes({ upscale: true }), [320, 256]);
    assert.deepEqual(await sizes({ upscale: true, resizeMode: 'center_crop' }), [256, 256]);
  });

  it('rounds sizes half to even, as img2dataset (Python round) does: 512x769 at 256 is 256x384', async () => {
    const result = expectSuccess(await processImage(await images.jpeg(512, 769), defaults));
    assert.deepEqual([result.width, result.height], [256, 384]);
    const wide = expectSuccess(await processImage(await images.jpeg(771, 512), defaults));
    assert.deepEqual([wide.width, wide.height], [386, 256]); // 385.5 rounds up to the even 386
    assert.deepEqual([0.5, 1.5, 2.5, 384.5, 385.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, 384, 386, 2, 3]);
  });

  it('encodes the asked format, as sniffed back', async () => {
    const bytes = await images.jpeg(400, 300);
    for (const [format, sniffed] of [
      ['jpg', 'jpeg'],
      ['webp', 'webp'],
      ['png', 'png'],
    ] as const) {
      const result = expectSuccess(await processImage(bytes, options({ format })));
      assert.equal(result.format, format);
      assert.equal(sniffFormat(result.bytes), sniffed);
    }
  });

  it('gives the same bytes for the same input and options', async () => {
    const inputs = [await images.jpeg(900, 700, { seed: 7 }), await images.png(500, 400, { alpha: true })];
    for (const bytes of inputs) {
      for (const format of ['jpg', 'webp', 'png'] as const) {
        const [a, b] = [await processImage(bytes, options({ format })), await processImage(bytes, options({ format }))];
        assert.ok(expectSuccess(a).bytes.equals(expectSuccess(b).bytes), format);
      }
    }
  });

  it('accepts a Uint8Array view into a larger buffer', async () => {
    const bytes = await images.jpeg(400, 300);
    const padded = new Uint8Array(bytes.length + 20);
    padded.set(bytes, 10);
    expectSuccess(await processImage(padded.subarray(10, 10 + bytes.length), defaults));
  });

  it('keep_ratio: shorter side to min(imageSize, original) and aspect kept, for any size', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 150, max: 1200 }), fc.integer({ min: 150, max: 1200 }), async (w, h) => {
        const bytes = await sharp({ create: { width: w, height: h, channels: 3, background: '#4080c0' } })
          .jpeg()
          .toBuffer();
        const result = expectSuccess(await processImage(bytes, defaults));
        const short = Math.min(result.width, result.height);
        assert.ok(Math.abs(short - Math.min(256, w, h)) <= 1, `${w}x${h} -> ${result.width}x${result.height}`);
        const scale = short / Math.min(w, h);
        assert.ok(Math.abs(Math.max(result.width, result.height) - Math.max(w, h) * scale) <= 1, `${w}x${h} -> ${result.width}x${result.height}`);
        // Orientation is never reversed; a near-square image (936x937) may round to a square.
        assert.ok(w >= h ? result.width >= result.height : result.width <= result.height, `${w}x${h} -> ${result.width}x${result.height}`);
      }),
      { numRuns: 40, examples: [[936, 937]] },
    );
  });
});
