import { mkdir } from 'node:fs/promises';
import { M4Error } from '../core/errors.ts';
import { loadProfile, type MixProfile } from '../mixer/profile.ts';
import type { Batch, BridgeState } from '../trainer-bridge/batch.ts';
import { selectBackend, type BackendChoice, type BackendName } from './backend.ts';
import { loadCheckpoint, readCheckpointInfo, saveCheckpoint, type CheckpointInfo } from './checkpoint.ts';
import { resolveHyperParameters, type HyperParameterOverrides, type HyperParameters } from './hyper-parameters.ts';
import { checkExportLocation, exportHf } from './hf/export.ts';
import { createInitialModel, initialModelConfig } from './hf/init-from.ts';
import { appendMetrics, formatStep, truncateMetrics, writeLossSvg, type StepMetrics } from './metrics.ts';
import { modelPreset, parameterCounts, type ModelConfig, type ParameterCounts } from './model-config.ts';
import { Trainer } from './trainer.ts';

/** Batches: an iterable already positioned where the run resumes, or a factory that starts one from a bridge state. */
export type BatchSource = AsyncIterable<Batch> | ((resumeFrom: BridgeState | undefined) => AsyncIterable<Batch>);

export interface RunTrainingOptions {
  batches: BatchSource;
  /** The data stream's resume point after the last batch it handed out; saved with each checkpoint. */
  bridgeState?: () => BridgeState;
  runDir: string;
  /** Optimizer steps of the whole run (the schedule's length); a resumed run continues to the same number. */
  steps: number;
  /** A preset name (`tiny`, `atum-9b`, `atum-80b`) or a config; default tiny. */
  model?: string | ModelConfig;
  /** Default auto. */
  backend?: BackendChoice;
  /** Mix profile (name or object): hyper-parameters and the run's identity. */
  profile: string | MixProfile;
  /** Hyper-parameters replacing the profile's. */
  overrides?: HyperParameterOverrides;
  /** Checkpoint every K steps (default 50); a run also checkpoints when it ends, stops or is aborted. */
  checkpointEvery?: number;
  /** Stop (after checkpointing) once step N is done: a planned preemption. */
  stopAt?: number;
  /** Continue from RUN's checkpoint; without it, a run directory holding a checkpoint is refused. */
  resume?: boolean;
  /** Aborting finishes nothing further: the last completed step is checkpointed and the function returns. */
  signal?: AbortSignal;
  /** Local Hugging Face checkpoints (LLaMA, CLIP or IDEFICS layout) the first weights come from (`hf/init-from.ts`). */
  initFrom?: string[];
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
  /** Path of the last checkpoint written (null if no step completed). */
  checkpoint: string | null;
}

const DEFAULT_CHECKPOINT_EVERY = 50;

