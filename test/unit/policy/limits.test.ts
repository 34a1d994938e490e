// A hostile NetworkPolicy (huge peer x port products, thousands of ipBlock excepts) is refused cheaply and enforced
// as "isolate, allow nothing", instead of costing every node seconds of CPU and hundreds of MB to compile.
import { expect } from 'chai';
import type { NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort } from '../../../src/kube/wire.js';
import { compilePolicies, POLICY_LIMITS } from '../../../src/policy/compile.js';
import { e2eWorld, probeOf, truthTable } from './world.js';

function peersAndPorts(peers: number, ports: number): NetworkPolicy {
  const from: NetworkPolicyPeer[] = Array.from({ length: peers }, (_, i) => ({ podSelector: { matchLabels: { pod: `p${i}` } } }));
  const portList: NetworkPolicyPort[] = Array.from({ length: ports }, (_, i) => ({ port: 1000 + i }));
  return { metadata: { name: 'wide', namespace: 'x' }, spec: { podSelector: {}, ingress: [{ from, ports: portList }] } };
}

function manyExcepts(n: number): NetworkPolicy {
  const except = Array.from({ length: n }, (_, i) => `2001:db8::${i.toString(16)}/128`);
  return { metadata: { name: 'holes', namespace: 'x' }, spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '::/0', except } }] }] } };
}

describe('policy: limits per policy', () => {
  for (const [what, policy] of [
    ['300 peers x 300 ports', peersAndPorts(300, 300)],
    ['600 peers x 600 ports', peersAndPorts(600, 600)],
    ['25,000 /128 excepts in ::/0', manyExcepts(25_000)],
  ] as const) {
    it(`${what}: refused at once, the selected pods isolated with nothing allowed`, () => {
      const world = e2eWorld();
      const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [policy], node: world.nodes[0]! });
      expect(compiled.problems.map((p) => p.message).join('; ')).to.match(/more than the \d+ a policy may have/);
      const rules = [...compiled.v4.chains.values(), ...compiled.v6.chains.values()].reduce((n, r) => n + r.length, 0);
      expect(rules, 'rules in all chains').to.be.lessThan(200);
      expect([...compiled.v6.sets.values()].reduce((n, s) => n + s.members.length, 0), 'set entries').to.be.lessThan(100);
      const probes = truthTable(world, [policy], { protocols: ['TCP'], ports: [80] });
      expect(probeOf(probes, 'y/a', 'x/a', 80).compiled).to.equal(false);
      expect(probeOf(probes, 'x/a', 'y/a', 80).compiled, 'egress not isolated').to.equal(true);
    });
  }

  it('ipBlock excepts are nomatch entries: 2,000 /128 excepts in ::/0 are 2,002 set entries, enforced as written', () => {
    const world = e2eWorld();
    const policy = manyExcepts(2000);
    const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [policy], node: world.nodes[0]! });
    expect(compiled.problems).to.deep.equal([]);
    const fixed = [...compiled.v6.sets.values()].filter((s) => s.name.includes('-B-'));
    expect(fixed.map((s) => s.members.length)).to.deep.equal([2002]);
    expect(fixed[0]!.members).to.include.members(['::/1', '8000::/1', '2001:db8::/128 nomatch', '2001:db8::7cf/128 nomatch']);
    const probes = truthTable(world, [policy], { protocols: ['TCP'], ports: [80], families: [6] });
    expect(probeOf(probes, 'y/a', 'x/a', 80, 'TCP', 6).compiled, 'a pod address outside the excepts').to.equal(true);
  });

  it('policies up to the limits compile as written', () => {
    const side = Math.floor(Math.sqrt(POLICY_LIMITS.rulesPerDirection));
    const world = e2eWorld();
    const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [peersAndPorts(side, side), manyExcepts(100)], node: world.nodes[0]! });
    expect(compiled.problems).to.deep.equal([]);
  });
});
