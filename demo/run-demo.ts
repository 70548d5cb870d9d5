import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { formatBuildSummary } from '../pipelines/engine/build-report.ts';
import { formatDatasetSummary } from '../shards/dataset-report.ts';
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
import { dryRun } from '../trainer-bridge/dry-run.ts';
import { trainOnMixture } from '../trainer/train-on-mixture.ts';
import { openMixture, readSupplies, writePlan } from '../mixer/mixture.ts';
import { planMixture, type MixPlan } from '../mixer/plan.ts';
import { formatPlan, formatRealised } from '../mixer/plan-report.ts';
import { grid, percent } from '../core/format.ts';
import { loadProfile } from '../mixer/profile.ts';
import type { BuildSummary } from '../pipelines/engine/build.ts';
import { TextGenerator } from '../sandbox/texts.ts';
import type { BridgeReport } from '../trainer-bridge/bridge.ts';
import type { StepMetrics } from '../trainer/metrics.ts';
import { M4Error } from '../core/errors.ts';
import { checkLocalOutput } from '../shards/storage/local-output.ts';

export interface DemoOptions {
  /** Output folder (default `out/demo`): new, empty, or one an earlier demo made (then emptied first). */
  out: string;
  /** Optimizer steps of the training run, one 512-token sequence each (default 30); the mixture's budget follows. */
  steps?: number;
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
  const steps = options.steps ?? DEFAULT_STEPS;

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
    const outcomes = new Map<string, BuildSummary>();
    for (const { source, input, output } of builds) {
      log(`\n$ m4data build --source ${source} --input ${input} --output ${output} --samples-per-shard ${SAMPLES_PER_SHARD}`);
      const start = Date.now();
      const summary = await runBuild(resolveBuildOptions(demoBuild(source, input, output)));
      outcomes.set(source, summary);
      log(formatBuildSummary(source, summary, (Date.now() - start) / 1000).trimEnd());
    }
    for (const { output } of builds) {
      log(`\n$ m4data inspect ${output} -n 2`);
      log(formatDatasetSummary(await summarizeDataset(output, { first: 2 })).trimEnd());
    }

    const mixDir = join(out, 'mix');
    const sources = builds.map(({ source, output }) => `--source ${source}=${output}`).join(' ');
    log(`\n$ m4data mix --profile atum-9b ${sources} --output ${mixDir} --budget ${steps * TRAIN.tokensPerStep}`);
    const plan = planMixture({
      profile: await loadProfile('atum-9b'),
      mode: { kind: 'proportions' },
      supplies: await readSupplies(new Map(builds.map(({ source, output }) => [source, output]))),
      seed: 0,
      budgetTokens: steps * TRAIN.tokensPerStep,
    });
    await writePlan(mixDir, plan);
    log(formatPlan(plan).trimEnd());
    const mixture = await openMixture(mixDir);

    const shape = `--batch-size ${TRAIN.batchSize} --seq-len ${TRAIN.seqLen} --max-images ${TRAIN.maxImages}`;
    log(`\n$ m4data train --dry-run --mixture ${mixDir} --steps 2 ${shape}`);
    await dryRun(mixture, { steps: 2, batchSize: TRAIN.batchSize, seqLen: TRAIN.seqLen, maxImages: TRAIN.maxImages, say: log });

    const runDir = join(out, 'run');
    log(
      `\n$ m4data train --mixture ${mixDir} --run-dir ${runDir} --steps ${steps} --model tiny --backend wasm ${shape} --tokens-per-step ` +
        `${TRAIN.tokensPerStep} --lr ${TRAIN.lr} --final-lr ${TRAIN.finalLr}`,
    );
    const { training, report } = await trainOnMixture(mixture, {
      runDir,
      steps,
      model: 'tiny',
      backend: 'wasm',
      checkpointEvery: 10,
      bridge: { batchSize: TRAIN.batchSize, seqLen: TRAIN.seqLen, maxImages: TRAIN.maxImages },
      overrides: { tokensPerStep: TRAIN.tokensPerStep, learningRate: TRAIN.lr, finalLearningRate: TRAIN.finalLr },
      log,
    });
    log(`\nthe mixture as delivered to the bridge (this rank):\n${formatRealised(report.mixture).trimEnd()}`);
    log(`\n${formatMissionSummary(plan, outcomes, report, training.metrics)}`);
    log(
      `\nShards, indexes, outcome records, manifests, the mixture's plan and the run (metrics.jsonl, loss.svg, checkpoint) are under ${out}; PMD's shards ` +
        `were in the demo S3 bucket, gone with it.`,
    );
  } finally {
    restoreEnv();
    await s3.stop();
    await images.close();
  }
}

