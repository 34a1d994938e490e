import { expect } from 'chai';
import fc from 'fast-check';
import type { LearnedPath } from '../../../src/bgp/types.js';
import { IncrementalRouteSelector, type LearnedPathsByPrefix } from '../../../src/routes/incremental-selection.js';
import { selectRoutes, type DesiredRoute, type RouteSelectionContext } from '../../../src/routes/select-routes.js';
import { CONTEXT } from './selection-context.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

const BASE: RouteSelectionContext = CONTEXT;

// Context changes a running agent sees: a node added or renumbered, a link gone, a conflict found.
const CONTEXTS: RouteSelectionContext[] = [
  BASE,
  { ...BASE, onLinkNetworks: ['10.0.1.0/25', 'fd00:1::/64', '10.0.3.0/24'] },
  { ...BASE, nodes: [...BASE.nodes, { name: 'node-4', podCIDRs: ['10.244.4.0/24'], asn: 65004, addresses: ['10.0.1.40'] }] },
  { ...BASE, nodes: BASE.nodes.filter((n) => n.name !== 'node-3') },
  { ...BASE, excludedCIDRs: ['10.244.2.0/24'] },
  { ...BASE, acceptRanges: ['10.244.0.0/16'], clusterPodRanges: ['10.244.0.0/17'] },
];

// Table keys: node podCIDRs, other prefixes in and outside the ranges, more-specifics, ours, v6, a key that
// parses to another key's prefix (host bits set), and keys that are not CIDRs at all.
const KEYS = [
  '10.244.2.0/24',
  '10.244.2.7/24',
  '10.244.3.0/24',
  '10.244.4.0/24',
  '10.244.9.0/24',
  '10.244.2.128/25',
  '10.244.1.0/24',
  '192.168.100.0/24',
  '192.0.2.0/24',
  '10.244.200.0/24',
  'fd00:244:2::/64',
  'fd00:244:3::/64',
  'fd00:244:9::/64',
  '10.244.999.0/24',
  'not-a-prefix',
];
const NEXT_HOPS = ['10.0.1.11', '10.0.1.1', '10.0.1.2', '10.0.1.40', '10.0.3.10', '10.0.1.200', 'fd00:1::11', 'fd00:1::2', 'fe80::1', '0.0.0.0', 'bogus'];

const pathArb = (prefix: string): fc.Arbitrary<LearnedPath> =>
  fc.record({
    nextHop: fc.constantFrom(...NEXT_HOPS),
    neighbor: fc.option(fc.constantFrom(...NEXT_HOPS), { nil: undefined }),
    asPath: fc.constantFrom<number[]>([], [65001, 65003], [65002, 65003], [65001], [64512], [65004], [65001, 65001, 65003]),
    localPref: fc.option(fc.constantFrom(100, 200), { nil: undefined }),
    med: fc.option(fc.constantFrom(0, 10), { nil: undefined }),
    origin: fc.option(fc.constantFrom('igp' as const, 'incomplete' as const), { nil: undefined }),
    isWithdraw: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  }).map((r) => ({
    prefix,
    family: familyOf(prefix),
    nextHop: r.nextHop,
    neighborIp: r.neighbor,
    asPath: r.asPath,
    isWithdraw: r.isWithdraw,
    ...(r.localPref === undefined ? {} : { localPref: r.localPref }),
    ...(r.med === undefined ? {} : { med: r.med }),
    ...(r.origin === undefined ? {} : { origin: r.origin }),
  }));

type Step =
  | { kind: 'set'; key: string; paths: LearnedPath[] }
  | { kind: 'delete'; key: string }
  | { kind: 'context'; index: number }
  | { kind: 'update'; all: boolean };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...KEYS).chain((key) => fc.array(pathArb(key), { minLength: 1, maxLength: 3 }).map((paths): Step => ({ kind: 'set', key, paths }))) },
  { weight: 2, arbitrary: fc.constantFrom(...KEYS).map((key): Step => ({ kind: 'delete', key })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: CONTEXTS.length - 1 }).map((index): Step => ({ kind: 'context', index })) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 9 }).map((n): Step => ({ kind: 'update', all: n === 0 })) },
);

function flatten(table: LearnedPathsByPrefix): LearnedPath[] {
  return [...table.values()].flat();
}

