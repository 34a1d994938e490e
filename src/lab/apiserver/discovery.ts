// Discovery documents (/api, /apis, group versions, /version) in the legacy (unaggregated) format, which kubectl
// falls back to when the server does not answer with aggregated discovery.
import { apiVersionOf, groupsOf, RESOURCE_KINDS } from './resources.js';

const COLLECTION_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const STATUS_VERBS = ['get', 'patch', 'update'];

/** The Kubernetes version the lab API server claims (kubectl warns when client and server are far apart). */
export const SERVER_VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-podroute-lab',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-01-01T00:00:00Z',
  goVersion: 'go1.23',
  compiler: 'gc',
  platform: 'linux/amd64',
};

export function apiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupEntry(group: string, version: string): Record<string, unknown> {
  const gv = { groupVersion: `${group}/${version}`, version };
  return { name: group, versions: [gv], preferredVersion: gv };
}

export function apiGroupList(): Record<string, unknown> {
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: groupsOf().map((g) => groupEntry(g.group, g.version)),
  };
}

export function apiGroup(group: string): Record<string, unknown> | undefined {
  const g = groupsOf().find((x) => x.group === group);
  return g === undefined ? undefined : { kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(g.group, g.version) };
}

export function apiResourceList(group: string, version: string): Record<string, unknown> | undefined {
  const kinds = RESOURCE_KINDS.filter((rk) => rk.group === group && rk.version === version);
  if (kinds.length === 0) return undefined;
  const resources: Record<string, unknown>[] = [];
  for (const rk of kinds) {
    resources.push({
      name: rk.plural,
      singularName: rk.singular,
      namespaced: rk.namespaced,
      kind: rk.kind,
      verbs: COLLECTION_VERBS,
      ...(rk.shortNames.length > 0 ? { shortNames: rk.shortNames } : {}),
      ...(rk.categories.length > 0 ? { categories: rk.categories } : {}),
    });
    if (rk.hasStatus) {
      resources.push({ name: `${rk.plural}/status`, singularName: '', namespaced: rk.namespaced, kind: rk.kind, verbs: STATUS_VERBS });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: apiVersionOf(kinds[0]!), resources };
}
