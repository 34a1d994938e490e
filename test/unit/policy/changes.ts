// Random cluster snapshots and change sequences for the policy property tests (test helper): a few namespaces, pods
// on this node and another, policies of mixed shapes, and changes of every kind the informers deliver.
import fc from 'fast-check';
import type { IPBlock, Namespace, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, Pod } from '../../../src/kube/wire.js';
import type { PolicyNode } from '../../../src/policy/types.js';
import { namespace, pod, policy } from './world.js';

export const NAMESPACES = ['x', 'y', 'z'];
const VALUES = ['a', 'b', 'c'];
export const node: PolicyNode = { name: 'n1', addresses: ['192.168.0.1'], podCIDRs: ['10.1.0.0/16', 'fd01::/64'] };

export interface Snapshot {
  pods: Pod[];
  namespaces: Namespace[];
  policies: NetworkPolicy[];
}

export const labelsArb = fc.dictionary(fc.constantFrom('app', 'tier'), fc.constantFrom(...VALUES), { maxKeys: 2 });
const selectorArb = fc.record({ matchLabels: labelsArb });
const portArb: fc.Arbitrary<NetworkPolicyPort> = fc.oneof(
  fc.record({ port: fc.constantFrom<number | string>(80, 81, 'http', 'dns'), protocol: fc.constantFrom('TCP', 'UDP') }),
  fc.record({ port: fc.constant(80), endPort: fc.constantFrom(81, 90) }),
);
const peerArb: fc.Arbitrary<NetworkPolicyPeer> = fc.oneof(
  fc.record({ podSelector: selectorArb }),
  fc.record({ namespaceSelector: selectorArb }),
  fc.record({ namespaceSelector: selectorArb, podSelector: selectorArb }),
  fc.record({ ipBlock: fc.constantFrom<IPBlock>({ cidr: '10.1.0.0/16', except: ['10.1.2.0/24'] }, { cidr: 'fd01::/64' }, { cidr: '0.0.0.0/0' }) }),
);
const ruleArb = fc.record({ peers: fc.array(peerArb, { maxLength: 2 }), ports: fc.array(portArb, { maxLength: 2 }) });
export const specArb: fc.Arbitrary<NetworkPolicySpec> = fc
  .record({
    podSelector: selectorArb,
    types: fc.constantFrom([], ['Ingress'], ['Egress'], ['Ingress', 'Egress']),
    ingress: fc.array(ruleArb, { maxLength: 2 }),
    egress: fc.array(ruleArb, { maxLength: 2 }),
    invalid: fc.boolean().map((b) => b && Math.random() < 0.2),
  })
  .map(({ podSelector, types, ingress, egress, invalid }): NetworkPolicySpec => ({
    podSelector,
    ...(types.length > 0 ? { policyTypes: [...types] } : {}),
    ingress: ingress.map((r) => ({ from: r.peers, ports: invalid ? [{ port: 0 }] : r.ports.map((p) => ({ ...p })) })),
    egress: egress.map((r) => ({ to: r.peers, ports: r.ports.map((p) => ({ ...p })) })),
  }));

export function makePod(i: number, ns: string, labels: Record<string, string>, local: boolean, v: number): Pod {
  return pod({
    ns,
    name: `p${i}`,
    node: local ? 'n1' : 'n2',
    labels,
    ips: [`10.1.${v}.${i + 1}`, `fd01::${v}:${i + 1}`],
    ports: [{ name: 'http', port: 80 + (v % 2) }, { name: 'dns', port: 53, protocol: 'UDP' }],
  });
}

export type Change =
  | { kind: 'podLabels'; index: number; labels: Record<string, string> }
  | { kind: 'podMove'; index: number; v: number }
  | { kind: 'podPhase'; index: number; failed: boolean }
  | { kind: 'podAddress'; index: number; known: boolean }
  | { kind: 'podAdd'; ns: string; labels: Record<string, string>; local: boolean }
  | { kind: 'podRemove'; index: number }
  | { kind: 'nsLabels'; index: number; labels: Record<string, string> }
  | { kind: 'policyAdd'; ns: string; spec: NetworkPolicySpec }
  | { kind: 'policyEdit'; index: number; spec: NetworkPolicySpec }
  | { kind: 'policyMutateInPlace'; index: number; spec: NetworkPolicySpec }
  | { kind: 'policyRemove'; index: number };

