// A hand-written protobuf decoder for the messages on the agent's hot path: WatchEventResponse (gobgpd 3.10
// sends one per prefix) and ListPathResponse. It reads the wire format directly and decodes the `Any` path
// attributes it needs by their type URL, producing podroute's LearnedPath without building GoBGP's generic
// object tree first (generic proto-loader decoding costs ~30 µs per message; this is a few µs).
// Field numbers come from proto/gobgp.proto and proto/attribute.proto of gobgpd 3.10.
import { familyOf, type IpFamily } from '../routes/ip-prefix.js';
import { formatCommunity, formatLargeCommunity } from './communities.js';
import type { LearnedPath, PeerState } from './types.js';

export class WireDecodeError extends Error {
  readonly code = 'WIRE_DECODE';
  constructor(message: string) {
    super(message);
    this.name = 'WireDecodeError';
  }
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** Cursor over one protobuf message (a slice of a Buffer). */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    let b = buf[pos++]!;
    let v = b & 0x7f;
    if (b >= 0x80) {
      b = buf[pos++]!;
      v |= (b & 0x7f) << 7;
      if (b >= 0x80) {
        b = buf[pos++]!;
        v |= (b & 0x7f) << 14;
        if (b >= 0x80) {
          b = buf[pos++]!;
          v |= (b & 0x7f) << 21;
          if (b >= 0x80) {
            // Beyond 28 bits: continue with arithmetic so values up to 2^53 stay exact (uint64 counters).
            let mul = 2 ** 28;
            v >>>= 0;
            do {
              if (pos >= this.end) throw new WireDecodeError('truncated varint');
              b = buf[pos++]!;
              v += (b & 0x7f) * mul;
              mul *= 128;
            } while (b >= 0x80);
          }
        }
      }
    }
    if (pos > this.end) throw new WireDecodeError('truncated varint');
    this.pos = pos;
    return v;
  }

  /** Reads a length prefix and returns the end offset of the field's bytes, leaving pos at their start. */
  lenEnd(): number {
    const len = this.varint();
    const e = this.pos + len;
    if (e > this.end) throw new WireDecodeError('truncated length-delimited field');
    return e;
  }

  string(): string {
    const e = this.lenEnd();
    const s = this.buf.toString('latin1', this.pos, e);
    this.pos = e;
    return s;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_I64:
        this.pos += 8;
        break;
      case WIRE_LEN:
        this.pos = this.lenEnd();
        return;
      case WIRE_I32:
        this.pos += 4;
        break;
      default:
        throw new WireDecodeError(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new WireDecodeError('truncated fixed field');
  }
}

// Type URLs of the Any values we decode. Anything else is skipped.
const T = 'type.googleapis.com/apipb.';
const URL_IP_PREFIX = T + 'IPAddressPrefix';
const URL_ORIGIN = T + 'OriginAttribute';
const URL_AS_PATH = T + 'AsPathAttribute';
const URL_NEXT_HOP = T + 'NextHopAttribute';
const URL_MED = T + 'MultiExitDiscAttribute';
const URL_LOCAL_PREF = T + 'LocalPrefAttribute';
const URL_MP_REACH = T + 'MpReachNLRIAttribute';
const URL_COMMUNITIES = T + 'CommunitiesAttribute';
const URL_LARGE_COMMUNITIES = T + 'LargeCommunitiesAttribute';

const ORIGINS = ['igp', 'egp', 'incomplete'] as const;

/** IpFamily enum values (IpFamily.Afi / IpFamily.Safi) for the two families podroute speaks. */
const AFI_IP = 1;
const AFI_IP6 = 2;
const SAFI_UNICAST = 1;

