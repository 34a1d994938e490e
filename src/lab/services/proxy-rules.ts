// The lab's stand-in for kube-proxy (iptables mode), pure part: the nat and filter rules one node needs so that
// Service addresses (ClusterIPs, spec.externalIPs, LoadBalancer ingress IPs) reach the Service's endpoints, as
// iptables-restore input per family. The thin loop that applies it in every node's netns is service-proxy.ts.
// Shapes follow kube-proxy's proxier (pkg/proxy/iptables, Kubernetes 1.30): SVC/EXT/SVL/SEP chains, random
// balancing with `statistic`, mark 0x4000 then MASQUERADE, externalTrafficPolicy Local without SNAT, DROP for
// external traffic when no endpoint is local, REJECT when a Service has no endpoint at all. Our chains carry the
// LABSVC- prefix so nothing clashes with podroute's own (PRPOL-*, PODROUTE-MASQ) nor with a real kube-proxy.
import { createHash } from 'node:crypto';
import type { EndpointSlice, Service } from './endpoint-slices.js';
import { SERVICE_NAME_LABEL } from './endpoint-slices.js';
import { addressBits, familyOf, ipVersion, type IpFamily } from '../../routes/ip-prefix.js';

export const CHAIN_PREFIX = 'LABSVC-';
/** nat: hooked from PREROUTING and OUTPUT (kube-proxy's KUBE-SERVICES). */
export const SERVICES_CHAIN = 'LABSVC-SERVICES';
/** nat: hooked from POSTROUTING (KUBE-POSTROUTING): masquerades what MARK-MASQ marked. */
export const POSTROUTING_CHAIN = 'LABSVC-POSTROUTING';
export const MARK_MASQ_CHAIN = 'LABSVC-MARK-MASQ';
/** filter: hooked from INPUT, FORWARD and OUTPUT for new connections: REJECT without endpoints, DROP without local ones. */
export const FILTER_CHAIN = 'LABSVC-FILTER';
/** kube-proxy's --iptables-masquerade-bit 14. podroute's policy uses 0x40000: no overlap. */
export const MASQ_MARK = '0x4000';


/**
 * Where each built-in chain jumps to ours. Service translation comes first (PREROUTING, OUTPUT: before anything
 * sees the Service address). Elsewhere the jump is appended: podroute keeps its own jumps first in nat POSTROUTING
 * (masquerade) and in the filter chains (policy) and would re-insert them whenever another rule went above; being
 * later costs nothing here (its masquerade chain returns what it does not masquerade, policy decides before us).
 */
export const HOOKS: { table: 'nat' | 'filter'; chain: string; target: string; match: string[]; position: 'first' | 'last' }[] = [
  { table: 'nat', chain: 'PREROUTING', target: SERVICES_CHAIN, match: [], position: 'first' },
  { table: 'nat', chain: 'OUTPUT', target: SERVICES_CHAIN, match: [], position: 'first' },
  { table: 'nat', chain: 'POSTROUTING', target: POSTROUTING_CHAIN, match: [], position: 'last' },
  { table: 'filter', chain: 'INPUT', target: FILTER_CHAIN, match: ['-m', 'conntrack', '--ctstate', 'NEW'], position: 'last' },
  { table: 'filter', chain: 'FORWARD', target: FILTER_CHAIN, match: ['-m', 'conntrack', '--ctstate', 'NEW'], position: 'last' },
  { table: 'filter', chain: 'OUTPUT', target: FILTER_CHAIN, match: ['-m', 'conntrack', '--ctstate', 'NEW'], position: 'last' },
];

export interface ProxyNode {
  name: string;
  /** The cluster's pod ranges of this family: pod sources are not masqueraded (kube-proxy's --cluster-cidr). */
  podRanges: string[];
}

