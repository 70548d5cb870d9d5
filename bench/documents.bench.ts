// Interleaved documents against pairs, in one run: the same images, served by the same loopback server, built once as
// 500 documents of 1..5 images (3 on average) and once as one pair per image. Documents must not be slower per image.
import { fork } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { resolveBuildOptions } from '../pipelines/engine/build-options.ts';
import { runBuild, type BuildSummary } from '../pipelines/engine/build.ts';
import { findSource } from '../pipelines/registry.ts';
import { seededRandom } from '../sandbox/images.ts';
import { writeParquetFixture } from '../sandbox/parquet-files.ts';
import { generateImageSet } from './image.bench.ts';
import { bestOf, isQuick, ratio, report } from './harness.ts';

const root = join(process.cwd(), '.bench-tmp', 'documents');
const SERVER = fileURLToPath(new URL('./peer/image-server.ts', import.meta.url));
const documents = isQuick() ? 100 : 500;

/** Images every source's filter keeps (sides 150..10,000, aspect ratio at most 2), so both builds pack all of them. */
async function keptImages(files: string[], count: number): Promise<string[]> {
  const kept: string[] = [];
  for (const file of files) {
    const { width, height } = (await sharp(file).metadata()).autoOrient;
    if (Math.min(width, height) >= 150 && Math.max(width, height) / Math.min(width, height) <= 2) kept.push(file);
    if (kept.length === count) return kept;
  }
  throw new Error(`only ${kept.length} generated images pass the filters; ${count} needed`);
}

async function startServer(listFile: string): Promise<{ origin: string; close(): Promise<void> }> {
  const child = fork(SERVER, [listFile], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const { origin } = await new Promise<{ origin: string }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { origin: string }));
    child.once('exit', (code) => reject(new Error(`image server exited (${code}) before it was ready`)));
  });
  return {
    origin,
    async close() {
      if (child.connected) child.disconnect();
      await exited;
    },
  };
}

await rm(root, { recursive: true, force: true });
await mkdir(root, { recursive: true });
const random = seededRandom(11);
const sizes = Array.from({ length: documents }, () => 1 + Math.floor(random() * 5));
const imageCount = sizes.reduce((n, s) => n + s, 0);
const set = await generateImageSet({ count: Math.ceil(imageCount * 1.6), dir: join(root, 'images'), seed: 5 });
const images = await keptImages(set.files, imageCount);
const listFile = join(root, 'images.txt');
await writeFile(listFile, images.join('\n'));
const server = await startServer(listFile);
const url = (file: string) => new URL(`/f/${basename(file)}`, server.origin).href;

const pairsInput = join(root, 'pairs.parquet');
await writeParquetFixture(
  pairsInput,
  { URL: 'VARCHAR', TEXT: 'VARCHAR' },
  images.map((file, i) => [url(file), `image ${i} of the benchmark`]),
);
const docsInput = join(root, 'documents.parquet');
let next = 0;
await writeParquetFixture(
  docsInput,
  { images: 'VARCHAR[]', texts: 'VARCHAR[]' },
  sizes.map((n, d) => {
    const imageList: (string | null)[] = [];
    const texts: (string | null)[] = [];
    for (let i = 0; i < n; i++) {
      imageList.push(null, url(images[next++]!));
      texts.push(`Paragraph ${i} of document ${d}, which talks about the picture below it.`, null);
    }
    return [imageList, texts];
  }),
);

const fetch = { allowPrivateNetwork: ['127.0.0.1/32'] };
const summaries: Record<string, BuildSummary> = {};
async function build(source: string, input: string, name: string): Promise<void> {
  const output = join(root, name);
  await rm(output, { recursive: true, force: true });
  // Shards of ~100 images either way: a document shard of 33 documents, a pair shard of 100 pairs.
  const samplesPerShard = source === 'laion' ? 100 : 33;
  summaries[name] = await runBuild(resolveBuildOptions({ adapter: findSource(source), inputs: [input], output, samplesPerShard, fetch }));
}

try {
  const best = await bestOf(isQuick() ? 1 : 2, {
    pairs: () => build('laion', pairsInput, 'pairs'),
    documents: () => build('obelisc', docsInput, 'documents'),
  });
  const pairImages = summaries.pairs!.manifest!.totals.images;
  const docImages = summaries.documents!.manifest!.totals.images;
  if (pairImages !== images.length || docImages !== images.length) {
    console.log(`warning: packed ${pairImages} pair images and ${docImages} document images of ${images.length}`);
  }
  const pairRate = pairImages / best.pairs!;
  const docRate = docImages / best.documents!;
  const shards = (await readdir(join(root, 'documents'))).filter((f) => f.endsWith('.tar')).length;
  console.log(`${documents} documents, ${imageCount} images (${(imageCount / documents).toFixed(1)} per document), ${shards} document shards`);
  console.log(`documents: ${(documents / best.documents!).toFixed(1)} documents/s, ${docRate.toFixed(1)} images/s`);
  console.log(`pairs:     ${pairRate.toFixed(1)} images/s`);
  console.log(`documents/pairs images/s: ${ratio(docRate, pairRate)} (aim >= 0.9)`);
  report('documents', {
    documents,
    images: imageCount,
    documentsPerSecond: Math.round((documents / best.documents!) * 10) / 10,
    documentImagesPerSecond: Math.round(docRate * 10) / 10,
    pairImagesPerSecond: Math.round(pairRate * 10) / 10,
    ratio: ratio(docRate, pairRate),
  });
} finally {
  await server.close();
  await rm(root, { recursive: true, force: true });
}
