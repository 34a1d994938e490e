// The lab's Service stand-ins against the real thing: the EndpointSlice controller writes slices that follow the
// pods (readiness, termination, named ports), and the service proxy DNATs Service addresses in the node
// namespaces over TCP and UDP, v4 and v6, with externalTrafficPolicy Local keeping the client's source and
// Cluster masquerading. Service addresses are set by hand (status through the status subresource; the class keeps
// the agent's allocator away) and routed to a chosen node by hand on the ToR and the spine: nothing here depends on
// the agent advertising Service addresses: where BGP is tested (ToR filters, spine ECMP, ext1 over the fabric), plain
// gobgpd speakers stand in for the advertising agents of two nodes. The agent side has its own tests.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { apiRequest } from '../../../src/lab/api.js';
import { labDown } from '../../../src/lab/down.js';
import { labStart, labStop } from '../../../src/lab/faults.js';
import { frrFiles, vtysh } from '../../../src/lab/frr.js';
import { nodeProbeSocket } from '../../../src/lab/kubelet/kubelet.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections, parsePodReply, probe, type ProbeProtocol } from '../../../src/lab/probe.js';
import { labServices, parseRib } from '../../../src/lab/service-status.js';
import { readLabState } from '../../../src/lab/state.js';
import { labUp } from '../../../src/lab/up.js';
import type { EndpointSlice, Pod, Service } from '../../../src/lab/services/endpoint-slices.js';
import { testLabName } from '../lab/leftovers.js';
import * as fixture from './fixture.js';
import { pollUntil } from '../../poll.js';

const LAB = testLabName('svcs', 'v');
const CLASS = 'lab.test/by-hand';
const LB4 = '203.0.113.10';
const LB6 = '2001:db8:200::10';
const EXT4 = '203.0.113.70';
const EXT6 = '2001:db8:201::70';
const EXT1 = { v4: '198.51.100.10', v6: '2001:db8:100::10' };

// Two racks: r1n1 and r1n2 behind tor1, r2n1 behind tor2, ext1 behind the spine.
const TOPOLOGY = `
cluster: { podRanges: [10.244.0.0/16, "fd00:10:244::/56"], asn: 64512, mesh: same-asn }
services:
  loadBalancerPools: [{ name: lab, cidrs: [203.0.113.0/26, "2001:db8:200::/120"] }]
  externalIPRanges: [203.0.113.64/26, "2001:db8:201::/120"]
  clusterIPRanges: [10.96.0.0/16, "fd00:10:96::/112"]
routers:
  - { name: spine1, asn: 65000, routerId: 10.255.0.1, role: spine }
  - { name: tor1, asn: 65001, routerId: 10.255.0.11, role: tor }
  - { name: tor2, asn: 65002, routerId: 10.255.0.12, role: tor }
links:
  - { type: p2p, a: spine1, b: tor1, ipv4: 10.255.1.0/31, ipv6: "fd00:255:1::/127" }
  - { type: p2p, a: spine1, b: tor2, ipv4: 10.255.1.2/31, ipv6: "fd00:255:1::2/127" }
  - { type: rack, tor: tor1, ipv4: 10.10.1.0/24, ipv6: "fd00:10:1::/64" }
  - { type: rack, tor: tor2, ipv4: 10.10.2.0/24, ipv6: "fd00:10:2::/64" }
nodes:
  - { name: r1n1, rack: tor1, asn: 64601, podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"] }
  - { name: r1n2, rack: tor1, asn: 64601, podCIDRs: [10.244.2.0/24, "fd00:10:244:2::/64"] }
  - { name: r2n1, rack: tor2, asn: 64602, podCIDRs: [10.244.3.0/24, "fd00:10:244:3::/64"] }
externalHosts:
  - { name: ext1, router: spine1, addresses: [198.51.100.10/24, "2001:db8:100::10/64"] }
kubernetes:
  namespaces: [{ name: x }]
`;
/** Rack addresses of the nodes (derived: .11, .12 ... / ::b, ::c) and the ToR's end of the spine link. */
const NODE_ADDR = { r1n1: { v4: '10.10.1.11', v6: 'fd00:10:1::b' }, r1n2: { v4: '10.10.1.12', v6: 'fd00:10:1::c' } } as const;
const TOR1_FROM_SPINE = { v4: '10.255.1.1', v6: 'fd00:255:1::1' };

