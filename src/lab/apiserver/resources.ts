// The resource kinds the lab API server serves, with what discovery and the REST router need to know about each.

export interface ResourceKind {
  /** API group ('' = core). */
  group: string;
  version: string;
  kind: string;
  listKind: string;
  /** URL plural, e.g. 'pods'. */
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  /** Has a /status subresource: the main resource ignores status writes and /status only changes status. */
  hasStatus: boolean;
  /** Extra categories for discovery ('all' makes `kubectl get all` include it). */
  categories: string[];
}

export const RESOURCE_KINDS: readonly ResourceKind[] = [
  {
    group: '', version: 'v1', kind: 'Namespace', listKind: 'NamespaceList', plural: 'namespaces',
    singular: 'namespace', namespaced: false, shortNames: ['ns'], hasStatus: true, categories: [],
  },
  {
    group: '', version: 'v1', kind: 'Node', listKind: 'NodeList', plural: 'nodes', singular: 'node',
    namespaced: false, shortNames: ['no'], hasStatus: true, categories: [],
  },
  {
    group: '', version: 'v1', kind: 'Pod', listKind: 'PodList', plural: 'pods', singular: 'pod',
    namespaced: true, shortNames: ['po'], hasStatus: true, categories: ['all'],
  },
  {
    group: '', version: 'v1', kind: 'Service', listKind: 'ServiceList', plural: 'services', singular: 'service',
    namespaced: true, shortNames: ['svc'], hasStatus: true, categories: ['all'],
  },
  {
    group: '', version: 'v1', kind: 'Event', listKind: 'EventList', plural: 'events', singular: 'event',
    namespaced: true, shortNames: ['ev'], hasStatus: false, categories: [],
  },
  {
    group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', listKind: 'EndpointSliceList',
    plural: 'endpointslices', singular: 'endpointslice', namespaced: true, shortNames: [], hasStatus: false, categories: [],
  },
  {
    group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', listKind: 'LeaseList', plural: 'leases',
    singular: 'lease', namespaced: true, shortNames: [], hasStatus: false, categories: [],
  },
  {
    group: 'networking.k8s.io', version: 'v1', kind: 'NetworkPolicy', listKind: 'NetworkPolicyList',
    plural: 'networkpolicies', singular: 'networkpolicy', namespaced: true, shortNames: ['netpol'],
    hasStatus: false, categories: [],
  },
];

export function apiVersionOf(rk: ResourceKind): string {
  return rk.group === '' ? rk.version : `${rk.group}/${rk.version}`;
}

/** Finds a kind by its Kind name ('Pod') or plural ('pods'), case-insensitively. */
export function findKind(kindOrPlural: string): ResourceKind | undefined {
  const k = kindOrPlural.toLowerCase();
  return RESOURCE_KINDS.find((rk) => rk.kind.toLowerCase() === k || rk.plural === k);
}

export function findByPlural(group: string, version: string, plural: string): ResourceKind | undefined {
  return RESOURCE_KINDS.find((rk) => rk.group === group && rk.version === version && rk.plural === plural);
}

export function groupsOf(): { group: string; version: string }[] {
  const seen = new Map<string, { group: string; version: string }>();
  for (const rk of RESOURCE_KINDS) {
    if (rk.group !== '') seen.set(`${rk.group}/${rk.version}`, { group: rk.group, version: rk.version });
  }
  return [...seen.values()];
}
