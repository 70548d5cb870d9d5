import { Command, InvalidArgumentError, Option } from 'commander';
import { M4Error } from '../../core/errors.ts';
import { formatBytes, plural } from '../../core/format.ts';
import { resolveBuildOptions } from '../../pipelines/engine/build-options.ts';
import type { BuildSummary } from '../../pipelines/engine/build.ts';
import { formatBuildSummary } from '../../pipelines/engine/build-report.ts';
import type { SourceAdapter, SourceOptions } from '../../pipelines/engine/source-adapter.ts';
import { RESIZE_MODES, type ResizeMode } from '../../pipelines/engine/image/image-options.ts';
import { INPUT_FORMATS, type InputFormat } from '../../pipelines/engine/metadata/input-format.ts';
import { findSource, SOURCES } from '../../pipelines/registry.ts';
import { BuildProgress } from '../build-progress.ts';
import { ProgressLine } from '../progress-line.ts';
import { allowedPrivateNetwork, integerIn, privateNetworkOption } from '../parse.ts';

interface BuildFlags {
  source?: string;
  input?: string[];
  inputFormat?: InputFormat;
  output?: string;
  prefix?: string;
  samplesPerShard?: number;
  worker?: { index: number; count: number };
  merge?: boolean;
  limit?: number;
  resume: boolean;
  concurrency?: number;
  imageWorkers?: number;
  maxConnectionsPerHost?: number;
  timeout?: number;
  retries?: number;
  maxBodySize?: number;
  userAgent?: string;
  allowPrivateNetwork?: boolean | string;
  resizeMode?: ResizeMode;
  imageSize?: number;
  format?: 'jpg' | 'webp' | 'png';
  quality?: number;
  upscale?: boolean;
  minSide?: number;
  maxSide?: number;
  maxAspectRatio?: number;
  maxPixels?: number;
  quiet?: boolean;
  json?: boolean;
  [sourceFlag: string]: unknown;
}

