// The route reconciler against a real kernel, in a network namespace of its own.
import { expect } from 'chai';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../../src/observe/log.js';
import { IpRouteTable } from '../../../src/routes/kernel-routes.js';
import { RouteReconciler, type RouteReconcilerOptions } from '../../../src/routes/route-reconciler.js';
import type { DesiredRoute } from '../../../src/routes/select-routes.js';
import { createRouteNetns, gatewaysOf, ip, mainRoutes, ROUTE_NETNS_PREFIX, type RouteNetns } from './route-netns.js';
import { RouteMonitor } from '../route-monitor.js';
import { pollUntil } from '../../poll.js';
import { KernelChangeMonitor } from '../../../src/host/kernel-monitor.js';

const PROTO = 44;
const logger = createLogger({ level: 'error', component: 'routes-test' });

const DESIRED: DesiredRoute[] = [
  { prefix: '10.1.1.0/24', nextHops: ['10.250.0.11'] },
  { prefix: '10.1.2.0/24', nextHops: ['10.250.0.2', '10.251.0.2'] }, // ECMP over two links
  { prefix: '10.1.3.0/24', nextHops: ['10.250.0.3', '10.250.0.4'] },
  { prefix: 'fd01:1::/64', nextHops: ['fd00:250::11'] },
  { prefix: 'fd01:2::/64', nextHops: ['fd00:250::2', 'fd00:251::2'] },
];

