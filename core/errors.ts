/** Every error m4data raises on purpose carries a stable `code`, the subsystem, and the context it happened in. */
export type ErrorCode =
  | 'E_USAGE' // bad flag or argument: exit code 2
  | 'E_NOT_FOUND' // an object, file or shard that does not exist
  | 'E_STORAGE' // a storage backend failed after its retries
  | 'E_TAR_TRUNCATED' // a tar ends inside a header or an entry
  | 'E_TAR_CORRUPT' // a tar header fails its checksum or cannot be parsed
  | 'E_UNSAFE_NAME' // a tar entry name with `..`, an absolute path or NUL
  | 'E_SAMPLE' // a sample that cannot be written (bad key, duplicate field)
  | 'E_INPUT' // source metadata that does not match what the pipeline expects
  | 'E_FETCH'; // an image download that failed (recorded as an outcome, never thrown out of a build)

export class M4Error extends Error {
  readonly code: ErrorCode;
  readonly subsystem: string;
  readonly context: Record<string, unknown>;

  constructor(code: ErrorCode, subsystem: string, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'M4Error';
    this.code = code;
    this.subsystem = subsystem;
    this.context = context;
  }
}

export function isM4Error(err: unknown, code?: ErrorCode): err is M4Error {
  return err instanceof M4Error && (code === undefined || err.code === code);
}

/** The message of anything thrown, for logs and outcome records. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
