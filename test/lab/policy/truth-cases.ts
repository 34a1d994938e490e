// The NetworkPolicy cases of the upstream netpol e2e suite and cyclonus, as steps against the two-racks lab
// (namespaces x, y, z labelled ns=<name>; pods a, b, c labelled pod=<name>; ports 80/81 TCP+UDP named
// serve-<port>-<tcp|udp>). Every step changes objects through the API; the expected matrix comes from the
// oracle, so a case only says what to do, never what to expect (no hand-written truth to drift from the oracle).
//
// Where the pods sit (same-node pairs: x/a y/b z/c on r1n1, x/b y/c on r1n2, x/c z/a on r2n1, y/a z/b on r2n2):
// every case below has allowed and denied pairs both on one node and across nodes and racks.
import type { NetworkPolicy, NetworkPolicySpec } from '../../../src/kube/wire.js';
import type { IpFamily } from '../../../src/policy/types.js';
import type { LatePod } from './truth-lab.js';

/** What a step may need from the running lab: pod addresses (ipBlock cases). */
export interface TruthContext {
  ip(pod: string, family: IpFamily): string;
}

export type TruthAction =
  | { policy: NetworkPolicy | ((ctx: TruthContext) => NetworkPolicy) }
  | { deletePolicy: string }
  | { labelPod: string; labels: Record<string, string | null> }
  | { labelNamespace: string; labels: Record<string, string | null> }
  | { createPod: LatePod };

export interface TruthStep {
  name: string;
  actions: TruthAction[];
}

export interface TruthCase {
  name: string;
  steps: TruthStep[];
}

export function netpol(namespace: string, name: string, spec: NetworkPolicySpec): NetworkPolicy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec };
}

const ns = (name: string): { matchLabels: Record<string, string> } => ({ matchLabels: { ns: name } });
const pod = (name: string): { matchLabels: Record<string, string> } => ({ matchLabels: { pod: name } });

