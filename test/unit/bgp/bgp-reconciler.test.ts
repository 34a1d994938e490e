// The BGP reconciler's applier against the in-memory gobgpd (fake-router.ts): undo of a half-installed policy
// bundle, re-applying after gobgpd came back empty, and the learned table's stale paths across a watch restart.
import { expect } from 'chai';
import { applyStages, BgpReconciler, type BgpDesiredState } from '../../../src/bgp/bgp-reconciler.js';
import type { BgpChange } from '../../../src/bgp/bgp-planner.js';
import type { LearnedPath } from '../../../src/bgp/types.js';
import { pollUntil } from '../../poll.js';
import { FakeGobgpRouter } from './fake-router.js';

const N1 = '192.168.1.12';
const N2 = '192.168.1.13';

function desiredState(over: Partial<BgpDesiredState> = {}): BgpDesiredState {
  return {
    global: { asn: 64512, routerId: '192.168.1.11', listenPort: 179 },
    peers: [
      { address: N1, asn: 64512, description: 'node:n1' },
      { address: N2, asn: 64512, description: 'node:n2' },
    ],
    advertise: [
      { prefix: '10.244.1.0/24', nextHop: '192.168.1.11' },
      { prefix: 'fd00:244:0:1::/64', nextHop: 'fd00:1::11' },
    ],
    importRules: {
      nodePeers: [
        { address: N1, prefixes: ['10.244.2.0/24'] },
        { address: N2, prefixes: ['10.244.3.0/24'] },
      ],
      externalPeers: [],
      acceptRanges: ['10.244.0.0/16', 'fd00:244::/48'],
      ownPodCIDRs: ['10.244.1.0/24', 'fd00:244:0:1::/64'],
    },
    ...over,
  };
}

/** The names of the objects that start with `prefix`, sorted. */
function namesOf(objects: Iterable<{ name: string }>, prefix: string): string[] {
  return [...objects].map((o) => o.name).filter((n) => n.startsWith(prefix)).sort();
}

const learned = (prefix: string, neighborIp: string, nextHop = neighborIp): LearnedPath => ({ prefix, family: 'ipv4', nextHop, neighborIp, asPath: [], isWithdraw: false });

