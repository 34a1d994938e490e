// RBAC against the code: the Kubernetes API calls are derived from the agent's sources (calls of the agent's own
// client, src/kube/kube-api.ts, with their literal path templates; and, should client-node come back, its API
// methods and informer paths), and the ClusterRole/Role must grant exactly those. A new call without a rule fails
// here, and so does a rule nothing uses.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { expect } from 'chai';
import { KubeApi } from '../../../src/kube/kube-api.js';
import { kustomize, only, repoPath, type DaemonSet, type K8sObject } from './manifests.js';

/** One permission: `group|resource[/subresource]|verb`, cluster-wide or in a namespace. */
interface ApiCall {
  group: string;
  resource: string;
  verb: string;
  /** undefined = cluster-wide (cluster-scoped objects, or all namespaces). */
  namespace?: string;
  source: string;
}

const API_CLASSES: Record<string, { group: string; prototype: object }> = {
  CoreV1Api: { group: '', prototype: k8s.CoreV1Api.prototype },
  NetworkingV1Api: { group: 'networking.k8s.io', prototype: k8s.NetworkingV1Api.prototype },
  DiscoveryV1Api: { group: 'discovery.k8s.io', prototype: k8s.DiscoveryV1Api.prototype },
  EventsV1Api: { group: 'events.k8s.io', prototype: k8s.EventsV1Api.prototype },
  CoordinationV1Api: { group: 'coordination.k8s.io', prototype: k8s.CoordinationV1Api.prototype },
};

const VERBS: Record<string, string> = {
  list: 'list',
  read: 'get',
  create: 'create',
  patch: 'patch',
  replace: 'update',
  delete: 'delete',
  deleteCollection: 'deletecollection',
};
const SUBRESOURCES = ['Status', 'Scale', 'Ephemeralcontainers', 'Log', 'Binding', 'Eviction', 'Token', 'Resize'];

function plural(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower.endsWith('s')) return lower; // Endpoints
  if (lower.endsWith('y')) return `${lower.slice(0, -1)}ies`; // NetworkPolicy
  return `${lower}s`;
}

/** listPodForAllNamespaces → list pods; patchNodeStatus → patch nodes/status; createNamespacedEvent → create events. */
export function permissionOf(method: string, group: string): Omit<ApiCall, 'source' | 'namespace'> & { namespaced: boolean } {
  const verbMatch = /^(deleteCollection|list|read|create|patch|replace|delete)(.+)$/.exec(method);
  if (verbMatch === null) throw new Error(`no RBAC mapping for API method ${method}: extend test/unit/deploy/rbac.test.ts`);
  const verb = VERBS[verbMatch[1] ?? ''] ?? '';
  let rest = verbMatch[2] ?? '';
  const namespaced = rest.startsWith('Namespaced');
  if (namespaced) rest = rest.slice('Namespaced'.length);
  rest = rest.replace(/ForAllNamespaces$/, '');
  let subresource = '';
  for (const suffix of SUBRESOURCES) {
    if (rest.endsWith(suffix) && rest.length > suffix.length) {
      subresource = `/${suffix.toLowerCase()}`;
      rest = rest.slice(0, -suffix.length);
      break;
    }
  }
  return { group, resource: `${plural(rest)}${subresource}`, verb, namespaced };
}

