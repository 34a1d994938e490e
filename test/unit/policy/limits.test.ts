// A hostile NetworkPolicy (huge peer x port products, thousands of ipBlock excepts) compiles to rules that grow with
// its peers plus its ports, and one past the limits is refused cheaply and enforced as "isolate, allow nothing",
// instead of costing every node seconds of CPU and hundreds of MB to compile.
import { expect } from 'chai';
import type { NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort } from '../../../src/kube/wire.js';
import { MULTIPORT_SLOTS, POLICY_LIMITS } from '../../../src/policy/compile.js';
import { compilePolicies } from './scratch-compile.js';
import { disagreements, e2eWorld, probeOf, truthTable } from './world.js';

/** One ingress rule of `peers` pod selectors (the second selects pod b) x `ports` ports (the second is 80). */
function peersAndPorts(peers: number, ports: number): NetworkPolicy {
  const from: NetworkPolicyPeer[] = Array.from({ length: peers }, (_, i) => ({ podSelector: { matchLabels: { pod: i === 1 ? 'b' : `p${i}` } } }));
  const portList: NetworkPolicyPort[] = Array.from({ length: ports }, (_, i) => ({ port: i === 1 ? 80 : 1000 + i }));
  return { metadata: { name: 'wide', namespace: 'x' }, spec: { podSelector: {}, ingress: [{ from, ports: portList }] } };
}

function manyExcepts(n: number): NetworkPolicy {
  const except = Array.from({ length: n }, (_, i) => `2001:db8::${i.toString(16)}/128`);
  return { metadata: { name: 'holes', namespace: 'x' }, spec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '::/0', except } }] }] } };
}

function ruleCount(chains: Map<string, readonly unknown[]>): number {
  return [...chains.values()].reduce((n, r) => n + r.length, 0);
}

describe('policy: limits per policy', () => {
  for (const side of [300, 600]) {
    it(`${side} peers x ${side} ports: peers plus ports rules, enforced as written`, () => {
      const world = e2eWorld();
      const policy = peersAndPorts(side, side);
      const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [policy], node: world.nodes[0]! });
      expect(compiled.problems).to.deep.equal([]);
      const multiports = Math.ceil(side / MULTIPORT_SLOTS);
      for (const rs of [compiled.v4, compiled.v6]) {
        const peerChains = [...rs.chains].filter(([name]) => name.startsWith('PRPOL-RP-'));
        expect(peerChains.map(([, rules]) => rules.length), 'one peer chain, a rule per peer').to.deep.equal([side]);
        const ruleChain = [...rs.chains].filter(([name]) => name.startsWith('PRPOL-R-'));
        expect(ruleChain.map(([, rules]) => rules.length), 'a multiport rule per 15 ports').to.deep.equal([multiports]);
        expect(ruleCount(rs.chains), 'rules in all chains').to.be.lessThan(side + multiports + 200);
      }
      const probes = truthTable(world, [policy], { protocols: ['TCP', 'UDP'], ports: [80, 81] });
      expect(probeOf(probes, 'x/b', 'x/a', 80).compiled, 'a listed peer on a listed port').to.equal(true);
      expect(probeOf(probes, 'x/b', 'x/a', 80, 'TCP', 'ipv6').compiled, 'the same over IPv6').to.equal(true);
      expect(probeOf(probes, 'x/b', 'x/a', 81).compiled, 'a port not listed').to.equal(false);
      expect(probeOf(probes, 'x/b', 'x/a', 80, 'UDP').compiled, 'another protocol').to.equal(false);
      expect(probeOf(probes, 'x/c', 'x/a', 80).compiled, 'a pod no peer selects').to.equal(false);
      expect(disagreements(probes), 'rules and oracle agree on every probe').to.deep.equal([]);
    });
  }

  for (const [what, policy] of [
    ['1,500 peers x 1,500 ports', peersAndPorts(1500, 1500)],
    ['25,000 /128 excepts in ::/0', manyExcepts(25_000)],
  ] as const) {
    it(`${what}: refused at once, the selected pods isolated with nothing allowed`, () => {
      const world = e2eWorld();
      const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [policy], node: world.nodes[0]! });
      expect(compiled.problems.map((p) => p.message).join('; ')).to.match(/more than the \d+ a policy may have/);
      expect(ruleCount(compiled.v4.chains) + ruleCount(compiled.v6.chains), 'rules in all chains').to.be.lessThan(200);
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
    const probes = truthTable(world, [policy], { protocols: ['TCP'], ports: [80], families: ['ipv6'] });
    expect(probeOf(probes, 'y/a', 'x/a', 80, 'TCP', 'ipv6').compiled, 'a pod address outside the excepts').to.equal(true);
  });

  it('policies up to the limits compile as written', () => {
    const side = POLICY_LIMITS.rulesPerDirection / 2;
    const world = e2eWorld();
    const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [peersAndPorts(side, side), manyExcepts(100)], node: world.nodes[0]! });
    expect(compiled.problems).to.deep.equal([]);
  });
});
