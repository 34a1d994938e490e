// The BGP planner: what gobgpd should hold (BgpDesiredState) against what it holds (ObservedBgpState) gives an
// ordered list of changes. Pure: no I/O, every rule here is unit-tested. The applier (bgp-reconciler.ts) only
// executes the list.
//
// What podroute owns in gobgpd: the global config, every peer, the paths it originates, the defined sets and
// policies whose names start with "podroute-", and the global import/export assignment.
//
// Policies are installed as immutable bundles named by a hash of their content ("podroute-import-<hash>": the
// policy, and its defined sets "podroute-import-<hash>-<role>"). A change builds the new bundle next to the old
// one and then switches the global assignment in one call, so there is never a moment with half-updated sets;
// the old bundle is deleted afterwards. gobgpd quirks that shaped this (measured with gobgpd 3.10):
// AddDefinedSet merges into an existing set, AddPolicy appends to an existing policy, an empty defined set
// referenced with ANY matches everything, and a deleted policy lives on in an assignment until it is set again.
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import {
  invalid,
  normalizePathAttributes,
  normalizePeerSpec,
  pathAttributesKey,
  parsePrefix,
  type DefinedSetSpec,
  type GlobalPolicySpec,
  type NormalizedPeerSpec,
  type PolicySpec,
  type PrefixSetEntry,
  type StatementSpec,
} from './gobgp-codec.js';
import { addressBits, canonicalAddressText, familyOf, IP_FAMILIES, ipVersion, parseIpAddress, prefixContains, requireIpCidr, specialAddressKind, truncatePrefix, type IpFamily } from '../routes/ip-prefix.js';
import type { BgpRole, OriginatedPath, PathAttributes, PeerSpec } from './types.js';

export interface BgpDesiredState {
  global: { asn: number; routerId: string; listenPort: number /* -1: no listener */ };
  /** Node mesh + external peers, already resolved (passwords read). */
  peers: PeerSpec[];
  /** This node's podCIDRs: v4 with a v4 next hop, v6 with a v6 next hop. */
  advertise: OriginatedPath[];
  /** Service addresses this node advertises (src/services/advertise.ts); none when omitted. */
  services?: ServiceExport;
  /**
   * Peers whose path BFD found broken: disabled in gobgpd (DisablePeer: the session ends with an administrative
   * Cease, which is no graceful restart, so their paths go at once) and enabled again once they are left out
   * here. Any of `peers`; none when omitted.
   */
  heldDown?: string[];
  importRules: {
    /** From node peer X accept exactly X's podCIDRs. */
    nodePeers: { address: string; prefixes: string[] }[];
    /** From these accept only prefixes inside acceptRanges. */
    externalPeers: string[];
    /** Cluster pod ranges + configured extra ranges. */
    acceptRanges: string[];
    /** Never accept a prefix equal to, covering, or inside one of these. */
    ownPodCIDRs: string[];
  };
  /**
   * A route reflector passes the node routes it learned on to these node peers (the export policy otherwise sends
   * only our own paths): exactly the given podCIDRs, never to external peers. Absent on a non-reflector.
   */
  reflect?: { peers: string[]; prefixes: string[] };
  /** This node's place in the iBGP topology; reported by status only. */
  role?: BgpRole;
}

/**
 * Service paths go only to the listed external peers, never to node peers (a node reaches Services through its service
 * proxy, not through another node). The export policy matches them by the configured ranges, not by the exact
 * prefixes: endpoints coming and going then add and withdraw paths without touching the policy.
 */
export interface ServiceExport {
  paths: OriginatedPath[];
  /** services.loadBalancerPools, externalIPRanges and clusterIPRanges: every service path lies inside one. */
  ranges: string[];
  /** External peers that carry Service addresses (bgp.peers[].advertiseServices). */
  peers: string[];
}

/** One of our paths as gobgpd holds it (with its communities and local preference); uuid when the reconciler still knows it from AddPath. */
export interface ObservedPath extends PathAttributes {
  prefix: string;
  nextHop: string;
  uuid?: string;
}

export interface ObservedBgpState {
  /** asn 0: BGP not started (then nothing else is read). */
  global: { asn: number; routerId: string; listenPort: number; useMultiplePaths: boolean };
  peers: NormalizedPeerSpec[];
  /** Addresses of the peers whose session is Established (a role change resets a session only when it is safe). */
  establishedPeers?: string[];
  /** Peers gobgpd holds administratively down (DisablePeer); none when omitted. */
  disabledPeers?: string[];
  /**
   * BGP is not running in gobgpd (asn 0), yet the node kept forwarding: gobgpd restarted under a running agent,
   * which kept the kernel's routes (graceful restart on our side), or a new agent found the routes of its
   * previous run in the kernel and keeps them (an upgrade, a restarted pod). The fresh instance then restarts
   * gracefully towards its peers (RFC 4724 4.1), so they keep our routes. Never on a cold start of the node.
   */
  forwardingPreserved?: boolean;
  /** Locally originated paths (ours: podroute is the only originator in its gobgpd). */
  paths: ObservedPath[];
  definedSets: DefinedSetSpec[];
  policies: PolicySpec[];
  importPolicy: GlobalPolicySpec;
  exportPolicy: GlobalPolicySpec;
}

