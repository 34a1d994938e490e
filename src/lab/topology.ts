// The lab's topology file: what a lab is made of (routers, nodes, links, external hosts, initial Kubernetes
// objects), validated with a clear error naming the bad field, and the pure layout derived from it (which
// namespace holds which interface with which addresses). `lab up` applies the layout; nothing here touches the world.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { IP_FAMILIES, nthAddressOf, parseIpAddress, parseIpCidr, prefixContains, requireIpCidr, prefixContainsAddress, prefixesOverlap, type IpAddress, type IpFamily } from '../routes/ip-prefix.js';

/** Member (router, node, external host) names become netns, interface and FRR names: short and plain. */
export const MEMBER_NAME_PATTERN = /^[a-z][a-z0-9-]{0,11}$/;
/** Linux IFNAMSIZ - 1. */
export const MAX_INTERFACE_NAME = 15;
/** The bridge in a ToR's namespace that joins the rack LAN (the ToR's veth ends to its nodes are its ports). */
export const RACK_BRIDGE = 'rack0';
/** Name of a node's (first) or external host's uplink interface inside its own namespace. */
export const UPLINK_INTERFACE = 'eth0';
/** A node attached to more than one ToR (multi-homed) has this many uplinks at most: eth0, eth1, ... */
export const MAX_NODE_UPLINKS = 4;
/** First host number given to nodes whose rack LAN address is derived (node k of a rack gets base + k). */
export const NODE_ADDRESS_BASE = 10;

export class TopologyError extends Error {
  readonly code = 'TOPOLOGY_INVALID';
  constructor(readonly issues: string[]) {
    super(`invalid topology:\n  ${issues.join('\n  ')}`);
    this.name = 'TopologyError';
  }
}

// ---- addresses ---------------------------------------------------------------------------------------------
// The shared prefix helpers do the arithmetic (src/routes/ip-prefix.ts);
// what is here only says what a topology file may write.

export interface Cidr {
  /** The address as written (may be a host address for interface addresses), in canonical form. */
  address: string;
  prefixLength: number;
  family: IpFamily;
}

/** "address/length" (the length is required); undefined when it is not one. */
export function parseCidrText(text: string): Cidr | undefined {
  const prefix = parseIpCidr(text);
  if (prefix === undefined) return undefined;
  const address = parseIpAddress(text.slice(0, text.indexOf('/'))) as IpAddress;
  return { address: address.text, prefixLength: prefix.length, family: prefix.family };
}

/** True when the CIDR is written as its network address (10.1.0.0/16, not 10.1.2.3/16). */
export function isNetworkCidr(cidr: string): boolean {
  const parsed = parseCidrText(cidr);
  return parsed !== undefined && requireIpCidr(cidr).text === `${parsed.address}/${parsed.prefixLength}`;
}

export function cidrContainsAddress(cidr: string, address: string): boolean {
  const parsed = parseIpAddress(address);
  return parsed !== undefined && prefixContainsAddress(requireIpCidr(cidr), parsed);
}

export function cidrsOverlap(a: string, b: string): boolean {
  return prefixesOverlap(requireIpCidr(a), requireIpCidr(b));
}

/** a lies entirely inside b. */
export function cidrWithin(a: string, b: string): boolean {
  return prefixContains(requireIpCidr(b), requireIpCidr(a));
}

/** The n-th address of a CIDR (0 = network address); undefined when the CIDR is too small. */
export function nthAddress(cidr: string, n: number): string | undefined {
  return nthAddressOf(requireIpCidr(cidr), n)?.text;
}

export function prefixLengthOf(cidr: string): number {
  return requireIpCidr(cidr).length;
}

/** Host numbers of the two ends of a point-to-point subnet: RFC 3021 /31 (and /127) use both addresses. */
function pointToPointHosts(cidr: string): [number, number] {
  const parsed = parseIpCidr(cidr);
  const pointToPoint = parsed !== undefined && parsed.bytes.length * 8 - parsed.length <= 1;
  return pointToPoint ? [0, 1] : [1, 2];
}

// ---- schema ------------------------------------------------------------------------------------------------

const memberName = z
  .string()
  .regex(MEMBER_NAME_PATTERN, `must match ${MEMBER_NAME_PATTERN.source}`)
  .refine((s) => !s.startsWith('pod'), 'must not start with "pod" (reserved for pod namespaces)');
