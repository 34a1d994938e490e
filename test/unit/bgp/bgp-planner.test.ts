import { expect } from 'chai';
import ipaddr from 'ipaddr.js';
import {
  buildExportBundle,
  emptyObservedState,
  BgpPlanError,
  buildImportBundle,
  ownProtectionEntries,
  planBgp,
  validateDesired,
  type BgpChange,
  type BgpDesiredState,
  type ObservedBgpState,
  type PolicyBundle,
} from '../../../src/bgp/bgp-planner.js';
import { BgpReconciler } from '../../../src/bgp/bgp-reconciler.js';
import type { DefinedSetSpec } from '../../../src/bgp/gobgp-codec.js';
import { FakeGobgpRouter } from './fake-router.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

const EMPTY: ObservedBgpState = emptyObservedState({ asn: 0, routerId: '', listenPort: 0, useMultiplePaths: false });

function desiredState(over: Partial<BgpDesiredState> = {}): BgpDesiredState {
  return {
    global: { asn: 64512, routerId: '192.168.1.11', listenPort: 179 },
    peers: [
      { address: '192.168.1.12', asn: 64512, description: 'node:w2' },
      { address: '192.168.1.1', asn: 65001, description: 'tor:tor1', password: 'pw', holdTime: 9, keepaliveInterval: 3 },
    ],
    advertise: [
      { prefix: '10.244.1.0/24', nextHop: '192.168.1.11' },
      { prefix: 'fd00:244:0:1::/64', nextHop: 'fd00:1::11' },
    ],
    importRules: {
      nodePeers: [{ address: '192.168.1.12', prefixes: ['10.244.2.0/24', 'fd00:244:0:2::/64'] }],
      externalPeers: ['192.168.1.1'],
      acceptRanges: ['10.244.0.0/16', 'fd00:244::/48', '172.30.0.0/16'],
      ownPodCIDRs: ['10.244.1.0/24', 'fd00:244:0:1::/64'],
    },
    ...over,
  };
}

/**
 * gobgpd after one reconcile pass per desired state, in order: the one in-memory gobgpd (fake-router.ts) changed by
 * the reconciler's own applier. `plans` are the plans applied; `observed` is what a next pass would plan against.
 */
async function afterPasses(...passes: BgpDesiredState[]): Promise<{ plans: BgpChange[][]; observed: ObservedBgpState }> {
  const reconciler = new BgpReconciler({ client: new FakeGobgpRouter() });
  const plans: BgpChange[][] = [];
  for (const desired of passes) plans.push(await reconciler.syncOnce(desired));
  return { plans, observed: await reconciler.observe() };
}

/** What gobgpd holds after passes for `passes`. */
async function applied(...passes: BgpDesiredState[]): Promise<ObservedBgpState> {
  return (await afterPasses(...passes)).observed;
}

const kinds = (changes: BgpChange[]): string[] => changes.map((c) => c.kind);

/** gobgpd's prefix-set semantics: the route's network lies in the entry's prefix and its length in min..max. */
function inSet(set: DefinedSetSpec, route: string): boolean {
  const [addr, len] = ipaddr.parseCIDR(route);
  return (set.prefixes ?? []).some((e) => {
    const [p, plen] = ipaddr.parseCIDR(e.prefix);
    return p.kind() === addr.kind() && len >= e.minLength && len <= e.maxLength && addr.match(p, plen);
  });
}

/** Evaluates an import bundle like gobgpd: first statement whose conditions all match decides. */
function decide(bundle: PolicyBundle, neighbor: string /* or 'local' */, route: string): 'accept' | 'reject' {
  const sets = new Map(bundle.sets.map((s) => [s.name, s]));
  for (const st of bundle.policy.statements) {
    let match = true;
    if (st.match.routeType) match &&= st.match.routeType === 'local' ? neighbor === 'local' : neighbor !== 'local';
    if (st.match.prefixSet) match &&= inSet(sets.get(st.match.prefixSet.name)!, route) !== (st.match.prefixSet.invert === true);
    if (st.match.neighborSet) {
      const n = sets.get(st.match.neighborSet.name)!;
      match &&= (n.neighbors ?? []).some((c) => c.split('/')[0] === neighbor) !== (st.match.neighborSet.invert === true);
    }
    if (match && st.action !== 'next') return st.action;
  }
  return bundle.defaultAction;
}