export interface ProxyEndpoint {
  address: string;
  port: number;
  nodeName?: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

/** One Service port of one family, with everything its rules need. */
export interface ServicePortView {
  /** namespace/name:portName, as kube-proxy names a ServicePortName. */
  id: string;
  protocol: 'tcp' | 'udp' | 'sctp';
  port: number;
  clusterIPs: string[];
  externalAddresses: string[];
  localExternal: boolean;
  localInternal: boolean;
  endpoints: ProxyEndpoint[];
}

/**
 * The Service ports of one family as the proxy sees them: the Service's addresses of that family and the
 * endpoints of its slices (the slices of that address type, matched by port name and protocol).
 */
export function servicePortViews(services: readonly Service[], slices: readonly EndpointSlice[], family: IpFamily): ServicePortView[] {
  const out: ServicePortView[] = [];
  for (const svc of services) {
    const spec = svc.spec;
    if (spec === undefined || spec.type === 'ExternalName') continue;
    const namespace = svc.metadata.namespace ?? 'default';
    const name = svc.metadata.name ?? '';
    const clusterIPs = (spec.clusterIPs ?? (spec.clusterIP === undefined ? [] : [spec.clusterIP])).filter((ip) => ip !== '' && ip !== 'None' && familyOf(ip) === family);
    const lbIPs = spec.type === 'LoadBalancer' ? (svc.status?.loadBalancer?.ingress ?? []).flatMap((i) => (i.ip === undefined ? [] : [i.ip])) : [];
    const externalAddresses = [...new Set([...(spec.externalIPs ?? []), ...lbIPs])].filter((ip) => familyOf(ip) === family);
    const ownSlices = slices.filter(
      (s) => s.metadata.namespace === namespace && s.metadata.labels?.[SERVICE_NAME_LABEL] === name && s.addressType === `IPv${ipVersion(family)}`,
    );
    const localExternal = (spec.type === 'LoadBalancer' || spec.type === 'NodePort') && spec.externalTrafficPolicy === 'Local';
    for (const port of spec.ports ?? []) {
      const portName = port.name ?? '';
      const protocol = (port.protocol ?? 'TCP').toLowerCase() as ServicePortView['protocol'];
      const endpoints: ProxyEndpoint[] = [];
      const seen = new Set<string>();
      for (const slice of ownSlices) {
        const slicePort = (slice.ports ?? []).find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP').toLowerCase() === protocol);
        if (slicePort === undefined) continue;
        for (const e of slice.endpoints ?? []) {
          const address = e.addresses[0];
          if (address === undefined || seen.has(`${address}:${slicePort.port}`)) continue;
          seen.add(`${address}:${slicePort.port}`);
          endpoints.push({
            address,
            port: slicePort.port,
            ...(e.nodeName === undefined ? {} : { nodeName: e.nodeName }),
            // Unset conditions mean ready/serving (the API's documented defaults), not terminating.
            ready: e.conditions?.ready ?? true,
            serving: e.conditions?.serving ?? e.conditions?.ready ?? true,
            terminating: e.conditions?.terminating ?? false,
          });
        }
      }
      out.push({
        id: `${namespace}/${name}:${portName}`,
        protocol,
        port: port.port,
        clusterIPs,
        externalAddresses,
        localExternal,
        localInternal: spec.internalTrafficPolicy === 'Local',
        endpoints,
      });
    }
  }
  return out.sort((a, b) => a.id.localeCompare(b.id) || a.protocol.localeCompare(b.protocol));
}

/**
 * The endpoints traffic may go to (kube-proxy's CategorizeEndpoints): the ready ones; when none is ready, the
 * serving terminating ones, so connections drain instead of failing.
 */
export function usableEndpoints(endpoints: readonly ProxyEndpoint[]): ProxyEndpoint[] {
  const ready = endpoints.filter((e) => e.ready);
  return ready.length > 0 ? ready : endpoints.filter((e) => e.serving && e.terminating);
}

/** A chain name of kube-proxy's form: prefix + 16 characters of base32(sha256(id)). Always ≤ 28 characters. */
export function hashedChain(kind: 'SVC' | 'EXT' | 'SVL' | 'SEP', ...parts: string[]): string {
  const digest = createHash('sha256').update(parts.join('/')).digest();
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let text = '';
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && text.length < 16) {
      text += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (text.length >= 16) break;
  }
  return `${CHAIN_PREFIX}${kind}-${text}`;
}

