import { Command } from 'commander';
import { ExitCode } from '../../core/exit-codes.ts';
import { formatDatasetSummary } from '../../shards/dataset-report.ts';
import { allowedPrivateNetwork, integerIn, privateNetworkOption } from '../parse.ts';
import { ProgressLine } from '../progress-line.ts';

export function inspectCommand(): Command {
  return new Command('inspect')
    .description('summarise a shard, a dataset folder, a manifest or an S3 prefix: shards, samples, images, tokens, bytes, first samples')
    .argument('<target>', 'a shard (.tar, .tgz, .tar.gz), a manifest.json, or a folder / s3://bucket/prefix holding shards')
    .option('-n, --first <n>', 'how many samples to list', integerIn(0, 10_000), 5)
    .option('--verify', "with a manifest: check every shard's sha256 and index, not only its size (reads every byte; progress on stderr)")
    .option('--json', 'print one JSON object instead of text')
    .addOption(privateNetworkOption('a target on http(s)'))
    .addHelpText(
      'after',
      "\nWith a manifest, totals come from it (checked against its shard records) and each shard's size is checked against\n" +
        'it (--verify: its sha256 and its index too; a dataset is called verified only when nothing disagrees);\n' +
        'otherwise every shard is read. Missing, truncated or corrupt shards and bad samples are counted and listed.\n' +
        'Gzip-compressed tars are read through gunzip. Exit status: 0 all good, 3 bad data found, 1 target unreadable\n' +
        'or holding no shard, 2 bad usage.\n' +
        'Examples:\n  m4data inspect out/laion\n  m4data inspect s3://bucket/datasets/laion --json\n  m4data inspect out/laion/laion-000003.tar -n 20',
    )
    .action(async (target: string, options: { first: number; json?: boolean; verify?: boolean; allowPrivateNetwork?: boolean | string }) => {
      // A verification reads every byte, so its progress is shown wherever stderr goes: a line per shard off a terminal.
      const progress = new ProgressLine(ProgressLine.modeFor(!(options.verify || (!options.json && process.stderr.isTTY))), process.stderr, 0);
      const verb = options.verify ? 'verifying' : 'reading';
      // Loaded when the command runs, as every command's work is: `m4data --help` loads none of it.
      const { summarizeDataset } = await import('../../shards/dataset-summary.ts');
      const summary = await summarizeDataset(target, {
        first: options.first,
        verify: options.verify,
        network: { allowPrivateNetwork: allowedPrivateNetwork(options.allowPrivateNetwork) },
        onShard: (done, total, shard) => progress.update(() => `${verb} shards ${done}/${total}${progress.mode === 'lines' ? `: ${shard}` : ''}`),
      });
      progress.clear();
      process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : formatDatasetSummary(summary));
      if (summary.badShards > 0 || summary.skippedSamples > 0 || summary.manifestErrors.length > 0) process.exitCode = ExitCode.BAD_DATA;
    });
}