/** Everything one policy needs: created together, switched to in one assignment call, deleted together. */
export interface PolicyBundle {
  direction: 'import' | 'export';
  policy: PolicySpec;
  /** The sets the policy references; never empty ones. */
  sets: DefinedSetSpec[];
  defaultAction: 'accept' | 'reject';
}

export type BgpChange =
  | { kind: 'stop-bgp'; reason: string }
  | { kind: 'start-bgp'; global: BgpDesiredState['global'] }
  | { kind: 'delete-peer'; address: string }
  | { kind: 'delete-path'; path: ObservedPath; family: IpFamily }
  /** Defined sets, then the policy, then the global assignment; undone as a whole when a step fails. */
  | { kind: 'install-policy'; bundle: PolicyBundle }
  /** The bundle exists but the global assignment does not point at it (drift, or a previous half-done run). */
  | { kind: 'assign-policy'; assignment: GlobalPolicySpec }
  | { kind: 'add-path'; path: OriginatedPath; family: IpFamily; replaces?: ObservedPath }
  /**
   * UpdatePeer bounces the session in gobgpd, even for timer-only and prefix-limit-only changes (measured with
   * gobgpd 3.10). It also brings back a peer that gobgpd shut down at its prefix limit (it is re-created).
   */
  | { kind: 'update-peer'; spec: PeerSpec; disruptive: true; changed: string[] }
  /**
   * localRestarting: added to a fresh gobgpd while the node kept forwarding (ObservedBgpState.forwardingPreserved):
   * its OPEN carries the Restart State and Forwarding State bits, so the helpers keep our routes instead of
   * deleting them when the session comes back (RFC 4724 4.2).
   */
  | { kind: 'add-peer'; spec: PeerSpec; localRestarting?: true }
  /**
   * A peer's route-reflector flag changes (this node became or stopped being a reflector): applied with UpdatePeer,
   * which re-creates the peer in gobgpd and so resets its session (measured with gobgpd 3.10). Planned only when
   * its session is down anyway, or when every other session is Established to carry the routes meanwhile, one
   * peer per plan (make-before-break).
   */
  | { kind: 'change-peer-role'; spec: PeerSpec; changed: string[] }
  /** A role change that has to wait for the other sessions; the applier asks for another pass soon. */
  | { kind: 'defer-peer'; address: string; reason: string }
  /** DisablePeer: planned first, before anything else, because routes over a broken path are dropping packets now. */
  | { kind: 'disable-peer'; address: string; reason: string }
  | { kind: 'enable-peer'; address: string }
  /** Re-run the import policy over what peers already sent (gobgpd does not do it on a policy change). */
  | { kind: 'soft-reset-in' }
  /**
   * Re-run the export policy over what peers were sent (gobgpd does not do it on a policy change either): a path the
   * old policy held back (a reflector's reflected podCIDRs, a Service range added) would otherwise never go out.
   */
  | { kind: 'soft-reset-out' }
  /** An old bundle: its policy (absent for orphaned sets alone), then its sets. */
  | { kind: 'delete-policy'; policy?: string; sets: { kind: DefinedSetSpec['kind']; name: string }[] };

export class BgpPlanError extends Error {
  readonly code = 'INVALID_DESIRED_STATE';
  constructor(message: string) {
    super(message);
    this.name = 'BgpPlanError';
  }
}

export const OWNED_PREFIX = 'podroute-';
const BUNDLE_POLICY_RE = /^podroute-(import|export)-[0-9a-f]{10}$/;

// ---------------------------------------------------------------------------------------------------------
// Validation

interface ValidDesired {
  global: BgpDesiredState['global'];
  peers: { spec: PeerSpec; normalized: NormalizedPeerSpec }[];
  heldDown: string[];
  advertise: { path: OriginatedPath; family: IpFamily }[];
  services: { paths: { path: OriginatedPath; family: IpFamily }[]; ranges: ReturnType<typeof parsePrefix>[]; peers: string[] };
  nodePeers: { address: string; prefixes: ReturnType<typeof parsePrefix>[] }[];
  externalPeers: string[];
  acceptRanges: ReturnType<typeof parsePrefix>[];
  own: ReturnType<typeof parsePrefix>[];
  reflect: { peers: string[]; prefixes: ReturnType<typeof parsePrefix>[] };
}

