// An independent reference evaluator of Kubernetes NetworkPolicy (networking.k8s.io/v1), written from the API
// documentation and deliberately sharing no code with the compiler: it answers "may this connection be opened?"
// directly from the objects, so that compiled iptables rules can be checked against it.
//
// The rules it implements, as the documentation states them:
// - A pod is isolated for ingress (egress) when at least one policy that selects it has Ingress (Egress) in its
//   policyTypes; policyTypes omitted means Ingress, plus Egress when the policy has egress rules.
// - An isolated direction allows exactly the union of what the rules of all selecting policies allow.
// - A connection needs both: egress allowed at the source pod and ingress allowed at the destination pod.
// - Traffic from the destination pod's own node is always allowed in (kubelet probes).
// - Host-network pods are never selected by policies; as peers they are their node's IP.
// - Peers: podSelector alone = pods of the policy's namespace; namespaceSelector alone = all pods of the matching
//   namespaces; both in one peer = pods matching both; ipBlock = addresses in cidr minus except (pod IPs too).
// - Ports: protocol defaults to TCP; no port = every port of that protocol; endPort makes an inclusive range;
//   a named port is looked up on the destination pod for that protocol; no ports at all = every port, every protocol.
import ipaddr from 'ipaddr.js';
import type { LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Pod } from '../../../src/kube/wire.js';
import type { ClusterState, Protocol } from '../../../src/policy/types.js';
import { familyOf, ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';

export type OracleEndpoint = { pod: Pod } | { ip: string; /** set when the address is this node's own */ node?: string };

export interface OracleConnection {
  src: OracleEndpoint;
  dst: OracleEndpoint;
  port: number;
  protocol: Protocol;
  /** Which of a dual-stack pod's addresses is used; defaults to the family of an IP endpoint, else IPv4. */
  family?: IpFamily;
}

export class OracleError extends Error {
  readonly code = 'POLICY_ORACLE_BAD_QUESTION';
  constructor(message: string) {
    super(message);
    this.name = 'OracleError';
  }
}

interface Resolved {
  ip: string;
  pod?: Pod;
  node?: string;
}

const METADATA_NAME_LABEL = 'kubernetes.io/metadata.name';

export function allowed(cluster: ClusterState, conn: OracleConnection): boolean {
  const family = conn.family ?? familyOfEndpoint(conn.src) ?? familyOfEndpoint(conn.dst) ?? 'ipv4';
  const src = resolve(conn.src, family);
  const dst = resolve(conn.dst, family);
  if (src.pod !== undefined && !egressAllows(cluster, src.pod, dst, conn, family)) return false;
  if (dst.pod !== undefined) {
    if (src.pod === undefined && src.node !== undefined && src.node === dst.pod.spec?.nodeName) return true;
    if (!ingressAllows(cluster, dst.pod, src, conn, family)) return false;
  }
  return true;
}

function familyOfEndpoint(e: OracleEndpoint): IpFamily | undefined {
  if ('ip' in e) return familyOf(e.ip);
  return undefined;
}

function resolve(e: OracleEndpoint, family: IpFamily): Resolved {
  if ('ip' in e) {
    if (familyOf(e.ip) !== family) throw new OracleError(`address ${e.ip} is not IPv${ipVersion(family)}`);
    return { ip: e.ip, ...(e.node === undefined ? {} : { node: e.node }) };
  }
  const pod = e.pod;
  const ips = [...(pod.status?.podIPs ?? []).map((p) => p.ip), pod.status?.podIP].filter(
    (ip): ip is string => typeof ip === 'string' && ip !== '',
  );
  const ip = ips.find((a) => familyOf(a) === family);
  const name = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
  if (ip === undefined) throw new OracleError(`pod ${name} has no IPv${ipVersion(family)} address`);
  if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') {
    throw new OracleError(`pod ${name} has terminated`);
  }
  // A host-network pod is its node, as far as policy is concerned.
  if (pod.spec?.hostNetwork === true) return { ip, ...(pod.spec.nodeName ? { node: pod.spec.nodeName } : {}) };
  return { ip, pod };
}

function policyTypes(policy: NetworkPolicy): string[] {
  const explicit = policy.spec?.policyTypes;
  if (explicit !== undefined && explicit.length > 0) return explicit;
  const types = ['Ingress'];
  if ((policy.spec?.egress ?? []).length > 0) types.push('Egress');
  return types;
}

function selects(policy: NetworkPolicy, pod: Pod): boolean {
  return (
    policy.metadata?.namespace === pod.metadata?.namespace &&
    selectorMatches(policy.spec?.podSelector ?? {}, pod.metadata?.labels ?? {})
  );
}

