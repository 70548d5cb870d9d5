/** What m4data's exit status means, for scripts and schedulers. */
export const ExitCode = {
  OK: 0,
  /** The job could not run: storage unreachable, no input row readable, an internal error. */
  FAILURE: 1,
  /** A bad flag or argument; nothing was done. */
  USAGE: 2,
  /** The job ran but found bad data (a corrupt shard, samples skipped) that the caller should look at. */
  BAD_DATA: 3,
} as const;