function numberIn(min: number, max = Infinity, unit = ''): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      const range = max === Infinity ? `of at least ${min}` : `from ${min} to ${max}${unit ? ` ${unit}` : ''}`;
      throw new InvalidArgumentError(`expected a number ${range}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

/** A body is held in memory whole (it is decoded next); 2 GB is far past any image and within what a Buffer holds. */
const MAX_BODY_MB = 2000;

/** `laion 3, obelisc 2, ...`: a default each source sets for itself, as --help lists it. */
function perSource(value: (source: SourceAdapter) => unknown): string {
  return SOURCES.map((s) => `${s.name} ${String(value(s))}`).join(', ');
}

function workerSpec(value: string): { index: number; count: number } {
  const match = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (!match || count < 1 || index >= count) throw new InvalidArgumentError(`expected i/n with 0 <= i < n (e.g. 0/4), got ${JSON.stringify(value)}`);
  return { index, count };
}

export function buildCommand(): Command {
  const command = new Command('build')
    .description("read a source's metadata (parquet, csv, tsv, json, jsonl, txt) or the Wikipedia dump, download and process its images, write WebDataset tars")
    .addOption(
      new Option('-s, --source <name>', 'which source the input holds (required, except with --merge)').choices(SOURCES.flatMap((s) => [s.name, ...s.aliases])),
    )
    .option('-i, --input <files...>', 'metadata files, globs or folders: local, file://, s3://bucket/key, http(s):// (required, except with --merge)')
    .addOption(new Option('--input-format <format>', 'format of the inputs (default: from each extension, parquet when none)').choices([...INPUT_FORMATS]))
    .option('-o, --output <location>', 'output folder or s3://bucket/prefix (required)')
    .option('--prefix <name>', 'shard names are {prefix}-000000.tar (default: the source name)')
    .option('--samples-per-shard <n>', 'input rows per shard; shard k holds rows [k*n, (k+1)*n)', integerIn(1), 10_000)
    .option('--worker <i/n>', 'build only shards k with k % n == i (one of n machines)', workerSpec)
    .option('--merge', 'write the manifest from the shards the workers built, and check none is missing')
    .option('--limit <n>', 'read at most n input rows (default: all)', integerIn(1))
    .option('--no-resume', 'rebuild shards already published instead of skipping them')
    .option('-j, --concurrency <n>', 'downloads in flight', integerIn(1, 10_000), 64)
    .option('--image-workers <n>', 'images decoded and encoded at once (default: 2 per core)', integerIn(1, 256))
    .option('--max-connections-per-host <n>', 'connections kept open to one host (default: 16)', integerIn(1, 1000))
    .option('--timeout <seconds>', 'connect and response-header timeout; the body gets twice this (default: 15)', numberIn(0.1))
    .option('--retries <n>', 'retries on 429, 5xx and network errors, with jittered backoff honouring Retry-After (default: 2)', integerIn(0, 20))
    .option('--max-body-size <MB>', `largest image downloaded, in MB, at most ${MAX_BODY_MB} (default: 20)`, numberIn(0.001, MAX_BODY_MB, 'MB'))
    .option('--user-agent <string>', 'User-Agent sent with every download (default: one naming m4data and its X-Robots-Tag policy)')
    .addOption(privateNetworkOption('downloads (and remote inputs)'))
    .addOption(
      new Option(
        '--resize-mode <mode>',
        'keep_ratio (shortest side to --image-size), keep_ratio_largest (longest side to it), center_crop (the centre square), border (fit inside the ' +
          'square, padded white) or no (default: keep_ratio)',
      ).choices([...RESIZE_MODES]),
    )
    .option('--image-size <px>', 'target side in pixels; the model sees 224x224 crops (default: 256)', integerIn(1, 16384))
    .addOption(new Option('--format <format>', 'output encoding (default: jpg)').choices(['jpg', 'webp', 'png']))
    .option('--quality <q>', 'jpg/webp quality 1..100 (default: 95)', integerIn(1, 100))
    .option('--upscale', 'enlarge images smaller than --image-size (default: never upscale)')
    .option('--min-side <px>', 'drop images whose shorter side is smaller, as the published builders did (default: 150)', integerIn(0))
    .option('--max-side <px>', `drop images whose longer side is larger (default: ${perSource((s) => s.imageDefaults.maxSide ?? 20_000)})`, integerIn(1))
    .option(
      '--max-aspect-ratio <r>',
      `drop images whose long/short side ratio is larger (default: ${perSource((s) => s.imageDefaults.maxAspectRatio ?? 'none')})`,
      numberIn(1),
    )
    .option('--max-pixels <n>', 'refuse images whose header claims more pixels, before decoding: decompression bombs (default: 134217728)', integerIn(1))
    .option('-q, --quiet', 'no progress output')
    .option('--json', 'print the summary as one JSON object on stdout');
  const seen = new Set<string>();
  for (const source of SOURCES) {
    for (const flag of source.flags) {
      if (seen.has(flag.key)) continue;
      seen.add(flag.key);
      const description = `${flag.description}${flag.default !== undefined && flag.type !== 'boolean' && !flag.description.includes('default') ? ` (default: ${flag.default})` : ''}`;
      if (flag.type === 'boolean' || flag.type === 'string') command.option(flag.flag, description);
      else command.option(flag.flag, description, flag.type === 'integer' ? integerIn(0) : numberIn(-Infinity));
    }
  }
  return command
    .addHelpText(
      'after',
      `
Every input row ends up packed or recorded with the reason it was not: beside each shard {prefix}-000000.tar are
its index (.idx.json), one outcome row per input row (.outcomes.parquet: success, failed_to_download,
failed_to_decode, filtered, opted_out, malformed) and its stats (.stats.json, written last: a shard with stats is
done). manifest.json and wids.json are written once every shard exists. Re-running the same command resumes.

Exit status: 0 the build ran (whatever rows failed), 1 no input row could be read or storage failed, 2 bad usage.

Examples:
  m4data build --source laion --input 'laion/*.parquet' --output s3://bucket/laion
  m4data build --source pmd --input pmd.parquet --output out/pmd --worker 0/8     # one of 8 machines
  m4data build --source pmd --input pmd.parquet --output out/pmd --merge          # after all workers
  m4data build --source obelics --input 'obelics/*.parquet' --output out/obelics --strict-docs
  m4data build --source wikipedia --input enwiki-NS0-20230220-ENTERPRISE-HTML.json.tar.gz --output out/wikipedia`,
    )
    .action(async (flags: BuildFlags) => {
      if (!flags.output) throw new M4Error('E_USAGE', 'cli', 'build needs --output');
      if (flags.merge) return merge(flags);
      if (!flags.source) throw new M4Error('E_USAGE', 'cli', 'build needs --source');
      if (!flags.input?.length) throw new M4Error('E_USAGE', 'cli', 'build needs --input');
      const adapter = findSource(flags.source);
      const sourceOptions: SourceOptions = {};
      for (const flag of SOURCES.flatMap((s) => s.flags)) {
        if (flags[flag.key] === undefined) continue;
        if (!adapter.flags.some((f) => f.key === flag.key))
          throw new M4Error('E_USAGE', 'cli', `${flag.flag.split(' ')[0]} does not apply to --source ${adapter.name}`);
        sourceOptions[flag.key] = flags[flag.key] as number | boolean | string;
      }
      const options = resolveBuildOptions({
        adapter,
        sourceOptions,
        inputs: flags.input,
        inputFormat: flags.inputFormat,
        output: flags.output,
        prefix: flags.prefix,
        samplesPerShard: flags.samplesPerShard,
        worker: flags.worker,
        limit: flags.limit,
        concurrency: flags.concurrency,
        imageWork: flags.imageWorkers,
        resume: flags.resume,
        fetch: {
          maxConnectionsPerHost: flags.maxConnectionsPerHost,
          connectTimeoutMs: flags.timeout === undefined ? undefined : flags.timeout * 1000,
          headersTimeoutMs: flags.timeout === undefined ? undefined : flags.timeout * 1000,
          bodyTimeoutMs: flags.timeout === undefined ? undefined : flags.timeout * 2000,
          retries: flags.retries,
          maxBodyBytes: flags.maxBodySize === undefined ? undefined : Math.round(flags.maxBodySize * 1e6),
          userAgent: flags.userAgent,
          allowPrivateNetwork: allowedPrivateNetwork(flags.allowPrivateNetwork),
        },
        image: {
          resizeMode: flags.resizeMode,
          imageSize: flags.imageSize,
          format: flags.format,
          quality: flags.quality,
          upscale: flags.upscale,
          minSide: flags.minSide,
          maxSide: flags.maxSide,
          maxAspectRatio: flags.maxAspectRatio,
          maxPixels: flags.maxPixels,
        },
      });
      const progress = new BuildProgress(new ProgressLine(ProgressLine.modeFor(Boolean(flags.quiet || flags.json))));
      const start = Date.now();
      let summary: BuildSummary;
      try {
        summary = await (await import('../../pipelines/engine/build.ts')).runBuild(options, progress);
      } finally {
        progress.stop();
      }
      process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : formatBuildSummary(adapter.name, summary, (Date.now() - start) / 1000));
    });
}

async function merge(flags: BuildFlags): Promise<void> {
  // Loaded when the command runs: the build engine, DuckDB and the storage clients are not needed for --help.
  const { openStorage } = await import('../../shards/storage/open.ts');
  const { readJson } = await import('../../shards/storage/json.ts');
  const { BUILD_FILE, writeManifestIfComplete } = await import('../../pipelines/engine/build-record.ts');
  const storage = openStorage(flags.output!);
  if (!(await storage.stat(BUILD_FILE))) throw new M4Error('E_NOT_FOUND', 'build', `${storage.urlOf(BUILD_FILE)} not found: nothing was built there`);
  const build = (await readJson(storage, BUILD_FILE)) as { fingerprint: { prefix: string; source: string } };
  const manifest = await writeManifestIfComplete(storage, flags.prefix ?? build.fingerprint.prefix, findSource(build.fingerprint.source).layout);
  const t = manifest.totals;
  process.stdout.write(
    flags.json
      ? `${JSON.stringify(manifest.totals)}\n`
      : `wrote ${storage.urlOf('manifest.json')}: ${plural(t.shards, 'shard')}, ${plural(t.samples, 'sample')}, ${plural(t.images, 'image')}, ` +
          `${plural(t.tokens, 'token')}, ${formatBytes(t.bytes)}\n`,
  );
}
