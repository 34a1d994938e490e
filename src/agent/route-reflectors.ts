// Who a node peers with under `bgp.mesh: route-reflector`, and in which role. Pure: the desired-state planner
// calls it with the cluster's Nodes.
//
// Reflectors are the nodes labelled podroute.io/route-reflector-cluster-id (a dotted-quad cluster ID, as Calico's
// routeReflectorClusterID and kube-router's rr.server). Within one AS:
//  - a reflector peers with every other node of its AS, and treats each of them as its route-reflector client
//    (gobgpd's own reflection, with the label's cluster ID), the other reflectors included;
//  - every other node (a client) peers with the reflectors only, as plain iBGP peers.
// Why reflectors are clients of each other rather than plain peers: a node's own sessions then depend on its own
// role only. A node that becomes or stops being a reflector changes the flag of its sessions to the other
// reflectors (gobgpd resets a session for that), and nobody else touches a session: the node can do it one
// session at a time while the others carry the routes (make-before-break, see bgp-planner.ts). A reflector takes
// from another reflector only that reflector's own podCIDRs (desired-state.ts): it hears every node directly, and
// gobgpd 3.10 checks the cluster list only when it sends a path, so a sibling's reflection accepted into its table
// could win the best path and then never be passed on (a client missed another client's route, found by the scale
// bench). Each client hears every route from each reflector directly, and graceful restart keeps a dead
// reflector's routes until they are back.
// An AS without a valid reflector falls back to a full iBGP mesh of its nodes: routes are never lost for want of one.
import ipaddr from 'ipaddr.js';
import type { BgpRole } from '../bgp/types.js';
import type { NodeInfo } from '../kube/node-info.js';

export type { BgpRole } from '../bgp/types.js';

export const ROUTE_REFLECTOR_LABEL = 'podroute.io/route-reflector-cluster-id';

export interface ReflectorNode {
  name: string;
  clusterId: string;
}

export interface ReflectionPlan {
  role: BgpRole;
  /** The nodes to peer with; `client` when this node reflects to it. */
  peers: { node: NodeInfo; client: boolean }[];
  /** The reflectors of this node's AS, sorted by name. */
  reflectors: ReflectorNode[];
  warnings: string[];
}

/** A cluster ID as gobgpd takes it and an operator writes it: a canonical dotted quad (0.0.0.0 and 255.255.255.255 carry no identity). */
export function clusterIdProblem(text: string): string | undefined {
  if (!ipaddr.IPv4.isValidFourPartDecimal(text) || ipaddr.IPv4.parse(text).toString() !== text) return `not a dotted-quad cluster ID: ${JSON.stringify(text)}`;
  if (text === '0.0.0.0' || text === '255.255.255.255') return `${text} is not a usable cluster ID`;
  return undefined;
}

/**
 * The reflection topology seen from `self`, over the other nodes of its AS that may be peered with (the caller
 * leaves out nodes with conflicting addresses). Warnings are about this node only (its own label, its cluster, its
 * AS), so each problem is reported once, by the node it concerns.
 */
export function planRouteReflection(self: NodeInfo, sameAsNodes: readonly NodeInfo[], asn: number): ReflectionPlan {
  const warnings: string[] = [];
  const reflectors: ReflectorNode[] = [];
  for (const node of [...sameAsNodes, self]) {
    const label = node.labels[ROUTE_REFLECTOR_LABEL];
    if (label === undefined) continue;
    const problem = clusterIdProblem(label.trim());
    if (problem !== undefined) {
      if (node.name === self.name) warnings.push(`node ${node.name}: label ${ROUTE_REFLECTOR_LABEL} ignored (${problem}); the node is a route-reflector client`);
      continue;
    }
    if (!reflectors.some((r) => r.name === node.name)) reflectors.push({ name: node.name, clusterId: label.trim() });
  }
  reflectors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const others = sameAsNodes.filter((n) => n.name !== self.name);

  if (reflectors.length === 0) {
    warnings.push(`bgp.mesh is route-reflector but no node of AS ${asn} carries a valid ${ROUTE_REFLECTOR_LABEL} label: its nodes form a full iBGP mesh until one does`);
    return { role: { kind: 'mesh' }, peers: others.map((node) => ({ node, client: false })), reflectors, warnings };
  }
  const own = reflectors.find((r) => r.name === self.name);
  if (own !== undefined) {
    if (reflectors.filter((r) => r.clusterId === own.clusterId).length < 2) {
      warnings.push(`route-reflector cluster ${own.clusterId} of AS ${asn} has a single reflector (${self.name}): label a second node with it for redundancy`);
    }
    return { role: { kind: 'reflector', clusterId: own.clusterId }, peers: others.map((node) => ({ node, client: true })), reflectors, warnings };
  }
  const names = new Set(reflectors.map((r) => r.name));
  return { role: { kind: 'client' }, peers: others.filter((n) => names.has(n.name)).map((node) => ({ node, client: false })), reflectors, warnings };
}
