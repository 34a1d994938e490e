import { expect } from 'chai';
import type { PeerStatus } from '../../../src/bgp/types.js';
import { PeerEventReporter, peerTransitions, type PeerTransition } from '../../../src/observe/peer-events.js';

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

describe('PeerEventReporter', () => {
  /** A gobgpd peer table the test changes, a watch it fires, and the reads and Events the reporter made. */
  function harness(options: { watch: boolean; safetyIntervalMs?: number }) {
    let table: PeerStatus[] = [peer('10.0.0.2', 'ACTIVE')];
    let reads = 0;
    const posted: PeerTransition[] = [];
    const listeners = new Set<() => void>();
    const reporter = new PeerEventReporter({
      listPeers: () => {
        reads++;
        return Promise.resolve(table);
      },
      post: (event) => {
        posted.push(event);
        return Promise.resolve();
      },
      ...(options.watch ? { onPeerChange: (l: () => void) => (listeners.add(l), () => listeners.delete(l)) } : {}),
      ...(options.safetyIntervalMs === undefined ? {} : { safetyIntervalMs: options.safetyIntervalMs }),
    });
    const ac = new AbortController();
    const running = reporter.run(ac.signal);
    return {
      setTable: (t: PeerStatus[]) => (table = t),
      fire: () => listeners.forEach((l) => l()),
      reads: () => reads,
      posted,
      subscribed: () => listeners.size,
      stop: async () => {
        ac.abort();
        await running;
      },
    };
  }
  const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('reads gobgpd once at start and then only when the peer watch reports a change (bursts cost one read)', async () => {
    const h = harness({ watch: true, safetyIntervalMs: 60_000 });
    await tick(30);
    expect(h.reads()).to.equal(1);
    await tick(100);
    expect(h.reads(), 'no change reported: no read').to.equal(1);
    h.setTable([peer('10.0.0.2', 'ESTABLISHED')]);
    h.fire();
    h.fire();
    h.fire();
    await tick(30);
    expect(h.reads()).to.equal(2);
    expect(h.posted.map((e) => e.reason)).to.deep.equal(['PodrouteBgpPeerUp']);
    await h.stop();
    expect(h.subscribed(), 'unsubscribed at stop').to.equal(0);
  });

  it('still reads at the safety interval, so a change the watch missed is reported', async () => {
    const h = harness({ watch: true, safetyIntervalMs: 50 });
    await tick(20);
    h.setTable([peer('10.0.0.2', 'ESTABLISHED')]);
    await tick(120);
    expect(h.reads()).to.be.at.least(2);
    expect(h.posted.map((e) => e.reason)).to.deep.equal(['PodrouteBgpPeerUp']);
    await h.stop();
  });

  it('polls at its interval without a peer watch', async () => {
    const h = harness({ watch: false, safetyIntervalMs: 20 });
    await tick(110);
    expect(h.reads()).to.be.at.least(3);
    await h.stop();
  });
});
