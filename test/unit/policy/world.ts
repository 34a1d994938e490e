// Small builders for policy test worlds (test helper): namespaces, pods, policies, and the e2e-style world of
// namespaces x, y, z with pods a, b, c spread over two nodes, serving 80 and 81 over TCP, UDP and SCTP.
import { wireObject } from '../../wire.js';
import type { Namespace, NetworkPolicy, NetworkPolicySpec, Pod } from '../../../src/kube/wire.js';
import { type CompiledPolicies } from '../../../src/policy/compile.js';
import { compilePolicies } from './scratch-compile.js';
import { allowed, type OracleEndpoint } from './oracle.js';
import type { ClusterState, PolicyNode, Protocol } from '../../../src/policy/types.js';
import { familyOf, IP_FAMILIES, ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { clusterAllows, type Place, type SimPacket } from './simulator.js';

export function namespace(name: string, labels: Record<string, string> = {}): Namespace {
  return { metadata: { name, labels } };
}

export interface PodPort {
  name?: string;
  port: number;
  protocol?: Protocol;
}

export function pod(o: {
  ns: string;
  name: string;
  node: string;
  labels?: Record<string, string>;
  ips: string[];
  ports?: PodPort[];
  hostNetwork?: boolean;
}): Pod {
  return {
    metadata: { namespace: o.ns, name: o.name, labels: o.labels ?? {} },
    spec: {
      nodeName: o.node,
      ...(o.hostNetwork === true ? { hostNetwork: true } : {}),
      containers: [
        {
          name: 'main',
          ports: (o.ports ?? []).map((p) => ({
            containerPort: p.port,
            ...(p.name === undefined ? {} : { name: p.name }),
            ...(p.protocol === undefined ? {} : { protocol: p.protocol }),
          })),
        },
      ],
    },
    status: { phase: 'Running', podIP: o.ips[0], podIPs: o.ips.map((ip) => ({ ip })) },
  };
}

export function policy(ns: string, name: string, spec: NetworkPolicySpec): NetworkPolicy {
  return wireObject('NetworkPolicy', 'v1', { metadata: { namespace: ns, name }, spec });
}

export interface Node extends PolicyNode {
  /** Host addresses, one per family. */
  v4: string;
  v6: string;
}

export interface World {
  nodes: Node[];
  namespaces: Namespace[];
  pods: Pod[];
  /** An address outside the cluster, per family. */
  external: { v4: string; v6: string };
}

export const E2E_PORTS = [80, 81];
export const E2E_PROTOCOLS: Protocol[] = ['TCP', 'UDP', 'SCTP'];

/** Namespaces x, y, z (label ns=<name>); pods a, b on node n1 and c on n2, labelled pod=<name>. */
export function e2eWorld(): World {
  const nodes: Node[] = [
    { name: 'n1', v4: '192.168.0.1', v6: 'fd00::1', addresses: ['192.168.0.1', 'fd00::1'], podCIDRs: ['10.1.0.0/24', 'fd01:1::/64'] },
    { name: 'n2', v4: '192.168.0.2', v6: 'fd00::2', addresses: ['192.168.0.2', 'fd00::2'], podCIDRs: ['10.1.1.0/24', 'fd01:2::/64'] },
  ];
  const namespaces = ['x', 'y', 'z'].map((n) => namespace(n, { ns: n }));
  const pods: Pod[] = [];
  let host = 10;
  for (const ns of ['x', 'y', 'z']) {
    for (const name of ['a', 'b', 'c']) {
      const node = name === 'c' ? 1 : 0;
      host++;
      pods.push(
        pod({
          ns,
          name,
          node: `n${node + 1}`,
          labels: { pod: name },
          ips: [`10.1.${node}.${host}`, `fd01:${node + 1}::${host.toString(16)}`],
          ports: E2E_PORTS.flatMap((port) =>
            E2E_PROTOCOLS.map((protocol) => ({ port, protocol, name: `serve-${port}-${protocol.toLowerCase()}` })),
          ),
        }),
      );
    }
  }
  return { nodes, namespaces, pods, external: { v4: '203.0.113.9', v6: '2001:db8::9' } };
}

export interface Probe {
  from: string;
  to: string;
  port: number;
  protocol: Protocol;
  family: IpFamily;
  oracle: boolean;
  compiled: boolean;
}

interface Endpoint {
  label: string;
  oracle: OracleEndpoint;
  place: Place;
  ip: (f: IpFamily) => string | undefined;
}

function endpoints(world: World): Endpoint[] {
  const list: Endpoint[] = world.pods.map((p) => {
    const node = p.spec?.nodeName ?? '';
    const ips = (p.status?.podIPs ?? []).flatMap((x) => (x.ip === undefined ? [] : [x.ip]));
    return {
      label: `${p.metadata?.namespace}/${p.metadata?.name}`,
      oracle: { pod: p },
      place: p.spec?.hostNetwork === true ? { kind: 'host', node } : { kind: 'pod', node },
      ip: (f) => ips.find((ip) => familyOf(ip) === f),
    };
  });
  for (const n of world.nodes) {
    list.push({ label: `node/${n.name}`, oracle: { ip: n.v4, node: n.name }, place: { kind: 'host', node: n.name }, ip: (f) => (f === 'ipv4' ? n.v4 : n.v6) });
  }
  list.push({ label: 'external', oracle: { ip: world.external.v4 }, place: { kind: 'external' }, ip: (f) => (f === 'ipv4' ? world.external.v4 : world.external.v6) });
  return list;
}

export function compileWorld(world: World, policies: NetworkPolicy[]): Map<string, CompiledPolicies> {
  const compiled = new Map<string, CompiledPolicies>();
  for (const node of world.nodes) {
    compiled.set(node.name, compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies, node }));
  }
  return compiled;
}

