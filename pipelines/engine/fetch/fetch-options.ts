/** Options of the image fetcher, their defaults, and their validation. */
import { M4Error } from '../../../core/errors.ts';
import { wholeIn } from '../../../core/ranges.ts';
import { parseCidr } from '../../../core/network/address-policy.ts';

export interface FetchOptions {
  /** Open connections to one origin at most (keep-alive pool size). Default 16. */
  maxConnectionsPerHost: number;
  /** TCP (+TLS) connect deadline. Default 10000 ms. */
  connectTimeoutMs: number;
  /** Deadline from sending a request to receiving its response headers. Default 15000 ms. */
  headersTimeoutMs: number;
  /** Deadline for the whole body once headers arrived. Default 30000 ms. */
  bodyTimeoutMs: number;
  /** Retries after the first attempt, on 429, 5xx except 501, network errors and timeouts. Default 2 (3 attempts). */
  retries: number;
  /** Base of the full-jitter exponential backoff: retry n waits random(0, base * 2^(n-1)). Default 500 ms. */
  retryBaseDelayMs: number;
  /** Cap of the backoff; a Retry-After longer than this ends the retries instead of being cut short. Default 10000 ms. */
  retryMaxDelayMs: number;
  /** Redirects followed at most per fetch. Default 5. */
  maxRedirects: number;
  /** Largest body kept; a longer one fails as soon as it is known to be longer. Default 20 MiB. */
  maxBodyBytes: number;
  /** Sent as User-Agent. Default `m4data/0.1 (vision-language dataset builder; honours X-Robots-Tag noai)`. */
  userAgent: string;
  /** Non-public addresses that may be contacted: false none, true all, or a list of CIDRs. Default false. */
  allowPrivateNetwork: boolean | string[];
}

const DEFAULTS: FetchOptions = {
  maxConnectionsPerHost: 16,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 15_000,
  bodyTimeoutMs: 30_000,
  retries: 2,
  retryBaseDelayMs: 500,
  retryMaxDelayMs: 10_000,
  maxRedirects: 5,
  maxBodyBytes: 20 * 1024 * 1024,
  userAgent: 'm4data/0.1 (vision-language dataset builder; honours X-Robots-Tag noai)',
  allowPrivateNetwork: false,
};

// Smallest value each numeric option accepts; all of them must be integers.
const MINIMUMS: Record<Exclude<keyof FetchOptions, 'userAgent' | 'allowPrivateNetwork'>, number> = {
  maxConnectionsPerHost: 1,
  connectTimeoutMs: 1,
  headersTimeoutMs: 1,
  bodyTimeoutMs: 1,
  retries: 0,
  retryBaseDelayMs: 0,
  retryMaxDelayMs: 0,
  maxRedirects: 0,
  maxBodyBytes: 1,
};

/** Fills in defaults (an `undefined` field counts as absent) and rejects nonsense with E_USAGE. */
export function resolveFetchOptions(partial: Partial<FetchOptions> = {}): FetchOptions {
  const unknown = Object.keys(partial).filter((key) => !(key in DEFAULTS));
  if (unknown.length > 0) throw usage(`unknown fetch option ${unknown.join(', ')}`);
  const defined = Object.fromEntries(Object.entries(partial).filter(([, value]) => value !== undefined));
  const options: FetchOptions = { ...DEFAULTS, ...defined };

  for (const [key, minimum] of Object.entries(MINIMUMS) as Array<[keyof typeof MINIMUMS, number]>)
    wholeIn('fetch', `fetch option ${key}`, options[key], minimum);
  if (options.retryMaxDelayMs < options.retryBaseDelayMs) {
    throw usage(`fetch option retryMaxDelayMs (${options.retryMaxDelayMs}) is below retryBaseDelayMs (${options.retryBaseDelayMs})`);
  }
  if (typeof options.userAgent !== 'string' || options.userAgent.trim() === '' || /[\r\n]/.test(options.userAgent)) {
    throw usage('fetch option userAgent must be a non-empty single-line string');
  }
  const allow = options.allowPrivateNetwork;
  if (Array.isArray(allow)) {
    for (const cidr of allow) {
      if (typeof cidr !== 'string') throw usage('fetch option allowPrivateNetwork must list CIDR strings');
      parseCidr(cidr);
    }
    options.allowPrivateNetwork = [...allow];
  } else if (typeof allow !== 'boolean') {
    throw usage('fetch option allowPrivateNetwork must be true, false or a list of CIDRs');
  }
  return options;
}

function usage(message: string): M4Error {
  return new M4Error('E_USAGE', 'fetch', message);
}
