/**
 * Decides whether an IP address may be contacted. Everything that is not ordinary public unicast
 * (loopback, private, link-local, cloud metadata, CGNAT, multicast, documentation, reserved...) is
 * blocked unless the caller allows it, so a URL list cannot make the fetcher reach internal services.
 * IPv4 embedded in IPv6 (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged as the IPv4 it carries.
 */
import { BlockList, isIP } from 'node:net';
import { M4Error } from '../errors.ts';

export type BlockReason =
  | 'invalid'
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'metadata'
  | 'cgnat'
  | 'multicast'
  | 'broadcast'
  | 'documentation'
  | 'reserved';

export type AddressVerdict = { allowed: true } | { allowed: false; reason: BlockReason };

/** Judges one IP address (v4 or v6, optionally with a `%zone`). */
export type AddressPolicy = (ip: string) => AddressVerdict;

type Family = 'ipv4' | 'ipv6';

// Checked in this order, so the narrower reason wins where ranges overlap (metadata inside link-local, broadcast inside 240/4).
const IPV4_RANGES: ReadonlyArray<readonly [BlockReason, ...string[]]> = [
  ['metadata', '169.254.169.254/32'],
  ['broadcast', '255.255.255.255/32'],
  ['unspecified', '0.0.0.0/8'],
  ['loopback', '127.0.0.0/8'],
  ['private', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'],
  ['link-local', '169.254.0.0/16'],
  ['cgnat', '100.64.0.0/10'],
  ['multicast', '224.0.0.0/4'],
  ['documentation', '192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'],
  // IETF protocol assignments, deprecated 6to4 relay anycast, benchmarking, class E.
  ['reserved', '192.0.0.0/24', '192.88.99.0/24', '198.18.0.0/15', '240.0.0.0/4'],
];

const IPV6_RANGES: ReadonlyArray<readonly [BlockReason, ...string[]]> = [
  ['metadata', 'fd00:ec2::254/128'],
  ['unspecified', '::/128'],
  ['loopback', '::1/128'],
  // Unique local, and the deprecated site-local.
  ['private', 'fc00::/7', 'fec0::/10'],
  ['link-local', 'fe80::/10'],
  ['multicast', 'ff00::/8'],
  ['documentation', '2001:db8::/32', '3fff::/20'],
  // Local-use NAT64, discard-only, IETF protocol assignments (Teredo, ORCHID...), SRv6 SIDs.
  ['reserved', '64:ff9b:1::/48', '100::/64', '2001::/23', '5f00::/16'],
];

// Global unicast; any IPv6 outside it that no rule above names is reserved.
const GLOBAL_UNICAST = blockListOf([['2000::', 3, 'ipv6']]);

const IPV4_LISTS = compile(IPV4_RANGES);
const IPV6_LISTS = compile(IPV6_RANGES);

/** Parses `a.b.c.d/n`, `x::y/n` or a bare address (a single host); throws E_USAGE on anything else. */
export function parseCidr(text: string): [address: string, prefix: number, family: Family] {
  const [address = '', prefixText, extra] = text.trim().split('/');
  const version = isIP(address);
  const bits = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (version === 0 || extra !== undefined || !(prefix >= 0 && prefix <= bits)) {
    throw new M4Error('E_USAGE', 'fetch', `invalid CIDR ${JSON.stringify(text)}: expected an address with an optional /prefix`, { cidr: text });
  }
  return [address, prefix, version === 4 ? 'ipv4' : 'ipv6'];
}

/** Why an address is not ordinary public unicast, or undefined when it is. */
export function classifyAddress(ip: string): BlockReason | undefined {
  const address = ip.split('%')[0] ?? '';
  const version = isIP(address);
  if (version === 4) return firstMatch(IPV4_LISTS, address, 'ipv4');
  if (version !== 6) return 'invalid';
  const groups = ipv6Groups(address);
  const embedded = embeddedIpv4(groups);
  if (embedded.kind === 'only') return firstMatch(IPV4_LISTS, embedded.ipv4, 'ipv4');
  if (embedded.kind === 'tunnelled') {
    const reason = firstMatch(IPV4_LISTS, embedded.ipv4, 'ipv4');
    if (reason !== undefined) return reason;
  }
  return firstMatch(IPV6_LISTS, address, 'ipv6') ?? (GLOBAL_UNICAST.check(address, 'ipv6') ? undefined : 'reserved');
}

/**
 * The policy for an allowance: `false` blocks every non-public address, `true` allows everything,
 * a list of CIDRs allows just those ranges (public addresses stay allowed). Throws E_USAGE on a bad CIDR.
 */
export function createAddressPolicy(allowPrivateNetwork: boolean | readonly string[]): AddressPolicy {
  if (allowPrivateNetwork === true) return () => ({ allowed: true });
  const allowed = blockListOf(allowPrivateNetwork === false ? [] : allowPrivateNetwork.map(parseCidr));
  return (ip) => {
    const address = ip.split('%')[0] ?? '';
    const version = isIP(address);
    if (version !== 0 && allowed.check(address, version === 4 ? 'ipv4' : 'ipv6')) return { allowed: true };
    const reason = classifyAddress(address);
    return reason === undefined ? { allowed: true } : { allowed: false, reason };
  };
}

function blockListOf(subnets: ReadonlyArray<readonly [string, number, Family]>): BlockList {
  const list = new BlockList();
  for (const [address, prefix, family] of subnets) list.addSubnet(address, prefix, family);
  return list;
}

function compile(ranges: ReadonlyArray<readonly [BlockReason, ...string[]]>): Array<[BlockReason, BlockList]> {
  return ranges.map(([reason, ...cidrs]) => [reason, blockListOf(cidrs.map(parseCidr))]);
}

function firstMatch(lists: Array<[BlockReason, BlockList]>, address: string, family: Family): BlockReason | undefined {
  return lists.find(([, list]) => list.check(address, family))?.[0];
}

/** The eight 16-bit groups of a valid IPv6 address (no zone), with a trailing dotted quad folded in. */
function ipv6Groups(address: string): number[] {
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  let text = address;
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${address.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const front = head === '' ? [] : head.split(':');
  const back = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : new Array<string>(8 - front.length - back.length).fill('0');
  return [...front, ...zeros, ...back].map((group) => parseInt(group, 16));
}

type Embedded = { kind: 'none' } | { kind: 'only' | 'tunnelled'; ipv4: string };

/** IPv4 carried by an IPv6 address: `only` when the address just stands for it, `tunnelled` when it is also an IPv6 route. */
function embeddedIpv4(groups: number[]): Embedded {
  const g = (i: number) => groups[i] ?? 0;
  const quad = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeroUpTo = (n: number) => groups.slice(0, n).every((x) => x === 0);
  if (zeroUpTo(5) && g(5) === 0xffff) return { kind: 'only', ipv4: quad(g(6), g(7)) };
  // NAT64 well-known prefix: the gateway forwards to the embedded IPv4.
  if (g(0) === 0x64 && g(1) === 0xff9b && groups.slice(2, 6).every((x) => x === 0)) return { kind: 'only', ipv4: quad(g(6), g(7)) };
  if (g(0) === 0x2002) return { kind: 'tunnelled', ipv4: quad(g(1), g(2)) };
  return { kind: 'none' };
}
