// Strict, allocation-light parsing and canonical formatting of IP addresses and prefixes for the route code.
// Canonical means: IPv4 dotted quad without leading zeros, IPv6 in the RFC 5952 compressed lower-case form that
// ipaddr.js prints (unit tests hold the two equal), host bits cleared, and a /32 or /128 on host routes.
// Own code instead of ipaddr.js on this path because learned paths and kernel dumps run to 50k+ entries and
// ipaddr.js's generic parse costs ~3 µs per address here (17 µs when it first tries the other family).

/** The one IP family type of the agent: BGP's and the kernel's words. Tools' spellings (4/6, -4/-6, inet/inet6) are
 * rendered from it where the text is written. */
export type IpFamily = 'ipv4' | 'ipv6';

export const IP_FAMILIES: readonly IpFamily[] = ['ipv4', 'ipv6'];

/**
 * The family of an address or prefix text, without validating it (only IPv6 text has a ':'): cheap enough for the
 * loops over every pod CIDR and policy peer. Text from outside is parsed (parseIpAddress, parseIpPrefix) first.
 */
export function familyOf(addressOrPrefix: string): IpFamily {
  return addressOrPrefix.includes(':') ? 'ipv6' : 'ipv4';
}

/** Bits in an address of the family: 32 or 128, the prefix length of a host route. */
export function addressBits(family: IpFamily): 32 | 128 {
  return family === 'ipv4' ? 32 : 128;
}

/** The IP version number (4 or 6), as iptables' -4/-6 and our set and chain names spell a family. */
export function ipVersion(family: IpFamily): 4 | 6 {
  return family === 'ipv4' ? 4 : 6;
}

export interface IpAddress {
  family: IpFamily;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
  /** Canonical text. */
  text: string;
}

export interface IpPrefix {
  family: IpFamily;
  /** Network address: host bits are zero. */
  bytes: Uint8Array;
  length: number;
  /** Canonical text, always with the length: "10.1.0.0/24", "fd00:1::/64". */
  text: string;
}

function parseIpv4Bytes(text: string, out: Uint8Array, offset: number): boolean {
  let part = 0;
  let digits = 0;
  let index = offset;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || index >= offset + 3) return false;
      out[index++] = part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      // No leading zeros: "010" is octal to some parsers and decimal to others.
      if (digits === 1 && part === 0) return false;
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return false;
    } else {
      return false;
    }
  }
  if (digits === 0 || index !== offset + 3) return false;
  out[index] = part;
  return true;
}

function parseHexGroup(text: string): number {
  if (text.length === 0 || text.length > 4) return -1;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let digit: number;
    if (c >= 48 && c <= 57) digit = c - 48;
    else if (c >= 97 && c <= 102) digit = c - 87;
    else if (c >= 65 && c <= 70) digit = c - 55;
    else return -1;
    value = value * 16 + digit;
  }
  return value;
}

/** Parses the groups of one side of "::" into 16-bit words; an embedded IPv4 tail counts as two words. */
function parseIpv6Groups(text: string, allowIpv4Tail: boolean): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const words: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    if (allowIpv4Tail && i === parts.length - 1 && part.includes('.')) {
      const v4 = new Uint8Array(4);
      if (!parseIpv4Bytes(part, v4, 0)) return undefined;
      words.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
      continue;
    }
    const word = parseHexGroup(part);
    if (word < 0) return undefined;
    words.push(word);
  }
  return words;
}

function parseIpv6Bytes(text: string): Uint8Array | undefined {
  const gap = text.indexOf('::');
  let words: number[];
  if (gap < 0) {
    const all = parseIpv6Groups(text, true);
    if (all === undefined || all.length !== 8) return undefined;
    words = all;
  } else {
    if (text.indexOf('::', gap + 1) >= 0) return undefined;
    const head = parseIpv6Groups(text.slice(0, gap), false);
    const tail = parseIpv6Groups(text.slice(gap + 2), true);
    if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const word = words[i] as number;
    bytes[i * 2] = word >> 8;
    bytes[i * 2 + 1] = word & 0xff;
  }
  return bytes;
}

export function formatIpBytes(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(((bytes[i * 2] as number) << 8) | (bytes[i * 2 + 1] as number));
  // RFC 5952: the longest run (first on a tie) of two or more zero words becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return words.map((w) => w.toString(16)).join(':');
  const head = words.slice(0, bestStart).map((w) => w.toString(16)).join(':');
  const tail = words.slice(bestStart + bestLength).map((w) => w.toString(16)).join(':');
  return `${head}::${tail}`;
}

