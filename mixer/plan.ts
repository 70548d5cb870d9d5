import { M4Error } from '../core/errors.ts';
import type { ShardPrint } from './plan-fingerprint.ts';
import type { MixProfile, ProfileSource } from './profile.ts';

/**
 * Planning a mixture: how many tokens each source contributes. Epochs and shares over-determine a mix as soon as the
 * real token counts differ from the card's, so the mode says which to keep:
 * - `proportions`: keep the card's shares, spend the budget; epochs follow.
 * - `epochs`: keep the card's epochs; shares and budget follow.
 * - `anchor:NAME`: keep NAME's epochs and every share; the budget follows.
 * Pure: only counts in, numbers out.
 */
export type MixMode = { kind: 'proportions' } | { kind: 'epochs' } | { kind: 'anchor'; source: string };

/** What one source offers: from its manifest, or assumed (a source not built yet). */
export interface SourceSupply {
  name: string;
  /** The dataset's location (folder, s3:// prefix, manifest URL); absent when assumed. */
  location?: string;
  tokens: number;
  samples: number;
  images: number;
  shards: number;
  /** True when the counts were assumed rather than read from a built dataset. */
  assumed: boolean;
  /** What the dataset's manifest says it was built as (absent for assumed sources and older manifests). */
  builtAs?: { source?: string; layout?: string; kind?: string };
  /** What a built dataset's shards were when it was planned (see plan-fingerprint.ts); absent when assumed. */
  fingerprint?: ShardPrint[];
}

export interface PlannedSource {
  name: string;
  layout: 'pair' | 'document';
  location?: string;
  assumed: boolean;
  available: { tokens: number; samples: number; images: number; shards: number };
  card: { epochs: number; share: number; tokens?: number };
  /** Planned: token target, epochs over the source, share of the mixture (a fraction of 1). */
  tokens: number;
  epochs: number;
  share: number;
  /** Planned samples and images, estimated from the source's mean tokens per sample. */
  samples: number;
  images: number;
  /** What decided this source's numbers. */
  boundBy: string;
  /** Its shards as planned: `[name, samples, tokens, bytes, index sha256]` each; a stream refuses a dataset that differs. */
  fingerprint?: ShardPrint[];
}

export interface MixPlan {
  format: 'm4data-mix-plan';
  /** 2 since plans carry their sources' fingerprints. */
  version: 2;
  profile: MixProfile;
  mode: string;
  seed: number;
  /** Total planned tokens, and what that is in the profile's steps. */
  budget: { tokens: number; tokensPerStep: number; steps: number; boundBy: string };
  /** Sources the profile names that were left out (`dropMissing`), with the shares renormalised over the rest. */
  dropped: string[];
  /** Datasets that may not be what their source name says (built as another source, or a materialised mixture). */
  warnings: string[];
  sources: PlannedSource[];
}

export interface PlanInput {
  profile: MixProfile;
  mode: MixMode;
  supplies: SourceSupply[];
  seed: number;
  /** Total tokens to spend (proportions mode); default the profile's maxSteps x tokensPerStep. */
  budgetTokens?: number;
  /** Or a number of steps of the profile's tokensPerStep. */
  steps?: number;
  /** Leave out profile sources with no supply, renormalising the other shares. */
  dropMissing?: boolean;
}

export function modeName(mode: MixMode): string {
  return mode.kind === 'anchor' ? `anchor:${mode.source}` : mode.kind;
}

