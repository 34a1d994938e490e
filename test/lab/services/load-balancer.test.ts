// LoadBalancer Services from the fabric, end to end on the default topology (two racks, ext1 behind the spine): the
// agents allocate (one Lease holder) and advertise over their ToR sessions; the lab's EndpointSlice controller and
// service proxy stand in for kube-controller-manager and kube-proxy. Everything a user would see: the Service's
// status, its Events, the ToRs' and the spine's RIBs, and ext1's probes.
import { expect } from 'chai';
import { execa } from 'execa';
import path from 'node:path';
import { labDown } from '../../../src/lab/down.js';
import { labStart, labStop } from '../../../src/lab/faults.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections, probe } from '../../../src/lab/probe.js';
import { labServices } from '../../../src/lab/service-status.js';
import type { Service } from '../../../src/kube/wire.js';
import { readLabState } from '../../../src/lab/state.js';
import { labUp } from '../../../src/lab/up.js';
import { parseIpAddress, parseIpPrefix, prefixContainsAddress } from '../../../src/routes/ip-prefix.js';
import { pollUntil } from '../../poll.js';
import { repoRoot, testLabName } from '../lab/leftovers.js';
import { apply, dualStackService, fromExt1, get, kubectl, servingPod, waitRunning } from './fixture.js';

const LAB = testLabName('lbs', 'l');
const TOPOLOGY = path.join(repoRoot(), 'topologies', 'two-racks.yaml');
const POOL = { v4: parseIpPrefix('203.0.113.0/26')!, v6: parseIpPrefix('2001:db8:200::/120')! };
const EXT1 = { v4: '198.51.100.10', v6: '2001:db8:100::10' };
const NODES = ['r1n1', 'r1n2', 'r2n1', 'r2n2'];
const APP = { app: 'lbweb' };

function loadBalancer(name: string, spec: Record<string, unknown> = {}, annotations: Record<string, string> = {}): Record<string, unknown> {
  return dualStackService(name, APP, { type: 'LoadBalancer', ...spec }, annotations);
}

const service = (name: string): Promise<Service> => get<Service>(LAB, `/api/v1/namespaces/x/services/${name}`);
const ingressOf = (svc: Service): string[] => (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '');

async function addressesOf(name: string, count = 2): Promise<string[]> {
  return await pollUntil(`x/${name} gets ${count} address(es)`, async () => {
    const ips = ingressOf(await service(name));
    return ips.length === count ? ips : undefined;
  });
}

/** The nodes the ToRs learned a Service address from (their BGP RIBs, as `podroute lab show` prints them). */
async function advertisers(name: string, address: string): Promise<string[]> {
  const view = (await labServices(LAB)).find((s) => s.name === name && s.namespace === 'x');
  return view?.addresses.find((a) => a.address === address && a.kind !== 'clusterIP')?.advertisedBy ?? [];
}

/** The spine's kernel route to an address: its next-hop interfaces (to-tor1, to-tor2); [] when it has none. */
async function spineHops(address: string): Promise<string[]> {
  const v6 = address.includes(':');
  const { stdout } = await execa('ip', ['-n', labPaths(LAB).netns('spine1'), '-j', v6 ? '-6' : '-4', 'route', 'show', `${address}/${v6 ? 128 : 32}`]);
  const [route] = JSON.parse(stdout || '[]') as { dev?: string; nexthops?: { dev: string }[] }[];
  if (route === undefined) return [];
  return (route.nexthops ?? [{ dev: route.dev ?? '' }]).map((h) => h.dev).sort();
}

/** The ToR's kernel route to an address: how many next hops (nodes of its rack) it spreads over. */
async function torHopCount(tor: string, address: string): Promise<number> {
  const v6 = address.includes(':');
  const { stdout } = await execa('ip', ['-n', labPaths(LAB).netns(tor), '-j', v6 ? '-6' : '-4', 'route', 'show', `${address}/${v6 ? 128 : 32}`]);
  const [route] = JSON.parse(stdout || '[]') as { gateway?: string; nexthops?: unknown[] }[];
  return route === undefined ? 0 : (route.nexthops?.length ?? (route.gateway === undefined ? 0 : 1));
}

