// The Kubernetes network model, end to end, on two-racks with `podroute agent` on every node (issue 3): pods reach
// pods everywhere without NAT, nodes reach their pods, host-network pods reach all pods with their node's address,
// traffic leaving the cluster is masqueraded; nodes come and go; hijacks are refused; foreign routes are left
// alone; an agent restart changes nothing; bad annotations are reported and skipped. Rack 1 and the spine links
// are jumbo (9000), rack 2 narrow (1400): pods take their rack's MTU, and full-size packets cross (issue 17).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { execa } from 'execa';
import YAML from 'yaml';
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
import { familyOf, IP_FAMILIES, type IpFamily } from '../../../src/routes/ip-prefix.js';

const LAB = testLabName('e2enet', 'e2e');
const paths = labPaths(LAB);
/** The MTU of each rack LAN; the spine links carry the largest (the fabric is never the narrow part). */
const RACK_MTU: Record<string, number> = { tor1: 9000, tor2: 1400 };
const SPINE_MTU = 9000;

/** two-racks with the MTUs above, in a file of its own (lab up reads a file). */
function writeTopology(dir: string): string {
  const raw = YAML.parse(readFileSync(path.join(repoRoot(), 'topologies', 'two-racks.yaml'), 'utf8'), { merge: true }) as { links: { type: string; tor?: string; mtu?: number }[] };
  for (const link of raw.links) link.mtu = link.type === 'rack' ? RACK_MTU[link.tor ?? ''] : SPINE_MTU;
  const file = path.join(dir, 'two-racks-mtu.yaml');
  writeFileSync(file, YAML.stringify(raw));
  return file;
}
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

/** Runs a command inside a pod's network namespace: exit code and outputs, never a throw. */
function inPod(pod: Pod, args: string[], timeoutMs = 10_000): Promise<{ exitCode?: number; stdout: string; stderr: string }> {
  const [namespace = '', name = ''] = pod.id.split('/');
  return execa('ip', ['netns', 'exec', paths.podNetns(namespace, name), ...args], { reject: false, timeout: timeoutMs });
}

function addressOf(pod: Pod, family: IpFamily): string {
  return pod.ips.find((ip) => familyOf(ip) === family) ?? '';
}

/** IP + ICMP header bytes: a ping payload of MTU minus these makes a packet of exactly the MTU. */
const PING_HEADERS: Record<IpFamily, number> = { ipv4: 28, ipv6: 48 };
/** IP + TCP header bytes: the MSS of an MTU. */
const TCP_HEADERS: Record<IpFamily, number> = { ipv4: 40, ipv6: 60 };

/**
 * One DF (don't fragment) ping of exactly `size` bytes on the wire: the kernel neither fragments it nor lets a router
 * do it. It ends at the reply, the ICMP error or after 2 s.
 */
function dfPing(from: Pod, to: string, size: number): ReturnType<typeof inPod> {
  const payload = size - PING_HEADERS[familyOf(to)];
  return inPod(from, ['ping', '-n', '-c', '1', '-W', '2', '-M', 'do', '-s', String(payload), to]);
}

/**
 * Bytes one TCP connection carried from `client` to `server`, counted by the receiver up to the sender's FIN (socat
 * on both ends). A transfer that stalls (segments too big for the path, the ICMP lost) times out and throws.
 */
