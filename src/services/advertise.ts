// Which Service addresses one node advertises over its BGP sessions: a pure function of the Services, their
// EndpointSlices and the node. Host routes for LoadBalancer ingress addresses of ours and for allowed
// `spec.externalIPs`, plus the configured ClusterIP ranges as aggregates (as Calico's serviceClusterIPs).
// - externalTrafficPolicy Cluster: every node that advertises Services advertises the address (ECMP at the ToR).
// - externalTrafficPolicy Local: only a node with a local endpoint that is ready and not terminating, so traffic
//   never takes an extra hop and keeps its client's source address.
// - An `externalIPs` entry outside `externalIPRanges` is never advertised: a Service author must not be able to
//   pull an arbitrary address (another tenant's, the API server's) to this node.
// - LoadBalancer ingress addresses only inside the configured pools: a status written by hand names no address of ours.
// - Services with a Local traffic policy also get their ClusterIPs (inside clusterIPRanges) as host routes from the
//   nodes with a ready endpoint.
// - A node labelled node.kubernetes.io/exclude-from-external-load-balancers advertises no Service address (nor the
//   ClusterIP aggregates), and a Service annotated podroute.io/advertise: "false" is advertised by no node.
import type { EndpointSlice, Service } from '../kube/wire.js';
import { anyContainsAddress, compareIpPrefixes, parseIpAddress, parseIpPrefix, type IpPrefix } from '../routes/ip-prefix.js';
import { isOurLoadBalancer, serviceKey } from './allocator.js';

/** The well-known node label that keeps a node out of external load balancing (control planes, for one). */
export const EXCLUDE_NODE_LABEL = 'node.kubernetes.io/exclude-from-external-load-balancers';
/** `"false"` keeps a Service out of BGP. */
export const ADVERTISE_ANNOTATION = 'podroute.io/advertise';
/** The EndpointSlice label naming its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface ServiceAdvertisementInput {
  nodeName: string;
  nodeLabels: Record<string, string>;
  services: readonly Service[];
  endpointSlices: readonly EndpointSlice[];
  /** The CIDRs of services.loadBalancerPools: only ingress addresses inside them are ours to advertise. */
  loadBalancerRanges: readonly string[];
  /** Where `spec.externalIPs` may lie to be advertised (canonical CIDRs). */
  externalIPRanges: readonly string[];
  /** The service ClusterIP ranges advertised as they are (canonical CIDRs). */
  clusterIPRanges: readonly string[];
}

export interface AdvertisementProblem {
  service: string;
  reason: 'ExternalIPNotAllowed' | 'IngressNotInPool';
  message: string;
}

export interface ServiceAdvertisement {
  /** Canonical prefixes (host routes and the ClusterIP aggregates), sorted, each once. */
  prefixes: string[];
  problems: AdvertisementProblem[];
}

/** namespace/service-name -> whether this node has an endpoint of it that is ready and not terminating. */
function localReadyServices(slices: readonly EndpointSlice[], nodeName: string): Set<string> {
  const ready = new Set<string>();
  for (const slice of slices) {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (service === undefined) continue;
    const key = `${slice.metadata?.namespace ?? ''}/${service}`;
    if (ready.has(key)) continue;
    // A nil ready condition means ready (the API's own reading); terminating must be said to count.
    const local = (slice.endpoints ?? []).some((e) => e.nodeName === nodeName && e.conditions?.ready !== false && e.conditions?.terminating !== true);
    if (local) ready.add(key);
  }
  return ready;
}

function hostPrefix(address: string): IpPrefix | undefined {
  const parsed = parseIpAddress(address);
  return parsed === undefined ? undefined : parseIpPrefix(parsed.text);
}

type ExternalIPProblem = AdvertisementProblem & { reason: 'ExternalIPNotAllowed' };

/** Configured CIDRs as prefixes (the configuration holds them canonical). */
function prefixesOf(texts: readonly string[]): IpPrefix[] {
  return texts.map((r) => parseIpPrefix(r)).filter((p): p is IpPrefix => p !== undefined);
}

