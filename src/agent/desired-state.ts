// What this node should look like, computed purely from the configuration and the cluster's Nodes: the BGP
// state for gobgpd, the context the route selector judges learned paths with, the CNI network and masquerade.
// Every reconciler takes its part from here; nothing in this file does I/O.
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { podRangeOf, type AgentConfig } from '../config/agent-config.js';
import type { BgpDesiredState } from '../bgp/bgp-planner.js';
import type { BgpRole, OriginatedPath, PeerSpec } from '../bgp/types.js';
import { planRouteReflection } from './route-reflectors.js';
import type { NodeInfo } from '../kube/node-info.js';
import { advertisedAttributes } from './advertised-attributes.js';
import { compareIpPrefixes, familyOf, IP_FAMILIES, prefixContains, requireIpCidr, type IpFamily } from '../routes/ip-prefix.js';
import type { RouteSelectionInput } from '../routes/route-selection-loop.js';
import { selectorMatches } from '../kube/label-selector.js';
import { CNI_NETWORK_NAME, type CniConfigInput } from '../node/cni.js';
import type { EndpointSlice, Service } from '../kube/wire.js';
import { planServiceAdvertisement } from '../services/advertise.js';

/** What the route selector knows about the cluster when it judges a learned path. */
export interface DesiredNodeState {
  self: NodeInfo;
  bgp: BgpDesiredState;
  routeSelection: RouteSelectionInput;
  cni: CniConfigInput;
  masquerade: { clusterRanges: string[]; nonMasqueradeCIDRs: string[] };
  /** Problems with the input that were worked around; each one sentence, for logs and Events. */
  warnings: string[];
}

export interface DesiredStateInput {
  config: AgentConfig;
  nodeName: string;
  nodes: readonly NodeInfo[];
  /** Contents of the peers' password files that could be read, by path. */
  secrets: ReadonlyMap<string, string>;
  /** Why a password file could not be read, by path: said in the skipped peer's warning. */
  secretProblems?: ReadonlyMap<string, string>;
}

export type DesiredStateResult = { ok: true; state: DesiredNodeState } | { ok: false; reason: string };

/** GTSM's minimum TTL: a directly connected peer's packets arrive with 255; one more hop is tolerated (RFC 5082 allows it). */
export const GTSM_MIN_TTL = 254;

