import { formatBytes, formatCount, plural, table } from '../core/format.ts';
import type { DatasetSummary } from './dataset-summary.ts';

/** What `m4data inspect` prints: where the totals come from, the totals, the first samples, notes and problems. */
export function formatDatasetSummary(s: DatasetSummary): string {
  const lines = [
    `${s.target} ` +
      `(${s.from === 'manifest' ? `totals from its manifest; shard ${s.checked === 'sha256' ? 'sizes, sha256 and indexes' : 'sizes'} ${s.verified ? 'verified' : 'checked'}` : 'every shard read'})`,
    table([
      ['shards', formatCount(s.shards)],
      ['samples', formatCount(s.samples)],
      ['images', formatCount(s.images)],
      ['tokens', formatCount(s.tokens)],
      ['bytes', `${formatBytes(s.bytes)} (${formatCount(s.bytes)})`],
    ]),
  ];
  if (s.first.length > 0) {
    lines.push(`first ${plural(s.first.length, 'sample')}:`);
    for (const sample of s.first) {
      const fields = Object.entries(sample.fields).map(([name, size]) => `${name} ${formatBytes(size)}`);
      lines.push(`  ${sample.key}  ${fields.join(', ')}  (${sample.shard})`);
    }
  }
  for (const note of s.notes) lines.push(`note: ${note}`);
  for (const error of s.manifestErrors) lines.push(`problem: ${error}`);
  if (s.badShards > 0 || s.skippedSamples > 0) {
    lines.push(`problems: ${plural(s.badShards, 'bad shard')}, ${plural(s.skippedSamples, 'sample')} skipped`);
    for (const error of s.errors.slice(0, 20)) lines.push(`  ${error}`);
    if (s.errors.length > 20) lines.push(`  ... and ${s.errors.length - 20} more`);
  }
  return `${lines.join('\n')}\n`;
}