/** A Service's `spec.externalIPs` inside the allowed ranges (canonical), and a problem for each one outside. */
function allowedExternalIPs(service: Service, allowed: readonly IpPrefix[]): { addresses: string[]; problems: ExternalIPProblem[] } {
  const addresses: string[] = [];
  const problems: ExternalIPProblem[] = [];
  for (const ip of service.spec?.externalIPs ?? []) {
    const address = parseIpAddress(ip);
    if (address !== undefined && anyContainsAddress(allowed, address)) {
      addresses.push(address.text);
    } else {
      problems.push({ service: serviceKey(service), reason: 'ExternalIPNotAllowed', message: `externalIPs entry ${JSON.stringify(ip)} is outside services.externalIPRanges: not advertised` });
    }
  }
  return { addresses, problems };
}

/** The `spec.externalIPs` entries no node advertises, as problems (what every node's plan reports, for one reporter). */
export function externalIPProblems(services: readonly Service[], externalIPRanges: readonly string[]): ExternalIPProblem[] {
  const allowed = prefixesOf(externalIPRanges);
  return services.flatMap((service) => allowedExternalIPs(service, allowed).problems);
}

export function planServiceAdvertisement(input: ServiceAdvertisementInput): ServiceAdvertisement {
  const prefixes = new Map<string, IpPrefix>();
  const problems: AdvertisementProblem[] = [];
  const add = (prefix: IpPrefix | undefined): void => {
    if (prefix !== undefined) prefixes.set(prefix.text, prefix);
  };
  const excluded = Object.prototype.hasOwnProperty.call(input.nodeLabels, EXCLUDE_NODE_LABEL);
  const pools = prefixesOf(input.loadBalancerRanges);
  const allowed = prefixesOf(input.externalIPRanges);
  const clusterRanges = prefixesOf(input.clusterIPRanges);
  if (!excluded) for (const range of clusterRanges) add(range);
  const localReady = localReadyServices(input.endpointSlices, input.nodeName);
  for (const service of input.services) {
    if (service.metadata?.annotations?.[ADVERTISE_ANNOTATION] === 'false') continue;
    const key = serviceKey(service);
    const addresses: string[] = [];
    if (isOurLoadBalancer(service)) {
      for (const ingress of service.status?.loadBalancer?.ingress ?? []) {
        const address = ingress.ip === undefined ? undefined : parseIpAddress(ingress.ip);
        // Only what our pools hold: a status written by hand (or left from a pool since removed) names no address
        // this cluster owns.
        if (address !== undefined && anyContainsAddress(pools, address)) addresses.push(address.text);
        else problems.push({ service: key, reason: 'IngressNotInPool', message: `status.loadBalancer.ingress ${JSON.stringify(ingress.ip ?? ingress.hostname ?? '')} is in no services.loadBalancerPools: not advertised` });
      }
    }
    const external = allowedExternalIPs(service, allowed);
    addresses.push(...external.addresses);
    problems.push(...external.problems);
    const etpLocal = service.spec?.externalTrafficPolicy === 'Local';
    // A Service whose traffic must stay on nodes with an endpoint also gets its ClusterIPs as host routes from those
    // nodes (as Calico does): longer than the range aggregate, so the fabric sends it straight to them.
    if (!excluded && (etpLocal || service.spec?.internalTrafficPolicy === 'Local')) {
      for (const ip of service.spec?.clusterIPs ?? (service.spec?.clusterIP === undefined ? [] : [service.spec.clusterIP])) {
        const address = parseIpAddress(ip);
        if (address !== undefined && anyContainsAddress(clusterRanges, address) && localReady.has(key)) add(hostPrefix(address.text));
      }
    }
    if (excluded || addresses.length === 0) continue;
    if (etpLocal && !localReady.has(key)) continue;
    for (const address of addresses) add(hostPrefix(address));
  }
  return { prefixes: [...prefixes.values()].sort(compareIpPrefixes).map((p) => p.text), problems };
}
