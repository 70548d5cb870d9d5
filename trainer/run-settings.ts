import { M4Error } from '../core/errors.ts';
import type { MixProfile } from '../mixer/profile.ts';
import type { CheckpointInfo } from './checkpoint.ts';
import { resolveHyperParameters, type HyperParameterOverrides, type HyperParameters } from './hyper-parameters.ts';
import { initialModelConfig } from './hf/init-from.ts';
import { modelPreset, type ModelConfig } from './model-config.ts';

/**
 * What a run trains with. A new run takes the profile's training table and the model preset (default tiny); a resumed
 * run takes everything from its checkpoint, so resuming needs no flag repeated, and only a value given explicitly
 * changes it (each change is named, so none happens silently). The model shape and profile never change on resume.
 */
export interface RunRequest {
  profile: MixProfile;
  /** A preset name; default `tiny`, or the checkpoint's. */
  model?: string;
  /** Optimizer steps of the whole run; default `defaultSteps(tokensPerStep)`, or the checkpoint's. */
  steps?: number;
  overrides?: HyperParameterOverrides;
  /** Hugging Face checkpoints the first weights come from (and the model shape, from their config.json); default none, or the checkpoint's. */
  initFrom?: string[];
  /** The run directory's checkpoint when resuming. */
  resumeFrom: CheckpointInfo | null;
}

export interface RunSettings {
  config: ModelConfig;
  hyper: HyperParameters;
  initFrom: string[];
  /** What the checkpoints given to initFrom hold, a line each, for the log. */
  initSummary: string[];
  /** On resume: each value given that differs from the checkpoint's (`lr 9.4e-3 -> 1e-2`). */
  changed: string[];
}

export async function resolveRunSettings(request: RunRequest, defaultSteps: (tokensPerStep: number) => number, runDir: string): Promise<RunSettings> {
  const { profile, resumeFrom } = request;
  if (!resumeFrom) {
    const tokensPerStep = request.overrides?.tokensPerStep ?? profile.tokensPerStep;
    const initFrom = request.initFrom ?? [];
    const init = await initialModelConfig(modelPreset(request.model ?? 'tiny', profile.model), initFrom);
    return {
      config: init.config,
      hyper: resolveHyperParameters(profile, request.steps ?? defaultSteps(tokensPerStep), request.overrides),
      initFrom,
      initSummary: init.summary,
      changed: [],
    };
  }
  const problems: string[] = [];
  if (resumeFrom.profile !== profile.name) problems.push(`profile ${resumeFrom.profile}, not ${profile.name}`);
  if (request.model !== undefined && request.model !== resumeFrom.model.name) problems.push(`model ${resumeFrom.model.name}, not ${request.model}`);
  if (request.initFrom !== undefined && JSON.stringify(request.initFrom) !== JSON.stringify(resumeFrom.initFrom)) {
    problems.push(`weights initialised from [${resumeFrom.initFrom.join(', ')}], not [${request.initFrom.join(', ')}]`);
  }
  if (problems.length > 0) {
    throw new M4Error('E_USAGE', 'trainer', `${runDir} holds a checkpoint of another run: ${problems.join('; ')}`, { runDir, problems });
  }
  const saved = resumeFrom.hyperParameters;
  const { adamBeta1, adamBeta2, ...rest } = request.overrides ?? {};
  const given: Partial<HyperParameters> = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  if (request.steps !== undefined) given.steps = request.steps;
  if (adamBeta1 !== undefined || adamBeta2 !== undefined) given.adamBetas = [adamBeta1 ?? saved.adamBetas[0], adamBeta2 ?? saved.adamBetas[1]];
  const hyper: HyperParameters = { ...saved, ...given };
  const changed = (Object.keys(given) as (keyof HyperParameters)[])
    .filter((key) => JSON.stringify(given[key]) !== JSON.stringify(saved[key]))
    .map((key) => `${key} ${JSON.stringify(saved[key])} -> ${JSON.stringify(given[key])}`);
  if (hyper.steps < resumeFrom.step)
    throw new M4Error('E_USAGE', 'trainer', `the run is at step ${resumeFrom.step}, past the ${hyper.steps} steps asked`, { runDir });
  if (hyper.warmupSteps > hyper.steps) throw new M4Error('E_USAGE', 'trainer', `warmup of ${hyper.warmupSteps} steps exceeds the run's ${hyper.steps} steps`);
  return { config: resumeFrom.model, hyper, initFrom: resumeFrom.initFrom, initSummary: [], changed };
}
