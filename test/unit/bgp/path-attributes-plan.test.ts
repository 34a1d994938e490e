// The planner and the applier with communities and LOCAL_PREF on our paths: a changed set re-adds the path (AddPath
// of the same prefix replaces it, as for a changed next hop), an equal set in another order changes nothing.
import { expect } from 'chai';
import { BgpPlanError, emptyObservedState, planBgp, type BgpChange, type BgpDesiredState, type ObservedBgpState } from '../../../src/bgp/bgp-planner.js';
import { normalizePeerSpec } from '../../../src/bgp/gobgp-codec.js';
import { BgpReconciler } from '../../../src/bgp/bgp-reconciler.js';
import { FakeGobgpRouter } from './fake-router.js';

const SELF = '192.168.1.11';
const POD_V4 = '10.244.1.0/24';
const SERVICE = '203.0.113.5/32';

function desired(pod: { communities?: string[]; largeCommunities?: string[]; localPref?: number } = {}, service: { communities?: string[] } = {}): BgpDesiredState {
  return {
    global: { asn: 64512, routerId: SELF, listenPort: 179 },
    peers: [{ address: '192.168.1.1', asn: 65001, description: 'tor:tor1' }],
    advertise: [{ prefix: POD_V4, nextHop: SELF, ...pod }],
    services: { paths: [{ prefix: SERVICE, nextHop: SELF, ...service }], ranges: ['203.0.113.0/24'], peers: ['192.168.1.1'] },
    importRules: { nodePeers: [], externalPeers: ['192.168.1.1'], acceptRanges: ['10.244.0.0/16'], ownPodCIDRs: [POD_V4] },
  };
}

/** The plan's path changes against a gobgpd that holds exactly `paths` and everything else as desired. */
function pathChanges(want: BgpDesiredState, paths: ObservedBgpState['paths']): BgpChange[] {
  const observed = emptyObservedState({ asn: 64512, routerId: SELF, listenPort: 179, useMultiplePaths: true });
  for (const c of planBgp(want, observed)) {
    if (c.kind !== 'install-policy') continue;
    observed.policies.push(c.bundle.policy);
    observed.definedSets.push(...c.bundle.sets);
    const assignment = { direction: c.bundle.direction, policies: [c.bundle.policy.name], defaultAction: c.bundle.defaultAction };
    if (c.bundle.direction === 'import') observed.importPolicy = assignment;
    else observed.exportPolicy = assignment;
  }
  observed.peers = want.peers.map(normalizePeerSpec);
  observed.paths = paths;
  const changes = planBgp(want, observed);
  // Only paths may differ; anything else would mean the helper, not the planner, is wrong.
  expect(changes.filter((c) => c.kind !== 'add-path')).to.deep.equal([]);
  return changes;
}

describe('BGP planner: communities and local preference of our paths', () => {
  it('adds paths with canonical attributes: sorted, well-known names as numbers, empty lists left out', () => {
    const plan = planBgp(desired({ communities: ['no-export', '65000:100', '65000:100'], largeCommunities: [], localPref: 200 }, { communities: ['65000:200'] }), emptyObservedState({ asn: 0, routerId: '', listenPort: 0, useMultiplePaths: false }));
    const adds = plan.flatMap((c) => (c.kind === 'add-path' ? [c.path] : []));
    expect(adds).to.deep.equal([
      { prefix: POD_V4, nextHop: SELF, communities: ['65000:100', '65535:65281'], localPref: 200 },
      { prefix: SERVICE, nextHop: SELF, communities: ['65000:200'] },
    ]);
  });

  it('re-adds exactly the path whose communities, large communities or local preference changed', () => {
    const held = [
      { prefix: POD_V4, nextHop: SELF, communities: ['65000:100'], uuid: 'a'.repeat(32) },
      { prefix: SERVICE, nextHop: SELF, uuid: 'b'.repeat(32) },
    ];
    expect(pathChanges(desired({ communities: ['65000:100'] }), held)).to.deep.equal([]);
    const changed = pathChanges(desired({ communities: ['65000:101'] }), held);
    expect(changed).to.deep.equal([{ kind: 'add-path', path: { prefix: POD_V4, nextHop: SELF, communities: ['65000:101'] }, family: 'ipv4', replaces: held[0] }]);
    expect(pathChanges(desired({ communities: ['65000:100'], largeCommunities: ['1:2:3'] }), held)).to.have.length(1);
    expect(pathChanges(desired({ communities: ['65000:100'], localPref: 300 }), held)).to.have.length(1);
    // Removing every community is a change too: the path is re-added bare.
    expect(pathChanges(desired(), held)).to.deep.equal([{ kind: 'add-path', path: { prefix: POD_V4, nextHop: SELF }, family: 'ipv4', replaces: held[0] }]);
    // The service class independently.
    expect(pathChanges(desired({ communities: ['65000:100'] }, { communities: ['no-advertise'] }), held)).to.deep.equal([
      { kind: 'add-path', path: { prefix: SERVICE, nextHop: SELF, communities: ['65535:65282'] }, family: 'ipv4', replaces: held[1] },
    ]);
  });

  it('takes communities gobgpd reports in another order as the same set', () => {
    const held = [
      { prefix: POD_V4, nextHop: SELF, communities: ['65535:65281', '65000:100'], largeCommunities: ['9:9:9', '1:2:3'], localPref: 200 },
      { prefix: SERVICE, nextHop: SELF },
    ];
    expect(pathChanges(desired({ communities: ['65000:100', 'no-export'], largeCommunities: ['1:2:3', '9:9:9'], localPref: 200 }), held)).to.deep.equal([]);
  });

  it('refuses a bad community before planning anything, naming the path and the entry', () => {
    const empty = emptyObservedState({ asn: 0, routerId: '', listenPort: 0, useMultiplePaths: false });
    expect(() => planBgp(desired({ communities: ['65000:100', '65000:100000'] }), empty))
      .to.throw(BgpPlanError)
      .with.property('message')
      .that.matches(/advertise\[0\]\.communities\[1\]: "65000:100000" is not a community/);
    expect(() => planBgp(desired({}, { communities: ['nope'] }), empty)).to.throw(/services\.paths\[0\]\.communities\[0\]/);
  });
});

describe('BGP applier: a changed community set against an in-memory gobgpd', () => {
  it('converges, replaces the path in place on a change, and then changes nothing', async () => {
    const fake = new FakeGobgpRouter();
    const reconciler = new BgpReconciler({ client: fake });
    await reconciler.syncOnce(desired({ communities: ['65000:100'] }));
    expect(await reconciler.syncOnce(desired({ communities: ['65000:100'] }))).to.deep.equal([]);
    const changes = await reconciler.syncOnce(desired({ communities: ['65000:100', 'no-export'], largeCommunities: ['65000:1:2'] }));
    expect(changes.map((c) => c.kind)).to.deep.equal(['add-path']);
    const pod = [...fake.paths.values()].filter((p) => p.prefix === POD_V4);
    expect(pod).to.deep.equal([{ prefix: POD_V4, nextHop: SELF, communities: ['65000:100', '65535:65281'], largeCommunities: ['65000:1:2'] }]);
    expect(await reconciler.syncOnce(desired({ communities: ['no-export', '65000:100'], largeCommunities: ['65000:1:2'] }))).to.deep.equal([]);
  });
});
