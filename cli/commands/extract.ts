import { Command, Option } from 'commander';
import { duration, formatCount, plural } from '../../core/format.ts';
import type { ExtractSummary } from '../../pipelines/engine/extract.ts';
import { RESIZE_MODES, resolveImageOptions, type ResizeMode } from '../../pipelines/engine/image/image-options.ts';
import type { SourceOptions } from '../../pipelines/engine/source-adapter.ts';
import { findSource, SOURCES } from '../../pipelines/registry.ts';
import { integerIn } from '../parse.ts';
import { ProgressLine } from '../progress-line.ts';

interface ExtractFlags {
  source: string;
  input: string[];
  output: string;
  limit?: number;
  imageSize?: number;
  resizeMode?: ResizeMode;
  maxLineBytes?: number;
  quiet?: boolean;
  json?: boolean;
}

const EXTRACTING = SOURCES.filter((s) => s.extract);

export function extractCommand(): Command {
  const maxLineBytes = EXTRACTING.flatMap((s) => s.flags).find((f) => f.key === 'maxLineBytes');
  return new Command('extract')
    .description('extract documents from a dump into one parquet file in the OBELICS layout (texts, images, metadata, general_metadata), downloading nothing')
    .addOption(new Option('-s, --source <name>', 'which source the dump is').choices(EXTRACTING.flatMap((s) => [s.name, ...s.aliases])).makeOptionMandatory())
    .requiredOption('-i, --input <files...>', 'dump files, globs or a folder: .json.tar.gz, .ndjson, .ndjson.gz; local, file://, s3://, http(s)://')
    .requiredOption('-o, --output <file>', 'the parquet file to write (local or s3://bucket/key); never overwritten')
    .option('--limit <n>', 'read at most n records (default: all)', integerIn(1))
    .option('--image-size <px>', 'the side the image URLs are chosen for: give the build the same (default: 256)', integerIn(1, 16384))
    .addOption(
      new Option('--resize-mode <mode>', 'the resize mode the image URLs are chosen for: give the build the same (default: keep_ratio)').choices([
        ...RESIZE_MODES,
      ]),
    )
    .option('--max-line-bytes <n>', `${maxLineBytes?.description ?? 'longest record line'} (default: ${maxLineBytes?.default})`, integerIn(1))
    .option('-q, --quiet', 'no progress lines')
    .option('--json', 'print the summary as one JSON object on stdout')
    .addHelpText(
      'after',
      `
Each record becomes one row, in dump order; records that are no document (redirects, disambiguation pages, pages
with no text, malformed lines) are counted by reason. Image URLs name the Wikimedia rendition the build's
--image-size and --resize-mode need, so give the build the same values. The file is then a build's input:
  m4data extract --source wikipedia --input enwiki-NS0-20230220-ENTERPRISE-HTML.json.tar.gz --output enwiki.parquet
  m4data build --source wikipedia --input enwiki.parquet --output out/wikipedia

Exit status: 0 done, 1 the dump could not be read (cut short, corrupt, unreachable), 2 bad usage.`,
    )
    .action(async (flags: ExtractFlags) => {
      const adapter = findSource(flags.source);
      const sourceOptions: SourceOptions = {};
      for (const flag of adapter.flags) sourceOptions[flag.key] = flag.default;
      if (flags.maxLineBytes !== undefined) sourceOptions.maxLineBytes = flags.maxLineBytes;
      const image = resolveImageOptions({ ...adapter.imageDefaults, imageSize: flags.imageSize, resizeMode: flags.resizeMode });
      const start = Date.now();
      const progress = new ProgressLine(ProgressLine.modeFor(Boolean(flags.quiet || flags.json)));
      const { runExtract } = await import('../../pipelines/engine/extract.ts');
      const summary = await runExtract({ adapter, inputs: flags.input, output: flags.output, limit: flags.limit, sourceOptions, image }, (rows, documents) => {
        progress.update(() => `extract: ${plural(rows, 'record')}, ${plural(documents, 'document')}, ${duration((Date.now() - start) / 1000)}`);
      });
      progress.clear();
      process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : formatExtractSummary(summary));
    });
}

export function formatExtractSummary(s: ExtractSummary): string {
  const lines = [
    `${s.output}: ${plural(s.documents, 'document')} with ${plural(s.images, 'image')} from ${plural(s.rows, 'record')}`,
    `  no document: ${formatCount(s.skipped.filtered)} filtered, ${formatCount(s.skipped.malformed)} malformed`,
  ];
  if (s.topReasons.length > 0) {
    lines.push('most frequent reasons:');
    for (const r of s.topReasons.slice(0, 5)) lines.push(`  ${formatCount(r.count).padStart(8)}  ${r.reason}`);
  }
  return `${lines.join('\n')}\n`;
}
