// The cases of the upstream Kubernetes netpol e2e suite and cyclonus, as truth tables: for each case the whole
// matrix (pods of x, y, z on two nodes, the nodes, an external address; ports 80/81; TCP, UDP, SCTP; IPv4 and
// IPv6) is evaluated by the oracle and by the compiled rules (simulated), which must agree everywhere, and
// hand-written expectations from the documentation pin the oracle itself.
import { expect } from 'chai';
import type { NetworkPolicy } from '../../../src/kube/wire.js';
import { disagreements, e2eWorld, pod, policy, probeOf, truthTable, type World } from './world.js';
import type { Protocol } from '../../../src/policy/types.js';
import { ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';

type Expectation = [from: string, to: string, port: number, protocol: Protocol, allowed: boolean, family?: IpFamily];

interface Case {
  name: string;
  policies: NetworkPolicy[];
  expect: Expectation[];
  world?: (w: World) => World;
}

const cases: Case[] = [
  {
    name: 'no policies: everything is allowed',
    policies: [],
    expect: [
      ['x/a', 'y/c', 80, 'TCP', true],
      ['external', 'z/b', 81, 'UDP', true, 'ipv6'],
    ],
  },
  {
    name: 'default deny ingress',
    policies: [policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] })],
    expect: [
      ['x/b', 'x/a', 80, 'TCP', false],
      ['y/a', 'x/c', 80, 'UDP', false],
      ['x/a', 'y/a', 80, 'TCP', true],
      ['node/n1', 'x/a', 80, 'TCP', true],
      ['node/n2', 'x/a', 80, 'TCP', false],
      ['node/n2', 'x/c', 81, 'TCP', true, 'ipv6'],
      ['external', 'x/a', 80, 'TCP', false],
    ],
  },
  {
    name: 'default deny egress',
    policies: [policy('x', 'deny-out', { podSelector: {}, policyTypes: ['Egress'] })],
    expect: [
      ['x/a', 'x/b', 80, 'TCP', false],
      ['x/a', 'node/n1', 80, 'TCP', false],
      ['x/c', 'node/n1', 80, 'UDP', false, 'ipv6'],
      ['y/a', 'x/a', 80, 'TCP', true],
      ['node/n1', 'x/a', 80, 'TCP', true],
    ],
  },
  {
    name: 'default deny both directions',
    policies: [policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    expect: [
      ['x/a', 'x/b', 80, 'TCP', false],
      ['y/a', 'x/b', 80, 'TCP', false],
      ['x/a', 'y/b', 80, 'TCP', false],
      ['y/a', 'y/b', 80, 'TCP', true],
    ],
  },
  {
    name: 'allow ingress from the same namespace only',
    policies: [policy('x', 'same-ns', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })],
    expect: [
      ['x/b', 'x/a', 80, 'TCP', true],
      ['x/c', 'x/a', 81, 'UDP', true, 'ipv6'],
      ['y/a', 'x/a', 80, 'TCP', false],
    ],
  },
  {
    name: 'ingress from a namespaceSelector',
    policies: [
      policy('x', 'from-y', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
      }),
    ],
    expect: [
      ['y/c', 'x/a', 80, 'TCP', true],
      ['x/b', 'x/a', 80, 'TCP', false],
      ['z/b', 'x/a', 80, 'TCP', false],
      ['z/b', 'x/b', 80, 'TCP', true],
    ],
  },
  {
    name: 'namespaceSelector {} means every namespace, by the metadata.name label too',
    policies: [
      policy('x', 'all-ns', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: 'b' } } }] }] }),
      policy('y', 'by-name', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'z' } } }] }],
      }),
    ],
    expect: [
      ['z/b', 'x/a', 80, 'TCP', true],
      ['z/a', 'x/a', 80, 'TCP', false],
      ['z/a', 'y/a', 80, 'TCP', true],
      ['x/a', 'y/a', 80, 'TCP', false],
    ],
  },
  {
    name: 'both selectors in one peer (AND)',
    policies: [
      policy('x', 'and', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    ],
    expect: [
      ['y/b', 'x/a', 80, 'TCP', true],
      ['y/a', 'x/a', 80, 'TCP', false],
      ['x/b', 'x/a', 80, 'TCP', false],
    ],
  },
  {
    name: 'selectors in separate peers (OR)',
    policies: [
      policy('x', 'or', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }, { podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    ],
    expect: [
      ['y/b', 'x/a', 80, 'TCP', true],
      ['y/a', 'x/a', 80, 'TCP', true],
      ['x/b', 'x/a', 80, 'TCP', true],
      ['x/c', 'x/a', 80, 'TCP', false],
      ['z/b', 'x/a', 80, 'TCP', false],
    ],
  },
  {
    name: 'matchExpressions In, NotIn, Exists, DoesNotExist',
    policies: [
      policy('x', 'exprs', {
        podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a', 'b'] }] },
        ingress: [
          { from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x', 'y'] }] } }] },
          { from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }, { key: 'team', operator: 'DoesNotExist' }] } }] },
        ],
      }),
    ],
    expect: [
      ['z/c', 'x/a', 80, 'TCP', true],
      ['y/c', 'x/a', 80, 'TCP', false],
      ['x/c', 'x/b', 80, 'TCP', true],
      ['y/c', 'x/c', 80, 'TCP', true],
    ],
  },
  {
    name: 'NotIn on a missing label matches',
    policies: [
      policy('x', 'notin', {
        podSelector: { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] },
        policyTypes: ['Ingress'],
      }),
    ],
    expect: [
      ['y/a', 'x/a', 80, 'TCP', false],
      ['y/a', 'x/c', 80, 'TCP', false],
    ],
  },
  {
    name: 'named ports resolve per destination pod and protocol',
    policies: [
      policy('x', 'named', {
        podSelector: {},
        ingress: [{ ports: [{ port: 'serve-80-tcp' }, { port: 'serve-81-udp', protocol: 'UDP' }, { port: 'serve-81-sctp' }] }],
      }),
    ],
    expect: [
      ['y/a', 'x/a', 80, 'TCP', true],
      ['y/a', 'x/a', 80, 'UDP', false],
      ['y/a', 'x/c', 81, 'UDP', true, 'ipv6'],
      ['y/a', 'x/a', 81, 'TCP', false],
      // serve-81-sctp is an SCTP port; the entry asks for TCP (default): it matches nothing.
      ['y/a', 'x/a', 81, 'SCTP', false],
    ],
  },
  {
    name: 'named ports in egress resolve on the destination pod',
    policies: [
      policy('x', 'egress-named', {
        podSelector: { matchLabels: { pod: 'a' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: 'serve-81-tcp' }] }],
      }),
    ],
    expect: [
      ['x/a', 'y/c', 81, 'TCP', true],
      ['x/a', 'y/c', 80, 'TCP', false],
      ['x/a', 'node/n2', 81, 'TCP', false],
    ],
  },
  {
    name: 'a named port only some pods define',
    world: (w) => ({
      ...w,
      pods: w.pods.map((p) =>
        p.metadata?.namespace === 'y' && p.metadata.name === 'b'
          ? pod({ ns: 'y', name: 'b', node: 'n1', labels: { pod: 'b' }, ips: (p.status?.podIPs ?? []).flatMap((i) => (i.ip === undefined ? [] : [i.ip])), ports: [{ port: 81, name: 'web' }] })
          : p,
      ),
    }),
    policies: [policy('y', 'web', { podSelector: {}, ingress: [{ ports: [{ port: 'web' }] }] })],
    expect: [
      ['x/a', 'y/b', 81, 'TCP', true],
      ['x/a', 'y/b', 80, 'TCP', false],
      ['x/a', 'y/a', 81, 'TCP', false],
    ],
  },
  {
    name: 'endPort is inclusive',
    policies: [
      policy('x', 'range', { podSelector: {}, ingress: [{ ports: [{ port: 80, endPort: 81 }] }] }),
      policy('y', 'single', { podSelector: {}, ingress: [{ ports: [{ port: 81, endPort: 81, protocol: 'UDP' }] }] }),
    ],
    expect: [
      ['z/a', 'x/a', 80, 'TCP', true],
      ['z/a', 'x/a', 81, 'TCP', true],
      ['z/a', 'x/a', 81, 'UDP', false],
      ['z/a', 'y/a', 81, 'UDP', true],
      ['z/a', 'y/a', 80, 'UDP', false],
    ],
  },
  {
    name: 'protocol-only entries, and an SCTP-only rule still isolates TCP',
    policies: [
      policy('x', 'udp-only', { podSelector: {}, ingress: [{ ports: [{ protocol: 'UDP' }] }] }),
      policy('y', 'sctp-only', { podSelector: {}, ingress: [{ ports: [{ protocol: 'SCTP', port: 80 }] }] }),
    ],
    expect: [
      ['z/a', 'x/a', 81, 'UDP', true],
      ['z/a', 'x/a', 81, 'TCP', false],
      ['z/a', 'y/a', 80, 'SCTP', true],
      ['z/a', 'y/a', 80, 'TCP', false],
    ],
  },
  {
    name: 'an empty port entry is every TCP port; {TCP} plus {TCP,80} is still every TCP port',
    policies: [
      policy('x', 'empty-port', { podSelector: {}, ingress: [{ ports: [{}] }] }),
      policy('y', 'tcp-and-80', { podSelector: {}, ingress: [{ ports: [{ protocol: 'TCP' }, { protocol: 'TCP', port: 80 }] }] }),
    ],
    expect: [
      ['z/a', 'x/a', 81, 'TCP', true],
      ['z/a', 'x/a', 81, 'UDP', false],
      ['z/a', 'y/b', 81, 'TCP', true],
      ['z/a', 'y/b', 80, 'SCTP', false],
    ],
  },
  {
    name: 'ipBlock with except applies to pod IPs; non-canonical CIDRs are accepted',
    policies: [
      policy('x', 'ipblock', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [
          { from: [{ ipBlock: { cidr: '10.1.0.77/16', except: ['10.1.0.15/32', '10.1.1.0/24'] } }] },
          { from: [{ ipBlock: { cidr: 'fd01:1::/64', except: ['fd01:1::e/128'] } }] },
        ],
      }),
    ],
    expect: [
      ['y/a', 'x/a', 80, 'TCP', true],
      ['y/b', 'x/a', 80, 'TCP', false],
      ['y/c', 'x/a', 80, 'TCP', false],
      ['node/n2', 'x/a', 80, 'TCP', false],
      ['y/a', 'x/a', 80, 'TCP', false, 'ipv6'],
      ['y/b', 'x/a', 80, 'TCP', true, 'ipv6'],
      ['y/c', 'x/a', 80, 'TCP', false, 'ipv6'],
    ],
  },
  {
    name: 'egress to ipBlocks, the whole address space minus a range',
    policies: [
      policy('x', 'egress-ipblock', {
        podSelector: {},
        policyTypes: ['Egress'],
        egress: [
          { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.1.1.0/24'] } }] },
          { to: [{ ipBlock: { cidr: '::/0' } }], ports: [{ port: 81 }] },
        ],
      }),
    ],
    expect: [
      ['x/a', 'y/b', 80, 'TCP', true],
      ['x/a', 'y/c', 80, 'TCP', false],
      ['x/a', 'node/n1', 80, 'UDP', true],
      ['x/a', 'y/c', 81, 'TCP', true, 'ipv6'],
      ['x/a', 'y/c', 80, 'TCP', false, 'ipv6'],
    ],
  },
  {
    name: 'multiple policies are a union',
    policies: [
      policy('x', 'p80', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ port: 80 }] }] }),
      policy('x', 'p81-from-y', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 81 }] }],
      }),
    ],
    expect: [
      ['z/a', 'x/a', 80, 'TCP', true],
      ['z/a', 'x/a', 81, 'TCP', false],
      ['y/a', 'x/a', 81, 'TCP', true],
      ['y/a', 'x/b', 80, 'TCP', false],
    ],
  },
  {
    name: 'policyTypes defaults: egress only when there are egress rules',
    policies: [
      policy('x', 'implicit', { podSelector: { matchLabels: { pod: 'a' } }, egress: [{ ports: [{ port: 80 }] }] }),
      policy('y', 'no-egress', { podSelector: {}, ingress: [{}] }),
      policy('z', 'egress-only', { podSelector: {}, policyTypes: ['Egress'], ingress: [] , egress: [{ to: [{ podSelector: {} }] }] }),
    ],
    expect: [
      ['y/a', 'x/a', 81, 'TCP', false],
      ['x/a', 'y/a', 80, 'TCP', true],
      ['x/a', 'y/a', 81, 'TCP', false],
      ['x/a', 'y/b', 81, 'UDP', false],
      ['z/a', 'z/c', 81, 'UDP', true],
      ['z/a', 'y/c', 81, 'UDP', false],
      ['x/a', 'z/a', 81, 'TCP', false],
      ['x/b', 'z/a', 81, 'TCP', true],
    ],
  },
  {
    name: 'a selector matching nothing still isolates; an empty rule allows all',
    policies: [
      policy('x', 'nothing', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'none' } } }] }] }),
      policy('y', 'allow-all', { podSelector: {}, ingress: [{}] }),
      policy('z', 'matches-no-pod', { podSelector: { matchLabels: { pod: 'nobody' } }, policyTypes: ['Ingress', 'Egress'] }),
    ],
    expect: [
      ['y/a', 'x/a', 80, 'TCP', false],
      ['x/a', 'y/c', 80, 'SCTP', true],
      ['external', 'y/a', 80, 'TCP', true],
      ['x/a', 'z/a', 80, 'TCP', true],
    ],
  },
  {
    name: 'host-network pods are never selected',
    world: (w) => ({
      ...w,
      pods: [...w.pods, pod({ ns: 'x', name: 'h', node: 'n1', labels: { pod: 'h' }, ips: ['192.168.0.1', 'fd00::1'], hostNetwork: true })],
    }),
    policies: [policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    expect: [
      ['y/a', 'x/h', 80, 'TCP', true],
      ['x/h', 'y/c', 80, 'TCP', true],
      ['x/h', 'x/a', 80, 'TCP', true],
      ['x/a', 'x/h', 80, 'TCP', false],
    ],
  },
];

describe('policy: upstream e2e and cyclonus cases, oracle vs compiled rules', () => {
  for (const c of cases) {
    it(c.name, () => {
      const world = c.world ? c.world(e2eWorld()) : e2eWorld();
      const probes = truthTable(world, c.policies);
      for (const [from, to, port, protocol, want, family] of c.expect) {
        const p = probeOf(probes, from, to, port, protocol, family ?? 'ipv4');
        expect(p.oracle, `oracle ${from} -> ${to} ${protocol}/${port} v${ipVersion(family ?? 'ipv4')}`).to.equal(want);
      }
      expect(disagreements(probes)).to.deep.equal([]);
    });
  }
});
