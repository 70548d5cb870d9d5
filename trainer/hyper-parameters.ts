import { M4Error } from '../core/errors.ts';
import type { MixProfile } from '../mixer/profile.ts';

/** The optimisation settings of one run: the profile's training table, scaled to the run's steps, then overrides. */
export interface HyperParameters {
  steps: number;
  learningRate: number;
  finalLearningRate: number;
  warmupSteps: number;
  weightDecay: number;
  adamBetas: [number, number];
  adamEpsilon: number;
  gradientClipping: number;
  zLossWeight: number;
  /** Target tokens per optimizer step; micro-batches are accumulated to reach it. */
  tokensPerStep: number;
}

/** Any value replacing the profile's; Adam's betas one at a time. */
export type HyperParameterOverrides = Partial<Omit<HyperParameters, 'steps' | 'adamBetas'>> & { adamBeta1?: number; adamBeta2?: number };

const ADAM_EPSILON = 1e-8;

/**
 * The profile's values with the warmup scaled from the card's run (`warmupSteps` of `maxSteps`) to `steps`, so a short
 * run keeps the card's shape; any override replaces the derived value.
 */
export function resolveHyperParameters(profile: MixProfile, steps: number, overrides: HyperParameterOverrides = {}): HyperParameters {
  if (!Number.isSafeInteger(steps) || steps < 1) throw new M4Error('E_USAGE', 'trainer', `steps must be a whole number over 0 (got ${steps})`);
  const t = profile.training;
  const { adamBeta1, adamBeta2, ...rest } = overrides;
  const derived: HyperParameters = {
    steps,
    learningRate: t.learningRate.initial,
    finalLearningRate: t.learningRate.final,
    warmupSteps: Math.round((t.learningRate.warmupSteps * steps) / profile.maxSteps),
    weightDecay: t.weightDecay,
    adamBetas: [adamBeta1 ?? t.adamBetas[0], adamBeta2 ?? t.adamBetas[1]],
    adamEpsilon: ADAM_EPSILON,
    gradientClipping: t.gradientClipping,
    zLossWeight: t.zLossWeight,
    tokensPerStep: profile.tokensPerStep,
  };
  const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  const out = { ...derived, ...defined } as HyperParameters;
  if (out.warmupSteps > steps) throw new M4Error('E_USAGE', 'trainer', `warmup of ${out.warmupSteps} steps exceeds the run's ${steps} steps`);
  return out;
}

/**
 * Learning rate of optimizer step `step` (0-based): linear warmup to the initial rate over `warmupSteps`
 * (`initial * (step + 1) / warmup`), then linear decay that reaches the final rate at step `steps`.
 */
export function learningRateAt(step: number, h: Pick<HyperParameters, 'steps' | 'learningRate' | 'finalLearningRate' | 'warmupSteps'>): number {
  if (step < h.warmupSteps) return (h.learningRate * (step + 1)) / h.warmupSteps;
  const progress = (step - h.warmupSteps) / Math.max(1, h.steps - h.warmupSteps);
  return h.learningRate + (h.finalLearningRate - h.learningRate) * Math.min(1, progress);
}

/** Batches accumulated into one optimizer step: enough B x L batches to reach the tokens-per-step target. */
export function microBatchesPerStep(tokensPerStep: number, batchSize: number, seqLen: number): number {
  return Math.max(1, Math.ceil(tokensPerStep / (batchSize * seqLen)));
}
