import { readFile, stat, writeFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { Command, Option } from 'commander';
import { M4Error } from '../../core/errors.ts';
import { formatCount, grid, percent, plural, table } from '../../core/format.ts';
import { openMixture } from '../../mixer/mixture.ts';
import { formatQuality } from '../../mixer/plan-report.ts';
import type { BridgeState } from '../../trainer-bridge/batch.ts';
import { writeBatchDir, writeBatchStream } from '../../trainer-bridge/batch-npy.ts';
import { DEFAULT_BATCH_SIZE, DEFAULT_MAX_IMAGES, DEFAULT_PREFETCH } from '../../trainer-bridge/bridge-options.ts';
import { openBridge, type BridgeReport, type MixtureSource } from '../../trainer-bridge/bridge.ts';
import { IMAGE_TRANSFORMS } from '../../trainer-bridge/pixel-pool.ts';
import { tensorShapes } from '../../trainer-bridge/tensors.ts';
import { readCheckpointInfo } from '../../trainer/checkpoint.ts';
import { integerIn } from '../parse.ts';
import { trainOptions } from '../train-flags.ts';
import { bridgeOptionsOf, runTrainModel, type BridgeFlags, type TrainModelFlags } from './train-model.ts';

export interface TrainFlags extends BridgeFlags {
  dryRun?: boolean;
  mixture?: string;
  steps?: number;
  resumeState?: string[];
  saveState?: string;
  dump?: string;
  quiet?: boolean;
}

export function trainCommand(): Command {
  const command = new Command('train')
    .description('train the ATUM model (TensorFlow.js) on the mixture, packed into IDEFICS sequences by the bridge; --dry-run streams the batches with no model')
    .addOption(new Option('--mixture <MIX_DIR>', 'the mixture planned by m4data mix (a folder or s3://bucket/prefix holding plan.json) (required)'))
    .option('--dry-run', 'stream the batches with no model: print their shapes and contents, optionally dump them as .npy')
    .option('--steps <n>', "training: optimizer steps (default: the plan's budget in steps of --tokens-per-step); --dry-run: batches this rank yields, a resumed run's included (default: the plan's tokens / (world size x batch size x seq len))", integerIn(1))
    .option('--batch-size <n>', `sequences per batch on this rank (default ${DEFAULT_BATCH_SIZE})`, integerIn(1))
    .option('--seq-len <n>', "tokens per sequence (default: the profile's sequenceLength, 1024)", integerIn(16))
    .option('--max-images <n>', `image slots per sequence, 602 KB of pixels each; an image beyond them is dropped with its placeholder tokens (default ${DEFAULT_MAX_IMAGES}: at 5, rows of the card's mixture fill with images first and half their tokens are padding)`, integerIn(1))
    .option('--rank <r>', 'this rank (default: env RANK, else 0)', integerIn(0))
    .option('--world-size <w>', 'ranks in all (default: env WORLD_SIZE, else 1)', integerIn(1))
    .option('--mask-image-tokens', 'also set -100 in labels on <image> and <fake_token_around_image> (as open_flamingo did)')
    .addOption(new Option('--image-transform <name>', 'resize: the whole image squashed to 224x224 bicubic (IDEFICS); center-crop: shortest side to 224, centre cut').choices([...IMAGE_TRANSFORMS]).default('resize'))
    .option('--prefetch <n>', `batches packed and decoded ahead (default ${DEFAULT_PREFETCH})`, integerIn(1))
    .option('--workers <n>', 'pixel worker threads (default: the cores available)', integerIn(1))
    .option('--max-bad-shards <n>', 'corrupt source shards skipped (and reported) before the stream fails (default 3)', integerIn(0))
    .option('--resume-state <state...>', "continue after the batch a state was saved at (a --save-state file, or a run directory's checkpoint); under another world size, every rank's state of one step (training: with --resume, instead of the checkpoint's)")
    .option('--save-state <state.json>', '--dry-run: write the bridge state after the last batch (the mixer state + packer position; a few hundred bytes)')
    .option('--dump <DIR|->', "DIR: write each batch's tensors as DIR/batch-000000/<name>.npy; -: write them to stdout as a stream of .npy arrays, five per batch (logs go to stderr)")
    .option('--quiet', '--dry-run: no line per batch, only the summary');
  // The trainer's own flags; --steps is shared (above) and --run-dir is required only when training.
  for (const option of trainOptions()) {
    if (option.attributeName() === 'steps') continue;
    option.mandatory = false;
    command.addOption(option);
  }
  return command
    .addHelpText(
      'after',
      `
Training: m4data train --mixture MIX_DIR --run-dir RUN [--steps N] [--model tiny] [--backend auto]
  logs each step (loss, z-loss, learning rate, grad norm, tokens/s, images/s, batch wait) and writes RUN/metrics.jsonl,
  RUN/loss.svg and a checkpoint every --checkpoint-every steps (trainable weights, optimizer state, step, the bridge's
  state). --resume continues exactly; Ctrl-C saves a checkpoint and exits (status 130); --stop-at N stops after step N.
  Hyper-parameters come from the mixture's profile (its training table); each flag above overrides one.

Resuming under another world size: give every rank the states all ranks saved after the same batch
(--resume-state rank0.json rank1.json ...). Keep the mixture (MIX_DIR, its plan and seed), --seq-len, --max-images,
--steps and the global batch (world size x --batch-size); every sample of the mixture is then read exactly once over
both runs, a sample one rank had part-packed going on from its next window.

Every rank yields exactly as many batches: the bridge reads an endless stream of the mixture (it continues past the
plan by the same rule), so no rank runs dry before another. Ranks come from torchrun's RANK / WORLD_SIZE unless
--rank / --world-size are given. TensorFlow.js has no collectives: one process trains one replica; multi-GPU runs
are PyTorch ranks fed by the .npy stream (--dry-run --dump -, examples/pytorch_feed.py).

Per batch the five tensors, always in this order (the order of --dump -):
  input_ids [B, L] int32, attention_mask [B, L] int32, labels [B, L] int32 (-100 on padding),
  pixel_values [B, N, 3, 224, 224] float32 (CLIP-normalised; unused slots zero), image_attention_mask [B, L, N] int8.

Examples:
  m4data train --mixture out/mix --run-dir out/run --steps 30 --backend wasm --lr 1e-2 --tokens-per-step 1024
  m4data train --dry-run --mixture out/mix --steps 3
  m4data train --dry-run --mixture out/mix --steps 100 --dump out/batches
  RANK=1 WORLD_SIZE=8 m4data train --dry-run --mixture s3://bucket/mix --dump - | python3 examples/pytorch_feed.py -
Packing, windows of long documents, the masks and the state: trainer-bridge/README.md.
Exit status: 0 done, 1 the mixture unreadable, 2 bad usage, 130 interrupted (a checkpoint was saved).`,
    )
    .action(async (flags: TrainFlags & Omit<TrainModelFlags, 'runDir'> & { runDir?: string }) => {
      if (!flags.mixture) throw new M4Error('E_USAGE', 'cli', 'required option --mixture <MIX_DIR> is missing (make one with m4data mix)');
      const rank = flags.rank ?? envInteger('RANK', 0);
      const worldSize = flags.worldSize ?? envInteger('WORLD_SIZE', 1);
      if (flags.dryRun) {
        await runTrainDryRun(await openMixture(flags.mixture), { ...flags, rank, worldSize }, { out: process.stdout, log: process.stderr });
        return;
      }
      if (!flags.runDir) throw new M4Error('E_USAGE', 'cli', 'required option --run-dir <dir> is missing (or give --dry-run to stream batches with no model)');
      const controller = new AbortController();
      const interrupt = () => {
        process.stderr.write('\ninterrupted: saving a checkpoint after the current step (Ctrl-C again to quit at once)\n');
        controller.abort();
        process.once('SIGINT', () => process.exit(130));
      };
      process.once('SIGINT', interrupt);
      try {
        const resumeStates = flags.resumeState ? await readStates(flags.resumeState) : undefined;
        const { training } = await runTrainModel(await openMixture(flags.mixture), { ...flags, runDir: flags.runDir, rank, worldSize, resumeStates }, { log: (line) => process.stdout.write(`${line}\n`), signal: controller.signal });
        if (training.stoppedBy === 'abort') {
          process.stdout.write(`checkpoint at step ${training.endStep} in ${flags.runDir}; continue with the same command and --resume\n`);
          process.exitCode = 130;
        }
      } finally {
        process.removeListener('SIGINT', interrupt);
      }
    });
}

function envInteger(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  if (!/^\d+$/.test(value)) throw new M4Error('E_USAGE', 'cli', `environment variable ${name}=${JSON.stringify(value)} is not a whole number`);
  return Number(value);
}

/**
 * Streams this rank's batches with no model: a line per batch (shapes, tokens and images per source, padding,
 * throughput), optional .npy dumps, then a summary of where every token and image went.
 */
export async function runTrainDryRun(mixture: MixtureSource, flags: TrainFlags, io: { out: Writable; log: Writable }): Promise<BridgeReport> {
  const toStdout = flags.dump === '-';
  const say = (line: string) => (toStdout ? io.log : io.out).write(`${line}\n`);
  const resume = flags.resumeState ? await readStates(flags.resumeState) : undefined;
  const bridge = openBridge(mixture, { ...bridgeOptionsOf(flags), steps: flags.steps, resume });
  const { options } = bridge;
  const startBatches = bridge.state().batches;
  say(`rank ${options.rank} of ${options.worldSize}: ${plural(options.steps, 'batch', 'batches')} of ${options.batchSize} x ${options.seqLen} tokens, ${options.maxImages} image slots per sequence${resume ? ` (resuming after batch ${startBatches})` : ''}`);
  const closed = toStdout ? pipeClosed(io.out) : undefined;
  const start = performance.now();
  let tokens = 0;
  let images = 0;
  let index = startBatches;
  for await (const batch of bridge) {
    const batchTokens = sum(Object.values(batch.stats.tokensBySource));
    tokens += batchTokens;
    images += sum(Object.values(batch.stats.imagesBySource));
    if (flags.dump && !toStdout) await writeBatchDir(flags.dump, index, batch);
    if (toStdout) {
      await Promise.race([writeBatchStream(io.out, batch), closed!.promise]);
      if (closed!.closed) {
        say('the reader of standard output closed it: stopping');
        break;
      }
    }
    if (!flags.quiet) {
      const seconds = (performance.now() - start) / 1000;
      const shapes = tensorShapes(batch).map(([name, shape]) => `${name} [${shape.join(', ')}]`).join('  ');
      const slots = batch.batchSize * batch.seqLen;
      say(`batch ${index}  ${shapes}`);
      say(`  tokens ${bySource(batch.stats.tokensBySource)}  images ${bySource(batch.stats.imagesBySource)}  padding ${share(batch.stats.paddingTokens, slots)}  ${formatCount(Math.round(tokens / seconds))} tokens/s`);
    }
    index++;
  }
  const report = bridge.report();
  const seconds = (performance.now() - start) / 1000;
  say(formatReport(report, { seconds, tokens, images, sequences: report.batches * options.batchSize }));
  if (flags.saveState) await writeFile(flags.saveState, `${JSON.stringify(bridge.state())}\n`);
  return report;
}

/**
 * One state: this rank's; several: every rank's of an earlier world (checked by the bridge). A state is a file written
 * by --save-state, or a training run directory, whose checkpoint holds the bridge state of its step.
 */
export async function readStates(paths: string[]): Promise<BridgeState | BridgeState[]> {
  const states: BridgeState[] = [];
  for (const path of paths) {
    try {
      const run = (await stat(path)).isDirectory() ? await readCheckpointInfo(path) : undefined;
      if (run === null) throw new Error('a folder without a checkpoint');
      states.push(run ? (run.bridgeState as BridgeState) : (JSON.parse(await readFile(path, 'utf8')) as BridgeState));
    } catch (err) {
      throw new M4Error('E_USAGE', 'cli', `--resume-state ${path}: cannot read a bridge state: ${(err as Error).message}`);
    }
  }
  return states.length === 1 ? states[0]! : states;
}

/** Resolves when the stream's reader goes away (EPIPE), so a consumer that stops early ends the run quietly. */
function pipeClosed(stream: Writable): { promise: Promise<void>; closed: boolean } {
  const state = { closed: false, promise: Promise.resolve() };
  state.promise = new Promise((resolve) => {
    const done = () => {
      state.closed = true;
      resolve();
    };
    stream.once('error', done);
    stream.once('close', done);
  });
  return state;
}

export function formatReport(report: BridgeReport, run: { seconds: number; tokens: number; images: number; sequences: number }): string {
  const sources = Object.entries(report.sources);
  const header = ['source', 'samples', 'tokens in', 'added', 'packed', 'truncated', 'dropped', 'windows', 'images in', 'img packed', 'img dropped'];
  const rows = sources.map(([name, t]) => [name, t.samples, t.inputTokens, t.addedTokens, t.packedTokens, t.truncatedTokens, t.droppedTokens, t.windows, t.inputImages, t.packedImages, t.droppedImages].map((v) => (typeof v === 'number' ? formatCount(v) : v)));
  const seconds = Math.max(run.seconds, 1e-9);
  return [
    `\n${plural(report.batches, 'batch', 'batches')} on rank ${report.rank} of ${report.worldSize} (${report.totalBatches} of ${report.steps} in all)`,
    grid([header, ...rows.map((r) => r.map(String))], '  '),
    '  (tokens in + added = packed + truncated + dropped + still in the packer; added: <s>/</s> of windows)',
    table([
      ['padding', `${share(report.paddingTokens, report.tokenSlots)} of ${formatCount(report.tokenSlots)} token slots`],
      ['throughput', `${formatCount(Math.round(run.tokens / seconds))} tokens/s, ${(run.sequences / seconds).toFixed(1)} sequences/s, ${formatCount(Math.round(run.images / seconds))} images/s over ${run.seconds.toFixed(1)} s`],
    ]),
    `how well mixed, the samples this rank read (${report.mixture.quality.windows} windows of ${report.mixture.quality.window} tokens):`,
    formatQuality(report.mixture.quality).trimEnd(),
  ].join('\n');
}

function bySource(counts: Record<string, number>): string {
  const entries = Object.entries(counts).filter(([, n]) => n > 0);
  return entries.length === 0 ? '-' : entries.map(([name, n]) => `${name} ${formatCount(n)}`).join(', ');
}

function share(part: number, whole: number): string {
  return whole > 0 ? percent(part / whole, 1) : '-';
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