describe('planBgp', () => {
  it('on an empty gobgpd: global, then policies, then paths, then peers', () => {
    const changes = planBgp(desiredState(), EMPTY);
    expect(kinds(changes)).to.deep.equal(['start-bgp', 'install-policy', 'install-policy', 'add-path', 'add-path', 'add-peer', 'add-peer']);
    expect(changes[0]).to.deep.include({ global: { asn: 64512, routerId: '192.168.1.11', listenPort: 179 } });
  });

  it('restarts gracefully towards graceful-restart peers only when a fresh gobgpd finds the node still forwarding', () => {
    const gracefulRestart = { enabled: true, restartTime: 120 };
    const [node, tor] = desiredState().peers;
    const d = desiredState({ peers: [{ ...node!, gracefulRestart }, tor!] });
    const adds = (observed: ObservedBgpState): [string, boolean][] =>
      planBgp(d, observed).flatMap((c) => (c.kind === 'add-peer' ? [[c.spec.address, c.localRestarting === true] as [string, boolean]] : []));
    // gobgpd restarted under a running agent: the GR peer is told so (R and F bits); the non-GR one is not.
    expect(adds({ ...EMPTY, forwardingPreserved: true })).to.deep.equal([['192.168.1.12', true], ['192.168.1.1', false]]);
    // A cold start claims nothing.
    expect(adds(EMPTY)).to.deep.equal([['192.168.1.12', false], ['192.168.1.1', false]]);
    // Still paths before peers: the first update burst after the peers' End-of-RIB carries every prefix.
    expect(kinds(planBgp(d, { ...EMPTY, forwardingPreserved: true }))).to.deep.equal(['start-bgp', 'install-policy', 'install-policy', 'add-path', 'add-path', 'add-peer', 'add-peer']);
  });

  it('restarts gracefully only on a fresh instance: not on a running one, nor when it restarts BGP for a new ASN', async () => {
    const gracefulRestart = { enabled: true, restartTime: 120 };
    const d = desiredState({ peers: desiredState().peers.map((p) => ({ ...p, gracefulRestart })) });
    const running = await applied(d);
    const restarting = (changes: BgpChange[]): boolean => changes.some((c) => c.kind === 'add-peer' && c.localRestarting === true);
    const newPeer = { address: '192.168.1.13', asn: 64512, gracefulRestart };
    expect(restarting(planBgp(desiredState({ peers: [...d.peers, newPeer] }), { ...running, forwardingPreserved: true }))).to.equal(false);
    expect(restarting(planBgp({ ...d, global: { ...d.global, asn: 64513 } }, { ...running, forwardingPreserved: true }))).to.equal(false);
  });

  it('plans nothing once applied (a no-change resync mutates nothing)', async () => {
    const d = desiredState();
    const after = await applied(d);
    expect(planBgp(d, after)).to.deep.equal([]);
  });

  it('never creates or references an empty defined set', () => {
    const cases: BgpDesiredState[] = [
      desiredState(),
      desiredState({ advertise: [], importRules: { nodePeers: [], externalPeers: [], acceptRanges: [], ownPodCIDRs: [] }, peers: [] }),
      desiredState({ importRules: { nodePeers: [{ address: '192.168.1.12', prefixes: [] }], externalPeers: ['192.168.1.1'], acceptRanges: [], ownPodCIDRs: [] } }),
    ];
    for (const d of cases) {
      for (const c of planBgp(d, EMPTY)) {
        if (c.kind !== 'install-policy') continue;
        const names = new Set(c.bundle.sets.map((s) => s.name));
        for (const s of c.bundle.sets) expect((s.prefixes ?? s.neighbors ?? []).length, s.name).to.be.greaterThan(0);
        for (const st of c.bundle.policy.statements) {
          if (st.match.prefixSet) expect(names.has(st.match.prefixSet.name), st.name).to.equal(true);
          if (st.match.neighborSet) expect(names.has(st.match.neighborSet.name), st.name).to.equal(true);
        }
        expect(c.bundle.defaultAction).to.equal('reject');
      }
    }
  });

  it('keeps one address family per prefix set', () => {
    for (const c of planBgp(desiredState(), EMPTY)) {
      if (c.kind !== 'install-policy') continue;
      for (const s of c.bundle.sets.filter((x) => x.kind === 'prefix')) {
        const fams = new Set(s.prefixes!.map((e) => familyOf(e.prefix)));
        expect(fams.size, s.name).to.equal(1);
      }
    }
  });

  it('import policy: node peers exactly their podCIDRs, externals inside the ranges, own podCIDRs never', () => {
    const bundle = buildImportBundle(validateDesired(desiredState()));
    const node = '192.168.1.12';
    const tor = '192.168.1.1';
    expect(decide(bundle, node, '10.244.2.0/24')).to.equal('accept');
    expect(decide(bundle, node, 'fd00:244:0:2::/64')).to.equal('accept');
    expect(decide(bundle, node, '10.244.2.128/25')).to.equal('reject'); // more-specific of its own
    expect(decide(bundle, node, '10.244.3.0/24')).to.equal('reject'); // another node's prefix
    expect(decide(bundle, node, '10.244.0.0/16')).to.equal('reject'); // a node is not a ToR
    expect(decide(bundle, tor, '10.244.3.0/24')).to.equal('accept');
    expect(decide(bundle, tor, '172.30.5.0/24')).to.equal('accept'); // extra range
    expect(decide(bundle, tor, 'fd00:244:0:3::/64')).to.equal('accept');
    expect(decide(bundle, tor, '8.8.8.0/24')).to.equal('reject'); // outside the ranges
    expect(decide(bundle, tor, 'fd00:245::/64')).to.equal('reject');
    expect(decide(bundle, '192.168.1.99', '10.244.3.0/24')).to.equal('reject'); // nobody we know
    expect(decide(bundle, 'local', '10.244.1.0/24')).to.equal('accept'); // our own advertisement
    for (const who of [node, tor]) {
      expect(decide(bundle, who, '10.244.1.0/24'), 'equal').to.equal('reject');
      expect(decide(bundle, who, '10.244.1.64/26'), 'inside').to.equal('reject');
      expect(decide(bundle, who, '10.244.1.7/32'), 'host inside').to.equal('reject');
      expect(decide(bundle, who, '10.244.0.0/23'), 'covering').to.equal('reject');
      expect(decide(bundle, who, '10.244.0.0/16'), 'covering').to.equal('reject');
      expect(decide(bundle, who, '0.0.0.0/0'), 'default route').to.equal('reject');
      expect(decide(bundle, who, 'fd00:244:0:1:8000::/65'), 'inside v6').to.equal('reject');
      expect(decide(bundle, who, 'fd00:244::/48'), 'covering v6').to.equal('reject');
    }
  });

  it('own-podCIDR protection lists every supernet exactly and the own prefix le max', () => {
    const entries = ownProtectionEntries([{ address: '10.244.1.0', length: 24, family: 'ipv4' }]);
    expect(entries).to.have.length(25);
    expect(entries).to.deep.include({ prefix: '10.244.1.0/24', minLength: 24, maxLength: 32 });
    expect(entries).to.deep.include({ prefix: '10.244.0.0/23', minLength: 23, maxLength: 23 });
    expect(entries).to.deep.include({ prefix: '0.0.0.0/0', minLength: 0, maxLength: 0 });
  });

  it('v6-only: no IPv4 sets, statements or paths', () => {
    const d = desiredState({
      peers: [{ address: 'fd00:1::12', asn: 64512 }],
      advertise: [{ prefix: 'fd00:244:0:1::/64', nextHop: 'fd00:1::11' }],
      importRules: { nodePeers: [{ address: 'fd00:1::12', prefixes: ['fd00:244:0:2::/64'] }], externalPeers: [], acceptRanges: ['fd00:244::/48'], ownPodCIDRs: ['fd00:244:0:1::/64'] },
    });
    const changes = planBgp(d, EMPTY);
    for (const c of changes) {
      if (c.kind === 'install-policy') for (const s of c.bundle.sets) for (const e of s.prefixes ?? []) expect(e.prefix).to.include(':');
      if (c.kind === 'add-path') expect(c.family).to.equal('ipv6');
    }
    const bundle = buildImportBundle(validateDesired(d));
    expect(decide(bundle, 'fd00:1::12', 'fd00:244:0:2::/64')).to.equal('accept');
    expect(decide(bundle, 'fd00:1::12', 'fd00:244:0:1::/64')).to.equal('reject');
  });

  it('mesh off: no node statements; mesh on: one accept per node and family, then the rest of nodes rejected', () => {
    const off = buildImportBundle(validateDesired(desiredState({ importRules: { ...desiredState().importRules, nodePeers: [] } })));
    expect(off.policy.statements.map((s) => s.name)).to.deep.equal(['accept-local', 'reject-own4', 'reject-own6', 'accept-ext-range4', 'accept-ext-range6']);
    const on = buildImportBundle(validateDesired(desiredState()));
    expect(on.policy.statements.map((s) => s.name)).to.deep.equal([
      'accept-local',
      'reject-own4',
      'reject-own6',
      'accept-node0-4',
      'accept-node0-6',
      'reject-nodes-rest',
      'accept-ext-range4',
      'accept-ext-range6',
    ]);
  });

  it('a changed global restarts BGP and rebuilds everything', async () => {
    const before = await applied(desiredState());
    const changes = planBgp(desiredState({ global: { asn: 64513, routerId: '192.168.1.11', listenPort: 179 } }), before);
    expect(kinds(changes).slice(0, 2)).to.deep.equal(['stop-bgp', 'start-bgp']);
    expect((changes[0] as { reason: string }).reason).to.include('asn');
    expect(kinds(changes)).to.include.members(['install-policy', 'add-path', 'add-peer']);
    expect(kinds(changes)).to.not.include('delete-peer');
  });

  it('restarts BGP when gobgpd runs without multipath', async () => {
    const before = await applied(desiredState());
    before.global.useMultiplePaths = false;
    expect(kinds(planBgp(desiredState(), before)).slice(0, 2)).to.deep.equal(['stop-bgp', 'start-bgp']);
  });

  it('flags peer changes as disruptive, timer-only ones included, naming the fields but not the password', async () => {
    const before = await applied(desiredState());
    const d = desiredState();
    d.peers[1] = { ...d.peers[1]!, holdTime: 30, keepaliveInterval: 10 };
    d.peers[0] = { ...d.peers[0]!, password: 'new-secret' };
    const changes = planBgp(d, before);
    expect(changes.filter((c) => c.kind === 'update-peer')).to.deep.equal([
      { kind: 'update-peer', spec: { ...d.peers[0], address: '192.168.1.12' }, disruptive: true, changed: ['password'] },
      { kind: 'update-peer', spec: { ...d.peers[1], address: '192.168.1.1' }, disruptive: true, changed: ['holdTime', 'keepaliveInterval'] },
    ]);
    expect(JSON.stringify(changes.map((c) => (c.kind === 'update-peer' ? c.changed : [])))).to.not.include('new-secret');
  });

  it('turning GTSM on is a peer update naming ttlMin; GTSM with eBGP multihop is refused', async () => {
    const before = await applied(desiredState());
    const d = desiredState();
    d.peers[1] = { ...d.peers[1]!, ttlMin: 254 };
    expect(planBgp(d, before).filter((c) => c.kind === 'update-peer')).to.deep.equal([
      { kind: 'update-peer', spec: { ...d.peers[1], address: '192.168.1.1' }, disruptive: true, changed: ['ttlMin'] },
    ]);
    const next = await afterPasses(desiredState(), d);
    expect(next.plans[1]).to.deep.equal(planBgp(d, before));
    expect(planBgp(d, next.observed)).to.deep.equal([]);
    d.peers[1] = { ...d.peers[1], ebgpMultihopTtl: 2 };
    expect(() => planBgp(d, before)).to.throw(BgpPlanError, /ttlMin/);
  });

  it('plans a prefix-limit change as one disruptive peer update (gobgpd bounces the session), and nothing else', async () => {
    const limited = desiredState();
    limited.peers[1] = { ...limited.peers[1]!, maxPrefixes: 100 };
    const before = await applied(limited);
    expect(before.peers.find((p) => p.address === '192.168.1.1')?.maxPrefixes).to.equal(100);
    expect(planBgp(limited, before)).to.deep.equal([]);
    for (const maxPrefixes of [5000, 0]) {
      const d = desiredState();
      d.peers[1] = { ...d.peers[1]!, maxPrefixes };
      expect(planBgp(d, before)).to.deep.equal([{ kind: 'update-peer', spec: d.peers[1], disruptive: true, changed: ['maxPrefixes'] }]);
    }
    // No limit given compares equal to gobgpd's "none" (0): nothing to do.
    const none = await applied(desiredState());
    expect(none.peers.every((p) => p.maxPrefixes === 0)).to.equal(true);
    const zero = desiredState();
    zero.peers = zero.peers.map((p) => ({ ...p, maxPrefixes: 0 }));
    expect(planBgp(zero, none)).to.deep.equal([]);
  });

  it('does not mistake the local address gobgpd reports for an established session for a config change', async () => {
    const before = await applied(desiredState());
    before.peers = before.peers.map((p) => ({ ...p, localAddress: '192.168.1.11' }));
    expect(planBgp(desiredState(), before)).to.deep.equal([]);
    const d = desiredState();
    d.peers[1] = { ...d.peers[1]!, localAddress: '192.168.1.111' };
    expect(planBgp(d, before).map((c) => (c.kind === 'update-peer' ? c.changed : c.kind))).to.deep.equal([['localAddress']]);
  });

  it('withdraws before it advertises, and replaces a path whose next hop changed', async () => {
    const before = await applied(desiredState());
    const d = desiredState({
      advertise: [
        { prefix: '10.244.1.0/24', nextHop: '192.168.1.111' },
        { prefix: '10.244.9.0/24', nextHop: '192.168.1.11' },
      ],
    });
    const changes = planBgp(d, before);
    const paths = changes.filter((c) => c.kind === 'add-path' || c.kind === 'delete-path');
    expect(paths.map((c) => `${c.kind} ${c.path.prefix}`)).to.deep.equal([
      'delete-path fd00:244:0:1::/64',
      'add-path 10.244.1.0/24',
      'add-path 10.244.9.0/24',
    ]);
    const replaced = paths[1] as Extract<BgpChange, { kind: 'add-path' }>;
    expect(replaced.replaces?.nextHop).to.equal('192.168.1.11');
    expect(kinds(changes).indexOf('delete-path')).to.be.lessThan(kinds(changes).indexOf('install-policy'));
    const next = await afterPasses(desiredState(), d);
    expect(next.plans[1]).to.deep.equal(changes);
    expect(planBgp(d, next.observed)).to.deep.equal([]);
  });

  it('a new import rule installs a new bundle, soft-resets in, and deletes the old bundle last', async () => {
    const before = await applied(desiredState());
    const d = desiredState();
    d.importRules.acceptRanges = [...d.importRules.acceptRanges, '172.31.0.0/16'];
    const changes = planBgp(d, before);
    expect(kinds(changes)).to.deep.equal(['install-policy', 'soft-reset-in', 'delete-policy']);
    const old = before.importPolicy.policies[0]!;
    const del = changes[2] as Extract<BgpChange, { kind: 'delete-policy' }>;
    expect(del.policy).to.equal(old);
    expect(del.sets.map((s) => s.name).every((n) => n.startsWith(`${old}-`))).to.equal(true);
    expect(del.sets.length).to.equal(before.definedSets.filter((s) => s.name.startsWith(`${old}-`)).length);
    const next = await afterPasses(desiredState(), d);
    expect(next.plans[1]).to.deep.equal(changes);
    expect(planBgp(d, next.observed)).to.deep.equal([]);
  });

  it('repairs a drifted assignment without re-creating the bundle, and re-sends what went out under the drift', async () => {
    const before = await applied(desiredState());
    before.exportPolicy = { direction: 'export', policies: [], defaultAction: 'accept' };
    expect(planBgp(desiredState(), before)).to.deep.equal([
      { kind: 'assign-policy', assignment: { direction: 'export', policies: [before.policies[1]!.name], defaultAction: 'reject' } },
      { kind: 'soft-reset-out' },
    ]);
  });

  it('a new export policy soft-resets out once peers are kept (gobgpd re-runs no policy over what it sent), not before any peer exists', async () => {
    const before = await applied(desiredState());
    const d = desiredState();
    d.reflect = { peers: d.importRules.nodePeers.map((p) => p.address), prefixes: ['10.244.7.0/24'] };
    expect(kinds(planBgp(d, before))).to.deep.equal(['install-policy', 'soft-reset-out', 'delete-policy']);
    const fresh = emptyObservedState(before.global);
    expect(kinds(planBgp(d, fresh))).not.to.include('soft-reset-out');
  });

  it('leaves foreign policies and sets alone and removes peers and paths no longer wanted', async () => {
    const before = await applied(desiredState());
    before.policies.push({ name: 'operator-debug', statements: [] });
    before.definedSets.push({ kind: 'prefix', name: 'operator-set', prefixes: [{ prefix: '10.0.0.0/8', minLength: 8, maxLength: 32 }] });
    const d = desiredState({ peers: [desiredState().peers[1]!] });
    d.importRules.nodePeers = [];
    const changes = planBgp(d, before);
    expect(changes[0]).to.deep.equal({ kind: 'delete-peer', address: '192.168.1.12' });
    expect(JSON.stringify(changes)).to.not.include('operator-');
  });

  it('rejects bad input with an error naming the field, before planning anything', () => {
    const bad: [Partial<BgpDesiredState>, RegExp][] = [
      [{ global: { asn: 0, routerId: '1.1.1.1', listenPort: 179 } }, /global\.asn/],
      [{ global: { asn: 1, routerId: 'fd00::1', listenPort: 179 } }, /global\.routerId/],
      [{ global: { asn: 1, routerId: '0.0.0.0', listenPort: 179 } }, /global\.routerId/],
      [{ global: { asn: 1, routerId: '127.0.0.1', listenPort: 179 } }, /global\.routerId/],
      [{ global: { asn: 1, routerId: '224.0.0.1', listenPort: 179 } }, /global\.routerId/],
      [{ advertise: [{ prefix: 'fd00:1::/64', nextHop: '10.0.0.1' }] }, /advertise\[0\]\.nextHop/],
      [{ advertise: [{ prefix: '10.244.1.5/24', nextHop: '10.0.0.1' }] }, /advertise\[0\]\.prefix.*host bits/],
      [{ peers: [{ address: '10.0.0.300', asn: 1 }] }, /peers\[0\]\.address/],
      [{ peers: [{ address: '10.0.0.3', asn: 1 }, { address: '10.0.0.3', asn: 2 }] }, /peers\[1\]\.address.*duplicate/],
      [{ peers: [{ address: '10.0.0.3', asn: 1, holdTime: -1 }] }, /holdTime/],
      [{ peers: [{ address: '10.0.0.3', asn: 1, maxPrefixes: -1 }] }, /peer 10\.0\.0\.3\.maxPrefixes/],
      [{ peers: [{ address: '10.0.0.3', asn: 1, maxPrefixes: 2 ** 32 }] }, /peer 10\.0\.0\.3\.maxPrefixes/],
      // One address validator everywhere: a zone index or a non-standard IPv4 form is not an address.
      [{ peers: [{ address: 'fe80::1%eth0', asn: 1 }] }, /peers\[0\]\.address/],
      [{ peers: [{ address: '010.0.0.3', asn: 1 }] }, /peers\[0\]\.address/],
      [{ advertise: [{ prefix: '10.244.1.0/24', nextHop: '10.1' }] }, /advertise\[0\]\.nextHop/],
      // ...and no prefix either (ipaddr.js, the parser before, read these as 10.0.0.0/16 and 8.0.0.0/8).
      [{ advertise: [{ prefix: '10.1/16', nextHop: '10.0.0.1' }] }, /advertise\[0\]\.prefix.*is not a prefix/],
      [{ advertise: [{ prefix: '010.0.0.0/8', nextHop: '10.0.0.1' }] }, /advertise\[0\]\.prefix.*is not a prefix/],
      [{ advertise: [{ prefix: 'fd00:1::/064', nextHop: 'fd00::1' }] }, /advertise\[0\]\.prefix.*is not a prefix/],
    ];
    for (const [over, re] of bad) {
      expect(() => planBgp(desiredState(over), EMPTY)).to.throw(BgpPlanError, re);
    }
    const r = desiredState();
    r.importRules.acceptRanges = ['10.244.0.0/33'];
    expect(() => planBgp(r, EMPTY)).to.throw(BgpPlanError, /importRules\.acceptRanges\[0\]/);
  });
});