/** Type URLs as bytes: an Any is recognised by comparing bytes in place, without making a string. */
const enum Url {
  Other,
  IpPrefix,
  Origin,
  AsPath,
  NextHop,
  Med,
  LocalPref,
  MpReach,
  Communities,
  LargeCommunities,
}
const URLS: [Url, Buffer][] = [
  [Url.IpPrefix, Buffer.from(URL_IP_PREFIX, 'latin1')],
  [Url.Origin, Buffer.from(URL_ORIGIN, 'latin1')],
  [Url.AsPath, Buffer.from(URL_AS_PATH, 'latin1')],
  [Url.NextHop, Buffer.from(URL_NEXT_HOP, 'latin1')],
  [Url.Med, Buffer.from(URL_MED, 'latin1')],
  [Url.LocalPref, Buffer.from(URL_LOCAL_PREF, 'latin1')],
  [Url.MpReach, Buffer.from(URL_MP_REACH, 'latin1')],
  [Url.Communities, Buffer.from(URL_COMMUNITIES, 'latin1')],
  [Url.LargeCommunities, Buffer.from(URL_LARGE_COMMUNITIES, 'latin1')],
];

function urlKind(buf: Buffer, start: number, end: number): Url {
  const len = end - start;
  next: for (const [kind, want] of URLS) {
    if (want.length !== len) continue;
    // Compare from the end: the names differ there, the common prefix last.
    for (let i = len - 1; i >= 0; i--) if (buf[start + i] !== want[i]) continue next;
    return kind;
  }
  return Url.Other;
}

/** Where readAny found the value of the last Any it read (no object per Any: a path has five or more). */
let anyStart = 0;
let anyEnd = 0;

/** Reads an Any up to `end`: returns its type, and leaves its value's bytes at anyStart..anyEnd. */
function readAny(r: Reader, end: number): Url {
  let url = Url.Other;
  let start = 0;
  let vEnd = 0;
  while (r.pos < end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === WIRE_LEN) {
      const e = r.lenEnd();
      url = urlKind(r.buf, r.pos, e);
      r.pos = e;
    } else if (field === 2 && (tag & 7) === WIRE_LEN) {
      vEnd = r.lenEnd();
      start = r.pos;
      r.pos = vEnd;
    } else r.skip(tag & 7);
  }
  anyStart = start;
  anyEnd = vEnd;
  return url;
}

/**
 * Texts seen lately (next hops, neighbors: a few peers' addresses on every path), kept so that each path does
 * not make and keep its own copy of the same string.
 */
const RECENT_TEXTS = 16;
const recentBytes: Buffer[] = [];
const recentTexts: string[] = [];
let recentNext = 0;

/** The latin1 text of buf[start, end), the same string as last time for bytes seen lately. */
function internedText(buf: Buffer, start: number, end: number): string {
  const len = end - start;
  next: for (let i = 0; i < recentBytes.length; i++) {
    const b = recentBytes[i]!;
    if (b.length !== len) continue;
    for (let j = 0; j < len; j++) if (b[j] !== buf[start + j]) continue next;
    return recentTexts[i]!;
  }
  const text = buf.toString('latin1', start, end);
  recentBytes[recentNext] = Buffer.from(buf.subarray(start, end));
  recentTexts[recentNext] = text;
  recentNext = (recentNext + 1) % RECENT_TEXTS;
  return text;
}

/** IPAddressPrefix { prefix_len = 1; prefix = 2 } → "a.b.c.d/len". */
function readIpPrefix(buf: Buffer, start: number, end: number): string {
  const r = new Reader(buf, start, end);
  let len = 0;
  let prefix = '';
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x08) len = r.varint();
    else if (tag === 0x12) prefix = r.string();
    else r.skip(tag & 7);
  }
  return prefix + '/' + len;
}

/** A message with one uint32 in field 1 (Origin, MED, LocalPref). */
function readUint32Field1(buf: Buffer, start: number, end: number): number {
  const r = new Reader(buf, start, end);
  let v = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x08) v = r.varint();
    else r.skip(tag & 7);
  }
  return v;
}

