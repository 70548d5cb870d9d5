import { M4Error } from '../core/errors.ts';
import type { Mixture } from '../mixer/mixture-stream-types.ts';
import { resolveBridgeOptions, type BridgeOptions } from '../trainer-bridge/bridge-options.ts';
import type { BridgeState } from '../trainer-bridge/batch.ts';
import { openBridge, type BridgeReport, type BridgeStream } from '../trainer-bridge/bridge.ts';
import type { BackendChoice } from './backend.ts';
import type { CheckpointInfo, TrainingBatchShape } from './checkpoint.ts';
import { microBatchesPerStep, type HyperParameterOverrides } from './hyper-parameters.ts';
import { checkExportLocation } from './hf/export.ts';
import { openRunDirectory } from './run-directory.ts';
import { resolveRunSettings } from './run-settings.ts';
import { runTraining, type RunTrainingResult } from './run-training.ts';

/** The bridge's options a training run sets (its steps, resume point and signal come from the run). */
export type TrainingBridgeOptions = Omit<BridgeOptions, 'steps' | 'resume' | 'signal'>;

export interface TrainOnMixtureOptions {
  runDir: string;
  /** Continue from the run directory's checkpoint: every setting comes from it unless given here. */
  resume?: boolean;
  /** A model preset (default tiny, or the checkpoint's). */
  model?: string;
  /** Optimizer steps (default: the plan's budget in steps of the run's tokens per step, at least 1). */
  steps?: number;
  overrides?: HyperParameterOverrides;
  /** Hugging Face checkpoints the first weights (and the model shape) come from; a resumed run's own by default. */
  initFrom?: string[];
  /** Where to write the model as an IDEFICS checkpoint once the run reaches its last step (checked before training). */
  exportHf?: string;
  backend?: BackendChoice;
  checkpointEvery?: number;
  stopAt?: number;
  /** The batches' shape and stream (default: the bridge's defaults, or the checkpoint's shape). */
  bridge?: TrainingBridgeOptions;
  /** With `resume`: the bridge states to go on from instead of the checkpoint's (every rank's, under another world size). */
  resumeStates?: BridgeState | BridgeState[];
  signal?: AbortSignal;
  log: (line: string) => void;
}

export interface TrainOnMixtureResult {
  training: RunTrainingResult;
  /** Where the bridge's tokens and images went, and what the mixture delivered, against the plan. */
  report: BridgeReport;
}

/**
 * Trains on a mixture: the bridge's batches (this rank's, endless underneath so every rank gets as many) feed
 * `runTraining`; each checkpoint holds the bridge's state, so a resumed run continues with the exact next batches.
 * One optimizer step takes ceil(tokens per step / (B x L)) batches, so the bridge is asked for steps x that many.
 */
export async function trainOnMixture(mixture: Mixture, options: TrainOnMixtureOptions): Promise<TrainOnMixtureResult> {
  const { runDir, log } = options;
  const resumeFrom = await openRunDirectory(runDir, options.resume ?? false);
  if (options.exportHf) await checkExportLocation(options.exportHf, '--export-hf');
  const shape = batchShapeOf(options.bridge ?? {}, resumeFrom);
  const resolved = resolveBridgeOptions(shape, mixture.plan);
  const settings = await resolveRunSettings(
    { profile: mixture.profile, model: options.model, steps: options.steps, overrides: options.overrides, initFrom: options.initFrom, resumeFrom },
    (tokensPerStep) => Math.max(1, Math.round(mixture.plan.budget.tokens / tokensPerStep)),
    runDir,
  );
  for (const change of settings.changed) log(`changed on resume: ${change}`);
  for (const note of resolved.notes) log(note);
  const microBatches = microBatchesPerStep(settings.hyper.tokensPerStep, resolved.batchSize, resolved.seqLen);
  log(
    `training ${settings.hyper.steps} steps of ${microBatches} batch(es) of ${resolved.batchSize} x ${resolved.seqLen} tokens from ${mixture.location} ` +
      `(profile ${mixture.profile.name})`,
  );

  let bridge: BridgeStream | undefined;
  const training = await runTraining({
    runDir,
    resumeFrom,
    settings,
    profile: mixture.profile.name,
    batchShape: {
      batchSize: resolved.batchSize,
      seqLen: resolved.seqLen,
      maxImages: resolved.maxImages,
      maskImageTokens: resolved.maskImageTokens,
      imageTransform: resolved.imageTransform,
    },
    microBatches,
    batches: (resumeState) => {
      const resume = resumeState && options.resumeStates ? statesOfStep(options.resumeStates, resumeState) : resumeState;
      bridge = openBridge(mixture, {
        ...shape,
        steps: settings.hyper.steps * microBatches,
        ...(resume ? { resume } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return bridge;
    },
    bridgeState: () => bridge!.state(),
    ...(options.backend ? { backend: options.backend } : {}),
    ...(options.checkpointEvery !== undefined ? { checkpointEvery: options.checkpointEvery } : {}),
    ...(options.stopAt !== undefined ? { stopAt: options.stopAt } : {}),
    ...(options.exportHf ? { exportHf: options.exportHf } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    log,
  });
  if (!bridge) throw new M4Error('E_INPUT', 'trainer', 'the training ended before reading any batch');
  return { training, report: bridge.report() };
}

/**
 * The batch shape of the run: as given for a new run; a resumed run's own unless a value given differs, which is
 * refused (the checkpoint's bridge state resumes only batches of the same shape).
 */
function batchShapeOf(given: TrainingBridgeOptions, resumeFrom: CheckpointInfo | null): TrainingBridgeOptions {
  if (!resumeFrom) return given;
  const saved: Partial<TrainingBatchShape> = resumeFrom.batchShape;
  for (const key of ['batchSize', 'seqLen', 'maxImages', 'maskImageTokens', 'imageTransform'] as const) {
    const value = given[key];
    if (value !== undefined && saved[key] !== undefined && value !== saved[key]) {
      throw new M4Error(
        'E_USAGE',
        'trainer',
        `the run was trained on batches with ${key} ${String(saved[key])}; resuming with ${String(value)} would change its batches: leave it out to keep the ` +
          `run's`,
        { key },
      );
    }
  }
  const defined = Object.fromEntries(Object.entries(saved).filter(([, v]) => v !== undefined)) as Partial<TrainingBridgeOptions>;
  return { ...given, ...defined } as TrainingBridgeOptions;
}

/** States given to go on from must be of the checkpoint's step: the trainer goes on from that step. */
function statesOfStep(states: BridgeState | BridgeState[], checkpoint: BridgeState): BridgeState | BridgeState[] {
  for (const state of Array.isArray(states) ? states : [states]) {
    if (state?.batches !== checkpoint.batches) {
      throw new M4Error(
        'E_USAGE',
        'trainer',
        `--resume-state: a state after batch ${state?.batches}, but the checkpoint is after batch ${checkpoint.batches}: give the states saved with this ` +
          `checkpoint`,
      );
    }
  }
  return states;
}