const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'not a DNS-1123 label');
const asn = z.number().int().min(1).max(4294967295);
/** One message per bad value: the first check that fails. */
function cidrField(family?: IpFamily, network = true) {
  return z.string().superRefine((s, ctx) => {
    const parsed = parseCidrText(s);
    const problem =
      parsed === undefined
        ? 'not a CIDR'
        : family !== undefined && parsed.family !== family
          ? `not an ${family === 'ipv4' ? 'IPv4' : 'IPv6'} CIDR`
          : network && !isNetworkCidr(s)
            ? 'not a network address (host bits set)'
            : undefined;
    if (problem !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
  });
}
const cidr = cidrField(undefined, false);
const networkCidr = cidrField();
const ipv4Address = z.string().refine((s) => parseIpAddress(s)?.family === 'ipv4', 'not an IPv4 address');
const ipv6Address = z.string().refine((s) => parseIpAddress(s)?.family === 'ipv6', 'not an IPv6 address');
const ipv4Network = cidrField('ipv4');
const ipv6Network = cidrField('ipv6');
const stringMap = z.record(z.string()).default({});

const clusterSchema = z
  .object({
    podRanges: z.array(networkCidr).min(1),
    asn: asn.default(64512),
    mesh: z.enum(['full', 'off', 'same-asn', 'route-reflector']).default('same-asn'),
    /**
     * BFD between every node and its ToR and between nodes on one rack LAN: the agents' bgp.bfd and the ToRs'
     * bfdd with these timers (src/lab/frr.ts). Off when omitted.
     */
    bfd: z
      .object({ minTxMs: z.number().int().min(10).max(60_000).default(300), minRxMs: z.number().int().min(10).max(60_000).default(300), multiplier: z.number().int().min(2).max(255).default(3) })
      .strict()
      .optional(),
  })
  .strict();

/** The routing stacks the lab runs a router with: FRR (zebra + bgpd) or BIRD 2 (src/lab/frr.ts, src/lab/bird.ts). */
export const ROUTER_STACKS = ['frr', 'bird'] as const;
export type RouterStack = (typeof ROUTER_STACKS)[number];

const routerSchema = z
  .object({ name: memberName, asn, routerId: ipv4Address, role: z.enum(['spine', 'tor']), stack: z.enum(ROUTER_STACKS).default('frr') })
  .strict();

/**
 * A link's MTU, on both veth ends (and on the rack bridge): a fabric of jumbo and narrow links. Unset, the kernel's
 * 1500. At least IPv6's 1280, since every lab link may carry IPv6.
 */
const linkMtu = z.number().int().min(1280).max(65535).optional();
const p2pLinkSchema = z
  .object({ type: z.literal('p2p'), a: memberName, b: memberName, ipv4: ipv4Network.optional(), ipv6: ipv6Network.optional(), mtu: linkMtu })
  .strict();
const rackLinkSchema = z
  .object({
    type: z.literal('rack'),
    tor: memberName,
    /**
     * bridge: one LAN, the ToR's veth ends are ports of a bridge holding the ToR's address (the first host).
     * routed: one point-to-point subnet per node (/31, /127) carved from the rack subnet; the ToR sees each node's
     * link go down (carrier), so it drops that node's routes at once instead of after the BGP hold time.
     */
    ports: z.enum(['bridge', 'routed']).default('bridge'),
    /**
     * TCP MD5 secret of the sessions between the ToR and its nodes (a lab secret, written in the topology): the ToR
     * gets it on its node sessions, each node's agent a password file in its node directory.
     */
    password: z.string().regex(/^[A-Za-z0-9._~+=-]{1,80}$/, 'must be 1-80 characters of A-Z a-z 0-9 . _ ~ + = -').optional(),
    ipv4: ipv4Network.optional(),
    ipv6: ipv6Network.optional(),
    mtu: linkMtu,
  })
  .strict();
const linkSchema = z.discriminatedUnion('type', [p2pLinkSchema, rackLinkSchema]);

const nodeSchema = z
  .object({
    name: memberName,
    /** The node's ToR, or its ToRs (multi-homed: uplink eth<i> goes to the i-th ToR's rack). */
    rack: z.union([memberName, z.array(memberName).min(1).max(MAX_NODE_UPLINKS)]),
    asn: asn.optional(),
    podCIDRs: z.array(networkCidr).min(1).max(2),
    labels: stringMap,
    annotations: stringMap,
    addresses: z.object({ ipv4: ipv4Address.optional(), ipv6: ipv6Address.optional() }).strict().optional(),
  })
  .strict();

const externalHostSchema = z
  .object({
    name: memberName,
    router: memberName,
    /** The host's own addresses with the prefix of the network it shares with its router. */
    addresses: z.array(cidr).min(1).max(2),
    /** Ports its server answers on (with its name), for probes from pods to outside the cluster. */
    ports: z
      .array(z.object({ port: z.number().int().min(1).max(65535), protocol: z.enum(['TCP', 'UDP']) }).strict())
      .default([
        { port: 80, protocol: 'TCP' },
        { port: 80, protocol: 'UDP' },
      ]),
  })
  .strict();

const containerPortSchema = z
  .object({
    name: z.string().max(15).optional(),
    containerPort: z.number().int().min(1).max(65535),
    protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
  })
  .strict();

const podSchema = z
  .object({
    namespace: k8sName.default('default'),
    name: k8sName,
    nodeName: memberName,
    hostNetwork: z.boolean().default(false),
    labels: stringMap,
    annotations: stringMap,
    containerPorts: z.array(containerPortSchema).default([]),
  })
  .strict();

const kubernetesSchema = z
  .object({
    namespaces: z.array(z.object({ name: k8sName, labels: stringMap }).strict()).default([]),
    pods: z.array(podSchema).default([]),
    /** networking.k8s.io/v1 NetworkPolicy objects as written for kubectl. */
    networkPolicies: z.array(z.record(z.unknown())).default([]),
  })
  .strict();

/**
 * The cluster's Service address ranges, handed to every node's agent as its `services` section (the same keys) and
 * accepted by the ToRs from nodes as host routes (LoadBalancer pools, external-IP ranges) or as the aggregate
 * itself (ClusterIP ranges).
 */
const servicesSchema = z
  .object({
    loadBalancerPools: z
      .array(
        z
          .object({
            name: k8sName,
            cidrs: z.array(networkCidr).min(1),
            autoAssign: z.boolean().default(true),
            /** A metav1.LabelSelector, checked by the agent's own configuration schema. */
            serviceSelector: z.record(z.unknown()).optional(),
            namespaces: z.array(k8sName).min(1).optional(),
          })
          .strict(),
      )
      .default([]),
    externalIPRanges: z.array(networkCidr).default([]),
    clusterIPRanges: z.array(networkCidr).default([]),
  })
  .strict();

export const topologySchema = z
  .object({
    cluster: clusterSchema,
    services: servicesSchema.default({}),
    routers: z.array(routerSchema).min(1),
    links: z.array(linkSchema).default([]),
    nodes: z.array(nodeSchema).default([]),
    externalHosts: z.array(externalHostSchema).default([]),
    kubernetes: kubernetesSchema.default({}),
  })
  .strict();

export type Topology = z.infer<typeof topologySchema>;
export type TopologyRouter = Topology['routers'][number];
export type TopologyNode = Topology['nodes'][number];
export type TopologyLink = Topology['links'][number];
export type TopologyExternalHost = Topology['externalHosts'][number];
export type TopologyPod = Topology['kubernetes']['pods'][number];
export type ContainerPort = TopologyPod['containerPorts'][number];
export type TopologyRackLink = Extract<TopologyLink, { type: 'rack' }>;
export type TopologyServices = Topology['services'];

/** Every Service range of the topology with the path that declares it. */
export function serviceRanges(services: TopologyServices): { cidr: string; path: string; kind: 'pool' | 'externalIP' | 'clusterIP' }[] {
  return [
    ...services.loadBalancerPools.flatMap((pool, i) => pool.cidrs.map((cidr, j) => ({ cidr, path: `services.loadBalancerPools[${i}].cidrs[${j}]`, kind: 'pool' as const }))),
    ...services.externalIPRanges.map((cidr, i) => ({ cidr, path: `services.externalIPRanges[${i}]`, kind: 'externalIP' as const })),
    ...services.clusterIPRanges.map((cidr, i) => ({ cidr, path: `services.clusterIPRanges[${i}]`, kind: 'clusterIP' as const })),
  ];
}

/** The ToRs a node is attached to, in uplink order (eth0 first). */
export function nodeTors(node: Pick<TopologyNode, 'rack'>): string[] {
  return typeof node.rack === 'string' ? [node.rack] : [...node.rack];
}

/** The interface of a node's i-th uplink inside the node's namespace. */
export function uplinkInterfaceName(index: number): string {
  return `eth${index}`;
}

/** Host numbers of the ToR and of the node on the point-to-point subnet of a routed rack's port `position` (1-based). */
export function routedPortHosts(position: number): { tor: number; node: number } {
  return { tor: 2 * position, node: 2 * position + 1 };
}

/** Prefix length of a routed rack port: RFC 3021 /31, RFC 6164 /127. */
export function routedPortPrefixLength(family: IpFamily): number {
  return family === 'ipv4' ? 31 : 127;
}

/** `nodes[2].podCIDRs[0]` */
export function formatPath(path: (string | number)[]): string {
  return path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc === '' ? part : `${acc}.${part}`), '');
}