/**
 * The demo's training run: the tiny model on WebAssembly, one 512-token sequence per step (30 steps of 1024 tokens took
 * twice as long, 55 s here, for a smaller fall of the loss: 2.7 nats against 3.2-3.3). The card's learning rate (1e-5) would
 * not move a tiny random model in 30 steps, so the demo uses 1e-2 decaying to 1e-3. 16 image slots: the demo's
 * captions are short, so a 512-token row holds up to about 16 pairs (the dry run's second batch: 16 images, 299 tokens).
 */
const DEFAULT_STEPS = 30;
const TRAIN = { batchSize: 1, seqLen: 512, maxImages: 16, tokensPerStep: 512, lr: 1e-2, finalLr: 1e-3 } as const;
const SAMPLES_PER_SHARD = 64;

/** The one table the demo ends with: per source, what the build kept, the planned and realised shares; then the loss. */
function formatMissionSummary(plan: MixPlan, outcomes: Map<string, BuildSummary>, report: BridgeReport, metrics: StepMetrics[]): string {
  const trained = Object.values(report.sources).reduce((a, t) => a + t.packedTokens, 0);
  const rows = [['source', 'rows', 'packed', 'not packed', 'card share', 'planned', 'mixed', 'trained']];
  for (const planned of plan.sources) {
    const build = outcomes.get(planned.name)!;
    const packed = build.status.success ?? 0;
    const mixed = report.mixture.sources.find((s) => s.name === planned.name)!;
    rows.push([
      planned.name,
      String(build.totalRows),
      String(packed),
      String(build.totalRows - packed),
      percent(planned.card.share),
      percent(planned.share),
      percent(mixed.share),
      percent(trained > 0 ? (report.sources[planned.name]?.packedTokens ?? 0) / trained : 0),
    ]);
  }
  const first = metrics[0];
  const last = metrics[metrics.length - 1];
  return [
    'The mission, end to end (built -> mixed -> packed -> trained):',
    grid(rows),
    `first step (${first?.step ?? '-'})  loss ${first ? first.loss.toFixed(4) : '-'}`,
    `last step (${last?.step ?? '-'})  loss ${last ? last.loss.toFixed(4) : '-'}`,
  ].join('\n');
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
      throw new M4Error(
        'E_USAGE',
        'demo',
        `--out ${out} is not empty and was not made by the demo (no ${DEMO_MARKER} in it); the demo empties its folder, so give it a new or empty one`,
        { out },
      );
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
    samplesPerShard: SAMPLES_PER_SHARD,
    // The demo's image server is on loopback, which builds refuse unless told otherwise.
    fetch: { allowPrivateNetwork: ['127.0.0.1/32'], retries: 1, retryBaseDelayMs: 50, headersTimeoutMs: 3000 },
  };
}

async function startImageServer(): Promise<HostileServer> {
  const files = new Map<string, HostileFile>();
  for (let i = 0; i < PHOTOS; i++)
    files.set(`photo${i}.jpg`, { body: await jpeg(320 + 40 * (i % 7), 240 + 30 * (i % 5), { seed: i }), contentType: 'image/jpeg' });
  files.set('logo.png', { body: await png(300, 300, { alpha: true }), contentType: 'image/png' });
  files.set('broken.jpg', { body: await truncatedJpeg(), contentType: 'image/jpeg' });
  files.set('icon.jpg', { body: await jpeg(64, 64), contentType: 'image/jpeg' });
  return startHostileServer(files);
}

