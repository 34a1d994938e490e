// The route selection loop between a learned table and the route reconciler (both in memory here): it waits
// for a complete table and the node's input, hands over the whole selection once and then only what changed,
// and reports each refused path once.
import { expect } from 'chai';
import type { LearnedTableListener, LearnedTableView } from '../../../src/bgp/learned-table.js';
import type { LearnedPath } from '../../../src/bgp/types.js';
import { createLogger } from '../../../src/observe/log.js';
import { RouteSelectionLoop, type RouteSelectionInput } from '../../../src/routes/route-selection-loop.js';
import type { DesiredRoute } from '../../../src/routes/select-routes.js';
import { pollUntil } from '../../poll.js';
import { FakeKernelChanges } from '../host/fake-kernel-changes.js';

class MemoryLearnedTable {
  readonly paths = new Map<string, LearnedPath[]>();
  synced = false;
  private version = 0;
  private readonly listeners = new Set<LearnedTableListener>();

  view(): LearnedTableView {
    return { version: this.version, synced: this.synced, paths: this.paths };
  }

  onChange(listener: LearnedTableListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(prefix: string, paths: LearnedPath[] | undefined): void {
    if (paths === undefined) this.paths.delete(prefix);
    else this.paths.set(prefix, paths);
    this.version++;
    for (const l of this.listeners) l(this.view(), new Set([prefix]));
  }
}

const path = (prefix: string, neighborIp: string, asn: number): LearnedPath => ({ prefix, family: 'ipv4', nextHop: neighborIp, neighborIp, asPath: [asn], isWithdraw: false });

const input: RouteSelectionInput = {
  localAsn: 64512,
  ownPodCIDRs: ['10.244.1.0/24'],
  acceptRanges: ['10.244.0.0/16'],
  clusterPodRanges: ['10.244.0.0/16'],
  nodes: [
    { name: 'n2', podCIDRs: ['10.244.2.0/24'], asn: 64602, addresses: ['10.0.0.2'] },
    { name: 'n3', podCIDRs: ['10.244.3.0/24'], asn: 64603, addresses: ['10.0.0.3'] },
  ],
  conflictedCIDRs: [],
};

describe('RouteSelectionLoop', function () {
  this.timeout(10_000);

  it('waits for a complete table, gives the whole selection once, then the changes; reports a refused path once', async () => {
    const learned = new MemoryLearnedTable();
    const calls: (DesiredRoute[] | [string, DesiredRoute | undefined][])[] = [];
    const reported: string[] = [];
    const loop = new RouteSelectionLoop({
      learned,
      routes: {
        setDesired: (routes) => calls.push([...routes]),
        updateDesired: (changes) => calls.push([...changes]),
      },
      logger: createLogger({ level: 'error' }),
      reportRejection: (message) => reported.push(message),
      retry: { initialMs: 20, maxMs: 20 },
      readConnectedNetworks: () => Promise.resolve(['10.0.0.0/24']),
    });
    const stop = new AbortController();
    const running = loop.run(stop.signal);
    try {
      learned.set('10.244.2.0/24', [path('10.244.2.0/24', '10.0.0.2', 64602)]);
      loop.setInput(input);
      loop.markDirty();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(calls, 'nothing before the table is complete').to.deep.equal([]);

      learned.synced = true;
      learned.set('10.244.3.0/24', [path('10.244.3.0/24', '10.0.0.2', 64602)]); // n3's podCIDR from n2: refused
      await pollUntil('whole set given', () => calls.length === 1, { timeoutMs: 2_000, intervalMs: 5 });
      expect(calls[0]).to.deep.equal([{ prefix: '10.244.2.0/24', nextHops: ['10.0.0.2'] }]);
      expect(reported).to.deep.equal(['learned path not installed: 10.244.3.0/24 from 10.0.0.2 via 10.0.0.2: not-from-owner']);

      learned.set('10.244.3.0/24', [path('10.244.3.0/24', '10.0.0.3', 64603)]);
      await pollUntil('change given', () => calls.length === 2, { timeoutMs: 2_000, intervalMs: 5 });
      expect(calls[1]).to.deep.equal([['10.244.3.0/24', { prefix: '10.244.3.0/24', nextHops: ['10.0.0.3'] }]]);
      learned.set('10.244.2.0/24', undefined);
      await pollUntil('withdrawal given', () => calls.length === 3, { timeoutMs: 2_000, intervalMs: 5 });
      expect(calls[2]).to.deep.equal([['10.244.2.0/24', undefined]]);
      expect(reported).to.have.length(1);
    } finally {
      stop.abort();
      await running;
    }
  });

  it('with link and address notifications reads the connected networks at once on a change, and not on a quiet pass', async () => {
    const learned = new MemoryLearnedTable();
    learned.synced = true;
    const kernel = new FakeKernelChanges();
    let connected = ['10.0.0.0/24'];
    const calls: (DesiredRoute[] | [string, DesiredRoute | undefined][])[] = [];
    const loop = new RouteSelectionLoop({
      learned,
      routes: { setDesired: (routes) => calls.push([...routes]), updateDesired: (changes) => calls.push([...changes]) },
      logger: createLogger({ level: 'error' }),
      retry: { initialMs: 20, maxMs: 20 },
      readConnectedNetworks: () => Promise.resolve(connected),
      kernelChanges: kernel,
    });
    const stop = new AbortController();
    const running = loop.run(stop.signal);
    try {
      learned.set('10.244.2.0/24', [path('10.244.2.0/24', '10.0.0.2', 64602)]);
      loop.setInput(input);
      loop.markDirty();
      await pollUntil('whole set given', () => calls.length === 1, { timeoutMs: 2_000, intervalMs: 5 });
      expect(loop.connectedReads).to.equal(1);
      learned.set('10.244.3.0/24', [path('10.244.3.0/24', '10.0.0.3', 64603)]);
      kernel.change('route');
      await pollUntil('the new route handed on', () => calls.length === 2, { timeoutMs: 2_000, intervalMs: 5 });
      expect(loop.connectedReads, 'a learned change and a route notification read no links').to.equal(1);
      // The uplink loses its address: the notification alone wakes the loop, the next hops are no longer on-link.
      connected = [];
      kernel.change('address');
      await pollUntil('routes withdrawn', () => calls.length === 3, { timeoutMs: 2_000, intervalMs: 5 });
      expect(loop.connectedReads).to.equal(2);
      expect(calls[2]).to.deep.equal([['10.244.2.0/24', undefined], ['10.244.3.0/24', undefined]]);
    } finally {
      stop.abort();
      await running;
    }
  });
});
