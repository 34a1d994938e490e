// RBAC against the code: the Kubernetes API calls are derived from the agent's sources (client-node API methods
// and informer paths), and the ClusterRole/Role must grant exactly those. A new call without a rule fails here,
// and so does a rule nothing uses.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { expect } from 'chai';
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
  // Informers (makeInformer, or a ListWatch made directly) list and watch the paths they are given.
  if (/\b(makeInformer|new ListWatch)\b/.test(text)) {
    for (const m of text.matchAll(/'\/(?:api\/v1|apis\/([a-z0-9.-]+)\/v1[a-z0-9]*)\/([a-z]+)'/g)) {
      for (const verb of ['list', 'watch']) calls.push({ group: m[1] ?? '', resource: m[2] ?? '', verb, source: `${source}: informer ${m[0]}` });
    }
  }
  return calls;
}

function agentSources(): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(repoPath(dir), { withFileTypes: true })) {
      const relative = path.join(dir, entry.name);
      // The lab (its own API server, kubelet and CLI) is not part of the deployed agent.
      if (relative === 'src/lab' || relative === 'src/cli/lab.ts') continue;
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
    for (const expected of ['|nodes|list', '|nodes|watch', '|nodes/status|patch', '|events|create@default', 'networking.k8s.io|networkpolicies|watch']) {
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
