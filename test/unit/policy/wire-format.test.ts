// NetworkPolicy as it is on the wire: what kubectl sends and the API server lists and watches. A policy written as
// the Kubernetes documentation writes it must be enforced as written, and every fixture the tests feed the agent
// or the lab must have the wire's shape.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { NetworkPolicy } from '../../../src/kube/wire.js';
import { compilePolicies } from './scratch-compile.js';
import { parseTopology } from '../../../src/lab/topology.js';
import { pruneToSchema } from '../../../src/lab/apiserver/wire-schema.js';
import { IP_FAMILIES, ipVersion } from '../../../src/routes/ip-prefix.js';
import { loadTruthCases } from '../../lab/policy/truth-cases.js';
import { repoRoot } from '../../lab/lab/leftovers.js';
import { FixtureShapeError, underscoreKeys } from '../../wire.js';
import { disagreements, e2eWorld, policy, probeOf, truthTable } from './world.js';

/** The first NetworkPolicy example of the Kubernetes docs' shape, as a user writes it. */
const ALLOW_FROM_B = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
`;

/** The manifests that reach the lab API server in tests: truth cases (kubectl) and the topologies' policies. */
function labManifests(): { where: string; object: Record<string, unknown> }[] {
  const out: { where: string; object: Record<string, unknown> }[] = [];
  for (const c of loadTruthCases()) {
    for (const step of c.steps) {
      for (const cmd of step.run) {
        if (!('kubectl' in cmd) || cmd.stdin === undefined) continue;
        // Placeholders stand for addresses; any address gives the document its shape.
        const text = cmd.stdin.replace(/\{\{ip [^}]+ ([46])\}\}/g, (_m, f: string) => (f === '4' ? '10.0.0.1' : 'fd00::1'));
        // YAML 1.1, as kubectl reads it: an unquoted y or on is a boolean there, and the API refuses it.
        for (const doc of YAML.parseAllDocuments(text, { version: '1.1' })) out.push({ where: `${c.file} / ${step.name}`, object: doc.toJS() as Record<string, unknown> });
      }
    }
  }
  const topologies = path.join(repoRoot(), 'topologies');
  for (const file of readdirSync(topologies).filter((f) => f.endsWith('.yaml'))) {
    const topology = parseTopology(readFileSync(path.join(topologies, file), 'utf8'));
    for (const np of topology.kubernetes.networkPolicies) out.push({ where: file, object: { kind: 'NetworkPolicy', ...np } });
  }
  return out;
}

describe('policy: the wire format', () => {
  it('a policy written as the docs write it (ingress from) admits only its peers', () => {
    const wire = YAML.parse(ALLOW_FROM_B) as NetworkPolicy;
    const probes = truthTable(e2eWorld(), [wire], { protocols: ['TCP'] });
    for (const family of IP_FAMILIES) {
      expect(probeOf(probes, 'x/b', 'x/a', 80, 'TCP', family).compiled, `x/b -> x/a v${ipVersion(family)}`).to.equal(true);
      for (const from of ['x/c', 'y/a', 'y/b', 'z/c']) {
        expect(probeOf(probes, from, 'x/a', 80, 'TCP', family).compiled, `${from} -> x/a v${ipVersion(family)}`).to.equal(false);
      }
    }
    expect(disagreements(probes)).to.deep.equal([]);
  });

  it("the compiled rule chain of an ingress peer matches the peer's set (never an unconditional allow)", () => {
    const world = e2eWorld();
    const node = world.nodes.find((n) => n.name === 'n1')!;
    const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [YAML.parse(ALLOW_FROM_B) as NetworkPolicy], node });
    const ruleChains = [...compiled.v4.chains].filter(([name]) => name.startsWith('PRPOL-R-'));
    expect(ruleChains).to.have.length.greaterThan(0);
    for (const [name, rules] of ruleChains) {
      for (const rule of rules.filter((r) => r.includes('MARK'))) expect(rule.join(' '), name).to.include('--match-set');
    }
  });

  it('a field the compiler does not know isolates the selected pods and allows nothing (fail closed)', () => {
    const newer = YAML.parse(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: newer, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: b}}
      serviceAccountSelector: {matchLabels: {sa: b}}
`) as NetworkPolicy;
    const probes = truthTable(e2eWorld(), [newer], { protocols: ['TCP'] });
    for (const from of ['x/b', 'x/c', 'y/a']) expect(probeOf(probes, from, 'x/a', 80).compiled, `${from} -> x/a`).to.equal(false);
    expect(probeOf(probes, 'x/a', 'y/a', 80).compiled, 'egress of x/a is not isolated').to.equal(true);
    const world = e2eWorld();
    const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [newer], node: world.nodes[0]! });
    expect(compiled.problems.map((p) => p.field)).to.deep.equal(['spec.ingress[0].from[0].serviceAccountSelector']);
  });

  it('a rule holding a client-node model name (_from) is not taken for a rule without peers', () => {
    const modelShaped = { metadata: { name: 'm', namespace: 'x' }, spec: { podSelector: {}, ingress: [{ _from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] } };
    const world = e2eWorld();
    const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [modelShaped as unknown as NetworkPolicy], node: world.nodes[0]! });
    expect(compiled.problems.map((p) => p.field)).to.deep.equal(['spec.ingress[0]._from']);
    const probes = truthTable(world, [modelShaped as unknown as NetworkPolicy], { protocols: ['TCP'] });
    expect(probeOf(probes, 'y/a', 'x/a', 80).compiled).to.equal(false);
  });

  it('every manifest the lab tests send has the wire shape: no _-prefixed key, no field the API does not know', () => {
    const manifests = labManifests();
    expect(manifests.length).to.be.greaterThan(20);
    for (const { where, object } of manifests) {
      expect(underscoreKeys(object), where).to.deep.equal([]);
      const kind = String(object.kind);
      const copy = structuredClone(object);
      expect(pruneToSchema(kind, 'v1', copy).unknown, `${where}: ${kind}`).to.deep.equal([]);
    }
  });

  it('every fixture policy serializes to JSON with no _-prefixed key (the fixture helper refuses one)', () => {
    const json = JSON.parse(JSON.stringify(policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }))) as unknown;
    expect(underscoreKeys(json)).to.deep.equal([]);
    const modelRule = [{ _from: [{ podSelector: {} }] }] as unknown as NonNullable<NetworkPolicy['spec']>['ingress'];
    expect(() => policy('x', 'p', { podSelector: {}, ingress: modelRule })).to.throw(FixtureShapeError, /spec\.ingress\[0\]\._from/);
  });
});
