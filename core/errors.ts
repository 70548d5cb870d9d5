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
  | 'E_FETCH' // an image download that failed (recorded as an outcome, never thrown out of a build)
  | 'E_DIVERGED' // training produced a loss or gradient norm that is not a finite number
  | 'E_INTERNAL'; // anything m4data did not raise on purpose: a bug, or a failure nothing above names

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

/** File-system error codes and the code m4data reports them under. */
const ERRNO_CODES: Record<string, ErrorCode> = {
  ENOENT: 'E_NOT_FOUND',
  ENOTDIR: 'E_STORAGE',
  EISDIR: 'E_STORAGE',
  EACCES: 'E_STORAGE',
  EPERM: 'E_STORAGE',
  EROFS: 'E_STORAGE',
  ENOSPC: 'E_STORAGE',
  EDQUOT: 'E_STORAGE',
  EEXIST: 'E_STORAGE',
  ELOOP: 'E_STORAGE',
  ENAMETOOLONG: 'E_STORAGE',
};

/** What a file-system error means, in words, for the path it names. */
const ERRNO_SENTENCES: Record<string, string> = {
  ENOENT: 'does not exist',
  ENOTDIR: 'runs through a file, not a folder',
  EISDIR: 'is a folder, not a file',
  EACCES: 'is not accessible to this user',
  EPERM: 'is not permitted to this user',
  EROFS: 'is on a read-only file system',
  ENOSPC: 'is on a device with no space left',
  EDQUOT: 'is over its disk quota',
  EEXIST: 'already exists',
  ELOOP: 'is a loop of symbolic links',
  ENAMETOOLONG: 'is too long a name',
};

/** Any thrown value as an M4Error, so every failure prints one way (`m4data: message [E_CODE]`); an M4Error is kept as it is. */
export function asM4Error(err: unknown): M4Error {
  if (err instanceof M4Error) return err;
  const { code: errno, path } = (err ?? {}) as NodeJS.ErrnoException;
  const code = (errno !== undefined && ERRNO_CODES[errno]) || 'E_INTERNAL';
  const sentence = errno !== undefined ? ERRNO_SENTENCES[errno] : undefined;
  const message = sentence && path ? `${path} ${sentence} (${errno})` : errorMessage(err);
  return new M4Error(code, 'cli', message, { errno }, { cause: err });
}
