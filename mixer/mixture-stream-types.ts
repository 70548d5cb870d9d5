import type { MixProfile } from './profile.ts';
import type { MixPlan } from './plan.ts';

/**
 * The contract between the mixer and its consumers (the bridge, `--materialize`): a deterministic stream of samples
 * from a plan, sliced by rank, resumable from a small state.
 */

/** One sample of the mixture, as read from its source's shard. */
export interface MixedSample {
  /** Position in the single-rank stream, from 0 (rank r of w gets positions r, r + w, r + 2w, ...). */
  position: number;
  /** The profile's source name (`pmd`, `laion`, `obelisc`, `wikipedia`). */
  source: string;
  /** The sample's key in its source dataset. */
  key: string;
  /** URL of the shard it came from. */
  shard: string;
  /** Layout tokens and images, as the source's index counts them. */
  tokens: number;
  images: number;
  /** The sample's files by field (`json`, `txt`, `jpg`, `0.jpg`, ...). */
  fields: Record<string, Buffer>;
}

/** Where one source's order stands. */
export interface SourceCursor {
  name: string;
  /** Epoch being read (0-based) and how many samples of it were taken. */
  epoch: number;
  taken: number;
  /** Tokens the source has contributed to the stream so far. */
  tokens: number;
}

/** A few numbers that resume the stream exactly where it was taken (after the last sample yielded). */
export interface MixtureState {
  format: 'm4data-mixture-state';
  version: 1;
  seed: number;
  /** Next position of the single-rank stream. */
  position: number;
  rank: number;
  worldSize: number;
  sources: SourceCursor[];
}

export interface MixtureStreamOptions {
  /** This rank and the world size (default 0 of 1; torchrun's RANK / WORLD_SIZE are read by the CLI, not here). */
  rank?: number;
  worldSize?: number;
  /** Resume from a state taken by `state()`. */
  resume?: MixtureState;
  /**
   * Positions looked at ahead of the consumer: a shard is opened, and starts reading, when its first sample comes
   * this close (default 64 when every source is local, 1024 when one is remote, to hide S3's first-byte latency).
   */
  lookahead?: number;
  /**
   * Keep going past the plan's end by the same rule (further epochs, same shares), so a consumer that needs a fixed
   * number of batches on every rank (the bridge) never runs dry. Default false: the stream ends with the plan.
   */
  endless?: boolean;
  /** Corrupt shards skipped before the stream fails (default 3). */
  maxBadShards?: number;
  signal?: AbortSignal;
}

/** Per source: what the stream actually delivered, against the plan. */
export interface RealisedSource {
  name: string;
  plannedTokens: number;
  plannedSamples: number;
  tokens: number;
  samples: number;
  images: number;
  /** Samples the plan scheduled that could not be read (a corrupt shard), and their tokens. */
  lostSamples: number;
  lostTokens: number;
  epochs: number;
  share: number;
  plannedShare: number;
}

export interface RealisedReport {
  samples: number;
  tokens: number;
  sources: RealisedSource[];
  /** One message per shard that could not be read in full. */
  badShards: string[];
  /** Samples of a last, incomplete round of ranks, dropped by every rank (0 with one rank). */
  remainder: number;
}

export interface MixtureStream extends AsyncIterable<MixedSample> {
  /** The state after the last sample this iterator yielded. */
  state(): MixtureState;
  /** What has been delivered so far, per source, against the plan. */
  realised(): RealisedReport;
}

export interface Mixture {
  /** The mixture's location (MIX_DIR). */
  location: string;
  profile: MixProfile;
  plan: MixPlan;
  stream(options?: MixtureStreamOptions): MixtureStream;
}
