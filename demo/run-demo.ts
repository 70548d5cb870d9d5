import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { formatSummary } from '../cli/commands/inspect.ts';
import { formatBuildSummary } from '../cli/commands/build.ts';
import { resolveBuildOptions, type BuildOptionsInput } from '../pipelines/engine/build-options.ts';
import { runBuild } from '../pipelines/engine/build.ts';
import { findSource } from '../pipelines/registry.ts';
import { summarizeDataset } from '../shards/dataset-summary.ts';
import { S3Storage } from '../shards/storage/s3.ts';
import { startHostileServer, type HostileFile, type HostileServer } from '../sandbox/hostile-server.ts';
import { jpeg, png, truncatedJpeg } from '../sandbox/images.ts';
import { writeParquetFixture } from '../sandbox/parquet-files.ts';
import { applyEnv, startS3Server } from '../sandbox/s3-server.ts';
import { END_OF_DOCUMENT } from '../trainer-bridge/token-layout.ts';
import { M4Error } from '../core/errors.ts';
import { checkLocalOutput } from '../shards/storage/local-output.ts';

export interface DemoOptions {
  /** Output folder (default `out/demo`): new, empty, or one an earlier demo made (then emptied first). */
  out: string;
  log: (line: string) => void;
}

const PHOTOS = 24;

/**
 * The README's main command: every stage m4data has so far, on inputs it makes itself. Images come from a web server
 * on 127.0.0.1 (a few of its URLs fail on purpose, so the outcome tables show more than successes); PMD is read from
 * and written to a local S3-compatible server, the other sources to the local folder.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  const out = resolve(options.out);
  await prepareOutput(out);
  await mkdir(join(out, 'inputs'), { recursive: true });
  const log = options.log;

  log('starting an image server and an S3-compatible server on 127.0.0.1 (nothing leaves this machine)');
  const images = await startImageServer();
  const s3 = await startS3Server({ bucket: 'm4data-demo' });
  const restoreEnv = applyEnv(s3.env);
  try {
    const inputs = await writeInputs(join(out, 'inputs'), images);
    const pmdInput = `s3://${s3.bucket}/inputs/pmd.parquet`;
    await new S3Storage(`s3://${s3.bucket}`).write('inputs/pmd.parquet', await readFile(inputs.pmd));

    const builds: { source: string; input: string; output: string }[] = [
      { source: 'obelisc', input: inputs.obelisc, output: join(out, 'obelisc') },
      { source: 'pmd', input: pmdInput, output: `s3://${s3.bucket}/datasets/pmd` },
      { source: 'laion', input: inputs.laion, output: join(out, 'laion') },
      { source: 'wikipedia', input: inputs.wikipedia, output: join(out, 'wikipedia') },
    ];
    for (const { source, input, output } of builds) {
      log(`\n$ m4data build --source ${source} --input ${input} --output ${output} --samples-per-shard 8`);
      const start = Date.now();
      const summary = await runBuild(resolveBuildOptions(demoBuild(source, input, output)));
      log(formatBuildSummary(source, summary, (Date.now() - start) / 1000).trimEnd());
    }
    for (const { output } of builds) {
      log(`\n$ m4data inspect ${output} -n 2`);
      log(formatSummary(await summarizeDataset(output, { first: 2 })).trimEnd());
    }
    log(`\nShards, indexes, outcome records and manifests are under ${out} (PMD's were in the demo S3 bucket, gone with it).`);
  } finally {
    restoreEnv();
    await s3.stop();
    await images.close();
  }
}

/** Marks a folder the demo made, so that a later demo may empty it; nothing else is ever emptied. */
export const DEMO_MARKER = '.m4data-demo';

/**
 * Empties `out` only when an earlier demo made it (its marker is there); a new or empty folder is used as it is.
 * Any other folder holds what the user put there and is refused (E_USAGE).
 */
async function prepareOutput(out: string): Promise<void> {
  await checkLocalOutput(out, '--out');
  const info = await stat(out).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (info && !info.isDirectory()) throw new M4Error('E_USAGE', 'demo', `--out ${out} is a file, not a folder`, { out });
  const entries = info ? await readdir(out) : [];
  if (entries.length > 0) {
    if (!entries.includes(DEMO_MARKER)) {
      throw new M4Error('E_USAGE', 'demo', `--out ${out} is not empty and was not made by the demo (no ${DEMO_MARKER} in it); the demo empties its folder, so give it a new or empty one`, { out });
    }
    await rm(out, { recursive: true, force: true });
  }
  await mkdir(out, { recursive: true });
  await writeFile(join(out, DEMO_MARKER), 'made by `m4data demo`, which empties this folder when it runs again\n');
}