async function expectAdvertisedBy(name: string, addresses: string[], nodes: string[]): Promise<void> {
  const want = [...nodes].sort();
  const racks = [...new Set(want.map((n) => (n.startsWith('r1') ? 'to-tor1' : 'to-tor2')))].sort();
  for (const address of addresses) {
    await pollUntil(
      `${address} advertised by exactly [${want.join(', ')}] and routed by the spine over [${racks.join(', ')}]`,
      async () => JSON.stringify(await advertisers(name, address)) === JSON.stringify(want) && JSON.stringify(await spineHops(address)) === JSON.stringify(racks),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  }
}

/** ext1 reaches the Service at each address over TCP and UDP; returns the client address each backend saw. */
async function ext1Reaches(addresses: string[]): Promise<{ identity: string; client: string }[]> {
  const out: { identity: string; client: string }[] = [];
  for (const target of addresses) {
    for (const [port, protocol] of [
      [80, 'tcp'],
      [53, 'udp'],
    ] as const) {
      const reply = await pollUntil(`ext1 -> ${target}:${port}/${protocol}`, async () => {
        const r = await fromExt1(LAB, target, port, protocol);
        return r.error === undefined ? r : undefined;
      });
      out.push({ identity: reply.identity ?? '', client: reply.client ?? '' });
    }
  }
  return out;
}

async function eventsOf(name: string): Promise<{ type: string; reason: string; message: string }[]> {
  const list = await get<{ items: { type?: string; reason?: string; message?: string; involvedObject?: { name?: string } }[] }>(LAB, '/api/v1/namespaces/x/events');
  return list.items.filter((e) => e.involvedObject?.name === name).map((e) => ({ type: e.type ?? '', reason: e.reason ?? '', message: e.message ?? '' }));
}

async function conditionOf(name: string, type: string): Promise<{ status: string; reason: string; message: string } | undefined> {
  const svc = await service(name);
  return svc.status?.conditions?.find((c) => c.type === type);
}

async function scaleTo(nodes: string[]): Promise<void> {
  const wanted = new Map(nodes.map((node) => [`lbweb-${node}`, node]));
  const pods = await get<{ items: { metadata: { name: string } }[] }>(LAB, '/api/v1/namespaces/x/pods?labelSelector=app%3Dlbweb');
  const gone = pods.items.map((p) => p.metadata.name).filter((n) => !wanted.has(n));
  if (gone.length > 0) await kubectl(LAB, ['delete', 'pod', '-n', 'x', '--wait=false', ...gone]);
  for (const [name, node] of wanted) await apply(LAB, servingPod(name, 'x', node, APP));
  for (const name of wanted.keys()) await waitRunning(LAB, 'x', name);
}

describe('lab: LoadBalancer Services from the fabric (default topology)', function () {
  this.timeout(600_000);
  let local: string[] = [];

  before(async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    await labUp({ topologyFile: TOPOLOGY, name: LAB, timeoutMs: 240_000 });
  });

  after(async () => {
    closeProbeConnections();
    if (readLabState(LAB) !== undefined) await labDown(LAB);
  });

  it('a LoadBalancer Service gets one address of each family from the pool, and ext1 reaches it over TCP and UDP with its own address kept (Local)', async () => {
    await scaleTo(['r1n1']);
    await apply(LAB, loadBalancer('local', { externalTrafficPolicy: 'Local' }));
    local = await addressesOf('local');
    const [v4, v6] = local.map((a) => parseIpAddress(a)!);
    expect(prefixContainsAddress(POOL.v4, v4!), local.join()).to.equal(true);
    expect(prefixContainsAddress(POOL.v6, v6!), local.join()).to.equal(true);
    expect(await conditionOf('local', 'podroute.io/LoadBalancerAllocated')).to.include({ status: 'True', reason: 'Allocated' });
    const replies = await ext1Reaches(local);
    expect(replies.map((r) => r.identity)).to.deep.equal(Array(4).fill('x/lbweb-r1n1'));
    expect(replies.map((r) => r.client)).to.deep.equal([EXT1.v4, EXT1.v4, EXT1.v6, EXT1.v6]);
  });

  it('Local: the ToRs and the spine route exactly to the nodes with a ready endpoint, through 0 -> 1 -> 3 -> 1 -> 0 and a move between racks', async () => {
    await scaleTo([]);
    await expectAdvertisedBy('local', local, []);
    await scaleTo(['r1n1']);
    await expectAdvertisedBy('local', local, ['r1n1']);
    await scaleTo(['r1n1', 'r1n2', 'r2n1']);
    await expectAdvertisedBy('local', local, ['r1n1', 'r1n2', 'r2n1']);
    // ECMP at the ToR: tor1 spreads over both of its nodes with an endpoint, tor2 goes to its one.
    for (const address of local) {
      expect(await torHopCount('tor1', address), address).to.equal(2);
      expect(await torHopCount('tor2', address), address).to.equal(1);
    }
    await scaleTo(['r1n2']);
    await expectAdvertisedBy('local', local, ['r1n2']);
    // Moved to the other rack: rack 1 withdraws, rack 2 advertises; ext1 follows.
    await scaleTo(['r2n2']);
    await expectAdvertisedBy('local', local, ['r2n2']);
    expect((await ext1Reaches(local)).map((r) => `${r.identity} ${r.client}`)).to.deep.equal([
      `x/lbweb-r2n2 ${EXT1.v4}`,
      `x/lbweb-r2n2 ${EXT1.v4}`,
      `x/lbweb-r2n2 ${EXT1.v6}`,
      `x/lbweb-r2n2 ${EXT1.v6}`,
    ]);
    await scaleTo([]);
    await expectAdvertisedBy('local', local, []);
  });

  it('Cluster: every node advertises, and ext1 reaches the endpoint through any of them', async () => {
    await scaleTo(['r2n1']);
    await apply(LAB, loadBalancer('cluster', { externalTrafficPolicy: 'Cluster' }));
    const addresses = await addressesOf('cluster');
    await expectAdvertisedBy('cluster', addresses, NODES);
    expect((await ext1Reaches(addresses)).every((r) => r.identity === 'x/lbweb-r2n1')).to.equal(true);
  });

  it('two Services asking for one address: the first keeps it, the second is refused with a Warning Event and a condition', async () => {
    const wanted = '203.0.113.40';
    await apply(LAB, loadBalancer('first', { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4'] }, { 'podroute.io/load-balancer-ips': wanted }));
    expect(await addressesOf('first', 1)).to.deep.equal([wanted]);
    await apply(LAB, loadBalancer('second', { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4'] }, { 'podroute.io/load-balancer-ips': wanted }));
    const condition = await pollUntil('x/second refused', async () => {
      const c = await conditionOf('second', 'podroute.io/LoadBalancerAllocated');
      return c?.status === 'False' ? c : undefined;
    });
    expect(condition.reason).to.equal('AddressInUse');
    expect(ingressOf(await service('second'))).to.deep.equal([]);
    const events = await pollUntil('a Warning Event on x/second', async () => {
      const list = (await eventsOf('second')).filter((e) => e.type === 'Warning');
      return list.length > 0 ? list : undefined;
    });
    expect(events.map((e) => e.reason)).to.deep.equal(['AddressInUse']);
    expect(events[0]?.message).to.include(wanted);
    expect(ingressOf(await service('first'))).to.deep.equal([wanted]);
  });

  it('an externalIPs entry outside services.externalIPRanges is not advertised, and the Service says why', async () => {
    await apply(LAB, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'external', namespace: 'x' },
      spec: { selector: APP, externalIPs: ['203.0.113.70', '192.0.2.50'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    });
    await expectAdvertisedBy('external', ['203.0.113.70'], NODES);
    const { stdout } = await execa('ip', ['-n', labPaths(LAB).netns('spine1'), '-4', 'route', 'show', '192.0.2.50']);
    expect(stdout.trim()).to.equal('');
    const events = await pollUntil('a Warning Event on x/external', async () => {
      const list = (await eventsOf('external')).filter((e) => e.type === 'Warning');
      return list.length > 0 ? list : undefined;
    });
    expect(events.map((e) => e.reason)).to.deep.equal(['ExternalIPNotAllowed']);
    expect(events[0]?.message).to.include('192.0.2.50');
    expect(await conditionOf('external', 'podroute.io/ExternalIPsAllowed')).to.include({ status: 'False', reason: 'ExternalIPNotAllowed' });
  });

  it('NetworkPolicy: an ipBlock for ext1 admits it to a Local Service; other clients are refused, and so is ext1 once the block names another address', async () => {
    await scaleTo(['r1n1']);
    await expectAdvertisedBy('local', local, ['r1n1']);
    const policy = (cidrs: string[]): Record<string, unknown> => ({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'only-ext1', namespace: 'x' },
      spec: { podSelector: { matchLabels: APP }, policyTypes: ['Ingress'], ingress: [{ from: cidrs.map((cidr) => ({ ipBlock: { cidr } })) }] },
    });
    // Another client, pod y/a on r2n2, reaches the pod directly before the policy, and is refused once it is in.
    const pod = await waitRunning(LAB, 'x', 'lbweb-r1n1');
    const podIPs = (pod.status?.podIPs ?? []).map((p) => p.ip);
    const fromYa = async (ip: string): Promise<boolean> => (await probe(labPaths(LAB).podSocket('y', 'a'), { target: ip, port: 8080, protocol: 'tcp', timeoutMs: 1500 })).ok;
    for (const ip of podIPs) await pollUntil(`y/a -> ${ip} before the policy`, () => fromYa(ip));
    await apply(LAB, policy([`${EXT1.v4}/32`, `${EXT1.v6}/128`]));
    for (const ip of podIPs) await pollUntil(`y/a -> ${ip} refused by the policy`, async () => !(await fromYa(ip)));
    expect((await ext1Reaches(local)).map((r) => r.client)).to.deep.equal([EXT1.v4, EXT1.v4, EXT1.v6, EXT1.v6]);
    await apply(LAB, policy(['198.51.100.11/32', '2001:db8:100::11/128']));
    for (const target of local) {
      await pollUntil(`ext1 -> ${target} refused`, async () => (await fromExt1(LAB, target, 80, 'tcp', 1500)).error !== undefined);
      expect((await fromExt1(LAB, target, 53, 'udp', 1500)).error, target).to.equal('timeout');
    }
    await kubectl(LAB, ['delete', 'networkpolicy', 'only-ext1', '-n', 'x']);
  });

  it('the allocating agent killed (-9): another takes the Lease, addresses stay as they are, and a new Service still gets one', async () => {
    const leasePath = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/podroute-allocator';
    const holder = (await get<{ spec?: { holderIdentity?: string } }>(LAB, leasePath)).spec?.holderIdentity ?? '';
    expect(NODES).to.include(holder);
    const before = new Map<string, string[]>();
    for (const name of ['local', 'cluster', 'first']) before.set(name, ingressOf(await service(name)));
    await labStop(LAB, `agent/${holder}`, 'SIGKILL');
    try {
      const next = await pollUntil(
        'another agent holds the Lease',
        async () => {
          const h = (await get<{ spec?: { holderIdentity?: string } }>(LAB, leasePath)).spec?.holderIdentity ?? '';
          return h !== holder && NODES.includes(h) ? h : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      expect(next).to.not.equal(holder);
      await apply(LAB, loadBalancer('after-failover'));
      const fresh = await addressesOf('after-failover');
      for (const [name, ips] of before) expect(ingressOf(await service(name)), name).to.deep.equal(ips);
      const taken = new Set([...before.values()].flat());
      for (const ip of fresh) expect(taken.has(ip), ip).to.equal(false);
    } finally {
      labStart(LAB, `agent/${holder}`);
    }
    // The API keeps a deleted Service's addresses nowhere but in its status: deleting one frees them for the next.
    const freed = ingressOf(await service('cluster'));
    await kubectl(LAB, ['delete', 'service', 'cluster', '-n', 'x']);
    await apply(LAB, loadBalancer('reuse', { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4'] }));
    expect(await addressesOf('reuse', 1)).to.deep.equal([freed[0]]);
  });
});
