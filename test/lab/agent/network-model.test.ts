// The Kubernetes network model, end to end, on two-racks with `podroute agent` on every node (issue 3): pods reach
// pods everywhere without NAT, nodes reach their pods, host-network pods reach all pods with their node's address,
// traffic leaving the cluster is masqueraded; nodes come and go; hijacks are refused; foreign routes are left
// alone; an agent restart changes nothing; bad annotations are reported and skipped.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { frrFiles, vtysh } from '../../../src/lab/frr.js';
import { nodeProbeSocket } from '../../../src/lab/kubelet/kubelet.js';
import { apiRequest } from '../../../src/lab/api.js';
import { CLI_MAIN } from '../../../src/lab/daemons.js';
import { labDown } from '../../../src/lab/down.js';
import { labRestart, labStart, labStop } from '../../../src/lab/faults.js';
import { labNodeAdd, labNodeRemove } from '../../../src/lab/nodes.js';
import { labStatus, nodeRoutes, type LabStatusReport } from '../../../src/lab/status.js';
import { labUp } from '../../../src/lab/up.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections, parsePodReply, probeMany, type ProbeJob, type ProbeResult } from '../../../src/lab/probe.js';
import { readLabState } from '../../../src/lab/state.js';
import { repoRoot, testLabName } from '../lab/leftovers.js';
import { pollUntil } from '../../poll.js';
import { RouteMonitor } from '../route-monitor.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

const LAB = testLabName('e2enet', 'e2e');
const paths = labPaths(LAB);
const topologyFile = path.join(repoRoot(), 'topologies', 'two-racks.yaml');
const NODE_ADDRESSES: Record<string, string[]> = {
  r1n1: ['10.10.1.11', 'fd00:10:1::b'],
  r1n2: ['10.10.1.12', 'fd00:10:1::c'],
  r2n1: ['10.10.2.11', 'fd00:10:2::b'],
  r2n2: ['10.10.2.12', 'fd00:10:2::c'],
};
const EXTERNAL = ['198.51.100.10', '2001:db8:100::10'];

interface Pod {
  id: string;
  node: string;
  ips: string[];
  socket: string;
}

function podsOf(status: LabStatusReport): Pod[] {
  return status.pods
    .filter((p) => p.ips.length > 0)
    .map((p) => ({ id: `${p.namespace}/${p.name}`, node: p.node, ips: p.ips, socket: paths.podSocket(p.namespace, p.name) }));
}

/** Runs probes and returns the failures, each with what was expected and what came back. */
async function failures(jobs: (ProbeJob & { expectClient?: string; expectIdentity: string })[]): Promise<string[]> {
  const results: ProbeResult[] = await probeMany(jobs, 64);
  const bad: string[] = [];
  results.forEach((result, i) => {
    const job = jobs[i]!;
    const what = `${job.from.split('/').pop()} -> ${job.target}:${job.port}/${job.protocol}`;
    const reply = parsePodReply(result.reply ?? '');
    if (!result.ok || reply === undefined) bad.push(`${what}: ${result.error ?? 'no reply'}`);
    else if (reply.identity !== job.expectIdentity) bad.push(`${what}: answered by ${reply.identity}, expected ${job.expectIdentity}`);
    else if (job.expectClient !== undefined && reply.clientAddress !== job.expectClient) bad.push(`${what}: server saw ${reply.clientAddress}, expected ${job.expectClient}`);
  });
  return bad;
}

function sameFamily(a: string, b: string): boolean {
  return familyOf(a) === familyOf(b);
}

function kernelRoutes(node: string): Promise<string[]> {
  return nodeRoutes(LAB, node).then((routes) => routes.map((r) => r.prefix));
}

