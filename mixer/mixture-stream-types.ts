import type { MixQuality } from './mix-quality.ts';
import type { MixtureState } from './mixture-state.ts';
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

export type { MixtureState } from './mixture-state.ts';

export interface MixtureStreamOptions {
  /** This rank and the world size (default 0 of 1; torchrun's RANK / WORLD_SIZE are read by the CLI, not here). */
  rank?: number;
  worldSize?: number;
  /**
   * Resume from a state taken by `state()` on this rank of this world; or from the states of every rank of another
   * world, saved at the same point, to go on under this world size: then every sample of the single-rank stream is
   * read exactly once over both worlds.
   */
  resume?: MixtureState | readonly MixtureState[];
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
  /** How well mixed the samples this stream delivered were (see mix-quality.ts). */
  quality: MixQuality;
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
  /** The plan's fingerprint, bound into every state (see plan-fingerprint.ts). */
  planId: string;
  stream(options?: MixtureStreamOptions): MixtureStream;
}
