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