export function parseTopology(text: string): Topology {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new TopologyError([`not valid YAML: ${err instanceof Error ? err.message : String(err)}`]);
  }
  const result = topologySchema.safeParse(raw);
  if (!result.success) {
    throw new TopologyError(result.error.issues.map((i) => `${formatPath(i.path) || '(top level)'}: ${i.message}`));
  }
  const problems = crossCheck(result.data);
  if (problems.length > 0) throw new TopologyError(problems);
  return result.data;
}

export async function loadTopology(file: string): Promise<Topology> {
  return parseTopology(await readFile(file, 'utf8'));
}

// ---- cross-checks ------------------------------------------------------------------------------------------

function duplicates<T>(items: T[], key: (item: T) => string): { index: number; key: string }[] {
  const seen = new Set<string>();
  const dups: { index: number; key: string }[] = [];
  items.forEach((item, index) => {
    const k = key(item);
    if (seen.has(k)) dups.push({ index, key: k });
    seen.add(k);
  });
  return dups;
}

function crossCheck(t: Topology): string[] {
  const problems: string[] = [];
  const routers = new Map(t.routers.map((r) => [r.name, r]));
  const nodes = new Map(t.nodes.map((n) => [n.name, n]));

  // Member names share the netns and interface namespaces.
  const members = [
    ...t.routers.map((r, i) => ({ name: r.name, path: `routers[${i}].name` })),
    ...t.nodes.map((n, i) => ({ name: n.name, path: `nodes[${i}].name` })),
    ...t.externalHosts.map((e, i) => ({ name: e.name, path: `externalHosts[${i}].name` })),
  ];
  for (const d of duplicates(members, (m) => m.name)) problems.push(`${members[d.index]?.path}: duplicate name "${d.key}"`);
  for (const d of duplicates(t.routers, (r) => r.routerId)) problems.push(`routers[${d.index}].routerId: duplicate router-id ${d.key}`);

  // Every subnet the lab uses, to check they neither overlap each other nor the pod ranges.
  const subnets: { cidr: string; path: string }[] = [];
  const rackLinks = new Map<string, { link: Extract<TopologyLink, { type: 'rack' }>; index: number }>();
  t.links.forEach((link, i) => {
    if (link.ipv4 === undefined && link.ipv6 === undefined) problems.push(`links[${i}]: needs ipv4 and/or ipv6`);
    if (link.ipv4 !== undefined) subnets.push({ cidr: link.ipv4, path: `links[${i}].ipv4` });
    if (link.ipv6 !== undefined) subnets.push({ cidr: link.ipv6, path: `links[${i}].ipv6` });
    if (link.type === 'p2p') {
      for (const end of ['a', 'b'] as const) {
        if (!routers.has(link[end])) problems.push(`links[${i}].${end}: no router named "${link[end]}"`);
      }
      if (link.a === link.b) problems.push(`links[${i}].b: a link needs two different routers`);
    } else {
      const tor = routers.get(link.tor);
      if (tor === undefined) problems.push(`links[${i}].tor: no router named "${link.tor}"`);
      else if (tor.role !== 'tor') problems.push(`links[${i}].tor: router "${link.tor}" is not a tor`);
      if (rackLinks.has(link.tor)) problems.push(`links[${i}].tor: "${link.tor}" already has a rack LAN`);
      else rackLinks.set(link.tor, { link, index: i });
    }
  });
  for (const d of duplicates(
    t.links.filter((l) => l.type === 'p2p'),
    (l) => [l.a, l.b].sort().join('<->'),
  )) {
    problems.push(`links: more than one link between ${d.key} (interfaces are named after the peer)`);
  }

  const podCIDRs: { cidr: string; path: string }[] = [];
  const rackMembers = new Map<string, number>();
  const usedAddresses = new Map<string, string>();
  t.nodes.forEach((node, i) => {
    const tors = nodeTors(node);
    const rackPath = (j: number): string => (typeof node.rack === 'string' ? `nodes[${i}].rack` : `nodes[${i}].rack[${j}]`);
    const nodeAsn = node.asn ?? t.cluster.asn;
    const racks: { tor: string; rack: Extract<TopologyLink, { type: 'rack' }> }[] = [];
    tors.forEach((torName, j) => {
      const tor = routers.get(torName);
      const rack = rackLinks.get(torName);
      if (tors.indexOf(torName) !== j) problems.push(`${rackPath(j)}: "${torName}" is listed twice`);
      else if (tor === undefined) problems.push(`${rackPath(j)}: no router named "${torName}"`);
      else if (rack === undefined) problems.push(`${rackPath(j)}: router "${torName}" has no rack link`);
      else {
        racks.push({ tor: torName, rack: rack.link });
        if (tor.asn === nodeAsn) {
          const whose = tors.length === 1 ? "its ToR's" : `its ToR ${torName}'s`;
          problems.push(`nodes[${i}].asn: ${nodeAsn} equals ${whose} ASN (nodes peer with their ToR over eBGP)`);
        }
      }
    });
    const families = new Set<string>();
    node.podCIDRs.forEach((c, j) => {
      const family = parseCidrText(c)?.family ?? 'ipv4';
      if (families.has(family)) problems.push(`nodes[${i}].podCIDRs[${j}]: more than one ${family} podCIDR`);
      families.add(family);
      if (!t.cluster.podRanges.some((range) => cidrWithin(c, range))) {
        problems.push(`nodes[${i}].podCIDRs[${j}]: ${c} is not inside the cluster podRanges`);
      }
      podCIDRs.push({ cidr: c, path: `nodes[${i}].podCIDRs[${j}]` });
    });
    if (node.addresses !== undefined && (tors.length > 1 || racks.some((r) => r.rack.ports === 'routed'))) {
      problems.push(`nodes[${i}].addresses: only a node on one bridged rack may set its address (the others are derived)`);
    }
    for (const { tor: torName, rack } of racks) {
      const position = (rackMembers.get(torName) ?? 0) + 1;
      rackMembers.set(torName, position);
      for (const family of IP_FAMILIES) {
        const lan = rack[family];
        const given = tors.length === 1 && rack.ports === 'bridge' ? node.addresses?.[family] : undefined;
        if (given !== undefined && lan === undefined) {
          problems.push(`nodes[${i}].addresses.${family}: rack "${torName}" has no ${family} LAN`);
        } else if (given !== undefined && lan !== undefined && !cidrContainsAddress(lan, given)) {
          problems.push(`nodes[${i}].addresses.${family}: ${given} is not inside the rack LAN ${lan}`);
        } else if (lan !== undefined) {
          const address =
            given !== undefined
              ? canonicalAddress(given)
              : nthAddress(lan, rack.ports === 'routed' ? routedPortHosts(position).node : NODE_ADDRESS_BASE + position);
          if (address === undefined) {
            problems.push(`nodes[${i}]: rack LAN ${lan} of "${torName}" is too small to derive an address`);
          } else if (rack.ports === 'bridge' && address === nthAddress(lan, 1)) {
            problems.push(`nodes[${i}].addresses.${family}: ${address} is the ToR's address (the first host of ${lan})`);
          } else if (usedAddresses.has(address)) {
            problems.push(`nodes[${i}].addresses.${family}: ${address} is already used by node ${usedAddresses.get(address)}`);
          } else {
            usedAddresses.set(address, node.name);
          }
        }
      }
    }
  });
  for (let a = 0; a < podCIDRs.length; a++) {
    for (let b = 0; b < a; b++) {
      const pa = podCIDRs[a];
      const pb = podCIDRs[b];
      if (pa !== undefined && pb !== undefined && cidrsOverlap(pa.cidr, pb.cidr)) {
        problems.push(`${pa.path}: ${pa.cidr} overlaps ${pb.path} (${pb.cidr})`);
      }
    }
  }

  t.externalHosts.forEach((ext, i) => {
    const router = routers.get(ext.router);
    if (router === undefined) problems.push(`externalHosts[${i}].router: no router named "${ext.router}"`);
    const families = new Set<string>();
    ext.addresses.forEach((a, j) => {
      const parsed = parseCidrText(a);
      if (parsed === undefined) return;
      if (families.has(parsed.family)) problems.push(`externalHosts[${i}].addresses[${j}]: more than one ${parsed.family} address`);
      families.add(parsed.family);
      const network = networkOf(a);
      if (nthAddress(network, 1) === parsed.address) {
        problems.push(`externalHosts[${i}].addresses[${j}]: ${parsed.address} is the router's address on that network (the first host)`);
      }
      subnets.push({ cidr: network, path: `externalHosts[${i}].addresses[${j}]` });
    });
  });

  // Nothing the lab routes may overlap anything else it routes, and no lab network may sit in the pod ranges.
  for (let a = 0; a < subnets.length; a++) {
    const sa = subnets[a];
    if (sa === undefined) continue;
    for (const range of t.cluster.podRanges) {
      if (cidrsOverlap(sa.cidr, range)) problems.push(`${sa.path}: ${sa.cidr} overlaps the cluster pod range ${range}`);
    }
    for (let b = 0; b < a; b++) {
      const sb = subnets[b];
      if (sb !== undefined && cidrsOverlap(sa.cidr, sb.cidr)) problems.push(`${sa.path}: ${sa.cidr} overlaps ${sb.path} (${sb.cidr})`);
    }
  }

  // Service addresses are routed too: no Service range may overlap a lab network, a pod range or another one.
  const ranges = serviceRanges(t.services);
  ranges.forEach((r, a) => {
    for (const range of t.cluster.podRanges) if (cidrsOverlap(r.cidr, range)) problems.push(`${r.path}: ${r.cidr} overlaps the cluster pod range ${range}`);
    for (const s of subnets) if (cidrsOverlap(r.cidr, s.cidr)) problems.push(`${r.path}: ${r.cidr} overlaps ${s.path} (${s.cidr})`);
    for (const other of ranges.slice(0, a)) if (cidrsOverlap(r.cidr, other.cidr)) problems.push(`${r.path}: ${r.cidr} overlaps ${other.path} (${other.cidr})`);
  });
  for (const d of duplicates(t.services.loadBalancerPools, (p) => p.name)) problems.push(`services.loadBalancerPools[${d.index}].name: duplicate pool "${d.key}"`);

  const namespaces = new Set(['default', ...t.kubernetes.namespaces.map((n) => n.name)]);
  for (const d of duplicates(t.kubernetes.namespaces, (n) => n.name)) {
    problems.push(`kubernetes.namespaces[${d.index}].name: duplicate namespace "${d.key}"`);
  }
  t.kubernetes.pods.forEach((pod, i) => {
    if (!namespaces.has(pod.namespace)) problems.push(`kubernetes.pods[${i}].namespace: namespace "${pod.namespace}" is not declared`);
    if (!nodes.has(pod.nodeName)) problems.push(`kubernetes.pods[${i}].nodeName: no node named "${pod.nodeName}"`);
    for (const d of duplicates(pod.containerPorts, (p) => `${p.containerPort}/${p.protocol}`)) {
      problems.push(`kubernetes.pods[${i}].containerPorts[${d.index}]: duplicate port ${d.key}`);
    }
  });
  for (const d of duplicates(t.kubernetes.pods, (p) => `${p.namespace}/${p.name}`)) {
    problems.push(`kubernetes.pods[${d.index}].name: duplicate pod "${d.key}"`);
  }
  t.kubernetes.networkPolicies.forEach((np, i) => {
    const metadata = np.metadata as { name?: unknown } | undefined;
    if (typeof metadata?.name !== 'string') problems.push(`kubernetes.networkPolicies[${i}].metadata.name: required`);
  });
  return problems;
}

