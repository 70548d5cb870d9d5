import { isM4Error } from '../core/errors.ts';
import type { Batch, BridgeState } from '../trainer-bridge/batch.ts';
import { selectBackend, type BackendChoice, type BackendName } from './backend.ts';
import { loadCheckpoint, saveCheckpoint, type CheckpointInfo, type TrainingBatchShape } from './checkpoint.ts';
import type { HyperParameters } from './hyper-parameters.ts';
import { exportHf } from './hf/export.ts';
import { createInitialModel } from './hf/init-from.ts';
import { checkTrainingMemory } from './memory-estimate.ts';
import { appendMetrics, formatStep, truncateMetrics, writeLossSvg, type StepMetrics } from './metrics.ts';
import { parameterCounts, type ModelConfig, type ParameterCounts } from './model-config.ts';
import type { RunSettings } from './run-settings.ts';
import { Trainer } from './trainer.ts';

/** Batches from a bridge state (the checkpoint's when resuming, none for a new run): already positioned there. */
export type BatchSource = (resumeFrom: BridgeState | undefined) => AsyncIterable<Batch>;

export interface RunTrainingOptions {
  /** A directory opened by `openRunDirectory`, and its checkpoint when resuming. */
  runDir: string;
  resumeFrom: CheckpointInfo | null;
  /** Model, hyper-parameters and frozen weights, as `resolveRunSettings` gives them. */
  settings: RunSettings;
  /** The profile the run belongs to (a checkpoint of another profile is never resumed). */
  profile: string;
  batches: BatchSource;
  /** The batches' shape (saved in checkpoints) and how many make one optimizer step. */
  batchShape: TrainingBatchShape;
  microBatches: number;
  /** The data stream's resume point after the last batch it handed out; saved with each checkpoint. */
  bridgeState?: () => BridgeState;
  /** Default auto. */
  backend?: BackendChoice;
  /** Checkpoint every K steps (default 50); a run also checkpoints when it ends, stops or is aborted. */
  checkpointEvery?: number;
  /** Stop (after checkpointing) once step N is done: a planned preemption. */
  stopAt?: number;
  /** Aborting finishes nothing further: the last completed step is checkpointed and the function returns. */
  signal?: AbortSignal;
  /** Writes the model as an IDEFICS checkpoint in this folder when the run reaches its last step (`hf/export.ts`). */
  exportHf?: string;
  /** One line per step and a few about the run; default console.log. */
  log?: (line: string) => void;
}

export interface RunTrainingResult {
  backend: BackendName;
  model: ModelConfig;
  parameters: ParameterCounts;
  hyperParameters: HyperParameters;
  /** Steps completed before this call (a resumed checkpoint's step) and after it. */
  startStep: number;
  endStep: number;
  stoppedBy: 'steps' | 'stop-at' | 'abort' | 'end-of-data';
  /** The metrics of the steps this call ran. */
  metrics: StepMetrics[];
  /** Path of the checkpoint written last by this call (null if it wrote none). */
  checkpoint: string | null;
}

const DEFAULT_CHECKPOINT_EVERY = 50;

/**
 * Trains until the settings' steps (or stopAt, an abort, or the end of the data), logging each step, checkpointing
 * every `checkpointEvery` steps and at the end. A step whose loss or gradient norm is not finite is not applied: the
 * run stops with E_DIVERGED naming it, and the last checkpoint (of finite weights) is kept as it is.
 */
