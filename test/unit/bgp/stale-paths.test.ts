// Stale paths kept across a watch restart (graceful restart on the receiving side): the pure merge rule.
import { expect } from 'chai';
import { mergeStalePaths, restartWindowMs } from '../../../src/bgp/learned-table.js';
import type { LearnedPath } from '../../../src/bgp/types.js';

const path = (prefix: string, neighborIp: string, nextHop = neighborIp): LearnedPath => ({ prefix, family: 'ipv4', nextHop, neighborIp, asPath: [65001], isWithdraw: false });

describe('mergeStalePaths', () => {
  it('keeps the stale paths of retained neighbors while nothing fresh came', () => {
    const stale = [path('10.244.3.0/24', '10.10.1.1'), path('10.244.3.0/24', '10.10.1.12')];
    expect(mergeStalePaths(undefined, stale, new Set(['10.10.1.1', '10.10.1.12']))).to.deep.equal(stale);
  });

  it("drops a released neighbor's stale paths", () => {
    const stale = [path('10.244.3.0/24', '10.10.1.1'), path('10.244.3.0/24', '10.10.1.12')];
    expect(mergeStalePaths(undefined, stale, new Set(['10.10.1.12']))).to.deep.equal([stale[1]]);
    expect(mergeStalePaths(undefined, stale, new Set())).to.equal(undefined);
  });

  it("a neighbor's fresh paths replace its stale ones; other neighbors' stale ones stay beside them", () => {
    const stale = [path('10.244.3.0/24', '10.10.1.1', '10.10.1.1'), path('10.244.3.0/24', '10.10.1.12')];
    const fresh = [path('10.244.3.0/24', '10.10.1.1', '10.10.1.99')];
    expect(mergeStalePaths(fresh, stale, new Set(['10.10.1.1', '10.10.1.12']))).to.deep.equal([fresh[0], stale[1]]);
  });

  it('fresh paths alone when no stale table', () => {
    const fresh = [path('10.244.3.0/24', '10.10.1.1')];
    expect(mergeStalePaths(fresh, undefined, new Set(['10.10.1.1']))).to.deep.equal(fresh);
    expect(mergeStalePaths([], undefined, new Set())).to.equal(undefined);
  });
});

describe('restartWindowMs', () => {
  it('is the longest restartTime of the peers with graceful restart, 0 without', () => {
    const desired = (peers: { gracefulRestart?: { enabled: boolean; restartTime: number } }[]) => ({
      global: { asn: 64601, routerId: '10.0.0.1', listenPort: 179 },
      peers: peers.map((p, i) => ({ address: `10.0.0.${i + 2}`, asn: 65001, ...p })),
      advertise: [],
      importRules: { nodePeers: [], externalPeers: [], acceptRanges: [], ownPodCIDRs: [] },
    });
    expect(restartWindowMs(undefined)).to.equal(0);
    expect(restartWindowMs(desired([{}, { gracefulRestart: { enabled: false, restartTime: 300 } }]))).to.equal(0);
    expect(restartWindowMs(desired([{ gracefulRestart: { enabled: true, restartTime: 120 } }, { gracefulRestart: { enabled: true, restartTime: 30 } }]))).to.equal(120_000);
  });
});
