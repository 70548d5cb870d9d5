import dns from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import type { AddressPolicy } from './address-policy.ts';

/**
 * The one rule every command that reaches the network follows: a connection never goes to an address the policy
 * blocks. Host names are judged by the lookup their connections resolve with; IP literals, which skip any lookup,
 * by `blockedLiteral` before the request.
 */

/**
 * A lookup for undici's `connect.lookup`: it resolves every address of the name and refuses the connection when any is
 * blocked, so a name cannot smuggle a private address in (also on a later DNS answer).
 */
export function guardedLookup(policy: AddressPolicy, refusal: (message: string) => Error): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { family: options.family, hints: options.hints, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      for (const { address } of addresses) {
        const verdict = policy(address);
        if (!verdict.allowed) return callback(refusal(`blocked address ${address} (${verdict.reason})`), []);
      }
      const [first] = addresses;
      if (options.all === true || first === undefined) return callback(null, addresses);
      callback(null, first.address, first.family);
    });
  };
}

/** Why a URL whose host is an IP literal may not be reached (`blocked address 127.0.0.1 (loopback)`), or undefined. */
export function blockedLiteral(url: URL, policy: AddressPolicy): string | undefined {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) === 0) return undefined;
  const verdict = policy(host);
  return verdict.allowed ? undefined : `blocked address ${host} (${verdict.reason})`;
}
