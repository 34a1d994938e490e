import { expect } from 'chai';
import fc from 'fast-check';
import { canonicalNextHops, familyOf, parseIpPrefix } from '../../../src/routes/ip-prefix.js';
import { defaultMetric, planRoutes, type KernelRoute, type RouteChange } from '../../../src/routes/plan-routes.js';
import type { DesiredRoute } from '../../../src/routes/select-routes.js';

const P = 44;
const ours = (prefix: string, nextHops: string[], extra: Partial<KernelRoute> = {}): KernelRoute => ({ prefix, nextHops, protocol: P, ...extra });

describe('routes/planRoutes', () => {
  it('plans nothing when the kernel already matches (input is canonical: the reconciler and the kernel reader make it so)', () => {
    const desired: DesiredRoute[] = [
      { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1', '10.0.1.2'] },
      { prefix: 'fd00:244:3::/64', nextHops: ['fd00:1::1', 'fd00:1::2'] },
    ];
    const observed = [ours('10.244.3.0/24', ['10.0.1.1', '10.0.1.2']), ours('fd00:244:3::/64', ['fd00:1::1', 'fd00:1::2'], { metric: 1024 })];
    expect(planRoutes(desired, observed)).to.deep.equal([]);
  });

  it('adds new prefixes, replaces changed ones and deletes the ones no longer wanted, deletions first', () => {
    const desired: DesiredRoute[] = [
      { prefix: '10.244.2.0/24', nextHops: ['10.0.1.11'] },
      { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1', '10.0.1.2'] },
    ];
    const observed = [ours('10.244.3.0/24', ['10.0.1.1']), ours('10.244.9.0/24', ['10.0.1.9'])];
    expect(planRoutes(desired, observed)).to.deep.equal([
      { kind: 'delete', route: ours('10.244.9.0/24', ['10.0.1.9']) },
      { kind: 'replace', route: { prefix: '10.244.2.0/24', nextHops: ['10.0.1.11'] } },
      { kind: 'replace', route: { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1', '10.0.1.2'] }, previous: ours('10.244.3.0/24', ['10.0.1.1']) },
    ]);
  });

  it('steps aside for a foreign route on a prefix we do not hold yet', () => {
    const foreign = [{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.99'], protocol: 4 }];
    expect(planRoutes([{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] }], [], foreign)).to.deep.equal([
      { kind: 'conflict', route: { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] }, foreign },
    ]);
  });

  it('keeps managing a route of ours even when a foreign route for the prefix appears beside it', () => {
    const foreign = [{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.99'], protocol: 12, metric: 100 }];
    const previous = ours('10.244.3.0/24', ['10.0.1.1']);
    expect(planRoutes([{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.2'] }], [previous], foreign)).to.deep.equal([
      { kind: 'replace', route: { prefix: '10.244.3.0/24', nextHops: ['10.0.1.2'] }, previous },
    ]);
    expect(planRoutes([], [previous], foreign)).to.deep.equal([{ kind: 'delete', route: previous }]);
  });

  it('re-creates a route of ours that has a non-default metric, and deletes extra ones, highest metric first', () => {
    const odd = ours('10.244.3.0/24', ['10.0.1.1'], { metric: 50 });
    const odder = ours('10.244.3.0/24', ['10.0.1.1'], { metric: 70 });
    expect(planRoutes([{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] }], [odd, odder])).to.deep.equal([
      { kind: 'delete', route: odder },
      { kind: 'delete', route: odd },
      { kind: 'replace', route: { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] } },
    ]);
    const keeper = ours('10.244.3.0/24', ['10.0.1.1']);
    expect(planRoutes([{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] }], [odd, keeper])).to.deep.equal([{ kind: 'delete', route: odd }]);
  });

  it('replaces a non-unicast route carrying our number (e.g. a blackhole) with the wanted route', () => {
    const blackhole = ours('10.244.3.0/24', [], { type: '6' });
    expect(planRoutes([{ prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] }], [blackhole])).to.deep.equal([
      { kind: 'replace', route: { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1'] }, previous: blackhole },
    ]);
  });

  describe('properties', () => {
    const prefixArb = fc.oneof(
      fc.integer({ min: 0, max: 15 }).map((i) => `10.244.${i}.0/24`),
      fc.integer({ min: 0, max: 15 }).map((i) => parseIpPrefix(`fd00:244:${i.toString(16)}::/64`)!.text),
    );
    const hopsFor = (prefix: string) =>
      fc
        .uniqueArray(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 })
        .map((ns) => ns.sort((a, b) => a - b).map((n) => (familyOf(prefix) === 'ipv6' ? `fd00:1::${n}` : `10.0.1.${n}`)));
    const desiredArb = fc.uniqueArray(prefixArb, { maxLength: 12 }).chain((prefixes) =>
      fc.tuple(...prefixes.map((prefix) => hopsFor(prefix).map((nextHops): DesiredRoute => ({ prefix, nextHops })))),
    );
    const kernelArb = (protocol: fc.Arbitrary<number>) =>
      fc.array(
        prefixArb.chain((prefix) =>
          fc.record({
            prefix: fc.constant(prefix),
            nextHops: hopsFor(prefix),
            protocol,
            metric: fc.option(fc.constantFrom(10, 50), { nil: undefined }),
          }),
        ),
        { maxLength: 12 },
      ).map((routes) => {
        // The kernel holds at most one route per (prefix, metric).
        const seen = new Set<string>();
        return routes.filter((r) => {
          const key = `${r.prefix} ${r.metric ?? 'default'}`;
          if (seen.has(key)) return false;
          seen.add(key);
          return true;
        });
      });

    /** A model kernel: applies the planned changes the way `ip -batch` would (add fails on an existing key). */
    function applyToModel(observed: KernelRoute[], foreign: KernelRoute[], changes: RouteChange[]): KernelRoute[] {
      const key = (r: { prefix: string; metric?: number }) => {
        const family = familyOf(r.prefix);
        return `${parseIpPrefix(r.prefix)!.text} ${r.metric ?? defaultMetric(family)}`;
      };
      const table = new Map(observed.map((r) => [key(r), r]));
      const foreignKeys = new Set(foreign.map(key));
      for (const change of changes) {
        if (change.kind === 'delete') {
          expect(table.delete(key(change.route)), 'deleting a route that is not ours').to.equal(true);
        } else if (change.kind === 'replace') {
          const k = key(change.route);
          expect(foreignKeys.has(k), 'overwriting a foreign route').to.equal(false);
          if (change.previous === undefined) expect(table.has(k), 'adding over an existing route').to.equal(false);
          table.set(k, { prefix: change.route.prefix, nextHops: change.route.nextHops, protocol: P });
        }
      }
      return [...table.values()];
    }

    it('converges in one step without touching foreign routes, and then plans nothing', () => {
      fc.assert(
        fc.property(desiredArb, kernelArb(fc.constant(P)), kernelArb(fc.constantFrom(4, 12, 186)), (desired, observed, foreignRaw) => {
          // A foreign route cannot share a kernel key with one of ours.
          const ourKeys = new Set(observed.map((r) => `${r.prefix} ${r.metric ?? 'default'}`));
          const foreign = foreignRaw.filter((r) => !ourKeys.has(`${r.prefix} ${r.metric ?? 'default'}`));
          const changes = planRoutes(desired, observed, foreign);
          const after = applyToModel(observed, foreign, changes);
          expect(planRoutes(desired, after, foreign)).to.deep.equal(changes.filter((c) => c.kind === 'conflict'));
          const conflicted = new Set(changes.filter((c) => c.kind === 'conflict').map((c) => c.route.prefix));
          const canonical = (prefix: string) => parseIpPrefix(prefix)!.text;
          const installed = new Map(after.map((r) => [canonical(r.prefix), r.nextHops]));
          for (const route of desired) {
            if (conflicted.has(canonical(route.prefix))) {
              expect(foreign.some((f) => canonical(f.prefix) === canonical(route.prefix)), route.prefix).to.equal(true);
              continue;
            }
            expect(canonicalNextHops(installed.get(canonical(route.prefix)) ?? []), route.prefix).to.deep.equal(canonicalNextHops(route.nextHops));
          }
          expect(after.length).to.equal(desired.length - conflicted.size);
        }),
      );
    });

    it('does not depend on the order of its inputs', () => {
      fc.assert(
        fc.property(desiredArb, kernelArb(fc.constant(P)), (desired, observed) => {
          const once = planRoutes(desired, observed);
          expect(planRoutes([...desired].reverse(), [...observed].reverse())).to.deep.equal(once);
        }),
      );
    });
  });
});