async function tcpTransfer(client: Pod, server: Pod, address: string, bytes: number): Promise<number> {
  const port = 5317;
  const v4 = familyOf(address) === 'ipv4';
  const [namespace = '', name = ''] = server.id.split('/');
  const listen = v4 ? `TCP4-LISTEN:${port},bind=${address}` : `TCP6-LISTEN:${port},bind=[${address}]`;
  const receiver = execa('ip', ['netns', 'exec', paths.podNetns(namespace, name), 'socat', '-u', listen, 'STDOUT'], { reject: false, timeout: 30_000, encoding: 'buffer' });
  try {
    await pollUntil(`socat listening in ${server.id}`, async () => ((await inPod(server, ['ss', '-Hltn', `sport = :${port}`])).stdout.trim() !== '' ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
    const connect = v4 ? `TCP4:${address}:${port}` : `TCP6:[${address}]:${port}`;
    const sent = await inPod(client, ['socat', '-u', `OPEN:/dev/zero,readbytes=${bytes}`, connect], 30_000);
    if (sent.exitCode !== 0) throw new Error(`sending from ${client.id} to ${address} failed: ${sent.stderr}`);
    const received = await receiver;
    if (received.timedOut === true) throw new Error(`${server.id} saw no end of the stream from ${client.id} within 30 s (stalled)`);
    return received.stdout.length;
  } finally {
    receiver.kill();
    await receiver;
  }
}

describe('network model end to end (two-racks with podroute agents)', function () {
  this.timeout(300_000);
  let pods: Pod[];
  const topologyDir = mkdtempSync(path.join(tmpdir(), 'podroute-e2enet-'));

  before(async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    await labUp({ topologyFile: writeTopology(topologyDir), name: LAB, timeoutMs: 180_000 });
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
    rmSync(topologyDir, { recursive: true, force: true });
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

  it("pods get their node's fabric MTU (the InternalIP's link): 9000 in the jumbo rack, 1400 in the narrow one, shown by podroute_pod_mtu", async () => {
    const rackOf = (node: string): string => (node.startsWith('r1') ? 'tor1' : 'tor2'); // two-racks: rN* hang off torN
    const mtuOf = async (pod: Pod): Promise<number | undefined> => (JSON.parse((await inPod(pod, ['ip', '-j', 'link', 'show', 'eth0'])).stdout || '[]') as { mtu?: number }[])[0]?.mtu;
    const got = Object.fromEntries(await Promise.all(pods.map(async (p) => [p.id, await mtuOf(p)] as const)));
    expect(got).to.deep.equal(Object.fromEntries(pods.map((p) => [p.id, RACK_MTU[rackOf(p.node)]])));
    for (const [node, mtu] of [['r1n1', 9000], ['r2n1', 1400]] as const) {
      const metrics = execFileSync('ip', ['netns', 'exec', paths.netns(node), 'curl', '-s', 'http://127.0.0.1:9476/metrics'], { encoding: 'utf8' });
      expect(metrics.split('\n').filter((l) => l.startsWith('podroute_pod_mtu{')), node).to.deep.equal([`podroute_pod_mtu{source="interface"} ${mtu}`]);
    }
  });

  it('a full-size packet with DF set crosses between the racks both ways, v4 and v6 (1400 bytes: the narrow rack\'s MTU)', async () => {
    const narrow = pods.find((p) => p.id === 'x/c')!; // r2n1
    const jumbo = pods.find((p) => p.id === 'x/a')!; // r1n1
    const pairs = IP_FAMILIES.flatMap((family) => [[narrow, jumbo, family], [jumbo, narrow, family]] as const);
    // ...and one byte more does not even leave the narrow pod: DF is set and its MTU is real. (ping waits out its
    // -W after a local error: all at once.)
    const [over, ...failed] = await Promise.all([
      dfPing(narrow, addressOf(jumbo, 'ipv4'), RACK_MTU.tor2! + 1),
      ...pairs.map(async ([from, to, family]) => {
        const ping = await dfPing(from, addressOf(to, family), RACK_MTU.tor2!);
        return ping.exitCode === 0 ? [] : [`${from.id} -> ${to.id} ${family}: ${ping.stdout}${ping.stderr}`];
      }),
    ]);
    expect(failed.flat()).to.deep.equal([]);
    expect(over.exitCode).to.not.equal(0);
    expect(over.stdout + over.stderr).to.match(/message too long/);
  });

  it('path MTU discovery works towards the narrow rack: a 9000-byte DF packet gets "fragmentation needed" / "packet too big" back, v4 and v6', async () => {
    const jumbo = pods.find((p) => p.id === 'y/b')!; // r1n1
    const narrow = pods.find((p) => p.id === 'y/a')!; // r2n2
    await Promise.all(IP_FAMILIES.map(async (family) => {
      const target = addressOf(narrow, family);
      const ping = await dfPing(jumbo, target, RACK_MTU.tor1!);
      expect(ping.exitCode, `${family}: a 9000-byte packet crossed a 1400 link`).to.not.equal(0);
      // tor2's answer, let through by every node and policy chain on the way back to the pod.
      expect(ping.stdout + ping.stderr, family).to.match(family === 'ipv4' ? /Frag needed and DF set \(mtu = 1400\)/ : /Packet too big: mtu=1400/);
      expect((await inPod(jumbo, ['ip', 'route', 'get', target])).stdout, `${family}: the pod's kernel learned the path MTU`).to.match(/\bmtu 1400\b/);
    }));
  });

  it('a large TCP transfer from the jumbo rack to the narrow one completes by path MTU discovery (receiver advertising a jumbo MSS), v4 and v6', async () => {
    // MSS negotiation alone would keep the segments at 1360 (the narrow pod's MSS), and path MTU discovery would
    // never be needed: the receiver advertises a jumbo MSS (as a host on a jumbo LAN behind a narrow hop would),
    // so the sender starts with 9000-byte segments and only the ICMP from tor2 brings them down to 1400.
    const sender = pods.find((p) => p.id === 'z/c')!; // r1n1
    const receiver = pods.find((p) => p.id === 'z/b')!; // r2n2
    const bytes = 4 * 1024 * 1024;
    for (const family of IP_FAMILIES) {
      const from = addressOf(sender, family);
      const to = addressOf(receiver, family);
      const familyFlag = family === 'ipv4' ? '-4' : '-6';
      const [defaultRoute] = JSON.parse((await inPod(receiver, ['ip', '-j', familyFlag, 'route', 'show', 'default'])).stdout) as { gateway: string; dev: string }[];
      const toSender = [`${from}/${family === 'ipv4' ? 32 : 128}`, 'via', defaultRoute!.gateway, 'dev', defaultRoute!.dev];
      expect((await inPod(sender, ['ip', 'route', 'get', to])).stdout, `${family}: no path MTU known before`).not.to.match(/\bmtu 1400\b/);
      const added = await inPod(receiver, ['ip', familyFlag, 'route', 'add', ...toSender, 'advmss', String(SPINE_MTU - TCP_HEADERS[family])]);
      expect(added.exitCode, added.stderr).to.equal(0);
      try {
        expect(await tcpTransfer(sender, receiver, to, bytes), family).to.be.at.least(bytes);
      } finally {
        await inPod(receiver, ['ip', familyFlag, 'route', 'del', ...toSender]);
      }
      expect((await inPod(sender, ['ip', 'route', 'get', to])).stdout, `${family}: the sender learned the path MTU from tor2`).to.match(/\bmtu 1400\b/);
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
