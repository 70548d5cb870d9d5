import type { ImageOptions } from '../engine/image/image-options.ts';

/**
 * Which rendition of a Wikimedia file to download. Parsoid's `<img>` shows a thumbnail sized for the page (220 px wide
 * by default in 2023), usually far below the build's `--image-size` once its shorter side is taken, while the
 * original can be a 50-megapixel photo. Wikimedia renders any file at a requested width through its thumbnail URL
 * scheme (`.../thumb/<h>/<hh>/<File>/<W>px-<File>`), and serves a fixed set of standard widths from cache; other
 * widths are scaled on demand and, since 2025, being phased out (mediawiki.org "Common thumbnail sizes",
 * $wgThumbnailSteps; phabricator T414805). So the rendition asked for is the smallest standard width whose shorter
 * side (or longer side, for the modes that fit the longer side) reaches `--image-size`, and the original itself when
 * that width is not below the original's: Wikimedia never scales a bitmap up, and the original is then small anyway.
 */
export const STANDARD_WIDTHS = [20, 40, 60, 120, 250, 330, 500, 960, 1280, 1920, 3840] as const;

export const UPLOAD_HOST = 'upload.wikimedia.org';

/** The side of the image the build's resize mode brings to `--image-size`. */
export interface RenditionTarget {
  /** Pixels that side must reach. */
  size: number;
  /** true: the longer side (keep_ratio_largest, border); false: the shorter side (keep_ratio, center_crop, no). */
  longer: boolean;
}

export function renditionTarget(image: Pick<ImageOptions, 'imageSize' | 'resizeMode'>): RenditionTarget {
  return { size: image.imageSize, longer: image.resizeMode === 'keep_ratio_largest' || image.resizeMode === 'border' };
}

/** Formats m4data decodes from the original file; anything else (svg, tif, pdf, djvu, xcf...) is fetched as a rendition. */
const WEB_FORMATS = new Set(['jpg', 'jpeg', 'png', 'gif', 'webp']);

export interface FileUrls {
  /** The URL to download: a standard-width thumbnail, or the original. */
  rendition: string;
  /** The width asked for, or the original's when `rendition` is the original. */
  width: number;
  /** The original file. */
  original: string;
}

/**
 * The rendition and the original of the file behind an upload.wikimedia.org image URL (a thumbnail or an original,
 * https or protocol-relative), given the original's size; undefined when the URL is not one of Wikimedia's uploads.
 */
export function fileUrls(src: string, fileWidth: number, fileHeight: number, target: RenditionTarget): FileUrls | undefined {
  const url = parseUpload(src);
  if (!url) return undefined;
  const segments = url.pathname.split('/');
  const thumb = segments.indexOf('thumb');
  let originalPath: string[];
  let thumbName: { prefix: string; suffix: string } | undefined;
  if (thumb >= 0 && segments.length >= thumb + 5) {
    originalPath = [...segments.slice(0, thumb), ...segments.slice(thumb + 1, -1)];
    // `220px-Name.jpg`, `lossy-page1-220px-Name.tif.jpg`, `220px-Name.svg.png`: only the width changes.
    const name = segments[segments.length - 1]!;
    const match = /^(.*?)\d+px-(.+)$/.exec(name);
    if (match) thumbName = { prefix: match[1]!, suffix: match[2]! };
  } else {
    originalPath = segments;
  }
  const origin = `https://${UPLOAD_HOST}`;
  const original = `${origin}${originalPath.join('/')}`;
  const fileName = originalPath[originalPath.length - 1] ?? '';
  const extension = /\.([a-z0-9]+)$/i.exec(fileName)?.[1]?.toLowerCase() ?? '';
  const scalable = extension === 'svg';

  const wanted = neededWidth(fileWidth, fileHeight, target);
  const step: number = STANDARD_WIDTHS.find((w) => w >= wanted) ?? STANDARD_WIDTHS[STANDARD_WIDTHS.length - 1]!;
  const thumbnail = (width: number): string | undefined => {
    if (originalPath.length < 4) return undefined;
    const name = thumbName ? `${thumbName.prefix}${width}px-${thumbName.suffix}` : `${width}px-${fileName}${scalable ? '.png' : ''}`;
    if (!thumbName && !scalable && !WEB_FORMATS.has(extension)) return undefined;
    // The thumbnail folder sits before the two hash folders: /wikipedia/commons/thumb/7/71/Name.jpg/250px-Name.jpg
    const at = originalPath.length - 3;
    return `${origin}${[...originalPath.slice(0, at), 'thumb', ...originalPath.slice(at), name].join('/')}`;
  };
  if (scalable || step < fileWidth) {
    const rendition = thumbnail(step);
    if (rendition) return { rendition, width: step, original };
  }
  if (WEB_FORMATS.has(extension)) return { rendition: original, width: fileWidth, original };
  // A tif or pdf smaller than the step: its own width, rendered as the thumbnail format Wikimedia gives it.
  const rendition = thumbnail(fileWidth);
  return { rendition: rendition ?? url.href, width: fileWidth, original };
}

/** The width whose rendition brings the target side to `target.size` (ratios kept, rounded up). */
export function neededWidth(fileWidth: number, fileHeight: number, target: RenditionTarget): number {
  const landscape = fileWidth >= fileHeight;
  const widthIsTarget = target.longer ? landscape : !landscape;
  return widthIsTarget ? target.size : Math.ceil((target.size * fileWidth) / fileHeight);
}

/** An https URL on upload.wikimedia.org, from an absolute or protocol-relative one; undefined for any other. */
export function parseUpload(src: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(src.startsWith('//') ? `https:${src}` : src);
  } catch {
    return undefined;
  }
  if (url.hostname !== UPLOAD_HOST || (url.protocol !== 'https:' && url.protocol !== 'http:')) return undefined;
  url.protocol = 'https:';
  return url;
}

/**
 * Where the bytes of an upload.wikimedia.org URL are fetched: the URL itself, or the same path under a mirror
 * (`--wikimedia-base`, e.g. a caching proxy, or a loopback server in tests).
 */
export function mirrored(url: string, base: string): string {
  const prefix = `https://${UPLOAD_HOST}`;
  if (base === prefix || !url.startsWith(`${prefix}/`)) return url;
  return `${base}${url.slice(prefix.length)}`;
}

/** Checks a `--wikimedia-base` value: an http(s) URL without query or fragment; returned without a trailing slash. */
export function checkWikimediaBase(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash || url.username || url.password) return undefined;
  return value.replace(/\/+$/, '');
}