describe('BgpReconciler against an in-memory gobgpd', function () {
  this.timeout(10_000);

  it('applies the desired state to an empty gobgpd, and a second pass changes nothing', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake });
    await reconciler.syncOnce(desiredState());
    expect(fake.global.asn).to.equal(64512);
    expect([...fake.peers.keys()].sort()).to.deep.equal([N1, N2]);
    expect([...fake.paths.values()].map((p) => p.prefix).sort()).to.deep.equal(['10.244.1.0/24', 'fd00:244:0:1::/64']);
    expect(fake.assignments.import.defaultAction).to.equal('reject');
    const mutations = fake.mutations.length;
    expect(await reconciler.syncOnce(desiredState())).to.deep.equal([]);
    expect(fake.mutations.length).to.equal(mutations);
  });

  it('applies runs of paths or peers as one stage of calls at once; a failure in a stage stops the pass after it', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake });
    fake.failNext('addPath', new Error('path refused'));
    await reconciler.syncOnce(desiredState()).then(
      () => expect.fail('the pass should fail'),
      (err: Error) => expect(err.message).to.equal('path refused'),
    );
    // The other path of the stage was still added; the peers (the next stage) were not.
    expect([...fake.paths.values()].map((p) => p.prefix)).to.deep.equal(['fd00:244:0:1::/64']);
    expect(fake.peers.size).to.equal(0);
    await reconciler.syncOnce(desiredState());
    expect([...fake.paths.values()].map((p) => p.prefix).sort()).to.deep.equal(['10.244.1.0/24', 'fd00:244:0:1::/64']);
    expect(fake.peers.size).to.equal(2);
    expect(await reconciler.syncOnce(desiredState())).to.deep.equal([]);
  });

  it('stages: consecutive path or peer additions and deletions together, everything else alone and in order', () => {
    const path = (prefix: string): BgpChange => ({ kind: 'add-path', path: { prefix, nextHop: '192.168.1.11' }, family: 'ipv4' });
    const peer = (address: string): BgpChange => ({ kind: 'add-peer', spec: { address, asn: 64512 } });
    const plan: BgpChange[] = [
      { kind: 'start-bgp', global: desiredState().global },
      { kind: 'delete-peer', address: N1 },
      { kind: 'delete-peer', address: N2 },
      { kind: 'soft-reset-in' },
      { kind: 'soft-reset-out' },
      path('10.244.1.0/24'),
      path('10.244.9.0/24'),
      peer(N1),
      peer(N2),
      { kind: 'enable-peer', address: N1 },
    ];
    expect(applyStages(plan).map((stage) => stage.map((c) => c.kind))).to.deep.equal([
      ['start-bgp'],
      ['delete-peer', 'delete-peer'],
      ['soft-reset-in'],
      ['soft-reset-out'],
      ['add-path', 'add-path'],
      ['add-peer', 'add-peer'],
      ['enable-peer'],
    ]);
  });

  it('undoes a policy bundle whose assignment failed: the sets and policy that call created go again', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake });
    fake.failNext('setGlobalPolicy', new Error('assignment refused'));
    await reconciler.syncOnce(desiredState()).then(
      () => expect.fail('the pass should fail'),
      (err: Error) => expect(err.message).to.equal('assignment refused'),
    );
    expect(fake.global.asn).to.equal(64512); // started before the bundle: not part of it
    // The import bundle's assignment failed (the first made); the export bundle, installed beside it, is whole.
    expect(namesOf(fake.definedSets.values(), 'podroute-import-')).to.deep.equal([]);
    expect(namesOf(fake.policies.values(), 'podroute-import-')).to.deep.equal([]);
    expect(namesOf(fake.policies.values(), 'podroute-export-')).to.have.length(1);
    expect(fake.assignments.export.policies).to.deep.equal(namesOf(fake.policies.values(), 'podroute-export-'));
    expect(fake.mutations.filter((m) => m.startsWith('deletePolicy')).length).to.equal(1);
    // The next pass installs everything, and then there is nothing left to do.
    await reconciler.syncOnce(desiredState());
    expect(fake.policies.size).to.equal(2);
    expect(await reconciler.syncOnce(desiredState())).to.deep.equal([]);
  });

  it('undo removes only what the failed call created: a set left by an earlier, interrupted pass stays', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake });
    // A first pass that dies at the policy: its sets are undone, so make one survive as an interrupted pass would.
    fake.failNext('addPolicy', new Error('policy refused'));
    await reconciler.syncOnce(desiredState()).catch(() => undefined);
    expect(namesOf(fake.definedSets.values(), 'podroute-import-')).to.deep.equal([]);
    const setsOfOneBundle = fake.mutations.filter((m) => m.startsWith('addDefinedSet podroute-import-')).map((m) => m.split(' ')[1] as string);
    expect(setsOfOneBundle.length).to.be.greaterThan(0);
    await fake.addDefinedSet({ kind: 'prefix', name: setsOfOneBundle[0] as string, prefixes: [{ prefix: '10.244.2.0/24', minLength: 24, maxLength: 24 }] });
    fake.failNext('setGlobalPolicy', new Error('assignment refused'));
    await reconciler.syncOnce(desiredState()).catch(() => undefined);
    expect(namesOf(fake.definedSets.values(), 'podroute-import-')).to.deep.equal([setsOfOneBundle[0]]);
    expect(namesOf(fake.policies.values(), 'podroute-import-')).to.deep.equal([]);
  });

  it('re-applies everything after gobgpd came back empty, and withdraws by the uuids of the new instance', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake, resyncIntervalMs: 60_000, retryBackoffMs: { initial: 20, max: 50 } });
    const stop = new AbortController();
    reconciler.setDesired(desiredState());
    const running = reconciler.start(stop.signal);
    try {
      await pollUntil('applied', () => fake.paths.size === 2 && fake.peers.size === 2, { timeoutMs: 5_000, intervalMs: 10 });
      await fake.watchOpened(1);
      const before = new Set(fake.paths.keys());
      fake.restart();
      await pollUntil('applied again', () => fake.paths.size === 2 && fake.peers.size === 2 && fake.policies.size === 2, { timeoutMs: 5_000, intervalMs: 10 });
      await fake.watchOpened(2); // the learned-path watch of the old instance was given up
      const after = new Map([...fake.paths].map(([uuid, p]) => [p.prefix, uuid]));
      for (const uuid of after.values()) expect(before.has(uuid)).to.equal(false);
      reconciler.setDesired(desiredState({ advertise: [{ prefix: '10.244.1.0/24', nextHop: '192.168.1.11' }] }));
      await pollUntil('withdrawn', () => fake.paths.size === 1, { timeoutMs: 5_000, intervalMs: 10 });
      expect(fake.mutations).to.include(`deletePath ${after.get('fd00:244:0:1::/64')}`);
      expect(reconciler.status().loop.consecutiveFailures).to.equal(0);
    } finally {
      stop.abort();
      await running;
    }
  });

  it("hands on the watch's peer-state events (what the peer Events reporter reads gobgpd on)", async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake, retryBackoffMs: { initial: 20, max: 50 } });
    const heard: string[] = [];
    const unsubscribe = reconciler.learned.onPeerStateEvent((address, state) => heard.push(`${address} ${state}`));
    const stop = new AbortController();
    reconciler.setDesired(desiredState());
    const running = reconciler.start(stop.signal);
    try {
      await fake.watchOpened(1);
      fake.send({ kind: 'peer', address: N1, state: 'ACTIVE', asn: 64512 });
      fake.send({ kind: 'peer', address: N1, state: 'ESTABLISHED', asn: 64512 });
      await pollUntil('peer states heard', () => heard.length === 2, { timeoutMs: 2_000, intervalMs: 5 });
      expect(heard).to.deep.equal([`${N1} ACTIVE`, `${N1} ESTABLISHED`]);
      unsubscribe();
      fake.send({ kind: 'peer', address: N1, state: 'IDLE', asn: 64512 });
      fake.send({ kind: 'table-synced' });
      await pollUntil('table synced', () => reconciler.status().tableSynced, { timeoutMs: 2_000, intervalMs: 5 });
      expect(heard, 'nothing after unsubscribing').to.have.length(2);
    } finally {
      stop.abort();
      await running;
    }
  });

  it('re-adds the peers of a gobgpd that restarted under it as locally restarting; a cold start does not', async () => {
    const fake = new FakeGobgpRouter();
    const gracefulRestart = { enabled: true, restartTime: 120 };
    const desired = desiredState({ peers: desiredState().peers.map((p) => ({ ...p, gracefulRestart })) });
    const reconciler = new BgpReconciler({ client: fake, retryBackoffMs: { initial: 20, max: 50 } });
    const stop = new AbortController();
    reconciler.setDesired(desired);
    const running = reconciler.start(stop.signal);
    try {
      await pollUntil('applied', () => fake.peers.size === 2, { timeoutMs: 5_000, intervalMs: 10 });
      expect([...fake.restartingPeers]).to.deep.equal([]);
      fake.restart();
      await pollUntil('applied again', () => fake.peers.size === 2, { timeoutMs: 5_000, intervalMs: 10 });
      expect([...fake.restartingPeers].sort()).to.deep.equal(desired.peers.map((p) => p.address).sort());
      // gobgpd reports the peers as configured: the next pass changes nothing.
      const mutations = fake.mutations.length;
      await reconciler.syncOnce(desired);
      expect(fake.mutations.slice(mutations)).to.deep.equal([]);
    } finally {
      stop.abort();
      await running;
    }
  });

  it('a new agent whose kernel kept the previous run\'s routes adds its peers to a fresh gobgpd as locally restarting', async () => {
    for (const kept of [true, false]) {
      const fake = new FakeGobgpRouter();
      const gracefulRestart = { enabled: true, restartTime: 120 };
      const desired = desiredState({ peers: desiredState().peers.map((p) => ({ ...p, gracefulRestart })) });
      const reconciler = new BgpReconciler({ client: fake, retryBackoffMs: { initial: 20, max: 50 }, forwardingKeptAtStart: () => Promise.resolve(kept) });
      await reconciler.syncOnce(desired);
      expect([...fake.restartingPeers].sort(), `kernel kept routes: ${kept}`).to.deep.equal(kept ? [N1, N2] : []);
    }
  });

  it('peersSettledAfterStart waits for the first desired state, then for its graceful-restart peers to settle', async () => {
    const fake = new FakeGobgpRouter();
    const desired = desiredState({ peers: [{ address: N1, asn: 64512, gracefulRestart: { enabled: true, restartTime: 120 } }, { address: N2, asn: 64512 }] });
    const reconciler = new BgpReconciler({ client: fake, retryBackoffMs: { initial: 20, max: 50 }, staleSettleMs: 30 });
    const stop = new AbortController();
    let why: string | undefined;
    const settled = reconciler.peersSettledAfterStart(stop.signal).then((r) => (why = r));
    const running = reconciler.start(stop.signal);
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(why, 'no desired state yet').to.equal(undefined);
      reconciler.setDesired(desired);
      await pollUntil('applied', () => fake.peers.size === 2, { timeoutMs: 5_000, intervalMs: 10 });
      fake.send({ kind: 'peer', address: N2, state: 'ESTABLISHED', asn: 64512 });
      await new Promise((resolve) => setTimeout(resolve, 80));
      expect(why, 'N2 has no graceful restart: only N1 counts').to.equal(undefined);
      fake.send({ kind: 'peer', address: N1, state: 'ESTABLISHED', asn: 64512 });
      await settled;
      expect(why).to.equal('settled');
    } finally {
      stop.abort();
      await running;
    }
  });

  it("keeps a restarted watch's paths as stale per neighbor until it is back and settled, or the restart window ends", async () => {
    const fake = new FakeGobgpRouter();
    const gracefulRestart = { enabled: true, restartTime: 1 };
    const desired = desiredState({ peers: desiredState().peers.map((p) => ({ ...p, gracefulRestart })) });
    const reconciler = new BgpReconciler({ client: fake, retryBackoffMs: { initial: 20, max: 50 }, staleSettleMs: 50 });
    const changes: string[][] = [];
    reconciler.learned.onChange((_table, changed) => changes.push([...changed].sort()));
    const stop = new AbortController();
    reconciler.setDesired(desired);
    const running = reconciler.start(stop.signal);
    const table = (): Record<string, string[]> =>
      Object.fromEntries([...reconciler.learned.view().paths].map(([prefix, paths]) => [prefix, paths.map((p) => `${p.neighborIp} ${p.nextHop}`)]));
    try {
      await fake.watchOpened(1);
      fake.send({ kind: 'peer', address: N1, state: 'ESTABLISHED', asn: 64512 });
      fake.send({ kind: 'peer', address: N2, state: 'ESTABLISHED', asn: 64512 });
      fake.send({ kind: 'paths', paths: [learned('10.244.2.0/24', N1), learned('10.244.3.0/24', N2)] });
      fake.send({ kind: 'table-synced' });
      await pollUntil('table synced', () => reconciler.status().tableSynced, { timeoutMs: 2_000, intervalMs: 5 });
      expect(table()).to.deep.equal({ '10.244.2.0/24': [`${N1} ${N1}`], '10.244.3.0/24': [`${N2} ${N2}`] });

      fake.restart();
      await fake.watchOpened(2);
      // The new watch has sent nothing yet: everything is kept, as stale.
      expect(reconciler.status().staleNeighbors).to.deep.equal([N1, N2]);
      expect(table()).to.deep.equal({ '10.244.2.0/24': [`${N1} ${N1}`], '10.244.3.0/24': [`${N2} ${N2}`] });
      changes.length = 0;

      // n1 is back with a new next hop: its fresh path replaces its stale one at once; its stale state ends once settled.
      fake.send({ kind: 'peer', address: N1, state: 'ESTABLISHED', asn: 64512 });
      fake.send({ kind: 'table-synced' });
      fake.send({ kind: 'paths', paths: [learned('10.244.2.0/24', N1, '192.168.1.99')] });
      await pollUntil('n1 fresh', () => table()['10.244.2.0/24']?.[0] === `${N1} 192.168.1.99`, { timeoutMs: 2_000, intervalMs: 5 });
      expect(table()['10.244.3.0/24']).to.deep.equal([`${N2} ${N2}`]);
      await pollUntil('n1 settled', () => reconciler.status().staleNeighbors.join() === N2, { timeoutMs: 2_000, intervalMs: 5 });
      expect(table()).to.deep.equal({ '10.244.2.0/24': [`${N1} 192.168.1.99`], '10.244.3.0/24': [`${N2} ${N2}`] });

      // n2 never comes back: the restart window (1 s) ends its stale paths.
      await pollUntil('window over', () => reconciler.status().staleNeighbors.length === 0, { timeoutMs: 3_000, intervalMs: 20 });
      expect(table()).to.deep.equal({ '10.244.2.0/24': [`${N1} 192.168.1.99`] });
      expect(changes.at(-1)).to.include('10.244.3.0/24');
    } finally {
      stop.abort();
      await running;
    }
  });

  it('without graceful restart a restarted watch starts from an empty table', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake, retryBackoffMs: { initial: 20, max: 50 } });
    const stop = new AbortController();
    reconciler.setDesired(desiredState());
    const running = reconciler.start(stop.signal);
    try {
      await fake.watchOpened(1);
      fake.send({ kind: 'paths', paths: [learned('10.244.2.0/24', N1)] });
      fake.send({ kind: 'table-synced' });
      await pollUntil('table synced', () => reconciler.learned.view().paths.size === 1, { timeoutMs: 2_000, intervalMs: 5 });
      fake.restart();
      await fake.watchOpened(2);
      fake.send({ kind: 'table-synced' });
      await pollUntil('emptied', () => reconciler.learned.view().paths.size === 0, { timeoutMs: 2_000, intervalMs: 5 });
      expect(reconciler.status().staleNeighbors).to.deep.equal([]);
    } finally {
      stop.abort();
      await running;
    }
  });
});
