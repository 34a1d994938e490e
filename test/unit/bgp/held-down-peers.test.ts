// Peers held down by BFD: the planner disables them in gobgpd before anything else and enables them again when BFD
// lets go; the reconciler takes the held-down set as a second input and starts a pass at once.
import { expect } from 'chai';
import { emptyObservedState, planBgp, type BgpDesiredState, type ObservedBgpState } from '../../../src/bgp/bgp-planner.js';
import { BgpReconciler } from '../../../src/bgp/bgp-reconciler.js';
import { FakeGobgpRouter } from './fake-router.js';
import { pollUntil } from '../../poll.js';

const TOR = '192.168.1.1';
const NODE = '192.168.1.12';

function desired(over: Partial<BgpDesiredState> = {}): BgpDesiredState {
  return {
    global: { asn: 64512, routerId: '192.168.1.11', listenPort: 179 },
    peers: [
      { address: NODE, asn: 64512, description: 'node:w2' },
      { address: TOR, asn: 65001, description: 'tor:tor1' },
    ],
    advertise: [{ prefix: '10.244.1.0/24', nextHop: '192.168.1.11' }],
    importRules: { nodePeers: [{ address: NODE, prefixes: ['10.244.2.0/24'] }], externalPeers: [TOR], acceptRanges: ['10.244.0.0/16'], ownPodCIDRs: ['10.244.1.0/24'] },
    ...over,
  };
}

async function converged(fake: FakeGobgpRouter, state: BgpDesiredState): Promise<ObservedBgpState> {
  const reconciler = new BgpReconciler({ client: fake });
  await reconciler.syncOnce(state);
  return reconciler.observe();
}

describe('peers held down by BFD', () => {
  it('disables a held-down established peer as the very first change, and enables it once released', async () => {
    const fake = new FakeGobgpRouter();
    const observed = await converged(fake, desired());
    // Something else changes in the same pass: the disable still goes first.
    const plan = planBgp(desired({ heldDown: [TOR], advertise: [{ prefix: '10.244.1.0/24', nextHop: '192.168.1.11', communities: ['65000:1'] }] }), observed);
    expect(plan[0]).to.deep.equal({ kind: 'disable-peer', address: TOR, reason: 'BFD session down' });
    expect(plan.filter((c) => c.kind === 'disable-peer' || c.kind === 'enable-peer')).to.have.length(1);

    const reconciler = new BgpReconciler({ client: fake });
    await reconciler.syncOnce(desired({ heldDown: [TOR] }));
    expect([...fake.disabledPeers]).to.deep.equal([TOR]);
    expect(planBgp(desired({ heldDown: [TOR] }), await reconciler.observe()), 'nothing more to do while held').to.deep.equal([]);
    const release = await reconciler.syncOnce(desired());
    expect(release).to.deep.equal([{ kind: 'enable-peer', address: TOR }]);
    expect(fake.disabledPeers.size).to.equal(0);
  });

  it('a held-down peer that is added or re-created is disabled right after AddPeer/UpdatePeer (which leave it enabled)', () => {
    const start = emptyObservedState({ asn: 64512, routerId: '192.168.1.11', listenPort: 179, useMultiplePaths: true });
    const plan = planBgp(desired({ heldDown: [TOR] }), start);
    const add = plan.findIndex((c) => c.kind === 'add-peer' && c.spec.address === TOR);
    const disable = plan.findIndex((c) => c.kind === 'disable-peer');
    expect(add).to.be.greaterThan(-1);
    expect(disable).to.be.greaterThan(add);

    const observed: ObservedBgpState = { ...start, peers: [], disabledPeers: [TOR] };
    const planned = planBgp(desired({ heldDown: [TOR] }), { ...observed, peers: [{ address: TOR, asn: 65002 } as never] });
    const kindsFor = planned.filter((c) => ('address' in c && c.address === TOR) || ('spec' in c && c.spec.address === TOR)).map((c) => c.kind);
    // This partial peer differs in every field, its route-reflector flag too: a role change, also an UpdatePeer.
    expect(kindsFor).to.deep.equal(['change-peer-role', 'disable-peer']);
  });

  it('ignores held-down addresses that are no peer (BFD may lag the configuration)', async () => {
    const fake = new FakeGobgpRouter();
    const observed = await converged(fake, desired());
    expect(planBgp(desired({ heldDown: ['192.168.1.99'] }), observed)).to.deep.equal([]);
    // An IPv6 address written differently is the same peer.
    const v6 = desired({ peers: [{ address: 'fd00::1', asn: 65001 }], importRules: { nodePeers: [], externalPeers: ['fd00::1'], acceptRanges: ['10.244.0.0/16'], ownPodCIDRs: ['10.244.1.0/24'] } });
    const obs6 = await converged(new FakeGobgpRouter(), v6);
    expect(planBgp({ ...v6, heldDown: ['FD00:0::1'] }, obs6)).to.deep.equal([{ kind: 'disable-peer', address: 'fd00::1', reason: 'BFD session down' }]);
  });

  it('setHeldDown wakes the running reconciler at once', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake, resyncIntervalMs: 3_600_000 });
    const ac = new AbortController();
    const running = reconciler.start(ac.signal);
    try {
      reconciler.setDesired(desired());
      await pollUntil('peers configured', () => (fake.peers.size === 2 ? true : undefined), { timeoutMs: 5_000 });
      reconciler.setHeldDown([NODE]);
      await pollUntil('node peer disabled', () => (fake.disabledPeers.has(NODE) ? true : undefined), { timeoutMs: 1_000 });
      reconciler.setHeldDown([]);
      await pollUntil('node peer enabled', () => (fake.disabledPeers.size === 0 ? true : undefined), { timeoutMs: 1_000 });
      expect(fake.mutations.filter((m) => m.startsWith('disablePeer') || m.startsWith('enablePeer'))).to.deep.equal([`disablePeer ${NODE}`, `enablePeer ${NODE}`]);
    } finally {
      ac.abort();
      await running;
    }
  });
});