/** How many rows of each source the demo makes: enough for a few dozen 1024-token sequences. */
const ROWS = { laion: 160, pmd: 320, obelisc: 40, wikipedia: 16 } as const;

async function writeInputs(dir: string, server: HostileServer): Promise<Record<'laion' | 'pmd' | 'obelisc' | 'wikipedia', string>> {
  const text = new TextGenerator(7);
  // A query makes each use of a photo its own URL: OBELICS's builders drop URLs found in more than 10 documents.
  const photo = (i: number, use = 0) => server.url(`/f/photo${i % PHOTOS}.jpg?use=${use}`);
  const paths = {
    laion: join(dir, 'laion.parquet'),
    pmd: join(dir, 'pmd.parquet'),
    obelisc: join(dir, 'obelisc.parquet'),
    wikipedia: join(dir, 'wikipedia.parquet'),
  };

  // A few LAION rows fail on purpose, so the outcome table shows more than successes.
  const failing = [
    server.url('/f/logo.png'),
    server.url('/status/404'),
    server.url('/f/broken.jpg'),
    server.url('/f/icon.jpg'),
    server.url('/noai/photo1.jpg'),
  ];
  const laionUrls = [...Array.from({ length: ROWS.laion }, (_, i) => photo(i, i)), ...failing];
  await writeParquetFixture(
    paths.laion,
    { URL: 'VARCHAR', TEXT: 'VARCHAR', WIDTH: 'INTEGER', HEIGHT: 'INTEGER', similarity: 'DOUBLE', punsafe: 'DOUBLE' },
    laionUrls.map((url) => [url, text.caption(), 640, 480, 0.3, 0.01]),
  );

  const inline = await jpeg(400, 300, { seed: 99 });
  await writeParquetFixture(
    paths.pmd,
    { text: 'VARCHAR', source: 'VARCHAR', meta: 'VARCHAR', image_url: 'VARCHAR', image: 'STRUCT(bytes BLOB, path VARCHAR)' },
    Array.from({ length: ROWS.pmd }, (_, i) =>
      i % 4 === 0
        ? [text.caption(), 'coco', JSON.stringify({ id: i }), null, { bytes: inline, path: `coco/${i}.jpg` }]
        : [text.caption(), 'conceptual_captions', JSON.stringify({ id: i }), photo(i + 3, 1000 + i), null],
    ),
  );

  await writeParquetFixture(
    paths.obelisc,
    { images: 'VARCHAR[]', texts: 'VARCHAR[]', metadata: 'VARCHAR', general_metadata: 'VARCHAR' },
    Array.from({ length: ROWS.obelisc }, (_, d) => {
      const city = text.city();
      const images: (string | null)[] = [null];
      const texts: (string | null)[] = [`${city}: ${text.paragraph(city)}`];
      const pictures = text.between(1, 3);
      for (let k = 0; k < pictures; k++) {
        images.push(d % 8 === 0 && k === 0 ? server.url(`/status/404?doc=${d}`) : photo(d * 3 + k, 2000 + d * 10 + k), null);
        texts.push(null, text.paragraph(city));
      }
      // One page holds two stories, as OBELICS marks them.
      if (d === 3) texts[texts.length - 1] += `\n\n${END_OF_DOCUMENT}\n\n${text.paragraph(text.city())}`;
      return [images, texts, JSON.stringify(images.map((src) => (src ? { src } : null))), JSON.stringify({ url: `https://example.org/${d}` })];
    }),
  );

  await writeParquetFixture(
    paths.wikipedia,
    { texts: 'VARCHAR[]', images: 'STRUCT(bytes BLOB, path VARCHAR)[]' },
    Array.from({ length: ROWS.wikipedia }, (_, d) => {
      const city = text.city();
      const texts: (string | null)[] = [city, text.paragraph(city)];
      const images: ({ bytes: Buffer; path: string } | null)[] = [null, null];
      for (let section = text.between(2, 3); section > 0; section--) {
        texts.push(text.heading(), text.paragraph(city), null);
        images.push(null, null, { bytes: inline, path: `File:${city}-${d}-${section}.jpg` });
      }
      return [texts, images];
    }),
  );
  return paths;
}
