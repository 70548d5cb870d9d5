import { duration, formatBytes, formatCount, plural } from '../../core/format.ts';
import type { BuildSummary } from './build.ts';
import { STATUSES } from './outcomes.ts';

/** A build's closing table: rows by status with their shares, the documents' images, the most frequent reasons, the manifest. */
export function formatBuildSummary(source: string, s: BuildSummary, seconds: number): string {
  const lines = [
    `${source} -> ${s.output}: ${plural(s.shardsBuilt, 'shard')} built${s.shardsSkipped ? `, ${s.shardsSkipped} already done` : ''}, ` +
      `${plural(s.rows, 'row')} in ${duration(seconds)}`,
    `  ${'status'.padEnd(20)}${'rows'.padStart(10)}${'share'.padStart(9)}`,
  ];
  for (const status of STATUSES) {
    const n = s.status[status];
    if (n === 0 && status === 'malformed') continue;
    lines.push(`  ${status.padEnd(20)}${formatCount(n).padStart(10)}${(s.rows ? `${((100 * n) / s.rows).toFixed(1)}%` : '-').padStart(9)}`);
  }
  if (s.imageStatus) {
    const total = STATUSES.reduce((n, status) => n + s.imageStatus![status], 0);
    const parts = STATUSES.filter((status) => s.imageStatus![status] > 0).map((status) => `${status} ${formatCount(s.imageStatus![status])}`);
    lines.push(`  images of these documents: ${formatCount(total)}${parts.length ? ` (${parts.join(', ')})` : ''}`);
  }
  if (s.topErrors.length > 0) {
    lines.push('most frequent reasons:');
    for (const e of s.topErrors.slice(0, 5)) lines.push(`  ${formatCount(e.count).padStart(8)}  ${e.error}`);
  }
  if (s.manifest) {
    const t = s.manifest.totals;
    lines.push(
      `manifest: ${plural(t.shards, 'shard')}, ${plural(t.samples, 'sample')}, ${plural(t.images, 'image')}, ${plural(t.tokens, 'token')}, ` +
        `${formatBytes(t.bytes)}`,
    );
  } else {
    lines.push(`manifest not written yet: other workers' shards are missing (run with --merge once all have finished)`);
  }
  return `${lines.join('\n')}\n`;
}