export function planMixture(input: PlanInput): MixPlan {
  const { profile, mode } = input;
  const byName = new Map(input.supplies.map((s) => [s.name, s]));
  for (const supply of input.supplies) {
    if (!profile.sources.some((s) => s.name === supply.name)) {
      throw new M4Error(
        'E_USAGE',
        'mixer',
        `source ${supply.name} is not in profile ${profile.name} (it has ${profile.sources.map((s) => s.name).join(', ')})`,
      );
    }
  }
  const missing = profile.sources.filter((s) => !byName.has(s.name)).map((s) => s.name);
  if (missing.length > 0 && !input.dropMissing) {
    throw new M4Error(
      'E_USAGE',
      'mixer',
      `profile ${profile.name} needs source${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: give ${missing.length > 1 ? 'their' : 'its'} built ` +
        `location (or an assumed token count), or drop missing sources to leave ${missing.length > 1 ? 'them' : 'it'} out`,
      { missing },
    );
  }
  const kept = profile.sources.filter((s) => byName.has(s.name));
  if (kept.length === 0) throw new M4Error('E_USAGE', 'mixer', 'no source of the profile was given');
  const keptShare = kept.reduce((acc, s) => acc + s.share, 0);
  if (!(keptShare > 0)) throw new M4Error('E_USAGE', 'mixer', `the sources given have no share in profile ${profile.name}`);
  for (const s of kept) {
    const supply = byName.get(s.name)!;
    if (!(supply.tokens > 0) && (s.share > 0 || mode.kind === 'epochs')) {
      throw new M4Error('E_USAGE', 'mixer', `source ${s.name} has no tokens (${supply.location ?? 'assumed'}): nothing to sample from`);
    }
  }
  const share = (name: string) => profile.sources.find((s) => s.name === name)!.share / keptShare;
  const warnings = kept.flatMap((s) => builtAsWarning(s, byName.get(s.name)!));

  let tokensOf: (name: string) => number;
  let budgetBound: string;
  let boundBy: (name: string) => string;
  if (mode.kind === 'proportions') {
    if (input.budgetTokens !== undefined && input.steps !== undefined) throw new M4Error('E_USAGE', 'mixer', 'give the budget in steps or in tokens, not both');
    const budget = input.budgetTokens ?? (input.steps ?? profile.maxSteps) * profile.tokensPerStep;
    if (!(Number.isFinite(budget) && budget >= 1))
      throw new M4Error('E_USAGE', 'mixer', `the budget must be a finite number of at least 1 token (got ${budget})`);
    tokensOf = (name) => share(name) * budget;
    budgetBound =
      input.budgetTokens !== undefined
        ? 'budget in tokens'
        : input.steps !== undefined
          ? 'budget in steps'
          : `profile: ${profile.maxSteps} steps x ${profile.tokensPerStep} tokens`;
    boundBy = () => 'share of the budget';
  } else {
    if (input.budgetTokens !== undefined || input.steps !== undefined) {
      throw new M4Error('E_USAGE', 'mixer', `a budget (in steps or tokens) is set in proportions mode only; mode ${modeName(mode)} derives it`);
    }
    if (mode.kind === 'epochs') {
      tokensOf = (name) => profile.sources.find((s) => s.name === name)!.epochs * byName.get(name)!.tokens;
      budgetBound = 'the sum of the card epochs';
      boundBy = () => 'card epochs';
    } else {
      const anchor = kept.find((s) => s.name === mode.source);
      if (!anchor) throw new M4Error('E_USAGE', 'mixer', `mode anchor:${mode.source}: no such source in the mix (${kept.map((s) => s.name).join(', ')})`);
      if (!(anchor.share > 0)) throw new M4Error('E_USAGE', 'mixer', `mode anchor:${mode.source}: the anchor has no share to scale from`);
      const budget = (anchor.epochs * byName.get(anchor.name)!.tokens) / share(anchor.name);
      tokensOf = (name) => share(name) * budget;
      budgetBound = `${anchor.name}'s ${anchor.epochs} card epochs`;
      boundBy = (name) => (name === anchor.name ? 'card epochs (anchor)' : `share, scaled to ${anchor.name}'s epochs`);
    }
  }

  const total = kept.reduce((acc, s) => acc + tokensOf(s.name), 0);
  const unbounded = kept.filter((s) => !Number.isFinite(tokensOf(s.name))).map((s) => s.name);
  if (unbounded.length > 0 || !Number.isFinite(total)) {
    throw new M4Error(
      'E_USAGE',
      'mixer',
      `the plan's token counts are not finite (${unbounded.join(', ') || 'their sum'}): the epochs, shares and budget must give a finite number of tokens`,
    );
  }
  if (total < 1) throw new M4Error('E_USAGE', 'mixer', `the plan comes to ${total} tokens: nothing to mix`);
  const sources: PlannedSource[] = kept.map((s) => {
    const supply = byName.get(s.name)!;
    const tokens = tokensOf(s.name);
    const epochs = supply.tokens > 0 ? tokens / supply.tokens : 0;
    return {
      name: s.name,
      layout: s.layout,
      ...(supply.location !== undefined ? { location: supply.location } : {}),
      assumed: supply.assumed,
      available: { tokens: supply.tokens, samples: supply.samples, images: supply.images, shards: supply.shards },
      card: { epochs: s.epochs, share: s.share, ...(s.cardTokens !== undefined ? { tokens: s.cardTokens } : {}) },
      tokens,
      epochs,
      share: total > 0 ? tokens / total : 0,
      samples: Math.round(epochs * supply.samples),
      images: Math.round(epochs * supply.images),
      boundBy: boundBy(s.name),
      ...(supply.fingerprint ? { fingerprint: supply.fingerprint } : {}),
    };
  });
  return {
    format: 'm4data-mix-plan',
    version: 2,
    profile,
    mode: modeName(mode),
    seed: input.seed,
    budget: { tokens: total, tokensPerStep: profile.tokensPerStep, steps: total / profile.tokensPerStep, boundBy: budgetBound },
    dropped: missing,
    warnings,
    sources,
  };
}

/**
 * A dataset given for a source it was not built as: refused when its layout differs (pairs where the profile expects
 * documents, or the reverse), said in a warning otherwise (another source of the same layout, or a mixture).
 */
function builtAsWarning(source: ProfileSource, supply: SourceSupply): string[] {
  const built = supply.builtAs;
  if (!built) return [];
  const where = supply.location ?? source.name;
  if (built.layout !== undefined && built.layout !== source.layout) {
    const as = built.source ? ` (built with --source ${built.source})` : '';
    throw new M4Error(
      'E_USAGE',
      'mixer',
      `${where} holds ${built.layout}s${as}, but the profile's ${source.name} is made of ${source.layout}s: is it the dataset of another source?`,
      { source: source.name },
    );
  }
  if (built.kind === 'mixture') return [`${source.name}: ${where} is a materialised mixture, not a built source`];
  if (built.source !== undefined && built.source !== source.name) return [`${source.name}: ${where} was built as ${built.source}`];
  return [];
}
