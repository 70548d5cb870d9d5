import { M4Error } from '../../../core/errors.ts';
import { numberIn, wholeIn } from '../../../core/ranges.ts';
import { IMAGE_FORMATS, type ImageFormat } from './sniff-format.ts';

export const RESIZE_MODES = ['keep_ratio', 'keep_ratio_largest', 'center_crop', 'border', 'no'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];
export type OutputFormat = 'jpg' | 'webp' | 'png';

/** How downloaded images are checked, resized and re-encoded. */
export interface ImageOptions {
  /**
   * Default 'keep_ratio': shortest side to `imageSize`. 'keep_ratio_largest': longest side to `imageSize`.
   * 'center_crop': shortest side to `imageSize`, then the centre square (without upscaling, a smaller image gives the
   * square of its own shorter side). 'border': fit inside an `imageSize` square, padded with white. 'no': size kept.
   */
  resizeMode: ResizeMode;
  /**
   * Target side in pixels. Default 256: the model consumes 224x224 crops, and 256 (img2dataset's default size)
   * leaves headroom for random crops and scale augmentation at training time.
   */
  imageSize: number;
  /** Output encoding. Default 'jpg'. */
  format: OutputFormat;
  /** Encoder quality 1..100 for jpg and webp (png is lossless and ignores it). Default 95. */
  quality: number;
  /** Enlarge images smaller than the target. Default false: never upscale unless asked. */
  upscale: boolean;
  /** Images whose shorter side (after EXIF orientation) is below this are filtered. Default 150. */
  minSide: number;
  /** Images whose longer side (after EXIF orientation) is above this are filtered. Default 20000. */
  maxSide: number;
  /**
   * Longer side / shorter side above this is filtered. Default undefined (no limit): it is a per-source
   * choice (OBELICS builders used 2, LAION 3).
   */
  maxAspectRatio: number | undefined;
  /**
   * Decompression-bomb limit: images whose header claims more pixels are refused before any pixel is
   * allocated. Default 8192*8192*2 (about 134 MP): the largest photo the side and LAION aspect filters pass
   * (20000x6667) fits, and a full RGBA decode of it stays under 512 MiB per image in flight.
   */
  maxPixels: number;
  /** Formats (as sniffed from the bytes) that are decoded; others are filtered. Default jpeg, png, webp, gif. */
  allowedFormats: readonly ImageFormat[];
}

const OUTPUT_FORMATS: readonly OutputFormat[] = ['jpg', 'webp', 'png'];

const DEFAULTS: ImageOptions = {
  resizeMode: 'keep_ratio',
  imageSize: 256,
  format: 'jpg',
  quality: 95,
  upscale: false,
  minSide: 150,
  maxSide: 20000,
  maxAspectRatio: undefined,
  maxPixels: 8192 * 8192 * 2,
  allowedFormats: ['jpeg', 'png', 'webp', 'gif'],
};

/** Fills defaults (for absent and undefined fields) and validates; throws M4Error E_USAGE naming the bad field. */
export function resolveImageOptions(partial: Partial<ImageOptions> = {}): ImageOptions {
  for (const key of Object.keys(partial)) {
    if (!Object.hasOwn(DEFAULTS, key)) usage(`unknown image option '${key}'`);
  }
  const defined = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const options: ImageOptions = { ...DEFAULTS, ...defined };

  oneOf('resizeMode', options.resizeMode, RESIZE_MODES);
  oneOf('format', options.format, OUTPUT_FORMATS);
  wholeIn('image', 'imageSize', options.imageSize, 1, 16384);
  wholeIn('image', 'quality', options.quality, 1, 100);
  if (typeof options.upscale !== 'boolean') usage(`upscale must be true or false, got ${String(options.upscale)}`);
  wholeIn('image', 'minSide', options.minSide, 0);
  wholeIn('image', 'maxSide', options.maxSide, Math.max(1, options.minSide));
  wholeIn('image', 'maxPixels', options.maxPixels, 1);
  if (options.maxAspectRatio !== undefined) numberIn('image', 'maxAspectRatio', options.maxAspectRatio, 1);
  if (!Array.isArray(options.allowedFormats) || options.allowedFormats.length === 0) usage('allowedFormats must list at least one format');
  for (const f of options.allowedFormats) oneOf('allowedFormats', f, IMAGE_FORMATS);
  return options;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): void {
  if (!allowed.includes(value as T)) usage(`${name} must be one of ${allowed.join(', ')}, got ${String(value)}`);
}

function usage(message: string): never {
  throw new M4Error('E_USAGE', 'image', message);
}
