// GobgpClient against real gobgpd processes: a peerless one for the API surface, and two/three in a pair of
// network namespaces for real sessions, events, export filtering and ECMP.
import { expect } from 'chai';
import { GobgpClient, GobgpError } from '../../../src/bgp/gobgp-client.js';
import type { BgpEvent, LearnedPath } from '../../../src/bgp/types.js';
import { GobgpdFixture, createNetnsPair, type GobgpdProcess, type NetnsPair } from './gobgpd-fixture.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function expectGobgpError(p: Promise<unknown>, code: string): Promise<GobgpError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(GobgpError);
    expect((err as GobgpError).code).to.equal(code);
    return err as GobgpError;
  }
  expect.fail(`expected GobgpError ${code}`);
}

/** Keeps a watch running in the background and records its events. */
function recordEvents(client: GobgpClient, opts: Parameters<GobgpClient['watchEvents']>[0]) {
  const ac = new AbortController();
  const events: BgpEvent[] = [];
  let error: unknown;
  const done = (async () => {
    try {
      for await (const e of client.watchEvents(opts, ac.signal)) events.push(e);
    } catch (err) {
      error = err;
    }
  })();
  return {
    events,
    error: () => error,
    /** The table as the events describe it: per prefix, the latest set of (non-withdrawn) paths. */
    table: () => {
      const t = new Map<string, LearnedPath[]>();
      for (const e of events) {
        if (e.kind !== 'paths') continue;
        const groups = new Map<string, LearnedPath[]>();
        for (const p of e.paths) groups.set(p.prefix, [...(groups.get(p.prefix) ?? []), p]);
        for (const [prefix, ps] of groups) {
          const live = ps.filter((p) => !p.isWithdraw);
          if (live.length === 0) t.delete(prefix);
          else t.set(prefix, live);
        }
      }
      return t;
    },
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

describe('GobgpClient against a peerless gobgpd', function () {
  let fx: GobgpdFixture;
  let g: GobgpdProcess;
  let client: GobgpClient;

  before(async () => {
    fx = new GobgpdFixture(testLabName('h1cl', 'cl'));
    g = await fx.spawn('solo');
    client = new GobgpClient({ target: g.target, callTimeoutMs: 5000 });
    client.start();
    await client.waitForConnected(AbortSignal.timeout(10_000));
  });
  after(async () => {
    client?.close();
    await fx?.close();
  });

  it('starts BGP once and reports it; a second start is refused', async () => {
    expect((await client.getBgp()).asn).to.equal(0);
    await expectGobgpError(client.watchEvents({ peers: false, bestPaths: true, init: true }, AbortSignal.timeout(5000))[Symbol.asyncIterator]().next(), 'NOT_STARTED');
    await client.startBgp({ asn: 65001, routerId: '192.0.2.1', listenPort: -1 });
    const g1 = await client.getBgp();
    expect(g1).to.include({ asn: 65001, routerId: '192.0.2.1', listenPort: -1, useMultiplePaths: true });
    await expectGobgpError(client.startBgp({ asn: 65001, routerId: '192.0.2.1', listenPort: -1 }), 'ALREADY_EXISTS');
    await expectGobgpError(client.startBgp({ asn: 0, routerId: '192.0.2.1', listenPort: -1 }), 'INVALID');
  });

  it('adds, lists, updates and deletes peers with every PeerSpec field', async () => {
    await client.addPeer({ address: '192.0.2.10', asn: 65010, description: 'node:x', connectRetry: 1, ttlMin: 254 });
    await client.addPeer({
      address: '2001:db8::10',
      asn: 65011,
      port: 1179,
      localAddress: '2001:db8::1',
      password: 'md5secret',
      ebgpMultihopTtl: 3,
      holdTime: 9,
      keepaliveInterval: 3,
      connectRetry: 2,
      gracefulRestart: { enabled: true, restartTime: 60 },
      families: ['ipv6'],
      description: 'tor:tor1',
      maxPrefixes: 500,
    });
    await expectGobgpError(client.addPeer({ address: '192.0.2.10', asn: 65010 }), 'ALREADY_EXISTS');
    await expectGobgpError(client.addPeer({ address: 'not-an-ip', asn: 65010 }), 'INVALID');
    const peers = await client.listPeerConfigs();
    const x = peers.find((p) => p.spec.address === '192.0.2.10')!;
    expect(x.spec).to.deep.include({ asn: 65010, port: 179, holdTime: 90, keepaliveInterval: 30, connectRetry: 1, description: 'node:x', ttlMin: 254 });
    expect(x.spec.families).to.deep.equal(['ipv4', 'ipv6']);
    const t = peers.find((p) => p.spec.address === '2001:db8::10')!;
    expect(t.spec).to.deep.equal({
      address: '2001:db8::10',
      asn: 65011,
      port: 1179,
      localAddress: '2001:db8::1',
      password: 'md5secret',
      ebgpMultihopTtl: 3,
      ttlMin: 0,
      holdTime: 9,
      keepaliveInterval: 3,
      connectRetry: 2,
      gracefulRestart: { enabled: true, restartTime: 60 },
      families: ['ipv6'],
      description: 'tor:tor1',
      maxPrefixes: 500,
      routeReflectorClusterId: '',
    });
    const status = (await client.listPeers()).find((p) => p.address === '192.0.2.10')!;
    expect(status).to.include({ asn: 65010, description: 'node:x' });
    expect(status.state).to.not.equal('ESTABLISHED');

    await client.updatePeer({ address: '192.0.2.10', asn: 65010, description: 'node:x2', holdTime: 30, connectRetry: 1 });
    const updated = (await client.listPeerConfigs()).find((p) => p.spec.address === '192.0.2.10')!;
    expect(updated.spec).to.deep.include({ description: 'node:x2', holdTime: 30, keepaliveInterval: 10 });
    await expectGobgpError(client.updatePeer({ address: '192.0.2.99', asn: 1 }), 'NOT_FOUND');

    await client.deletePeer('192.0.2.10');
    await client.deletePeer('2001:db8::10');
    await expectGobgpError(client.deletePeer('192.0.2.10'), 'NOT_FOUND');
    expect(await client.listPeers()).to.deep.equal([]);
  });

  it('sets, reads and changes a peer\'s route-reflector client flag and cluster ID (UpdatePeer applies a change)', async () => {
    const asn = (await client.getBgp()).asn;
    await client.addPeer({ address: '192.0.2.20', asn, description: 'node:rr', routeReflectorClusterId: '10.0.0.1' });
    await client.addPeer({ address: '192.0.2.21', asn, description: 'node:plain' });
    const clusterIds = async (): Promise<string[]> =>
      (await client.listPeerConfigs()).filter((p) => p.spec.address.startsWith('192.0.2.2')).map((p) => `${p.spec.address}=${p.spec.routeReflectorClusterId}`).sort();
    expect(await clusterIds()).to.deep.equal(['192.0.2.20=10.0.0.1', '192.0.2.21=']);
    expect((await client.listPeers()).find((p) => p.address === '192.0.2.20')?.routeReflectorClient).to.equal(true);
    // UpdatePeer with the flag flipped either way: gobgpd re-creates the neighbor with it (its session resets).
    await client.updatePeer({ address: '192.0.2.20', asn, description: 'node:rr' });
    await client.updatePeer({ address: '192.0.2.21', asn, description: 'node:plain', routeReflectorClusterId: '10.0.0.2' });
    expect(await clusterIds()).to.deep.equal(['192.0.2.20=', '192.0.2.21=10.0.0.2']);
    await client.deletePeer('192.0.2.20');
    await client.deletePeer('192.0.2.21');
  });

  it('adds, lists and deletes v4 and v6 paths by uuid and by prefix', async () => {
    const u4 = await client.addPath({ prefix: '10.244.1.0/24', nextHop: '192.0.2.1' });
    const u6 = await client.addPath({ prefix: 'fd00:244:1::/64', nextHop: '2001:db8::1' });
    expect(u4).to.match(/^[0-9a-f]{32}$/);
    expect(u6).to.match(/^[0-9a-f]{32}$/);
    await expectGobgpError(client.addPath({ prefix: 'fd00:244:2::/64', nextHop: '192.0.2.1' }), 'INVALID');
    await expectGobgpError(client.addPath({ prefix: '10.244.1.1/24', nextHop: '192.0.2.1' }), 'INVALID');

    const v4 = await collect(client.listPaths({ family: 'ipv4', table: 'global' }));
    expect(v4.map((p) => [p.prefix, p.nextHop, p.neighborIp, p.origin])).to.deep.equal([['10.244.1.0/24', '192.0.2.1', undefined, 'igp']]);
    const v6 = await collect(client.listPaths({ family: 'ipv6', table: 'global' }));
    expect(v6.map((p) => [p.prefix, p.nextHop, p.family])).to.deep.equal([['fd00:244:1::/64', '2001:db8::1', 'ipv6']]);

    // An empty uuid would delete every local path: refused before it reaches gobgpd.
    await expectGobgpError(client.deletePath('ipv4', ''), 'INVALID');
    await client.deletePath('ipv4', u4);
    await expectGobgpError(client.deletePath('ipv4', u4), 'NOT_FOUND');
    expect(await collect(client.listPaths({ family: 'ipv4', table: 'global' }))).to.deep.equal([]);
    expect(await collect(client.listPaths({ family: 'ipv6', table: 'global' }))).to.have.length(1);
    await client.deletePathByPrefix({ prefix: 'fd00:244:1::/64', nextHop: '2001:db8::1' });
    expect(await collect(client.listPaths({ family: 'ipv6', table: 'global' }))).to.deep.equal([]);
  });

  it('manages defined sets, policies and the global assignment', async () => {
    await client.addDefinedSet({ kind: 'prefix', name: 'pods4', prefixes: [{ prefix: '10.244.0.0/16', minLength: 16, maxLength: 32 }] });
    await client.addDefinedSet({ kind: 'prefix', name: 'pods6', prefixes: [{ prefix: 'fd00:244::/48', minLength: 48, maxLength: 128 }] });
    await client.addDefinedSet({ kind: 'neighbor', name: 'tors', neighbors: ['192.0.2.20', '2001:db8::20'] });
    await expectGobgpError(client.addDefinedSet({ kind: 'prefix', name: 'pods4', prefixes: [] }), 'ALREADY_EXISTS');
    await expectGobgpError(
      client.addDefinedSet({ kind: 'prefix', name: 'mixed', prefixes: [{ prefix: '10.0.0.0/8', minLength: 8, maxLength: 32 }, { prefix: 'fd00::/8', minLength: 8, maxLength: 128 }] }),
      'INVALID',
    );
    expect(await client.listDefinedSets('prefix')).to.deep.equal([
      { kind: 'prefix', name: 'pods4', prefixes: [{ prefix: '10.244.0.0/16', minLength: 16, maxLength: 32 }] },
      { kind: 'prefix', name: 'pods6', prefixes: [{ prefix: 'fd00:244::/48', minLength: 48, maxLength: 128 }] },
    ]);
    expect(await client.listDefinedSets('neighbor')).to.deep.equal([{ kind: 'neighbor', name: 'tors', neighbors: ['192.0.2.20/32', '2001:db8::20/128'] }]);

    await client.addDefinedSetEntries({ kind: 'prefix', name: 'pods4', prefixes: [{ prefix: '10.96.0.0/12', minLength: 12, maxLength: 32 }] });
    await client.deleteDefinedSetEntries({ kind: 'prefix', name: 'pods4', prefixes: [{ prefix: '10.244.0.0/16', minLength: 16, maxLength: 32 }] });
    expect((await client.listDefinedSets('prefix')).find((s) => s.name === 'pods4')!.prefixes).to.deep.equal([{ prefix: '10.96.0.0/12', minLength: 12, maxLength: 32 }]);

    const policy = {
      name: 'import-tors',
      statements: [
        { name: 'v4', match: { prefixSet: { name: 'pods4' }, neighborSet: { name: 'tors' } }, action: 'accept' as const },
        { name: 'not6', match: { prefixSet: { name: 'pods6', invert: true } }, action: 'reject' as const },
        { name: 'nhs', match: { neighborSet: { name: 'tors' } }, action: 'next' as const, nextHopSelf: true },
      ],
    };
    await client.addPolicy(policy);
    await expectGobgpError(client.addPolicy(policy), 'ALREADY_EXISTS');
    await expectGobgpError(client.addPolicy({ name: 'p2', statements: [{ name: 's', match: { prefixSet: { name: 'nope' } }, action: 'accept' }] }), 'NOT_FOUND');
    // Statement names are per policy for the caller, though gobgpd keeps them in one namespace.
    await client.addPolicy({ name: 'other', statements: [{ name: 'v4', match: { prefixSet: { name: 'pods4' } }, action: 'reject' }] });
    const policies = await client.listPolicies();
    expect(policies.find((p) => p.name === 'import-tors')).to.deep.equal(policy);
    expect(policies.find((p) => p.name === 'other')!.statements[0]!.name).to.equal('v4');

    await client.setGlobalPolicy({ direction: 'import', policies: ['import-tors', 'other'], defaultAction: 'reject' });
    expect(await client.getGlobalPolicy('import')).to.deep.equal({ direction: 'import', policies: ['import-tors', 'other'], defaultAction: 'reject' });
    expect((await client.getGlobalPolicy('export')).policies).to.deep.equal([]);
    await expectGobgpError(client.setGlobalPolicy({ direction: 'export', policies: ['missing'], defaultAction: 'reject' }), 'NOT_FOUND');
    await expectGobgpError(client.deleteDefinedSet('prefix', 'pods4'), 'IN_USE');

    await client.setGlobalPolicy({ direction: 'import', policies: [], defaultAction: 'accept' });
    await client.deletePolicy('import-tors');
    await client.deletePolicy('other');
    await expectGobgpError(client.deletePolicy('other'), 'NOT_FOUND');
    await client.deleteDefinedSet('prefix', 'pods4');
    await client.deleteDefinedSet('prefix', 'pods6');
    await client.deleteDefinedSet('neighbor', 'tors');
    expect(await client.listDefinedSets('prefix')).to.deep.equal([]);
    expect(await client.listPolicies()).to.deep.equal([]);
  });

  it('emits disconnected and connected(reconnected) when gobgpd is killed and restarted', async () => {
    const seen: string[] = [];
    const onDown = (): number => seen.push('disconnected');
    const onUp = (e: { reconnected: boolean }): number => seen.push(`connected:${e.reconnected}`);
    client.on('disconnected', onDown);
    client.on('connected', onUp);
    try {
      await g.kill();
      await pollUntil('disconnected', () => seen.includes('disconnected'), { timeoutMs: 10_000 });
      await expectGobgpError(client.getBgp(), 'UNAVAILABLE');
      await g.start();
      await pollUntil('reconnected', () => seen.includes('connected:true'), { timeoutMs: 20_000 });
      expect(seen).to.deep.equal(['disconnected', 'connected:true']);
      // gobgpd lost its state.
      expect((await client.getBgp()).asn).to.equal(0);
    } finally {
      client.off('disconnected', onDown);
      client.off('connected', onUp);
    }
  });
});

describe('GobgpClient with real BGP sessions (two netns, three gobgpd)', function () {
  let fx: GobgpdFixture;
  let net: NetnsPair;
  let a: GobgpClient;
  let b: GobgpClient;
  let c: GobgpClient;

  before(async () => {
    fx = new GobgpdFixture(testLabName('h1cs', 'cs'));
    net = createNetnsPair(testLabName('h1cs', 'cs'), 211);
    net.addAddress(net.b, '10.211.0.3/24');
    net.addAddress(net.b, 'fd00:211::3/64');
    const [ga, gb, gc] = [await fx.spawn('a', net.a), await fx.spawn('b', net.b), await fx.spawn('c', net.b)];
    a = new GobgpClient({ target: ga.target });
    b = new GobgpClient({ target: gb.target });
    c = new GobgpClient({ target: gc.target });
    await a.startBgp({ asn: 65001, routerId: '10.211.0.1', listenPort: 179, listenAddresses: ['10.211.0.1'] });
    await b.startBgp({ asn: 65002, routerId: '10.211.0.2', listenPort: 179, listenAddresses: ['10.211.0.2'] });
    await c.startBgp({ asn: 65003, routerId: '10.211.0.3', listenPort: 179, listenAddresses: ['10.211.0.3'] });
  });
  after(async () => {
    for (const cl of [a, b, c]) cl?.close();
    await fx?.close();
    net?.close();
  });

  it('watches peers from INIT to ESTABLISHED and paths arriving from two peers (ECMP) and leaving', async () => {
    const watch = recordEvents(a, { peers: true, bestPaths: true, init: true, allPaths: true });
    try {
      await pollUntil('table-synced', () => watch.events.some((e) => e.kind === 'table-synced'));
      await a.addPeer({ address: '10.211.0.2', asn: 65002, connectRetry: 1, password: 'pw-b' });
      await a.addPeer({ address: '10.211.0.3', asn: 65003, connectRetry: 1, holdTime: 9, keepaliveInterval: 3 });
      await b.addPeer({ address: '10.211.0.1', asn: 65001, connectRetry: 1, password: 'pw-b' });
      await c.addPeer({ address: '10.211.0.1', asn: 65001, connectRetry: 1, holdTime: 9, keepaliveInterval: 3 });
      const established = (addr: string): boolean =>
        watch.events.some((e) => e.kind === 'peer' && e.address === addr && e.state === 'ESTABLISHED');
      await pollUntil('both sessions established', () => established('10.211.0.2') && established('10.211.0.3'), { timeoutMs: 60_000 });
      const states = watch.events.filter((e) => e.kind === 'peer' && e.address === '10.211.0.2').map((e) => (e as { state: string }).state);
      expect(states).to.include.members(['OPENSENT', 'ESTABLISHED']);
      expect((await a.listPeers()).every((p) => p.state === 'ESTABLISHED' && p.establishedSince instanceof Date)).to.equal(true);

      const ub4 = await b.addPath({ prefix: '10.50.0.0/24', nextHop: '10.211.0.2' });
      await c.addPath({ prefix: '10.50.0.0/24', nextHop: '10.211.0.3' });
      await b.addPath({ prefix: 'fd50::/64', nextHop: 'fd00:211::2' });
      await c.addPath({ prefix: 'fd50::/64', nextHop: 'fd00:211::3' });
      const hops = (prefix: string): string[] => (watch.table().get(prefix) ?? []).map((p) => p.nextHop).sort();
      await pollUntil('both v4 paths', () => hops('10.50.0.0/24').length === 2);
      await pollUntil('both v6 paths', () => hops('fd50::/64').length === 2);
      expect(hops('10.50.0.0/24')).to.deep.equal(['10.211.0.2', '10.211.0.3']);
      expect(hops('fd50::/64')).to.deep.equal(['fd00:211::2', 'fd00:211::3']);
      const fromB = watch.table().get('10.50.0.0/24')!.find((p) => p.neighborIp === '10.211.0.2')!;
      expect(fromB).to.deep.include({ family: 'ipv4', asPath: [65002], origin: 'igp', isWithdraw: false });

      await b.deletePath('ipv4', ub4);
      await pollUntil('one v4 path left', () => hops('10.50.0.0/24').length === 1);
      expect(hops('10.50.0.0/24')).to.deep.equal(['10.211.0.3']);
      await c.deletePathByPrefix({ prefix: '10.50.0.0/24', nextHop: '10.211.0.3' });
      await pollUntil('v4 prefix withdrawn', () => !watch.table().has('10.50.0.0/24'));
      expect(watch.table().has('fd50::/64')).to.equal(true);

      // A fresh watch starts from the current table (init), multipath included.
      const second = recordEvents(a, { peers: false, bestPaths: true, init: true, allPaths: true });
      try {
        await pollUntil('second synced', () => second.events.some((e) => e.kind === 'table-synced'));
        expect((second.table().get('fd50::/64') ?? []).map((p) => p.nextHop).sort()).to.deep.equal(['fd00:211::2', 'fd00:211::3']);
        expect(second.table().has('10.50.0.0/24')).to.equal(false);
      } finally {
        await second.stop();
      }
      expect(watch.error()).to.equal(undefined);
    } finally {
      await watch.stop();
    }
  });

  it('hands a burst of paths on in batches, though gobgpd sends one path per message', async () => {
    const watch = recordEvents(a, { peers: true, bestPaths: true, init: true, allPaths: true });
    try {
      await pollUntil('table-synced', () => watch.events.some((e) => e.kind === 'table-synced'));
      // c's paths wait while a has no session with c; then the session brings them at once.
      if ((await a.listPeerConfigs()).some((p) => p.spec.address === '10.211.0.3')) await a.deletePeer('10.211.0.3');
      if (!(await c.listPeerConfigs()).some((p) => p.spec.address === '10.211.0.1')) {
        await c.addPeer({ address: '10.211.0.1', asn: 65001, connectRetry: 1, holdTime: 9, keepaliveInterval: 3 });
      }
      await pollUntil('c gone from the watch', () => [...watch.table().values()].every((paths) => paths.every((p) => p.neighborIp !== '10.211.0.3')));
      const burst = Array.from({ length: 1000 }, (_, i) => `10.60.${i >> 8}.${i & 255}/32`);
      for (let i = 0; i < burst.length; i += 100) await Promise.all(burst.slice(i, i + 100).map((prefix) => c.addPath({ prefix, nextHop: '10.211.0.3' })));
      const eventsBefore = watch.events.length;
      await a.addPeer({ address: '10.211.0.3', asn: 65003, connectRetry: 1, holdTime: 9, keepaliveInterval: 3 });
      await pollUntil('every path of the burst', () => burst.every((prefix) => watch.table().has(prefix)), { timeoutMs: 60_000 });
      const carrying = watch.events.slice(eventsBefore).filter((e) => e.kind === 'paths' && e.paths.some((p) => p.prefix.startsWith('10.60.'))).length;
      // One event per message would be 1,000: a batch holds what arrived in one turn of the event loop.
      expect(carrying).to.be.within(1, 100);
      for (let i = 0; i < burst.length; i += 100) await Promise.all(burst.slice(i, i + 100).map((prefix) => c.deletePathByPrefix({ prefix, nextHop: '10.211.0.3' })));
      await pollUntil('the burst withdrawn', () => burst.every((prefix) => !watch.table().has(prefix)), { timeoutMs: 60_000 });
      expect(watch.error()).to.equal(undefined);
    } finally {
      await watch.stop();
    }
  });

  it('a global export policy filters what the other peer receives', async () => {
    const onB = async (): Promise<string[]> =>
      (await collect(b.listPaths({ family: 'ipv4', table: 'global' }))).filter((p) => p.neighborIp === '10.211.0.1').map((p) => p.prefix).sort();
    await a.addDefinedSet({ kind: 'prefix', name: 'ours4', prefixes: [{ prefix: '10.60.1.0/24', minLength: 24, maxLength: 24 }] });
    await a.addPolicy({ name: 'export-ours', statements: [{ name: 'ours', match: { prefixSet: { name: 'ours4' } }, action: 'accept' }] });
    await a.setGlobalPolicy({ direction: 'export', policies: ['export-ours'], defaultAction: 'reject' });
    await a.addPath({ prefix: '10.60.1.0/24', nextHop: '10.211.0.1' });
    await a.addPath({ prefix: '10.60.2.0/24', nextHop: '10.211.0.1' });
    await a.addPath({ prefix: '10.60.3.0/24', nextHop: '10.211.0.1' });
    await pollUntil('b learns the exported prefix', async () => (await onB()).includes('10.60.1.0/24'));
    // c received the same UPDATE stream later than b would: if 10.60.1 reached c, b has seen everything a sends.
    await pollUntil('c learns it too', async () =>
      (await collect(c.listPaths({ family: 'ipv4', table: 'global' }))).some((p) => p.prefix === '10.60.1.0/24'));
    expect(await onB()).to.deep.equal(['10.60.1.0/24']);

    // Widening the set and a soft reset out sends what is now accepted.
    await a.addDefinedSetEntries({ kind: 'prefix', name: 'ours4', prefixes: [{ prefix: '10.60.2.0/24', minLength: 24, maxLength: 24 }] });
    await a.softReset('all', { direction: 'out' });
    await pollUntil('b learns the second prefix', async () => (await onB()).includes('10.60.2.0/24'));
    expect(await onB()).to.deep.equal(['10.60.1.0/24', '10.60.2.0/24']);
  });

  it('refuses a watch for all paths when BGP runs without use_multiple_paths', async () => {
    const fx2 = new GobgpdFixture(testLabName('h1cm', 'cm'));
    const g = await fx2.spawn('nomp');
    const cl = new GobgpClient({ target: g.target });
    try {
      await cl.startBgp({ asn: 65009, routerId: '192.0.2.9', listenPort: -1, useMultiplePaths: false });
      await expectGobgpError(cl.watchEvents({ peers: false, bestPaths: true, init: true, allPaths: true }, AbortSignal.timeout(5000))[Symbol.asyncIterator]().next(), 'INVALID');
    } finally {
      cl.close();
      await fx2.close();
    }
  });
});
