import { Command } from 'commander';
import { ExitCode } from '../../core/exit-codes.ts';
import { formatBytes, formatCount, table } from '../../core/format.ts';
import { summarizeDataset, type DatasetSummary } from '../../shards/dataset-summary.ts';
import { integerIn } from '../parse.ts';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('summarise a shard, a dataset folder, a manifest or an S3 prefix: shards, samples, images, tokens, bytes, first samples')
    .argument('<target>', 'a shard (.tar, .tgz, .tar.gz), a manifest.json, or a folder / s3://bucket/prefix holding shards')
    .option('-n, --first <n>', 'how many samples to list', integerIn(0, 10_000), 5)
    .option('--verify', "with a manifest: check every shard's sha256 and index, not only its size (reads every byte; progress on stderr)")
    .option('--json', 'print one JSON object instead of text')
    .addHelpText(
      'after',
      '\nWith a manifest, totals come from it (checked against its shard records) and each shard\'s size is checked against\n' +
        'it (--verify: its sha256 and its index too; a dataset is called verified only when nothing disagrees);\n' +
        'otherwise every shard is read. Missing, truncated or corrupt shards and bad samples are counted and listed.\n' +
        'Gzip-compressed tars are read through gunzip. Exit status: 0 all good, 3 bad data found, 1 target unreadable\n' +
        'or holding no shard, 2 bad usage.\n' +
        'Examples:\n  m4data inspect out/laion\n  m4data inspect s3://bucket/datasets/laion --json\n  m4data inspect out/laion/laion-000003.tar -n 20',
    )
    .action(async (target: string, options: { first: number; json?: boolean; verify?: boolean }) => {
      const tty = process.stderr.isTTY;
      // A verification reads every byte, so its progress is shown wherever stderr goes: a line per shard off a terminal.
      const progress = options.verify || (!options.json && tty);
      const verb = options.verify ? 'verifying' : 'reading';
      const summary = await summarizeDataset(target, {
        first: options.first,
        verify: options.verify,
        onShard: progress
          ? (done, total, shard) => process.stderr.write(tty ? `\r${verb} shards ${done}/${total}` : `${verb} shards ${done}/${total}: ${shard}\n`)
          : undefined,
      });
      if (progress && tty) process.stderr.write('\r\x1b[K');
      process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
      if (summary.badShards > 0 || summary.skippedSamples > 0 || summary.manifestErrors.length > 0) process.exitCode = ExitCode.BAD_DATA;
    });
}

export function formatSummary(s: DatasetSummary): string {
  const lines = [
    `${s.target} (${s.from === 'manifest' ? `totals from its manifest; shard ${s.checked === 'sha256' ? 'sizes, sha256 and indexes' : 'sizes'} ${s.verified ? 'verified' : 'checked'}` : 'every shard read'})`,
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
  for (const error of s.manifestErrors) lines.push(`problem: ${error}`);
  if (s.badShards > 0 || s.skippedSamples > 0) {
    lines.push(`problems: ${s.badShards} bad shard${s.badShards === 1 ? '' : 's'}, ${s.skippedSamples} sample${s.skippedSamples === 1 ? '' : 's'} skipped`);
    for (const error of s.errors.slice(0, 20)) lines.push(`  ${error}`);
    if (s.errors.length > 20) lines.push(`  ... and ${s.errors.length - 20} more`);
  }
  return `${lines.join('\n')}\n`;
}
