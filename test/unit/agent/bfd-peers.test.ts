// Which peers get BFD: directly connected ones (on a node network, not multihop), by bgp.bfd or per peer.
import { expect } from 'chai';
import { parseAgentConfig } from '../../../src/config/agent-config.js';
import { planBfdPeers } from '../../../src/agent/bfd-peers.js';
import type { NodeInfo } from '../../../src/kube/node-info.js';
import type { PeerSpec } from '../../../src/bgp/types.js';

const self: NodeInfo = { name: 'r1n1', podCIDRs: ['10.244.1.0/24'], internalIPs: ['10.10.1.11', 'fd00:10:1::11'], labels: {}, annotationPeers: [], attributeOverrides: {}, warnings: [] };
const TOR: PeerSpec = { address: '10.10.1.1', asn: 65001, description: 'config:bgp.peers[0]' };
const TOR6: PeerSpec = { address: 'fd00:10:1::1', asn: 65001, description: 'config:bgp.peers[1]' };
const SAME_RACK: PeerSpec = { address: '10.10.1.12', asn: 64512, description: 'node:r1n2' };
const OTHER_RACK: PeerSpec = { address: '10.10.2.11', asn: 64512, description: 'node:r2n1' };
const MULTIHOP: PeerSpec = { address: '10.10.1.100', asn: 65100, ebgpMultihopTtl: 3, description: 'config:bgp.peers[2]' };
const NETWORKS = ['10.10.1.0/24', 'fd00:10:1::/64'];

function config(bgp: Record<string, unknown>): ReturnType<typeof parseAgentConfig> {
  return parseAgentConfig({ nodeName: 'r1n1', cluster: { podRanges: ['10.244.0.0/16'] }, bgp });
}

describe('planBfdPeers', () => {
  it('bgp.bfd.enabled: every directly connected peer with the default 300 ms x 3; other racks and multihop peers left out quietly', () => {
    const c = config({ bfd: { enabled: true }, peers: [{ address: '10.10.1.1', asn: 65001 }, { address: 'fd00:10:1::1', asn: 65001 }] });
    const plan = planBfdPeers({ config: c, self, peers: [TOR, TOR6, SAME_RACK, OTHER_RACK, MULTIHOP], connectedNetworks: NETWORKS });
    expect(plan.peers.map((p) => p.peer)).to.deep.equal(['10.10.1.1', '10.10.1.12', 'fd00:10:1::1']);
    expect(plan.peers[0]!.timers).to.deep.equal({ desiredMinTxUs: 300_000, requiredMinRxUs: 300_000, detectMult: 3 });
    expect(plan.warnings).to.deep.equal([]);
  });

  it('off by default; a peer can turn it on (with its own timers) or off, and is told why it cannot have it', () => {
    const c = config({
      peers: [
        { address: '10.10.1.1', asn: 65001, bfd: { enabled: true, minTxMs: 100, multiplier: 5 } },
        { address: '10.10.9.1', asn: 65009, bfd: { enabled: true } },
      ],
    });
    const far: PeerSpec = { address: '10.10.9.1', asn: 65009 };
    const plan = planBfdPeers({ config: c, self, peers: [TOR, SAME_RACK, far], connectedNetworks: NETWORKS });
    expect(plan.peers).to.deep.equal([{ peer: '10.10.1.1', timers: { desiredMinTxUs: 100_000, requiredMinRxUs: 300_000, detectMult: 5 } }]);
    expect(plan.warnings).to.deep.equal(['peer 10.10.9.1: no BFD session: not on any network of this node (BFD runs single hop only)']);
    const off = config({ bfd: { enabled: true }, peers: [{ address: '10.10.1.1', asn: 65001, bfd: { enabled: false } }] });
    expect(planBfdPeers({ config: off, self, peers: [TOR, SAME_RACK], connectedNetworks: NETWORKS }).peers.map((p) => p.peer)).to.deep.equal(['10.10.1.12']);
  });

  it('the configuration refuses bad BFD settings with the key they are about', () => {
    const problems = (bgp: Record<string, unknown>): string => {
      try {
        config(bgp);
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(problems({ bfd: { minTxMs: 5 } })).to.match(/bgp\.bfd\.minTxMs/);
    expect(problems({ bfd: { multiplier: 1 } })).to.match(/bgp\.bfd\.multiplier/);
    expect(problems({ bfd: { interval: 300 } })).to.include('bgp.bfd: unknown key(s) "interval"');
    expect(problems({ peers: [{ address: '10.10.1.1', asn: 65001, ebgpMultihopTtl: 2, bfd: { enabled: true } }] })).to.include('bgp.peers[0].bfd.enabled: BFD runs single-hop (RFC 5881) only');
  });
});
