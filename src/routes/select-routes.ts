// Which learned BGP paths become kernel routes: the import rules (anti-hijack, on-link next hops)
// and a BGP-like best-path choice that keeps every equally good path, so several next hops make one ECMP route.
// Pure: the same paths and context give the same result whatever order the paths come in.
import type { LearnedPath } from '../bgp/types.js';
import { RouteInputError } from './errors.js';
import {
  compareIpAddresses,
  compareIpPrefixes,
  compareSortKeys,
  ipSortKey,
  parseIpAddress,
  parseIpPrefix,
  anyContains,
  anyContainsAddress,
  anyOverlaps,
  truncatedPrefixText,
  type IpAddress,
  type IpFamily,
  type IpPrefix,
} from './ip-prefix.js';

/** What the selector needs to know about a node of the cluster (our own node may be among them). */
export interface NodeRoutingInfo {
  name: string;
  podCIDRs: string[];
  asn: number;
  /** The node's addresses its BGP sessions and next hops use (InternalIPs). */
  addresses: string[];
}

export interface RouteSelectionContext {
  localAsn: number;
  /** This node's podCIDRs: never routed elsewhere, whoever announces them. */
  ownPodCIDRs: string[];
  /** Cluster pod ranges plus configured extra ranges: nothing outside them is installed. */
  acceptRanges: string[];
  /**
   * The cluster's own pod ranges: Kubernetes allocates every podCIDR inside them, so a prefix there is installed only
   * when it is exactly a known node's podCIDR (a deleted node's, or one nobody was given, is not routed).
   */
  clusterPodRanges: string[];
  nodes: NodeRoutingInfo[];
  /** The node's connected subnets (v4 and v6): a next hop must lie in one of them. */
  onLinkNetworks: string[];
  /**
   * Ranges no route may overlap, from anyone (podCIDRs two nodes claim: installing either would hijack the
   * other's pods). Such routes are left out silently, not rejected: the conflict is reported where it is found.
   */
  excludedCIDRs?: string[];
}

export interface DesiredRoute {
  /** Canonical CIDR. */
  prefix: string;
  /** Canonical addresses, numerically sorted, deduplicated; more than one = an ECMP multipath route. */
  nextHops: string[];
}

export type RejectReason =
  /** The prefix is not a valid CIDR. */
  | 'invalid-prefix'
  /** Equal to, covering or inside one of our own podCIDRs. */
  | 'own-podcidr'
  | 'outside-accept-ranges'
  /** Inside another node's podCIDR but not equal to it. */
  | 'more-specific-hijack'
  /** Another node's exact podCIDR, announced by someone else. */
  | 'not-from-owner'
  /** Inside the cluster pod ranges but no known node's podCIDR. */
  | 'not-a-node-podcidr'
  | 'invalid-nexthop'
  /** An IPv4 prefix with an IPv6 next hop or the other way round. */
  | 'nexthop-family-mismatch'
  /** An IPv6 link-local next hop: not installable without an interface, which BGP does not tell us. */
  | 'nexthop-link-local'
  | 'nexthop-not-onlink'
  /** A next hop inside our own podCIDRs: a local pod, which must never become a gateway (the bridge is on-link). */
  | 'nexthop-in-own-podcidr';

export interface RejectedPath {
  /** Canonical when the prefix parses, as received otherwise. */
  prefix: string;
  neighborIp: string | undefined;
  nextHop: string;
  reason: RejectReason;
}

export interface RouteSelection {
  /** Sorted by prefix (IPv4 first). */
  routes: DesiredRoute[];
  /** Paths refused by the import rules (not those that merely lost the best-path choice), sorted. */
  rejected: RejectedPath[];
}

/** The selection context parsed and indexed once (see compileSelectionContext). */
export interface CompiledContext {
  localAsn: number;
  ownPodCIDRs: IpPrefix[];
  acceptRanges: IpPrefix[];
  clusterPodRanges: IpPrefix[];
  onLinkNetworks: IpPrefix[];
  excludedCIDRs: IpPrefix[];
  /** Nodes by their podCIDRs' canonical text (a misconfigured cluster may give two nodes the same one). */
  nodesByPodCIDR: Map<string, CompiledNode[]>;
  /** Distinct podCIDR lengths per family: the only lengths an "inside another node's podCIDR" test must try. */
  podCIDRLengths: Record<IpFamily, number[]>;
}