const kubectl = (args: string[], stdin?: string): Promise<string> => fixture.kubectl(LAB, args, stdin);
const apply = (object: Record<string, unknown>): Promise<void> => fixture.apply(LAB, object);
const get = <T>(urlPath: string): Promise<T> => fixture.get<T>(LAB, urlPath);
const webPod = (name: string, node: string, extra: Record<string, unknown> = {}): Record<string, unknown> => fixture.servingPod(name, 'x', node, { app: 'web' }, extra);
const waitRunning = (name: string): Promise<Pod> => fixture.waitRunning(LAB, 'x', name);
const fromExt1 = (target: string, port: number, protocol: ProbeProtocol, timeoutMs?: number): Promise<fixture.Ext1Reply> => fixture.fromExt1(LAB, target, port, protocol, timeoutMs);

async function slicesOf(service: string): Promise<EndpointSlice[]> {
  const list = await get<{ items: EndpointSlice[] }>(`/apis/discovery.k8s.io/v1/namespaces/x/endpointslices?labelSelector=kubernetes.io/service-name=${service}`);
  return list.items.sort((a, b) => a.addressType.localeCompare(b.addressType));
}

// The agents advertise Service addresses themselves: kept out of BGP here, where addresses are routed by hand and
// plain gobgpd speakers stand in for the advertising nodes (test/lab/services/load-balancer.test.ts has the agents).
const service = (name: string, spec: Record<string, unknown>): Record<string, unknown> =>
  fixture.dualStackService(name, { app: 'web' }, spec, { 'podroute.io/advertise': 'false' });

/** Routes a Service address to one node by hand, on tor1 and on the spine (what the agent's advertisement would do). */
async function routeTo(address: string, node: keyof typeof NODE_ADDR): Promise<void> {
  const v6 = address.includes(':');
  const family = v6 ? 'v6' : 'v4';
  const host = `${address}/${v6 ? 128 : 32}`;
  await execa('ip', ['-n', labPaths(LAB).netns('tor1'), v6 ? '-6' : '-4', 'route', 'replace', host, 'via', NODE_ADDR[node][family]]);
  await execa('ip', ['-n', labPaths(LAB).netns('spine1'), v6 ? '-6' : '-4', 'route', 'replace', host, 'via', TOR1_FROM_SPINE[family]]);
}

/** ext1 reaches each target over TCP (80) and UDP (53), x/web-1 answers, and it saw one of the given client addresses. */
async function expectExt1Answers(cases: [target: string, clients: string[]][]): Promise<void> {
  for (const [target, clients] of cases) {
    for (const [port, protocol] of [
      [80, 'tcp'],
      [53, 'udp'],
    ] as const) {
      const r = await pollUntil(`ext1 -> ${target}:${port}/${protocol}`, async () => {
        const got = await fromExt1(target, port, protocol);
        if (got.error !== undefined) throw new Error(got.error);
        return got;
      });
      expect(r.identity, `${target} ${protocol}`).to.equal('x/web-1');
      expect(clients, `${target} ${protocol}: client ${r.client}`).to.include(r.client);
    }
  }
}

/** Plain gobgpd processes in node namespaces announcing prefixes to their ToR, as a node's BGP speaker would. */
class Speakers {
  private readonly children: ChildProcess[] = [];
  private dir = '';

