// Pure translations between podroute's BGP vocabulary (types.ts and the policy types below) and GoBGP's API
// objects as proto-loader reads and writes them (keepCase, enums as strings, Any as {'@type', ...fields}).
// Every function here is pure and unit-tested; the client only moves the results over gRPC.

import ipaddr from 'ipaddr.js';
import { addressBits, formatIpBytes, IP_FAMILIES, parseIpAddress, parseIpCidr, type IpFamily, type IpPrefix } from '../routes/ip-prefix.js';
import { communityValue, largeCommunityValue, parseCommunityList } from './communities.js';
import type { OriginatedPath, PathAttributes, PeerAdminState, PeerSpec, PeerState, PeerStatus } from './types.js';

/** Errors of the GoBGP client, with stable codes. */
export type GobgpErrorCode =
  | 'UNAVAILABLE' // gobgpd is not reachable
  | 'DEADLINE' // the call ran out of time
  | 'ABORTED' // the caller's AbortSignal fired
  | 'ALREADY_EXISTS'
  | 'NOT_FOUND'
  | 'IN_USE' // a defined set still referenced by a policy
  | 'INVALID' // bad input (ours or gobgpd's verdict)
  | 'NOT_STARTED' // BGP is not started in gobgpd (GetBgp asn 0)
  | 'GOBGP'; // any other error gobgpd reported

export class GobgpError extends Error {
  constructor(
    readonly code: GobgpErrorCode,
    message: string,
    readonly method?: string,
    readonly grpcCode?: number,
  ) {
    super(message);
    this.name = 'GobgpError';
  }
}

export function invalid(field: string, why: string): GobgpError {
  return new GobgpError('INVALID', `${field}: ${why}`);
}

