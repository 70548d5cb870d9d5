import type { MixProfile } from '../../mixer/profile.ts';
import { SyntheticBatches } from '../../sandbox/synthetic-batches.ts';
import { microBatchesPerStep, type HyperParameterOverrides } from '../../trainer/hyper-parameters.ts';
import { openRunDirectory } from '../../trainer/run-directory.ts';
import { resolveRunSettings } from '../../trainer/run-settings.ts';
import { runTraining, type BatchSource } from '../../trainer/run-training.ts';

export const SYNTHETIC_SHAPE = { batchSize: 1, seqLen: 32, pairsPerRow: 2 };

export interface SyntheticRunOptions {
  profile: MixProfile;
  /** Default 8; a resumed run's own unless given. */
  steps?: number;
  model?: string;
  overrides?: HyperParameterOverrides;
  initFrom?: string[];
  exportHf?: string;
  resume?: boolean;
  stopAt?: number;
  checkpointEvery?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
  batches?: BatchSource;
}

/**
 * A run as trainOnMixture makes one (run directory, settings, the loop), on the synthetic captions, resumable through
 * their state: for the trainer's tests, which need no mixture.
 */
export async function synthesisedRun(runDir: string, options: SyntheticRunOptions) {
  const data = new SyntheticBatches({ ...SYNTHETIC_SHAPE, classes: 2 });
  const resumeFrom = await openRunDirectory(runDir, options.resume ?? false);
  const settings = await resolveRunSettings(
    { profile: options.profile, model: options.model, steps: options.steps, overrides: options.overrides, initFrom: options.initFrom, resumeFrom },
    () => 8,
    runDir,
  );
  return runTraining({
    runDir,
    resumeFrom,
    settings,
    profile: options.profile.name,
    batches: options.batches ?? ((state) => data.batches(state)),
    bridgeState: () => data.state(),
    batchShape: { batchSize: SYNTHETIC_SHAPE.batchSize, seqLen: SYNTHETIC_SHAPE.seqLen, maxImages: 2, maskImageTokens: false, imageTransform: 'resize' },
    microBatches: microBatchesPerStep(settings.hyper.tokensPerStep, SYNTHETIC_SHAPE.batchSize, SYNTHETIC_SHAPE.seqLen),
    backend: 'wasm',
    checkpointEvery: options.checkpointEvery ?? 3,
    ...(options.stopAt !== undefined ? { stopAt: options.stopAt } : {}),
    ...(options.exportHf ? { exportHf: options.exportHf } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    log: options.log ?? (() => {}),
  });
}
