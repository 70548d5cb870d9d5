import { InvalidArgumentError, Option } from 'commander';
import { integerIn } from './parse.ts';
import { BACKENDS, type BackendChoice } from '../trainer/backend.ts';
import type { HyperParameterOverrides } from '../trainer/hyper-parameters.ts';
import { MODEL_PRESETS } from '../trainer/model-config.ts';
import type { RunTrainingOptions } from '../trainer/run-training.ts';

/** The trainer's flags for `m4data train`, as commander Options (the CLI adds its own, e.g. --mixture). */

function numberAtLeast(min: number, below?: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || (below !== undefined && n >= below)) {
      throw new InvalidArgumentError(`expected a number of at least ${min}${below === undefined ? '' : ` and below ${below}`}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

export const DEFAULT_STEPS = 100;

export function trainOptions(): Option[] {
  return [
    new Option('--run-dir <dir>', 'run directory: metrics.jsonl, loss.svg, checkpoint.safetensors').makeOptionMandatory(),
    new Option('--steps <n>', "optimizer steps of the run (the learning-rate schedule's length)").argParser(integerIn(1)).default(DEFAULT_STEPS),
    new Option('--model <preset>', 'model shape').choices(Object.keys(MODEL_PRESETS)).default('tiny'),
    new Option('--backend <name>', 'TensorFlow.js backend; auto takes the first installed of tfjs-node-gpu, tfjs-node, wasm, cpu').choices([...BACKENDS]).default('auto'),
    new Option('--checkpoint-every <n>', 'checkpoint every n steps (also on stop, Ctrl-C and the end)').argParser(integerIn(1)).default(50),
    new Option('--stop-at <n>', 'checkpoint and stop after step n (a planned preemption; resume with --resume)').argParser(integerIn(1)),
    new Option('--resume', "continue from the run directory's checkpoint (same model, profile and --init-from)"),
    new Option('--init-from <path...>', 'local Hugging Face checkpoints (folders or .safetensors / index files) in the LlamaForCausalLM, CLIP or IdeficsForVisionText2Text layout: the first weights, and the model shape from their config.json (default: seeded random)'),
    new Option('--export-hf <dir>', 'when the run reaches its last step, write the model there as an IdeficsForVisionText2Text checkpoint (config.json, model.safetensors)'),
    new Option('--lr <rate>', "peak learning rate (default: the profile's initial rate)").argParser(numberAtLeast(0)),
    new Option('--final-lr <rate>', "learning rate at the last step (default: the profile's final rate)").argParser(numberAtLeast(0)),
    new Option('--warmup-steps <n>', "linear warmup steps (default: the profile's warmup scaled from its max steps to --steps)").argParser(integerIn(0)),
    new Option('--weight-decay <w>', "decoupled weight decay on trainable matrices (default: the profile's, card 0.1)").argParser(numberAtLeast(0)),
    new Option('--adam-beta1 <b>', "Adam beta1 (default: the profile's, card 0.9)").argParser(numberAtLeast(0, 1)),
    new Option('--adam-beta2 <b>', "Adam beta2 (default: the profile's, card 0.999)").argParser(numberAtLeast(0, 1)),
    new Option('--grad-clip <norm>', "global gradient-norm clip, 0 for none (default: the profile's, card 1.0)").argParser(numberAtLeast(0)),
    new Option('--z-loss-weight <w>', "z-loss weight (default: the profile's, card 1e-3)").argParser(numberAtLeast(0)),
    new Option('--tokens-per-step <n>', "tokens per optimizer step, reached by gradient accumulation (default: the profile's, card 1.31M for 9B)").argParser(integerIn(1)),
  ];
}

/** What commander parses from `trainOptions()`. */
export interface TrainFlags {
  runDir: string;
  steps: number;
  model: string;
  backend: BackendChoice;
  checkpointEvery: number;
  stopAt?: number;
  resume?: boolean;
  initFrom?: string[];
  exportHf?: string;
  lr?: number;
  finalLr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  adamBeta1?: number;
  adamBeta2?: number;
  gradClip?: number;
  zLossWeight?: number;
  tokensPerStep?: number;
}

/** The parsed flags as runTraining options; the caller adds batches, bridgeState, profile, signal and log. */
export function trainingOptionsFromFlags(flags: TrainFlags): Omit<RunTrainingOptions, 'batches' | 'profile'> {
  const overrides: HyperParameterOverrides = {
    learningRate: flags.lr,
    finalLearningRate: flags.finalLr,
    warmupSteps: flags.warmupSteps,
    weightDecay: flags.weightDecay,
    gradientClipping: flags.gradClip,
    zLossWeight: flags.zLossWeight,
    tokensPerStep: flags.tokensPerStep,
    adamBeta1: flags.adamBeta1,
    adamBeta2: flags.adamBeta2,
  };
  return {
    runDir: flags.runDir,
    steps: flags.steps,
    model: flags.model,
    backend: flags.backend,
    checkpointEvery: flags.checkpointEvery,
    stopAt: flags.stopAt,
    resume: flags.resume ?? false,
    initFrom: flags.initFrom,
    exportHf: flags.exportHf,
    overrides,
  };
}