  async start(node: string, asn: number, own: { v4: string; v6: string }, tor: { v4: string; v6: string }, torAsn: number): Promise<{ announce: (prefix: string) => Promise<void> }> {
    if (this.dir === '') this.dir = mkdtempSync(path.join(os.tmpdir(), 'labsvc-speakers-'));
    const neighbor = (address: string, afi: string): string =>
      `[[neighbors]]\n[neighbors.config]\nneighbor-address = "${address}"\npeer-as = ${torAsn}\n[neighbors.ttl-security.config]\nenabled = true\nttl-min = 255\n` +
      `[[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = "${afi}"\n`;
    const config = path.join(this.dir, `${node}.toml`);
    writeFileSync(config, `[global.config]\nas = ${asn}\nrouter-id = "${own.v4}"\nport = 179\n${neighbor(tor.v4, 'ipv4-unicast')}${neighbor(tor.v6, 'ipv6-unicast')}`);
    const socket = path.join(this.dir, `${node}.sock`);
    const child = spawn('ip', ['netns', 'exec', labPaths(LAB).netns(node), 'gobgpd', '-f', config, '--api-hosts', `unix://${socket}`, '--pprof-disable'], { stdio: 'ignore' });
    this.children.push(child);
    await pollUntil(`speaker on ${node}`, async () => (await execa('gobgp', ['--target', `unix://${socket}`, 'global'], { reject: false })).exitCode === 0);
    return {
      announce: async (prefix: string) => {
        await execa('gobgp', ['--target', `unix://${socket}`, 'global', 'rib', '-a', prefix.includes(':') ? 'ipv6' : 'ipv4', 'add', prefix]);
      },
    };
  }

  async stop(): Promise<void> {
    for (const child of this.children) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    if (this.dir !== '') rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('lab: Service stand-ins (EndpointSlice controller, service proxy)', function () {
  this.timeout(600_000);
  let podIPs: { v4: string; v6: string };
  const speakers = new Speakers();
  let dir = '';

  before(async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    dir = mkdtempSync(path.join(os.tmpdir(), 'labsvc-'));
    const file = path.join(dir, 'topology.yaml');
    writeFileSync(file, TOPOLOGY);
    await labUp({ topologyFile: file, name: LAB, timeoutMs: 240_000 });
    await apply(service('local', { type: 'LoadBalancer', loadBalancerClass: CLASS, externalTrafficPolicy: 'Local' }));
    await apply(service('cluster', { type: 'LoadBalancer', loadBalancerClass: CLASS, externalTrafficPolicy: 'Cluster', externalIPs: [EXT4, EXT6] }));
    // The LoadBalancer address, by hand, through the status subresource (the allocator is not under test here).
    await kubectl(['patch', 'service', 'local', '-n', 'x', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { loadBalancer: { ingress: [{ ip: LB4 }, { ip: LB6 }] } } })]);
    await apply(webPod('web-1', 'r1n1'));
    const pod = await waitRunning('web-1');
    const ips = (pod.status?.podIPs ?? []).map((p) => p.ip);
    podIPs = { v4: ips.find((ip) => !ip.includes(':')) ?? '', v6: ips.find((ip) => ip.includes(':')) ?? '' };
  });

  after(async () => {
    closeProbeConnections();
    await speakers.stop();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    if (readLabState(LAB) !== undefined) await labDown(LAB);
  });