/** gobgpd 3.10 reports almost everything as gRPC UNKNOWN with a message: classify by the message. */
export function classifyGobgpMessage(details: string): GobgpErrorCode {
  const d = details.toLowerCase();
  if (/can't overwrite the existing|already exists|already defined|already registered/.test(d)) return 'ALREADY_EXISTS';
  if (/in use/.test(d)) return 'IN_USE';
  if (/doesn't exist|not found|can't find|can't delete a peer configuration|no such/.test(d)) return 'NOT_FOUND';
  if (/invalid|multiple families|unknown|unsupported|nil request|must be|not allowed/.test(d)) return 'INVALID';
  return 'GOBGP';
}

// gRPC status codes we map (values from the gRPC spec).
const GRPC = { CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, UNAVAILABLE: 14 };

export function gobgpErrorFromGrpc(method: string, code: number, details: string): GobgpError {
  let c: GobgpErrorCode;
  switch (code) {
    case GRPC.UNAVAILABLE:
      c = 'UNAVAILABLE';
      break;
    case GRPC.DEADLINE_EXCEEDED:
      c = 'DEADLINE';
      break;
    case GRPC.CANCELLED:
      c = 'ABORTED';
      break;
    case GRPC.NOT_FOUND:
      c = 'NOT_FOUND';
      break;
    case GRPC.ALREADY_EXISTS:
      c = 'ALREADY_EXISTS';
      break;
    case GRPC.INVALID_ARGUMENT:
      c = 'INVALID';
      break;
    default:
      c = classifyGobgpMessage(details);
  }
  return new GobgpError(c, `gobgp ${method}: ${details}`, method, code);
}

// ---------------------------------------------------------------------------------------------------------
// Addresses and prefixes

export interface ParsedPrefix {
  family: IpFamily;
  /** Canonical network address (host bits must be zero). */
  address: string;
  length: number;
  /** Canonical "address/length". */
  cidr: string;
  prefix: IpPrefix;
}

/** Parses "a.b.c.d/n" or "x::/n" strictly: host bits set is an error naming the field. */
export function parsePrefix(field: string, cidr: string): ParsedPrefix {
  const prefix = typeof cidr === 'string' ? parseIpCidr(cidr) : undefined;
  if (prefix === undefined) throw invalid(field, `"${String(cidr)}" is not a prefix`);
  const network = formatIpBytes(prefix.bytes);
  if (parseIpAddress(cidr.slice(0, cidr.indexOf('/')))?.text !== network) throw invalid(field, `"${cidr}" has host bits set (network is ${prefix.text})`);
  return { family: prefix.family, address: network, length: prefix.length, cidr: prefix.text, prefix };
}

// ---------------------------------------------------------------------------------------------------------
// Families, peers

export const API_FAMILY: Record<IpFamily, { afi: string; safi: string }> = {
  ipv4: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' },
  ipv6: { afi: 'AFI_IP6', safi: 'SAFI_UNICAST' },
};

export function familyFromApi(f: { afi?: string; safi?: string } | null | undefined): IpFamily | undefined {
  if (f?.safi !== 'SAFI_UNICAST') return undefined;
  return f.afi === 'AFI_IP' ? 'ipv4' : f.afi === 'AFI_IP6' ? 'ipv6' : undefined;
}

/** gobgpd's own defaults, so that a spec that leaves a field out compares equal to what gobgpd reports. */
export const PEER_DEFAULTS = {
  port: 179,
  holdTime: 90,
  connectRetry: 120,
} as const;

/**
 * A PeerSpec with every optional field made explicit (gobgpd's defaults), families sorted: the form the planner
 * compares and the client sends. Throws INVALID naming the bad field.
 */
export type NormalizedPeerSpec = Required<Omit<PeerSpec, 'gracefulRestart'>> & {
  gracefulRestart: { enabled: boolean; restartTime: number };
};

function checkUint(field: string, v: unknown, max: number): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw invalid(field, `must be an integer 0..${max}`);
}

export function normalizePeerSpec(spec: PeerSpec): NormalizedPeerSpec {
  if (typeof spec.address !== 'string' || parseIpAddress(spec.address) === undefined) throw invalid('peer.address', `"${spec.address}" is not an IP address`);
  const f = `peer ${spec.address}`;
  checkUint(`${f}.asn`, spec.asn, 0xffffffff);
  if (spec.asn === 0) throw invalid(`${f}.asn`, 'must not be 0');
  checkUint(`${f}.port`, spec.port, 65535);
  checkUint(`${f}.ebgpMultihopTtl`, spec.ebgpMultihopTtl, 255);
  checkUint(`${f}.ttlMin`, spec.ttlMin, 255);
  // gobgpd lets GTSM win silently: a multihop peer would never get a session.
  if ((spec.ttlMin ?? 0) > 0 && (spec.ebgpMultihopTtl ?? 0) > 0) throw invalid(`${f}.ttlMin`, 'GTSM (ttlMin) cannot be combined with ebgpMultihopTtl');
  checkUint(`${f}.holdTime`, spec.holdTime, 65535);
  checkUint(`${f}.keepaliveInterval`, spec.keepaliveInterval, 65535);
  checkUint(`${f}.connectRetry`, spec.connectRetry, 65535);
  checkUint(`${f}.maxPrefixes`, spec.maxPrefixes, 0xffffffff);
  if (spec.gracefulRestart !== undefined) checkUint(`${f}.gracefulRestart.restartTime`, spec.gracefulRestart.restartTime, 4095);
  const clusterId = spec.routeReflectorClusterId ?? '';
  if (clusterId !== '' && !(ipaddr.IPv4.isValidFourPartDecimal(clusterId) && ipaddr.IPv4.parse(clusterId).toString() === clusterId)) {
    throw invalid(`${f}.routeReflectorClusterId`, `"${clusterId}" is not a dotted-quad cluster ID`);
  }
  if (spec.localAddress !== undefined && spec.localAddress !== '' && (typeof spec.localAddress !== 'string' || parseIpAddress(spec.localAddress) === undefined)) {
    throw invalid(`${f}.localAddress`, `"${spec.localAddress}" is not an IP address`);
  }
  const families = [...new Set(spec.families ?? IP_FAMILIES)].sort();
  for (const fam of families) if (fam !== 'ipv4' && fam !== 'ipv6') throw invalid(`${f}.families`, `unknown family "${String(fam)}"`);
  if (families.length === 0) throw invalid(`${f}.families`, 'must not be empty');
  const holdTime = spec.holdTime ?? PEER_DEFAULTS.holdTime;
  const gr = spec.gracefulRestart;
  return {
    address: ipaddr.parse(spec.address).toString(),
    asn: spec.asn,
    port: spec.port ?? PEER_DEFAULTS.port,
    localAddress: spec.localAddress ?? '',
    password: spec.password ?? '',
    ebgpMultihopTtl: spec.ebgpMultihopTtl ?? 0,
    ttlMin: spec.ttlMin ?? 0,
    holdTime,
    keepaliveInterval: spec.keepaliveInterval ?? Math.floor(holdTime / 3),
    connectRetry: spec.connectRetry ?? PEER_DEFAULTS.connectRetry,
    gracefulRestart: gr?.enabled === true ? { enabled: true, restartTime: gr.restartTime } : { enabled: false, restartTime: 0 },
    families,
    description: spec.description ?? '',
    maxPrefixes: spec.maxPrefixes ?? 0,
    routeReflectorClusterId: clusterId,
  };
}

/**
 * How long a restarting gobgpd holds its own updates back waiting for a peer's End-of-RIB (RFC 4724's
 * Selection_Deferral_Timer), in seconds. gobgpd's default is 360: a peer that comes up and never sends End-of-RIB
 * would keep our routes from it for six minutes. The helpers keep our stale routes meanwhile, so short is safe.
 */
export const GR_DEFERRAL_SECONDS = 5;

/**
 * apipb.Peer for AddPeer/UpdatePeer. `localRestarting`: this gobgpd lost its state but the node kept forwarding
 * (RFC 4724 4.1): the OPEN then carries the Restart State bit and the Forwarding State bit of every family, so a
 * helper keeps our routes as stale instead of deleting them, and gobgpd sends its updates only once the peers sent
 * End-of-RIB (or GR_DEFERRAL_SECONDS passed). Not part of the spec: gobgpd clears it itself once it synced, and
 * the planner never compares it.
 */
export function peerToApi(spec: PeerSpec, options: { localRestarting?: boolean } = {}): Record<string, unknown> {
  const n = normalizePeerSpec(spec);
  // Only a graceful-restart peer: gobgpd holds updates back from a restarting peer even without the capability.
  const localRestarting = options.localRestarting === true && n.gracefulRestart.enabled;
  return {
    conf: {
      neighbor_address: n.address,
      peer_asn: n.asn,
      auth_password: n.password,
      description: n.description,
    },
    transport: {
      remote_port: n.port,
      local_address: n.localAddress,
    },
    ebgp_multihop: { enabled: n.ebgpMultihopTtl > 0, multihop_ttl: n.ebgpMultihopTtl },
    ttl_security: { enabled: n.ttlMin > 0, ttl_min: n.ttlMin },
    timers: {
      config: {
        connect_retry: String(n.connectRetry),
        hold_time: String(n.holdTime),
        keepalive_interval: String(n.keepaliveInterval),
      },
    },
    graceful_restart: {
      enabled: n.gracefulRestart.enabled,
      restart_time: n.gracefulRestart.restartTime,
      deferral_time: n.gracefulRestart.enabled ? GR_DEFERRAL_SECONDS : 0,
      local_restarting: localRestarting,
    },
    route_reflector: { route_reflector_client: n.routeReflectorClusterId !== '', route_reflector_cluster_id: n.routeReflectorClusterId },
    afi_safis: n.families.map((fam) => ({
      config: { family: API_FAMILY[fam], enabled: true },
      mp_graceful_restart: { config: { enabled: n.gracefulRestart.enabled } },
      ...(n.maxPrefixes > 0 ? { prefix_limits: { family: API_FAMILY[fam], max_prefixes: n.maxPrefixes } } : {}),
    })),
  };
}

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped JSON */
const num = (v: any): number => (v === undefined || v === null || v === '' ? 0 : Number(v));
const str = (v: any): string => (typeof v === 'string' ? v : '');

/** The configuration gobgpd reports for a peer, in PeerSpec form (normalized, comparable to a desired spec). */
export function peerSpecFromApi(peer: any): NormalizedPeerSpec {
  const conf = peer?.conf ?? {};
  const afiSafis: any[] = Array.isArray(peer?.afi_safis) ? peer.afi_safis : [];
  const families = afiSafis
    .filter((a) => a?.config?.enabled !== false)
    .map((a) => familyFromApi(a?.config?.family))
    .filter((f): f is IpFamily => f !== undefined)
    .sort();
  const limit = afiSafis.map((a) => num(a?.prefix_limits?.max_prefixes)).find((m) => m > 0) ?? 0;
  const local = str(peer?.transport?.local_address);
  const gr = peer?.graceful_restart;
  const mh = peer?.ebgp_multihop;
  const timers = peer?.timers?.config ?? {};
  return {
    address: str(conf.neighbor_address),
    asn: num(conf.peer_asn),
    port: num(peer?.transport?.remote_port) || PEER_DEFAULTS.port,
    // gobgpd reports the wildcard when no local address was configured.
    localAddress: local === '0.0.0.0' || local === '::' ? '' : local,
    password: str(conf.auth_password),
    ebgpMultihopTtl: mh?.enabled === true ? num(mh.multihop_ttl) : 0,
    ttlMin: peer?.ttl_security?.enabled === true ? num(peer.ttl_security.ttl_min) : 0,
    holdTime: num(timers.hold_time),
    keepaliveInterval: num(timers.keepalive_interval),
    connectRetry: num(timers.connect_retry),
    gracefulRestart: gr?.enabled === true ? { enabled: true, restartTime: num(gr.restart_time) } : { enabled: false, restartTime: 0 },
    families: [...new Set(families)],
    description: str(conf.description),
    maxPrefixes: limit,
    // gobgpd reports the cluster ID only for a client (non-clients have none).
    routeReflectorClusterId: peer?.route_reflector?.route_reflector_client === true ? str(peer.route_reflector.route_reflector_cluster_id) : '',
  };
}

const PEER_STATES: ReadonlySet<string> = new Set(['UNKNOWN', 'IDLE', 'CONNECT', 'ACTIVE', 'OPENSENT', 'OPENCONFIRM', 'ESTABLISHED']);

const ADMIN_STATES: Record<string, PeerAdminState> = { UP: 'UP', DOWN: 'DOWN', PFX_CT: 'PREFIX_LIMIT' };

export function peerStatusFromApi(peer: any): PeerStatus {
  const conf = peer?.conf ?? {};
  const state = peer?.state ?? {};
  const sessionState = str(state.session_state);
  const st: PeerState = PEER_STATES.has(sessionState) ? (sessionState as PeerState) : 'UNKNOWN';
  let received = 0;
  let accepted = 0;
  let advertised = 0;
  for (const a of Array.isArray(peer?.afi_safis) ? peer.afi_safis : []) {
    received += num(a?.state?.received);
    accepted += num(a?.state?.accepted);
    advertised += num(a?.state?.advertised);
  }
  const status: PeerStatus = {
    address: str(conf.neighbor_address) || str(state.neighbor_address),
    asn: num(conf.peer_asn) || num(state.peer_asn),
    state: st,
    adminState: ADMIN_STATES[str(state.admin_state)] ?? 'UP',
    description: str(conf.description),
    received,
    accepted,
    advertised,
  };
  if (peer?.route_reflector?.route_reflector_client === true) status.routeReflectorClient = true;
  const uptime = peer?.timers?.state?.uptime;
  if (st === 'ESTABLISHED' && uptime && num(uptime.seconds) > 0) {
    status.establishedSince = new Date(num(uptime.seconds) * 1000 + Math.floor(num(uptime.nanos) / 1e6));
  }
  return status;
}

// ---------------------------------------------------------------------------------------------------------
// Paths

const ANY = 'type.googleapis.com/apipb.';

/** apipb.Path for AddPath: v4 with a NEXT_HOP, v6 with MP_REACH_NLRI carrying the v6 next hop. */
export function originatedPathToApi(path: OriginatedPath): { family: IpFamily; path: Record<string, unknown> } {
  const p = parsePrefix('path.prefix', path.prefix);
  const nhFamily = typeof path.nextHop === 'string' ? parseIpAddress(path.nextHop)?.family : undefined;
  if (nhFamily === undefined) throw invalid('path.nextHop', `"${path.nextHop}" is not an IP address`);
  if (nhFamily !== p.family) {
    throw invalid('path.nextHop', `${p.family} prefix ${p.cidr} needs an ${p.family} next hop, got ${path.nextHop}`);
  }
  const nlri = { '@type': ANY + 'IPAddressPrefix', prefix: p.address, prefix_len: p.length };
  const origin = { '@type': ANY + 'OriginAttribute', origin: 0 };
  const pattrs: Record<string, unknown>[] =
    p.family === 'ipv4'
      ? [origin, { '@type': ANY + 'NextHopAttribute', next_hop: path.nextHop }]
      : [
          origin,
          {
            '@type': ANY + 'MpReachNLRIAttribute',
            family: API_FAMILY.ipv6,
            next_hops: [path.nextHop],
            nlris: [nlri],
          },
        ];
  pattrs.push(...pathAttributesToApi(normalizePathAttributes('path', path)));
  return { family: p.family, path: { family: API_FAMILY[p.family], nlri, pattrs } };
}

/**
 * The canonical form of a path's attributes: communities valid, canonical, sorted, without duplicates; empty lists
 * and an absent local preference left out (so "none" has one form, the one the decoder gives back). Throws INVALID
 * naming the field.
 */
export function normalizePathAttributes(field: string, attrs: PathAttributes): PathAttributes {
  const out: PathAttributes = {};
  const check = (key: 'communities' | 'largeCommunities', kind: 'standard' | 'large'): void => {
    const list = attrs[key] ?? [];
    if (!Array.isArray(list)) throw invalid(`${field}.${key}`, 'must be a list');
    const parsed = parseCommunityList(list);
    const bad = parsed.problems[0];
    if (bad !== undefined) throw invalid(`${field}.${key}[${bad.index}]`, bad.problem);
    const wrong = kind === 'standard' ? parsed.largeCommunities : parsed.communities;
    if (wrong.length > 0) throw invalid(`${field}.${key}`, `${wrong[0]} is not a ${kind} community`);
    const good = kind === 'standard' ? parsed.communities : parsed.largeCommunities;
    if (good.length > 0) out[key] = good;
  };
  check('communities', 'standard');
  check('largeCommunities', 'large');
  if (attrs.localPref !== undefined) {
    checkUint(`${field}.localPref`, attrs.localPref, 0xffffffff);
    out.localPref = attrs.localPref;
  }
  return out;
}

/** Equal attributes give equal keys (for canonical attributes, as normalizePathAttributes makes them). */
export function pathAttributesKey(attrs: PathAttributes): string {
  return JSON.stringify([attrs.communities ?? [], attrs.largeCommunities ?? [], attrs.localPref ?? null]);
}

function pathAttributesToApi(attrs: PathAttributes): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  if (attrs.localPref !== undefined) out.push({ '@type': ANY + 'LocalPrefAttribute', local_pref: attrs.localPref });
  if (attrs.communities !== undefined) out.push({ '@type': ANY + 'CommunitiesAttribute', communities: attrs.communities.map(communityValue) });
  if (attrs.largeCommunities !== undefined) {
    const communities = attrs.largeCommunities.map(largeCommunityValue).map((c) => ({ global_admin: c.globalAdmin, local_data1: c.localData1, local_data2: c.localData2 }));
    out.push({ '@type': ANY + 'LargeCommunitiesAttribute', communities });
  }
  return out;
}

