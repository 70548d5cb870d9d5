import { formatBytes, formatCount, table } from '../core/format.ts';
import type { DatasetSummary } from './dataset-summary.ts';

/** What `m4data inspect` prints: where the totals come from, the totals, the first samples, notes and problems. */
export function formatDatasetSummary(s: DatasetSummary): string {
  const lines = [
    `${s.target} (${s.from === 'manifest' ? `totals from its manifest; shard ${s.verified ? 'sizes and sha256 verified' : 'sizes checked'}` : 'every shard read'})`,
    table([
      ['shards', formatCount(s.shards)],
      ['samples', formatCount(s.samples)],
      ['images', formatCount(s.images)],
      ['tokens', formatCount(s.tokens)],
      ['bytes', `${formatBytes(s.bytes)} (${formatCount(s.bytes)})`],
    ]),
  ];
  if (s.first.length > 0) {
    lines.push(`first ${s.first.length} sample${s.first.length === 1 ? '' : 's'}:`);
    for (const sample of s.first) {
      const fields = Object.entries(sample.fields).map(([name, size]) => `${name} ${formatBytes(size)}`);
      lines.push(`  ${sample.key}  ${fields.join(', ')}  (${sample.shard})`);
    }
  }
  for (const note of s.notes) lines.push(`note: ${note}`);
  if (s.badShards > 0 || s.skippedSamples > 0) {
    lines.push(`problems: ${s.badShards} bad shard${s.badShards === 1 ? '' : 's'}, ${s.skippedSamples} sample${s.skippedSamples === 1 ? '' : 's'} skipped`);
    for (const error of s.errors.slice(0, 20)) lines.push(`  ${error}`);
    if (s.errors.length > 20) lines.push(`  ... and ${s.errors.length - 20} more`);
  }
  return `${lines.join('\n')}\n`;
}