/** The API calls in one source text. `defaultNamespace`: where namespaced calls go (read from the source). */
export function apiCallsIn(source: string, text: string): ApiCall[] {
  const calls: ApiCall[] = [];
  const classes = Object.entries(API_CLASSES).filter(([name]) => new RegExp(`\\b${name}\\b`).test(text));
  if (classes.length > 0) {
    const namespaces = [...text.matchAll(/[nN]amespace\s*\?\?\s*'([a-z0-9-]+)'/g)].map((m) => m[1] ?? '');
    for (const m of text.matchAll(/\.([a-z][A-Za-z]+)\(/g)) {
      const method = m[1] ?? '';
      for (const [, api] of classes) {
        if (typeof (api.prototype as Record<string, unknown>)[method] !== 'function' || method === 'constructor') continue;
        const p = permissionOf(method, api.group);
        let namespace: string | undefined;
        if (p.namespaced) {
          if (namespaces.length !== 1) {
            throw new Error(`${source}: ${method} is namespaced; expected one \`namespace ?? '<ns>'\` default to know where, found ${namespaces.length}`);
          }
          namespace = namespaces[0];
        }
        calls.push({ group: p.group, resource: p.resource, verb: p.verb, namespace, source: `${source}: ${method}` });
      }
    }
  }
  calls.push(...kubeApiCallsIn(source, text));
  // Informers (makeInformer, or a ListWatch made directly) list and watch the paths they are given.
  if (/\b(makeInformer|new ListWatch)\b/.test(text)) {
    for (const m of text.matchAll(/'\/(?:api\/v1|apis\/([a-z0-9.-]+)\/v1[a-z0-9]*)\/([a-z]+)'/g)) {
      for (const verb of ['list', 'watch']) calls.push({ group: m[1] ?? '', resource: m[2] ?? '', verb, source: `${source}: informer ${m[0]}` });
    }
  }
  return calls;
}

/** KubeApi's request methods (src/kube/kube-api.ts) and the RBAC verb each one needs (a test checks it is all of them). */
const KUBE_API_VERBS: Record<string, string> = { list: 'list', watch: 'watch', read: 'get', create: 'create', patch: 'patch' };

/**
 * '/api/v1/namespaces/{namespace}/events' → events, namespaced; '/api/v1/nodes/{name}/status' → nodes/status;
 * '/apis/networking.k8s.io/v1/networkpolicies' → group networking.k8s.io.
 */
export function permissionOfPath(template: string): { group: string; resource: string; namespaced: boolean } {
  const m = /^\/(?:api\/v1|apis\/([a-z0-9.-]+)\/v1[a-z0-9]*)\/(.+)$/.exec(template);
  if (m === null) throw new Error(`no RBAC mapping for API path ${template}: extend test/unit/deploy/rbac.test.ts`);
  let segments = (m[2] ?? '').split('/');
  let namespaced = false;
  if (segments[0] === 'namespaces' && segments[1] === '{namespace}' && segments.length > 2) {
    namespaced = true;
    segments = segments.slice(2);
  }
  const [resource, name, subresource, ...more] = segments;
  if (resource === undefined || !/^[a-z]+$/.test(resource) || (name !== undefined && !/^\{[a-zA-Z]+\}$/.test(name)) || more.length > 0) {
    throw new Error(`no RBAC mapping for API path ${template}: extend test/unit/deploy/rbac.test.ts`);
  }
  return { group: m[1] ?? '', resource: subresource === undefined ? resource : `${resource}/${subresource}`, namespaced };
}

/** The line that puts a source's namespaced calls in every namespace (a ClusterRole rule). */
const ALL_NAMESPACES_MARK = /^\/\/ RBAC: all namespaces\b/m;

/**
 * Calls of KubeApi in a source that uses it: `.list('/api/v1/pods', …)`, `.patch('/api/v1/nodes/{name}/status', …)`.
 * A call whose path is not a literal cannot be placed, and fails the scan.
 */
export function kubeApiCallsIn(source: string, text: string): ApiCall[] {
  if (!/\bKubeApi\b|kube-api\.js'/.test(text)) return [];
  const calls: ApiCall[] = [];
  const namespaces = [...text.matchAll(/[nN]amespace\s*\?\?\s*'([a-z0-9-]+)'/g)].map((m) => m[1] ?? '');
  // A source whose namespaced calls go to any namespace (the objects it writes live in all of them) says so.
  const anyNamespace = ALL_NAMESPACES_MARK.test(text);
  // A type argument (`.read<Lease>(`) must not hide a call from the scan.
  for (const m of text.matchAll(new RegExp(`\\.(${Object.keys(KUBE_API_VERBS).join('|')})(?:<[^>(]*>)?\\(\\s*([^,)]*)`, 'g'))) {
    const method = m[1] ?? '';
    const literal = /^'(\/[^']*)'$/.exec((m[2] ?? '').trim());
    if (literal === null) throw new Error(`${source}: .${method}(${m[2] ?? ''}…) does not name its API path as a literal; the RBAC scan cannot place it`);
    const p = permissionOfPath(literal[1] ?? '');
    let namespace: string | undefined;
    if (p.namespaced && !anyNamespace) {
      if (namespaces.length !== 1) throw new Error(`${source}: ${literal[1]} is namespaced; expected one \`namespace ?? '<ns>'\` default (or the line \`// RBAC: all namespaces\`) to know where, found ${namespaces.length}`);
      namespace = namespaces[0];
    }
    calls.push({ group: p.group, resource: p.resource, verb: KUBE_API_VERBS[method] ?? '', namespace, source: `${source}: ${method} ${literal[1]}` });
  }
  return calls;
}