/** Every (source, destination pod or node, port, protocol, family) of the world, by the oracle and by the rules. */
export function truthTable(
  world: World,
  policies: NetworkPolicy[],
  options: { ports?: number[]; protocols?: Protocol[]; families?: IpFamily[] } = {},
): Probe[] {
  const cluster: ClusterState = { pods: world.pods, namespaces: world.namespaces, policies };
  const compiled = compileWorld(world, policies);
  const all = endpoints(world);
  const probes: Probe[] = [];
  for (const family of options.families ?? IP_FAMILIES) {
    for (const src of all) {
      for (const dst of all) {
        if (src === dst || dst.place.kind === 'external' || src.label === dst.label) continue;
        const srcIp = src.ip(family);
        const dstIp = dst.ip(family);
        if (srcIp === undefined || dstIp === undefined) continue;
        for (const port of options.ports ?? E2E_PORTS) {
          for (const protocol of options.protocols ?? E2E_PROTOCOLS) {
            const oracleSrc: OracleEndpoint = 'ip' in src.oracle ? { ...src.oracle, ip: srcIp } : src.oracle;
            const oracleDst: OracleEndpoint = 'ip' in dst.oracle ? { ...dst.oracle, ip: dstIp } : dst.oracle;
            const pkt: SimPacket = { src: srcIp, dst: dstIp, protocol, dport: port };
            probes.push({
              from: src.label,
              to: dst.label,
              port,
              protocol,
              family,
              oracle: allowed(cluster, { src: oracleSrc, dst: oracleDst, port, protocol, family }),
              compiled: clusterAllows(compiled, family, pkt, src.place, dst.place),
            });
          }
        }
      }
    }
  }
  return probes;
}

export function disagreements(probes: Probe[]): string[] {
  return probes
    .filter((p) => p.oracle !== p.compiled)
    .map((p) => `${p.from} -> ${p.to} ${p.protocol}/${p.port} v${ipVersion(p.family)}: oracle ${p.oracle}, rules ${p.compiled}`);
}

/** The probe of one pair, for spot checks. */
export function probeOf(probes: Probe[], from: string, to: string, port: number, protocol: Protocol = 'TCP', family: IpFamily = 'ipv4'): Probe {
  const p = probes.find((x) => x.from === from && x.to === to && x.port === port && x.protocol === protocol && x.family === family);
  if (p === undefined) throw new Error(`no probe ${from} -> ${to} ${protocol}/${port} v${ipVersion(family)}`);
  return p;
}
