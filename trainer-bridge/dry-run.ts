import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { formatCount, grid, percent, plural, table } from '../core/format.ts';
import { formatQuality } from '../mixer/plan-report.ts';
import type { BridgeState } from './batch.ts';
import { BatchDumpFolder } from './batch-dump.ts';
import { writeBatchStream } from './batch-npy.ts';
import type { BridgeOptions } from './bridge-options.ts';
import { openBridge, type BridgeReport, type MixtureSource } from './bridge.ts';
import { tensorShapes } from './tensors.ts';

/**
 * A run of the bridge with no model: this rank's batches streamed, described a line each, optionally written out as
 * `.npy` (a folder of batches, or a stream a Python trainer reads), then a summary of where every token and image went.
 */
export interface DryRunOptions extends BridgeOptions {
  /** Where the batches' tensors go: a dump folder (see BatchDumpFolder), or a stream of `.npy` arrays, five per batch. */
  dump?: { dir: string } | { stream: Writable };
  /** No line per batch, only the summary. */
  quiet?: boolean;
  /** Receives every line of the description and the summary. */
  say: (line: string) => void;
}

export interface DryRunResult {
  report: BridgeReport;
  /** The state after the last batch: `resume` it to continue with the next one. */
  state: BridgeState;
  /** The reader of the `.npy` stream closed it before the last batch. */
  readerClosed: boolean;
}

export async function dryRun(mixture: MixtureSource, options: DryRunOptions): Promise<DryRunResult> {
  const { say, dump, quiet } = options;
  const bridge = openBridge(mixture, options);
  const { rank, worldSize, steps, batchSize, seqLen, maxImages, resume } = bridge.options;
  const resumedAt = bridge.state().batches;
  say(
    `rank ${rank} of ${worldSize}: ${plural(steps, 'batch', 'batches')} of ${batchSize} x ${seqLen} tokens, ${maxImages} image slots per ` +
      `sequence${resume ? ` (resuming after batch ${resumedAt})` : ''}`,
  );
  for (const note of bridge.options.notes) say(note);
  const stream = dump && 'stream' in dump ? dump.stream : undefined;
  const folder =
    dump && 'dir' in dump
      ? await BatchDumpFolder.open(dump.dir, {
          plan: planFingerprint(mixture.plan),
          rank,
          worldSize,
          batchSize,
          seqLen,
          maxImages,
          maskImageTokens: bridge.options.maskImageTokens,
          imageTransform: bridge.options.imageTransform,
        })
      : undefined;
  const closed = stream ? readerGone(stream) : undefined;
  const start = performance.now();
  let tokens = 0;
  let images = 0;
  let index = resumedAt;
  let readerClosed = false;
  for await (const batch of bridge) {
    tokens += sum(Object.values(batch.stats.tokensBySource));
    images += sum(Object.values(batch.stats.imagesBySource));
    await folder?.write(index, batch);
    if (stream) {
      await Promise.race([writeBatchStream(stream, batch), closed!.promise]);
      if (closed!.closed) {
        say('the reader of standard output closed it: stopping');
        readerClosed = true;
        break;
      }
    }
    if (!quiet) {
      const seconds = (performance.now() - start) / 1000;
      const shapes = tensorShapes(batch)
        .map(([name, shape]) => `${name} [${shape.join(', ')}]`)
        .join('  ');
      say(`batch ${index}  ${shapes}`);
      say(
        `  tokens ${bySource(batch.stats.tokensBySource)}  images ${bySource(batch.stats.imagesBySource)}  padding ` +
          `${share(batch.stats.paddingTokens, batchSize * seqLen)}  ${formatCount(Math.round(tokens / seconds))} tokens/s`,
      );
    }
    index++;
  }
  const report = bridge.report();
  const seconds = (performance.now() - start) / 1000;
  say(formatBridgeReport(report, { seconds, tokens, images, sequences: report.batches * batchSize }));
  return { report, state: bridge.state(), readerClosed };
}

/** Names the mixture a dump folder holds batches of: its whole plan, hashed. */
function planFingerprint(plan: unknown): string {
  return createHash('sha256').update(JSON.stringify(plan)).digest('hex');
}

/** Resolves when the stream's reader goes away (EPIPE), so a consumer that stops early ends the run quietly. */
function readerGone(stream: Writable): { promise: Promise<void>; closed: boolean } {
  const state = { closed: false, promise: Promise.resolve() };
  state.promise = new Promise((resolve) => {
    const done = () => {
      state.closed = true;
      resolve();
    };
    stream.once('error', done);
    stream.once('close', done);
  });
  return state;
}

/** The bridge's summary: per source where tokens and images went, padding, throughput, and any data lost on the way. */
export function formatBridgeReport(report: BridgeReport, run: { seconds: number; tokens: number; images: number; sequences: number }): string {
  const sources = Object.entries(report.sources);
  const header = ['source', 'samples', 'tokens in', 'added', 'packed', 'truncated', 'dropped', 'windows', 'images in', 'img packed', 'img dropped'];
  const rows = sources.map(([name, t]) =>
    [
      name,
      t.samples,
      t.inputTokens,
      t.addedTokens,
      t.packedTokens,
      t.truncatedTokens,
      t.droppedTokens,
      t.windows,
      t.inputImages,
      t.packedImages,
      t.droppedImages,
    ].map((v) => (typeof v === 'number' ? formatCount(v) : v)),
  );
  const seconds = Math.max(run.seconds, 1e-9);
  return [
    `\n${plural(report.batches, 'batch', 'batches')} on rank ${report.rank} of ${report.worldSize} (${report.totalBatches} of ${report.steps} in all)`,
    grid([header, ...rows.map((r) => r.map(String))], '  '),
    '  (tokens in + added = packed + truncated + dropped + still in the packer; added: <s>/</s> of windows)',
    table([
      ['padding', `${share(report.paddingTokens, report.tokenSlots)} of ${formatCount(report.tokenSlots)} token slots`],
      [
        'throughput',
        `${formatCount(Math.round(run.tokens / seconds))} tokens/s, ${(run.sequences / seconds).toFixed(1)} sequences/s, ` +
          `${formatCount(Math.round(run.images / seconds))} images/s over ${run.seconds.toFixed(1)} s`,
      ],
    ]),
    `how well mixed, the samples this rank read (${report.mixture.quality.windows} windows of ${report.mixture.quality.window} tokens):`,
    formatQuality(report.mixture.quality).trimEnd(),
    ...formatLoss(report),
  ].join('\n');
}

/** Lines naming the shards skipped as corrupt and the samples (and tokens) the mixture lost with them; none if none. */
export function formatLoss(report: Pick<BridgeReport, 'mixture'>): string[] {
  const { badShards, sources } = report.mixture;
  if (badShards.length === 0) return [];
  const lost = sources.filter((s) => s.lostSamples > 0).map((s) => `${s.name} ${plural(s.lostSamples, 'sample')} (${formatCount(s.lostTokens)} tokens)`);
  return [
    `DATA LOST: ${plural(badShards.length, 'shard')} could not be read in full, so the mixture lost ` +
      `${lost.length > 0 ? lost.join(', ') : 'no scheduled sample'}:`,
    ...badShards.map((message) => `  ${message}`),
  ];
}

function bySource(counts: Record<string, number>): string {
  const entries = Object.entries(counts).filter(([, n]) => n > 0);
  return entries.length === 0 ? '-' : entries.map(([name, n]) => `${name} ${formatCount(n)}`).join(', ');
}

function share(part: number, whole: number): string {
  return whole > 0 ? percent(part / whole, 1) : '-';
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
