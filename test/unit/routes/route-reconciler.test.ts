// The route reconciler is where desired routes are canonicalised (the planner trusts its input): any spelling
// reaches the kernel canonical, and malformed input is refused with the field named, before anything is written.
import { expect } from 'chai';
import { RouteInputError } from '../../../src/routes/errors.js';
import type { RouteTable } from '../../../src/routes/kernel-routes.js';
import type { KernelRoute, RouteChange } from '../../../src/routes/plan-routes.js';
import { RouteReconciler } from '../../../src/routes/route-reconciler.js';
import { createLogger } from '../../../src/observe/log.js';

/** A kernel table in memory that accepts every change. */
function memoryTable(ours: KernelRoute[] = []): RouteTable & { applied: RouteChange[] } {
  const applied: RouteChange[] = [];
  return {
    applied,
    read: () => Promise.resolve({ ours, foreign: [] }),
    apply: (changes) => {
      applied.push(...changes);
      return Promise.resolve({ applied: [...changes], failed: [] });
    },
  };
}

const logger = createLogger({ level: 'error' });

describe('RouteReconciler input', () => {
  it('canonicalises prefixes and next hops once, on the way in: a kernel route spelled canonically is left alone', async () => {
    const table = memoryTable([{ prefix: 'fd00:244:3::/64', nextHops: ['fd00:1::1', 'fd00:1::2'], protocol: 44, metric: 1024 }]);
    const routes = new RouteReconciler({ protocol: 44, logger, table });
    routes.setDesired([
      { prefix: 'fd00:244:3:0:0::/64', nextHops: ['FD00:1:0::2', 'fd00:1::1'] },
      { prefix: '10.244.3.7/24', nextHops: ['10.0.1.2', '10.0.1.1', '10.0.1.2'] },
    ]);
    const stop = new AbortController();
    const running = routes.start(stop.signal);
    try {
      await routes.waitForSync();
      expect(table.applied).to.deep.equal([{ kind: 'replace', route: { prefix: '10.244.3.0/24', nextHops: ['10.0.1.1', '10.0.1.2'] } }]);
      routes.updateDesired([['10.244.3.0/24', { prefix: '10.244.3.0/24', nextHops: ['10.0.1.2', '10.0.1.1'] }]]);
      await routes.waitForSync();
      expect(table.applied).to.have.length(1); // the same route, spelled otherwise: nothing to do
    } finally {
      stop.abort();
      await running;
    }
  });

  it('names the bad field of malformed input', () => {
    const routes = new RouteReconciler({ protocol: 44, logger, table: memoryTable() });
    const cases: [() => unknown, string][] = [
      [() => routes.setDesired([{ prefix: '10.244.3.0/24', nextHops: [] }]), 'routes[0].nextHops'],
      [() => routes.setDesired([{ prefix: '10.244.3.0/24', nextHops: ['x'] }]), 'routes[0].nextHops'],
      [() => routes.setDesired([{ prefix: '10.244.3.0/99', nextHops: ['10.0.0.1'] }]), 'routes[0].prefix'],
      [() => routes.setDesired([{ prefix: '10.1.0.0/16', nextHops: ['10.0.0.1'] }, { prefix: '10.1.2.3/16', nextHops: ['10.0.0.2'] }]), 'routes[1].prefix'],
    ];
    for (const [run, field] of cases) expect(run, field).to.throw(RouteInputError).with.property('field', field);
  });
});

describe('RouteReconciler keepRoutesFoundAtStart (graceful restart across agent runs)', () => {
  const previousRun: KernelRoute[] = [
    { prefix: '10.244.2.0/24', nextHops: ['10.0.1.2'], protocol: 44, metric: 0 },
    { prefix: '10.244.3.0/24', nextHops: ['10.0.1.3'], protocol: 44, metric: 0 },
    { prefix: '10.244.4.0/24', nextHops: ['10.0.1.4'], protocol: 44, metric: 0 },
  ];

  async function running(routes: RouteReconciler, body: () => Promise<void>): Promise<void> {
    const stop = new AbortController();
    const loop = routes.start(stop.signal);
    try {
      await body();
    } finally {
      stop.abort();
      await loop;
    }
  }

  it('keeps the routes the first read found until released, while the desired state does not name them', async () => {
    const table = memoryTable(previousRun.map((r) => ({ ...r })));
    const routes = new RouteReconciler({ protocol: 44, logger, table, keepRoutesFoundAtStart: true });
    await running(routes, async () => {
      expect(await routes.routesFoundAtStart(new AbortController().signal)).to.equal(3);
      // A fresh gobgpd's learned table is empty at first: nothing goes.
      routes.setDesired([]);
      await routes.waitForSync();
      expect(table.applied).to.deep.equal([]);
      expect(routes.status().keptFromStart).to.equal(3);
      // A peer sends its paths again: the same route stays untouched, a changed one is replaced and no longer kept.
      routes.updateDesired([
        ['10.244.2.0/24', { prefix: '10.244.2.0/24', nextHops: ['10.0.1.2'] }],
        ['10.244.3.0/24', { prefix: '10.244.3.0/24', nextHops: ['10.0.1.33'] }],
      ]);
      await routes.waitForSync();
      expect(table.applied.map((c) => `${c.kind} ${c.route.prefix}`)).to.deep.equal(['replace 10.244.3.0/24']);
      expect(routes.status().keptFromStart).to.equal(1);
      // Withdrawn after it was learned again: fresh information, deleted although the hold is still on.
      routes.updateDesired([['10.244.2.0/24', undefined]]);
      await routes.waitForSync();
      expect(table.applied.map((c) => `${c.kind} ${c.route.prefix}`)).to.deep.equal(['replace 10.244.3.0/24', 'delete 10.244.2.0/24']);
      // The peers settled: what nobody sent again goes.
      routes.releaseRoutesFoundAtStart('settled');
      await routes.waitForSync();
      expect(table.applied.map((c) => `${c.kind} ${c.route.prefix}`)).to.deep.equal(['replace 10.244.3.0/24', 'delete 10.244.2.0/24', 'delete 10.244.4.0/24']);
      expect(routes.status().keptFromStart).to.equal(0);
    });
  });

  it('keeps nothing without the option, or when released before the first read', async () => {
    for (const releasedFirst of [false, true]) {
      const table = memoryTable(previousRun.map((r) => ({ ...r })));
      const routes = new RouteReconciler({ protocol: 44, logger, table, keepRoutesFoundAtStart: releasedFirst });
      if (releasedFirst) routes.releaseRoutesFoundAtStart('no graceful-restart peers');
      routes.setDesired([]);
      await running(routes, async () => {
        await routes.waitForSync();
        expect(await routes.routesFoundAtStart(new AbortController().signal)).to.equal(0);
        expect(table.applied.map((c) => c.kind), `released first: ${releasedFirst}`).to.deep.equal(['delete', 'delete', 'delete']);
      });
    }
  });
});