describe('routes/RouteReconciler in a network namespace', function () {
  this.timeout(120_000);
  let netns: RouteNetns;
  const running: { controller: AbortController; done: Promise<void> }[] = [];

  function start(options: Partial<RouteReconcilerOptions> = {}): { reconciler: RouteReconciler; stop: () => Promise<void> } {
    const reconciler = new RouteReconciler({ protocol: PROTO, logger, netns: netns.name, resyncIntervalMs: 60_000, retryInitialMs: 50, retryMaxMs: 400, ...options });
    const controller = new AbortController();
    const entry = { controller, done: reconciler.start(controller.signal) };
    running.push(entry);
    return {
      reconciler,
      stop: async () => {
        controller.abort();
        await entry.done;
      },
    };
  }

  beforeEach(async () => {
    netns = await createRouteNetns(`${ROUTE_NETNS_PREFIX}-a`);
  });

  afterEach(async () => {
    for (const { controller, done } of running.splice(0)) {
      controller.abort();
      await done;
    }
    await netns.destroy();
  });

  async function expectDesiredInstalled(desired: DesiredRoute[] = DESIRED): Promise<void> {
    const routes = await mainRoutes(netns.name);
    for (const route of desired) {
      const dst = route.prefix.endsWith('/32') || route.prefix.endsWith('/128') ? route.prefix.split('/')[0] : route.prefix;
      expect(gatewaysOf(routes.get(`${dst} ${PROTO}`)), route.prefix).to.deep.equal([...route.nextHops].sort());
    }
    const ours = [...routes.values()].filter((r) => r.protocol === String(PROTO));
    expect(ours.length).to.equal(desired.length);
  }

  it('installs the desired routes, v4 and v6, single-path and ECMP, and keeps them when stopped', async () => {
    const { reconciler, stop } = start();
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    await expectDesiredInstalled();
    const status = reconciler.status();
    expect(status).to.include({ installed: 5, inSync: true });
    expect(status.loop.lastError).to.equal(undefined);
    expect(status.counts).to.include({ added: 5, replaced: 0, removed: 0, conflicts: 0 });
    // v6 ECMP is one route with two next hops, not two routes.
    const v6 = JSON.parse(await ip('-n', netns.name, '-j', '-6', 'route', 'show', 'fd01:2::/64')) as unknown[];
    expect(v6).to.have.length(1);

    await stop();
    await expectDesiredInstalled();
  });

  it('applies changes: new next hops replace in place, withdrawn prefixes are deleted', async () => {
    const { reconciler } = start();
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    const next: DesiredRoute[] = [
      { prefix: '10.1.1.0/24', nextHops: ['10.250.0.11', '10.250.0.12'] },
      { prefix: '10.1.3.0/24', nextHops: ['10.250.0.4'] },
      { prefix: 'fd01:2::/64', nextHops: ['fd00:251::2'] },
      { prefix: '10.1.4.7/32', nextHops: ['10.251.0.7'] },
    ];
    reconciler.setDesired(next);
    await reconciler.waitForSync();
    await expectDesiredInstalled(next);
    expect(reconciler.status().counts).to.include({ added: 6, replaced: 3, removed: 2 });
  });

  it('coalesces a burst of updates into one ip -batch batch, on the ip process kept from the first sync', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'h21rt-'));
    try {
      const log = path.join(dir, 'ip.log');
      const input = path.join(dir, 'input.log');
      const wrapper = path.join(dir, 'ip');
      // The real ip, with each invocation's arguments and every line a batch process reads written down.
      await writeFile(wrapper, `#!/bin/sh\necho "$*" >> ${log}\ncase "$*" in *-batch*) tee -a ${input} | ip "$@"; exit $? ;; esac\nexec ip "$@"\n`);
      await chmod(wrapper, 0o755);
      const table = new IpRouteTable({ protocol: PROTO, netns: netns.name, ipCommand: wrapper });
      const { reconciler } = start({ table });
      // The first read starts the batch process already: the first burst does not wait for it.
      await pollUntil('the first read', () => reconciler.status().counts.reads >= 1);
      await pollUntil('the batch process started', async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').some((l) => l.includes('-batch')));
      reconciler.setDesired(DESIRED);
      await reconciler.waitForSync();
      await writeFile(log, '');
      await writeFile(input, '');
      const many = (n: number): DesiredRoute[] =>
        Array.from({ length: n }, (_, i) => ({ prefix: `10.${20 + (i >> 8)}.${i & 255}.0/24`, nextHops: [i % 2 ? '10.250.0.2' : '10.251.0.2'] }));
      for (let n = 1; n <= 3000; n += 1) if (n % 300 === 0) reconciler.setDesired(many(n));
      await reconciler.waitForSync();
      await expectDesiredInstalled(many(3000));
      // No new process, and the 3000 routes went in as one batch (one end-of-batch sentinel).
      const invocations = (await readFile(log, 'utf8')).split('\n').filter((l) => l.includes('-batch'));
      expect(invocations).to.have.length(0);
      const lines = (await readFile(input, 'utf8')).split('\n').filter((l) => l !== '');
      expect(lines.filter((l) => l.startsWith('route add'))).to.have.length(3000);
      expect(lines.filter((l) => l.startsWith('route del'))).to.have.length(DESIRED.length);
      expect(lines.filter((l) => l.startsWith('link show'))).to.have.length(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('repairs drift on resync: a deleted route comes back, a changed one is put right', async () => {
    const { reconciler } = start({ resyncIntervalMs: 200 });
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    await ip('-n', netns.name, 'route', 'del', '10.1.1.0/24', 'proto', String(PROTO));
    await ip('-n', netns.name, '-6', 'route', 'del', 'fd01:2::/64', 'proto', String(PROTO));
    await ip('-n', netns.name, 'route', 'replace', '10.1.3.0/24', 'proto', String(PROTO), 'via', '10.250.0.99');
    await pollUntil('the resync to restore the routes', async () => {
      const routes = await mainRoutes(netns.name);
      return (
        gatewaysOf(routes.get(`10.1.1.0/24 ${PROTO}`))?.join() === '10.250.0.11' &&
        gatewaysOf(routes.get(`fd01:2::/64 ${PROTO}`))?.join() === 'fd00:250::2,fd00:251::2' &&
        gatewaysOf(routes.get(`10.1.3.0/24 ${PROTO}`))?.join() === '10.250.0.3,10.250.0.4'
      );
    }, { timeoutMs: 20_000, intervalMs: 50 });
    await expectDesiredInstalled();
    expect(reconciler.status().counts).to.include({ added: 7, replaced: 1 });
  });

  it('with the kernel change monitor a quiet resync reads nothing, and a route deleted by hand is still put back at the next', async () => {
    const monitor = new KernelChangeMonitor({ logger, netns: netns.name, settleMs: 200 });
    const watching = new AbortController();
    monitor.start(watching.signal);
    try {
      // readEveryResyncs out of the way: what is tested is the notification, not the safety read.
      const { reconciler } = start({ resyncIntervalMs: 150, kernelChanges: monitor, readEveryResyncs: 1_000 });
      reconciler.setDesired(DESIRED);
      await reconciler.waitForSync();
      // Our own writes are notified too: the resync after them reads once, then the kernel is quiet.
      // A late notification (of our writes, or of the kernel's own IPv6 routes on a loaded machine) may still cause
      // one read: wait for three resyncs in a row without any. Without a working monitor every resync reads and
      // this never holds.
      const reads = await pollUntil('three resyncs in a row that read nothing', async () => {
        const before = reconciler.status().counts;
        await pollUntil('three more resyncs or a read', () => {
          const now = reconciler.status().counts;
          return now.quietResyncs >= before.quietResyncs + 3 || now.reads > before.reads;
        }, { timeoutMs: 5_000, intervalMs: 20 });
        return reconciler.status().counts.reads === before.reads ? before.reads : undefined;
      }, { timeoutMs: 20_000 });
      await ip('-n', netns.name, 'route', 'del', '10.1.1.0/24', 'proto', String(PROTO));
      await pollUntil('the resync to restore the route', async () => gatewaysOf((await mainRoutes(netns.name)).get(`10.1.1.0/24 ${PROTO}`))?.join() === '10.250.0.11', {
        timeoutMs: 5_000,
        intervalMs: 20,
      });
      expect(reconciler.status().counts.reads).to.be.greaterThan(reads);
      await expectDesiredInstalled();
    } finally {
      watching.abort();
    }
  });

  it('never touches routes of other protocols: they survive start, resync and stop; a foreign route on our prefix wins', async () => {
    const foreign = [
      ['route', 'add', '10.9.1.0/24', 'via', '10.250.0.9'], // ip route add's default protocol: boot
      ['route', 'add', '10.9.2.0/24', 'via', '10.250.0.9', 'proto', 'bird'],
      ['-6', 'route', 'add', 'fd09::/64', 'via', 'fd00:250::9', 'proto', 'zebra'],
      ['route', 'add', '10.1.3.0/24', 'via', '10.250.0.77', 'proto', 'static'], // one of our prefixes
      ['-6', 'route', 'add', 'fd01:1::/64', 'via', 'fd00:250::77', 'proto', 'bird'], // one of our prefixes, v6
    ];
    for (const args of foreign) await ip('-n', netns.name, ...args);
    const before = [...(await mainRoutes(netns.name)).entries()].filter(([, r]) => r.protocol !== String(PROTO));

    const { reconciler, stop } = start({ resyncIntervalMs: 150 });
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    const reads = reconciler.status().counts.reads;
    await pollUntil('two resyncs', () => reconciler.status().counts.reads >= reads + 2, { timeoutMs: 20_000, intervalMs: 50 });
    const status = reconciler.status();
    expect(status.conflicts).to.deep.equal(['10.1.3.0/24', 'fd01:1::/64']);
    expect(status.counts.conflicts).to.equal(2);
    expect(status.installed).to.equal(3);
    await stop();

    const after = [...(await mainRoutes(netns.name)).entries()].filter(([, r]) => r.protocol !== String(PROTO));
    expect(after).to.deep.equal(before);
    const routes = await mainRoutes(netns.name);
    expect(routes.has(`10.1.3.0/24 ${PROTO}`)).to.equal(false);
    expect(gatewaysOf(routes.get('10.1.3.0/24 4'))).to.deep.equal(['10.250.0.77']);
  });

  it('takes a prefix over once the foreign route on it is gone', async () => {
    await ip('-n', netns.name, 'route', 'add', '10.1.3.0/24', 'via', '10.250.0.77', 'proto', 'static');
    const { reconciler } = start({ resyncIntervalMs: 150 });
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    expect(reconciler.status().conflicts).to.deep.equal(['10.1.3.0/24']);
    await ip('-n', netns.name, 'route', 'del', '10.1.3.0/24', 'proto', 'static');
    await pollUntil('our route on the freed prefix', async () => gatewaysOf((await mainRoutes(netns.name)).get(`10.1.3.0/24 ${PROTO}`))?.join() === '10.250.0.3,10.250.0.4', { timeoutMs: 20_000, intervalMs: 50 });
    await pollUntil('the conflict to clear', () => reconciler.status().conflicts.length === 0, { timeoutMs: 20_000, intervalMs: 50 });
  });

  it('does not overwrite a foreign route that appeared after its last read (add, not replace; then a conflict)', async () => {
    const { reconciler } = start(); // resync far away: its memory will not know about the foreign route
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    await ip('-n', netns.name, 'route', 'add', '10.1.6.0/24', 'via', '10.250.0.66', 'proto', 'static');
    await ip('-n', netns.name, '-6', 'route', 'add', 'fd01:6::/64', 'via', 'fd00:250::66', 'proto', 'static');
    reconciler.setDesired([...DESIRED, { prefix: '10.1.6.0/24', nextHops: ['10.250.0.6'] }, { prefix: 'fd01:6::/64', nextHops: ['fd00:250::6'] }]);
    await reconciler.waitForSync();
    const status = reconciler.status();
    expect(status.conflicts).to.deep.equal(['10.1.6.0/24', 'fd01:6::/64']);
    expect(status.loop.failures).to.equal(1); // the refused adds, then the re-read showed why
    const routes = await mainRoutes(netns.name);
    expect(gatewaysOf(routes.get('10.1.6.0/24 4'))).to.deep.equal(['10.250.0.66']);
    expect(gatewaysOf(routes.get('fd01:6::/64 4'))).to.deep.equal(['fd00:250::66']);
    expect(routes.has(`10.1.6.0/24 ${PROTO}`) || routes.has(`fd01:6::/64 ${PROTO}`)).to.equal(false);
  });

  it('keeps retrying when the kernel cannot even be read, and converges once it can', async () => {
    const late = `${ROUTE_NETNS_PREFIX}-late`;
    await ip('netns', 'del', late).catch(() => undefined);
    const reconciler = new RouteReconciler({ protocol: PROTO, logger, netns: late, retryInitialMs: 50, retryMaxMs: 200 });
    const controller = new AbortController();
    const done = reconciler.start(controller.signal);
    running.push({ controller, done });
    reconciler.setDesired(DESIRED);
    let lateNetns: RouteNetns | undefined;
    try {
      await pollUntil('two failed syncs', () => reconciler.status().loop.failures >= 2, { timeoutMs: 20_000, intervalMs: 50 });
      expect(reconciler.status().loop.lastError?.message).to.include(`ip -n ${late}`);
      lateNetns = await createRouteNetns(late);
      await reconciler.waitForSync();
      expect(reconciler.status()).to.include({ installed: 5, inSync: true });
      expect(reconciler.status().loop.lastError).to.equal(undefined);
    } finally {
      controller.abort();
      await done;
      await lateNetns?.destroy();
    }
  });

  it('a second start with the same desired state makes zero kernel changes (ip monitor sees nothing)', async () => {
    // Our leftovers from an earlier run, some of which are no longer wanted, must not confuse the restart test:
    // the first run converges them, the second must do nothing at all.
    await ip('-n', netns.name, 'route', 'add', '10.1.8.0/24', 'via', '10.250.0.8', 'proto', String(PROTO));
    await ip('-n', netns.name, 'route', 'add', '10.9.1.0/24', 'via', '10.250.0.9', 'proto', 'bird');
    const first = start();
    first.reconciler.setDesired(DESIRED);
    await first.reconciler.waitForSync();
    expect(first.reconciler.status().counts).to.include({ added: 5, removed: 1 });
    await first.stop();

    const monitor = await RouteMonitor.start(netns.name, { ignoreKernelRoutes: true });
    try {
      const second = start({ resyncIntervalMs: 150 });
      second.reconciler.setDesired(DESIRED);
      await second.reconciler.waitForSync();
      const reads = second.reconciler.status().counts.reads;
      await pollUntil('a resync of the second run', () => second.reconciler.status().counts.reads >= reads + 1, { timeoutMs: 20_000, intervalMs: 50 });
      await monitor.mark('10.99.99.2');
      expect(monitor.between('10.99.99.1', '10.99.99.2')).to.deep.equal([]);
      const status = second.reconciler.status();
      expect(status.counts).to.include({ added: 0, replaced: 0, removed: 0, failedChanges: 0 });
      expect(status).to.include({ installed: 5, inSync: true });
      await second.stop();
    } finally {
      monitor.stop();
    }
    await expectDesiredInstalled();
  });

  it('does not write before the first setDesired (a restarting agent keeps its routes until it knows better)', async () => {
    await ip('-n', netns.name, 'route', 'add', '10.1.8.0/24', 'via', '10.250.0.8', 'proto', String(PROTO));
    const { reconciler } = start();
    await pollUntil('the start-up read', () => reconciler.status().counts.reads >= 1, { timeoutMs: 20_000, intervalMs: 50 });
    expect(reconciler.status()).to.include({ installed: 1, inSync: false });
    reconciler.setDesired([]);
    await reconciler.waitForSync();
    expect((await mainRoutes(netns.name)).has(`10.1.8.0/24 ${PROTO}`)).to.equal(false);
  });

  it('survives a batch the kernel refuses in part: the rest is applied, memory is re-read, the failure retried', async () => {
    const desired: DesiredRoute[] = [...DESIRED, { prefix: '10.1.5.0/24', nextHops: ['10.252.0.5'] }, { prefix: 'fd01:5::/64', nextHops: ['fd00:252::5'] }];
    const { reconciler } = start();
    reconciler.setDesired(desired);
    await pollUntil('the partial failure to be recorded', () => reconciler.status().loop.failures >= 1, { timeoutMs: 20_000, intervalMs: 50 });
    await expectDesiredInstalled(); // the five good routes are in
    const status = reconciler.status();
    expect(status.inSync).to.equal(false);
    expect(status.loop.lastError?.message).to.match(/refused by the kernel/);
    expect(status.installed).to.equal(5);
    expect(status.counts.failedChanges).to.be.greaterThanOrEqual(2);

    // Make the next hops on-link: the retry with back-off now succeeds.
    await ip('-n', netns.name, 'addr', 'add', '10.252.0.1/24', 'dev', 'h5w0');
    await ip('-n', netns.name, 'addr', 'add', 'fd00:252::1/64', 'dev', 'h5w0', 'nodad');
    await reconciler.waitForSync();
    await expectDesiredInstalled(desired);
    expect(reconciler.status()).to.include({ installed: 7, inSync: true });
    expect(reconciler.status().loop.lastError).to.equal(undefined);
  });

  it('applies changes by prefix (updateDesired) without reading the kernel back, and only after a complete set', async () => {
    const { reconciler } = start();
    expect(() => reconciler.updateDesired([['10.1.1.0/24', { prefix: '10.1.1.0/24', nextHops: ['10.250.0.11'] }]])).to.throw(/setDesired/);
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    const reads = reconciler.status().counts.reads;
    const monitor = await RouteMonitor.start(netns.name, { ignoreKernelRoutes: true });
    try {
      reconciler.updateDesired(
        new Map([
          ['10.1.1.0/24', { prefix: '10.1.1.0/24', nextHops: ['10.250.0.11', '10.250.0.12'] }],
          ['10.1.3.0/24', undefined],
          ['fd01:9::/64', { prefix: 'fd01:9::/64', nextHops: ['fd00:251::9'] }],
          ['10.1.7.0/24', undefined], // never ours: nothing to do
        ]),
      );
      await reconciler.waitForSync();
      const next: DesiredRoute[] = [
        { prefix: '10.1.1.0/24', nextHops: ['10.250.0.11', '10.250.0.12'] },
        DESIRED[1]!,
        DESIRED[3]!,
        DESIRED[4]!,
        { prefix: 'fd01:9::/64', nextHops: ['fd00:251::9'] },
      ];
      await expectDesiredInstalled(next);
      await monitor.mark('10.99.99.2');
      // Exactly the three changes went to the kernel: the routes of untouched prefixes were not rewritten.
      const lines = monitor.between('10.99.99.1', '10.99.99.2');
      expect(lines.filter((l) => l.startsWith('Deleted ')).map((l) => l.split(' ')[1])).to.deep.equal(['10.1.3.0/24']);
      expect(lines.filter((l) => !l.startsWith('Deleted ') && /^\S+\/\d+ /.test(l)).map((l) => l.split(' ')[0]).sort()).to.deep.equal(['10.1.1.0/24', 'fd01:9::/64']);
      expect(reconciler.status().counts).to.include({ reads, added: 6, replaced: 1, removed: 1 });
      expect(reconciler.status()).to.include({ installed: 5, inSync: true });
    } finally {
      monitor.stop();
    }
  });

  it('keeps ownership rules for changes by prefix: a known foreign route blocks, one that appeared later is not overwritten', async () => {
    await ip('-n', netns.name, 'route', 'add', '10.1.6.0/24', 'via', '10.250.0.66', 'proto', 'static');
    const { reconciler } = start();
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    // Known from the start-up read: a conflict, no write.
    reconciler.updateDesired([['10.1.6.0/24', { prefix: '10.1.6.0/24', nextHops: ['10.250.0.6'] }]]);
    await reconciler.waitForSync();
    expect(reconciler.status().conflicts).to.deep.equal(['10.1.6.0/24']);
    expect(reconciler.status().loop.failures).to.equal(0);
    // Appeared after the last read: the add is refused (add, not replace), the re-read shows the conflict.
    await ip('-n', netns.name, '-6', 'route', 'add', 'fd01:6::/64', 'via', 'fd00:250::66', 'proto', 'static');
    reconciler.updateDesired([['fd01:6::/64', { prefix: 'fd01:6::/64', nextHops: ['fd00:250::6'] }]]);
    await reconciler.waitForSync();
    expect(reconciler.status().conflicts).to.deep.equal(['10.1.6.0/24', 'fd01:6::/64']);
    const routes = await mainRoutes(netns.name);
    expect(gatewaysOf(routes.get('10.1.6.0/24 4'))).to.deep.equal(['10.250.0.66']);
    expect(gatewaysOf(routes.get('fd01:6::/64 4'))).to.deep.equal(['fd00:250::66']);
    expect(routes.has(`10.1.6.0/24 ${PROTO}`) || routes.has(`fd01:6::/64 ${PROTO}`)).to.equal(false);
    // Withdrawing a conflicted prefix clears its conflict; the foreign route stays.
    reconciler.updateDesired([['10.1.6.0/24', undefined]]);
    await reconciler.waitForSync();
    expect(reconciler.status().conflicts).to.deep.equal(['fd01:6::/64']);
    expect(gatewaysOf((await mainRoutes(netns.name)).get('10.1.6.0/24 4'))).to.deep.equal(['10.250.0.66']);
    await expectDesiredInstalled();
  });

  it('rejects bad changes by prefix with the field named, changing nothing', async () => {
    const { reconciler } = start();
    reconciler.setDesired(DESIRED);
    await reconciler.waitForSync();
    const generation = reconciler.status();
    expect(() =>
      reconciler.updateDesired([
        ['10.1.1.0/24', undefined],
        ['10.1.2.0/24', { prefix: '10.1.2.0/24', nextHops: ['fd00::1'] }],
      ]),
    ).to.throw(/changes\["10\.1\.2\.0\/24"\]\.nextHops/);
    expect(() => reconciler.updateDesired([['10.1.2.0/24', { prefix: '10.1.9.0/24', nextHops: ['10.250.0.2'] }]])).to.throw(/not the prefix it is keyed by/);
    expect(() => reconciler.updateDesired([['10.1.999.0/24', undefined]])).to.throw(/not a CIDR/);
    expect(reconciler.status().inSync).to.equal(generation.inSync);
    await expectDesiredInstalled();
  });

  it('rejects bad desired routes with the field named, before touching anything', () => {
    const reconciler = new RouteReconciler({ protocol: PROTO, logger, netns: netns.name });
    expect(() => reconciler.setDesired([{ prefix: '10.1.0.0/16', nextHops: ['fd00::1'] }])).to.throw(/routes\[0\]\.nextHops/);
    expect(() => reconciler.setDesired([{ prefix: '10.1.0.0/16', nextHops: ['10.0.0.1'] }, { prefix: '10.1.999.0/24', nextHops: ['10.0.0.1'] }])).to.throw(/routes\[1\]\.prefix/);
    expect(() => new RouteReconciler({ protocol: 2, logger })).to.throw(/options\.protocol/);
  });
});