function canonicalAddress(field: string, a: string): string {
  const canonical = typeof a === 'string' ? canonicalAddressText(a) : undefined;
  if (canonical === undefined) throw invalid(field, `"${String(a)}" is not an IP address`);
  return canonical;
}

/** Checks the whole desired state before anything is planned: bad input never half-applies. */
export function validateDesired(desired: BgpDesiredState): ValidDesired {
  try {
    const g = desired.global;
    if (!Number.isInteger(g?.asn) || g.asn <= 0 || g.asn > 0xffffffff) throw invalid('global.asn', 'must be 1..4294967295');
    if (typeof g.routerId !== 'string' || !ipaddr.IPv4.isValidFourPartDecimal(g.routerId)) {
      throw invalid('global.routerId', `"${String(g.routerId)}" is not a dotted-quad router id`);
    }
    const routerId = parseIpAddress(g.routerId);
    const special = routerId === undefined ? 'not canonical' : specialAddressKind(routerId);
    if (special !== undefined) throw invalid('global.routerId', `"${g.routerId}" is ${special === 'not canonical' ? 'not a canonical dotted quad' : `a ${special} address`}`);
    if (!Number.isInteger(g.listenPort) || g.listenPort < -1 || g.listenPort === 0 || g.listenPort > 65535) {
      throw invalid('global.listenPort', 'must be -1 (no listener) or 1..65535');
    }
    const seenPeers = new Set<string>();
    const peers = desired.peers.map((spec, i) => {
      const normalized = normalizePeerSpec({ ...spec, address: canonicalAddress(`peers[${i}].address`, spec.address) });
      if (seenPeers.has(normalized.address)) throw invalid(`peers[${i}].address`, `duplicate peer ${normalized.address}`);
      seenPeers.add(normalized.address);
      return { spec: { ...spec, address: normalized.address }, normalized };
    });
    const seenPaths = new Set<string>();
    const validPath = (field: string, path: OriginatedPath): { path: OriginatedPath; family: IpFamily } => {
      const p = parsePrefix(`${field}.prefix`, path.prefix);
      const nh = canonicalAddress(`${field}.nextHop`, path.nextHop);
      if (familyOf(nh) !== p.family) {
        throw invalid(`${field}.nextHop`, `${p.family} prefix ${p.cidr} needs an ${p.family} next hop, got ${nh}`);
      }
      if (seenPaths.has(p.cidr)) throw invalid(`${field}.prefix`, `duplicate prefix ${p.cidr}`);
      seenPaths.add(p.cidr);
      return { path: { prefix: p.cidr, nextHop: nh, ...normalizePathAttributes(field, path) }, family: p.family };
    };
    const advertise = desired.advertise.map((path, i) => validPath(`advertise[${i}]`, path));
    const svc = desired.services ?? { paths: [], ranges: [], peers: [] };
    const serviceRanges = svc.ranges.map((r, i) => parsePrefix(`services.ranges[${i}]`, r));
    const services = {
      ranges: serviceRanges,
      peers: svc.peers.map((a, i) => canonicalAddress(`services.peers[${i}]`, a)),
      paths: svc.paths.map((path, i) => {
        const valid = validPath(`services.paths[${i}]`, path);
        const p = parsePrefix(`services.paths[${i}].prefix`, valid.path.prefix);
        // The export policy matches service paths by these ranges: a path outside them would never be sent.
        if (!serviceRanges.some((r) => prefixContains(r.prefix, p.prefix))) {
          throw invalid(`services.paths[${i}].prefix`, `${p.cidr} is inside none of services.ranges`);
        }
        return valid;
      }),
    };
    const r = desired.importRules;
    const nodePeers = r.nodePeers.map((n, i) => ({
      address: canonicalAddress(`importRules.nodePeers[${i}].address`, n.address),
      prefixes: n.prefixes.map((p, j) => parsePrefix(`importRules.nodePeers[${i}].prefixes[${j}]`, p)),
    }));
    const externalPeers = r.externalPeers.map((a, i) => canonicalAddress(`importRules.externalPeers[${i}]`, a));
    const acceptRanges = r.acceptRanges.map((p, i) => parsePrefix(`importRules.acceptRanges[${i}]`, p));
    const own = r.ownPodCIDRs.map((p, i) => parsePrefix(`importRules.ownPodCIDRs[${i}]`, p));
    const reflect = {
      peers: (desired.reflect?.peers ?? []).map((a, i) => canonicalAddress(`reflect.peers[${i}]`, a)),
      prefixes: (desired.reflect?.prefixes ?? []).map((p, i) => parsePrefix(`reflect.prefixes[${i}]`, p)),
    };
    // BFD may still report a peer the configuration just dropped: only peers count.
    const heldDown = (desired.heldDown ?? []).map((a, i) => canonicalAddress(`heldDown[${i}]`, a)).filter((a) => seenPeers.has(a));
    return { global: { asn: g.asn, routerId: g.routerId, listenPort: g.listenPort }, peers, heldDown, advertise, services, nodePeers, externalPeers, acceptRanges, own, reflect };
  } catch (err) {
    if (err instanceof Error && (err as { code?: string }).code === 'INVALID') throw new BgpPlanError(`invalid BGP desired state: ${err.message}`);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Policies


function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 10);
}