describe('export policy', () => {
  const advertise = [
    { path: { prefix: '10.244.1.0/24', nextHop: '10.10.1.11' }, family: 'ipv4' as const },
    { path: { prefix: 'fd00:10:244:1::/64', nextHop: 'fd00:10:1::b' }, family: 'ipv6' as const },
  ];

  it('rewrites the next hop to the session address towards external peers of the prefix family only', () => {
    const bundle = buildExportBundle(advertise, ['10.10.1.1', '10.10.2.1']);
    const statements = bundle.policy.statements.map((s) => [s.name.replace(/^.*:/, ''), s.nextHopSelf === true, s.match.neighborSet !== undefined]);
    // No IPv6 external peer: the IPv6 prefix rides the IPv4 sessions with its explicit IPv6 next hop.
    expect(statements).to.deep.equal([
      ['self-ours4', true, true],
      ['accept-ours4', false, false],
      ['accept-ours6', false, false],
    ]);
    const neighbors = bundle.sets.find((s) => s.kind === 'neighbor');
    expect(neighbors?.neighbors).to.deep.equal(['10.10.1.1', '10.10.2.1']);
    expect(bundle.defaultAction).to.equal('reject');
  });

  it('keeps explicit next hops when there are only node peers', () => {
    expect(buildExportBundle(advertise, []).policy.statements.every((s) => s.nextHopSelf !== true)).to.equal(true);
  });
});

