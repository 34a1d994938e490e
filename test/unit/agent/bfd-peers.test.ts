// Which peers get BFD: directly connected ones (on a node network, not multihop), by bgp.bfd or per peer.
import { expect } from 'chai';
import { parseAgentConfig } from '../../../src/config/agent-config.js';
import { planBfdHoldDown, planBfdPeers, type BfdDownVerdict } from '../../../src/agent/bfd-peers.js';
import type { BfdSessionStatus } from '../../../src/bfd/sessions.js';
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

describe('planBfdHoldDown', () => {
  const TOR_A = '10.10.1.1';
  const NODE_B = '10.10.1.12';
  function session(peer: string, heldDown: boolean, atMs: number, remoteControlPlaneIndependent = false): BfdSessionStatus {
    return {
      peer,
      state: heldDown ? 'Down' : 'Up',
      diag: heldDown ? 1 : 0,
      remoteState: 'Up',
      remoteControlPlaneIndependent,
      remoteDiag: 0,
      localDiscriminator: 1,
      remoteDiscriminator: 2,
      txIntervalMs: 200,
      detectionTimeMs: 600,
      pollInProgress: false,
      heldDown,
      stateChanges: 2,
      upSinceMs: heldDown ? undefined : atMs,
      lastChange: { from: heldDown ? 'Up' : 'Init', to: heldDown ? 'Down' : 'Up', diag: heldDown ? 1 : 0, atMs, remoteState: 'Up', remoteDiag: 0, remoteControlPlaneIndependent },
    };
  }
  const graceful = new Set([TOR_A]);

  it('a silent path failure (BGP still Established) is held down at once, though the peer has graceful restart', () => {
    const first = planBfdHoldDown({ sessions: [session(TOR_A, true, 1000)], gracefulRestartPeers: graceful, establishedPeers: undefined, verdicts: new Map() });
    expect(first.needsSessionStates).to.equal(true);
    expect(first.heldDown).to.deep.equal([]);
    const judged = planBfdHoldDown({ sessions: [session(TOR_A, true, 1000)], gracefulRestartPeers: graceful, establishedPeers: new Set([TOR_A]), verdicts: new Map() });
    expect(judged).to.deep.include({ heldDown: [TOR_A], needsSessionStates: false, leftToGracefulRestart: [] });
  });

  it('a control-plane restart (BGP already down, graceful restart, C bit clear) is left to graceful restart, and stays so while BGP comes back', () => {
    const judged = planBfdHoldDown({ sessions: [session(TOR_A, true, 1000)], gracefulRestartPeers: graceful, establishedPeers: new Set(), verdicts: new Map() });
    expect(judged).to.deep.include({ heldDown: [], leftToGracefulRestart: [TOR_A] });
    // The restarted bgpd is Established again before its bfdd's session is Up: the same down is not judged again.
    const later = planBfdHoldDown({ sessions: [session(TOR_A, true, 1000)], gracefulRestartPeers: graceful, establishedPeers: undefined, verdicts: judged.verdicts });
    expect(later).to.deep.include({ heldDown: [], needsSessionStates: false, leftToGracefulRestart: [] });
  });

  it('the C bit or no graceful restart means a path failure: held down without asking BGP', () => {
    const plan = planBfdHoldDown({ sessions: [session(TOR_A, true, 1000, true), session(NODE_B, true, 1200)], gracefulRestartPeers: graceful, establishedPeers: undefined, verdicts: new Map() });
    expect(plan).to.deep.include({ heldDown: [TOR_A, NODE_B], needsSessionStates: false });
  });

  it('a held-down peer stays held (its BGP session is down because we hold it) until BFD is Up; a new down is judged anew', () => {
    const verdicts = new Map<string, BfdDownVerdict>([[TOR_A, { atMs: 1000, holdDown: true }]]);
    const still = planBfdHoldDown({ sessions: [session(TOR_A, true, 1000)], gracefulRestartPeers: graceful, establishedPeers: new Set(), verdicts });
    expect(still.heldDown).to.deep.equal([TOR_A]);
    const up = planBfdHoldDown({ sessions: [session(TOR_A, false, 5000)], gracefulRestartPeers: graceful, establishedPeers: undefined, verdicts: still.verdicts });
    expect(up.heldDown).to.deep.equal([]);
    expect([...up.verdicts]).to.deep.equal([]);
    const again = planBfdHoldDown({ sessions: [session(TOR_A, true, 9000)], gracefulRestartPeers: graceful, establishedPeers: new Set(), verdicts: up.verdicts });
    expect(again).to.deep.include({ heldDown: [], leftToGracefulRestart: [TOR_A] });
  });
});
