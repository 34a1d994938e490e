// Compiler specifics the truth tables do not show: bad input, fail-closed handling of invalid policies,
// set sharing, and that rule count grows with policies rather than with pods x peers.
import { expect } from 'chai';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { podIp, PolicyCompileError, validatePolicy } from '../../../src/policy/compile.js';
import { compilePolicies } from './scratch-compile.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';
import { compileWorld, disagreements, e2eWorld, namespace, pod, policy, truthTable } from './world.js';
import { clusterAllows, simulate } from './simulator.js';
import type { NetworkPolicy, Pod } from '../../../src/kube/wire.js';

describe('policy compiler', () => {
  it('names the bad field of an invalid policy and enforces it as isolate-and-allow-nothing', () => {
    const bad = policy('x', 'bad', {
      podSelector: {},
      ingress: [{ ports: [{ port: 81, endPort: 80 }, { port: 'http', endPort: 90 }, { protocol: 'ICMP' }] }, { from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } }] }],
    });
    const problems = validatePolicy(bad);
    expect(problems.map((p) => p.field)).to.deep.equal([
      'spec.ingress[0].ports[0].endPort',
      'spec.ingress[0].ports[1].endPort',
      'spec.ingress[0].ports[2].protocol',
      'spec.ingress[1].from[0].ipBlock.except[0]',
    ]);
    const world = e2eWorld();
    const compiled = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [bad], node: world.nodes[0]! });
    expect(compiled.problems).to.have.length(4);
    expect(compiled.problems[0]?.policy).to.equal('x/bad');
    // Every x pod is isolated for ingress and nothing is allowed in (except from its own node).
    const probes = truthTable(world, [], { ports: [80], protocols: ['TCP'] });
    const compiledProbes = truthTable(world, [bad], { ports: [80], protocols: ['TCP'] });
    const intoX = compiledProbes.filter((p) => p.to.startsWith('x/') && !p.from.startsWith('node/'));
    expect(intoX.length).to.be.greaterThan(0);
    expect(intoX.every((p) => !p.compiled)).to.equal(true);
    expect(probes.every((p) => p.compiled)).to.equal(true);
  });

  it('an unparseable podSelector isolates the whole namespace', () => {
    const bad = policy('y', 'bad-selector', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Near' }] }, ingress: [{}] });
    const world = e2eWorld();
    const compiled = compileWorld(world, [bad]);
    // The oracle refuses such a policy (the API server would too), so the simulated rules are checked directly.
    for (const [from, to, src, dst] of [
      ['x/a', 'y/a', '10.1.0.11', '10.1.0.14'],
      ['x/c', 'y/b', '10.1.1.13', '10.1.0.15'],
      ['z/b', 'y/c', '10.1.0.18', '10.1.1.16'],
    ] as const) {
      const srcNode = from === 'x/c' ? 'n2' : 'n1';
      const dstNode = to === 'y/c' ? 'n2' : 'n1';
      const ok = clusterAllows(compiled, 'ipv4', { src, dst, protocol: 'UDP', dport: 80 }, { kind: 'pod', node: srcNode }, { kind: 'pod', node: dstNode });
      expect(ok, `${from} -> ${to}`).to.equal(false);
    }
    expect(compiled.get('n1')?.problems[0]?.field).to.equal('spec.podSelector.matchExpressions[0].operator');
  });

  it('refuses a bad node or mark with an error naming the field', () => {
    const world = e2eWorld();
    const input = { pods: world.pods, namespaces: world.namespaces, policies: [] };
    expect(() => compilePolicies({ ...input, node: { name: 'n1', addresses: [], podCIDRs: ['10.0.0.0/33'] } }))
      .to.throw(PolicyCompileError)
      .with.property('field', 'node.podCIDRs[0]');
    expect(() => compilePolicies({ ...input, node: { name: 'n1', addresses: [], podCIDRs: [] } }, { allowMark: 3 }))
      .to.throw(PolicyCompileError)
      .with.property('field', 'allowMark');
  });

  it('shares one set per distinct peer meaning and keeps rules flat in the number of pods', () => {
    const namespaces = ['a', 'b'].map((n) => namespace(n, { team: n }));
    const many = (count: number) =>
      Array.from({ length: count }, (_, i) =>
        pod({ ns: i % 2 === 0 ? 'a' : 'b', name: `p${i}`, node: 'n1', labels: { app: `app${i % 5}` }, ips: [`10.1.${i >> 8}.${i & 255}`] }),
      );
    const policies: NetworkPolicy[] = [0, 1, 2, 3, 4].map((i) =>
      policy('a', `pol${i}`, {
        podSelector: { matchLabels: { app: `app${i}` } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'b' } } }], ports: [{ port: 80 }, { port: 443 }] }],
      }),
    );
    const node = { name: 'n1', addresses: ['192.168.0.1'], podCIDRs: ['10.1.0.0/16'] };
    const small = compilePolicies({ pods: many(50), namespaces, policies, node }).v4;
    const large = compilePolicies({ pods: many(1000), namespaces, policies, node }).v4;
    const policyRules = (rs: typeof small) => [...rs.chains].filter(([n]) => n.startsWith('PRPOL-R-')).reduce((s, [, r]) => s + r.length, 0);
    // One rule per policy: its two ports are one multiport match.
    expect(policyRules(small)).to.equal(5);
    expect(policyRules(large)).to.equal(5);
    // The five policies use the same peer: one peer set of namespace b's 500 pods. Each policy has a selection set
    // of its own podSelector's pods (app<i> in namespace a: 100 each).
    const peerSets = [...large.sets.values()].filter((s) => s.name.startsWith('PRPOL4-P-'));
    expect(peerSets.map((s) => s.members.length).sort((a, b) => a - b)).to.deep.equal([100, 100, 100, 100, 100, 500]);
    // One namespace chain per direction with policies, flat in the number of pods: a mark, a jump per policy, the drop.
    const namespaceChains = (rs: typeof small) => [...rs.chains].filter(([n]) => n.startsWith('PRPOL-NI-'));
    expect(namespaceChains(large).map(([, r]) => r.length)).to.deep.equal([8]);
    expect(namespaceChains(small).map(([, r]) => r.length)).to.deep.equal([8]);
  });

  it('reads pod addresses in the form ipaddr.js prints them, however the status spells them', () => {
    const withIp = (ip: string): Pod => ({ metadata: { name: 'p' }, status: { podIPs: [{ ip }] } });
    // Spellings of one address, each against what ipaddr.js makes of it (the fast path must agree).
    const v6 = fc.tuple(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), fc.boolean(), fc.boolean(), fc.boolean());
    fc.assert(
      fc.property(v6, ([groups, upper, padded, compressed]) => {
        let text = groups.map((g) => (padded ? g.toString(16).padStart(4, '0') : g.toString(16))).join(':');
        if (compressed) text = text.replace(/(^|:)0+(:0+)+(:|$)/, '::');
        if (upper) text = text.toUpperCase();
        expect(podIp(withIp(text), 'ipv6')).to.equal(ipaddr.parse(text).toString());
      }),
      { numRuns: 500 },
    );
    const v4 = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 });
    fc.assert(
      fc.property(v4, (bytes) => {
        expect(podIp(withIp(bytes.join('.')), 'ipv4')).to.equal(bytes.join('.'));
      }),
    );
    for (const text of ['::ffff:1.2.3.4', '1:0:1:0:1:0:1:0', '::', '::1', 'fd10:0:0:0:0:0:0:1']) {
      let expected: string | undefined;
      try {
        expected = ipaddr.parse(text).toString();
      } catch {
        expected = undefined;
      }
      expect(podIp(withIp(text), familyOf(text)), text).to.equal(expected);
    }
    // The agent's one address validator (the route code's): no zone index; "::1.2.3.4" is the IPv4-compatible
    // ::102:304 (ipaddr.js reads it as the IPv4-mapped ::ffff:102:304, another address).
    expect(podIp(withIp('fd10::1%eth0'), 'ipv6')).to.equal(undefined);
    expect(podIp(withIp('::1.2.3.4'), 'ipv6')).to.equal('::102:304');
    // A leading zero is octal to some parsers (ipaddr.js: 8.1.1.1) and decimal to others: no address.
    expect(podIp(withIp('010.1.1.1'), 'ipv4')).to.equal(undefined);
    expect(podIp(withIp('not-an-ip'), 'ipv4')).to.equal(undefined);
  });


  it('terminated pods are neither protected nor peers', () => {
    const world = e2eWorld();
    const done = { ...world.pods[0]!, status: { ...world.pods[0]!.status, phase: 'Succeeded' } };
    const pods = [done, ...world.pods.slice(1)];
    const compiled = compilePolicies({
      pods,
      namespaces: world.namespaces,
      policies: [policy('x', 'p', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })],
      node: world.nodes[0]!,
    });
    const ip = done.status?.podIP ?? '';
    for (const set of compiled.v4.sets.values()) {
      if (set.name !== 'PRPOL4-LOCAL') expect(set.members).to.not.include(ip);
    }
    expect([...(compiled.v4.chains.get('PRPOL-INGRESS') ?? [])].map((r) => r.join(' '))).to.not.include(`-d ${ip}/32`);
    expect(disagreements(truthTable({ ...world, pods: world.pods.slice(1) }, []))).to.deep.equal([]);
  });

  it('podCIDR sources of no known local pod are always dropped; destinations only while a selected local pod has no address', () => {
    const world = e2eWorld();
    const n1 = world.nodes[0]!;
    // x/a (10.1.0.11 once known) is Pending without addresses; x/b (10.1.0.12) is known and selected by nothing.
    const pods = world.pods.map((p) => (p.metadata?.namespace === 'x' && p.metadata.name === 'a' ? { ...p, status: { phase: 'Pending' } } : p));
    const isolateA = policy('x', 'isolate-a', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress', 'Egress'] });
    const guarded = compilePolicies({ pods, namespaces: world.namespaces, policies: [isolateA], node: n1 });
    const pkt = (src: string, dst: string) => ({ src, dst, protocol: 'TCP' as const, dport: 80 });
    expect(simulate(guarded.v4, 'FORWARD', pkt('10.1.2.5', '10.1.0.11')), 'to the unknown address').to.equal('DROP');
    expect(simulate(guarded.v4, 'FORWARD', pkt('10.1.0.11', '10.1.2.5')), 'from the unknown address').to.equal('DROP');
    expect(simulate(guarded.v4, 'INPUT', pkt('10.1.0.11', n1.v4)), 'from the unknown address to the node').to.equal('DROP');
    expect(simulate(guarded.v4, 'FORWARD', pkt('10.1.2.5', '10.1.0.12')), 'to a known unselected pod').to.equal('CONTINUE');
    expect(simulate(guarded.v4, 'FORWARD', pkt('10.1.0.12', '10.1.2.5')), 'from a known unselected pod').to.equal('CONTINUE');
    expect(simulate(guarded.v4, 'FORWARD', { ...pkt('10.1.2.5', '10.1.0.11'), ctstate: 'ESTABLISHED' }), 'replies').to.equal('ACCEPT');
    expect(guarded.v4.sets.get('PRPOL4-KNOWN')?.members).to.not.include('10.1.0.11');
    // Ingress-only isolation guards the way in; the way out is guarded anyway.
    const ingressOnly = compilePolicies({ pods, namespaces: world.namespaces, policies: [policy('x', 'in', { podSelector: { matchLabels: { pod: 'a' } } })], node: n1 });
    expect(simulate(ingressOnly.v4, 'FORWARD', pkt('10.1.2.5', '10.1.0.11'))).to.equal('DROP');
    expect(simulate(ingressOnly.v4, 'FORWARD', pkt('10.1.0.11', '10.1.2.5'))).to.equal('DROP');
    // Without any policy: an address no pod owns still sends nothing, v4 and v6, to pods, elsewhere and to the node.
    const open = compilePolicies({ pods, namespaces: world.namespaces, policies: [], node: n1 });
    expect(simulate(open.v4, 'FORWARD', pkt('10.1.2.5', '10.1.0.11')), 'to an unknown address without policy').to.equal('CONTINUE');
    expect(simulate(open.v4, 'FORWARD', pkt('10.1.0.11', '10.1.2.5'))).to.equal('DROP');
    expect(simulate(open.v4, 'FORWARD', pkt('10.1.0.99', '203.0.113.9'))).to.equal('DROP');
    expect(simulate(open.v4, 'INPUT', pkt('10.1.0.99', n1.v4))).to.equal('DROP');
    expect(simulate(open.v6, 'FORWARD', pkt('fd01:1::99', 'fd01:1::c'))).to.equal('DROP');
    expect(simulate(open.v6, 'FORWARD', pkt('fd01:1::c', 'fd01:2::d')), 'a known pod').to.equal('CONTINUE');
    expect(open.v4.sets.get('PRPOL4-KNOWN')?.members).to.include('10.1.0.12');
    // The node itself talking to its own gateway address (over lo) is the node's business.
    expect(simulate(open.v4, 'INPUT', { ...pkt('10.1.0.1', '10.1.0.1'), inInterface: 'lo' })).to.equal('CONTINUE');
  });

  it('binds each local pod to its veth: from a pod bridge port only the bound addresses pass, before any policy', () => {
    const world = e2eWorld();
    const n1 = world.nodes[0]!;
    // x/a = 10.1.0.11 on veth0000000a; x/b = 10.1.0.12 on veth0000000b; veth0000000f is bound to nothing.
    const bridge = {
      name: 'podroute0',
      bindings: [
        { interface: 'veth0000000a', addresses: ['10.1.0.11', 'fd01:1::b'] },
        { interface: 'veth0000000b', addresses: ['10.1.0.12', 'fd01:1::c'] },
      ],
    };
    // y/a admits only x/a (UDP and TCP).
    const onlyA = policy('y', 'only-x-a', {
      podSelector: { matchLabels: { pod: 'a' } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'x' } }, podSelector: { matchLabels: { pod: 'a' } } }], ports: [{ protocol: 'UDP' }, { protocol: 'TCP' }] }],
    });
    const compiled = compilePolicies({ ...world, node: n1, policies: [onlyA], bridge });
    const yA = '10.1.0.14';
    const from = (port: string, src: string, dst: string, protocol: 'TCP' | 'UDP' = 'UDP') => ({ src, dst, protocol, dport: 80, inInterface: 'podroute0', physIn: port });
    expect(simulate(compiled.v4, 'FORWARD', from('veth0000000a', '10.1.0.11', yA)), 'x/a from its own address').to.equal('CONTINUE');
    for (const protocol of ['TCP', 'UDP'] as const) {
      expect(simulate(compiled.v4, 'FORWARD', from('veth0000000b', '10.1.0.11', yA, protocol)), `x/b spoofing x/a (${protocol})`).to.equal('DROP');
      expect(simulate(compiled.v4, 'FORWARD', { ...from('veth0000000b', '10.1.0.11', yA, protocol), ctstate: 'ESTABLISHED' }), 'even into a flow').to.equal('DROP');
    }
    expect(simulate(compiled.v4, 'FORWARD', from('veth0000000b', '10.1.0.12', '10.1.1.13')), 'x/b to a remote pod').to.equal('CONTINUE');
    expect(simulate(compiled.v4, 'FORWARD', from('veth0000000b', '10.1.0.99', '10.1.1.13')), 'x/b from an unassigned address').to.equal('DROP');
    expect(simulate(compiled.v4, 'FORWARD', from('veth0000000b', '192.0.2.7', '203.0.113.9')), 'x/b from outside the pod range').to.equal('DROP');
    expect(simulate(compiled.v4, 'INPUT', from('veth0000000b', '10.1.0.11', n1.v4)), 'x/b spoofing x/a to the node').to.equal('DROP');
    expect(simulate(compiled.v4, 'FORWARD', from('veth0000000f', '10.1.0.13', '10.1.1.13')), 'an unbound port').to.equal('DROP');
    expect(simulate(compiled.v6, 'FORWARD', from('veth0000000b', 'fd01:1::c', 'fd01:2::d')), 'v6 own').to.equal('CONTINUE');
    expect(simulate(compiled.v6, 'FORWARD', from('veth0000000b', 'fd01:1::b', 'fd01:1::e')), 'v6 spoof').to.equal('DROP');
    expect(simulate(compiled.v6, 'FORWARD', from('veth0000000b', 'fe80::1', 'fd01:1::e')), 'v6 link-local TCP/UDP').to.equal('DROP');
    // Traffic that did not come from a pod bridge port is not judged by its port.
    expect(simulate(compiled.v4, 'FORWARD', { ...from('veth0000000b', '10.1.1.13', yA), inInterface: 'eth0', physIn: undefined }), 'routed in from a remote pod').to.equal('DROP');
    expect(simulate(compiled.v4, 'FORWARD', { src: '10.1.1.13', dst: '10.1.0.12', protocol: 'TCP', dport: 80, inInterface: 'eth0' }), 'to an open pod').to.equal('CONTINUE');
    expect(compiled.v4.chains.get('PRPOL-SOURCE')?.slice(0, 2)).to.deep.equal([
      ['-m', 'physdev', '--physdev-in', 'veth0000000a', '-s', '10.1.0.11/32', '-j', 'RETURN'],
      ['-m', 'physdev', '--physdev-in', 'veth0000000b', '-s', '10.1.0.12/32', '-j', 'RETURN'],
    ]);
    // Names and addresses go into restore input as they are: anything else is refused.
    for (const bad of [{ ...bridge, name: 'br 0' }, { ...bridge, bindings: [{ interface: 'veth"x', addresses: [] }] }, { ...bridge, bindings: [{ interface: 'veth1', addresses: ['10.1.0.011'] }] }]) {
      expect(() => compilePolicies({ ...world, node: n1, policies: [], bridge: bad })).to.throw(PolicyCompileError);
    }
  });
});