describe('Service paths', () => {
  const services = {
    ranges: ['203.0.113.0/26', '2001:db8:200::/120', '10.96.0.0/16'],
    peers: ['192.168.1.1'],
    paths: [
      { prefix: '203.0.113.1/32', nextHop: '192.168.1.11' },
      { prefix: '2001:db8:200::1/128', nextHop: 'fd00:1::11' },
      { prefix: '10.96.0.0/16', nextHop: '192.168.1.11' },
    ],
  };

  /** gobgpd's export evaluation: the neighbour set names the peer the route is sent to; routeType local = ours. */
  function exported(bundle: PolicyBundle, to: string, route: string, ours: boolean): { action: 'accept' | 'reject'; nextHopSelf: boolean } {
    const sets = new Map(bundle.sets.map((s) => [s.name, s]));
    for (const st of bundle.policy.statements) {
      let match = true;
      if (st.match.routeType) match &&= (st.match.routeType === 'local') === ours;
      if (st.match.prefixSet) match &&= inSet(sets.get(st.match.prefixSet.name)!, route);
      if (st.match.neighborSet) match &&= (sets.get(st.match.neighborSet.name)!.neighbors ?? []).includes(to);
      if (match && st.action !== 'next') return { action: st.action, nextHopSelf: st.nextHopSelf === true };
    }
    return { action: bundle.defaultAction, nextHopSelf: false };
  }

  it('go to the service peers only, as our own paths, never to node peers; a learned route in the ranges goes nowhere', () => {
    const valid = validateDesired(desiredState({ services }));
    const bundle = buildExportBundle(valid.advertise, ['192.168.1.1', '192.168.1.2'], { ...valid.services, peers: ['192.168.1.1'] });
    // The ToR gets them, with its session address as next hop in the session's own family.
    expect(exported(bundle, '192.168.1.1', '203.0.113.1/32', true)).to.deep.equal({ action: 'accept', nextHopSelf: true });
    expect(exported(bundle, '192.168.1.1', '10.96.0.0/16', true)).to.deep.equal({ action: 'accept', nextHopSelf: true });
    expect(exported(bundle, '192.168.1.1', '2001:db8:200::1/128', true)).to.deep.equal({ action: 'accept', nextHopSelf: false });
    // A node peer, and an external peer that does not carry Services, get none.
    for (const to of ['192.168.1.12', '192.168.1.2']) {
      for (const route of ['203.0.113.1/32', '2001:db8:200::1/128', '10.96.0.0/16']) expect(exported(bundle, to, route, true).action, `${route} to ${to}`).to.equal('reject');
    }
    // A Service route learned from a peer is not ours to pass on.
    expect(exported(bundle, '192.168.1.1', '203.0.113.1/32', false).action).to.equal('reject');
    // Pod paths are unchanged: to everybody, next hop rewritten towards the ToRs.
    expect(exported(bundle, '192.168.1.12', '10.244.1.0/24', true)).to.deep.equal({ action: 'accept', nextHopSelf: false });
    expect(exported(bundle, '192.168.1.1', '10.244.1.0/24', true)).to.deep.equal({ action: 'accept', nextHopSelf: true });
  });

  it('an endpoint coming and going only adds and withdraws the path: the policy stays', async () => {
    const withPaths = desiredState({ services });
    const withAll = await applied(withPaths);
    expect(withAll.paths.map((p) => p.prefix)).to.include.members(['203.0.113.1/32', '2001:db8:200::1/128', '10.96.0.0/16']);
    const gone = desiredState({ services: { ...services, paths: services.paths.slice(1) } });
    expect(planBgp(gone, withAll).map((c) => [c.kind, 'path' in c ? c.path.prefix : ''])).to.deep.equal([['delete-path', '203.0.113.1/32']]);
    const { plans, observed: back } = await afterPasses(withPaths, gone);
    expect(plans[1]).to.deep.equal(planBgp(gone, withAll));
    expect(planBgp(withPaths, back).map((c) => [c.kind, 'path' in c ? c.path.prefix : ''])).to.deep.equal([['add-path', '203.0.113.1/32']]);
  });

  it('no service peers: no service statements, and the paths stay in gobgpd unsent', () => {
    const bundle = buildExportBundle([], ['192.168.1.1'], validateDesired(desiredState({ services: { ...services, peers: [] } })).services);
    expect(bundle.policy.statements.filter((s) => /svc/.test(s.name))).to.deep.equal([]);
  });

  it('refuses a service path outside the ranges, or one that is also a podCIDR path', () => {
    expect(() => validateDesired(desiredState({ services: { ...services, paths: [{ prefix: '198.51.100.1/32', nextHop: '192.168.1.11' }] } }))).to.throw(
      BgpPlanError,
      'services.paths[0].prefix: 198.51.100.1/32 is inside none of services.ranges',
    );
    expect(() =>
      validateDesired(desiredState({ services: { ranges: ['10.244.0.0/16'], peers: [], paths: [{ prefix: '10.244.1.0/24', nextHop: '192.168.1.11' }] } })),
    ).to.throw(BgpPlanError, 'duplicate prefix 10.244.1.0/24');
  });
});

