import { M4Error } from '../core/errors.ts';
import type { MixedSample, Mixture, MixtureState, MixtureStream, RealisedReport } from '../mixer/mixture-stream-types.ts';
import type { Batch, BridgeState, PackerState } from './batch.ts';
import { resolveBridgeOptions, type BridgeOptions, type ResolvedBridgeOptions } from './bridge-options.ts';
import { partialAfterMerge } from './bridge-state.ts';
import { packBatches, type BatchPlan, type PositionedSample, type ResumePoint } from './packer.ts';
import { PixelPool, type PixelDecoder } from './pixel-pool.ts';
import { newTally, type SourceTally } from './tally.ts';
import { assembleBatch } from './tensors.ts';

/** What the bridge needs of a mixture: its plan (for defaults) and rank-sliced, resumable streams. */
export type MixtureSource = Pick<Mixture, 'plan' | 'stream'>;

export interface BridgeReport {
  rank: number;
  worldSize: number;
  /** Batches yielded by this run, and this rank's total (a resumed run starts from the state's count). */
  batches: number;
  totalBatches: number;
  steps: number;
  /** Padding tokens and all token slots (B x L per batch) of this run's batches. */
  paddingTokens: number;
  tokenSlots: number;
  sources: Record<string, SourceTally>;
  /** What the mixture stream delivered to the bridge (read ahead of packing included), per source, against its plan. */
  mixture: RealisedReport;
}

/** The batches of one rank, exactly `steps` of them; iterate once. */
export interface BridgeStream extends AsyncIterable<Batch> {
  readonly options: ResolvedBridgeOptions;
  /** The state after the last batch yielded: save it with a checkpoint, pass it as `resume` to continue. */
  state(): BridgeState;
  report(): BridgeReport;
  /** Stops the pixel workers (also done when the iteration ends). */
  close(): Promise<void>;
}

/**
 * The bridge: the mixture's rank slice (an endless stream, so no rank runs dry) -> units (parts and windows of samples)
 * -> batches of packed rows -> images decoded in worker threads, a bounded number of batches ahead -> tensors.
 * Every rank yields the same `steps` batches.
 */
export function openBridge(mixture: MixtureSource, options: BridgeOptions = {}): BridgeStream {
  const opts = resolveBridgeOptions(options, mixture.plan);
  // Every rank's states, of a world of another size; or this rank's own.
  const states = Array.isArray(opts.resume) ? opts.resume : undefined;
  const own = Array.isArray(opts.resume) ? undefined : opts.resume;
  const stream = mixture.stream({
    rank: opts.rank,
    worldSize: opts.worldSize,
    endless: true,
    resume: states ? states.map((s) => s.mixture) : own?.mixture,
    signal: options.signal,
    maxBadShards: options.maxBadShards,
  });
  const tally = newTally();
  // Under another world size every rank starts at a sample boundary; part-emitted samples go on by position.
  const partial = states ? partialAfterMerge(states, stream.state()) : new Map(own?.packer.partial ?? []);
  let next: ResumePoint<MixtureState> = { state: stream.state(), skipUnits: own?.packer.skipUnits ?? 0 };
  const startBatches = (states ? states[0]!.batches : own?.batches) ?? 0;
  let batches = 0;
  let paddingTokens = 0;
  let decoder: PixelDecoder | undefined = options.decoder;
  const ownsDecoder = decoder === undefined;
  let iterated = false;

  const close = async () => {
    if (ownsDecoder && decoder) await decoder.close();
    decoder = undefined;
  };

  async function* run(): AsyncGenerator<Batch> {
    if (iterated) throw new M4Error('E_USAGE', 'bridge', 'a bridge stream can be iterated only once; open another (with resume) to continue');
    iterated = true;
    const remaining = opts.steps - startBatches;
    if (remaining <= 0) return;
    decoder ??= new PixelPool({ transform: opts.imageTransform, workers: opts.workers });
    const firstSkip = next.skipUnits;
    const skipUnits = (sample: MixedSample, first: boolean) => Math.max(first ? firstSkip : 0, partial.get(sample.position) ?? 0);
    const plans = packBatches(positioned(stream), opts, { tally, skipUnits, endState: () => stream.state() });
    try {
      for await (const { plan, pixels } of decodeAhead(plans, decoder, opts.prefetch)) {
        const batch = assembleBatch(plan.rows, pixels, opts);
        next = plan.next;
        batches++;
        paddingTokens += batch.stats.paddingTokens;
        yield batch;
        if (batches === remaining) return;
      }
      throw new M4Error(
        'E_INPUT',
        'bridge',
        `the mixture stream of rank ${opts.rank} ended after ${startBatches + batches} batches; ${opts.steps} were asked (every rank must yield the same ` +
          `number)`,
      );
    } finally {
      await close();
    }
  }

  return {
    options: opts,
    [Symbol.asyncIterator]: run,
    state: (): BridgeState => ({
      format: 'm4data-bridge-state',
      version: 2,
      mixture: next.state,
      batches: startBatches + batches,
      packer: {
        skipUnits: next.skipUnits,
        seqLen: opts.seqLen,
        batchSize: opts.batchSize,
        maxImages: opts.maxImages,
        partial: [...partial],
      } satisfies PackerState,
    }),
    report: () => ({
      rank: opts.rank,
      worldSize: opts.worldSize,
      batches,
      totalBatches: startBatches + batches,
      steps: opts.steps,
      paddingTokens,
      tokenSlots: batches * opts.batchSize * opts.seqLen,
      sources: Object.fromEntries([...tally].sort(([a], [b]) => a.localeCompare(b)).map(([name, t]) => [name, { ...t }])),
      mixture: stream.realised(),
    }),
    close,
  };
}

/** Each sample with the stream's state just before it: the point a resume re-reads it from. */
async function* positioned(stream: MixtureStream): AsyncGenerator<PositionedSample<MixtureState>> {
  const it = stream[Symbol.asyncIterator]();
  try {
    for (;;) {
      const before = stream.state();
      const r = await it.next();
      if (r.done) return;
      yield { sample: r.value as MixedSample, before };
    }
  } finally {
    await it.return?.();
  }
}

/**
 * Keeps up to `prefetch` batches in decoding ahead of the consumer, in order: packing the next batch (main thread)
 * overlaps the workers' decoding, and nothing is read further ahead than that (backpressure to the mixture).
 */
async function* decodeAhead<S>(
  plans: AsyncGenerator<BatchPlan<S>>,
  decoder: PixelDecoder,
  prefetch: number,
): AsyncGenerator<{ plan: BatchPlan<S>; pixels: Float32Array[][] }> {
  const pending: Promise<{ plan: BatchPlan<S>; pixels: Float32Array[][] }>[] = [];
  let done = false;
  try {
    for (;;) {
      while (!done && pending.length < prefetch) {
        const r = await plans.next();
        if (r.done) {
          done = true;
          break;
        }
        const plan = r.value;
        const decoding = Promise.all(plan.rows.map((row) => Promise.all(row.images.map((image) => decoder.decode(image))))).then((pixels) => ({
          plan,
          pixels,
        }));
        decoding.catch(() => {}); // awaited in order below; a batch abandoned by an early stop must not raise unhandled
        pending.push(decoding);
      }
      const head = pending.shift();
      if (!head) return;
      yield await head;
    }
  } finally {
    await plans.return(undefined);
  }
}