export function planDesiredState(input: DesiredStateInput): DesiredStateResult {
  const { config, nodeName } = input;
  const self = input.nodes.find((n) => n.name === nodeName);
  if (self === undefined) return { ok: false, reason: `node ${nodeName} is not (yet) in the cluster` };
  if (self.podCIDRs.length === 0) return { ok: false, reason: `node ${nodeName} has no podCIDRs yet` };

  const warnings: string[] = [];
  const acceptRanges = [...config.cluster.podRanges, ...config.cluster.extraAcceptRanges];
  const families = new Set(config.cluster.podRanges.map(familyOf));
  const asnOf = (node: NodeInfo): number => node.asn ?? config.cluster.asn;
  const localAsn = asnOf(self);

  const podRanges = config.cluster.podRanges.map(requireIpCidr);
  for (const cidr of self.podCIDRs) {
    const own = requireIpCidr(cidr);
    if (!podRanges.some((range) => prefixContains(range, own))) {
      warnings.push(`own podCIDR ${cidr} is outside cluster.podRanges: other nodes will not accept it`);
    }
  }
  const conflicts = findPodCIDRConflicts(input.nodes);
  for (const c of conflicts) warnings.push(`podCIDR conflict: ${c.cidr} of node ${c.node} overlaps ${c.otherCidr} of node ${c.other}; neither is routed`);
  // An InternalIP two nodes report cannot tell them apart (mesh slot, import policy, next hops): like a podCIDR
  // conflict, neither node is meshed or routed until one of them stops reporting it.
  const addressConflicts = findAddressConflicts(input.nodes);
  for (const c of addressConflicts) warnings.push(`InternalIP conflict: ${c.address} is reported by nodes ${c.nodes.join(' and ')}; none of them is meshed or routed`);
  const conflictedNodes = new Set(addressConflicts.flatMap((c) => c.nodes));
  const conflictedAddresses = new Set(addressConflicts.map((c) => c.address));
  const conflictedCIDRs = [
    ...new Set([
      ...conflicts.flatMap((c) => [c.cidr, c.otherCidr]),
      ...input.nodes.filter((n) => conflictedNodes.has(n.name)).flatMap((n) => n.podCIDRs),
    ]),
  ].sort();
  const usableCIDRs = (node: NodeInfo): string[] => node.podCIDRs.filter((c) => !conflictedCIDRs.includes(c));

  const routerId = self.routerId ?? config.bgp.routerId ?? self.internalIPs.find((a) => familyOf(a) === 'ipv4') ?? derivedRouterId(self.name);
  if (self.routerId === undefined && config.bgp.routerId === undefined && !self.internalIPs.some((a) => familyOf(a) === 'ipv4')) {
    warnings.push(`node ${self.name} has no IPv4 InternalIP: using router ID ${routerId} derived from its name (set annotation podroute.io/router-id to choose one)`);
  }

  const advertise: OriginatedPath[] = [];
  const podAttributes = advertisedAttributes(config, self, 'podCIDRs');
  for (const cidr of self.podCIDRs) {
    const nextHop = self.internalIPs.find((a) => familyOf(a) === familyOf(cidr));
    if (nextHop === undefined) warnings.push(`podCIDR ${cidr} is not advertised: node ${self.name} has no ${familyOf(cidr)} InternalIP for its next hop`);
    else advertise.push({ prefix: cidr, nextHop, ...podAttributes });
  }

  const timers = { holdTime: config.bgp.holdTime, keepaliveInterval: config.bgp.keepaliveInterval, connectRetry: config.bgp.connectRetry };
  const peers: PeerSpec[] = [];
  const peerAddresses = new Set<string>();
  const addPeer = (peer: PeerSpec): boolean => {
    const key = ipaddr.parse(peer.address).toNormalizedString();
    if (peerAddresses.has(key)) {
      warnings.push(`peer ${peer.address} (${peer.description ?? ''}) skipped: another peer already uses that address`);
      return false;
    }
    if (self.internalIPs.some((a) => ipaddr.parse(a).toNormalizedString() === key)) {
      warnings.push(`peer ${peer.address} (${peer.description ?? ''}) skipped: it is this node's own address`);
      return false;
    }
    peerAddresses.add(key);
    peers.push(peer);
    return true;
  };

  const nodePeers: { address: string; prefixes: string[] }[] = [];
  // A configured mesh key that cannot be read leaves the mesh out: never an unauthenticated session instead.
  let meshPassword: string | undefined;
  let meshUsable = true;
  const meshFile = config.bgp.meshPasswordFile;
  if (config.bgp.mesh !== 'off' && meshFile !== undefined) {
    meshPassword = input.secrets.get(meshFile);
    if (meshPassword === undefined) {
      const why = input.secretProblems?.get(meshFile);
      warnings.push(`node mesh skipped: its password file ${meshFile} could not be read${why === undefined ? '' : ` (${why})`}`);
      meshUsable = false;
    } else if (meshPassword.trim() === '') {
      warnings.push(`node mesh skipped: its password file ${meshFile} is empty`);
      meshUsable = false;
    }
  }
  let role: BgpRole = { kind: config.bgp.mesh === 'off' ? 'off' : 'mesh' };
  let reflect: BgpDesiredState['reflect'];
  if (config.bgp.mesh !== 'off' && meshUsable) {
    const candidates = input.nodes.filter(
      (other) => other.name !== self.name && !conflictedNodes.has(other.name) && (config.bgp.mesh === 'full' || asnOf(other) === localAsn),
    );
    let nodeSessions = candidates.map((node) => ({ node, client: false, relays: false }));
    // A reflector relays every node's podCIDRs: its sessions take the external peers' limit (as a ToR's do), and every
    // node session of the mode does, so a node changing role never changes a limit (that would reset the session).
    let maxPrefixes = config.bgp.meshMaxPrefixes;
    if (config.bgp.mesh === 'route-reflector') {
      const reflection = planRouteReflection(self, candidates, localAsn);
      warnings.push(...reflection.warnings);
      role = reflection.role;
      // Only a client takes relayed routes (from its reflectors). A reflector peers with every node of its AS and takes
      // from each, another reflector included, only that node's own podCIDRs: gobgpd checks the cluster list when it
      // sends, not when it receives, so a sibling's reflection could win the best path and then never be passed on.
      const relaying = reflection.role.kind === 'client';
      nodeSessions = reflection.peers.map(({ node, client }) => ({ node, client, relays: relaying }));
      maxPrefixes = config.bgp.maxPrefixes;
    }
    const clusterId = role.kind === 'reflector' ? role.clusterId : undefined;
    const relayed = candidates.flatMap(usableCIDRs);
    for (const { node: other, client, relays } of nodeSessions) {
      const address = meshAddress(self, other);
      if (address === undefined) {
        warnings.push(`node ${other.name} is not meshed: it shares no address family with ${self.name}`);
        continue;
      }
      const added = addPeer({
        address,
        asn: asnOf(other),
        ...timers,
        password: meshPassword,
        gracefulRestart: config.bgp.gracefulRestart,
        maxPrefixes,
        families: [...families],
        description: `node:${other.name}`,
        routeReflectorClusterId: client ? clusterId : undefined,
      });
      // A client from a reflector: every podCIDR of the AS (it reflects them, next hop unchanged); otherwise: the node's own.
      if (added) nodePeers.push({ address, prefixes: relays ? relayed : usableCIDRs(other) });
    }
    if (clusterId !== undefined) reflect = { peers: nodePeers.map((p) => p.address), prefixes: relayed };
  }

  const externalPeers: string[] = [];
  const servicePeers: string[] = [];
  const external = [
    ...config.bgp.peers.filter((p) => selectorMatches(p.nodeSelector, self.labels)).map((p, i) => ({ peer: p, origin: `config:bgp.peers[${i}]` })),
    ...self.annotationPeers.map((p, i) => ({ peer: p, origin: `annotation:podroute.io/peers[${i}]` })),
  ];
  // A peer carries its own address family; the other family rides along only when no peer of that family
  // exists (one IPv4 ToR session then carries IPv6 too, with an IPv6 next hop), so no prefix is sent twice.
  const externalFamilies = new Set(external.map(({ peer }) => familyOf(peer.address)));
  const familiesFor = (address: string): IpFamily[] =>
    [...families].filter((f) => f === familyOf(address) || !externalFamilies.has(f));
  for (const { peer, origin } of external) {
    // The config refuses these; annotation peers are checked here, where the pod ranges and timers are known.
    if (podRangeOf(config.cluster.podRanges, peer.address) !== undefined) {
      warnings.push(`peer ${peer.address} (${origin}) skipped: inside the cluster pod ranges (a pod is never a BGP peer)`);
      continue;
    }
    const holdTime = peer.holdTime ?? timers.holdTime;
    const keepaliveInterval = peer.keepaliveInterval ?? timers.keepaliveInterval;
    if (holdTime > 0 && keepaliveInterval >= holdTime) {
      warnings.push(`peer ${peer.address} (${origin}) skipped: keepaliveInterval ${keepaliveInterval} is not less than the hold time ${holdTime}`);
      continue;
    }
    let password: string | undefined;
    if (peer.passwordFile !== undefined) {
      password = input.secrets.get(peer.passwordFile);
      // Never fall back to an unauthenticated session: an empty key would configure the peer without TCP-MD5.
      if (password === undefined) {
        const why = input.secretProblems?.get(peer.passwordFile);
        warnings.push(`peer ${peer.address} (${origin}) skipped: its password file ${peer.passwordFile} could not be read${why === undefined ? '' : ` (${why})`}`);
        continue;
      }
      if (password.trim() === '') {
        warnings.push(`peer ${peer.address} (${origin}) skipped: its password file ${peer.passwordFile} is empty`);
        continue;
      }
    }
    const added = addPeer({
      address: peer.address,
      asn: peer.asn,
      port: peer.port,
      localAddress: peer.localAddress,
      password,
      ebgpMultihopTtl: peer.ebgpMultihopTtl,
      // GTSM by default where the peer is one hop away over eBGP (a ToR): a spoofed packet from further away, even
      // with the right addresses, then never reaches the session. iBGP and multihop peers are further away.
      ttlMin: (peer.ttlSecurity ?? (peer.asn !== localAsn && peer.ebgpMultihopTtl === undefined)) ? GTSM_MIN_TTL : undefined,
      holdTime,
      keepaliveInterval,
      connectRetry: peer.connectRetry ?? timers.connectRetry,
      gracefulRestart: peer.gracefulRestart ?? config.bgp.gracefulRestart,
      // External peers are where floods come from (a ToR leaking a table, a hostile router): always limited
      // unless the operator says 0. Node peers have their own, much lower limit (bgp.meshMaxPrefixes).
      maxPrefixes: peer.maxPrefixes ?? config.bgp.maxPrefixes,
      families: familiesFor(peer.address),
      description: origin,
    });
    if (added) {
      externalPeers.push(peer.address);
      if (peer.advertiseServices !== false) servicePeers.push(peer.address);
    }
  }

  return {
    ok: true,
    state: {
      self,
      bgp: {
        global: { asn: localAsn, routerId, listenPort: config.bgp.listenPort },
        peers: dropUndefined(peers),
        advertise,
        // The paths are the agent's to fill (serviceRoutes below): they follow Services and endpoints, not Nodes.
        services: { paths: [], ranges: serviceRanges(config), peers: servicePeers },
        importRules: { nodePeers, externalPeers, acceptRanges, ownPodCIDRs: self.podCIDRs },
        ...(reflect === undefined ? {} : { reflect }),
        role,
      },
      routeSelection: {
        localAsn,
        ownPodCIDRs: self.podCIDRs,
        acceptRanges,
        clusterPodRanges: config.cluster.podRanges,
        nodes: input.nodes
          .filter((n) => n.name !== self.name)
          .map((n) => ({ name: n.name, podCIDRs: usableCIDRs(n), asn: asnOf(n), addresses: n.internalIPs.filter((a) => !conflictedAddresses.has(a)) })),
        conflictedCIDRs,
      },
      cni: {
        podCIDRs: self.podCIDRs,
        bridgeName: config.cni.bridge,
        networkName: CNI_NETWORK_NAME,
        mtu: config.cni.mtu,
        ipamDataDir: config.cni.ipamDataDir,
      },
      masquerade: { clusterRanges: config.cluster.podRanges, nonMasqueradeCIDRs: config.cluster.nonMasqueradeCIDRs },
      warnings: [...self.warnings, ...warnings],
    },
  };
}