export const TRUTH_CASES: TruthCase[] = [
  {
    name: 'default deny ingress',
    steps: [{ name: 'x denies all ingress', actions: [{ policy: netpol('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }) }] }],
  },
  {
    name: 'default deny egress',
    steps: [{ name: 'y denies all egress', actions: [{ policy: netpol('y', 'deny-out', { podSelector: {}, policyTypes: ['Egress'] }) }] }],
  },
  {
    name: 'deny-all, allow-all unions, policy deletes',
    steps: [
      { name: 'z denies both directions', actions: [{ policy: netpol('z', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }) }] },
      { name: 'plus allow-all ingress', actions: [{ policy: netpol('z', 'allow-in', { podSelector: {}, ingress: [{}] }) }] },
      { name: 'plus allow-all egress', actions: [{ policy: netpol('z', 'allow-out', { podSelector: {}, policyTypes: ['Egress'], egress: [{}] }) }] },
      { name: 'allow-all ingress deleted', actions: [{ deletePolicy: 'z/allow-in' }] },
      { name: 'deny-all deleted', actions: [{ deletePolicy: 'z/deny-all' }] },
    ],
  },
  {
    name: 'podSelector + namespaceSelector: one peer (AND), then separate peers (OR), then egress added (policy updates)',
    steps: [
      {
        name: 'AND: x/a only from y pods labelled pod=b',
        actions: [{ policy: netpol('x', 'peers', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('y'), podSelector: pod('b') }] }] }) }],
      },
      {
        name: 'updated to OR: from namespace y, or pods pod=b of x',
        actions: [{ policy: netpol('x', 'peers', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('y') }, { podSelector: pod('b') }] }] }) }],
      },
      {
        name: 'updated: Egress too, only to pods of z',
        actions: [
          {
            policy: netpol('x', 'peers', {
              podSelector: pod('a'),
              policyTypes: ['Ingress', 'Egress'],
              ingress: [{ from: [{ namespaceSelector: ns('y') }, { podSelector: pod('b') }] }],
              egress: [{ to: [{ namespaceSelector: ns('z'), podSelector: {} }] }],
            }),
          },
        ],
      },
    ],
  },
  {
    name: 'matchExpressions In, NotIn, Exists, DoesNotExist with pod and namespace label updates',
    steps: [
      {
        name: 'y/a and y/c (pod In [a,c]) from namespaces NotIn [x,y] or from own pods with pod label and no team label',
        actions: [
          {
            policy: netpol('y', 'exprs', {
              podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a', 'c'] }] },
              ingress: [
                { from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x', 'y'] }] } }] },
                {
                  from: [
                    { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }, { key: 'team', operator: 'DoesNotExist' }] } },
                  ],
                },
              ],
            }),
          },
        ],
      },
      { name: 'y/b gets team=blue (DoesNotExist fails)', actions: [{ labelPod: 'y/b', labels: { team: 'blue' } }] },
      {
        name: 'namespace x relabelled ns=w (NotIn now matches), z loses its ns label (NotIn on a missing label matches)',
        actions: [
          { labelNamespace: 'x', labels: { ns: 'w' } },
          { labelNamespace: 'z', labels: { ns: null } },
        ],
      },
      { name: 'y/c relabelled pod=d (no longer selected: In fails)', actions: [{ labelPod: 'y/c', labels: { pod: 'd' } }] },
    ],
  },
  {
    name: 'named ports, resolved per protocol (a name of the other protocol matches nothing)',
    steps: [
      {
        name: 'x in: serve-80-tcp, serve-81-udp/UDP, serve-80-udp without protocol (TCP: no such name)',
        actions: [
          {
            policy: netpol('x', 'named-in', {
              podSelector: {},
              ingress: [{ ports: [{ port: 'serve-80-tcp' }, { port: 'serve-81-udp', protocol: 'UDP' }, { port: 'serve-80-udp' }] }],
            }),
          },
        ],
      },
      {
        name: 'z out: only to serve-81-tcp',
        actions: [{ policy: netpol('z', 'named-out', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-81-tcp' }] }] }) }],
      },
    ],
  },
  {
    name: 'endPort ranges (inclusive) in both directions',
    steps: [
      {
        name: 'y/c in: TCP 81-90; out: UDP 1-80',
        actions: [
          {
            policy: netpol('y', 'ranges', {
              podSelector: pod('c'),
              policyTypes: ['Ingress', 'Egress'],
              ingress: [{ ports: [{ protocol: 'TCP', port: 81, endPort: 90 }] }],
              egress: [{ ports: [{ protocol: 'UDP', port: 1, endPort: 80 }] }],
            }),
          },
        ],
      },
      {
        name: 'updated: in TCP 80-80 and UDP 79-81; out unchanged',
        actions: [
          {
            policy: netpol('y', 'ranges', {
              podSelector: pod('c'),
              policyTypes: ['Ingress', 'Egress'],
              ingress: [{ ports: [{ protocol: 'TCP', port: 80, endPort: 80 }, { protocol: 'UDP', port: 79, endPort: 81 }] }],
              egress: [{ ports: [{ protocol: 'UDP', port: 1, endPort: 80 }] }],
            }),
          },
        ],
      },
    ],
  },
  {
    name: 'protocol-only port entries (UDP) isolate TCP',
    steps: [
      { name: 'z in: every UDP port, from anywhere', actions: [{ policy: netpol('z', 'udp-in', { podSelector: {}, ingress: [{ ports: [{ protocol: 'UDP' }] }] }) }] },
      {
        name: 'x out: UDP only, to pods of z',
        actions: [
          { policy: netpol('x', 'udp-out', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ns('z') }], ports: [{ protocol: 'UDP' }] }] }) },
        ],
      },
    ],
  },
  {
    name: 'ipBlock with except on pod IPs, IPv4 and IPv6, non-canonical CIDRs, node addresses',
    steps: [
      {
        name: 'x/a in: 10.244/16 minus r1n2 pods and y/a; fd00:10:244::/56 minus r2n1 pods and z/b; rack 2 node LAN',
        actions: [
          {
            policy: (ctx) =>
              netpol('x', 'blocks-in', {
                podSelector: pod('a'),
                ingress: [
                  {
                    from: [
                      { ipBlock: { cidr: '10.244.0.0/16', except: ['10.244.2.0/24', `${ctx.ip('y/a', 4)}/32`] } },
                      { ipBlock: { cidr: 'fd00:10:244::/56', except: ['fd00:10:244:3::/64', `${ctx.ip('z/b', 6)}/128`] } },
                      { ipBlock: { cidr: '10.10.2.0/24' } },
                    ],
                  },
                ],
              }),
          },
        ],
      },
      {
        name: 'x/b out: v4 to its own node range written non-canonically (y/c IP/24), v6 to r2n2 pods only',
        actions: [
          {
            policy: (ctx) =>
              netpol('x', 'blocks-out', {
                podSelector: pod('b'),
                policyTypes: ['Egress'],
                egress: [{ to: [{ ipBlock: { cidr: `${ctx.ip('y/c', 4)}/24` } }, { ipBlock: { cidr: 'fd00:10:244:4::/64' } }] }],
              }),
          },
        ],
      },
      {
        name: 'x/a in updated: IPv6 only, every pod range but x/a and y/b (/128 excepts)',
        actions: [
          {
            policy: (ctx) =>
              netpol('x', 'blocks-in', {
                podSelector: pod('a'),
                ingress: [
                  { from: [{ ipBlock: { cidr: 'fd00:10:244::/56', except: [`${ctx.ip('x/a', 6)}/128`, `${ctx.ip('y/b', 6)}/128`] } }] },
                ],
              }),
          },
        ],
      },
    ],
  },
  {
    name: 'egress to ipBlocks outside the cluster (the external host), with except, per family',
    steps: [
      {
        name: 'x out: 198.51.100.0/24 minus ext1, 2001:db8:100::/64, and pods of z',
        actions: [
          {
            policy: netpol('x', 'out-external', {
              podSelector: {},
              policyTypes: ['Egress'],
              egress: [
                {
                  to: [
                    { ipBlock: { cidr: '198.51.100.0/24', except: ['198.51.100.10/32'] } },
                    { ipBlock: { cidr: '2001:db8:100::/64' } },
                    { namespaceSelector: ns('z') },
                  ],
                },
              ],
            }),
          },
        ],
      },
      {
        name: 'updated: only UDP/80 to 198.51.0.0/16',
        actions: [
          {
            policy: netpol('x', 'out-external', {
              podSelector: {},
              policyTypes: ['Egress'],
              egress: [{ to: [{ ipBlock: { cidr: '198.51.0.0/16' } }], ports: [{ protocol: 'UDP', port: 80 }] }],
            }),
          },
        ],
      },
    ],
  },
  {
    name: 'multiple policies on one pod: union of their rules',
    steps: [
      { name: 'z/a in: TCP/80 from z pods labelled pod=b', actions: [{ policy: netpol('z', 'p1', { podSelector: pod('a'), ingress: [{ from: [{ podSelector: pod('b') }], ports: [{ port: 80 }] }] }) }] },
      {
        name: 'plus: UDP from namespace x',
        actions: [{ policy: netpol('z', 'p2', { podSelector: pod('a'), ingress: [{ from: [{ namespaceSelector: ns('x') }], ports: [{ protocol: 'UDP' }] }] }) }],
      },
      {
        name: 'plus: all of z egress-isolated, only to namespaces In [y, z]',
        actions: [
          {
            policy: netpol('z', 'p3', {
              podSelector: {},
              policyTypes: ['Egress'],
              egress: [{ to: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y', 'z'] }] } }] }],
            }),
          },
        ],
      },
      { name: 'p1 deleted', actions: [{ deletePolicy: 'z/p1' }] },
    ],
  },
  {
    name: 'egress at the source and ingress at the destination are both needed; a selector matching nothing isolates',
    steps: [
      {
        name: 'x out only to z; z in only from y',
        actions: [
          { policy: netpol('x', 'out-to-z', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ns('z') }] }] }) },
          { policy: netpol('z', 'in-from-y', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ns('y') }] }] }) },
        ],
      },
      {
        name: 'y in only from pods labelled pod=nobody (matches nothing)',
        actions: [{ policy: netpol('y', 'nobody', { podSelector: {}, ingress: [{ from: [{ podSelector: pod('nobody') }] }] }) }],
      },
    ],
  },
  {
    name: 'label updates on pods and namespaces move pods in and out of policies',
    steps: [
      {
        name: 'x pods role=server only from namespaces team=blue; x/c gets role=server',
        actions: [
          { policy: netpol('x', 'servers', { podSelector: { matchLabels: { role: 'server' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }] }) },
          { labelPod: 'x/c', labels: { role: 'server' } },
        ],
      },
      { name: 'namespace y gets team=blue', actions: [{ labelNamespace: 'y', labels: { team: 'blue' } }] },
      { name: 'x/b gets role=server', actions: [{ labelPod: 'x/b', labels: { role: 'server' } }] },
      {
        name: 'x/c loses role, y loses team, z gets team=blue',
        actions: [
          { labelPod: 'x/c', labels: { role: null } },
          { labelNamespace: 'y', labels: { team: null } },
          { labelNamespace: 'z', labels: { team: 'blue' } },
        ],
      },
    ],
  },
  {
    name: 'a pod created after the policy that selects it; named ports resolved on each destination pod',
    steps: [
      {
        name: 'x in: only from pods pod=d, on port name serve-80-tcp',
        actions: [{ policy: netpol('x', 'from-d', { podSelector: {}, ingress: [{ from: [{ podSelector: pod('d') }], ports: [{ port: 'serve-80-tcp' }] }] }) }],
      },
      {
        // x/d names its TCP ports the other way round: serve-80-tcp is its port 81.
        name: 'pod x/d created on r2n2 (pod=d, TCP names swapped)',
        actions: [
          {
            createPod: {
              namespace: 'x',
              name: 'd',
              node: 'r2n2',
              labels: { pod: 'd' },
              ports: [
                { name: 'serve-80-tcp', containerPort: 81, protocol: 'TCP' },
                { name: 'serve-81-tcp', containerPort: 80, protocol: 'TCP' },
                { name: 'serve-80-udp', containerPort: 80, protocol: 'UDP' },
                { name: 'serve-81-udp', containerPort: 81, protocol: 'UDP' },
              ],
            },
          },
        ],
      },
      {
        name: 'x/d egress-isolated: only to pods of y',
        actions: [{ policy: netpol('x', 'd-out', { podSelector: pod('d'), policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ns('y') }] }] }) }],
      },
      { name: 'x/d relabelled pod=e (no longer a peer, no longer egress-isolated)', actions: [{ labelPod: 'x/d', labels: { pod: 'e' } }] },
    ],
  },
];