export function uuidToHex(uuid: unknown): string {
  if (Buffer.isBuffer(uuid)) return uuid.toString('hex');
  if (uuid instanceof Uint8Array) return Buffer.from(uuid).toString('hex');
  return '';
}

export function uuidFromHex(field: string, uuid: string): Buffer {
  if (typeof uuid !== 'string' || !/^[0-9a-f]{32}$/i.test(uuid)) {
    // An empty uuid would make DeletePath remove every local path: refuse it here.
    throw invalid(field, `"${String(uuid)}" is not a 16-byte hex uuid`);
  }
  return Buffer.from(uuid, 'hex');
}

// ---------------------------------------------------------------------------------------------------------
// Defined sets and policies

export interface PrefixSetEntry {
  prefix: string;
  minLength: number;
  maxLength: number;
}

export interface DefinedSetSpec {
  kind: 'prefix' | 'neighbor';
  name: string;
  /** kind 'prefix': entries of one address family only (gobgpd refuses mixed sets). */
  prefixes?: PrefixSetEntry[];
  /** kind 'neighbor': peer addresses (plain addresses or prefixes). */
  neighbors?: string[];
}

export interface MatchSetRef {
  name: string;
  /** Match when the route is NOT in the set. */
  invert?: boolean;
}

export interface StatementSpec {
  name: string;
  /** All given conditions must hold. routeType 'local': paths originated in this gobgpd (AddPath). */
  match: { prefixSet?: MatchSetRef; neighborSet?: MatchSetRef; routeType?: 'local' | 'internal' | 'external' };
  /** 'next': fall through to the next statement/policy after applying the other actions. */
  action: 'accept' | 'reject' | 'next';
  nextHopSelf?: boolean;
}