/** A message with one string in field 1 (NextHopAttribute); the text interned (a next hop is on many paths). */
function readStringField1(buf: Buffer, start: number, end: number): string {
  const r = new Reader(buf, start, end);
  let v = '';
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x0a) {
      const e = r.lenEnd();
      v = internedText(buf, r.pos, e);
      r.pos = e;
    } else r.skip(tag & 7);
  }
  return v;
}

/** AsPathAttribute { repeated AsSegment segments = 1 }, AsSegment { type = 1; repeated uint32 numbers = 2 }. */
function readAsPath(buf: Buffer, start: number, end: number, out: number[]): void {
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const tag = r.varint();
    if (tag !== 0x0a) {
      r.skip(tag & 7);
      continue;
    }
    const segEnd = r.lenEnd();
    while (r.pos < segEnd) {
      const t = r.varint();
      if (!readRepeatedVarint(r, t, 2, out)) r.skip(t & 7);
    }
    r.pos = segEnd;
  }
}

/** CommunitiesAttribute { repeated uint32 communities = 1 } (packed or not) → "hi:lo" texts. */
function readCommunities(buf: Buffer, start: number, end: number, out: string[]): void {
  const r = new Reader(buf, start, end);
  const values: number[] = [];
  while (r.pos < end) {
    const tag = r.varint();
    if (!readRepeatedVarint(r, tag, 1, values)) r.skip(tag & 7);
  }
  for (const value of values) out.push(formatCommunity(value));
}

/** A repeated uint32 field, packed or not: true when `tag` was that field (its values pushed), false otherwise. */
function readRepeatedVarint(r: Reader, tag: number, field: number, out: number[]): boolean {
  if (tag === ((field << 3) | 2)) {
    const e = r.lenEnd();
    while (r.pos < e) out.push(r.varint());
    return true;
  }
  if (tag === field << 3) {
    out.push(r.varint());
    return true;
  }
  return false;
}

/** LargeCommunitiesAttribute { repeated LargeCommunity communities = 1 }, LargeCommunity { uint32 1, 2, 3 } → "a:b:c". */
function readLargeCommunities(buf: Buffer, start: number, end: number, out: string[]): void {
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const tag = r.varint();
    if (tag !== 0x0a) {
      r.skip(tag & 7);
      continue;
    }
    const e = r.lenEnd();
    const c = { globalAdmin: 0, localData1: 0, localData2: 0 };
    while (r.pos < e) {
      const t = r.varint();
      if (t === 0x08) c.globalAdmin = r.varint();
      else if (t === 0x10) c.localData1 = r.varint();
      else if (t === 0x18) c.localData2 = r.varint();
      else r.skip(t & 7);
    }
    out.push(formatLargeCommunity(c));
  }
}

/** MpReachNLRIAttribute { family = 1; repeated string next_hops = 2; nlris = 3 }: the first next hop. */
function readMpReachNextHop(buf: Buffer, start: number, end: number): string {
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x12) {
      const e = r.lenEnd();
      return internedText(buf, r.pos, e);
    }
    r.skip(tag & 7);
  }
  return '';
}

function readFamily(buf: Buffer, start: number, end: number): IpFamily | undefined {
  const r = new Reader(buf, start, end);
  let afi = 0;
  let safi = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x08) afi = r.varint();
    else if (tag === 0x10) safi = r.varint();
    else r.skip(tag & 7);
  }
  if (safi !== SAFI_UNICAST) return undefined;
  return afi === AFI_IP ? 'ipv4' : afi === AFI_IP6 ? 'ipv6' : undefined;
}

/** A decoded path plus what LearnedPath does not carry (the AddPath uuid, for our own paths). */
export interface DecodedPath extends LearnedPath {
  /** Hex uuid; only paths installed through AddPath have one (ListPath of the local table). */
  uuid?: string;
}

/**
 * Decodes one apipb.Path. Returns undefined for anything other than IPv4/IPv6 unicast IP prefixes (those are
 * not podroute's business and are skipped).
 */