/** Every range a Service address of ours may lie in: the pools, the allowed externalIPs, the ClusterIP ranges. */
export function serviceRanges(config: AgentConfig): string[] {
  return [...config.services.loadBalancerPools.flatMap((p) => p.cidrs), ...config.services.externalIPRanges, ...config.services.clusterIPRanges];
}

/** Whether the agent watches Services and EndpointSlices at all: only when something of services.* is configured. */
export function servicesConfigured(config: AgentConfig): boolean {
  return serviceRanges(config).length > 0;
}

export interface ServiceRoutes {
  paths: OriginatedPath[];
  warnings: string[];
}

/**
 * The Service paths this node originates, each with this node's InternalIP of its family as next hop (rewritten to
 * the session's own address towards ToRs, as pod paths are). Pure; cheap enough to run on every endpoint change.
 */
export function serviceRoutes(config: AgentConfig, self: NodeInfo, services: readonly Service[], endpointSlices: readonly EndpointSlice[]): ServiceRoutes {
  const plan = planServiceAdvertisement({
    nodeName: self.name,
    nodeLabels: self.labels,
    services,
    endpointSlices,
    loadBalancerRanges: config.services.loadBalancerPools.flatMap((p) => p.cidrs),
    externalIPRanges: config.services.externalIPRanges,
    clusterIPRanges: config.services.clusterIPRanges,
  });
  const paths: OriginatedPath[] = [];
  const attributes = advertisedAttributes(config, self, 'services');
  const missing = new Set<IpFamily>();
  for (const prefix of plan.prefixes) {
    const family = familyOf(prefix);
    const nextHop = self.internalIPs.find((a) => familyOf(a) === family);
    if (nextHop === undefined) missing.add(family);
    else paths.push({ prefix, nextHop, ...attributes });
  }
  const warnings = [...missing].map((family) => `${family} Service addresses are not advertised: node ${self.name} has no ${family} InternalIP for their next hop`);
  // The problems of the plan (externalIPs outside the ranges) are the allocator's to report, once for the cluster.
  return { paths, warnings };
}