export interface PolicySpec {
  name: string;
  statements: StatementSpec[];
}

export interface GlobalPolicySpec {
  direction: 'import' | 'export';
  /** Policy names, evaluated in order. */
  policies: string[];
  defaultAction: 'accept' | 'reject';
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,126}$/;

export function checkName(field: string, name: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw invalid(field, `"${String(name)}" is not a valid name`);
}

/** Canonical form of a defined set: entries validated, canonicalized, sorted and de-duplicated. */
export function normalizeDefinedSet(set: DefinedSetSpec): DefinedSetSpec {
  checkName('definedSet.name', set.name);
  if (set.kind === 'prefix') {
    const seen = new Map<string, PrefixSetEntry>();
    let family: IpFamily | undefined;
    for (const [i, e] of (set.prefixes ?? []).entries()) {
      const field = `definedSet ${set.name}.prefixes[${i}]`;
      const p = parsePrefix(`${field}.prefix`, e.prefix);
      if (family !== undefined && p.family !== family) throw invalid(field, 'a prefix set holds one address family only');
      family = p.family;
      const max = addressBits(p.family);
      if (!Number.isInteger(e.minLength) || !Number.isInteger(e.maxLength) || e.minLength < p.length || e.maxLength > max || e.minLength > e.maxLength) {
        throw invalid(field, `length range ${e.minLength}..${e.maxLength} must lie within ${p.length}..${max}`);
      }
      const entry = { prefix: p.cidr, minLength: e.minLength, maxLength: e.maxLength };
      seen.set(prefixEntryKey(entry), entry);
    }
    return { kind: 'prefix', name: set.name, prefixes: [...seen.values()].sort(compareEntries) };
  }
  if (set.kind === 'neighbor') {
    const out = new Set<string>();
    for (const [i, n] of (set.neighbors ?? []).entries()) {
      out.add(neighborToCidr(`definedSet ${set.name}.neighbors[${i}]`, n));
    }
    return { kind: 'neighbor', name: set.name, neighbors: [...out].sort() };
  }
  throw invalid('definedSet.kind', `"${String((set as { kind: unknown }).kind)}" is not prefix|neighbor`);
}