/** An address of the topology file in the form the kernel and the tools print it. */
function canonicalAddress(address: string): string {
  const parsed = parseIpAddress(address);
  if (parsed === undefined) throw new Error(`not an address: ${address}`);
  return parsed.text;
}

/** The network of an interface address: 198.51.100.2/24 -> 198.51.100.0/24. */
export function networkOf(interfaceCidr: string): string {
  return requireIpCidr(interfaceCidr).text;
}

// ---- layout ------------------------------------------------------------------------------------------------

export type MemberKind = 'router' | 'node' | 'external';

export interface InterfaceLayout {
  name: string;
  /** Interface addresses with prefix length, e.g. 10.10.1.1/24. */
  addresses: string[];
  /** The bridge this interface is a port of (ToR side of rack LANs). */
  master?: string;
  /** The link's MTU (the topology's `mtu`); unset: the kernel's default. */
  mtu?: number;
}

export interface MemberLayout {
  name: string;
  kind: MemberKind;
  /** Routers and nodes forward; external hosts do not. */
  forwarding: boolean;
  bridges: InterfaceLayout[];
  /**
   * Default routes: nodes and external hosts only; routers learn theirs over BGP. Several gateways of one family
   * (a multi-homed node) make one multipath default route.
   */
  defaultRoutes: { family: IpFamily; via: string }[];
}