export function decodePath(buf: Buffer, start: number, end: number): DecodedPath | undefined {
  const r = new Reader(buf, start, end);
  let prefix: string | undefined;
  let family: IpFamily | undefined;
  let familySeen = false;
  let nextHop = '';
  let mpNextHop = '';
  const asPath: number[] = [];
  let localPref: number | undefined;
  let med: number | undefined;
  let origin: LearnedPath['origin'];
  let communities: string[] | undefined;
  let largeCommunities: string[] | undefined;
  let isWithdraw = false;
  let neighborIp: string | undefined;
  let uuid: string | undefined;
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case 0x0a: {
        // nlri (Any)
        const e = r.lenEnd();
        if (readAny(r, e) === Url.IpPrefix) prefix = readIpPrefix(buf, anyStart, anyEnd);
        break;
      }
      case 0x12: {
        // pattrs (repeated Any)
        const e = r.lenEnd();
        const url = readAny(r, e);
        const vs = anyStart;
        const ve = anyEnd;
        switch (url) {
          case Url.Origin:
            origin = ORIGINS[readUint32Field1(buf, vs, ve)];
            break;
          case Url.AsPath:
            readAsPath(buf, vs, ve, asPath);
            break;
          case Url.NextHop:
            nextHop = readStringField1(buf, vs, ve);
            break;
          case Url.Med:
            med = readUint32Field1(buf, vs, ve);
            break;
          case Url.LocalPref:
            localPref = readUint32Field1(buf, vs, ve);
            break;
          case Url.MpReach:
            mpNextHop = readMpReachNextHop(buf, vs, ve);
            break;
          case Url.Communities:
            readCommunities(buf, vs, ve, (communities ??= []));
            break;
          case Url.LargeCommunities:
            readLargeCommunities(buf, vs, ve, (largeCommunities ??= []));
            break;
          default:
            break;
        }
        break;
      }
      case 0x28: // is_withdraw = 5
        isWithdraw = r.varint() !== 0;
        break;
      case 0x4a: {
        // family = 9
        const e = r.lenEnd();
        familySeen = true;
        family = readFamily(buf, r.pos, e);
        r.pos = e;
        break;
      }
      case 0x7a: {
        // neighbor_ip = 15; local paths say "<nil>"
        const e = r.lenEnd();
        const s = internedText(buf, r.pos, e);
        r.pos = e;
        neighborIp = s === '' || s === '<nil>' ? undefined : s;
        break;
      }
      case 0x82: {
        // uuid = 16 (a two-byte tag on the wire, 0x82 0x01, read as one varint)
        const e = r.lenEnd();
        if (e > r.pos) uuid = buf.toString('hex', r.pos, e);
        r.pos = e;
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  if (prefix === undefined) return undefined;
  if (!familySeen) family = familyOf(prefix);
  if (family === undefined) return undefined;
  const path: DecodedPath = {
    prefix,
    family,
    // IPv6 (and IPv4 over MP-BGP) carry the next hop in MP_REACH_NLRI.
    nextHop: mpNextHop !== '' ? mpNextHop : nextHop,
    asPath,
    isWithdraw,
  };
  if (neighborIp !== undefined) path.neighborIp = neighborIp;
  if (localPref !== undefined) path.localPref = localPref;
  if (med !== undefined) path.med = med;
  if (origin !== undefined) path.origin = origin;
  if (communities !== undefined && communities.length > 0) path.communities = communities;
  if (largeCommunities !== undefined && largeCommunities.length > 0) path.largeCommunities = largeCommunities;
  if (uuid !== undefined) path.uuid = uuid;
  return path;
}

const SESSION_STATES: readonly PeerState[] = [
  'UNKNOWN',
  'IDLE',
  'CONNECT',
  'ACTIVE',
  'OPENSENT',
  'OPENCONFIRM',
  'ESTABLISHED',
];
const PEER_EVENT_TYPES = ['UNKNOWN', 'INIT', 'END_OF_INIT', 'STATE'] as const;

export type DecodedWatchEvent =
  | {
      kind: 'peer';
      type: (typeof PEER_EVENT_TYPES)[number];
      address: string;
      asn: number;
      state: PeerState;
      adminDown: boolean;
    }
  | { kind: 'table'; paths: DecodedPath[] };

function readPeerEvent(buf: Buffer, start: number, end: number): DecodedWatchEvent {
  const r = new Reader(buf, start, end);
  let type = 0;
  let address = '';
  let asn = 0;
  let state = 0;
  let admin = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x08) type = r.varint();
    else if (tag === 0x12) {
      // Peer
      const pe = r.lenEnd();
      while (r.pos < pe) {
        const t = r.varint();
        if (t === 0x12 || t === 0x2a) {
          // conf = 2 (neighbor_address 4, peer_asn 5) / state = 5 (neighbor_address 5, peer_asn 6, session 13, admin 15)
          const isState = t === 0x2a;
          const ce = r.lenEnd();
          while (r.pos < ce) {
            const f = r.varint();
            const field = f >>> 3;
            if (!isState && field === 4 && (f & 7) === WIRE_LEN) address = r.string();
            else if (!isState && field === 5 && (f & 7) === WIRE_VARINT) asn = r.varint();
            else if (isState && field === 5 && (f & 7) === WIRE_LEN) address = r.string();
            else if (isState && field === 6 && (f & 7) === WIRE_VARINT) asn = r.varint();
            else if (isState && field === 13 && (f & 7) === WIRE_VARINT) state = r.varint();
            else if (isState && field === 15 && (f & 7) === WIRE_VARINT) admin = r.varint();
            else r.skip(f & 7);
          }
          r.pos = ce;
        } else r.skip(t & 7);
      }
    } else r.skip(tag & 7);
  }
  return {
    kind: 'peer',
    type: PEER_EVENT_TYPES[type] ?? 'UNKNOWN',
    address,
    asn,
    state: SESSION_STATES[state] ?? 'UNKNOWN',
    adminDown: admin !== 0,
  };
}