  it('writes one slice per family as kube-controller-manager does: labels, owner, endpoint, node, conditions, resolved ports', async () => {
    const svc = await get<Service>('/api/v1/namespaces/x/services/local');
    const slices = await pollUntil('slices of x/local with web-1', async () => {
      const list = await slicesOf('local');
      return list.length === 2 && list.every((s) => (s.endpoints ?? []).length === 1) ? list : undefined;
    });
    expect(slices.map((s) => s.addressType)).to.deep.equal(['IPv4', 'IPv6']);
    for (const s of slices) {
      expect(s.metadata.labels).to.include({ 'kubernetes.io/service-name': 'local', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' });
      expect(s.metadata.name?.startsWith('local-')).to.equal(true);
      expect(s.metadata.ownerReferences).to.deep.equal([{ apiVersion: 'v1', kind: 'Service', name: 'local', uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true }]);
      const e = s.endpoints?.[0];
      expect(e?.addresses).to.deep.equal([s.addressType === 'IPv4' ? podIPs.v4 : podIPs.v6]);
      expect(e?.nodeName).to.equal('r1n1');
      expect(e?.conditions).to.deep.equal({ ready: true, serving: true, terminating: false });
      expect(e?.targetRef).to.include({ kind: 'Pod', namespace: 'x', name: 'web-1' });
      // The named target port resolved on the pod (serve-tcp = 8080), the numbered one as written.
      expect([...(s.ports ?? [])].sort((a, b) => a.name.localeCompare(b.name))).to.deep.equal([
        { name: 'dns', port: 8080, protocol: 'UDP' },
        { name: 'http', port: 8080, protocol: 'TCP' },
      ]);
    }
  });

  it('follows the pods: a new pod joins, a terminating one turns ready=false terminating=true, a deleted one leaves', async () => {
    await apply(webPod('web-2', 'r2n1', { finalizers: ['lab.test/hold'] }));
    await waitRunning('web-2');
    await pollUntil('web-2 ready in both slices', async () => {
      const list = await slicesOf('local');
      return list.length === 2 && list.every((s) => (s.endpoints ?? []).some((e) => e.targetRef.name === 'web-2' && e.conditions.ready && e.nodeName === 'r2n1'));
    });
    await kubectl(['delete', 'pod', 'web-2', '-n', 'x', '--wait=false']);
    await pollUntil('web-2 terminating in both slices', async () => {
      const list = await slicesOf('local');
      return list.every((s) => (s.endpoints ?? []).some((e) => e.targetRef.name === 'web-2' && !e.conditions.ready && e.conditions.terminating));
    });
    await kubectl(['patch', 'pod', 'web-2', '-n', 'x', '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    const slices = await pollUntil('web-2 gone from both slices', async () => {
      const list = await slicesOf('local');
      return list.every((s) => !(s.endpoints ?? []).some((e) => e.targetRef.name === 'web-2')) ? list : undefined;
    });
    expect(slices.map((s) => (s.endpoints ?? []).map((e) => e.targetRef.name))).to.deep.equal([['web-1'], ['web-1']]);
  });

  it('DNATs a LoadBalancer address from another node netns to the endpoint, TCP and UDP, v4 and v6', async () => {
    const socket = nodeProbeSocket(LAB, 'r1n2');
    for (const target of [LB4, LB6]) {
      for (const [port, protocol] of [
        [80, 'tcp'],
        [53, 'udp'],
      ] as const) {
        const result = await pollUntil(`r1n2 -> ${target}:${port}/${protocol}`, async () => {
          const r = await probe(socket, { target, port, protocol, timeoutMs: 1500 });
          if (!r.ok) throw new Error(r.error);
          return r;
        });
        expect(parsePodReply(result.reply ?? '')?.identity, `${target} ${protocol}`).to.equal('x/web-1');
      }
    }
  });

  it('externalTrafficPolicy Local: traffic from ext1 routed to the endpoint node reaches the pod with ext1 as source', async () => {
    await routeTo(LB4, 'r1n1');
    await routeTo(LB6, 'r1n1');
    await expectExt1Answers([
      [LB4, [EXT1.v4]],
      [LB6, [EXT1.v6]],
    ]);
  });

  it('externalTrafficPolicy Local: a node without a local endpoint drops external traffic', async () => {
    await routeTo(LB4, 'r1n2');
    await routeTo(LB6, 'r1n2');
    for (const target of [LB4, LB6]) {
      for (const [port, protocol] of [
        [80, 'tcp'],
        [53, 'udp'],
      ] as const) {
        expect(await fromExt1(target, port, protocol, 1500), `${target} ${protocol}`).to.deep.equal({ error: 'timeout' });
      }
    }
    // Dropped by the proxy's rule on r1n2 (not lost on the way): its counters moved, for each address and protocol.
    for (const [tool, target] of [
      ['iptables-save', LB4],
      ['ip6tables-save', LB6],
    ] as const) {
      const { stdout } = await execa('ip', ['netns', 'exec', labPaths(LAB).netns('r1n2'), tool, '-c', '-t', 'filter']);
      for (const protocol of ['tcp', 'udp']) {
        const rule = stdout.split('\n').find((l) => l.includes(`-A LABSVC-FILTER -d ${target}/${target.includes(':') ? 128 : 32} -p ${protocol} `) && l.endsWith('-j DROP'));
        expect(Number(/^\[(\d+):/.exec(rule ?? '')?.[1] ?? 0), `${target} ${protocol}: ${rule}`).to.be.greaterThan(0);
      }
    }
  });

  it('externalTrafficPolicy Cluster (spec.externalIPs): any endpoint, masqueraded to the node that DNATed', async () => {
    await routeTo(EXT4, 'r1n2');
    await routeTo(EXT6, 'r1n2');
    await expectExt1Answers([
      [EXT4, [NODE_ADDR.r1n2.v4]],
      [EXT6, [NODE_ADDR.r1n2.v6]],
    ]);
  });

  it('ToRs take Service host routes (not other prefixes) from nodes and the spine spreads them (ECMP); ext1 reaches the Service; lab show names the advertisers', async () => {
    // The agents of r1n2 and r2n1 make way for plain gobgpd speakers that announce what an advertising agent would
    // (this checks the fabric's side: FRR filters and multipath, independent of the agent's advertisement code).
    for (const node of ['r1n2', 'r2n1']) for (const daemon of ['agent', 'gobgpd']) await labStop(LAB, `${daemon}/${node}`);
    for (const [address, router] of [
      [EXT4, 'tor1'],
      [EXT4, 'spine1'],
      [EXT6, 'tor1'],
      [EXT6, 'spine1'],
    ] as const) {
      await execa('ip', ['-n', labPaths(LAB).netns(router), 'route', 'del', address]);
    }
    const r1n2 = await speakers.start('r1n2', 64601, { v4: '10.10.1.12', v6: 'fd00:10:1::c' }, { v4: '10.10.1.1', v6: 'fd00:10:1::1' }, 65001);
    const r2n1 = await speakers.start('r2n1', 64602, { v4: '10.10.2.11', v6: 'fd00:10:2::b' }, { v4: '10.10.2.1', v6: 'fd00:10:2::1' }, 65002);
    for (const speaker of [r1n2, r2n1]) {
      await speaker.announce(`${EXT4}/32`);
      await speaker.announce(`${EXT6}/128`);
    }
    // Not Service host routes: a whole pool, an address outside every Service range. The ClusterIP aggregate is one.
    await r1n2.announce('203.0.113.0/26');
    await r1n2.announce('192.0.2.1/32');
    await r1n2.announce('10.96.0.0/16');
    const tor1 = await pollUntil('tor1 learned the Service routes of r1n2', async () => {
      const rib = parseRib(await vtysh(frrFiles(labPaths(LAB).frrDir('tor1')), 'show bgp ipv4 unicast json'));
      return rib.some((r) => r.prefix === `${EXT4}/32` && r.peers.includes('10.10.1.12')) && rib.some((r) => r.prefix === '10.96.0.0/16') ? rib : undefined;
    });
    expect(tor1.filter((r) => ['203.0.113.0/26', '192.0.2.1/32'].includes(r.prefix))).to.deep.equal([]);
    for (const [target, v6] of [
      [EXT4, false],
      [EXT6, true],
    ] as const) {
      const hops = await pollUntil(`spine1 routes ${target} over both ToRs`, async () => {
        const { stdout } = await execa('ip', ['-n', labPaths(LAB).netns('spine1'), '-j', v6 ? '-6' : '-4', 'route', 'show', target]);
        const [route] = JSON.parse(stdout || '[]') as { nexthops?: { dev: string }[] }[];
        const devs = (route?.nexthops ?? []).map((h) => h.dev).sort();
        return devs.length === 2 ? devs : undefined;
      });
      expect(hops).to.deep.equal(['to-tor1', 'to-tor2']);
    }
    // End to end over the fabric: ext1 -> spine (ECMP) -> a ToR -> an advertising node -> DNAT (Cluster: SNAT to it).
    await expectExt1Answers([
      [EXT4, ['10.10.1.12', '10.10.2.11']],
      [EXT6, ['fd00:10:1::c', 'fd00:10:2::b']],
    ]);
    const cluster = (await labServices(LAB)).find((svc) => svc.name === 'cluster');
    expect(cluster?.addresses.filter((a) => a.kind === 'externalIP')).to.deep.equal([
      { address: EXT4, kind: 'externalIP', advertisedBy: ['r1n2', 'r2n1'] },
      { address: EXT6, kind: 'externalIP', advertisedBy: ['r1n2', 'r2n1'] },
    ]);
    // The ClusterIP range aggregate: from the speaker of r1n2 and from r1n1, whose agent still runs (it advertises the range).
    expect(cluster?.addresses.find((a) => a.kind === 'clusterIP' && !a.address.includes(':'))?.advertisedBy).to.deep.equal(['r1n1', 'r1n2']);
  });

  it('the stand-ins restart: rules removed by hand come back from a restarted service proxy, slices from a restarted controller', async () => {
    await labStop(LAB, 'service-proxy');
    await labStop(LAB, 'endpointslice-controller');
    await execa('ip', ['netns', 'exec', labPaths(LAB).netns('r1n1'), 'iptables', '-t', 'nat', '-F', 'LABSVC-SERVICES']);
    const [slice] = await slicesOf('local');
    await apiRequest(labPaths(LAB).apiSocket, 'DELETE', `/apis/discovery.k8s.io/v1/namespaces/x/endpointslices/${slice?.metadata.name ?? ''}`);
    labStart(LAB, 'service-proxy');
    labStart(LAB, 'endpointslice-controller');
    await pollUntil('both slices of x/local back', async () => (await slicesOf('local')).length === 2);
    await pollUntil('LABSVC-SERVICES rules back on r1n1', async () => {
      const { stdout } = await execa('ip', ['netns', 'exec', labPaths(LAB).netns('r1n1'), 'iptables-save', '-t', 'nat']);
      // iptables-save prints the matches in its own order (-d and -p before the comment).
      return stdout.split('\n').some((l) => l.startsWith(`-A LABSVC-SERVICES -d ${LB4}/32 -p tcp `) && l.includes('--dport 80 '));
    });
  });

  it('no endpoint left: the address is rejected; the Service deleted: its slices and rules go', async () => {
    await kubectl(['delete', 'pod', 'web-1', '-n', 'x', '--wait=false']);
    await pollUntil('x/cluster slices empty', async () => {
      const list = await slicesOf('cluster');
      return list.length === 2 && list.every((s) => (s.endpoints ?? []).length === 0);
    });
    const refused = await pollUntil(`r1n2 -> ${EXT4}:80 refused`, async () => {
      const r = await probe(nodeProbeSocket(LAB, 'r1n2'), { target: EXT4, port: 80, protocol: 'tcp', timeoutMs: 1500 });
      return r.error === 'refused' || r.error === 'unreachable' ? r : undefined;
    });
    expect(refused.ok).to.equal(false);
    await kubectl(['delete', 'service', 'local', 'cluster', '-n', 'x']);
    await pollUntil('no slices left in x', async () => (await get<{ items: unknown[] }>('/apis/discovery.k8s.io/v1/namespaces/x/endpointslices')).items.length === 0);
    await pollUntil('no per-Service chains left on r1n1', async () => {
      const { stdout } = await execa('ip', ['netns', 'exec', labPaths(LAB).netns('r1n1'), 'iptables-save']);
      return !/LABSVC-(SVC|SEP|EXT|SVL)-/.test(stdout) && /-A PREROUTING -j LABSVC-SERVICES/.test(stdout);
    });
  });
});
