import { writeSyntheticDataset } from '../../sandbox/datasets.ts';
import { openMixture, readSupplies, writePlan } from '../../mixer/mixture.ts';
import type { Mixture } from '../../mixer/mixture-stream-types.ts';
import { parseMode } from '../../cli/parse.ts';
import { planMixture } from '../../mixer/plan.ts';
import { loadProfile } from '../../mixer/profile.ts';

/** The four sources of the card, as small synthetic built datasets (real tars, indexes, manifests). */
export const FOUR_SOURCES = [
  { name: 'pmd', layout: 'pair', shardSamples: [30, 25, 20] },
  { name: 'laion', layout: 'pair', shardSamples: [40, 0, 35] },
  { name: 'obelisc', layout: 'document', shardSamples: [8, 6, 7] },
  { name: 'wikipedia', layout: 'document', shardSamples: [10, 9] },
] as const;

/** Writes the four datasets under `root` (a folder or an s3:// prefix) and returns NAME -> location. */
export async function writeFourSources(root: string, seed = 1): Promise<Map<string, string>> {
  const locations = new Map<string, string>();
  for (const s of FOUR_SOURCES) {
    const location = `${root}/${s.name}`;
    await writeSyntheticDataset({ location, source: s.name, layout: s.layout, shardSamples: s.shardSamples, seed });
    locations.set(s.name, location);
  }
  return locations;
}

/** Plans `atum-9b` over the datasets into `mixDir` and opens it. */
export async function planFour(
  mixDir: string,
  locations: ReadonlyMap<string, string>,
  options: { mode?: string; budget?: number; seed?: number } = {},
): Promise<Mixture> {
  const plan = planMixture({
    profile: await loadProfile('atum-9b'),
    mode: parseMode(options.mode ?? 'proportions'),
    supplies: await readSupplies(locations),
    seed: options.seed ?? 5,
    ...(options.mode === undefined || options.mode === 'proportions' ? { budgetTokens: options.budget ?? 12_000 } : {}),
  });
  await writePlan(mixDir, plan);
  return openMixture(mixDir);
}

export async function collect<T>(items: AsyncIterable<T>, limit = Infinity): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) {
    out.push(item);
    if (out.length >= limit) break;
  }
  return out;
}
