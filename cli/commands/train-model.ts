import { M4Error } from '../../core/errors.ts';
import type { Mixture } from '../../mixer/mixture-stream-types.ts';
import { formatRealised } from '../../mixer/plan-report.ts';
import { openBridge, type BridgeReport, type BridgeStream } from '../../trainer-bridge/bridge.ts';
import { resolveBridgeOptions, type BridgeOptions } from '../../trainer-bridge/bridge-options.ts';
import type { BridgeState } from '../../trainer-bridge/batch.ts';
import { runTraining, type RunTrainingResult } from '../../trainer/run-training.ts';
import { trainingOptionsFromFlags, type TrainFlags as TrainerFlags } from '../train-flags.ts';

/** The bridge's flags, shared by dry runs and training. */
export type BridgeFlags = Pick<BridgeOptions, 'batchSize' | 'seqLen' | 'maxImages' | 'rank' | 'worldSize' | 'maskImageTokens' | 'imageTransform' | 'prefetch' | 'workers' | 'maxBadShards'>;

/** The bridge's options as the flags give them (undefined: the bridge's default). */
export function bridgeOptionsOf(flags: BridgeFlags): BridgeFlags {
  const { batchSize, seqLen, maxImages, rank, worldSize, maskImageTokens, imageTransform, prefetch, workers, maxBadShards } = flags;
  return { batchSize, seqLen, maxImages, rank, worldSize, maskImageTokens, imageTransform, prefetch, workers, maxBadShards };
}

/** What `m4data train` (without --dry-run) takes: the trainer's flags and the bridge's shape of the batches. */
export type TrainModelFlags = Omit<TrainerFlags, 'steps'> & {
  /** Optimizer steps (default: the plan's budget in steps of the run's tokens per step, at least 1). */
  steps?: number;
  /** With --resume: the bridge states to go on from instead of the checkpoint's (every rank's, under another world size). */
  resumeStates?: BridgeState | BridgeState[];
} & BridgeFlags;

export interface TrainModelResult {
  training: RunTrainingResult;
  /** Where the bridge's tokens and images went, and what the mixture delivered, against the plan. */
  report: BridgeReport;
}

/**
 * Trains on the mixture: the bridge's batches (this rank's, endless underneath so every rank gets as many) feed
 * `runTraining`; each checkpoint holds the bridge's state, so `--resume` continues with the exact next batches.
 * One optimizer step takes ceil(tokens per step / (B x L)) batches, so the bridge is asked for steps x that many.
 */
export async function runTrainModel(mixture: Mixture, flags: TrainModelFlags, io: { log: (line: string) => void; signal?: AbortSignal }): Promise<TrainModelResult> {
  const profile = mixture.profile;
  const tokensPerStep = flags.tokensPerStep ?? profile.tokensPerStep;
  const steps = flags.steps ?? Math.max(1, Math.round(mixture.plan.budget.tokens / tokensPerStep));
  const shape = bridgeOptionsOf(flags);
  const { batchSize, seqLen } = resolveBridgeOptions(shape, mixture.plan);
  const microBatches = Math.max(1, Math.ceil(tokensPerStep / (batchSize * seqLen)));
  io.log(`training ${steps} steps of ${microBatches} batch(es) of ${batchSize} x ${seqLen} tokens from ${mixture.location} (profile ${profile.name})`);

  let bridge: BridgeStream | undefined;
  const training = await runTraining({
    ...trainingOptionsFromFlags({ ...flags, steps }),
    profile,
    batches: (resumeFrom: BridgeState | undefined) => {
      const resume = resumeFrom && flags.resumeStates ? checkpointStates(flags.resumeStates, resumeFrom) : resumeFrom;
      bridge = openBridge(mixture, { ...shape, steps: steps * microBatches, ...(resume ? { resume } : {}), ...(io.signal ? { signal: io.signal } : {}) });
      return bridge;
    },
    bridgeState: () => bridge!.state(),
    ...(io.signal ? { signal: io.signal } : {}),
    log: io.log,
  });
  if (!bridge) throw new M4Error('E_INPUT', 'cli', 'the training ended before reading any batch');
  const report = bridge.report();
  io.log(`\nthe mixture as delivered to the bridge (this rank):\n${formatRealised(report.mixture).trimEnd()}`);
  return { training, report };
}

/** States given with --resume-state must be of the checkpoint's step: the trainer goes on from that step. */
function checkpointStates(states: BridgeState | BridgeState[], checkpoint: BridgeState): BridgeState | BridgeState[] {
  for (const state of Array.isArray(states) ? states : [states]) {
    if (state?.batches !== checkpoint.batches) {
      throw new M4Error('E_USAGE', 'cli', `--resume-state: a state after batch ${state?.batches}, but the checkpoint is after batch ${checkpoint.batches}: give the states saved with this checkpoint`);
    }
  }
  return states;
}