function agentSources(): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(repoPath(dir), { withFileTypes: true })) {
      const relative = path.join(dir, entry.name);
      // The lab (its own API server, kubelet and CLI) is not part of the deployed agent; `podroute status --cluster`
      // reads with the user's kubeconfig, not the agent's ServiceAccount.
      if (relative === 'src/lab' || relative === 'src/cli/lab.ts' || relative === 'src/cli/cluster-status.ts') continue;
      if (entry.isDirectory()) walk(relative);
      else if (entry.name.endsWith('.ts')) out.push({ file: relative, text: readFileSync(repoPath(relative), 'utf8') });
    }
  };
  walk('src');
  return out;
}

const key = (c: { group: string; resource: string; verb: string }): string => `${c.group}|${c.resource}|${c.verb}`;

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

function flatten(rules: Rule[]): string[] {
  const out = new Set<string>();
  for (const r of rules) {
    for (const group of r.apiGroups ?? []) for (const resource of r.resources ?? []) for (const verb of r.verbs ?? []) out.add(`${group}|${resource}|${verb}`);
  }
  return [...out].sort();
}

describe('deploy: RBAC covers exactly the API calls of the code', () => {
  let calls: ApiCall[] = [];
  before(() => {
    // Here rather than at load time: a call the scanner cannot place fails a test, not the whole run.
    calls = agentSources().flatMap(({ file, text }) => apiCallsIn(file, text));
  });

  it('the scan finds the calls the agent is known to make', () => {
    const found = new Set(calls.map((c) => `${key(c)}${c.namespace === undefined ? '' : `@${c.namespace}`}`));
    for (const expected of ['|nodes|list', '|nodes|watch', '|pods|watch', '|namespaces|list', '|nodes/status|patch', '|events|create@default', 'networking.k8s.io|networkpolicies|watch', '|services|list', '|services/status|patch', '|events|create']) {
      expect(found, expected).to.include(expected);
    }
  });

  it('the scanner maps method names and informer paths to permissions (it can find a new call)', () => {
    const text = [
      "import { CoreV1Api, makeInformer } from '@kubernetes/client-node';",
      "const namespace = options.namespace ?? 'kube-system';",
      'await core.readNamespacedSecret({ name, namespace });',
      'await core.replaceNodeStatus({ name, body });',
      "makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', list);",
    ].join('\n');
    expect(apiCallsIn('x.ts', text).map((c) => `${key(c)}@${c.namespace ?? '*'}`)).to.deep.equal([
      '|secrets|get@kube-system',
      '|nodes/status|update@*',
      'discovery.k8s.io|endpointslices|list@*',
      'discovery.k8s.io|endpointslices|watch@*',
    ]);
    const ours = [
      "import { KubeApi } from './kube-api.js';",
      "const namespace = options.namespace ?? 'kube-system';",
      "await api.read('/api/v1/namespaces/{namespace}/secrets/{name}', { params: { namespace, name } });",
      "await api.patch('/api/v1/nodes/{name}/status', body, { params: { name } });",
      "await api.watch('/apis/discovery.k8s.io/v1/endpointslices', options, onEvent);",
    ].join('\n');
    expect(apiCallsIn('y.ts', ours).map((c) => `${key(c)}@${c.namespace ?? '*'}`)).to.deep.equal([
      '|secrets|get@kube-system',
      '|nodes/status|patch@*',
      'discovery.k8s.io|endpointslices|watch@*',
    ]);
    const everywhere = [
      "import { KubeApi } from './kube-api.js';",
      '// RBAC: all namespaces. The objects it writes are in every namespace.',
      "await api.patch('/api/v1/namespaces/{namespace}/services/{name}/status', body, { params });",
    ].join('\n');
    expect(apiCallsIn('w.ts', everywhere).map((c) => `${key(c)}@${c.namespace ?? '*'}`)).to.deep.equal(['|services/status|patch@*']);
    expect(() => apiCallsIn('v.ts', everywhere.replace('// RBAC: all namespaces.', '//'))).to.throw(/is namespaced/);
    // Every request method of KubeApi is one the scan knows (a new one must be mapped to its verb here).
    const methods = Object.getOwnPropertyNames(KubeApi.prototype).filter((m) => m !== 'constructor' && m !== 'close' && typeof (KubeApi.prototype as unknown as Record<string, unknown>)[m] === 'function');
    expect(methods.filter((m) => !['json', 'send', 'readBody', 'transportError', 'currentToken'].includes(m)).sort()).to.deep.equal(Object.keys(KUBE_API_VERBS).sort());
    expect(() => apiCallsIn('z.ts', "import { KubeApi } from './kube-api.js';\nawait api.list(somePath, {});")).to.throw(/does not name its API path as a literal/);
    expect(() => apiCallsIn('z.ts', "import { KubeApi } from './kube-api.js';\nawait api.list('/healthz');")).to.throw(/no RBAC mapping/);
    expect(permissionOf('listNetworkPolicyForAllNamespaces', 'networking.k8s.io')).to.deep.equal({
      group: 'networking.k8s.io',
      resource: 'networkpolicies',
      verb: 'list',
      namespaced: false,
    });
  });

  it('ClusterRole podroute = the cluster-wide calls; Role in the events namespace = the namespaced calls', async () => {
    const objects = await kustomize('deploy/base');
    const clusterRole = only<K8sObject & { rules: Rule[] }>(objects, 'ClusterRole', 'podroute');
    const wanted = (namespace: string | undefined): string[] => [...new Set(calls.filter((c) => c.namespace === namespace).map(key))].sort();
    expect(flatten(clusterRole.rules), 'ClusterRole rules vs cluster-wide calls').to.deep.equal(wanted(undefined));

    const namespaces = [...new Set(calls.flatMap((c) => (c.namespace === undefined ? [] : [c.namespace])))];
    const roles = objects.filter((o) => o.kind === 'Role') as (K8sObject & { rules: Rule[] })[];
    expect(roles.map((r) => r.metadata.namespace).sort()).to.deep.equal(namespaces.sort());
    for (const role of roles) expect(flatten(role.rules), `Role in ${role.metadata.namespace}`).to.deep.equal(wanted(role.metadata.namespace));

    for (const rule of [...clusterRole.rules, ...roles.flatMap((r) => r.rules)]) {
      for (const field of [rule.apiGroups, rule.resources, rule.verbs]) expect(field ?? [], 'no wildcards').to.not.include('*');
      expect(rule.nonResourceURLs).to.equal(undefined);
    }
  });

  it('the bindings grant them to the DaemonSet\'s service account', async () => {
    const objects = await kustomize('deploy/base');
    const ds = only<DaemonSet>(objects, 'DaemonSet', 'podroute');
    const account = { kind: 'ServiceAccount', name: ds.spec.template.spec.serviceAccountName, namespace: ds.metadata.namespace };
    only(objects, 'ServiceAccount', account.name);
    type Binding = K8sObject & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace?: string }[] };
    const crb = only<Binding>(objects, 'ClusterRoleBinding', 'podroute');
    expect(crb.roleRef).to.include({ kind: 'ClusterRole', name: 'podroute' });
    expect(crb.subjects).to.deep.equal([account]);
    for (const rb of objects.filter((o) => o.kind === 'RoleBinding') as Binding[]) {
      const role = only(objects, 'Role', rb.roleRef.name);
      expect(rb.roleRef.kind).to.equal('Role');
      expect(rb.metadata.namespace).to.equal(role.metadata.namespace);
      expect(rb.subjects).to.deep.equal([account]);
    }
  });
});
