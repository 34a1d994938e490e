// `podroute lab show`, Services part: each Service with its type, addresses and externalTrafficPolicy, and for each
// address the nodes that advertise it, read from the ToRs' BGP tables (the paths a ToR learned from its nodes).
import type { Service } from './services/endpoint-slices.js';
import { apiRequest } from './api.js';
import { LabError } from './errors.js';
import { routerRib, type RibRoute } from './routers.js';
import { labPaths } from './paths.js';
import { readLabState } from './state.js';
import { cidrContainsAddress, parseTopology, planLayout, type LabLayout } from './topology.js';
import { addressBits, familyOf } from '../routes/ip-prefix.js';

export { parseRib, type RibRoute } from './routers.js';

export interface ServiceView {
  namespace: string;
  name: string;
  type: string;
  externalTrafficPolicy?: string;
  addresses: { address: string; kind: 'clusterIP' | 'externalIP' | 'loadBalancer'; advertisedBy: string[] }[];
}

/** prefix -> the nodes some ToR learned it from (a peer that is a node's rack address), sorted. */
export function advertisersByPrefix(ribs: readonly RibRoute[][], layout: LabLayout): Map<string, string[]> {
  const nodeOf = new Map(layout.nodes.flatMap((n) => n.uplinks.flatMap((u) => u.addresses.map((a) => [a.address, n.name] as const))));
  const out = new Map<string, Set<string>>();
  for (const rib of ribs) {
    for (const route of rib) {
      for (const peer of route.peers) {
        const node = nodeOf.get(peer);
        if (node === undefined) continue;
        const set = out.get(route.prefix) ?? new Set<string>();
        set.add(node);
        out.set(route.prefix, set);
      }
    }
  }
  return new Map([...out].map(([prefix, nodes]) => [prefix, [...nodes].sort()]));
}

function hostPrefix(address: string): string {
  return `${address}/${addressBits(familyOf(address))}`;
}

/** Who advertises an address: its host route, else a shorter route holding it (the ClusterIP range aggregate). */
function advertisersOf(address: string, advertisers: ReadonlyMap<string, string[]>): string[] {
  const host = advertisers.get(hostPrefix(address));
  if (host !== undefined) return host;
  const covering = [...advertisers].filter(([prefix]) => familyOf(prefix) === familyOf(address) && cidrContainsAddress(prefix, address));
  return [...new Set(covering.flatMap(([, nodes]) => nodes))].sort();
}

/** The Services as `lab show` lists them, with the advertisers of each address. */
export function serviceViews(services: readonly Service[], advertisers: ReadonlyMap<string, string[]>): ServiceView[] {
  return services
    .map((svc) => {
      const spec = svc.spec ?? {};
      const type = spec.type ?? 'ClusterIP';
      const addresses: ServiceView['addresses'] = [];
      const add = (address: string, kind: ServiceView['addresses'][number]['kind']): void => {
        if (address === '' || address === 'None' || addresses.some((a) => a.address === address)) return;
        addresses.push({ address, kind, advertisedBy: advertisersOf(address, advertisers) });
      };
      for (const ip of spec.clusterIPs ?? (spec.clusterIP === undefined ? [] : [spec.clusterIP])) add(ip, 'clusterIP');
      for (const ip of spec.externalIPs ?? []) add(ip, 'externalIP');
      if (type === 'LoadBalancer') for (const ingress of svc.status?.loadBalancer?.ingress ?? []) if (ingress.ip !== undefined) add(ingress.ip, 'loadBalancer');
      return {
        namespace: svc.metadata.namespace ?? 'default',
        name: svc.metadata.name ?? '',
        type,
        ...(spec.externalTrafficPolicy === undefined ? {} : { externalTrafficPolicy: spec.externalTrafficPolicy }),
        addresses,
      };
    })
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

export async function labServices(lab: string, signal?: AbortSignal): Promise<ServiceView[]> {
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  const topology = parseTopology(state.topologyText);
  const layout = planLayout(topology);
  const paths = labPaths(lab);
  const res = await apiRequest(paths.apiSocket, 'GET', '/api/v1/services');
  if (res.status !== 200) throw new LabError('LAB_API_FAILED', `GET /api/v1/services answered ${res.status}`);
  const ribs: RibRoute[][] = [];
  for (const tor of topology.routers.filter((r) => r.role === 'tor')) {
    for (const afi of ['ipv4', 'ipv6'] as const) {
      try {
        ribs.push(await routerRib(lab, tor, afi, signal));
      } catch {
        // a ToR that is down advertises nothing we can read
      }
    }
  }
  return serviceViews((res.body as { items?: Service[] }).items ?? [], advertisersByPrefix(ribs, layout));
}

export function formatServices(services: readonly ServiceView[]): string {
  const lines = ['SERVICES (address: nodes that advertise it, from the ToRs)'];
  if (services.length === 0) lines.push('  (none)');
  for (const s of services) {
    lines.push(`  ${`${s.namespace}/${s.name}`.padEnd(24)} ${s.type}${s.externalTrafficPolicy === undefined ? '' : ` externalTrafficPolicy=${s.externalTrafficPolicy}`}`);
    for (const a of s.addresses) lines.push(`    ${a.address.padEnd(24)} ${a.kind.padEnd(13)} ${a.advertisedBy.length === 0 ? '-' : a.advertisedBy.join(', ')}`);
  }
  return lines.join('\n') + '\n';
}
