import { readFile, stat } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { M4Error } from '../../core/errors.ts';
import { ExitCode } from '../../core/exit-codes.ts';
import { formatRealised } from '../../mixer/plan-report.ts';
import { checkLocalOutputFile } from '../../shards/storage/local-output.ts';
import { writeFileAtomically } from '../../shards/storage/local.ts';
import type { BridgeState } from '../../trainer-bridge/batch.ts';
import { DEFAULT_BATCH_SIZE, DEFAULT_MAX_IMAGES, DEFAULT_PREFETCH } from '../../trainer-bridge/bridge-options.ts';
import type { BridgeReport } from '../../trainer-bridge/bridge.ts';
import { IMAGE_TRANSFORMS } from '../../trainer-bridge/pixel-pool.ts';
import { allowedPrivateNetwork, integerIn, privateNetworkOption } from '../parse.ts';
import { bridgeOptionsOf, trainOnMixtureOptionsOf, trainOptions, type BridgeFlags, type TrainerFlags } from '../train-flags.ts';

/** Everything `m4data train` parses: the bridge's flags, the trainer's, and the dry run's. */
interface TrainCommandFlags extends BridgeFlags, TrainerFlags {
  dryRun?: boolean;
  mixture?: string;
  steps?: number;
  resumeState?: string[];
  saveState?: string;
  dump?: string;
  quiet?: boolean;
  allowPrivateNetwork?: boolean | string;
}

