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
function filterReason(width: number, height: number, options: ImageOptions): string | undefined {
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

/** Adds the resize of `options.resizeMode`; sharp shrinks JPEG and WebP while decoding when the factor allows. */
function resize(image: Sharp, width: number, height: number, options: ImageOptions): void {
  const { imageSize, upscale } = options;
  switch (options.resizeMode) {
    case 'no':
      return;
    case 'keep_ratio': {
      const scale = capScale(imageSize / Math.min(width, height), upscale);
      // The shorter side gets exactly the target; only the longer one is rounded.
      const short = Math.round(Math.min(width, height) * scale);
      const long = Math.max(1, Math.round(Math.max(width, height) * scale));
      image.resize(width <= height ? short : long, width <= height ? long : short, { fit: 'fill' });
      return;
    }
    case 'center_crop': {
      const side = Math.round(Math.min(width, height) * capScale(imageSize / Math.min(width, height), upscale));
      image.resize(side, side, { fit: 'cover', position: 'centre' });
      return;
    }
    case 'border': {
      // Without upscale a small image keeps its size and is only padded: the output is always imageSize square.
      const scale = capScale(imageSize / Math.max(width, height), upscale);
      const w = Math.max(1, Math.round(width * scale));
      const h = Math.max(1, Math.round(height * scale));
      const left = Math.floor((imageSize - w) / 2);
      const top = Math.floor((imageSize - h) / 2);
      image
        .resize(w, h, { fit: 'fill' })
        .extend({ left, right: imageSize - w - left, top, bottom: imageSize - h - top, background: WHITE });
      return;
    }
  }
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
