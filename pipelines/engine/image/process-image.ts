import sharp, { type Sharp, type SharpOptions } from 'sharp';
import type { ImageOptions, OutputFormat } from './image-options.ts';
import { sniffFormat } from './sniff-format.ts';

export type ImageResult =
  | {
      status: 'success';
      bytes: Buffer;
      format: OutputFormat;
      width: number;
      height: number;
      /** Size after EXIF orientation, before resizing. */
      originalWidth: number;
      originalHeight: number;
      /** As sniffed from the bytes: jpeg, png, webp, gif... */
      originalFormat: string;
    }
  | {
      status: 'failed_to_decode' | 'filtered';
      error: string;
      originalWidth?: number;
      originalHeight?: number;
      originalFormat?: string;
    };

// Padding and alpha background. White, like img2dataset's resizer (its alpha matte and its border pad both use
// 255): transparent logos and diagrams are drawn for white pages, and black behind dark line art hides it.
const WHITE = { r: 255, g: 255, b: 255 };

/**
 * Checks, resizes and re-encodes one downloaded image. Never throws for bad input: every problem with the
 * bytes ends as `failed_to_decode` (not an image, corrupt, truncated, decompression bomb) or `filtered`
 * (format not allowed, size or aspect ratio out of bounds). The same bytes and options give the same bytes.
 */
export async function processImage(bytes: Uint8Array, options: ImageOptions): Promise<ImageResult> {
  const originalFormat = sniffFormat(bytes);
  if (originalFormat === undefined) return { status: 'failed_to_decode', error: `not an image: ${describeStart(bytes)}` };
  if (!options.allowedFormats.includes(originalFormat)) {
    return { status: 'filtered', error: `format ${originalFormat} not allowed`, originalFormat };
  }

  const input: SharpOptions = {
    // 'error' fails truncated and corrupt data (with 'none' libjpeg fills a truncated JPEG with grey and
    // only warns) but, unlike 'warning', keeps the many web JPEGs that carry harmless libjpeg warnings.
    failOn: 'error',
    limitInputPixels: options.maxPixels,
    autoOrient: true,
    pages: 1, // first frame of animations
  };
  let width: number;
  let height: number;
  try {
    // Header only, no pixel decoded. Without the limit here so that a bomb gets a message naming its size.
    const meta = await sharp(bytes, { ...input, limitInputPixels: false }).metadata();
    if (meta.width * meta.height > options.maxPixels) {
      const error = `too many pixels: ${meta.width}x${meta.height} > ${options.maxPixels} (decompression bomb?)`;
      return { status: 'failed_to_decode', error, originalFormat };
    }
    ({ width, height } = meta.autoOrient);
  } catch {
    return { status: 'failed_to_decode', error: `cannot read ${originalFormat} header: corrupt image data`, originalFormat };
  }
  const original = { originalWidth: width, originalHeight: height, originalFormat };

  const reason = filterReason(width, height, options);
  if (reason !== undefined) return { status: 'filtered', error: reason, ...original };

  try {
    const image = sharp(bytes, input).flatten({ background: WHITE }).toColourspace('srgb');
    resize(image, width, height, options);
    const { data, info } = await encode(image, options).toBuffer({ resolveWithObject: true });
    return { status: 'success', bytes: data, format: options.format, width: info.width, height: info.height, ...original };
  } catch {
    // libvips keeps one error buffer for all threads: with several images in flight its text for the same bytes
    // varies ("premature end of JPEG image" or "Unknown error"), and outcome records must not.
    return { status: 'failed_to_decode', error: `cannot decode ${originalFormat}: corrupt or truncated image data`, ...original };
  }
}

/** Why an image of this oriented size is dropped, or undefined when it is kept. */
export function filterReason(width: number, height: number, options: ImageOptions): string | undefined {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  if (short < options.minSide) return `too small: ${width}x${height} < ${options.minSide}`;
  if (long > options.maxSide) return `too large: ${width}x${height} > ${options.maxSide}`;
  const ratio = long / short;
  if (options.maxAspectRatio !== undefined && ratio > options.maxAspectRatio) {
    return `aspect ratio ${Number(ratio.toFixed(2))} > ${options.maxAspectRatio}`;
  }
  return undefined;
}

/**
 * Adds the resize of `options.resizeMode`; sharp shrinks JPEG and WebP while decoding when the factor allows. Sizes
 * are rounded half to even, as img2dataset's resizer (albumentations, Python's `round`) rounds them: 512x769 to a
 * shortest side of 256 is 256x384 there and here.
 */
function resize(image: Sharp, width: number, height: number, options: ImageOptions): void {
  const { imageSize, upscale } = options;
  const scaled = (scale: number) => [Math.max(1, roundHalfEven(width * scale)), Math.max(1, roundHalfEven(height * scale))] as const;
  switch (options.resizeMode) {
    case 'no':
      return;
    case 'keep_ratio':
    case 'keep_ratio_largest': {
      // keep_ratio: the shortest side to the size; keep_ratio_largest (img2dataset's mode of that name): the longest.
      const side = options.resizeMode === 'keep_ratio' ? Math.min(width, height) : Math.max(width, height);
      const [w, h] = scaled(capScale(imageSize / side, upscale));
      image.resize(w, h, { fit: 'fill' });
      return;
    }
    case 'center_crop': {
      // Without upscaling a small image is not enlarged: it is cropped to the square of its own shorter side.
      const side = roundHalfEven(Math.min(width, height) * capScale(imageSize / Math.min(width, height), upscale));
      image.resize(side, side, { fit: 'cover', position: 'centre' });
      return;
    }
    case 'border': {
      // Without upscale a small image keeps its size and is only padded: the output is always imageSize square.
      const [w, h] = scaled(capScale(imageSize / Math.max(width, height), upscale));
      const left = Math.floor((imageSize - w) / 2);
      const top = Math.floor((imageSize - h) / 2);
      image.resize(w, h, { fit: 'fill' }).extend({ left, right: imageSize - w - left, top, bottom: imageSize - h - top, background: WHITE });
      return;
    }
  }
}

/** Python's `round`: to the nearest integer, a tie to the even one (384.5 -> 384, 385.5 -> 386). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function capScale(scale: number, upscale: boolean): number {
  return upscale ? scale : Math.min(scale, 1);
}

/** Sets the output encoder; sharp strips all metadata unless asked to keep it. */
function encode(image: Sharp, options: ImageOptions): Sharp {
  switch (options.format) {
    case 'jpg':
      return image.jpeg({ quality: options.quality });
    case 'webp':
      return image.webp({ quality: options.quality });
    case 'png':
      return image.png();
  }
}

/** The first bytes as text, for messages about downloads that are not images (often an HTML error page). */
function describeStart(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'empty';
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 32));
  const printable = head.toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return `${bytes.length} bytes starting ${JSON.stringify(printable)}`;
}
