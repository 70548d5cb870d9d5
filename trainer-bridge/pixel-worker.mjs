// Decodes and transforms images into CLIP-normalised CHW float32 pixels, off the main thread. Plain JavaScript so a
// worker needs no TypeScript loader, whichever way the parent was started. Protocol: see pixel-pool.ts.
import { parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';

/** @type {{ size: number, mean: number[], std: number[], transform: 'resize' | 'center-crop', maxPixels: number }} */
const { size, mean, std, transform, maxPixels } = workerData;
const WHITE = { r: 255, g: 255, b: 255 };
/** Per channel, the normalised value of each 8-bit level, (level / 255 - mean) / std, computed once in double precision. */
const LEVELS = [0, 1, 2].map((c) => Float32Array.from({ length: 256 }, (_, level) => (level / 255 - mean[c]) / std[c]));

/** @param {Uint8Array} bytes */
async function toPixels(bytes) {
  // autoOrient: EXIF orientation, for shards built elsewhere (as an input option it costs far less than .rotate()).
  const { data, info } = await sharp(bytes, { failOn: 'error', limitInputPixels: maxPixels, pages: 1, autoOrient: true })
    .flatten({ background: WHITE }) // transparency onto white, before resampling, as IDEFICS's convert_to_rgb
    .toColourspace('srgb')
    .resize(size, size, transform === 'center-crop' ? { kernel: 'cubic', fit: 'cover', position: 'centre' } : { kernel: 'cubic', fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== size || info.height !== size)
    throw new Error(`unexpected decoded shape ${info.width}x${info.height}x${info.channels}`);
  const plane = size * size;
  const pixels = new Float32Array(3 * plane);
  for (let p = 0, i = 0; p < plane; p++, i += 3) {
    pixels[p] = LEVELS[0][data[i]];
    pixels[plane + p] = LEVELS[1][data[i + 1]];
    pixels[2 * plane + p] = LEVELS[2][data[i + 2]];
  }
  return pixels;
}

parentPort.on('message', async (/** @type {{ id: number, bytes: Uint8Array }} */ task) => {
  try {
    const pixels = await toPixels(task.bytes);
    parentPort.postMessage({ id: task.id, pixels }, [pixels.buffer]);
  } catch (err) {
    parentPort.postMessage({ id: task.id, error: err instanceof Error ? err.message : String(err) });
  }
});
