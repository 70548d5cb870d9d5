import { readFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import sharp from 'sharp';
import { generateImageSet } from './bench/image.bench.ts';
import { processImage } from './pipelines/engine/image/process-image.ts';
import { resolveImageOptions } from './pipelines/engine/image/image-options.ts';
const set = await generateImageSet({ count: 400 });
const bufs = await Promise.all(set.files.map((f) => readFile(f)));
const opts = resolveImageOptions();
async function bench(name: string, fn: (b: Buffer) => Promise<unknown>, filter = (i: number) => true) {
  const sel = bufs.filter((_, i) => filter(i));
  const limit = pLimit(4);
  const t = performance.now();
  await Promise.all(sel.map((b) => limit(() => fn(b))));
  const s = (performance.now() - t) / 1000;
  console.log(name.padEnd(30), (sel.length / s).toFixed(1), 'img/s');
}
const isPng = (i: number) => set.files[i]!.endsWith('.png');
const variants: Record<string, (b: Buffer) => Promise<unknown>> = {
  process: (b) => processImage(b, opts),
  metadataOnly: (b) => sharp(b, { failOn: 'error', autoOrient: true, pages: 1 }).metadata(),
  minimal: async (b) => { const m = await sharp(b).metadata(); const s = 256 / Math.min(m.width, m.height); return sharp(b).resize(Math.round(m.width * s), Math.round(m.height * s), { fit: 'fill' }).jpeg({ quality: 95 }).toBuffer(); },
  minimalWidthOnly: async (b) => { const m = await sharp(b).metadata(); return sharp(b).resize(m.width < m.height ? { width: 256 } : { height: 256 }).jpeg({ quality: 95 }).toBuffer(); },
  linear: async (b) => { const m = await sharp(b).metadata(); const s = 256 / Math.min(m.width, m.height); return sharp(b).resize(Math.round(m.width * s), Math.round(m.height * s), { fit: 'fill', kernel: 'linear' }).jpeg({ quality: 95 }).toBuffer(); },
  mitchell: async (b) => { const m = await sharp(b).metadata(); const s = 256 / Math.min(m.width, m.height); return sharp(b).resize(Math.round(m.width * s), Math.round(m.height * s), { fit: 'fill', kernel: 'mitchell' }).jpeg({ quality: 95 }).toBuffer(); },
  noresizeDecodeOnly: (b) => sharp(b).raw().toBuffer(),
};
await bench("warmup", variants.process!); await bench("warmup", variants.process!);
for (let r = 0; r < 3; r++) for (const [n, f] of Object.entries(variants)) { await bench(n + ' all', f); }
sharp.cache(false);
await bench('process nocache', variants.process!);