/**
 * Own-podCIDR protection for one family: the own prefixes and everything inside them (own/L le max), plus an
 * exact entry for every shorter prefix that covers them (supernets /0../L-1).
 */
export function ownProtectionEntries(own: { address: string; length: number; family: IpFamily }[]): PrefixSetEntry[] {
  const entries = new Map<string, PrefixSetEntry>();
  for (const o of own) {
    const max = addressBits(o.family);
    entries.set(`${o.address}/${o.length}`, { prefix: `${o.address}/${o.length}`, minLength: o.length, maxLength: max });
    const network = requireIpCidr(`${o.address}/${o.length}`);
    for (let l = 0; l < o.length; l++) {
      const cidr = truncatePrefix(network, l).text;
      const key = `${cidr} exact`;
      if (!entries.has(key)) entries.set(key, { prefix: cidr, minLength: l, maxLength: l });
    }
  }
  return [...entries.values()];
}

/** A bundle whose names carry the hash of its content (so equal content = equal names = nothing to do). */
function makeBundle(
  direction: 'import' | 'export',
  roles: { role: string; set: Omit<DefinedSetSpec, 'name'> }[],
  statements: (names: Record<string, string>) => StatementSpec[],
): PolicyBundle {
  const content = { roles, statements: statements(Object.fromEntries(roles.map((r) => [r.role, r.role]))) };
  const base = `${OWNED_PREFIX}${direction}-${hashOf(content)}`;
  const names = Object.fromEntries(roles.map((r) => [r.role, `${base}-${r.role}`]));
  return {
    direction,
    policy: { name: base, statements: statements(names) },
    sets: roles.map((r) => ({ ...r.set, name: names[r.role] ?? r.role })),
    defaultAction: 'reject',
  };
}

/**
 * Import: accept our own (local) paths; reject own podCIDRs (equal, covering, inside) first; from each node peer accept exactly its podCIDRs
 * and reject the rest it sends; from external peers accept what lies inside the accept ranges; reject anything
 * else (default). A statement whose set would be empty is left out (an empty set would match everything).
 */
export function buildImportBundle(v: Pick<ValidDesired, 'nodePeers' | 'externalPeers' | 'acceptRanges' | 'own'>): PolicyBundle {
  const roles: { role: string; set: Omit<DefinedSetSpec, 'name'> }[] = [];
  // gobgpd runs the global import policy over locally originated paths too (AddPath): accept ours first, or
  // the own-podCIDR rejection would drop our own advertisements.
  const stmts: ((n: Record<string, string>) => StatementSpec)[] = [() => ({ name: 'accept-local', match: { routeType: 'local' }, action: 'accept' })];
  for (const fam of IP_FAMILIES) {
    const own = v.own.filter((o) => o.family === fam);
    if (own.length === 0) continue;
    const role = `own${ipVersion(fam)}`;
    roles.push({ role, set: { kind: 'prefix', prefixes: sortEntries(ownProtectionEntries(own)) } });
    stmts.push((n) => ({ name: `reject-${role}`, match: { prefixSet: { name: n[role]! } }, action: 'reject' }));
  }
  const nodes = [...v.nodePeers].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  nodes.forEach((node, i) => {
    const nbr = `node${i}`;
    roles.push({ role: nbr, set: { kind: 'neighbor', neighbors: [node.address] } });
    for (const fam of IP_FAMILIES) {
      const prefixes = node.prefixes.filter((p) => p.family === fam);
      if (prefixes.length === 0) continue;
      const role = `node${i}-${ipVersion(fam)}`;
      roles.push({ role, set: { kind: 'prefix', prefixes: sortEntries(prefixes.map((p) => ({ prefix: p.cidr, minLength: p.length, maxLength: p.length }))) } });
      stmts.push((n) => ({ name: `accept-${role}`, match: { neighborSet: { name: n[nbr]! }, prefixSet: { name: n[role]! } }, action: 'accept' }));
    }
  });
  if (nodes.length > 0) {
    roles.push({ role: 'nodes', set: { kind: 'neighbor', neighbors: nodes.map((n) => n.address) } });
    stmts.push((n) => ({ name: 'reject-nodes-rest', match: { neighborSet: { name: n['nodes'] ?? 'nodes' } }, action: 'reject' }));
  }
  const externals = [...new Set(v.externalPeers)].sort();
  if (externals.length > 0) {
    roles.push({ role: 'ext', set: { kind: 'neighbor', neighbors: externals } });
    for (const fam of IP_FAMILIES) {
      const ranges = v.acceptRanges.filter((r) => r.family === fam);
      if (ranges.length === 0) continue;
      const role = `range${ipVersion(fam)}`;
      roles.push({ role, set: { kind: 'prefix', prefixes: sortEntries(ranges.map((r) => ({ prefix: r.cidr, minLength: r.length, maxLength: addressBits(fam) }))) } });
      stmts.push((n) => ({ name: `accept-ext-${role}`, match: { neighborSet: { name: n.ext! }, prefixSet: { name: n[role]! } }, action: 'accept' }));
    }
  }
  return makeBundle('import', roles, (n) => stmts.map((s) => s(n)));
}