/** Trains until `steps` (or stopAt, an abort, or the end of the data), logging, checkpointing and drawing the loss. */
export async function runTraining(options: RunTrainingOptions): Promise<RunTrainingResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const profile = typeof options.profile === 'string' ? await loadProfile(options.profile) : options.profile;
  const initFrom = options.initFrom ?? [];
  const init = await initialModelConfig(typeof options.model === 'object' ? options.model : modelPreset(options.model ?? 'tiny', profile.model), initFrom);
  const config = init.config;
  if (options.exportHf) await checkExportLocation(options.exportHf, '--export-hf');
  const checkpointEvery = options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
  if (!Number.isSafeInteger(checkpointEvery) || checkpointEvery < 1) throw new M4Error('E_USAGE', 'trainer', `checkpoint interval must be a whole number over 0 (got ${checkpointEvery})`);
  const hyper = resolveHyperParameters(profile, options.steps, options.overrides);

  await mkdir(options.runDir, { recursive: true });
  const existing = await readCheckpointInfo(options.runDir);
  if (existing && !options.resume) {
    throw new M4Error('E_USAGE', 'trainer', `${options.runDir} already holds a checkpoint at step ${existing.step}: resume it, or choose another run directory`, { runDir: options.runDir });
  }
  if (existing) checkCompatible(existing, config, profile.name, initFrom, options.runDir);

  const backend = await selectBackend(options.backend ?? 'auto');
  log(`backend ${backend.name}${backend.skipped.length > 0 ? ` (unavailable: ${backend.skipped.map((s) => s.name).join(', ')})` : ''}`);
  const model = await createInitialModel(config, initFrom);
  for (const line of init.summary) log(`init from ${line}`);
  const trainer = new Trainer(model, hyper);
  const parameters = parameterCounts(config);
  let startStep = 0;
  let bridgeState: BridgeState | null = null;
  const metrics: StepMetrics[] = [];
  let step = 0;
  let savedStep = 0;
  let checkpoint: string | null = null;
  let stoppedBy: RunTrainingResult['stoppedBy'] = 'steps';
  let microBatches = 0;
  let iterator: AsyncIterator<Batch> | undefined;
  // Set when an abort left a read in flight: an async generator's return() would wait for that read to finish.
  let readPending = false;

  const save = async () => {
    const info: CheckpointInfo = {
      format: 'm4data-trainer-checkpoint',
      version: 2,
      step,
      model: config,
      profile: profile.name,
      initFrom,
      hyperParameters: hyper,
      bridgeState,
    };
    checkpoint = await saveCheckpoint(options.runDir, model, trainer.optimizer, info);
    savedStep = step;
    await writeLossSvg(options.runDir);
  };

  try {
    if (existing) {
      const info = await loadCheckpoint(options.runDir, model, trainer.optimizer);
      startStep = step = savedStep = info.step;
      bridgeState = info.bridgeState;
      await truncateMetrics(options.runDir, startStep);
      log(`resuming ${options.runDir} at step ${startStep}`);
    } else {
      await truncateMetrics(options.runDir, 0);
    }
    const source = typeof options.batches === 'function' ? options.batches(bridgeState ?? undefined) : options.batches;
    iterator = source[Symbol.asyncIterator]();
    steps: while (step < hyper.steps) {
      if (options.signal?.aborted) {
        stoppedBy = 'abort';
        break;
      }
      if (options.stopAt !== undefined && step >= options.stopAt) {
        stoppedBy = 'stop-at';
        break;
      }
      const started = performance.now();
      let waited = 0;
      let tokens = 0;
      let images = 0;
      for (let micro = 0; microBatches === 0 || micro < microBatches; micro++) {
        const waitStart = performance.now();
        const next = await nextOrAbort(iterator, options.signal);
        waited += performance.now() - waitStart;
        if (next === 'aborted') readPending = true;
        if (next === 'aborted' || next.done) {
          stoppedBy = next === 'aborted' ? 'abort' : 'end-of-data';
          trainer.discard();
          break steps;
        }
        const batch = next.value;
        // Micro-batches per step: enough B x L batches to reach the tokens-per-step target.
        if (microBatches === 0) {
          microBatches = Math.max(1, Math.ceil(hyper.tokensPerStep / (batch.batchSize * batch.seqLen)));
          log(`${microBatches} micro-batch(es) of ${batch.batchSize} x ${batch.seqLen} tokens per step (target ${hyper.tokensPerStep} tokens)`);
        }
        const counted = trainer.accumulate(batch);
        tokens += counted.tokens;
        images += counted.images;
      }
      bridgeState = options.bridgeState?.() ?? null;
      const stats = trainer.update(step);
      step += 1;
      const seconds = (performance.now() - started) / 1000;
      const m: StepMetrics = {
        step,
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
      };
      metrics.push(m);
      await appendMetrics(options.runDir, m);
      log(formatStep(m, hyper.steps));
      if (step % checkpointEvery === 0) await save();
    }
    if (step > savedStep) await save();
    else await writeLossSvg(options.runDir);
    if (options.exportHf && (stoppedBy === 'steps' || stoppedBy === 'end-of-data')) {
      const exported = await exportHf(model, options.exportHf);
      log(`exported step ${step} as an IDEFICS checkpoint: ${exported.files.map((f) => `${options.exportHf}/${f}`).join(', ')}`);
    }
  } finally {
    const closing = iterator?.return?.();
    if (readPending) closing?.catch(() => {});
    else await closing;
    trainer.dispose();
    model.dispose();
  }
  log(`stopped by ${stoppedBy} at step ${step}${checkpoint ? `; checkpoint ${checkpoint}` : ''}`);
  return { backend: backend.name, model: config, parameters, hyperParameters: hyper, startStep, endStep: step, stoppedBy, metrics, checkpoint };
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

/** Refuses to resume a checkpoint of another model shape, profile or initial weights, saying what differs. */
function checkCompatible(info: CheckpointInfo, config: ModelConfig, profile: string, initFrom: string[], runDir: string): void {
  const problems: string[] = [];
  if (info.profile !== profile) problems.push(`profile ${info.profile}, not ${profile}`);
  if (JSON.stringify(info.model) !== JSON.stringify(config)) {
    const differing = Object.keys(config).filter((k) => JSON.stringify(info.model[k as keyof ModelConfig]) !== JSON.stringify(config[k as keyof ModelConfig]));
    problems.push(`model ${info.model.name} (differs in ${differing.join(', ')}), not ${config.name}`);
  }
  if (JSON.stringify(info.initFrom) !== JSON.stringify(initFrom)) problems.push(`weights initialised from [${info.initFrom.join(', ')}], not [${initFrom.join(', ')}]`);
  if (problems.length > 0) {
    throw new M4Error('E_USAGE', 'trainer', `${runDir} holds a checkpoint of another run: ${problems.join('; ')}`, { runDir, problems });
  }
}
