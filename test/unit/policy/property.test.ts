// Property: for random namespaces, pods and policies, the compiled rules of every node, simulated packet by
// packet, allow exactly what the oracle allows (every source, destination, port, protocol, IPv4 and IPv6).
import { expect } from 'chai';
import fc from 'fast-check';
import type { LabelSelector, LabelSelectorRequirement, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, Pod } from '../../../src/kube/wire.js';
import { disagreements, namespace, pod, policy, truthTable, type World } from './world.js';
import type { Protocol } from '../../../src/policy/types.js';

const KEYS = ['app', 'tier'];
const VALUES = ['a', 'b', 'c'];
const PORT_NAMES = ['http', 'dns', 'db'];
const PORTS = [80, 81, 82];
const PROTOCOLS: Protocol[] = ['TCP', 'UDP', 'SCTP'];
const NAMESPACES = ['x', 'y', 'z'];

const labelsArb = fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), { maxKeys: 2 });

const requirementArb: fc.Arbitrary<LabelSelectorRequirement> = fc.oneof(
  fc.record({
    key: fc.constantFrom(...KEYS, 'ns'),
    operator: fc.constantFrom('In', 'NotIn'),
    values: fc.uniqueArray(fc.constantFrom(...VALUES, ...NAMESPACES), { minLength: 1, maxLength: 2 }),
  }),
  fc.record({ key: fc.constantFrom(...KEYS, 'ns'), operator: fc.constantFrom('Exists', 'DoesNotExist') }),
);

const selectorArb: fc.Arbitrary<LabelSelector> = fc.oneof(
  fc.constant({}),
  fc.record({ matchLabels: labelsArb }),
  fc.record({ matchExpressions: fc.array(requirementArb, { minLength: 1, maxLength: 2 }) }),
  fc.record({ matchLabels: labelsArb, matchExpressions: fc.array(requirementArb, { maxLength: 1 }) }),
);

const namespaceSelectorArb: fc.Arbitrary<LabelSelector> = fc.oneof(
  fc.constant({}),
  fc.record({ matchLabels: fc.record({ ns: fc.constantFrom(...NAMESPACES) }) }),
  fc.record({ matchLabels: fc.record({ team: fc.constantFrom('red', 'blue') }) }),
  fc.record({ matchExpressions: fc.array(requirementArb, { minLength: 1, maxLength: 2 }) }),
);

/** ipBlocks around the pod ranges (10.1.0.0/24 on n1, 10.1.1.0/24 on n2), valid excepts only. */
const ipBlockArb = fc.constantFrom<{ cidr: string; except?: string[] }>(
  { cidr: '10.1.0.0/16' },
  { cidr: '10.1.0.0/16', except: ['10.1.1.0/24'] },
  { cidr: '10.1.0.9/24', except: ['10.1.0.16/28', '10.1.0.20/30'] },
  { cidr: '0.0.0.0/0', except: ['10.1.0.0/23'] },
  { cidr: '0.0.0.0/0' },
  { cidr: '192.168.0.0/24' },
  { cidr: '10.1.1.0/24', except: ['10.1.1.12/31'] },
  { cidr: 'fd01::/16', except: ['fd01:2::/64'] },
  { cidr: '::/0' },
  { cidr: 'fd01:1::1:0/64', except: ['fd01:1::10/124'] },
  { cidr: '203.0.113.0/24' },
);

const peerArb: fc.Arbitrary<NetworkPolicyPeer> = fc.oneof(
  fc.record({ podSelector: selectorArb }),
  fc.record({ namespaceSelector: namespaceSelectorArb }),
  fc.record({ podSelector: selectorArb, namespaceSelector: namespaceSelectorArb }),
  fc.record({ ipBlock: ipBlockArb }),
);

const portArb: fc.Arbitrary<NetworkPolicyPort> = fc.oneof(
  fc.constant({}),
  fc.record({ protocol: fc.constantFrom(...PROTOCOLS) }),
  fc.record({ port: fc.constantFrom(...PORTS) }, { requiredKeys: ['port'] }).chain((p) =>
    fc.record({ port: fc.constant(p.port), protocol: fc.constantFrom(...PROTOCOLS) }, { requiredKeys: ['port'] }),
  ),
  fc
    .record({ port: fc.constantFrom(...PORTS), span: fc.constantFrom(0, 1, 2) })
    .map(({ port, span }) => ({ port, endPort: port + span })),
  fc.record({ port: fc.constantFrom(...PORT_NAMES), protocol: fc.constantFrom(...PROTOCOLS) }, { requiredKeys: ['port'] }),
);