function ingressAllows(cluster: ClusterState, dst: Pod, src: Resolved, conn: OracleConnection, family: IpFamily): boolean {
  const policies = cluster.policies.filter((p) => selects(p, dst) && policyTypes(p).includes('Ingress'));
  if (policies.length === 0) return true;
  return policies.some((policy) =>
    (policy.spec?.ingress ?? []).some(
      (rule) =>
        peersAllow(cluster, policy, rule.from, src, family) && portsAllow(rule.ports, dst, conn.port, conn.protocol),
    ),
  );
}

function egressAllows(cluster: ClusterState, srcPod: Pod, dst: Resolved, conn: OracleConnection, family: IpFamily): boolean {
  const policies = cluster.policies.filter((p) => selects(p, srcPod) && policyTypes(p).includes('Egress'));
  if (policies.length === 0) return true;
  return policies.some((policy) =>
    (policy.spec?.egress ?? []).some(
      (rule) => peersAllow(cluster, policy, rule.to, dst, family) && portsAllow(rule.ports, dst.pod, conn.port, conn.protocol),
    ),
  );
}

function peersAllow(
  cluster: ClusterState,
  policy: NetworkPolicy,
  peers: NetworkPolicyPeer[] | undefined,
  other: Resolved,
  family: IpFamily,
): boolean {
  if (peers === undefined || peers.length === 0) return true;
  return peers.some((peer) => peerMatches(cluster, policy, peer, other, family));
}

function peerMatches(
  cluster: ClusterState,
  policy: NetworkPolicy,
  peer: NetworkPolicyPeer,
  other: Resolved,
  family: IpFamily,
): boolean {
  if (peer.ipBlock !== undefined) {
    const cidrFamily = familyOf(peer.ipBlock.cidr);
    if (cidrFamily !== family) return false;
    if (!inCidr(other.ip, peer.ipBlock.cidr)) return false;
    return !(peer.ipBlock.except ?? []).some((cidr) => inCidr(other.ip, cidr));
  }
  const pod = other.pod;
  if (pod === undefined) return false;
  const podNamespace = pod.metadata?.namespace ?? '';
  if (peer.namespaceSelector === undefined) {
    if (podNamespace !== policy.metadata?.namespace) return false;
  } else if (!selectorMatches(peer.namespaceSelector, namespaceLabels(cluster, podNamespace))) {
    return false;
  }
  if (peer.podSelector === undefined) return true;
  return selectorMatches(peer.podSelector, pod.metadata?.labels ?? {});
}

function namespaceLabels(cluster: ClusterState, name: string): Record<string, string> {
  const ns = cluster.namespaces.find((n) => n.metadata?.name === name);
  // The API server puts this label on every namespace.
  return { ...(ns?.metadata?.labels ?? {}), [METADATA_NAME_LABEL]: name };
}

function inCidr(ip: string, cidr: string): boolean {
  const addr = ipaddr.parse(ip);
  const range = ipaddr.parseCIDR(cidr);
  if (addr.kind() !== range[0].kind()) return false;
  return addr.match(range);
}

export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, req.key);
    const value = labels[req.key];
    const values = req.values ?? [];
    switch (req.operator) {
      case 'In':
        if (!has || !values.includes(value ?? '')) return false;
        break;
      case 'NotIn':
        // A missing label is "not in" any list.
        if (has && values.includes(value ?? '')) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        throw new OracleError(`unknown label selector operator ${req.operator}`);
    }
  }
  return true;
}

function portsAllow(ports: NetworkPolicyPort[] | undefined, dstPod: Pod | undefined, port: number, protocol: Protocol): boolean {
  if (ports === undefined || ports.length === 0) return true;
  return ports.some((entry) => portMatches(entry, dstPod, port, protocol));
}

function portMatches(entry: NetworkPolicyPort, dstPod: Pod | undefined, port: number, protocol: Protocol): boolean {
  if ((entry.protocol ?? 'TCP') !== protocol) return false;
  if (entry.port === undefined) return true;
  if (typeof entry.port === 'number') {
    return entry.endPort === undefined ? port === entry.port : port >= entry.port && port <= entry.endPort;
  }
  // A named port means the port of that name (and protocol) on the destination pod.
  if (dstPod === undefined) return false;
  for (const container of [...(dstPod.spec?.containers ?? []), ...(dstPod.spec?.initContainers ?? [])]) {
    for (const p of container.ports ?? []) {
      if (p.name === entry.port && (p.protocol ?? 'TCP') === protocol && p.containerPort === port) return true;
    }
  }
  return false;
}