function readPaths(buf: Buffer, r: Reader, end: number, pathTag: number, out: DecodedPath[]): void {
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === pathTag) {
      const e = r.lenEnd();
      const p = decodePath(buf, r.pos, e);
      if (p !== undefined) out.push(p);
      r.pos = e;
    } else r.skip(tag & 7);
  }
}

/** WatchEventResponse { PeerEvent peer = 2; TableEvent table = 3 { repeated Path paths = 2 } }. */
export function decodeWatchEvent(buf: Buffer): DecodedWatchEvent | undefined {
  const r = new Reader(buf, 0, buf.length);
  let ev: DecodedWatchEvent | undefined;
  while (r.pos < buf.length) {
    const tag = r.varint();
    if (tag === 0x12) {
      const e = r.lenEnd();
      ev = readPeerEvent(buf, r.pos, e);
      r.pos = e;
    } else if (tag === 0x1a) {
      const e = r.lenEnd();
      const paths: DecodedPath[] = [];
      readPaths(buf, r, e, 0x12, paths);
      r.pos = e;
      ev = { kind: 'table', paths };
    } else r.skip(tag & 7);
  }
  return ev;
}

/** ListPathResponse { Destination destination = 1 { prefix = 1; repeated Path paths = 2 } }. */
export function decodeListPathResponse(buf: Buffer): DecodedPath[] {
  const r = new Reader(buf, 0, buf.length);
  const paths: DecodedPath[] = [];
  while (r.pos < buf.length) {
    const tag = r.varint();
    if (tag === 0x0a) {
      const e = r.lenEnd();
      readPaths(buf, r, e, 0x12, paths);
      r.pos = e;
    } else r.skip(tag & 7);
  }
  return paths;
}