describe('routes/IncrementalRouteSelector', () => {
  it('refuses a next hop inside its own podCIDRs when the bridge subnet is on-link', () => {
    const selector = new IncrementalRouteSelector();
    selector.setContext({ ...BASE, onLinkNetworks: [...BASE.onLinkNetworks, '10.244.1.0/24'] });
    const paths: LearnedPath[] = [{ prefix: '10.244.3.0/24', family: 'ipv4', nextHop: '10.244.1.23', neighborIp: '10.0.1.1', asPath: [65001, 65003], isWithdraw: false }];
    const changes = selector.update(new Map([['10.244.3.0/24', paths]]), 'all');
    expect([...changes]).to.deep.equal([]);
    expect(selector.rejected().map((r) => r.reason)).to.deep.equal(['nexthop-in-own-podcidr']);
  });

  it('equals selectRoutes over the whole table after any sequence of path and context changes', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 60 }), (steps) => {
        const table = new Map<string, LearnedPath[]>();
        const selector = new IncrementalRouteSelector();
        let context = BASE;
        selector.setContext(context);
        let changed = new Set<string>();
        // What a consumer applying only the returned changes holds.
        const mirror = new Map<string, DesiredRoute>();
        for (const step of [...steps, { kind: 'update', all: false } as Step]) {
          if (step.kind === 'set') {
            table.set(step.key, step.paths);
            changed.add(step.key);
          } else if (step.kind === 'delete') {
            table.delete(step.key);
            changed.add(step.key);
          } else if (step.kind === 'context') {
            context = CONTEXTS[step.index] as RouteSelectionContext;
            selector.setContext(context);
          } else {
            const changes = selector.update(table, step.all ? 'all' : changed);
            changed = new Set();
            for (const [prefix, route] of changes) {
              // Only real changes are reported.
              expect(route === undefined ? mirror.has(prefix) : JSON.stringify(mirror.get(prefix)) !== JSON.stringify(route), prefix).to.equal(true);
              if (route === undefined) mirror.delete(prefix);
              else mirror.set(prefix, route);
            }
            const full = selectRoutes(flatten(table), context);
            expect(selector.selection()).to.deep.equal(full);
            expect([...mirror.values()].sort((a, b) => (a.prefix < b.prefix ? -1 : 1))).to.deep.equal([...full.routes].sort((a, b) => (a.prefix < b.prefix ? -1 : 1)));
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('re-judges only what it is told changed, and everything after a context change', () => {
    const selector = new IncrementalRouteSelector();
    selector.setContext(BASE);
    const table = new Map<string, LearnedPath[]>([
      ['10.244.2.0/24', [{ prefix: '10.244.2.0/24', family: 'ipv4', nextHop: '10.0.1.11', neighborIp: '10.0.1.11', asPath: [], isWithdraw: false }]],
    ]);
    expect([...selector.update(table, ['10.244.2.0/24'])]).to.deep.equal([['10.244.2.0/24', { prefix: '10.244.2.0/24', nextHops: ['10.0.1.11'] }]]);
    // The same paths again: no change.
    expect(selector.update(table, ['10.244.2.0/24']).size).to.equal(0);
    // The same context again is no change; a conflict on the prefix takes the route away at the next update.
    expect(selector.setContext({ ...BASE })).to.equal(false);
    expect(selector.setContext({ ...BASE, excludedCIDRs: ['10.244.2.0/24'] })).to.equal(true);
    expect([...selector.update(table, [])]).to.deep.equal([['10.244.2.0/24', undefined]]);
    expect(selector.routes().size).to.equal(0);
  });

  it('keeps its context when handed a malformed one, naming the field', () => {
    const selector = new IncrementalRouteSelector();
    selector.setContext(BASE);
    expect(() => selector.setContext({ ...BASE, acceptRanges: ['10.244.0.0/99'] })).to.throw(/context\.acceptRanges\[0\]/);
    const table = new Map<string, LearnedPath[]>([
      ['10.244.3.0/24', [{ prefix: '10.244.3.0/24', family: 'ipv4', nextHop: '10.0.1.1', neighborIp: '10.0.1.1', asPath: [65001, 65003], isWithdraw: false }]],
    ]);
    expect(selector.update(table, 'all').get('10.244.3.0/24')).to.deep.equal({ prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] });
  });
});