interface CompiledNode {
  asn: number;
  addresses: Set<string>;
}

function isAsn(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function prefixField(text: unknown, field: string): IpPrefix {
  const prefix = typeof text === 'string' ? parseIpPrefix(text) : undefined;
  if (prefix === undefined) throw new RouteInputError(field, text, 'not a CIDR');
  return prefix;
}

function prefixList(list: unknown, field: string): IpPrefix[] {
  if (!Array.isArray(list)) throw new RouteInputError(field, list, 'not a list of CIDRs');
  return list.map((text, i) => prefixField(text, `${field}[${i}]`));
}

/** Parses and indexes the context; throws RouteInputError naming the bad field. */
export function compileSelectionContext(context: RouteSelectionContext): CompiledContext {
  if (!isAsn(context.localAsn)) throw new RouteInputError('context.localAsn', context.localAsn, 'not an AS number');
  const nodesByPodCIDR = new Map<string, CompiledNode[]>();
  const lengths: Record<IpFamily, Set<number>> = { ipv4: new Set(), ipv6: new Set() };
  if (!Array.isArray(context.nodes)) throw new RouteInputError('context.nodes', context.nodes, 'not a list');
  context.nodes.forEach((node, i) => {
    const field = `context.nodes[${i}]`;
    if (!isAsn(node.asn)) throw new RouteInputError(`${field}.asn`, node.asn, 'not an AS number');
    if (!Array.isArray(node.addresses)) throw new RouteInputError(`${field}.addresses`, node.addresses, 'not a list');
    const addresses = new Set<string>();
    node.addresses.forEach((text, j) => {
      const address = typeof text === 'string' ? parseIpAddress(text) : undefined;
      if (address === undefined) throw new RouteInputError(`${field}.addresses[${j}]`, text, 'not an IP address');
      addresses.add(address.text);
    });
    const compiled: CompiledNode = { asn: node.asn, addresses };
    for (const podCIDR of prefixList(node.podCIDRs, `${field}.podCIDRs`)) {
      const owners = nodesByPodCIDR.get(podCIDR.text);
      if (owners === undefined) nodesByPodCIDR.set(podCIDR.text, [compiled]);
      else owners.push(compiled);
      lengths[podCIDR.family].add(podCIDR.length);
    }
  });
  return {
    localAsn: context.localAsn,
    ownPodCIDRs: prefixList(context.ownPodCIDRs, 'context.ownPodCIDRs'),
    acceptRanges: prefixList(context.acceptRanges, 'context.acceptRanges'),
    clusterPodRanges: prefixList(context.clusterPodRanges, 'context.clusterPodRanges'),
    onLinkNetworks: prefixList(context.onLinkNetworks, 'context.onLinkNetworks'),
    excludedCIDRs: context.excludedCIDRs === undefined ? [] : prefixList(context.excludedCIDRs, 'context.excludedCIDRs'),
    nodesByPodCIDR,
    podCIDRLengths: { ipv4: [...lengths.ipv4], ipv6: [...lengths.ipv6] },
  };
}

type PrefixVerdict = { reason: RejectReason } | { owners: CompiledNode[] | undefined };

/** The verdict of a prefix that is exactly no node's podCIDR (shared: the common case makes no object). */
const NOT_A_PODCIDR: PrefixVerdict = { owners: undefined };

/** The rules that depend on the prefix alone. `owners` is set when the prefix is exactly some node's podCIDR. */
function judgePrefix(prefix: IpPrefix, ctx: CompiledContext): PrefixVerdict {
  if (anyOverlaps(ctx.ownPodCIDRs, prefix)) return { reason: 'own-podcidr' };
  if (!anyContains(ctx.acceptRanges, prefix)) return { reason: 'outside-accept-ranges' };
  for (const length of ctx.podCIDRLengths[prefix.family]) {
    if (length < prefix.length && ctx.nodesByPodCIDR.has(truncatedPrefixText(prefix, length))) {
      return { reason: 'more-specific-hijack' };
    }
  }
  const owners = ctx.nodesByPodCIDR.get(prefix.text);
  if (owners === undefined) return anyContains(ctx.clusterPodRanges, prefix) ? { reason: 'not-a-node-podcidr' } : NOT_A_PODCIDR;
  return { owners };
}

/** A node's exact podCIDR is taken only from that node: by origin AS, or by address for iBGP (empty AS path). */
function originatesFromOwner(path: LearnedPath, nextHop: IpAddress | undefined, owners: CompiledNode[]): boolean {
  const originAsn = path.asPath[path.asPath.length - 1];
  if (originAsn !== undefined) return owners.some((owner) => owner.asn === originAsn);
  const neighbor = path.neighborIp === undefined ? undefined : parseIpAddress(path.neighborIp)?.text;
  return owners.some(
    (owner) =>
      (neighbor !== undefined && owner.addresses.has(neighbor)) ||
      (nextHop !== undefined && owner.addresses.has(nextHop.text)),
  );
}

function isZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

function nextHopVerdict(
  prefix: IpPrefix,
  nextHop: IpAddress | undefined,
  ctx: CompiledContext,
): RejectReason | undefined {
  if (nextHop === undefined || isZero(nextHop.bytes)) return 'invalid-nexthop';
  if (nextHop.family !== prefix.family) return 'nexthop-family-mismatch';
  if (nextHop.family === 'ipv6' && nextHop.bytes[0] === 0xfe && ((nextHop.bytes[1] as number) & 0xc0) === 0x80) {
    return 'nexthop-link-local';
  }
  if (anyContainsAddress(ctx.ownPodCIDRs, nextHop)) return 'nexthop-in-own-podcidr';
  if (!anyContainsAddress(ctx.onLinkNetworks, nextHop)) return 'nexthop-not-onlink';
  return undefined;
}

interface Candidate {
  path: LearnedPath;
  nextHop: IpAddress;
}

const ORIGIN_RANK = { igp: 0, egp: 1, incomplete: 2 } as const;

/**
 * BGP-like preference: highest local-pref, shortest AS path, lowest origin, then lowest MED among paths from
 * the same neighbor AS. Everything left is equally good (no router-id/age tie-break: those become ECMP legs).
 */
function bestCandidates(candidates: Candidate[], localAsn: number): Candidate[] {
  let best = candidates;
  const keepMin = (score: (c: Candidate) => number): void => {
    let min = Infinity;
    for (const c of best) min = Math.min(min, score(c));
    best = best.filter((c) => score(c) === min);
  };
  keepMin((c) => -(c.path.localPref ?? 100));
  keepMin((c) => c.path.asPath.length);
  keepMin((c) => ORIGIN_RANK[c.path.origin ?? 'igp']);
  const minMedByNeighborAs = new Map<number, number>();
  for (const c of best) {
    const neighborAs = c.path.asPath[0] ?? localAsn;
    const med = c.path.med ?? 0;
    minMedByNeighborAs.set(neighborAs, Math.min(med, minMedByNeighborAs.get(neighborAs) ?? Infinity));
  }
  return best.filter((c) => (c.path.med ?? 0) === minMedByNeighborAs.get(c.path.asPath[0] ?? localAsn));
}

/** The order rejections are listed in: by prefix (parsed ones numerically, first), neighbor, next hop, reason. */
export function compareRejected(a: RejectedPath, b: RejectedPath, parsed: ReadonlyMap<string, IpPrefix | undefined>): number {
  const pa = parsed.get(a.prefix);
  const pb = parsed.get(b.prefix);
  let order = pa && pb ? compareIpPrefixes(pa, pb) : pa ? -1 : pb ? 1 : 0;
  if (order === 0 && a.prefix !== b.prefix) order = a.prefix < b.prefix ? -1 : 1;
  const keys: [string, string][] = [
    [a.neighborIp ?? '', b.neighborIp ?? ''],
    [a.nextHop, b.nextHop],
    [a.reason, b.reason],
  ];
  for (const [x, y] of keys) if (order === 0 && x !== y) order = x < y ? -1 : 1;
  return order;
}

/** Parses next-hop addresses once each: few distinct next hops (the peers) serve many prefixes. */
export class AddressCache {
  private readonly parsed = new Map<string, IpAddress | undefined>();
  constructor(private readonly limit = 100_000) {}

  get(text: string): IpAddress | undefined {
    let address = this.parsed.get(text);
    if (address === undefined && !this.parsed.has(text)) {
      // A peer sending ever new next hops must not grow this without bound.
      if (this.parsed.size >= this.limit) this.parsed.clear();
      address = parseIpAddress(text);
      this.parsed.set(text, address);
    }
    return address;
  }
}

function rejectPath(rejected: RejectedPath[], prefix: IpPrefix, path: LearnedPath, reason: RejectReason): void {
  rejected.push({ prefix: prefix.text, neighborIp: path.neighborIp, nextHop: path.nextHop, reason });
}

/**
 * Judges the paths of one prefix (already parsed; withdrawn and local paths left out by the caller): returns the
 * route to install, if any, and appends the refused paths to `rejected`. Selection per prefix depends on nothing
 * but these paths and the context, which is what lets the selection be kept up to date prefix by prefix.
 */
export function selectPrefix(
  prefix: IpPrefix,
  group: readonly LearnedPath[],
  ctx: CompiledContext,
  addresses: AddressCache,
  rejected: RejectedPath[],
): DesiredRoute | undefined {
  const verdict = judgePrefix(prefix, ctx);
  if ('reason' in verdict) {
    for (const path of group) rejectPath(rejected, prefix, path, verdict.reason);
    return undefined;
  }
  const candidates: Candidate[] = [];
  for (const path of group) {
    const nextHop = addresses.get(path.nextHop);
    if (verdict.owners !== undefined && !originatesFromOwner(path, nextHop, verdict.owners)) {
      rejectPath(rejected, prefix, path, 'not-from-owner');
      continue;
    }
    const nextHopReason = nextHopVerdict(prefix, nextHop, ctx);
    if (nextHopReason !== undefined || nextHop === undefined) {
      rejectPath(rejected, prefix, path, nextHopReason ?? 'invalid-nexthop');
      continue;
    }
    candidates.push({ path, nextHop });
  }
  if (candidates.length === 0) return undefined;
  if (anyOverlaps(ctx.excludedCIDRs, prefix)) return undefined;
  if (candidates.length === 1) return { prefix: prefix.text, nextHops: [candidates[0]!.nextHop.text] };
  const best = bestCandidates(candidates, ctx.localAsn).map((c) => c.nextHop);
  if (best.length > 1) best.sort(compareIpAddresses);
  const nextHops: string[] = [];
  for (const hop of best) if (nextHops[nextHops.length - 1] !== hop.text) nextHops.push(hop.text);
  return { prefix: prefix.text, nextHops };
}

/**
 * Chooses the kernel routes from the current learned-path table (withdrawn and locally originated paths are
 * ignored). Throws RouteInputError for a malformed context; malformed paths are rejected, never thrown.
 * IncrementalRouteSelector keeps the same result up to date prefix by prefix.
 */
export function selectRoutes(paths: readonly LearnedPath[], context: RouteSelectionContext): RouteSelection {
  const ctx = compileSelectionContext(context);
  const parsedPrefixes = new Map<string, IpPrefix | undefined>();
  const groups = new Map<string, { prefix: IpPrefix; paths: LearnedPath[] }>();
  const rejected: RejectedPath[] = [];

  for (const path of paths) {
    if (path.isWithdraw || path.neighborIp === undefined) continue;
    let prefix = parsedPrefixes.get(path.prefix);
    if (prefix === undefined && !parsedPrefixes.has(path.prefix)) {
      prefix = parseIpPrefix(path.prefix);
      parsedPrefixes.set(path.prefix, prefix);
    }
    if (prefix === undefined) {
      rejected.push({ prefix: path.prefix, neighborIp: path.neighborIp, nextHop: path.nextHop, reason: 'invalid-prefix' });
      continue;
    }
    parsedPrefixes.set(prefix.text, prefix);
    const group = groups.get(prefix.text);
    if (group === undefined) groups.set(prefix.text, { prefix, paths: [path] });
    else group.paths.push(path);
  }

  const addresses = new AddressCache();
  const routes: DesiredRoute[] = [];
  for (const { prefix, paths: group } of groups.values()) {
    const route = selectPrefix(prefix, group, ctx, addresses, rejected);
    if (route !== undefined) routes.push(route);
  }
  return { routes: sortRoutes(routes), rejected: rejected.sort((a, b) => compareRejected(a, b, parsedPrefixes)) };
}

/** Routes in their listing order: by prefix, IPv4 first, numerically. */
export function sortRoutes(routes: DesiredRoute[]): DesiredRoute[] {
  const keyed = routes.map((route) => ({ route, key: ipSortKey(route.prefix) }));
  keyed.sort((a, b) => compareSortKeys(a.key, b.key));
  return keyed.map(({ route }) => route);
}