/** The address to mesh with: IPv4 when both nodes have one (one session carries both families), else IPv6. */
function meshAddress(self: NodeInfo, other: NodeInfo): string | undefined {
  for (const family of IP_FAMILIES) {
    const mine = self.internalIPs.some((a) => familyOf(a) === family);
    const theirs = other.internalIPs.find((a) => familyOf(a) === family);
    if (mine && theirs !== undefined) return theirs;
  }
  return undefined;
}

export interface PodCIDRConflict {
  node: string;
  cidr: string;
  other: string;
  otherCidr: string;
}

/** Pairs of nodes whose podCIDRs overlap (equal, or one inside the other). */
export function findPodCIDRConflicts(nodes: readonly NodeInfo[]): PodCIDRConflict[] {
  const owned = nodes.flatMap((n) => n.podCIDRs.map((cidr) => ({ node: n.name, cidr })));
  // Every pair would be quadratic (half a million pairs at 1,000 nodes, on every re-plan). CIDRs are either nested
  // or disjoint, so after sorting by family, network and length, a CIDR overlaps exactly the earlier ones that
  // still contain it: a sweep with a stack of open prefixes (each inside the one below) finds every overlapping pair.
  const ranges = owned.map((o, index) => ({ index, prefix: requireIpCidr(o.cidr) }));
  ranges.sort((a, b) => compareIpPrefixes(a.prefix, b.prefix) || a.index - b.index);
  const pairs: [number, number][] = [];
  const open: typeof ranges = [];
  for (const range of ranges) {
    while (open.length > 0 && !prefixContains(open.at(-1)!.prefix, range.prefix)) open.pop();
    for (const outer of open) {
      if (owned[outer.index]!.node !== owned[range.index]!.node) pairs.push([Math.min(outer.index, range.index), Math.max(outer.index, range.index)]);
    }
    open.push(range);
  }
  // Reported in the order of the nodes given (as a pairwise scan would), so warnings stay stable.
  pairs.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  return pairs.map(([i, j]) => {
    const a = owned[i]!;
    const b = owned[j]!;
    return { node: a.node, cidr: a.cidr, other: b.node, otherCidr: b.cidr };
  });
}