function parseAddressBytes(text: string): Uint8Array | undefined {
  if (familyOf(text) === 'ipv6') return parseIpv6Bytes(text);
  const bytes = new Uint8Array(4);
  return parseIpv4Bytes(text, bytes, 0) ? bytes : undefined;
}

/** Parses one address (no zone index, no prefix length); undefined when it is not a valid address. */
export function parseIpAddress(text: string): IpAddress | undefined {
  const bytes = parseAddressBytes(text);
  if (bytes === undefined) return undefined;
  return { family: bytes.length === 4 ? 'ipv4' : 'ipv6', bytes, text: formatIpBytes(bytes) };
}

/** True for an IPv4-mapped IPv6 address or prefix (::ffff:a.b.c.d): IPv4 in IPv6 text. */
export function isIpv4Mapped(address: IpAddress | IpPrefix): boolean {
  const b = address.bytes;
  return b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

/**
 * Why an address cannot be a BGP peer, a session's local address or a router ID: the unspecified address, loopback,
 * broadcast or multicast (IPv4-mapped IPv6 judged as its IPv4 address); undefined when it is none of those.
 */
export function specialAddressKind(address: IpAddress): 'unspecified' | 'loopback' | 'broadcast' | 'multicast' | undefined {
  let b = address.bytes;
  if (b.length === 16) {
    if (!isIpv4Mapped(address)) {
      if (b.every((x) => x === 0)) return 'unspecified';
      if (b.subarray(0, 15).every((x) => x === 0) && b[15] === 1) return 'loopback';
      return b[0] === 0xff ? 'multicast' : undefined;
    }
    b = b.subarray(12);
  }
  const first = b[0] as number;
  if (first === 0) return 'unspecified';
  if (first === 127) return 'loopback';
  if (b.every((x) => x === 255)) return 'broadcast';
  return first >= 224 && first <= 239 ? 'multicast' : undefined;
}

/**
 * Parses "address/length" (or a bare address = host route) and clears the host bits, the way the kernel stores
 * a route's destination; "default" is the kernel's spelling of the default route in the given family.
 */
export function parseIpPrefix(text: string, defaultFamily: IpFamily = 'ipv4'): IpPrefix | undefined {
  if (text === 'default') text = defaultFamily === 'ipv4' ? '0.0.0.0/0' : '::/0';
  const slash = text.indexOf('/');
  const bytes = parseAddressBytes(slash < 0 ? text : text.slice(0, slash));
  if (bytes === undefined) return undefined;
  const maxLength = bytes.length * 8;
  let length = maxLength;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lengthText)) return undefined;
    length = Number(lengthText);
    if (length > maxLength) return undefined;
  }
  for (let bit = length; bit < maxLength; bit++) {
    if (bit % 8 === 0) {
      bytes.fill(0, bit / 8);
      break;
    }
    bytes[bit >> 3] = (bytes[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  }
  return { family: bytes.length === 4 ? 'ipv4' : 'ipv6', bytes, length, text: `${formatIpBytes(bytes)}/${length}` };
}

/**
 * Parses a CIDR, "address/length" with the length required: a bare address is no CIDR (config ranges, ipBlocks,
 * podCIDRs, BGP prefixes). Host bits are cleared as in parseIpPrefix; callers that refuse them compare the text.
 */
export function parseIpCidr(text: string): IpPrefix | undefined {
  return text.includes('/') && text !== 'default' ? parseIpPrefix(text) : undefined;
}

/** A CIDR that was validated where it came in (config schema, Node reader, policy validation): throws on anything else. */
export function requireIpCidr(text: string): IpPrefix {
  const prefix = parseIpCidr(text);
  if (prefix === undefined) throw new Error(`not a CIDR: ${JSON.stringify(text)}`);
  return prefix;
}

/** The n-th address of a prefix (0 = the network address); undefined when the prefix holds fewer than n + 1. */
export function nthAddressOf(prefix: IpPrefix, n: number): IpAddress | undefined {
  const hostBits = prefix.bytes.length * 8 - prefix.length;
  if (!Number.isSafeInteger(n) || n < 0 || (hostBits < 53 && n >= 2 ** hostBits)) return undefined;
  const bytes = prefix.bytes.slice();
  // Host bits are zero, so adding n byte by byte from the end never carries into the network part.
  let rest = n;
  for (let i = bytes.length - 1; i >= 0 && rest > 0; i--) {
    const sum = (bytes[i] as number) + (rest % 256);
    bytes[i] = sum & 0xff;
    rest = Math.floor(rest / 256) + (sum >> 8);
  }
  return { family: prefix.family, bytes, text: formatIpBytes(bytes) };
}

/** The two prefixes one bit longer that make up `prefix` (a host route has none: callers never split one). */
export function prefixHalves(prefix: IpPrefix): [IpPrefix, IpPrefix] {
  const length = prefix.length + 1;
  const high = prefix.bytes.slice();
  high[prefix.length >> 3] = (high[prefix.length >> 3] as number) | (0x80 >> (prefix.length & 7));
  return [truncatePrefix(prefix, length), { family: prefix.family, bytes: high, length, text: `${formatIpBytes(high)}/${length}` }];
}

/** Whether `bytes` lies in the network of `outer` (same family): its first outer.length bits are the network's. */
function inNetwork(outer: IpPrefix, bytes: Uint8Array): boolean {
  const fullBytes = outer.length >> 3;
  for (let i = 0; i < fullBytes; i++) if (outer.bytes[i] !== bytes[i]) return false;
  const restBits = outer.length & 7;
  if (restBits === 0) return true;
  const mask = (0xff << (8 - restBits)) & 0xff;
  return ((outer.bytes[fullBytes] as number) & mask) === ((bytes[fullBytes] as number) & mask);
}

/** True when every address of `inner` lies in `outer` (equal prefixes contain each other). */
export function prefixContains(outer: IpPrefix, inner: IpPrefix): boolean {
  return outer.family === inner.family && outer.length <= inner.length && inNetwork(outer, inner.bytes);
}

export function prefixContainsAddress(outer: IpPrefix, address: IpAddress): boolean {
  return outer.family === address.family && inNetwork(outer, address.bytes);
}

export function prefixesOverlap(a: IpPrefix, b: IpPrefix): boolean {
  return prefixContains(a, b) || prefixContains(b, a);
}

// Loops, not some() with a closure: route selection runs these for every prefix of a burst.
/** Whether one of `ranges` contains `prefix`. */
export function anyContains(ranges: readonly IpPrefix[], prefix: IpPrefix): boolean {
  for (const range of ranges) if (prefixContains(range, prefix)) return true;
  return false;
}

/** Whether one of `ranges` overlaps `prefix`. */
export function anyOverlaps(ranges: readonly IpPrefix[], prefix: IpPrefix): boolean {
  for (const range of ranges) if (prefixesOverlap(range, prefix)) return true;
  return false;
}

/** Whether one of `ranges` contains `address`. */
export function anyContainsAddress(ranges: readonly IpPrefix[], address: IpAddress): boolean {
  for (const range of ranges) if (prefixContainsAddress(range, address)) return true;
  return false;
}

/** The prefix of `prefix`'s network cut to a shorter length, as canonical text (for index look-ups). */
export function truncatePrefix(prefix: IpPrefix, length: number): IpPrefix {
  const bytes = prefix.bytes.slice();
  const maxLength = bytes.length * 8;
  for (let bit = length; bit < maxLength; bit++) {
    if (bit % 8 === 0) {
      bytes.fill(0, bit / 8);
      break;
    }
    bytes[bit >> 3] = (bytes[bit >> 3] as number) & ~(0x80 >> (bit & 7));
  }
  return { family: prefix.family, bytes, length, text: `${formatIpBytes(bytes)}/${length}` };
}

/** The text of truncatePrefix(prefix, length), without building the prefix (IPv4: integer arithmetic only). */
export function truncatedPrefixText(prefix: IpPrefix, length: number): string {
  if (prefix.family === 'ipv6') return truncatePrefix(prefix, length).text;
  const b = prefix.bytes;
  const value = (b[0] as number) * 2 ** 24 + (((b[1] as number) << 16) | ((b[2] as number) << 8) | (b[3] as number));
  const block = 2 ** (32 - length);
  return `${formatIpv4Value(value - (value % block))}/${length}`;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length; // IPv4 before IPv6
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

/** Numeric order, IPv4 before IPv6: the one order next hops and routes are listed in. */
export function compareIpAddresses(a: IpAddress, b: IpAddress): number {
  return compareBytes(a.bytes, b.bytes);
}

export function compareIpPrefixes(a: IpPrefix, b: IpPrefix): number {
  return compareBytes(a.bytes, b.bytes) || a.length - b.length;
}

// Fast paths for the planner, the kernel reader and setDesired, which see every route on every sync: strings
// that are already canonical (nearly all of them) come back as the same string, and IPv4 is handled without
// allocating; IPv6 and non-canonical input take the full parse.

/** The value of a strict dotted quad in text[start, end) (strict = canonical for IPv4), or -1. */
function scanIpv4(text: string, start: number, end: number): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return -1;
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (digits === 0 || dots !== 3) return -1;
  return value * 256 + part;
}

function formatIpv4Value(value: number): string {
  return `${Math.floor(value / 16777216)}.${Math.floor(value / 65536) % 256}.${Math.floor(value / 256) % 256}.${value % 256}`;
}

/** A prefix length 0..max written without leading zeros, or -1. */
function scanLength(text: string, start: number, max: number): number {
  const digits = text.length - start;
  if (digits < 1 || digits > 3) return -1;
  let value = 0;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57 || (i > start && value === 0)) return -1;
    value = value * 10 + (c - 48);
  }
  return value <= max ? value : -1;
}

