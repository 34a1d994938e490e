// When a new agent may let go of the routes its previous run left in the kernel: each graceful-restart peer
// Established for the settle time, or the restart window over. Real timers at a few milliseconds.
import { expect } from 'chai';
import { peersSettled, type PeersSettledOptions } from '../../../src/bgp/peers-settled.js';
import type { PeerState } from '../../../src/bgp/types.js';

type Listener = (address: string, state: PeerState) => void;

/** Peer states as the learned table's watch reports them, changed by the test. */
function peerFeed(initial: Record<string, PeerState> = {}) {
  const states = new Map(Object.entries(initial));
  const listeners = new Set<Listener>();
  return {
    listeners,
    set(address: string, state: PeerState): void {
      states.set(address, state);
      for (const l of listeners) l(address, state);
    },
    options(over: Partial<PeersSettledOptions>): PeersSettledOptions {
      return {
        peers: [],
        settleMs: 30,
        windowMs: 2_000,
        stateOf: (a) => states.get(a),
        onPeerState: (l) => {
          listeners.add(l);
          return () => listeners.delete(l);
        },
        signal: new AbortController().signal,
        ...over,
      };
    },
  };
}

const after = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('peersSettled', () => {
  it('resolves once every peer has been Established for the settle time, and unsubscribes', async () => {
    const feed = peerFeed({ '10.0.0.1': 'ESTABLISHED', '10.0.0.2': 'ACTIVE' });
    const started = Date.now();
    let outcome: string | undefined;
    const done = peersSettled(feed.options({ peers: ['10.0.0.1', '10.0.0.2'] })).then((r) => (outcome = r));
    await after(60);
    expect(outcome, 'one peer still down').to.equal(undefined);
    feed.set('10.0.0.2', 'ESTABLISHED');
    await done;
    expect(outcome).to.equal('settled');
    expect(Date.now() - started).to.be.at.least(60 + 25);
    expect(feed.listeners.size).to.equal(0);
  });

  it('a peer that goes down before it settled waits for its next Established', async () => {
    const feed = peerFeed({ '10.0.0.1': 'ESTABLISHED' });
    let outcome: string | undefined;
    const done = peersSettled(feed.options({ peers: ['10.0.0.1'], settleMs: 60 })).then((r) => (outcome = r));
    await after(20);
    feed.set('10.0.0.1', 'IDLE');
    await after(80);
    expect(outcome, 'its settle time was cut short').to.equal(undefined);
    feed.set('10.0.0.1', 'ESTABLISHED');
    expect(await done).to.equal('settled');
  });

  it('ends with the restart window when a peer never comes back', async () => {
    const feed = peerFeed({ '10.0.0.1': 'ESTABLISHED' });
    expect(await peersSettled(feed.options({ peers: ['10.0.0.1', '10.0.0.9'], windowMs: 80 }))).to.equal('restart window over');
    expect(feed.listeners.size).to.equal(0);
  });

  it('resolves at once without graceful-restart peers, and on abort', async () => {
    const feed = peerFeed();
    expect(await peersSettled(feed.options({ peers: [] }))).to.equal('no graceful-restart peers');
    const ac = new AbortController();
    const done = peersSettled(feed.options({ peers: ['10.0.0.1'], signal: ac.signal }));
    ac.abort();
    expect(await done).to.equal('aborted');
    expect(feed.listeners.size).to.equal(0);
  });
});
