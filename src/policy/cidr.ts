// Prefix arithmetic for ipBlocks: prefixes as integers (for containment, halves and "cidr minus except"), parsed
// and printed by the agent's one address parser (src/routes/ip-prefix.ts).
import { addressBits, formatIpBytes, parseIpPrefix, type IpFamily } from '../routes/ip-prefix.js';

export interface Prefix {
  family: IpFamily;
  /** The network address as an unsigned integer (host bits zero). */
  base: bigint;
  length: number;
}

/** Parses a CIDR, accepting host bits set ("10.0.0.5/24" is 10.0.0.0/24, as the API accepts it). Throws on junk. */
export function parsePrefix(cidr: string): Prefix {
  // A bare address is no CIDR here (the API refuses one in ipBlock.cidr).
  const parsed = cidr.includes('/') ? parseIpPrefix(cidr) : undefined;
  if (parsed === undefined) throw new Error(`not a CIDR: ${JSON.stringify(cidr)}`);
  let base = 0n;
  for (const byte of parsed.bytes) base = (base << 8n) | BigInt(byte);
  return { family: parsed.family, base, length: parsed.length };
}

export function formatPrefix(p: Prefix): string {
  const bytes = new Uint8Array(addressBits(p.family) / 8);
  let value = p.base;
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return `${formatIpBytes(bytes)}/${p.length}`;
}

export function canonicalCidr(cidr: string): string {
  return formatPrefix(parsePrefix(cidr));
}

function lastOf(p: Prefix): bigint {
  return p.base + (1n << BigInt(addressBits(p.family) - p.length)) - 1n;
}

/** a contains b (or equals it). */
export function prefixContains(a: Prefix, b: Prefix): boolean {
  return a.family === b.family && a.length <= b.length && b.base >= a.base && lastOf(b) <= lastOf(a);
}

function overlaps(a: Prefix, b: Prefix): boolean {
  return a.family === b.family && a.base <= lastOf(b) && b.base <= lastOf(a);
}

/** The addresses of `cidr` that are in none of `excepts`, as the fewest disjoint prefixes, in address order. */
export function subtractPrefixes(cidr: Prefix, excepts: Prefix[]): Prefix[] {
  const relevant = excepts.filter((e) => overlaps(cidr, e));
  if (relevant.length === 0) return [cidr];
  if (relevant.some((e) => prefixContains(e, cidr))) return [];
  const [low, high] = halvesOf(cidr);
  return [...subtractPrefixes(low, relevant), ...subtractPrefixes(high, relevant)];
}

/** The two prefixes one bit longer that make up `p` (a host prefix has none: callers never split one). */
export function halvesOf(p: Prefix): [Prefix, Prefix] {
  const length = p.length + 1;
  const half = 1n << BigInt(addressBits(p.family) - length);
  return [
    { family: p.family, base: p.base, length },
    { family: p.family, base: p.base + half, length },
  ];
}
