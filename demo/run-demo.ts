import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { formatSummary } from '../cli/commands/inspect.ts';
import { buildManifest, writeManifest } from '../shards/manifest.ts';
import { ShardWriter } from '../shards/shard-writer.ts';
import { summarizeDataset } from '../shards/dataset-summary.ts';
import { openStorage } from '../shards/storage/open.ts';
import { syntheticPairs } from './synthetic-pairs.ts';

export interface DemoOptions {
  /** Output folder (default `out/demo`), emptied first. */
  out: string;
  log: (line: string) => void;
}

/**
 * The README's main command: everything m4data can do so far, on data it makes itself, with no network beyond
 * loopback. Each stage of the product adds its step here.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  const out = resolve(options.out);
  await rm(out, { recursive: true, force: true });

  const target = join(out, 'pairs');
  options.log(`writing 90 synthetic image-caption samples into shards of 40 under ${target}`);
  const writer = new ShardWriter({ storage: openStorage(target), prefix: 'pairs', maxSamples: 40 });
  for await (const { sample, counts } of syntheticPairs(90, 42)) await writer.write(sample, counts);
  const manifest = buildManifest(await writer.close(), { source: 'demo-pairs', seed: 42 });
  await writeManifest(openStorage(target), manifest, 'demo-pairs');

  options.log('\n$ m4data inspect ' + target);
  options.log(formatSummary(await summarizeDataset(target, { first: 3 })));
  options.log(`$ m4data inspect ${join(target, 'pairs-000002.tar')}`);
  options.log(formatSummary(await summarizeDataset(join(target, 'pairs-000002.tar'), { first: 2 })));
}
