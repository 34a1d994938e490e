import { expect } from 'chai';
import type { PeerStatus } from '../../../src/bgp/types.js';
import { peerTransitions } from '../../../src/observe/peer-events.js';

const peer = (address: string, state: PeerStatus['state'], description = 'node:r1n2'): PeerStatus => ({
  address,
  asn: 64601,
  state,
  description,
  received: 0,
  accepted: 0,
  advertised: 0,
});

describe('BGP peer Events', () => {
  it('reports a peer coming up and going down, once each', () => {
    const up = peerTransitions(new Map([['10.0.0.2', 'ACTIVE']]), [peer('10.0.0.2', 'ESTABLISHED')]);
    expect(up).to.deep.equal([{ type: 'Normal', reason: 'PodrouteBgpPeerUp', message: 'BGP peer 10.0.0.2 (AS 64601, node:r1n2) is Established' }]);
    const down = peerTransitions(new Map([['10.0.0.2', 'ESTABLISHED']]), [peer('10.0.0.2', 'IDLE')]);
    expect(down).to.deep.equal([{ type: 'Warning', reason: 'PodrouteBgpPeerDown', message: 'BGP peer 10.0.0.2 (AS 64601, node:r1n2) went down (now IDLE)' }]);
    expect(peerTransitions(new Map([['10.0.0.2', 'ESTABLISHED']]), [peer('10.0.0.2', 'ESTABLISHED')])).to.deep.equal([]);
    const cut = peerTransitions(new Map([['10.0.0.2', 'ESTABLISHED']]), [{ ...peer('10.0.0.2', 'IDLE'), adminState: 'PREFIX_LIMIT' }]);
    expect(cut[0]?.message).to.equal(
      "BGP peer 10.0.0.2 (AS 64601, node:r1n2) went down (now IDLE): prefix limit exceeded; gobgpd keeps the session down until the peer's configuration changes",
    );
  });

  it('is quiet about peers still connecting and peers removed from the configuration', () => {
    expect(peerTransitions(new Map(), [peer('10.0.0.3', 'CONNECT')])).to.deep.equal([]);
    expect(peerTransitions(new Map([['10.0.0.4', 'ESTABLISHED']]), [])).to.deep.equal([]);
    expect(peerTransitions(new Map(), [peer('10.0.0.5', 'ESTABLISHED', '')])[0]?.message).to.equal('BGP peer 10.0.0.5 (AS 64601) is Established');
  });
});