const ruleParts = {
  peers: fc.option(fc.array(peerArb, { maxLength: 3 }), { nil: undefined }),
  ports: fc.option(fc.array(portArb, { maxLength: 3 }), { nil: undefined }),
};

const specArb: fc.Arbitrary<NetworkPolicySpec> = fc
  .record({
    podSelector: selectorArb,
    policyTypes: fc.option(fc.constantFrom<string[]>(['Ingress'], ['Egress'], ['Ingress', 'Egress']), { nil: undefined }),
    ingress: fc.option(fc.array(fc.record(ruleParts), { maxLength: 2 }), { nil: undefined }),
    egress: fc.option(fc.array(fc.record(ruleParts), { maxLength: 2 }), { nil: undefined }),
  })
  .map((s) => ({
    podSelector: s.podSelector,
    ...(s.policyTypes === undefined ? {} : { policyTypes: s.policyTypes }),
    ...(s.ingress === undefined
      ? {}
      : { ingress: s.ingress.map((r) => ({ ...(r.peers ? { from: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) })) }),
    ...(s.egress === undefined
      ? {}
      : { egress: s.egress.map((r) => ({ ...(r.peers ? { to: r.peers } : {}), ...(r.ports ? { ports: r.ports } : {}) })) }),
  }));

const policiesArb: fc.Arbitrary<NetworkPolicy[]> = fc
  .array(fc.record({ ns: fc.constantFrom(...NAMESPACES), spec: specArb }), { maxLength: 4 })
  .map((list) => list.map((p, i) => policy(p.ns, `p${i}`, p.spec)));

const podPortArb = fc.record({
  name: fc.constantFrom(...PORT_NAMES),
  port: fc.constantFrom(...PORTS),
  protocol: fc.constantFrom(...PROTOCOLS),
});

const worldArb: fc.Arbitrary<World> = fc
  .record({
    nsLabels: fc.array(fc.option(fc.constantFrom('red', 'blue'), { nil: undefined }), { minLength: 3, maxLength: 3 }),
    pods: fc.array(
      fc.record({
        ns: fc.constantFrom(...NAMESPACES),
        node: fc.constantFrom('n1', 'n2'),
        labels: labelsArb,
        dualStack: fc.boolean(),
        hostNetwork: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
        ports: fc.uniqueArray(podPortArb, { maxLength: 3, selector: (p) => p.name }),
      }),
      { minLength: 2, maxLength: 7 },
    ),
  })
  .map(({ nsLabels, pods }) => {
    const counters = { n1: 10, n2: 10 };
    const built: Pod[] = pods.map((p, i) => {
      const nodeIndex = p.node === 'n1' ? 0 : 1;
      const host = ++counters[p.node];
      const ips = p.hostNetwork
        ? [`192.168.0.${nodeIndex + 1}`, `fd00::${nodeIndex + 1}`]
        : [`10.1.${nodeIndex}.${host}`, ...(p.dualStack ? [`fd01:${nodeIndex + 1}::${host.toString(16)}`] : [])];
      return pod({ ns: p.ns, name: `p${i}`, node: p.node, labels: p.labels, ips, ports: p.ports, hostNetwork: p.hostNetwork });
    });
    return {
      nodes: [
        { name: 'n1', v4: '192.168.0.1', v6: 'fd00::1', addresses: ['192.168.0.1', 'fd00::1'], podCIDRs: ['10.1.0.0/24', 'fd01:1::/64'] },
        { name: 'n2', v4: '192.168.0.2', v6: 'fd00::2', addresses: ['192.168.0.2', 'fd00::2'], podCIDRs: ['10.1.1.0/24', 'fd01:2::/64'] },
      ],
      namespaces: NAMESPACES.map((n, i) => namespace(n, { ns: n, ...(nsLabels[i] ? { team: nsLabels[i] } : {}) })),
      pods: built,
      external: { v4: '203.0.113.9', v6: '2001:db8::9' },
    };
  });

describe('policy: compiled rules agree with the oracle (property)', function () {
  this.timeout(300_000);
  it('random namespaces, pods and policies', () => {
    fc.assert(
      fc.property(worldArb, policiesArb, (world, policies) => {
        const probes = truthTable(world, policies, { ports: PORTS, protocols: PROTOCOLS });
        expect(disagreements(probes).slice(0, 10)).to.deep.equal([]);
      }),
      { numRuns: 150 },
    );
  });
});