function dnatTarget(e: ProxyEndpoint): string {
  return familyOf(e.address) === 'ipv6' ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

function hostCidr(ip: string): string {
  return `${ip}/${addressBits(familyOf(ip))}`;
}

function comment(text: string): string {
  return `-m comment --comment "${text.replace(/"/g, '')}"`;
}

/** kube-proxy's probability format: 1/(n-i) with ten decimals. */
function probability(remaining: number): string {
  return (1 / remaining).toFixed(10);
}

export interface RenderedRules {
  /** iptables-restore --noflush input for the nat table. */
  nat: string;
  /** iptables-restore --noflush input for the filter table. */
  filter: string;
  /** Every chain of ours the tables hold after the restore, per table. */
  chains: { nat: string[]; filter: string[] };
}

/**
 * The whole rule set of one node and one family. `staleChains` are chains of ours that exist in the node's tables
 * but are no longer wanted: they are flushed and deleted in the same transaction.
 */
export function renderProxyRules(node: ProxyNode, ports: readonly ServicePortView[], staleChains: { nat: string[]; filter: string[] } = { nat: [], filter: [] }): RenderedRules {
  const natChains = new Map<string, string[]>();
  const chain = (name: string): string[] => {
    let rules = natChains.get(name);
    if (rules === undefined) natChains.set(name, (rules = []));
    return rules;
  };
  chain(SERVICES_CHAIN);
  chain(MARK_MASQ_CHAIN).push(`-A ${MARK_MASQ_CHAIN} -j MARK --or-mark ${MASQ_MARK}`);
  chain(POSTROUTING_CHAIN).push(
    `-A ${POSTROUTING_CHAIN} -m mark ! --mark ${MASQ_MARK}/${MASQ_MARK} -j RETURN`,
    // The mark is cleared before MASQUERADE so a packet that passes here again (re-routed) is not SNATed twice.
    `-A ${POSTROUTING_CHAIN} -j MARK --xor-mark ${MASQ_MARK}`,
    `-A ${POSTROUTING_CHAIN} ${comment('lab service proxy: traffic DNATed to a Service endpoint')} -j MASQUERADE --random-fully`,
  );
  const filter: string[] = [];
  const notFromPods = node.podRanges.map((r) => `! -s ${r}`).slice(0, 1).join(' ');

  for (const view of ports) {
    const match = (address: string): string => `-d ${hostCidr(address)} -p ${view.protocol} -m ${view.protocol} --dport ${view.port}`;
    const usable = usableEndpoints(view.endpoints);
    const local = usable.filter((e) => e.nodeName === node.name);
    if (usable.length === 0) {
      // No endpoint at all: kube-proxy rejects in filter (clients get a port unreachable instead of a timeout).
      for (const address of [...view.clusterIPs, ...view.externalAddresses]) {
        filter.push(`-A ${FILTER_CHAIN} ${comment(`${view.id} has no endpoints`)} ${match(address)} -j REJECT`);
      }
      continue;
    }
    const svc = hashedChain('SVC', view.id, view.protocol);
    const sepChains = usable.map((e) => {
      const sep = hashedChain('SEP', view.id, view.protocol, e.address, String(e.port));
      chain(sep).push(
        // Hairpin: an endpoint reaching itself through the Service must see a source it can answer.
        `-A ${sep} -s ${hostCidr(e.address)} -j ${MARK_MASQ_CHAIN}`,
        `-A ${sep} -p ${view.protocol} -m ${view.protocol} -j DNAT --to-destination ${dnatTarget(e)}`,
      );
      return sep;
    });
    const balance = (target: string, seps: string[]): void => {
      seps.forEach((sep, i) => {
        const remaining = seps.length - i;
        chain(target).push(remaining > 1 ? `-A ${target} -m statistic --mode random --probability ${probability(remaining)} -j ${sep}` : `-A ${target} -j ${sep}`);
      });
    };
    // The cluster-wide chain (for ClusterIPs; internalTrafficPolicy Local would narrow it to local endpoints).
    chain(svc);
    const internal = view.localInternal ? usable.filter((e) => e.nodeName === node.name) : usable;
    balance(svc, view.localInternal ? sepChains.filter((_, i) => usable[i]?.nodeName === node.name) : sepChains);
    for (const ip of view.clusterIPs) {
      if (internal.length === 0) {
        filter.push(`-A ${FILTER_CHAIN} ${comment(`${view.id} has no local endpoints`)} ${match(ip)} -j DROP`);
        continue;
      }
      // Traffic from outside the pod ranges (the node itself) is masqueraded, as with --cluster-cidr.
      if (notFromPods !== '') chain(SERVICES_CHAIN).push(`-A ${SERVICES_CHAIN} ${comment(`${view.id} cluster IP`)} ${match(ip)} ${notFromPods} -j ${MARK_MASQ_CHAIN}`);
      chain(SERVICES_CHAIN).push(`-A ${SERVICES_CHAIN} ${comment(`${view.id} cluster IP`)} ${match(ip)} -j ${svc}`);
    }
    if (view.externalAddresses.length === 0) continue;
    const ext = hashedChain('EXT', view.id, view.protocol);
    chain(ext);
    if (!view.localExternal) {
      // Cluster: any endpoint, and SNAT, so the reply comes back through this node (which undoes the DNAT).
      chain(ext).push(`-A ${ext} ${comment('masquerade traffic for external destinations')} -j ${MARK_MASQ_CHAIN}`, `-A ${ext} -j ${svc}`);
    } else {
      // Local: pods and the node itself go cluster-wide (as to a ClusterIP); traffic from outside only to endpoints
      // on this node, without SNAT: the backend sees the client's own address.
      for (const range of node.podRanges) chain(ext).push(`-A ${ext} ${comment('pod traffic for external destinations')} -s ${range} -j ${svc}`);
      chain(ext).push(
        `-A ${ext} ${comment('masquerade LOCAL traffic for external destinations')} -m addrtype --src-type LOCAL -j ${MARK_MASQ_CHAIN}`,
        `-A ${ext} ${comment('route LOCAL traffic for external destinations')} -m addrtype --src-type LOCAL -j ${svc}`,
      );
      if (local.length > 0) {
        const svl = hashedChain('SVL', view.id, view.protocol);
        chain(svl);
        balance(svl, sepChains.filter((_, i) => usable[i]?.nodeName === node.name));
        chain(ext).push(`-A ${ext} -j ${svl}`);
      } else {
        // No local endpoint: external traffic is dropped (the node should not have been sent it).
        for (const address of view.externalAddresses) {
          filter.push(`-A ${FILTER_CHAIN} ${comment(`${view.id} has no local endpoints`)} ${match(address)} -j DROP`);
        }
      }
    }
    for (const address of view.externalAddresses) {
      chain(SERVICES_CHAIN).push(`-A ${SERVICES_CHAIN} ${comment(`${view.id} external IP`)} ${match(address)} -j ${ext}`);
    }
  }

  const natNames = [...natChains.keys()];
  const staleNat = staleChains.nat.filter((c) => !natChains.has(c));
  const staleFilter = staleChains.filter.filter((c) => c !== FILTER_CHAIN);
  const nat = [
    '*nat',
    // Declaring a chain under --noflush flushes it: every chain of ours is rewritten whole.
    ...natNames.map((c) => `:${c} - [0:0]`),
    ...staleNat.map((c) => `:${c} - [0:0]`),
    ...natNames.flatMap((c) => natChains.get(c) ?? []),
    ...staleNat.map((c) => `-X ${c}`),
    'COMMIT',
    '',
  ].join('\n');
  const filterText = [
    '*filter',
    `:${FILTER_CHAIN} - [0:0]`,
    ...staleFilter.map((c) => `:${c} - [0:0]`),
    ...filter,
    ...staleFilter.map((c) => `-X ${c}`),
    'COMMIT',
    '',
  ].join('\n');
  return { nat, filter: filterText, chains: { nat: natNames, filter: [FILTER_CHAIN] } };
}

/** Our chains in `iptables-save` output (the `:NAME` declarations carrying our prefix). */
export function parseOwnChains(save: string): string[] {
  return save
    .split('\n')
    .filter((l) => l.startsWith(`:${CHAIN_PREFIX}`))
    .map((l) => l.slice(1).split(' ')[0] ?? '')
    .filter((c) => c !== '');
}