export interface VethEnd {
  member: string;
  interface: InterfaceLayout;
}

export interface VethLayout {
  a: VethEnd;
  b: VethEnd;
}

/** A BGP session between two routers, seen from `router`. */
export interface FabricSession {
  router: string;
  peer: string;
  family: IpFamily;
  localAddress: string;
  peerAddress: string;
  peerAsn: number;
  interface: string;
}

export interface NodeAddress {
  family: IpFamily;
  address: string;
  prefixLength: number;
}

export interface NodeGateway {
  family: IpFamily;
  address: string;
  /** The ToR that has this address (the node's BGP peer there). */
  tor: string;
}

/** One link of a node to one of its ToRs. */
export interface NodeUplink {
  tor: string;
  /** Interface name in the node's namespace (eth0, eth1, ...). */
  interface: string;
  addresses: NodeAddress[];
  gateways: NodeGateway[];
}

export interface NodeLayout {
  name: string;
  /** The first ToR (the only one of a single-homed node). */
  tor: string;
  /** Every ToR of the node, in uplink order. */
  tors: string[];
  asn: number;
  /** The node's rack LAN addresses on all its uplinks, eth0 first (no prefix length): its InternalIPs. */
  addresses: NodeAddress[];
  /** The ToRs' addresses on the node's links: the node's gateways and BGP peers (all uplinks, eth0 first). */
  gateways: NodeGateway[];
  uplinks: NodeUplink[];
  podCIDRs: string[];
}