export interface AddressConflict {
  address: string;
  /** The nodes reporting it, in the order given. */
  nodes: string[];
}

/** InternalIPs that more than one node reports (addresses are canonical: NodeInfo holds them so). */
export function findAddressConflicts(nodes: readonly NodeInfo[]): AddressConflict[] {
  const byAddress = new Map<string, string[]>();
  for (const node of nodes) {
    for (const address of new Set(node.internalIPs)) {
      const owners = byAddress.get(address);
      if (owners === undefined) byAddress.set(address, [node.name]);
      else owners.push(node.name);
    }
  }
  return [...byAddress].filter(([, owners]) => owners.length > 1).map(([address, owners]) => ({ address, nodes: owners }));
}

/** A stable IPv4-shaped router ID for nodes without IPv4, taken from a hash of the node name. */
function derivedRouterId(name: string): string {
  const digest = createHash('sha256').update(name).digest();
  // Never loopback, multicast or broadcast (the planner refuses those); other first octets keep their old IDs.
  let first = digest[0]! | 1;
  if (first === 127) first = 125;
  else if (first >= 224) first -= 160;
  return [first, digest[1]!, digest[2]!, digest[3]!].join('.');
}

/** gobgpd's client compares configs field by field: leave absent options absent rather than undefined. */
function dropUndefined(peers: PeerSpec[]): PeerSpec[] {
  return peers.map((p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as unknown as PeerSpec);
}
