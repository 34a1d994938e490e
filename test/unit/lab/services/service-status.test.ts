import { expect } from 'chai';
import { advertisersByPrefix, formatServices, parseRib, serviceViews } from '../../../../src/lab/service-status.js';
import { parseTopology, planLayout } from '../../../../src/lab/topology.js';

// The shape of FRR 8.4's `show bgp ipv4 unicast json` (trimmed from a lab ToR).
const TOR1_RIB = JSON.stringify({
  routerId: '10.255.0.11',
  routes: {
    '203.0.113.10/32': [
      { valid: true, multipath: true, peerId: '10.10.1.11', path: '64601', nexthops: [{ ip: '10.10.1.11', afi: 'ipv4', used: true }] },
      { valid: true, bestpath: true, peerId: '10.10.1.12', path: '64601', nexthops: [{ ip: '10.10.1.12', afi: 'ipv4', used: true }] },
      { valid: true, peerId: '10.255.1.0', path: '65000 65002 64602', nexthops: [{ ip: '10.255.1.0', afi: 'ipv4', used: true }] },
    ],
    '10.96.0.0/16': [{ valid: true, peerId: '10.10.1.12', path: '64601', nexthops: [] }],
    '10.10.1.0/24': [{ valid: true, peerId: '(unspec)', path: '', nexthops: [] }],
  },
});

const topology = parseTopology(`
cluster: { podRanges: [10.244.0.0/16] }
routers: [{ name: tor1, asn: 65001, routerId: 10.255.0.11, role: tor }]
links: [{ type: rack, tor: tor1, ipv4: 10.10.1.0/24 }]
nodes:
  - { name: r1n1, rack: tor1, podCIDRs: [10.244.1.0/24] }
  - { name: r1n2, rack: tor1, podCIDRs: [10.244.2.0/24] }
`);

describe('lab show: Services and the nodes that advertise them', () => {
  it('maps the peers of a ToR path to node names; paths from the spine or the ToR itself are no node', () => {
    const advertisers = advertisersByPrefix([parseRib(TOR1_RIB)], planLayout(topology));
    expect([...advertisers]).to.deep.equal([
      ['203.0.113.10/32', ['r1n1', 'r1n2']],
      ['10.96.0.0/16', ['r1n2']],
    ]);
  });

  it('lists each Service with type, policy and addresses; a ClusterIP is advertised by who announces its range', () => {
    const advertisers = advertisersByPrefix([parseRib(TOR1_RIB)], planLayout(topology));
    const views = serviceViews(
      [
        {
          metadata: { namespace: 'x', name: 'web' },
          spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIPs: ['10.96.0.10', 'fd00:10:96::a'], externalIPs: ['203.0.113.70'] },
          status: { loadBalancer: { ingress: [{ ip: '203.0.113.10' }] } },
        },
        { metadata: { namespace: 'a', name: 'plain' }, spec: { clusterIP: 'None' } },
      ],
      advertisers,
    );
    expect(views).to.deep.equal([
      { namespace: 'a', name: 'plain', type: 'ClusterIP', addresses: [] },
      {
        namespace: 'x',
        name: 'web',
        type: 'LoadBalancer',
        externalTrafficPolicy: 'Local',
        addresses: [
          { address: '10.96.0.10', kind: 'clusterIP', advertisedBy: ['r1n2'] },
          { address: 'fd00:10:96::a', kind: 'clusterIP', advertisedBy: [] },
          { address: '203.0.113.70', kind: 'externalIP', advertisedBy: [] },
          { address: '203.0.113.10', kind: 'loadBalancer', advertisedBy: ['r1n1', 'r1n2'] },
        ],
      },
    ]);
    expect(formatServices(views)).to.include('    203.0.113.10             loadBalancer  r1n1, r1n2\n');
  });
});