/**
 * Export: only our own podCIDRs. Towards external peers (ToRs) of a prefix's own family the next hop is rewritten to
 * the session's local address: a node with uplinks to several ToRs must give each ToR its address on that ToR's
 * link, not the one InternalIP the path was added with (gobgpd sends that unchanged over eBGP, and a ToR on another
 * subnet cannot use it). Node peers, and a session carrying the other family, keep the explicit next hop.
 * Service paths: our own (local) paths inside the service ranges, to the service peers only, with the same next-hop
 * rule; never to node peers.
 */
export function buildExportBundle(
  advertise: { path: OriginatedPath; family: IpFamily }[],
  externalPeers: readonly string[] = [],
  services: Pick<ValidDesired['services'], 'ranges' | 'peers'> = { ranges: [], peers: [] },
  reflect: ValidDesired['reflect'] = { peers: [], prefixes: [] },
): PolicyBundle {
  const roles: { role: string; set: Omit<DefinedSetSpec, 'name'> }[] = [];
  const stmts: ((n: Record<string, string>) => StatementSpec)[] = [];
  const ofFamily = (addresses: readonly string[], fam: IpFamily): string[] => addresses.filter((address) => familyOf(address) === fam);
  for (const fam of IP_FAMILIES) {
    const own = advertise.filter((a) => a.family === fam).map((a) => parsePrefix('advertise.prefix', a.path.prefix));
    if (own.length === 0) continue;
    const role = `ours${ipVersion(fam)}`;
    roles.push({ role, set: { kind: 'prefix', prefixes: sortEntries(own.map((p) => ({ prefix: p.cidr, minLength: p.length, maxLength: p.length }))) } });
    const externals = ofFamily(externalPeers, fam);
    if (externals.length > 0) {
      const peers = `ext${ipVersion(fam)}`;
      roles.push({ role: peers, set: { kind: 'neighbor', neighbors: [...externals].sort() } });
      stmts.push((n) => ({ name: `self-${role}`, match: { neighborSet: { name: n[peers]! }, prefixSet: { name: n[role]! } }, action: 'accept', nextHopSelf: true }));
    }
    stmts.push((n) => ({ name: `accept-${role}`, match: { prefixSet: { name: n[role]! } }, action: 'accept' }));
  }
  // A reflector: the node routes it learned, to its node peers (gobgpd's reflection rules pick which), next hop
  // unchanged; the default reject keeps them from external peers.
  const reflectPeers = [...new Set(reflect.peers)].sort();
  if (reflectPeers.length > 0) {
    for (const fam of IP_FAMILIES) {
      const prefixes = reflect.prefixes.filter((p) => p.family === fam);
      if (prefixes.length === 0) continue;
      const role = `reflect${ipVersion(fam)}`;
      roles.push({ role, set: { kind: 'prefix', prefixes: sortEntries(prefixes.map((p) => ({ prefix: p.cidr, minLength: p.length, maxLength: p.length }))) } });
      if (!roles.some((r) => r.role === 'clients')) roles.push({ role: 'clients', set: { kind: 'neighbor', neighbors: reflectPeers } });
      stmts.push((n) => ({ name: `accept-${role}`, match: { neighborSet: { name: n.clients! }, prefixSet: { name: n[role]! } }, action: 'accept' }));
    }
  }
  const servicePeers = [...new Set(services.peers)].sort();
  if (servicePeers.length > 0) {
    for (const fam of IP_FAMILIES) {
      const ranges = services.ranges.filter((r) => r.family === fam);
      if (ranges.length === 0) continue;
      const role = `svc${ipVersion(fam)}`;
      roles.push({ role, set: { kind: 'prefix', prefixes: sortEntries(ranges.map((r) => ({ prefix: r.cidr, minLength: r.length, maxLength: addressBits(fam) }))) } });
      const sameFamily = ofFamily(servicePeers, fam);
      if (sameFamily.length > 0) {
        const peers = `svcpeers${ipVersion(fam)}`;
        roles.push({ role: peers, set: { kind: 'neighbor', neighbors: sameFamily } });
        stmts.push((n) => ({ name: `self-${role}`, match: { neighborSet: { name: n[peers]! }, prefixSet: { name: n[role]! }, routeType: 'local' }, action: 'accept', nextHopSelf: true }));
      }
      if (sameFamily.length < servicePeers.length) {
        const peers = `svcpeersx${ipVersion(fam)}`;
        roles.push({ role: peers, set: { kind: 'neighbor', neighbors: servicePeers.filter((a) => !sameFamily.includes(a)) } });
        stmts.push((n) => ({ name: `accept-${role}`, match: { neighborSet: { name: n[peers]! }, prefixSet: { name: n[role]! }, routeType: 'local' }, action: 'accept' }));
      }
    }
  }
  return makeBundle('export', roles, (n) => stmts.map((s) => s(n)));
}