async function createPod(namespace: string, name: string, spec: Record<string, unknown>): Promise<void> {
  const res = await apiRequest(paths.apiSocket, 'POST', `/api/v1/namespaces/${namespace}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { pod: name } },
    spec: { ...spec, containers: [{ name: 'serve', image: 'podroute.io/lab-podserver', ports: [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 80, protocol: 'UDP' }] }] },
  });
  expect(res.status, JSON.stringify(res.body)).to.equal(201);
}

async function runningPod(namespace: string, name: string): Promise<Pod> {
  return pollUntil(`${namespace}/${name} Running with IPs`, async () => {
    const pod = (await labStatus(LAB)).pods.find((p) => p.namespace === namespace && p.name === name);
    return pod !== undefined && pod.phase === 'Running' && pod.ips.length > 0
      ? { id: `${namespace}/${name}`, node: pod.node, ips: pod.ips, socket: paths.podSocket(namespace, name) }
      : undefined;
  }, { timeoutMs: 60_000 });
}

function agentLog(node: string): string {
  return readFileSync(path.join(paths.logDir, `agent_${node}.log`), 'utf8');
}

describe('network model end to end (two-racks with podroute agents)', function () {
  this.timeout(300_000);
  let pods: Pod[];

  before(async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    await labUp({ topologyFile, name: LAB, timeoutMs: 180_000 });
    pods = podsOf(await labStatus(LAB));
    expect(pods).to.have.length(9);
    // Converged = every node routes to every other node's podCIDRs (both families).
    await pollUntil('every node routes every other podCIDR', async () => {
      for (const node of Object.keys(NODE_ADDRESSES)) if ((await kernelRoutes(node)).length < 6) return undefined;
      return true;
    }, { timeoutMs: 90_000 });
  });

  after(async () => {
    closeProbeConnections();
    if (readLabState(LAB) !== undefined) await labDown(LAB);
  });

  it('every pod reaches every pod on every node, TCP and UDP, IPv4 and IPv6, and the server sees the client pod IP (no NAT)', async () => {
    const jobs = pods.flatMap((src) =>
      pods.flatMap((dst) =>
        dst.ips.flatMap((target) =>
          [80, 81].flatMap((port) =>
            (['tcp', 'udp'] as const).map((protocol) => ({
              from: src.socket,
              target,
              port,
              protocol,
              timeoutMs: 2000,
              expectIdentity: dst.id,
              expectClient: src.ips.find((ip) => sameFamily(ip, target)),
            })),
          ),
        ),
      ),
    );
    expect(jobs).to.have.length(9 * 9 * 2 * 2 * 2);
    expect(await failures(jobs)).to.deep.equal([]);
  });

  it('each node reaches its own pods and every other pod (node agents, kubelet probes)', async () => {
    const jobs = Object.entries(NODE_ADDRESSES).flatMap(([node, addresses]) =>
      pods.flatMap((dst) =>
        dst.ips.map((target) => ({
          from: nodeProbeSocket(LAB, node),
          target,
          port: 80,
          protocol: 'tcp' as const,
          timeoutMs: 2000,
          expectIdentity: dst.id,
          // Towards its own pods a node speaks from its bridge gateway; elsewhere from its own address.
          ...(dst.node === node ? {} : { expectClient: addresses.find((a) => sameFamily(a, target)) }),
        })),
      ),
    );
    expect(await failures(jobs)).to.deep.equal([]);
  });

  it('sets the NetworkUnavailable=False condition on every node', async () => {
    const res = await apiRequest(paths.apiSocket, 'GET', '/api/v1/nodes');
    const nodes = (res.body as { items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string; reason?: string }[] } }[] }).items;
    for (const node of nodes) {
      const condition = node.status?.conditions?.find((c) => c.type === 'NetworkUnavailable');
      expect(condition, node.metadata.name).to.deep.include({ status: 'False', reason: 'PodrouteRoutesProgrammed' });
    }
  });

  it('podroute status in a node shows every peer Established; killing gobgpd turns /readyz and the peer metric, restarting it brings them back', async () => {
    const config = path.join(paths.nodeDir('r1n1'), 'agent.yaml');
    const status = (): { peers: { address: string; state: string; type: string }[] } => {
      const out = execFileSync('ip', ['netns', 'exec', paths.netns('r1n1'), process.execPath, CLI_MAIN, 'status', '-c', config, '-o', 'json'], { encoding: 'utf8' });
      return JSON.parse(out) as { peers: { address: string; state: string; type: string }[] };
    };
    const inNode = (url: string): { code: number; body: string } => {
      const out = execFileSync('ip', ['netns', 'exec', paths.netns('r1n1'), 'curl', '-s', '-w', '\n%{http_code}', url], { encoding: 'utf8' });
      const lines = out.trimEnd().split('\n');
      return { code: Number(lines.pop()), body: lines.join('\n') };
    };
    const peerMetric = (): string[] => inNode('http://127.0.0.1:9476/metrics').body.split('\n').filter((l) => l.startsWith('podroute_bgp_peer_established{'));
    await pollUntil('every peer of r1n1 Established', () => {
      const s = status();
      return s.peers.length === 3 && s.peers.every((p) => p.state === 'ESTABLISHED') ? s : undefined;
    }, { timeoutMs: 60_000 });
    expect(inNode('http://127.0.0.1:9476/readyz').code).to.equal(200);
    expect(peerMetric().filter((l) => l.endsWith(' 1'))).to.have.length(3);

    await labStop(LAB, 'gobgpd/r1n1', 'SIGKILL');
    try {
      await pollUntil('/readyz fails while gobgpd is gone', () => (inNode('http://127.0.0.1:9476/readyz').code === 503 ? true : undefined));
      expect(inNode('http://127.0.0.1:9476/readyz').body).to.include('gobgpd');
      expect(peerMetric().filter((l) => l.endsWith(' 1'))).to.deep.equal([]);
    } finally {
      labStart(LAB, 'gobgpd/r1n1');
    }
    await pollUntil('ready again with every peer Established', () => {
      const s = status();
      return inNode('http://127.0.0.1:9476/readyz').code === 200 && s.peers.length === 3 && s.peers.every((p) => p.state === 'ESTABLISHED') ? true : undefined;
    }, { timeoutMs: 90_000 });
    await pollUntil('r1n1 routes every other podCIDR again', async () => ((await kernelRoutes('r1n1')).length >= 6 ? true : undefined), { timeoutMs: 60_000 });
  });

  it('a hostNetwork pod reaches every pod with its node address', async () => {
    await createPod('x', 'hostnet', { nodeName: 'r2n2', hostNetwork: true });
    const hostPod = await runningPod('x', 'hostnet');
    expect(hostPod.ips.sort()).to.deep.equal([...NODE_ADDRESSES.r2n2!].sort());
    const jobs = pods
      .filter((dst) => dst.node !== 'r2n2')
      .flatMap((dst) =>
        dst.ips.flatMap((target) =>
          (['tcp', 'udp'] as const).map((protocol) => ({
            from: hostPod.socket,
            target,
            port: 80,
            protocol,
            timeoutMs: 2000,
            expectIdentity: dst.id,
            expectClient: NODE_ADDRESSES.r2n2!.find((a) => sameFamily(a, target)),
          })),
        ),
      );
    expect(await failures(jobs)).to.deep.equal([]);
  });

  it('a pod reaching the external host is seen there with its node address (masqueraded), v4 and v6', async () => {
    const jobs = pods.flatMap((src) =>
      EXTERNAL.flatMap((target) =>
        (['tcp', 'udp'] as const).map((protocol) => ({
          from: src.socket,
          target,
          port: 80,
          protocol,
          timeoutMs: 2000,
          expectIdentity: 'external/ext1',
          expectClient: NODE_ADDRESSES[src.node]!.find((a) => sameFamily(a, target)),
        })),
      ),
    );
    expect(await failures(jobs)).to.deep.equal([]);
  });

  it('hijacks are installed nowhere: a ToR announcing outside the pod ranges, a default route or a more-specific; a rogue node announcing others', async () => {
    // tor1 originates prefixes it has no business announcing (network statements without import check).
    const tor1 = frrFiles(paths.frrDir('tor1'));
    const torHijacks = ['192.0.2.0/24', '0.0.0.0/0', '10.244.3.128/25', '10.244.0.0/16', '10.244.99.0/24'];
    await vtysh(tor1, [
      'configure terminal',
      'router bgp 65001',
      'no bgp network import-check',
      'address-family ipv4 unicast',
      ...torHijacks.map((p) => `network ${p}`),
      'exit-address-family',
      'address-family ipv6 unicast',
      'network fd00:10:244:4:8000::/65',
    ].join('\n'));
    // A rogue node: r1n2's agent is stopped and its gobgpd told to export anything, then to announce others' prefixes.
    const rogue = new GobgpClient({ target: `unix://${paths.gobgpSocket('r1n2')}` });
    rogue.start();
    try {
      await labStop(LAB, 'agent/r1n2', 'SIGKILL');
      await rogue.setGlobalPolicy({ direction: 'export', policies: [], defaultAction: 'accept' });
      for (const prefix of ['10.244.3.0/24', '10.244.4.0/25', '10.244.1.128/25', '203.0.113.0/24']) await rogue.addPath({ prefix, nextHop: '10.10.1.12' });
      await rogue.addPath({ prefix: 'fd00:10:244:3::/64', nextHop: 'fd00:10:1::c' });
      // Proof that the hijacks are on the wire: the ToR and r1n1's gobgpd received them (r1n1 from r1n2, adj-in).
      await pollUntil('tor1 carries the hijacks', async () => {
        const routes = Object.keys((JSON.parse(await vtysh(tor1, 'show bgp ipv4 unicast json')) as { routes?: object }).routes ?? {});
        return routes.includes('10.244.3.128/25') && routes.includes('192.0.2.0/24') && routes.includes('10.244.4.0/25') ? routes : undefined;
      }).then((routes) => {
        // ...except what its inbound prefix-list refuses from nodes: anything outside the pod ranges.
        expect(routes).not.to.include('203.0.113.0/24');
      });
      const r1n1 = new GobgpClient({ target: `unix://${paths.gobgpSocket('r1n1')}` });
      r1n1.start();
      try {
        await pollUntil('r1n1 received the rogue paths from r1n2', async () => {
          const received: string[] = [];
          for await (const p of r1n1.listPaths({ family: 'ipv4', table: 'adj-in', neighbor: '10.10.1.12' })) received.push(p.prefix);
          return received.includes('10.244.3.0/24') ? true : undefined;
        });
      } finally {
        r1n1.close();
      }
      // Nothing of it is installed on any node (give the agents a moment past the arrival).
      await new Promise((resolve) => setTimeout(resolve, 3000));
      for (const node of ['r1n1', 'r2n1', 'r2n2']) {
        const routes = await nodeRoutes(LAB, node);
        const prefixes = routes.map((r) => r.prefix);
        for (const hijack of ['192.0.2.0/24', '203.0.113.0/24', 'default', '10.244.3.128/25', '10.244.0.0/16', '10.244.99.0/24', '10.244.4.0/25', '10.244.1.128/25', 'fd00:10:244:4:8000::/65']) {
          expect(prefixes, `${node} installed ${hijack}`).not.to.include(hijack);
        }
        // r2n1's podCIDR announced by r1n2 is not taken from r1n2: the others still route it towards r2n1.
        if (node !== 'r2n1') expect(routes.find((r) => r.prefix === '10.244.3.0/24')?.nextHops).not.to.include('10.10.1.12');
      }
    } finally {
      await vtysh(tor1, ['configure terminal', 'router bgp 65001', 'address-family ipv4 unicast', ...torHijacks.map((p) => `no network ${p}`), 'exit-address-family', 'address-family ipv6 unicast', 'no network fd00:10:244:4:8000::/65'].join('\n'));
      rogue.close();
      // The restarted agent re-applies its own policy and withdraws what it did not originate.
      labStart(LAB, 'agent/r1n2');
    }
    await pollUntil('r1n2 advertises only its own podCIDRs again', async () => {
      const routes = await kernelRoutes('r1n1');
      return !routes.includes('10.244.1.128/25') && routes.includes('10.244.2.0/24') ? true : undefined;
    }, { timeoutMs: 60_000 });
  });

  it('foreign routes (static, FRR) survive agent start, resync and stop; a restart with nothing changed makes zero kernel route changes', async () => {
    const ns = paths.netns('r1n1');
    execFileSync('ip', ['-n', ns, 'route', 'add', '192.0.2.0/24', 'via', '10.10.1.1', 'proto', 'static']);
    execFileSync('ip', ['-n', ns, 'route', 'add', '198.18.0.0/24', 'via', '10.10.1.1', 'proto', 'zebra']);
    const before = execFileSync('ip', ['-n', ns, 'route', 'show'], { encoding: 'utf8' });
    const started = (agentLog('r1n1').match(/NetworkUnavailable=False set/g) ?? []).length;
    const monitor = await RouteMonitor.start(ns);
    let agentChanges: string[];
    try {
      await labRestart(LAB, 'agent/r1n1', 'SIGTERM');
      // The new agent has programmed its routes once it sets the node condition again.
      await pollUntil('the restarted agent synced its routes', () =>
        (agentLog('r1n1').match(/NetworkUnavailable=False set/g) ?? []).length > started ? true : undefined, { timeoutMs: 60_000 });
      // Everything the monitor saw between its start and its closing sentinel is the agent's doing.
      agentChanges = await monitor.close();
    } finally {
      monitor.stop();
    }
    expect(agentChanges, 'route changes during the agent restart').to.deep.equal([]);
    expect(execFileSync('ip', ['-n', ns, 'route', 'show'], { encoding: 'utf8' })).to.equal(before);
    // Drift: our route deleted by hand comes back at the next resync; the foreign ones stay.
    execFileSync('ip', ['-n', ns, 'route', 'del', '10.244.3.0/24', 'proto', '44']);
    await labRestart(LAB, 'agent/r1n1', 'SIGKILL'); // a start-up resync is the quickest resync
    await pollUntil('the deleted route is back', async () => ((await kernelRoutes('r1n1')).includes('10.244.3.0/24') ? true : undefined), { timeoutMs: 60_000 });
    const after = execFileSync('ip', ['-n', ns, 'route', 'show'], { encoding: 'utf8' });
    expect(after).to.include('192.0.2.0/24 via 10.10.1.1 dev eth0 proto static');
    expect(after).to.include('198.18.0.0/24 via 10.10.1.1 dev eth0 proto zebra');
    execFileSync('ip', ['-n', ns, 'route', 'del', '192.0.2.0/24', 'proto', 'static']);
    execFileSync('ip', ['-n', ns, 'route', 'del', '198.18.0.0/24', 'proto', 'zebra']);
  });

  it('a bad podroute.io/peers entry is skipped with a warning (log and Event) while the good ones and everything else keep working', async () => {
    // Two bad entries ahead of the node's own good ones (its ToR, both families), which stay exactly as they were:
    // nothing may change for them, so the node must stay reachable throughout.
    const node = await apiRequest(paths.apiSocket, 'GET', '/api/v1/nodes/r2n1');
    const good = JSON.parse((node.body as { metadata: { annotations: Record<string, string> } }).metadata.annotations['podroute.io/peers'] ?? '[]') as { address: string; asn: number }[];
    expect(good.map((p) => p.address)).to.include('10.10.2.1');
    const peers = JSON.stringify([{ address: 'not-an-ip', asn: 65001 }, { address: '10.10.2.1', asn: 65002, password: 'plain' }, ...good]);
    const patch = { metadata: { annotations: { 'podroute.io/peers': peers } } };
    const res = await apiRequest(paths.apiSocket, 'PATCH', '/api/v1/nodes/r2n1', patch, 'application/merge-patch+json');
    expect(res.status).to.equal(200);
    await pollUntil('the warnings are posted as Events', async () => {
      const events = await apiRequest(paths.apiSocket, 'GET', '/api/v1/namespaces/default/events');
      const messages = (events.body as { items: { involvedObject: { name: string }; message: string }[] }).items.filter((e) => e.involvedObject.name === 'r2n1').map((e) => e.message);
      return messages.some((m) => m.includes('podroute.io/peers[0]: skipped')) && messages.some((m) => m.includes('podroute.io/peers[1]: skipped: plain passwords are refused')) ? messages : undefined;
    });
    const log = agentLog('r2n1');
    expect(log).to.include('podroute.io/peers[0]: skipped');
    expect(log).not.to.include('plain"'); // the refused password is never logged
    // The good entry (its ToR, already a peer) is kept, and the node still routes and is routed.
    const pod = pods.find((p) => p.node === 'r2n1')!;
    const others = pods.filter((p) => p.node !== 'r2n1');
    const jobs = others.flatMap((src) => pod.ips.map((target) => ({ from: src.socket, target, port: 80, protocol: 'tcp' as const, timeoutMs: 2000, expectIdentity: pod.id })));
    expect(await failures(jobs)).to.deep.equal([]);
  });

  it('a node added with only IPv6 podCIDRs and one with only IPv4 are routed from every node; a removed node disappears everywhere', async () => {
    await labNodeAdd(LAB, { name: 'r2n3', rack: 'tor2', asn: 64602, podCIDRs: ['fd00:10:244:5::/64'] });
    await labNodeAdd(LAB, { name: 'r1n3', rack: 'tor1', asn: 64601, podCIDRs: ['10.244.6.0/24'] });
    await createPod('z', 'v6only', { nodeName: 'r2n3' });
    await createPod('z', 'v4only', { nodeName: 'r1n3' });
    const v6pod = await runningPod('z', 'v6only');
    const v4pod = await runningPod('z', 'v4only');
    expect(v6pod.ips).to.have.length(1).and.satisfy((ips: string[]) => ips[0]!.startsWith('fd00:10:244:5:'));
    expect(v4pod.ips).to.have.length(1).and.satisfy((ips: string[]) => ips[0]!.startsWith('10.244.6.'));
    await pollUntil('every node routes the new podCIDRs', async () => {
      for (const node of Object.keys(NODE_ADDRESSES)) {
        const routes = await kernelRoutes(node);
        if (!routes.includes('fd00:10:244:5::/64') || !routes.includes('10.244.6.0/24')) return undefined;
      }
      return true;
    }, { timeoutMs: 90_000 });
    const jobs = pods.flatMap((src) => [
      ...v6pod.ips.map((target) => ({ from: src.socket, target, port: 80, protocol: 'tcp' as const, timeoutMs: 2000, expectIdentity: 'z/v6only', expectClient: src.ips.find((ip) => sameFamily(ip, target)) })),
      ...v4pod.ips.map((target) => ({ from: src.socket, target, port: 80, protocol: 'udp' as const, timeoutMs: 2000, expectIdentity: 'z/v4only', expectClient: src.ips.find((ip) => sameFamily(ip, target)) })),
      // ...and back: the single-stack pods reach the others in their family.
      ...src.ips.filter((ip) => familyOf(ip) === 'ipv6').map((target) => ({ from: v6pod.socket, target, port: 81, protocol: 'tcp' as const, timeoutMs: 2000, expectIdentity: src.id, expectClient: v6pod.ips[0] })),
      ...src.ips.filter((ip) => familyOf(ip) === 'ipv4').map((target) => ({ from: v4pod.socket, target, port: 81, protocol: 'tcp' as const, timeoutMs: 2000, expectIdentity: src.id, expectClient: v4pod.ips[0] })),
    ]);
    expect(await failures(jobs)).to.deep.equal([]);

    await labNodeRemove(LAB, 'r2n3');
    await pollUntil('the removed node is routed nowhere', async () => {
      for (const node of Object.keys(NODE_ADDRESSES)) if ((await kernelRoutes(node)).includes('fd00:10:244:5::/64')) return undefined;
      return true;
    }, { timeoutMs: 60_000 });
    // The other added node is unaffected.
    for (const node of Object.keys(NODE_ADDRESSES)) expect(await kernelRoutes(node)).to.include('10.244.6.0/24');
  });
});