export async function runTraining(options: RunTrainingOptions): Promise<RunTrainingResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const { config, hyper, initFrom } = options.settings;
  const checkpointEvery = options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
  const backend = await selectBackend(options.backend ?? 'auto');
  log(`backend ${backend.name}${backend.skipped.length > 0 ? ` (unavailable: ${backend.skipped.map((s) => s.name).join(', ')})` : ''}`);
  checkTrainingMemory(config, options.batchShape, backend.name);

  const model = await createInitialModel(config, initFrom);
  for (const line of options.settings.initSummary) log(`init from ${line}`);
  const trainer = new Trainer(model, hyper);
  const run: RunState = { step: 0, savedStep: 0, checkpoint: null, bridgeState: null };
  const save = async () => {
    const info: CheckpointInfo = {
      format: 'm4data-trainer-checkpoint',
      version: 2,
      step: run.step,
      model: config,
      profile: options.profile,
      initFrom,
      hyperParameters: hyper,
      bridgeState: run.bridgeState,
      batchShape: options.batchShape,
    };
    run.checkpoint = await saveCheckpoint(options.runDir, model, trainer.optimizer, info);
    run.savedStep = run.step;
    await writeLossSvg(options.runDir);
  };

  let startStep = 0;
  const metrics: StepMetrics[] = [];
  let stoppedBy: RunTrainingResult['stoppedBy'] = 'steps';
  let iterator: AsyncIterator<Batch> | undefined;
  // Set when an abort left a read in flight: an async generator's return() would wait for that read to finish.
  let readPending = false;
  try {
    if (options.resumeFrom) {
      const info = await loadCheckpoint(options.runDir, model, trainer.optimizer);
      startStep = run.step = run.savedStep = info.step;
      run.bridgeState = info.bridgeState;
      log(`resuming ${options.runDir} at step ${startStep}`);
    }
    await truncateMetrics(options.runDir, startStep);
    iterator = options.batches(run.bridgeState ?? undefined)[Symbol.asyncIterator]();
    log(
      `${options.microBatches} micro-batch(es) of ${options.batchShape.batchSize} x ${options.batchShape.seqLen} tokens per step (target ` +
        `${hyper.tokensPerStep} tokens)`,
    );
    while (run.step < hyper.steps) {
      if (options.signal?.aborted) {
        stoppedBy = 'abort';
        break;
      }
      if (options.stopAt !== undefined && run.step >= options.stopAt) {
        stoppedBy = 'stop-at';
        break;
      }
      const step = await trainStep(trainer, iterator, options.microBatches, run.step, options.signal);
      if (step.stop) {
        stoppedBy = step.stop;
        readPending = step.stop === 'abort';
        break;
      }
      run.bridgeState = options.bridgeState?.() ?? null;
      run.step += 1;
      metrics.push(step.metrics);
      await appendMetrics(options.runDir, step.metrics);
      log(formatStep(step.metrics, hyper.steps));
      if (run.step % checkpointEvery === 0) await save();
    }
    if (run.step > run.savedStep) await save();
    else await writeLossSvg(options.runDir);
    if (options.exportHf && (stoppedBy === 'steps' || stoppedBy === 'end-of-data')) {
      const exported = await exportHf(model, options.exportHf);
      log(`exported step ${run.step} as an IDEFICS checkpoint: ${exported.files.map((f) => `${options.exportHf}/${f}`).join(', ')}`);
    }
  } catch (err) {
    // Nothing is saved over the last checkpoint: the weights that led to a non-finite step may already be out of range.
    if (isM4Error(err, 'E_DIVERGED')) await writeLossSvg(options.runDir);
    throw err;
  } finally {
    const closing = iterator?.return?.();
    if (readPending) closing?.catch(() => {});
    else await closing;
    trainer.dispose();
    model.dispose();
  }
  log(`stopped by ${stoppedBy} at step ${run.step}${run.checkpoint ? `; checkpoint ${run.checkpoint}` : ''}`);
  return {
    backend: backend.name,
    model: config,
    parameters: parameterCounts(config),
    hyperParameters: hyper,
    startStep,
    endStep: run.step,
    stoppedBy,
    metrics,
    checkpoint: run.checkpoint,
  };
}

interface RunState {
  step: number;
  savedStep: number;
  checkpoint: string | null;
  bridgeState: BridgeState | null;
}

type StepOutcome = { stop: 'abort' | 'end-of-data' } | { stop?: undefined; metrics: StepMetrics };

/** One optimizer step (0-based `step`): `microBatches` batches accumulated, then the update. */
async function trainStep(
  trainer: Trainer,
  iterator: AsyncIterator<Batch>,
  microBatches: number,
  step: number,
  signal: AbortSignal | undefined,
): Promise<StepOutcome> {
  const started = performance.now();
  let waited = 0;
  let tokens = 0;
  let images = 0;
  for (let micro = 0; micro < microBatches; micro++) {
    const waitStart = performance.now();
    const next = await nextOrAbort(iterator, signal);
    waited += performance.now() - waitStart;
    if (next === 'aborted' || next.done) {
      trainer.discard();
      return { stop: next === 'aborted' ? 'abort' : 'end-of-data' };
    }
    const counted = trainer.accumulate(next.value);
    tokens += counted.tokens;
    images += counted.images;
  }
  const stats = trainer.update(step);
  const seconds = (performance.now() - started) / 1000;
  return {
    metrics: {
      step: step + 1,
      loss: stats.loss,
      zLoss: stats.zLoss,
      objective: stats.objective,
      learningRate: stats.learningRate,
      gradNorm: stats.gradNorm,
      tokensPerSecond: tokens / seconds,
      imagesPerSecond: images / seconds,
      batchWaitSeconds: waited / 1000,
      stepSeconds: seconds,
      tokens,
      images,
    },
  };
}

/** The iterator's next result, or 'aborted' as soon as the signal fires (the pending read is left to `return()`). */
async function nextOrAbort(iterator: AsyncIterator<Batch>, signal: AbortSignal | undefined): Promise<IteratorResult<Batch> | 'aborted'> {
  if (!signal) return iterator.next();
  if (signal.aborted) return 'aborted';
  let onAbort!: () => void;
  const aborted = new Promise<'aborted'>((resolve) => {
    onAbort = () => resolve('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([iterator.next(), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
