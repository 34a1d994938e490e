import { expect } from 'chai';
import fc from 'fast-check';
import type { LearnedPath } from '../../../src/bgp/types.js';
import { RouteInputError } from '../../../src/routes/errors.js';
import { familyOf, parseIpAddress, parseIpPrefix, prefixContains, prefixContainsAddress, prefixesOverlap } from '../../../src/routes/ip-prefix.js';
import { selectRoutes, type RouteSelectionContext } from '../../../src/routes/select-routes.js';
import { CONTEXT } from './selection-context.js';


function path(prefix: string, nextHop: string, extra: Partial<LearnedPath> = {}): LearnedPath {
  return {
    prefix,
    family: familyOf(prefix),
    nextHop,
    neighborIp: nextHop,
    asPath: [],
    isWithdraw: false,
    ...extra,
  };
}

const fromNode2 = (prefix: string) => path(prefix, familyOf(prefix) === 'ipv6' ? 'fd00:1::11' : '10.0.1.11');
const viaTor = (prefix: string, tor: 1 | 2, asPath: number[], extra: Partial<LearnedPath> = {}) =>
  path(prefix, familyOf(prefix) === 'ipv6' ? `fd00:1::${tor}` : `10.0.1.${tor}`, { asPath, ...extra });

describe('routes/selectRoutes', () => {
  it('installs a node podCIDR learned over iBGP from that node, v4 and v6', () => {
    const result = selectRoutes([fromNode2('10.244.2.0/24'), fromNode2('fd00:244:2::/64')], CONTEXT);
    expect(result.routes).to.deep.equal([
      { prefix: '10.244.2.0/24', nextHops: ['10.0.1.11'] },
      { prefix: 'fd00:244:2::/64', nextHops: ['fd00:1::11'] },
    ]);
    expect(result.rejected).to.deep.equal([]);
  });

  it('accepts an iBGP path reflected by someone else when the next hop is the owner', () => {
    const reflected = path('10.244.2.0/24', '10.0.1.11', { neighborIp: '10.0.1.200' });
    expect(selectRoutes([reflected], CONTEXT).routes).to.deep.equal([{ prefix: '10.244.2.0/24', nextHops: ['10.0.1.11'] }]);
  });

  it('makes one ECMP route of equally good paths through two ToRs, next hops sorted and deduplicated', () => {
    const result = selectRoutes(
      [
        viaTor('10.244.3.0/24', 2, [65002, 65003]),
        viaTor('10.244.3.0/24', 1, [65001, 65003]),
        viaTor('10.244.3.0/24', 1, [65001, 65003]),
        viaTor('fd00:244:3::/64', 2, [65002, 65003]),
        viaTor('fd00:244:3::/64', 1, [65001, 65003]),
      ],
      CONTEXT,
    );
    expect(result.routes).to.deep.equal([
      { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1', '10.0.1.2'] },
      { prefix: 'fd00:244:3::/64', nextHops: ['fd00:1::1', 'fd00:1::2'] },
    ]);
  });

  it('prefers local-pref, then AS path length, then origin, then MED within one neighbor AS', () => {
    const cases: { paths: LearnedPath[]; nextHops: string[] }[] = [
      { paths: [viaTor('10.244.3.0/24', 1, [65001, 65003], { localPref: 200 }), viaTor('10.244.3.0/24', 2, [65002, 65003])], nextHops: ['10.0.1.1'] },
      { paths: [viaTor('10.244.3.0/24', 1, [65001, 65009, 65003]), viaTor('10.244.3.0/24', 2, [65002, 65003])], nextHops: ['10.0.1.2'] },
      { paths: [viaTor('10.244.3.0/24', 1, [65001, 65003], { origin: 'incomplete' }), viaTor('10.244.3.0/24', 2, [65002, 65003], { origin: 'egp' })], nextHops: ['10.0.1.2'] },
      // Same neighbor AS: MED decides.
      { paths: [viaTor('10.244.3.0/24', 1, [65001, 65003], { med: 20 }), path('10.244.3.0/24', '10.0.1.3', { asPath: [65001, 65003], med: 10 })], nextHops: ['10.0.1.3'] },
      // Different neighbor AS: MED is not compared, both stay.
      { paths: [viaTor('10.244.3.0/24', 1, [65001, 65003], { med: 20 }), viaTor('10.244.3.0/24', 2, [65002, 65003], { med: 10 })], nextHops: ['10.0.1.1', '10.0.1.2'] },
    ];
    for (const { paths, nextHops } of cases) {
      expect(selectRoutes(paths, CONTEXT).routes).to.deep.equal([{ prefix: '10.244.3.0/24', nextHops }]);
    }
  });

  it('keeps only the best group even when a worse path comes from a lower address', () => {
    const result = selectRoutes(
      [viaTor('10.244.3.0/24', 1, [65001, 65009, 65003]), viaTor('10.244.3.0/24', 2, [65002, 65003]), path('10.244.3.0/24', '10.0.1.3', { asPath: [65004, 65003] })],
      CONTEXT,
    );
    expect(result.routes).to.deep.equal([{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.2', '10.0.1.3'] }]);
  });

  it('rejects our own podCIDRs, whether equal, covering or inside', () => {
    const result = selectRoutes(
      [fromNode2('10.244.1.0/24'), viaTor('10.244.0.0/16', 1, [65001]), viaTor('10.244.1.128/25', 1, [65001]), fromNode2('fd00:244:1::/64'), viaTor('::/0', 1, [65001])],
      CONTEXT,
    );
    expect(result.routes).to.deep.equal([]);
    expect(result.rejected.map((r) => [r.prefix, r.reason])).to.deep.equal([
      ['10.244.0.0/16', 'own-podcidr'],
      ['10.244.1.0/24', 'own-podcidr'],
      ['10.244.1.128/25', 'own-podcidr'],
      ['::/0', 'own-podcidr'],
      ['fd00:244:1::/64', 'own-podcidr'],
    ]);
  });

  it('rejects prefixes outside the accept ranges and takes the extra ranges', () => {
    const result = selectRoutes([viaTor('8.8.8.0/24', 1, [65001]), viaTor('192.168.100.0/24', 1, [65001]), viaTor('2001:db8::/32', 1, [65001])], CONTEXT);
    expect(result.routes).to.deep.equal([{ prefix: '192.168.100.0/24', nextHops: ['10.0.1.1'] }]);
    expect(result.rejected.map((r) => [r.prefix, r.reason, r.neighborIp])).to.deep.equal([
      ['8.8.8.0/24', 'outside-accept-ranges', '10.0.1.1'],
      ['2001:db8::/32', 'outside-accept-ranges', 'fd00:1::1'],
    ]);
  });

  it('rejects a prefix inside the cluster pod ranges that is no known node podCIDR (a deleted node, an unallocated range)', () => {
    const result = selectRoutes([viaTor('10.244.9.0/24', 1, [65001, 65009]), viaTor('fd00:244:9::/64', 1, [65001, 65009]), viaTor('10.244.0.0/16', 1, [65001])], CONTEXT);
    expect(result.routes).to.deep.equal([]);
    expect(result.rejected.map((r) => [r.prefix, r.reason])).to.deep.equal([
      ['10.244.0.0/16', 'own-podcidr'],
      ['10.244.9.0/24', 'not-a-node-podcidr'],
      ['fd00:244:9::/64', 'not-a-node-podcidr'],
    ]);
  });

  it('rejects a more-specific inside another node podCIDR', () => {
    const result = selectRoutes([fromNode2('10.244.3.0/25'), viaTor('fd00:244:3::/80', 1, [65001, 65003])], CONTEXT);
    expect(result.routes).to.deep.equal([]);
    expect(result.rejected.map((r) => r.reason)).to.deep.equal(['more-specific-hijack', 'more-specific-hijack']);
  });

  it("accepts another node's exact podCIDR only from that node", () => {
    const result = selectRoutes(
      [
        fromNode2('10.244.3.0/24'), // node-2 (iBGP, empty AS path) announcing node-3's range
        viaTor('fd00:244:3::/64', 1, [65001]), // the ToR originating node-3's range
        viaTor('10.244.2.0/24', 1, [65001, 65003]), // node-2's range with node-3 as origin
        viaTor('fd00:244:2::/64', 1, [65001, 64512]), // node-2's range with node-2's AS as origin: fine
      ],
      CONTEXT,
    );
    expect(result.routes).to.deep.equal([{ prefix: 'fd00:244:2::/64', nextHops: ['fd00:1::1'] }]);
    expect(result.rejected.map((r) => [r.prefix, r.reason])).to.deep.equal([
      ['10.244.2.0/24', 'not-from-owner'],
      ['10.244.3.0/24', 'not-from-owner'],
      ['fd00:244:3::/64', 'not-from-owner'],
    ]);
  });

  it('does not install paths whose next hop is not on-link, link-local, of the other family or invalid', () => {
    const result = selectRoutes(
      [
        path('10.244.3.0/24', '10.0.3.1', { asPath: [65001, 65003] }),
        path('fd00:244:3::/64', 'fe80::1', { asPath: [65001, 65003], neighborIp: '10.0.1.1' }),
        path('10.244.2.0/24', 'fd00:1::11', { neighborIp: '10.0.1.11' }),
        path('192.168.100.0/25', 'not-an-ip', { asPath: [65001] }),
        path('192.168.100.128/25', '0.0.0.0', { asPath: [65001] }),
      ],
      CONTEXT,
    );
    expect(result.routes).to.deep.equal([]);
    expect(result.rejected.map((r) => [r.prefix, r.reason])).to.deep.equal([
      ['10.244.2.0/24', 'nexthop-family-mismatch'],
      ['10.244.3.0/24', 'nexthop-not-onlink'],
      ['192.168.100.0/25', 'invalid-nexthop'],
      ['192.168.100.128/25', 'invalid-nexthop'],
      ['fd00:244:3::/64', 'nexthop-link-local'],
    ]);
  });

  it('never takes a next hop inside its own podCIDRs, even when the pod bridge makes them on-link', () => {
    // The bridge's subnet is a connected network; a pod there must not become the gateway to another node's pods.
    const context: RouteSelectionContext = { ...CONTEXT, onLinkNetworks: [...CONTEXT.onLinkNetworks, '10.244.1.0/24', 'fd00:244:1::/64'] };
    const result = selectRoutes(
      [
        path('10.244.3.0/24', '10.244.1.23', { asPath: [65001, 65003], neighborIp: '10.0.1.1' }),
        path('fd00:244:3::/64', 'fd00:244:1::17', { asPath: [65001, 65003], neighborIp: '10.0.1.1' }),
        path('192.168.100.0/24', '10.244.1.1', { asPath: [65001], neighborIp: '10.0.1.1' }),
      ],
      context,
    );
    expect(result.routes).to.deep.equal([]);
    expect(result.rejected.map((r) => [r.prefix, r.reason])).to.deep.equal([
      ['10.244.3.0/24', 'nexthop-in-own-podcidr'],
      ['192.168.100.0/24', 'nexthop-in-own-podcidr'],
      ['fd00:244:3::/64', 'nexthop-in-own-podcidr'],
    ]);
  });

  it('falls back to the on-link path when the better one is off-link', () => {
    const result = selectRoutes(
      [path('10.244.3.0/24', '10.0.3.1', { asPath: [65003], neighborIp: '10.0.3.10' }), viaTor('10.244.3.0/24', 1, [65001, 65003])],
      CONTEXT,
    );
    expect(result.routes).to.deep.equal([{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] }]);
    expect(result.rejected.map((r) => r.reason)).to.deep.equal(['nexthop-not-onlink']);
  });

  it('ignores withdrawn and locally originated paths', () => {
    const { neighborIp: _, ...local } = fromNode2('10.244.2.0/24');
    const result = selectRoutes([{ ...fromNode2('10.244.2.0/24'), isWithdraw: true }, local], CONTEXT);
    expect(result).to.deep.equal({ routes: [], rejected: [] });
  });

  it('canonicalizes prefixes and next hops (v6 formatting, host bits, case)', () => {
    const result = selectRoutes(
      [path('FD00:244:0002:0000::/64', 'FD00:1:0:0::11', { neighborIp: 'fd00:1::11' }), path('10.244.2.7/24', '10.0.1.11')],
      CONTEXT,
    );
    expect(result.routes).to.deep.equal([
      { prefix: '10.244.2.0/24', nextHops: ['10.0.1.11'] },
      { prefix: 'fd00:244:2::/64', nextHops: ['fd00:1::11'] },
    ]);
  });

  it('rejects an unparseable prefix without throwing', () => {
    const result = selectRoutes([path('10.244.300.0/24', '10.0.1.1', { asPath: [65001] })], CONTEXT);
    expect(result.rejected).to.deep.equal([{ prefix: '10.244.300.0/24', neighborIp: '10.0.1.1', nextHop: '10.0.1.1', reason: 'invalid-prefix' }]);
  });

  it('names the bad field of a malformed context', () => {
    const bad: [Partial<RouteSelectionContext>, string][] = [
      [{ acceptRanges: ['10.244.0.0/16', '10.244.0.0/33'] }, 'context.acceptRanges[1]'],
      [{ ownPodCIDRs: ['nope'] }, 'context.ownPodCIDRs[0]'],
      [{ onLinkNetworks: ['10.0.1.0/24', ''] }, 'context.onLinkNetworks[1]'],
      [{ localAsn: -1 }, 'context.localAsn'],
      [{ nodes: [{ name: 'x', podCIDRs: ['10.244.9.0/24'], asn: 1, addresses: ['10.0.0.300'] }] }, 'context.nodes[0].addresses[0]'],
      [{ nodes: [{ name: 'x', podCIDRs: ['10.244.9.0/240'], asn: 1, addresses: [] }] }, 'context.nodes[0].podCIDRs[0]'],
      [{ nodes: [{ name: 'x', podCIDRs: [], asn: 1.5, addresses: [] }] }, 'context.nodes[0].asn'],
    ];
    for (const [patch, field] of bad) {
      expect(() => selectRoutes([], { ...CONTEXT, ...patch }), field)
        .to.throw(RouteInputError)
        .with.property('field', field);
    }
  });

  describe('properties', () => {
    // A small universe so that random paths collide on prefixes and next hops often.
    const prefixArb = fc.oneof(
      fc.constantFrom('10.244.1.0/24', '10.244.0.0/16', '10.244.2.0/24', '10.244.3.0/24', '10.244.3.0/25', '0.0.0.0/0', '8.8.0.0/16', '192.168.100.0/24'),
      fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 8, max: 32 })).map(([b, l]) => `10.244.${b}.${b}/${l}`),
      fc.constantFrom('fd00:244:1::/64', 'fd00:244:1:0:8000::/65', 'fd00:244::/32', 'fd00:244:3::/64', 'fd00:244:9::/64', '2001:db8::/32'),
    );
    const nextHopArb = fc.constantFrom('10.0.1.1', '10.0.1.2', '10.0.1.11', '10.0.3.1', 'fd00:1::1', 'fd00:1::11', 'fd00:3::1', 'fe80::1');
    const pathArb = fc.record({
      prefix: prefixArb,
      nextHop: nextHopArb,
      neighborIp: fc.option(nextHopArb, { nil: undefined }),
      asPath: fc.array(fc.constantFrom(64512, 65001, 65002, 65003), { maxLength: 3 }),
      localPref: fc.option(fc.constantFrom(50, 100, 200), { nil: undefined }),
      med: fc.option(fc.constantFrom(0, 10, 20), { nil: undefined }),
      origin: fc.option(fc.constantFrom('igp' as const, 'egp' as const, 'incomplete' as const), { nil: undefined }),
      isWithdraw: fc.boolean(),
    }).map((p): LearnedPath => ({ ...p, family: familyOf(p.prefix) }));
    const pathsArb = fc.array(pathArb, { maxLength: 40 });

    const own = CONTEXT.ownPodCIDRs.map((c) => parseIpPrefix(c)!);
    const accept = CONTEXT.acceptRanges.map((c) => parseIpPrefix(c)!);
    const onLink = CONTEXT.onLinkNetworks.map((c) => parseIpPrefix(c)!);

    it('never outputs a prefix overlapping our own podCIDRs, nor one outside the accept ranges', () => {
      fc.assert(
        fc.property(pathsArb, (paths) => {
          for (const route of selectRoutes(paths, CONTEXT).routes) {
            const prefix = parseIpPrefix(route.prefix)!;
            expect(own.some((o) => prefixesOverlap(o, prefix)), route.prefix).to.equal(false);
            expect(accept.some((a) => prefixContains(a, prefix)), route.prefix).to.equal(true);
          }
        }),
      );
    });

    it('only uses on-link next hops that some live path for the prefix carried', () => {
      fc.assert(
        fc.property(pathsArb, (paths) => {
          for (const route of selectRoutes(paths, CONTEXT).routes) {
            expect(route.nextHops.length).to.be.greaterThan(0);
            for (const hop of route.nextHops) {
              expect(onLink.some((n) => prefixContainsAddress(n, parseIpAddress(hop)!)), hop).to.equal(true);
              const carried = paths.some(
                (p) => !p.isWithdraw && p.neighborIp !== undefined && parseIpPrefix(p.prefix)?.text === route.prefix && parseIpAddress(p.nextHop)?.text === hop,
              );
              expect(carried, `${route.prefix} via ${hop}`).to.equal(true);
            }
          }
        }),
      );
    });

    it('is deterministic and independent of the order of the paths', () => {
      fc.assert(
        fc.property(pathsArb, fc.array(fc.integer()), (paths, keys) => {
          const shuffled = paths
            .map((p, i) => ({ p, k: keys[i % Math.max(1, keys.length)] ?? 0, i }))
            .sort((a, b) => a.k - b.k || b.i - a.i)
            .map((x) => x.p);
          expect(selectRoutes(shuffled, CONTEXT)).to.deep.equal(selectRoutes(paths, CONTEXT));
        }),
      );
    });

    it('accounts for every live path that is not installed either as rejected or as beaten by a better one', () => {
      fc.assert(
        fc.property(pathsArb, (paths) => {
          const result = selectRoutes(paths, CONTEXT);
          const installed = new Set(result.routes.map((r) => r.prefix));
          for (const p of paths) {
            if (p.isWithdraw || p.neighborIp === undefined) continue;
            const prefix = parseIpPrefix(p.prefix)?.text ?? p.prefix;
            const rejected = result.rejected.some((r) => r.prefix === prefix && r.nextHop === p.nextHop && r.neighborIp === p.neighborIp);
            expect(rejected || installed.has(prefix), `${p.prefix} via ${p.nextHop}`).to.equal(true);
          }
        }),
      );
    });
  });
});
