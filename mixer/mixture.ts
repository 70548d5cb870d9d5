import { isM4Error, M4Error } from '../core/errors.ts';
import { jsonBytes, readJson } from '../shards/storage/json.ts';
import { openStorage, type OpenOptions } from '../shards/storage/open.ts';
import type { Mixture, MixtureStream, MixtureStreamOptions } from './mixture-stream-types.ts';
import { MixtureSampleStream } from './mixture-stream.ts';
import { planId } from './plan-fingerprint.ts';
import type { MixPlan, SourceSupply } from './plan.ts';
import { checkProfile } from './profile.ts';
import { checkMixOutput, PLAN_NAME, PLAN_SVG_NAME } from './mix-output.ts';
import { planSvg } from './plan-svg.ts';
import type { ScheduleSource } from './schedule.ts';
import { SourceDataset } from './source-dataset.ts';

/** What each `--source NAME=LOCATION` offers, from its manifest, and its fingerprint (every index read and checked once). */
export async function readSupplies(locations: ReadonlyMap<string, string>, network: OpenOptions = {}): Promise<SourceSupply[]> {
  const supplies: SourceSupply[] = [];
  for (const [name, location] of locations) {
    const dataset = await SourceDataset.open(location, { network });
    const { tokens, samples, images, shards } = dataset.manifest.totals;
    const built = dataset.manifest.dataset;
    const builtAs = { source: textOf(built.source), layout: textOf(built.layout), kind: textOf(built.kind) };
    supplies.push({ name, location, tokens, samples, images, shards, assumed: false, builtAs, fingerprint: await dataset.fingerprint() });
  }
  return supplies;
}

/**
 * Writes `plan.json` and `plan.svg` into MIX_DIR (a folder or an s3:// prefix), once `checkMixOutput` has found it
 * free for this mixture: the same plan again rewrites identical files, anything else there is refused.
 */
export async function writePlan(location: string, plan: MixPlan): Promise<void> {
  const storage = await checkMixOutput(location, plan);
  await storage.write(PLAN_SVG_NAME, Buffer.from(planSvg(plan)));
  await storage.write(PLAN_NAME, jsonBytes(plan));
}

/**
 * Opens the mixture planned in MIX_DIR: its plan, and every source's dataset, checked against what was planned.
 * http(s) locations, the plan's and its sources', are reached under the network rule.
 */
export async function openMixture(location: string, network: OpenOptions = {}): Promise<Mixture> {
  const storage = openStorage(location, network);
  const plan = (await readJson(storage, PLAN_NAME).catch((err: unknown) => {
    if (!isM4Error(err, 'E_NOT_FOUND')) throw err;
    throw new M4Error('E_NOT_FOUND', 'mixer', `${storage.urlOf(PLAN_NAME)} does not exist: make the mixture first with m4data mix --output ${location}`);
  })) as MixPlan;
  if (plan?.format !== 'm4data-mix-plan' || !Array.isArray(plan.sources))
    throw new M4Error('E_INPUT', 'mixer', `${storage.urlOf(PLAN_NAME)} is not an m4data mix plan`);
  if (plan.version !== 2) {
    throw new M4Error(
      'E_INPUT',
      'mixer',
      `${storage.urlOf(PLAN_NAME)} is a plan of version ${JSON.stringify(plan.version)}, made by an earlier m4data (this one reads version 2, which ` +
        `fingerprints its sources): plan the mixture again with m4data mix`,
    );
  }
  checkProfile(plan.profile, `${storage.urlOf(PLAN_NAME)} (its profile)`);
  for (const planned of plan.sources) {
    if (planned.location === undefined) {
      throw new M4Error(
        'E_USAGE',
        'mixer',
        `source ${planned.name} of ${location} was planned with --assume-tokens: build it, then plan again with --source ${planned.name}=LOCATION`,
      );
    }
    if (!Array.isArray(planned.fingerprint))
      throw new M4Error('E_INPUT', 'mixer', `source ${planned.name} of ${storage.urlOf(PLAN_NAME)} has no fingerprint: plan the mixture again`);
  }
  const datasets = await Promise.all(plan.sources.map((planned) => SourceDataset.open(planned.location!, { network, print: planned.fingerprint! })));
  const sources: ScheduleSource[] = plan.sources.map((planned, i) => ({
    name: planned.name,
    share: planned.share,
    target: planned.tokens,
    dataset: datasets[i]!,
  }));
  const id = planId(plan);
  return {
    location,
    profile: plan.profile,
    plan,
    planId: id,
    stream: (options?: MixtureStreamOptions): MixtureStream => new MixtureSampleStream(plan, id, sources, options),
  };
}

function textOf(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