export function prefixEntryKey(e: PrefixSetEntry): string {
  return `${e.prefix} ${e.minLength}..${e.maxLength}`;
}

function compareEntries(a: PrefixSetEntry, b: PrefixSetEntry): number {
  const ka = prefixEntryKey(a);
  const kb = prefixEntryKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** gobgpd wants neighbor set members as prefixes ("10.0.0.1/32"). */
export function neighborToCidr(field: string, n: string): string {
  if (typeof n === 'string' && n.includes('/')) return parsePrefix(field, n).cidr;
  const fam = typeof n === 'string' ? parseIpAddress(n)?.family : undefined;
  if (fam === undefined) throw invalid(field, `"${String(n)}" is not an address`);
  return `${ipaddr.parse(n).toString()}/${addressBits(fam)}`;
}

export function definedSetToApi(set: DefinedSetSpec): Record<string, unknown> {
  const n = normalizeDefinedSet(set);
  return n.kind === 'prefix'
    ? {
        defined_type: 'PREFIX',
        name: n.name,
        prefixes: (n.prefixes ?? []).map((e) => ({ ip_prefix: e.prefix, mask_length_min: e.minLength, mask_length_max: e.maxLength })),
      }
    : { defined_type: 'NEIGHBOR', name: n.name, list: n.neighbors ?? [] };
}

export function definedSetFromApi(ds: any): DefinedSetSpec | undefined {
  if (ds?.defined_type === 'PREFIX') {
    return {
      kind: 'prefix',
      name: str(ds.name),
      prefixes: (Array.isArray(ds.prefixes) ? ds.prefixes : [])
        .map((p: any) => ({ prefix: str(p.ip_prefix), minLength: num(p.mask_length_min), maxLength: num(p.mask_length_max) }))
        .sort(compareEntries),
    };
  }
  if (ds?.defined_type === 'NEIGHBOR') {
    return { kind: 'neighbor', name: str(ds.name), neighbors: (Array.isArray(ds.list) ? ds.list.map(str) : []).sort() };
  }
  return undefined;
}

/**
 * Statement names are global in gobgpd (two policies cannot both have an "accept"): on the wire a statement is
 * named "<policy>:<statement>"; listPolicies strips the prefix again.
 */
export function wireStatementName(policy: string, statement: string): string {
  return `${policy}:${statement}`;
}

const ACTIONS = { accept: 'ACCEPT', reject: 'REJECT', next: 'NONE' } as const;
const ROUTE_TYPES = { local: 'ROUTE_TYPE_LOCAL', internal: 'ROUTE_TYPE_INTERNAL', external: 'ROUTE_TYPE_EXTERNAL' } as const;

export function policyToApi(policy: PolicySpec): Record<string, unknown> {
  checkName('policy.name', policy.name);
  const names = new Set<string>();
  const statements = policy.statements.map((s, i) => {
    const field = `policy ${policy.name}.statements[${i}]`;
    checkName(`${field}.name`, s.name);
    if (names.has(s.name)) throw invalid(`${field}.name`, `duplicate statement "${s.name}"`);
    names.add(s.name);
    if (!(s.action in ACTIONS)) throw invalid(`${field}.action`, `"${String(s.action)}" is not accept|reject|next`);
    const conditions: Record<string, unknown> = {};
    if (s.match.prefixSet !== undefined) {
      checkName(`${field}.match.prefixSet.name`, s.match.prefixSet.name);
      conditions.prefix_set = { type: s.match.prefixSet.invert === true ? 'INVERT' : 'ANY', name: s.match.prefixSet.name };
    }
    if (s.match.neighborSet !== undefined) {
      checkName(`${field}.match.neighborSet.name`, s.match.neighborSet.name);
      conditions.neighbor_set = { type: s.match.neighborSet.invert === true ? 'INVERT' : 'ANY', name: s.match.neighborSet.name };
    }
    if (s.match.routeType !== undefined) {
      const rt = ROUTE_TYPES[s.match.routeType];
      if (rt === undefined) throw invalid(`${field}.match.routeType`, `"${String(s.match.routeType)}" is not local|internal|external`);
      conditions.route_type = rt;
    }
    const actions: Record<string, unknown> = { route_action: ACTIONS[s.action] };
    if (s.nextHopSelf === true) actions.nexthop = { self: true };
    return { name: wireStatementName(policy.name, s.name), conditions, actions };
  });
  return { name: policy.name, statements };
}

export function policyFromApi(p: any): PolicySpec {
  const name = str(p?.name);
  const prefix = `${name}:`;
  const statements: StatementSpec[] = (Array.isArray(p?.statements) ? p.statements : []).map((s: any): StatementSpec => {
    const sname = str(s?.name);
    const c = s?.conditions ?? {};
    const a = s?.actions ?? {};
    const match: StatementSpec['match'] = {};
    if (c.prefix_set?.name) match.prefixSet = { name: str(c.prefix_set.name), ...(c.prefix_set.type === 'INVERT' ? { invert: true } : {}) };
    if (c.neighbor_set?.name) match.neighborSet = { name: str(c.neighbor_set.name), ...(c.neighbor_set.type === 'INVERT' ? { invert: true } : {}) };
    if (c.route_type === 'ROUTE_TYPE_LOCAL') match.routeType = 'local';
    else if (c.route_type === 'ROUTE_TYPE_INTERNAL') match.routeType = 'internal';
    else if (c.route_type === 'ROUTE_TYPE_EXTERNAL') match.routeType = 'external';
    const st: StatementSpec = {
      name: sname.startsWith(prefix) ? sname.slice(prefix.length) : sname,
      match,
      action: a.route_action === 'ACCEPT' ? 'accept' : a.route_action === 'REJECT' ? 'reject' : 'next',
    };
    if (a.nexthop?.self === true) st.nextHopSelf = true;
    return st;
  });
  return { name, statements };
}

export function globalPolicyFromApi(a: any, direction: 'import' | 'export'): GlobalPolicySpec {
  const policies: string[] = (Array.isArray(a?.policies) ? a.policies : []).map((p: any) => str(p?.name));
  return { direction, policies, defaultAction: a?.default_action === 'REJECT' ? 'reject' : 'accept' };
}
/* eslint-enable @typescript-eslint/no-explicit-any */