describe('route-reflector role changes (make-before-break)', () => {
  const nodePeer = (last: number, clusterId?: string) => ({ address: `192.168.1.${last}`, asn: 64512, description: `node:n${last}`, ...(clusterId === undefined ? {} : { routeReflectorClusterId: clusterId }) });
  const asClient = desiredState({ peers: [nodePeer(21), nodePeer(22)], importRules: { ...desiredState().importRules, nodePeers: [], externalPeers: [] } });
  // Promoted to a reflector: the other reflectors become its clients, and it gains the former fellow clients.
  const asReflector = desiredState({
    peers: [nodePeer(21, '10.0.0.1'), nodePeer(22, '10.0.0.1'), nodePeer(31, '10.0.0.1')],
    importRules: { ...desiredState().importRules, nodePeers: [], externalPeers: [] },
  });
  const withEstablished = (observed: ObservedBgpState, addresses: string[]): ObservedBgpState => ({ ...observed, establishedPeers: addresses });

  it('adds the new sessions first; no role change while one of them is not Established; never an update-peer', async () => {
    const before = await applied(asClient);
    const changes = planBgp(asReflector, withEstablished(before, ['192.168.1.21', '192.168.1.22']));
    expect(kinds(changes).filter((k) => k.includes('peer'))).to.deep.equal(['add-peer', 'defer-peer', 'defer-peer']);
    expect(changes.find((c) => c.kind === 'add-peer')).to.deep.include({ spec: nodePeer(31, '10.0.0.1') });
    expect(changes.filter((c) => c.kind === 'defer-peer').map((c) => (c as { reason: string }).reason)).to.deep.equal([
      'waiting for 192.168.1.31 to be Established',
      'waiting for 192.168.1.31 to be Established',
    ]);
  });

  it('then changes one Established session at a time while every other one carries the routes', async () => {
    const { observed } = await afterPasses(asClient);
    const withNew = { ...observed, peers: [...observed.peers, (await applied(asReflector)).peers.find((p) => p.address === '192.168.1.31')!] };
    const all = ['192.168.1.21', '192.168.1.22', '192.168.1.31'];
    const first = planBgp(asReflector, withEstablished(withNew, all)).filter((c) => c.kind.includes('peer'));
    expect(first.map((c) => [c.kind, 'spec' in c ? c.spec.address : (c as { address: string }).address])).to.deep.equal([
      ['change-peer-role', '192.168.1.21'],
      ['defer-peer', '192.168.1.22'],
    ]);
    expect(first[0]).to.deep.include({ changed: ['routeReflectorClusterId'] });
    // 21 is being reset (not Established yet): 22 waits for it.
    const recreated = { ...withNew, peers: withNew.peers.map((p) => (p.address === '192.168.1.21' ? { ...p, routeReflectorClusterId: '10.0.0.1' } : p)) };
    const second = planBgp(asReflector, withEstablished(recreated, ['192.168.1.22', '192.168.1.31'])).filter((c) => c.kind.includes('peer'));
    expect(second).to.deep.equal([{ kind: 'defer-peer', address: '192.168.1.22', reason: 'waiting for 192.168.1.21 to be Established' }]);
    const third = planBgp(asReflector, withEstablished(recreated, all)).filter((c) => c.kind.includes('peer'));
    expect(third.map((c) => c.kind)).to.deep.equal(['change-peer-role']);
  });

  it('changes a session that is down at once: nothing rides on it', async () => {
    const before = await applied(asClient);
    const changes = planBgp(asReflector, withEstablished(before, ['192.168.1.21']));
    expect(changes.filter((c) => c.kind.includes('peer')).map((c) => [c.kind, 'spec' in c ? c.spec.address : (c as { address: string }).address])).to.deep.equal([
      ['add-peer', '192.168.1.31'],
      ['change-peer-role', '192.168.1.22'],
      ['defer-peer', '192.168.1.21'],
    ]);
  });

  it('through the reconciler, converges to the new roles: each changed peer carries its cluster ID', async () => {
    const { plans, observed } = await afterPasses(asClient, asReflector, asReflector, asReflector, asReflector);
    expect(plans.slice(1).map((p) => kinds(p).filter((k) => k.includes('peer')))).to.deep.equal([
      ['add-peer', 'defer-peer', 'defer-peer'],
      ['change-peer-role', 'defer-peer'],
      ['change-peer-role'],
      [],
    ]);
    expect(observed.peers.map((p) => [p.address, p.routeReflectorClusterId]).sort()).to.deep.equal([
      ['192.168.1.21', '10.0.0.1'],
      ['192.168.1.22', '10.0.0.1'],
      ['192.168.1.31', '10.0.0.1'],
    ]);
    // Back to a client: the same one-at-a-time way, and the former clients' sessions go.
    const back = await afterPasses(asReflector, asClient, asClient);
    expect(back.plans.map((p) => kinds(p).filter((k) => k.includes('peer')))).to.deep.equal([
      ['add-peer', 'add-peer', 'add-peer'],
      ['delete-peer', 'change-peer-role', 'defer-peer'],
      ['change-peer-role'],
    ]);
    expect(back.observed.peers.map((p) => p.routeReflectorClusterId)).to.deep.equal(['', '']);
  });
});