export interface RackLayout {
  tor: string;
  ports: 'bridge' | 'routed';
  /** The rack LAN subnets (the ToR's BGP listen ranges). */
  subnets: string[];
  /** The ToR's addresses on the rack: on its bridge, or on each routed port. */
  torAddresses: string[];
  nodes: string[];
  /** TCP MD5 secret of the ToR's node sessions. */
  password?: string;
}

export interface ExternalLayout {
  name: string;
  router: string;
  networks: string[];
  addresses: string[];
}

export interface LabLayout {
  members: MemberLayout[];
  veths: VethLayout[];
  fabric: FabricSession[];
  racks: RackLayout[];
  nodes: NodeLayout[];
  externals: ExternalLayout[];
}

export function peerInterfaceName(peer: string): string {
  return `to-${peer}`;
}

function withPrefix(address: string, cidrText: string): string {
  return `${address}/${prefixLengthOf(cidrText)}`;
}

function must<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new TopologyError([what]);
  return value;
}

/** Where everything goes. Pure: the same topology always gives the same layout. */
export function planLayout(t: Topology): LabLayout {
  const members: MemberLayout[] = [
    ...t.routers.map((r): MemberLayout => ({ name: r.name, kind: 'router', forwarding: true, bridges: [], defaultRoutes: [] })),
    ...t.nodes.map((n): MemberLayout => ({ name: n.name, kind: 'node', forwarding: true, bridges: [], defaultRoutes: [] })),
    ...t.externalHosts.map((e): MemberLayout => ({ name: e.name, kind: 'external', forwarding: false, bridges: [], defaultRoutes: [] })),
  ];
  const member = (name: string): MemberLayout => must(members.find((m) => m.name === name), `unknown member ${name}`);
  const router = (name: string): TopologyRouter => must(t.routers.find((r) => r.name === name), `unknown router ${name}`);
  const veths: VethLayout[] = [];
  const fabric: FabricSession[] = [];
  const racks: RackLayout[] = [];
  const nodes: NodeLayout[] = [];
  const externals: ExternalLayout[] = [];

  for (const link of t.links) {
    if (link.type !== 'p2p') continue;
    const mtu = link.mtu === undefined ? {} : { mtu: link.mtu };
    const a: VethEnd = { member: link.a, interface: { name: peerInterfaceName(link.b), addresses: [], ...mtu } };
    const b: VethEnd = { member: link.b, interface: { name: peerInterfaceName(link.a), addresses: [], ...mtu } };
    for (const family of IP_FAMILIES) {
      const subnet = link[family];
      if (subnet === undefined) continue;
      const [ha, hb] = pointToPointHosts(subnet);
      const addrA = must(nthAddress(subnet, ha), `links: ${subnet} is too small`);
      const addrB = must(nthAddress(subnet, hb), `links: ${subnet} is too small`);
      a.interface.addresses.push(withPrefix(addrA, subnet));
      b.interface.addresses.push(withPrefix(addrB, subnet));
      fabric.push(
        { router: link.a, peer: link.b, family, localAddress: addrA, peerAddress: addrB, peerAsn: router(link.b).asn, interface: a.interface.name },
        { router: link.b, peer: link.a, family, localAddress: addrB, peerAddress: addrA, peerAsn: router(link.a).asn, interface: b.interface.name },
      );
    }
    veths.push({ a, b });
  }

  // Each node's uplinks, in the order of its ToRs; a node's position on a rack counts the nodes before it there.
  const rackLinks = t.links.filter((l): l is TopologyRackLink => l.type === 'rack');
  const uplinksOf = new Map<string, NodeUplink[]>();
  for (const link of rackLinks) {
    const subnets = [link.ipv4, link.ipv6].filter((s): s is string => s !== undefined);
    const rackNodes = t.nodes.filter((n) => nodeTors(n).includes(link.tor));
    const torAddresses: string[] = [];
    const mtu = link.mtu === undefined ? {} : { mtu: link.mtu };
    if (link.ports === 'bridge') {
      torAddresses.push(...subnets.map((s) => withPrefix(must(nthAddress(s, 1), `${s} too small`), s)));
      member(link.tor).bridges.push({ name: RACK_BRIDGE, addresses: torAddresses, ...mtu });
    }
    rackNodes.forEach((node, index) => {
      const position = index + 1;
      const uplinkIndex = nodeTors(node).indexOf(link.tor);
      const uplink: NodeUplink = { tor: link.tor, interface: uplinkInterfaceName(uplinkIndex), addresses: [], gateways: [] };
      const torPortAddresses: string[] = [];
      for (const family of IP_FAMILIES) {
        const lan = link[family];
        if (lan === undefined) continue;
        if (link.ports === 'routed') {
          const hosts = routedPortHosts(position);
          const prefixLength = routedPortPrefixLength(family);
          const gateway = must(nthAddress(lan, hosts.tor), `${lan} too small`);
          uplink.addresses.push({ family, address: must(nthAddress(lan, hosts.node), `${lan} too small`), prefixLength });
          uplink.gateways.push({ family, address: gateway, tor: link.tor });
          torPortAddresses.push(`${gateway}/${prefixLength}`);
        } else {
          const given = nodeTors(node).length === 1 ? node.addresses?.[family] : undefined;
          const address = given !== undefined ? canonicalAddress(given) : must(nthAddress(lan, NODE_ADDRESS_BASE + position), `${lan} too small`);
          uplink.addresses.push({ family, address, prefixLength: prefixLengthOf(lan) });
          uplink.gateways.push({ family, address: must(nthAddress(lan, 1), `${lan} too small`), tor: link.tor });
        }
      }
      torAddresses.push(...torPortAddresses);
      veths.push({
        a: {
          member: link.tor,
          interface:
            link.ports === 'routed'
              ? { name: peerInterfaceName(node.name), addresses: torPortAddresses, ...mtu }
              : { name: peerInterfaceName(node.name), addresses: [], master: RACK_BRIDGE, ...mtu },
        },
        b: { member: node.name, interface: { name: uplink.interface, addresses: uplink.addresses.map((a) => `${a.address}/${a.prefixLength}`), ...mtu } },
      });
      const list = uplinksOf.get(node.name) ?? [];
      list[uplinkIndex] = uplink;
      uplinksOf.set(node.name, list);
    });
    racks.push({ tor: link.tor, ports: link.ports, subnets, torAddresses, nodes: rackNodes.map((n) => n.name), ...(link.password === undefined ? {} : { password: link.password }) });
  }
  // Nodes in the order of their first ToR's rack link, then as listed.
  for (const link of rackLinks) {
    for (const node of t.nodes.filter((n) => nodeTors(n)[0] === link.tor)) {
      const uplinks = (uplinksOf.get(node.name) ?? []).filter((u): u is NodeUplink => u !== undefined);
      const gateways = uplinks.flatMap((u) => u.gateways);
      for (const g of gateways) member(node.name).defaultRoutes.push({ family: g.family, via: g.address });
      nodes.push({
        name: node.name,
        tor: link.tor,
        tors: nodeTors(node),
        asn: node.asn ?? t.cluster.asn,
        addresses: uplinks.flatMap((u) => u.addresses),
        gateways,
        uplinks,
        podCIDRs: node.podCIDRs,
      });
    }
  }

  for (const ext of t.externalHosts) {
    const networks = ext.addresses.map(networkOf);
    const routerAddresses = networks.map((n) => withPrefix(must(nthAddress(n, 1), `${n} too small`), n));
    for (const n of networks) {
      const family = parseCidrText(n)?.family ?? 'ipv4';
      member(ext.name).defaultRoutes.push({ family, via: must(nthAddress(n, 1), `${n} too small`) });
    }
    veths.push({
      a: { member: ext.router, interface: { name: peerInterfaceName(ext.name), addresses: routerAddresses } },
      b: { member: ext.name, interface: { name: UPLINK_INTERFACE, addresses: [...ext.addresses] } },
    });
    externals.push({ name: ext.name, router: ext.router, networks, addresses: [...ext.addresses] });
  }

  for (const v of veths) {
    for (const end of [v.a, v.b]) {
      if (end.interface.name.length > MAX_INTERFACE_NAME) {
        throw new TopologyError([`${end.member}: interface name "${end.interface.name}" is longer than ${MAX_INTERFACE_NAME} characters`]);
      }
    }
  }
  return { members, veths, fabric, racks, nodes, externals };
}
