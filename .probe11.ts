import { readFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import { generateImageSet } from './bench/image.bench.ts';
import { processImage } from './pipelines/engine/image/process-image.ts';
import { resolveImageOptions } from './pipelines/engine/image/image-options.ts';
const set = await generateImageSet({ count: 2000 });
const files = set.files.slice(0, 400);
const opts = resolveImageOptions();
async function run(n: number) {
  const limit = pLimit(n); const c = process.cpuUsage(); const t = performance.now();
  await Promise.all(files.map((f) => limit(async () => processImage(await readFile(f), opts))));
  const s = (performance.now() - t) / 1000; const u = process.cpuUsage(c);
  return `${n}: ${(files.length / s).toFixed(0)}/s share ${((u.user + u.system) / 1e6 / s).toFixed(2)}`;
}
await run(4);
const out = [];
for (const n of [2, 3, 4, 6, 8]) out.push(await run(n));
console.log(process.env.UV_THREADPOOL_SIZE ?? 4, out.join(' | '), 'load', (await import('node:os')).loadavg()[0]);
