import { availableParallelism } from 'node:os';
import { M4Error } from '../../core/errors.ts';
import { wholeIn } from '../../core/ranges.ts';
import { resolveFetchOptions, type FetchOptions } from './fetch/fetch-options.ts';
import { inputFormatOf, type InputFormat } from './metadata/input-format.ts';
import { resolveImageOptions, type ImageOptions } from './image/image-options.ts';
import type { SourceAdapter, SourceOptions } from './source-adapter.ts';

/** Everything `m4data build` needs, with defaults applied in one place (`resolveBuildOptions`). */
export interface BuildOptions {
  adapter: SourceAdapter;
  sourceOptions: SourceOptions;
  /** Metadata files or globs: local paths, file://, s3://, http(s)://. */
  inputs: string[];
  /** Their format (--input-format); default: each file's extension, parquet when it names none. */
  inputFormat: InputFormat | undefined;
  /** Output folder or s3:// prefix. */
  output: string;
  /** Shard name prefix (default: the source name). */
  prefix: string;
  /** Input rows per shard (default 10,000): shard k holds rows [k*n, (k+1)*n). */
  samplesPerShard: number;
  /** This worker's index and the number of workers (default 0/1): builds shards with k % count == index. */
  worker: { index: number; count: number };
  /** Read at most this many input rows (default: all). */
  limit: number | undefined;
  /** Downloads in flight (default 64). */
  concurrency: number;
  /** Images decoded and encoded at once (default 2 per core). */
  imageWork: number;
  image: ImageOptions;
  fetch: Partial<FetchOptions>;
  /** Skip shards already published (default true); false rebuilds every shard of this worker. */
  resume: boolean;
}

export type BuildOptionsInput = Omit<
  BuildOptions,
  'image' | 'sourceOptions' | 'prefix' | 'samplesPerShard' | 'worker' | 'concurrency' | 'imageWork' | 'resume' | 'fetch' | 'limit' | 'inputFormat'
> & {
  limit?: number;
  inputFormat?: InputFormat;
  image?: Partial<ImageOptions>;
  sourceOptions?: SourceOptions;
  prefix?: string;
  samplesPerShard?: number;
  worker?: { index: number; count: number };
  concurrency?: number;
  imageWork?: number;
  resume?: boolean;
  fetch?: Partial<FetchOptions>;
};

export function resolveBuildOptions(input: BuildOptionsInput): BuildOptions {
  const { adapter } = input;
  if (input.inputs.length === 0) usage('--input needs at least one parquet file');
  const defined = <T extends object>(o: T | undefined): Partial<T> =>
    Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
  const sourceOptions: SourceOptions = {};
  for (const flag of adapter.flags) sourceOptions[flag.key] = flag.default;
  Object.assign(sourceOptions, defined(input.sourceOptions));
  for (const key of Object.keys(defined(input.sourceOptions))) {
    if (!adapter.flags.some((f) => f.key === key)) usage(`option ${key} does not apply to --source ${adapter.name}`);
  }
  // Resolved here only to reject bad settings (a bad CIDR) before the build touches its output.
  resolveFetchOptions(input.fetch);
  const worker = input.worker ?? { index: 0, count: 1 };
  if (!(Number.isInteger(worker.count) && worker.count >= 1 && Number.isInteger(worker.index) && worker.index >= 0 && worker.index < worker.count)) {
    usage(`--worker must be i/n with 0 <= i < n, got ${worker.index}/${worker.count}`);
  }
  const options: BuildOptions = {
    adapter,
    sourceOptions,
    inputs: input.inputs,
    inputFormat: input.inputFormat,
    output: input.output,
    prefix: input.prefix ?? adapter.name,
    samplesPerShard: input.samplesPerShard ?? 10_000,
    worker,
    limit: input.limit,
    concurrency: input.concurrency ?? 64,
    imageWork: input.imageWork ?? 2 * availableParallelism(),
    image: resolveImageOptions({ ...adapter.imageDefaults, ...defined(input.image) }),
    fetch: input.fetch ?? {},
    resume: input.resume ?? true,
  };
  if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(options.prefix))
    usage(`--prefix ${JSON.stringify(options.prefix)} must be letters, digits, _ and -, with / between folders`);
  wholeIn('build', '--samples-per-shard', options.samplesPerShard, 1);
  wholeIn('build', '--concurrency', options.concurrency, 1);
  wholeIn('build', '--image-workers', options.imageWork, 1);
  if (options.limit !== undefined) wholeIn('build', '--limit', options.limit, 1);
  if (options.inputFormat !== undefined) inputFormatOf('', options.inputFormat);
  return options;
}

function usage(message: string): never {
  throw new M4Error('E_USAGE', 'build', message);
}

/**
 * The options that decide what the shards hold. A resumed build must match them, or it would mix two datasets;
 * fetch settings and the worker split are left out, as they change how, not what.
 */
export function buildFingerprint(options: BuildOptions): Record<string, unknown> {
  return {
    source: options.adapter.name,
    inputs: options.inputs,
    prefix: options.prefix,
    samplesPerShard: options.samplesPerShard,
    limit: options.limit ?? null,
    // Only when given, so that builds recorded before the flag existed still resume.
    ...(options.inputFormat ? { inputFormat: options.inputFormat } : {}),
    image: { ...options.image, maxAspectRatio: options.image.maxAspectRatio ?? null },
    sourceOptions: Object.fromEntries(Object.entries(options.sourceOptions).map(([k, v]) => [k, v ?? null])),
  };
}