/** Canonical text of a prefix (as parseIpPrefix(...).text); the very same string when it already is canonical. */
export function canonicalPrefixText(text: string, defaultFamily: IpFamily = 'ipv4'): string | undefined {
  if (familyOf(text) === 'ipv6' || text === 'default') return parseIpPrefix(text, defaultFamily)?.text;
  const slash = text.indexOf('/');
  const value = scanIpv4(text, 0, slash < 0 ? text.length : slash);
  if (value < 0) return undefined;
  if (slash < 0) return `${text}/32`;
  const length = scanLength(text, slash + 1, 32);
  if (length < 0) return undefined;
  const block = 2 ** (32 - length);
  const network = value - (value % block);
  return network === value ? text : `${formatIpv4Value(network)}/${length}`;
}

/** Canonical text of an address; the very same string when it already is canonical. */
export function canonicalAddressText(text: string): string | undefined {
  if (familyOf(text) === 'ipv6') return parseIpAddress(text)?.text;
  return scanIpv4(text, 0, text.length) >= 0 ? text : undefined;
}

/**
 * A key that sorts canonical addresses or prefixes numerically (then by length): a number for IPv4, a
 * string for IPv6. Compare with compareSortKeys.
 */
export function ipSortKey(canonical: string): number | string {
  const slash = canonical.indexOf('/');
  if (familyOf(canonical) === 'ipv4') {
    const value = scanIpv4(canonical, 0, slash < 0 ? canonical.length : slash);
    return value * 64 + (slash < 0 ? 32 : Number(canonical.slice(slash + 1)));
  }
  const parsed = slash < 0 ? parseIpAddress(canonical) : parseIpPrefix(canonical);
  let key = '';
  for (const byte of parsed?.bytes ?? []) key += byte.toString(16).padStart(2, '0');
  return key + (slash < 0 ? '128' : canonical.slice(slash + 1).padStart(3, '0'));
}

/** IPv4 (numbers) before IPv6 (strings), each in numeric order. */
export function compareSortKeys(a: number | string, b: number | string): number {
  if (typeof a === 'number') return typeof b === 'number' ? a - b : -1;
  if (typeof b === 'number') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Canonical next-hop list: parsed, deduplicated, sorted; undefined if one of them is not an address. */
export function canonicalNextHops(nextHops: readonly string[]): string[] | undefined {
  if (nextHops.length === 1) {
    const only = canonicalAddressText(nextHops[0] as string);
    return only === undefined ? undefined : [only];
  }
  const keyed: { text: string; key: number | string }[] = [];
  for (const text of nextHops) {
    const canonical = canonicalAddressText(text);
    if (canonical === undefined) return undefined;
    keyed.push({ text: canonical, key: ipSortKey(canonical) });
  }
  keyed.sort((a, b) => compareSortKeys(a.key, b.key));
  const out: string[] = [];
  for (const { text } of keyed) if (out[out.length - 1] !== text) out.push(text);
  return out;
}