function sortEntries(e: PrefixSetEntry[]): PrefixSetEntry[] {
  const key = (x: PrefixSetEntry): string => `${x.prefix} ${x.minLength}..${x.maxLength}`;
  return [...e].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

function assignmentOf(bundle: PolicyBundle): GlobalPolicySpec {
  return { direction: bundle.direction, policies: [bundle.policy.name], defaultAction: bundle.defaultAction };
}

function sameAssignment(a: GlobalPolicySpec, b: GlobalPolicySpec): boolean {
  return a.defaultAction === b.defaultAction && a.policies.length === b.policies.length && a.policies.every((p, i) => p === b.policies[i]);
}

// ---------------------------------------------------------------------------------------------------------
// Peers

/** Names of the PeerSpec fields that differ (values are never reported: one of them is a password). */
export function peerDifferences(desired: NormalizedPeerSpec, observed: NormalizedPeerSpec): string[] {
  const out: string[] = [];
  for (const k of Object.keys(desired) as (keyof NormalizedPeerSpec)[]) {
    // gobgpd reports the session's actual local address once it is up: only a configured one is comparable.
    if (k === 'localAddress' && desired.localAddress === '') continue;
    if (JSON.stringify(desired[k]) !== JSON.stringify(observed[k])) out.push(k);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The plan

/** gobgpd as it is before anything was configured (gobgpd's defaults: no policy, accept). Fresh arrays each call. */
export function emptyObservedState(global: ObservedBgpState['global']): ObservedBgpState {
  return {
    global,
    peers: [],
    paths: [],
    definedSets: [],
    policies: [],
    importPolicy: { direction: 'import', policies: [], defaultAction: 'accept' },
    exportPolicy: { direction: 'export', policies: [], defaultAction: 'accept' },
  };
}

/**
 * The ordered changes that turn `observed` into `desired`. The order and why:
 *  1. Global first: nothing else exists without a running BGP instance. A changed ASN/router-id/listen port
 *     (or gobgpd running without multipath) needs StopBgp + StartBgp, which drops every object: the rest of
 *     the plan is then made against an empty gobgpd.
 *  2. Remove peers that are no longer wanted, and withdraw paths we no longer originate (withdraw before
 *     advertise).
 *  3. Policies before peers: a new session must never see (or send) anything unfiltered.
 *  4. Paths before peers come up: a peer that connects (graceful restart included) gets every prefix in its
 *     first update burst, before End-of-RIB.
 *  5. Peers: updates (disruptive: gobgpd bounces the session) and additions. Peers added to a fresh gobgpd whose
 *     node kept forwarding restart gracefully (observed.forwardingPreserved).
 *  6. A soft reset in when the import policy changed while peers stayed (gobgpd does not re-evaluate what it
 *     already accepted). Export changes need none: paths we stop advertising are withdrawn by step 2.
 *  7. Old policy bundles last, once the assignment no longer points at them.
 */
export function planBgp(desired: BgpDesiredState, observedAtStart: ObservedBgpState): BgpChange[] {
  const wanted = validateDesired(desired);
  const changes: BgpChange[] = [];
  let observed = observedAtStart;

  // 1. Global
  const running = observed.global;
  const restartingGracefully = running.asn === 0 && observed.forwardingPreserved === true;
  if (running.asn === 0) {
    changes.push({ kind: 'start-bgp', global: wanted.global });
    observed = emptyObservedState({ ...wanted.global, useMultiplePaths: true });
  } else {
    const why: string[] = [];
    if (running.asn !== wanted.global.asn) why.push('asn');
    if (running.routerId !== wanted.global.routerId) why.push('routerId');
    if (running.listenPort !== wanted.global.listenPort) why.push('listenPort');
    if (!running.useMultiplePaths) why.push('useMultiplePaths');
    if (why.length > 0) {
      changes.push({ kind: 'stop-bgp', reason: `global ${why.join(', ')} changed` });
      changes.push({ kind: 'start-bgp', global: wanted.global });
      observed = emptyObservedState({ ...wanted.global, useMultiplePaths: true });
    }
  }

  // 2. Peers to remove, paths to withdraw
  const desiredPeers = new Map(wanted.peers.map((p) => [p.normalized.address, p]));
  const observedPeers = new Map(observed.peers.map((p) => [canonical(p.address), p]));
  for (const address of [...observedPeers.keys()].sort()) {
    if (!desiredPeers.has(address)) changes.push({ kind: 'delete-peer', address });
  }
  const allPaths = [...wanted.advertise, ...wanted.services.paths];
  const desiredPaths = new Map(allPaths.map((a) => [a.path.prefix, a]));
  const observedPaths = new Map<string, ObservedPath>();
  for (const p of observed.paths) observedPaths.set(p.prefix, p);
  for (const [prefix, path] of [...observedPaths].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!desiredPaths.has(prefix)) changes.push({ kind: 'delete-path', path, family: familyOf(prefix) });
  }

  // 3. Policies
  const bundles = [buildImportBundle(wanted), buildExportBundle(wanted.advertise, wanted.externalPeers, wanted.services, wanted.reflect)];
  const observedPolicies = new Set(observed.policies.map((p) => p.name));
  const observedSets = new Set(observed.definedSets.map((s) => `${s.kind}/${s.name}`));
  let importChanged = false;
  let exportChanged = false;
  for (const bundle of bundles) {
    const current = bundle.direction === 'import' ? observed.importPolicy : observed.exportPolicy;
    const complete = observedPolicies.has(bundle.policy.name) && bundle.sets.every((s) => observedSets.has(`${s.kind}/${s.name}`));
    if (!complete) {
      changes.push({ kind: 'install-policy', bundle });
    } else if (!sameAssignment(current, assignmentOf(bundle))) {
      changes.push({ kind: 'assign-policy', assignment: assignmentOf(bundle) });
    } else {
      continue;
    }
    if (bundle.direction === 'import') importChanged = true;
    else exportChanged = true;
  }

  // 4. Paths to add (new, or a changed next hop or attributes: AddPath of the same prefix replaces our old path)
  for (const advertised of allPaths) {
    const current = observedPaths.get(advertised.path.prefix);
    if (current === undefined) changes.push({ kind: 'add-path', path: advertised.path, family: advertised.family });
    else if (canonical(current.nextHop) !== advertised.path.nextHop || !sameAttributes(current, advertised.path)) {
      changes.push({ kind: 'add-path', path: advertised.path, family: advertised.family, replaces: current });
    }
  }

  // 5. Peers to add and update (additions first: a new reflector's sessions come up while the old ones still
  // carry the routes), then role changes, which reset the session.
  let keptPeers = 0;
  const roleChanges: { spec: PeerSpec; changed: string[] }[] = [];
  for (const [address, peer] of desiredPeers) {
    if (observedPeers.has(address)) continue;
    // Only a graceful-restart peer: gobgpd would hold its updates back from any other until the deferral ends.
    const restarting = restartingGracefully && peer.normalized.gracefulRestart.enabled;
    changes.push(restarting ? { kind: 'add-peer', spec: peer.spec, localRestarting: true } : { kind: 'add-peer', spec: peer.spec });
  }
  for (const [address, peer] of desiredPeers) {
    const current = observedPeers.get(address);
    if (current === undefined) continue;
    keptPeers++;
    const changed = peerDifferences(peer.normalized, { ...current, address: canonical(current.address) });
    if (changed.includes('routeReflectorClusterId')) roleChanges.push({ spec: peer.spec, changed });
    else if (changed.length > 0) changes.push({ kind: 'update-peer', spec: peer.spec, disruptive: true, changed });
  }
  changes.push(...planRoleChanges(roleChanges, [...desiredPeers.keys()], observed));

  // 6. Re-evaluate accepted routes under a new import policy, and what went out under a new export policy
  if (importChanged && keptPeers > 0) changes.push({ kind: 'soft-reset-in' });
  if (exportChanged && keptPeers > 0) changes.push({ kind: 'soft-reset-out' });

  // 6b. Administrative state: held-down peers off, the others on. A disabled peer that is (re)created here is
  // disabled right after AddPeer/UpdatePeer (also a role change's), which both leave it enabled.
  const heldDown = new Set(wanted.heldDown);
  const disabled = new Set((observed.disabledPeers ?? []).map(canonical));
  const recreated = new Set(changes.flatMap((c) => (c.kind === 'add-peer' || c.kind === 'update-peer' || c.kind === 'change-peer-role' ? [canonical(c.spec.address)] : [])));
  for (const address of [...desiredPeers.keys()].sort()) {
    const down = disabled.has(address) && !recreated.has(address);
    if (heldDown.has(address) && !down) {
      const change: BgpChange = { kind: 'disable-peer', address, reason: 'BFD session down' };
      // An established peer goes first of all (its routes are blackholing now); a new one after its AddPeer.
      if (recreated.has(address)) changes.push(change);
      else changes.unshift(change);
    } else if (!heldDown.has(address) && down) {
      changes.push({ kind: 'enable-peer', address });
    }
  }

  // 7. Old bundles (ours, not the desired ones)
  const keep = new Set(bundles.map((b) => b.policy.name));
  for (const p of [...observed.policies].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!BUNDLE_POLICY_RE.test(p.name) || keep.has(p.name)) continue;
    const sets = observed.definedSets.filter((s) => s.name.startsWith(`${p.name}-`)).map((s) => ({ kind: s.kind, name: s.name }));
    changes.push({ kind: 'delete-policy', policy: p.name, sets });
  }
  // Orphaned sets of ours (a bundle whose policy was never created or already deleted).
  const referenced = new Set([...bundles.flatMap((b) => b.sets.map((s) => s.name))]);
  const claimed = new Set(changes.flatMap((c) => (c.kind === 'delete-policy' ? c.sets.map((s) => s.name) : [])));
  const orphans = observed.definedSets.filter(
    (s) => s.name.startsWith(OWNED_PREFIX) && !referenced.has(s.name) && !claimed.has(s.name) && !inUse(observed.policies, s.name),
  );
  if (orphans.length > 0) {
    changes.push({ kind: 'delete-policy', sets: orphans.map((s) => ({ kind: s.kind, name: s.name })) });
  }
  return changes;
}

/**
 * Make-before-break for peers whose route-reflector flag changes (this node became or stopped being a reflector):
 * a peer whose session is down is changed at once (nothing rides on it); an Established one only when every
 * other desired peer is Established too, and one per plan: the other sessions (the other reflectors, the new
 * client sessions) carry the routes while it comes back. The rest wait for a later pass.
 */
export function planRoleChanges(roleChanges: { spec: PeerSpec; changed: string[] }[], desiredAddresses: string[], observed: ObservedBgpState): BgpChange[] {
  const established = new Set((observed.establishedPeers ?? []).map(canonical));
  const present = new Set(observed.peers.map((p) => canonical(p.address)));
  const out: BgpChange[] = [];
  const live = roleChanges.filter((r) => established.has(canonical(r.spec.address)));
  for (const r of roleChanges) if (!live.includes(r)) out.push({ kind: 'change-peer-role', spec: r.spec, changed: r.changed });
  const down = desiredAddresses.filter((a) => !present.has(a) || !established.has(a));
  const sorted = [...live].sort((a, b) => (canonical(a.spec.address) < canonical(b.spec.address) ? -1 : 1));
  sorted.forEach((r, i) => {
    if (i === 0 && down.length === 0) out.push({ kind: 'change-peer-role', spec: r.spec, changed: r.changed });
    else out.push({ kind: 'defer-peer', address: canonical(r.spec.address), reason: down.length > 0 ? `waiting for ${down.join(', ')} to be Established` : 'one role change at a time' });
  });
  return out;
}

function inUse(policies: PolicySpec[], set: string): boolean {
  return policies.some((p) => p.statements.some((s) => s.match.prefixSet?.name === set || s.match.neighborSet?.name === set));
}

/** gobgpd reports communities in the order they were added (ours are sorted); compare as sets. */
function sameAttributes(observed: PathAttributes, desired: PathAttributes): boolean {
  const sorted = (list: string[] | undefined): string[] | undefined => (list === undefined || list.length === 0 ? undefined : [...list].sort());
  const key = (a: PathAttributes): string => pathAttributesKey({ communities: sorted(a.communities), largeCommunities: sorted(a.largeCommunities), localPref: a.localPref });
  return key(observed) === key(desired);
}

function canonical(address: string): string {
  return ipaddr.isValid(address) ? ipaddr.parse(address).toString() : address;
}