function demoBuild(source: string, input: string, output: string): BuildOptionsInput {
  return {
    adapter: findSource(source),
    inputs: [input],
    output,
    samplesPerShard: 8,
    // The demo's image server is on loopback, which builds refuse unless told otherwise.
    fetch: { allowPrivateNetwork: ['127.0.0.1/32'], retries: 1, retryBaseDelayMs: 50, headersTimeoutMs: 3000 },
  };
}

async function startImageServer(): Promise<HostileServer> {
  const files = new Map<string, HostileFile>();
  for (let i = 0; i < PHOTOS; i++) files.set(`photo${i}.jpg`, { body: await jpeg(320 + 40 * (i % 7), 240 + 30 * (i % 5), { seed: i }), contentType: 'image/jpeg' });
  files.set('logo.png', { body: await png(300, 300, { alpha: true }), contentType: 'image/png' });
  files.set('broken.jpg', { body: await truncatedJpeg(), contentType: 'image/jpeg' });
  files.set('icon.jpg', { body: await jpeg(64, 64), contentType: 'image/jpeg' });
  return startHostileServer(files);
}

const CAPTIONS = ['a red bicycle leaning on a wall', 'two dogs running on a beach', 'an old bridge over a river at dusk', 'a bowl of fruit on a wooden table', 'snow on the mountains above a lake', 'a city street at night in the rain'];

async function writeInputs(dir: string, server: HostileServer): Promise<Record<'laion' | 'pmd' | 'obelisc' | 'wikipedia', string>> {
  const photo = (i: number) => server.url(`/f/photo${i % PHOTOS}.jpg`);
  const paths = { laion: join(dir, 'laion.parquet'), pmd: join(dir, 'pmd.parquet'), obelisc: join(dir, 'obelisc.parquet'), wikipedia: join(dir, 'wikipedia.parquet') };

  const laionUrls = [
    ...Array.from({ length: 20 }, (_, i) => photo(i)),
    server.url('/f/logo.png'),
    server.url('/status/404'),
    server.url('/f/broken.jpg'),
    server.url('/f/icon.jpg'),
    server.url('/noai/photo1.jpg'),
  ];
  await writeParquetFixture(
    paths.laion,
    { URL: 'VARCHAR', TEXT: 'VARCHAR', WIDTH: 'INTEGER', HEIGHT: 'INTEGER', similarity: 'DOUBLE', punsafe: 'DOUBLE' },
    laionUrls.map((url, i) => [url, CAPTIONS[i % CAPTIONS.length]!, 640, 480, 0.3, 0.01]),
  );

  const inline = await jpeg(400, 300, { seed: 99 });
  await writeParquetFixture(
    paths.pmd,
    { text: 'VARCHAR', source: 'VARCHAR', meta: 'VARCHAR', image_url: 'VARCHAR', image: 'STRUCT(bytes BLOB, path VARCHAR)' },
    Array.from({ length: 12 }, (_, i) =>
      i % 3 === 0
        ? [CAPTIONS[i % CAPTIONS.length]!, 'coco', JSON.stringify({ id: i }), null, { bytes: inline, path: `coco/${i}.jpg` }]
        : [CAPTIONS[i % CAPTIONS.length]!, 'conceptual_captions', JSON.stringify({ id: i }), photo(i + 3), null],
    ),
  );

  await writeParquetFixture(
    paths.obelisc,
    { images: 'VARCHAR[]', texts: 'VARCHAR[]', metadata: 'VARCHAR', general_metadata: 'VARCHAR' },
    Array.from({ length: 10 }, (_, d) => {
      const images = [null, photo(d), null, d % 4 === 0 ? server.url('/status/404') : photo(d + 5), null];
      const texts = [`Page ${d}: an article about ${CAPTIONS[d % CAPTIONS.length]}.`, null, d === 3 ? `The end of one story.\n\n${END_OF_DOCUMENT}\n\nThe start of another.` : 'More text between the pictures.', null, 'Comments are closed.'];
      return [images, texts, JSON.stringify(images.map((src) => (src ? { src } : null))), JSON.stringify({ url: `https://example.org/${d}` })];
    }),
  );

  await writeParquetFixture(
    paths.wikipedia,
    { texts: 'VARCHAR[]', images: 'STRUCT(bytes BLOB, path VARCHAR)[]' },
    Array.from({ length: 5 }, (_, d) => [
      [`Article ${d}`, 'Introduction.', null, 'History', 'The history section.'],
      [null, null, { bytes: inline, path: `File:${d}.jpg` }, null, null],
    ]),
  );
  return paths;
}
