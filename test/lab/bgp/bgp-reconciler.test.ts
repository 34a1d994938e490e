// BgpReconciler against real gobgpd: "our" node in netns a, a second node (plain gobgpd driven by the test)
// and a ToR stand-in in netns b. Checks what the other side learns, what our import policy lets in, the
// learned table we publish, LOCAL_PREF as the iBGP peer sees it, recovery from a gobgpd kill -9, and that a
// no-change resync mutates nothing.
import { expect } from 'chai';
import { advertisedAttributes } from '../../../src/agent/advertised-attributes.js';
import { parseAgentConfig } from '../../../src/config/agent-config.js';
import { nodeInfoFromObject } from '../../../src/kube/node-info.js';
import { BgpReconciler, type BgpDesiredState } from '../../../src/bgp/bgp-reconciler.js';
import type { LearnedTableView } from '../../../src/bgp/learned-table.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { GobgpdFixture, createNetnsPair, type GobgpdProcess, type NetnsPair } from './gobgpd-fixture.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('BgpReconciler against real gobgpd pairs', function () {
  let fx: GobgpdFixture;
  let net: NetnsPair;
  let ours: GobgpdProcess;
  let client: GobgpClient;
  let node2: GobgpClient;
  let tor: GobgpClient;
  let reconciler: BgpReconciler;
  const stop = new AbortController();
  let running: Promise<void>;
  const A = '10.221.0.1';
  const A6 = 'fd00:221::1';
  const NODE2 = '10.221.0.2';
  const NODE2_6 = 'fd00:221::2';
  const TOR = '10.221.0.3';

  const desired: BgpDesiredState = {
    global: { asn: 64512, routerId: A, listenPort: 179 },
    peers: [
      { address: NODE2, asn: 64512, connectRetry: 1, description: 'node:n2' },
      { address: TOR, asn: 65100, connectRetry: 1, holdTime: 9, keepaliveInterval: 3, password: 'tor-md5', description: 'tor:t1' },
    ],
    advertise: [
      { prefix: '10.244.1.0/24', nextHop: A },
      { prefix: 'fd00:244:0:1::/64', nextHop: A6 },
    ],
    importRules: {
      nodePeers: [{ address: NODE2, prefixes: ['10.244.2.0/24', 'fd00:244:0:2::/64'] }],
      externalPeers: [TOR],
      acceptRanges: ['10.244.0.0/16', 'fd00:244::/48'],
      ownPodCIDRs: ['10.244.1.0/24', 'fd00:244:0:1::/64'],
    },
  };

  const learnedBy = async (c: GobgpClient, from: string): Promise<string[]> => {
    const all = [...(await collect(c.listPaths({ family: 'ipv4', table: 'global' }))), ...(await collect(c.listPaths({ family: 'ipv6', table: 'global' })))];
    return all.filter((p) => p.neighborIp === from).map((p) => `${p.prefix} via ${p.nextHop}`).sort();
  };
  const table = (): LearnedTableView => reconciler.learned.view();
  const tableSummary = (): Record<string, string[]> =>
    Object.fromEntries([...table().paths].map(([prefix, ps]) => [prefix, ps.map((p) => `${p.neighborIp} ${p.nextHop}`).sort()]));

  before(async function () {
    fx = new GobgpdFixture(testLabName('h1rc', 'rc'));
    net = createNetnsPair(testLabName('h1rc', 'rc'), 221);
    net.addAddress(net.b, `${TOR}/24`);
    ours = await fx.spawn('ours', net.a);
    const n2 = await fx.spawn('node2', net.b);
    const t = await fx.spawn('tor', net.b);
    client = new GobgpClient({ target: ours.target, reconnectBackoffMs: { initial: 100, max: 500 } });
    node2 = new GobgpClient({ target: n2.target });
    tor = new GobgpClient({ target: t.target });
    await node2.startBgp({ asn: 64512, routerId: NODE2, listenPort: 179, listenAddresses: [NODE2] });
    await node2.addPeer({ address: A, asn: 64512, connectRetry: 1 });
    await tor.startBgp({ asn: 65100, routerId: TOR, listenPort: 179, listenAddresses: [TOR] });
    await tor.addPeer({ address: A, asn: 64512, connectRetry: 1, holdTime: 9, keepaliveInterval: 3, password: 'tor-md5' });
    reconciler = new BgpReconciler({ client, resyncIntervalMs: 2_000, retryBackoffMs: { initial: 200, max: 1_000 } });
    reconciler.setDesired(desired);
    running = reconciler.start(stop.signal);
  });

  after(async () => {
    stop.abort();
    await running?.catch(() => undefined);
    for (const c of [client, node2, tor]) c?.close();
    await fx?.close();
    net?.close();
  });

  it('applies the desired state and the second node learns exactly our podCIDRs', async () => {
    await pollUntil('both sessions established', () => reconciler.status().peers.established === 2, { timeoutMs: 60_000, intervalMs: 200 });
    await pollUntil('node2 learns our prefixes', async () => (await learnedBy(node2, A)).length === 2);
    expect(await learnedBy(node2, A)).to.deep.equal([`10.244.1.0/24 via ${A}`, `fd00:244:0:1::/64 via ${A6}`]);
    const g = await client.getBgp();
    expect(g).to.include({ asn: 64512, routerId: A, listenPort: 179, useMultiplePaths: true });
    const peers = await client.listPeerConfigs();
    expect(peers.map((p) => p.spec.address).sort()).to.deep.equal([NODE2, TOR].sort());
    expect((await client.getGlobalPolicy('import')).defaultAction).to.equal('reject');
    expect((await client.getGlobalPolicy('export')).defaultAction).to.equal('reject');
    const st = reconciler.status();
    expect(st.loop.lastSuccessAt).to.be.instanceOf(Date);
    expect(st.advertised).to.equal(2);
  });

  it('exports only our podCIDRs: what we learn from the ToR does not go to the other node', async () => {
    await tor.addPath({ prefix: '10.244.7.0/24', nextHop: TOR });
    await pollUntil('we learn the ToR route', () => table().paths.has('10.244.7.0/24'), { timeoutMs: 20_000 });
    // An eBGP-learned route would go to the iBGP peer node2 without our export policy: check what node2 got
    // and what gobgpd's adj-out for node2 holds (post export policy).
    await pollUntil('tor learned ours', async () => (await learnedBy(tor, A)).length === 2, { timeoutMs: 20_000 });
    expect(await learnedBy(tor, A)).to.deep.equal([`10.244.1.0/24 via ${A}`, `fd00:244:0:1::/64 via ${A6}`]);
    expect(await learnedBy(node2, A)).to.deep.equal([`10.244.1.0/24 via ${A}`, `fd00:244:0:1::/64 via ${A6}`]);
    const adjOut = await collect(client.listPaths({ family: 'ipv4', table: 'adj-out', neighbor: NODE2 }));
    expect(adjOut.map((p) => p.prefix)).to.not.include('10.244.7.0/24');
  });

  it('Service paths go to the ToR only, follow their endpoints without a policy change, and a Service route from the ToR is not imported', async () => {
    const services = { ranges: ['203.0.113.0/26', '10.96.0.0/16'], peers: [TOR], paths: [{ prefix: '203.0.113.1/32', nextHop: A }, { prefix: '10.96.0.0/16', nextHop: A }] };
    reconciler.setDesired({ ...desired, services });
    await pollUntil('the ToR learns the Service paths', async () => (await learnedBy(tor, A)).length === 4, { timeoutMs: 20_000 });
    expect(await learnedBy(tor, A)).to.deep.equal([`10.244.1.0/24 via ${A}`, `10.96.0.0/16 via ${A}`, `203.0.113.1/32 via ${A}`, `fd00:244:0:1::/64 via ${A6}`]);
    expect(await learnedBy(node2, A), 'a node peer gets none').to.deep.equal([`10.244.1.0/24 via ${A}`, `fd00:244:0:1::/64 via ${A6}`]);
    const exportPolicy = (await client.getGlobalPolicy('export')).policies;

    // The last local endpoint leaves: the host route is withdrawn, the policy stays as it is.
    reconciler.setDesired({ ...desired, services: { ...services, paths: services.paths.slice(1) } });
    await pollUntil('the ToR loses the host route', async () => !(await learnedBy(tor, A)).includes(`203.0.113.1/32 via ${A}`), { timeoutMs: 20_000 });
    expect((await client.getGlobalPolicy('export')).policies).to.deep.equal(exportPolicy);

    // Another node's Service route, reflected by the ToR: outside the accept ranges, never imported.
    await tor.addPath({ prefix: '203.0.113.2/32', nextHop: TOR });
    await pollUntil('gobgpd has received it', async () => (await collect(client.listPaths({ family: 'ipv4', table: 'adj-in', neighbor: TOR }))).some((p) => p.prefix === '203.0.113.2/32'), { timeoutMs: 20_000 });
    expect(table().paths.has('203.0.113.2/32')).to.equal(false);
    await tor.deletePathByPrefix({ prefix: '203.0.113.2/32', nextHop: TOR });
    reconciler.setDesired(desired);
    await pollUntil('the ToR holds only the podCIDRs again', async () => (await learnedBy(tor, A)).length === 2, { timeoutMs: 20_000 });
  });

  it('bgp.localPreference.podCIDRs reaches the iBGP peer (node2) as LOCAL_PREF, and not the eBGP ToR', async () => {
    // The attributes as the agent derives them from its configuration (no node annotation overriding them).
    const config = parseAgentConfig({ nodeName: 'n1', cluster: { podRanges: ['10.244.0.0/16', 'fd00:244::/48'] }, bgp: { localPreference: { podCIDRs: 250 } } });
    const self = nodeInfoFromObject({ metadata: { name: 'n1' }, spec: { podCIDRs: ['10.244.1.0/24', 'fd00:244:0:1::/64'] } });
    const attributes = advertisedAttributes(config, self, 'podCIDRs');
    expect(attributes).to.deep.equal({ localPref: 250 });
    const prefsAt = async (c: GobgpClient): Promise<Record<string, number | undefined>> => {
      const paths = [...(await collect(c.listPaths({ family: 'ipv4', table: 'global' }))), ...(await collect(c.listPaths({ family: 'ipv6', table: 'global' })))];
      return Object.fromEntries(paths.filter((p) => p.neighborIp === A).map((p) => [p.prefix, p.localPref]));
    };
    const before = await prefsAt(node2);
    reconciler.setDesired({ ...desired, advertise: desired.advertise.map((p) => ({ ...p, ...attributes })) });
    try {
      const withPref = { '10.244.1.0/24': 250, 'fd00:244:0:1::/64': 250 };
      await pollUntil('node2 sees LOCAL_PREF 250 on our podCIDRs', async () => JSON.stringify(await prefsAt(node2)) === JSON.stringify(withPref) || undefined, { timeoutMs: 20_000 });
      // LOCAL_PREF never crosses an AS border (RFC 4271 5.1.5): the ToR holds the same prefixes without it.
      expect(await prefsAt(tor)).to.deep.equal({ '10.244.1.0/24': undefined, 'fd00:244:0:1::/64': undefined });
    } finally {
      reconciler.setDesired(desired);
    }
    await pollUntil('node2 sees the paths as before (no local preference configured)', async () => JSON.stringify(await prefsAt(node2)) === JSON.stringify(before) || undefined, { timeoutMs: 20_000 });
    expect(Object.values(before), 'unconfigured: gobgpd sends its default to iBGP peers').to.deep.equal([100, 100]);
  });

  it('imports what the rules allow and rejects hijacks', async () => {
    const events: LearnedTableView[] = [];
    const unsubscribe = reconciler.learned.onChange((t) => events.push(t));
    try {
      // Allowed: node2's own podCIDRs (v4 and v6), the ToR's prefix inside the pod range.
      await node2.addPath({ prefix: '10.244.2.0/24', nextHop: NODE2 });
      await node2.addPath({ prefix: 'fd00:244:0:2::/64', nextHop: NODE2_6 });
      // Hijacks: node2 announcing another node's prefix and a more-specific of its own; the ToR announcing a
      // prefix outside the ranges, our own podCIDR, a covering prefix and more-specifics inside ours (v4, v6).
      await node2.addPath({ prefix: '10.244.3.0/24', nextHop: NODE2 });
      await node2.addPath({ prefix: '10.244.2.128/25', nextHop: NODE2 });
      await tor.addPath({ prefix: '192.0.2.0/24', nextHop: TOR });
      await tor.addPath({ prefix: '10.244.1.0/24', nextHop: TOR });
      await tor.addPath({ prefix: '10.244.1.128/25', nextHop: TOR });
      await tor.addPath({ prefix: '10.244.0.0/16', nextHop: TOR });
      await tor.addPath({ prefix: 'fd00:244:0:1::/80', nextHop: NODE2_6 });
      // The tor's last announcement is what tells us the others went through gobgpd's import already.
      await tor.addPath({ prefix: '10.244.8.0/24', nextHop: TOR });
      await pollUntil('allowed routes learned', () => ['10.244.2.0/24', 'fd00:244:0:2::/64', '10.244.8.0/24'].every((p) => table().paths.has(p)));
      // Every hijack reached gobgpd (adj-in, before policy) and was turned away by the import policy.
      const adjIn = async (n: string, family: 'ipv4' | 'ipv6'): Promise<string[]> =>
        (await collect(client.listPaths({ family, table: 'adj-in', neighbor: n }))).map((p) => p.prefix);
      await pollUntil('hijacks received', async () => {
        const t4 = await adjIn(TOR, 'ipv4');
        const t6 = await adjIn(TOR, 'ipv6');
        const n4 = await adjIn(NODE2, 'ipv4');
        return (
          ['192.0.2.0/24', '10.244.1.0/24', '10.244.1.128/25', '10.244.0.0/16'].every((p) => t4.includes(p)) &&
          t6.includes('fd00:244:0:1::/80') &&
          ['10.244.3.0/24', '10.244.2.128/25'].every((p) => n4.includes(p))
        );
      });
      expect(tableSummary()).to.deep.equal({
        '10.244.2.0/24': [`${NODE2} ${NODE2}`],
        'fd00:244:0:2::/64': [`${NODE2} ${NODE2_6}`],
        '10.244.7.0/24': [`${TOR} ${TOR}`],
        '10.244.8.0/24': [`${TOR} ${TOR}`],
      });
      expect(events.length).to.be.greaterThan(0);
      expect(events.at(-1)!.synced).to.equal(true);

      // Withdrawals reach the table too.
      await tor.deletePathByPrefix({ prefix: '10.244.8.0/24', nextHop: TOR });
      await pollUntil('withdrawn', () => !table().paths.has('10.244.8.0/24'), { timeoutMs: 20_000 });
    } finally {
      unsubscribe();
    }
  });

  it('a no-change resync makes zero mutating gobgpd calls', async () => {
    const before = client.stats();
    const syncs = reconciler.status().loop.successes;
    reconciler.resync();
    await pollUntil('two more passes', () => reconciler.status().loop.successes >= syncs + 2, { timeoutMs: 20_000 });
    const after = client.stats();
    expect(after.mutatingCalls).to.equal(before.mutatingCalls);
    expect(after.calls['GetBgp'] ?? 0).to.be.greaterThan(before.calls['GetBgp'] ?? 0);
  });

  it('desired-state changes apply: a new podCIDR is advertised, a removed one withdrawn', async () => {
    reconciler.setDesired({
      ...desired,
      advertise: [
        { prefix: '10.244.11.0/24', nextHop: A },
        { prefix: 'fd00:244:0:1::/64', nextHop: A6 },
      ],
      importRules: { ...desired.importRules, ownPodCIDRs: ['10.244.11.0/24', 'fd00:244:0:1::/64'] },
    });
    try {
      await pollUntil('node2 sees the new prefix only', async () =>
        JSON.stringify(await learnedBy(node2, A)) === JSON.stringify([`10.244.11.0/24 via ${A}`, `fd00:244:0:1::/64 via ${A6}`]));
      // The old bundle goes once the new one is in (the same pass, after the paths node2 just saw): then only one
      // import and one export policy of ours remain.
      await pollUntil('the old policy bundle removed', async () => (await client.listPolicies()).filter((p) => p.name.startsWith('podroute-')).length === 2, { timeoutMs: 10_000 });
    } finally {
      reconciler.setDesired(desired);
    }
    await pollUntil('back to the original prefixes', async () => (await learnedBy(node2, A)).includes(`10.244.1.0/24 via ${A}`));
  });

  it('re-applies everything after gobgpd is killed (-9) and started again', async () => {
    await ours.kill();
    await ours.start();
    await pollUntil('our gobgpd configured again', async () => (await client.getBgp()).asn === 64512, { intervalMs: 200 });
    await pollUntil('sessions back', () => reconciler.status().peers.established === 2, { timeoutMs: 60_000, intervalMs: 200 });
    await pollUntil('node2 learns our prefixes again', async () => (await learnedBy(node2, A)).length === 2);
    expect(await learnedBy(node2, A)).to.deep.equal([`10.244.1.0/24 via ${A}`, `fd00:244:0:1::/64 via ${A6}`]);
    await pollUntil('learned table rebuilt', () => table().paths.has('10.244.2.0/24') && table().paths.has('10.244.7.0/24'));
    expect(table().paths.has('10.244.3.0/24')).to.equal(false);
  });
});