export function trainCommand(): Command {
  const command = new Command('train')
    .description(
      'train the ATUM model (TensorFlow.js) on the mixture, packed into IDEFICS sequences by the bridge; --dry-run streams the batches with no model',
    )
    .addOption(new Option('--mixture <MIX_DIR>', 'the mixture planned by m4data mix (a folder or s3://bucket/prefix holding plan.json) (required)'))
    .option('--dry-run', 'stream the batches with no model: print their shapes and contents, optionally dump them as .npy')
    .option(
      '--steps <n>',
      "training: optimizer steps (default: the plan's budget in steps of --tokens-per-step; a resumed run: its own); --dry-run: batches this rank yields, a " +
        "resumed run's included (default: the plan's tokens / (world size x batch size x seq len))",
      integerIn(1),
    )
    .option('--batch-size <n>', `sequences per batch on this rank (default ${DEFAULT_BATCH_SIZE})`, integerIn(1))
    .option('--seq-len <n>', "tokens per sequence (default: the profile's sequenceLength, 1024)", integerIn(16))
    .option(
      '--max-images <n>',
      `image slots per sequence, 602 KB of pixels each; an image beyond them is dropped with its placeholder tokens (default ${DEFAULT_MAX_IMAGES}: at 5, ` +
        `rows of the card's mixture fill with images first and half their tokens are padding)`,
      integerIn(1),
    )
    .option('--rank <r>', 'this rank (default: env RANK, else 0)', integerIn(0))
    .option('--world-size <w>', 'ranks in all (default: env WORLD_SIZE, else 1)', integerIn(1))
    .option('--mask-image-tokens', 'also set -100 in labels on <image> and <fake_token_around_image> (as open_flamingo did)')
    .addOption(
      new Option('--image-transform <name>', 'resize: the whole image squashed to 224x224 bicubic (IDEFICS); center-crop: shortest side to 224, centre cut')
        .choices([...IMAGE_TRANSFORMS])
        .default('resize'),
    )
    .option('--prefetch <n>', `batches packed and decoded ahead (default ${DEFAULT_PREFETCH})`, integerIn(1))
    .option('--workers <n>', 'pixel worker threads (default: the cores available)', integerIn(1))
    .option('--max-bad-shards <n>', 'corrupt source shards skipped (and reported) before the stream fails (default 3)', integerIn(0))
    .option(
      '--resume-state <state...>',
      "continue after the batch a state was saved at (a --save-state file, or a run directory's checkpoint); under another world size, every rank's state of " +
        "one step (training: with --resume, instead of the checkpoint's)",
    )
    .option('--save-state <state.json>', '--dry-run: write the bridge state after the last batch (the mixer state + packer position; a few hundred bytes)')
    .option(
      '--dump <DIR|->',
      "DIR: write each batch's tensors as DIR/batch-000000/<name>.npy; -: write them to stdout as a stream of .npy arrays, five per batch (logs go to stderr)",
    )
    .option('--quiet', '--dry-run: no line per batch, only the summary')
    .addOption(privateNetworkOption('a mixture or sources on http(s)'));
  for (const option of trainOptions()) command.addOption(option);
  return command
    .addHelpText(
      'after',
      `
Training: m4data train --mixture MIX_DIR --run-dir RUN [--steps N] [--model tiny] [--backend auto]
  logs each step (loss, z-loss, learning rate, grad norm, tokens/s, images/s, batch wait) and writes RUN/metrics.jsonl,
  RUN/loss.svg and a checkpoint every --checkpoint-every steps (trainable weights, optimizer state, step, the bridge's
  state). --resume continues exactly, with the run's own model, hyper-parameters and batch shape (a flag that changes
  a hyper-parameter is named in the log; one that changes the batch shape is refused); Ctrl-C saves a checkpoint and
  exits (status 130); --stop-at N stops after step N. A step whose loss or gradient norm is not finite stops the run
  (status 1) without saving over the last checkpoint. Hyper-parameters come from the mixture's profile (its training
  table); each flag above overrides one. Before allocating, the model's memory is estimated and a backend that cannot
  hold it is refused (the atum-9b and atum-80b shapes need a GPU backend).

Resuming under another world size: give every rank the states all ranks saved after the same batch
(--resume-state rank0.json rank1.json ..., or their run directories). Keep the mixture (MIX_DIR, its plan and seed),
--seq-len, --max-images, --steps and the global batch (world size x --batch-size); every sample of the mixture is then
read exactly once over both runs, a sample one rank had part-packed going on from its next window.

Every rank yields exactly as many batches: the bridge reads an endless stream of the mixture (it continues past the
plan by the same rule), so no rank runs dry before another. Ranks come from torchrun's RANK / WORLD_SIZE unless
--rank / --world-size are given. TensorFlow.js has no collectives: one process trains one replica; multi-GPU runs
are PyTorch ranks fed by the .npy stream (--dry-run --dump -, examples/pytorch_feed.py).

Per batch the five tensors, always in this order (the order of --dump -):
  input_ids [B, L] int32, attention_mask [B, L] int32, labels [B, L] int32 (-100 on padding),
  pixel_values [B, N, 3, 224, 224] float32 (CLIP-normalised; unused slots zero), image_attention_mask [B, L, N] int8.

Examples:
  m4data train --mixture out/mix --run-dir out/run --steps 30 --backend wasm --lr 1e-2 --tokens-per-step 1024
  m4data train --mixture out/mix --run-dir out/run9b --model atum-9b --init-from llama-7b/ clip-vit-h-14/ --export-hf out/run9b-hf
  m4data train --dry-run --mixture out/mix --steps 3
  m4data train --dry-run --mixture out/mix --steps 100 --dump out/batches
  RANK=1 WORLD_SIZE=8 m4data train --dry-run --mixture s3://bucket/mix --dump - | python3 examples/pytorch_feed.py -
Packing, windows of long documents, the masks and the state: trainer-bridge/README.md.
Exit status: 0 done; 1 the mixture unreadable, or training diverged; 2 bad usage; 3 corrupt source shards were skipped
(the summary names them and the samples lost); 130 training interrupted by Ctrl-C (a checkpoint of the last completed
step was saved, if there was one; a --dry-run interrupted saves nothing).`,
    )
    .action(async (flags: TrainCommandFlags) => {
      if (!flags.mixture) throw new M4Error('E_USAGE', 'cli', 'required option --mixture <MIX_DIR> is missing (make one with m4data mix)');
      const network = { allowPrivateNetwork: allowedPrivateNetwork(flags.allowPrivateNetwork) };
      // Loaded when the command runs: TensorFlow.js, the storage clients and the tokenizer are not needed for --help.
      const { openMixture } = await import('../../mixer/mixture.ts');
      const bridge = { ...bridgeOptionsOf(flags), rank: flags.rank ?? envInteger('RANK', 0), worldSize: flags.worldSize ?? envInteger('WORLD_SIZE', 1) };
      if (flags.dryRun) {
        const toStdout = flags.dump === '-';
        if (flags.saveState) await checkLocalOutputFile(flags.saveState, '--save-state');
        const resume = flags.resumeState ? await readStates(flags.resumeState) : undefined;
        const say = (line: string) => (toStdout ? process.stderr : process.stdout).write(`${line}\n`);
        const dump = flags.dump === undefined ? undefined : toStdout ? { stream: process.stdout } : { dir: flags.dump };
        const { dryRun } = await import('../../trainer-bridge/dry-run.ts');
        const result = await dryRun(await openMixture(flags.mixture, network), {
          ...bridge,
          steps: flags.steps,
          ...(resume ? { resume } : {}),
          ...(dump ? { dump } : {}),
          quiet: flags.quiet ?? false,
          say,
        });
        if (flags.saveState) await writeFileAtomically(flags.saveState, Buffer.from(`${JSON.stringify(result.state)}\n`));
        flagDataLoss(result.report);
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
      const log = (line: string) => process.stdout.write(`${line}\n`);
      try {
        const { trainOnMixture } = await import('../../trainer/train-on-mixture.ts');
        const { formatLoss } = await import('../../trainer-bridge/dry-run.ts');
        const resumeStates = flags.resumeState ? await readStates(flags.resumeState) : undefined;
        const { training, report } = await trainOnMixture(await openMixture(flags.mixture, network), {
          ...trainOnMixtureOptionsOf({ ...flags, runDir: flags.runDir }),
          bridge,
          ...(resumeStates ? { resumeStates } : {}),
          signal: controller.signal,
          log,
        });
        log(`\nthe mixture as delivered to the bridge (this rank):\n${formatRealised(report.mixture).trimEnd()}`);
        for (const line of formatLoss(report)) log(line);
        if (training.stoppedBy === 'abort') {
          log(
            training.endStep > 0
              ? `checkpoint at step ${training.endStep} in ${flags.runDir}; continue with the same command and --resume`
              : 'interrupted before the first step completed: no checkpoint was written',
          );
          process.exitCode = 130;
          return;
        }
        flagDataLoss(report);
      } finally {
        process.removeListener('SIGINT', interrupt);
      }
    });
}

/** Samples lost to corrupt shards make the run's result other than planned: exit 3, as `mix --materialize` does. */
function flagDataLoss(report: Pick<BridgeReport, 'mixture'>): void {
  if (report.mixture.badShards.length > 0) process.exitCode = ExitCode.BAD_DATA;
}

function envInteger(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  if (!/^\d+$/.test(value)) throw new M4Error('E_USAGE', 'cli', `environment variable ${name}=${JSON.stringify(value)} is not a whole number`);
  return Number(value);
}

/**
 * One state: this rank's; several: every rank's of an earlier world (checked by the bridge). A state is a file written
 * by --save-state, or a training run directory, whose checkpoint holds the bridge state of its step.
 */
async function readStates(paths: string[]): Promise<BridgeState | BridgeState[]> {
  const states: BridgeState[] = [];
  for (const path of paths) {
    if ((await stat(path).catch(() => undefined))?.isDirectory()) {
      const { readCheckpointInfo } = await import('../../trainer/checkpoint.ts');
      const run = await readCheckpointInfo(path);
      if (!run?.bridgeState) throw new M4Error('E_USAGE', 'cli', `--resume-state ${path}: a folder without a checkpoint holding a bridge state`);
      states.push(run.bridgeState);
      continue;
    }
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new M4Error('E_USAGE', 'cli', `--resume-state ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    try {
      states.push(JSON.parse(text) as BridgeState);
    } catch (err) {
      throw new M4Error('E_USAGE', 'cli', `--resume-state ${path} is not a bridge state saved by --save-state: ${(err as Error).message}`);
    }
  }
  return states.length === 1 ? states[0]! : states;
}