export const changeArb: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ kind: fc.constant('podLabels' as const), index: fc.nat(), labels: labelsArb }),
  fc.record({ kind: fc.constant('podMove' as const), index: fc.nat(), v: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ kind: fc.constant('podPhase' as const), index: fc.nat(), failed: fc.boolean() }),
  fc.record({ kind: fc.constant('podAddress' as const), index: fc.nat(), known: fc.boolean() }),
  fc.record({ kind: fc.constant('podAdd' as const), ns: fc.constantFrom(...NAMESPACES), labels: labelsArb, local: fc.boolean() }),
  fc.record({ kind: fc.constant('podRemove' as const), index: fc.nat() }),
  fc.record({ kind: fc.constant('nsLabels' as const), index: fc.nat(), labels: labelsArb }),
  fc.record({ kind: fc.constant('policyAdd' as const), ns: fc.constantFrom(...NAMESPACES), spec: specArb }),
  fc.record({ kind: fc.constant('policyEdit' as const), index: fc.nat(), spec: specArb }),
  fc.record({ kind: fc.constant('policyMutateInPlace' as const), index: fc.nat(), spec: specArb }),
  fc.record({ kind: fc.constant('policyRemove' as const), index: fc.nat() }),
);

let serial = 0;

/** The next snapshot: new arrays, changed objects replaced (as an informer does), except the in-place mutation. */
export function applyChange(s: Snapshot, c: Change): Snapshot {
  const pods = [...s.pods];
  const namespaces = [...s.namespaces];
  const policies = [...s.policies];
  const at = <T>(list: T[], index: number): number => (list.length === 0 ? -1 : index % list.length);
  switch (c.kind) {
    case 'podLabels': {
      const i = at(pods, c.index);
      const p = pods[i];
      if (p !== undefined) pods[i] = { ...p, metadata: { ...p.metadata, labels: c.labels } };
      break;
    }
    case 'podMove': {
      const i = at(pods, c.index);
      const p = pods[i];
      if (p !== undefined) {
        const n = Number((p.metadata?.name ?? 'p0').slice(1));
        pods[i] = makePod(n, p.metadata?.namespace ?? 'x', p.metadata?.labels ?? {}, p.spec?.nodeName === 'n1', c.v);
      }
      break;
    }
    case 'podPhase': {
      const i = at(pods, c.index);
      const p = pods[i];
      if (p !== undefined) pods[i] = { ...p, status: { ...p.status, phase: c.failed ? 'Failed' : 'Running' } };
      break;
    }
    case 'podAddress': {
      // A pod the API knows before its address is in its status (Pending), and the address arriving.
      const i = at(pods, c.index);
      const p = pods[i];
      if (p !== undefined) {
        const n = Number((p.metadata?.name ?? 'p0').slice(1));
        const withIps = makePod(n, p.metadata?.namespace ?? 'x', p.metadata?.labels ?? {}, p.spec?.nodeName === 'n1', 0);
        pods[i] = c.known ? withIps : { ...withIps, status: { phase: 'Pending' } };
      }
      break;
    }
    case 'podAdd':
      pods.push(makePod(100 + serial++, c.ns, c.labels, c.local, 0));
      break;
    case 'podRemove':
      if (pods.length > 0) pods.splice(at(pods, c.index), 1);
      break;
    case 'nsLabels': {
      const i = at(namespaces, c.index);
      const ns = namespaces[i];
      if (ns !== undefined) namespaces[i] = namespace(ns.metadata?.name ?? '', c.labels);
      break;
    }
    case 'policyAdd':
      policies.push(policy(c.ns, `np${serial++}`, c.spec));
      break;
    case 'policyEdit': {
      const i = at(policies, c.index);
      const p = policies[i];
      if (p !== undefined) policies[i] = policy(p.metadata?.namespace ?? 'x', p.metadata?.name ?? '', c.spec);
      break;
    }
    case 'policyMutateInPlace': {
      // Nothing may depend on object identity: an edited object that keeps its identity must still recompile.
      const p = policies[at(policies, c.index)];
      if (p !== undefined) p.spec = c.spec;
      break;
    }
    case 'policyRemove':
      if (policies.length > 0) policies.splice(at(policies, c.index), 1);
      break;
  }
  return { pods, namespaces, policies };
}

/** A random starting snapshot: up to 8 pods and 5 policies in namespaces x, y, z. */
export const initialArb = fc
  .record({
    pods: fc.array(fc.record({ ns: fc.constantFrom(...NAMESPACES), labels: labelsArb, local: fc.boolean() }), { maxLength: 8 }),
    policies: fc.array(fc.record({ ns: fc.constantFrom(...NAMESPACES), spec: specArb }), { maxLength: 5 }),
  })
  .map(
    (initial): Snapshot => ({
      pods: initial.pods.map((p, i) => makePod(i, p.ns, p.labels, p.local, 0)),
      namespaces: NAMESPACES.map((n) => namespace(n, { team: n === 'z' ? 'b' : 'a' })),
      policies: initial.policies.map((p, i) => policy(p.ns, `init${i}`, p.spec)),
    }),
  );
