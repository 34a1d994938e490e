// Route reflectors in the lab (issue 17 part 1): one rack, one AS, two reflector nodes (rr1, rr2, one cluster ID)
// and three clients (topologies/route-reflectors.yaml). The ToR cannot carry routes between nodes of its rack
// (their own AS would be in the path), so every node route a client holds came through a reflector. Probe streams
// count every lost probe while a reflector's gobgpd is killed and while a client is relabelled into a reflector.
import path from 'node:path';
import { expect } from 'chai';
import { execa } from 'execa';
import { CLI_MAIN } from '../../../src/lab/daemons.js';
import { labDown } from '../../../src/lab/down.js';
import { labStart, labStop } from '../../../src/lab/faults.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections } from '../../../src/lab/probe.js';
import { readLabState } from '../../../src/lab/state.js';
import { labStatus, nodeRoutes } from '../../../src/lab/status.js';
import { labUp } from '../../../src/lab/up.js';
import { ROUTE_REFLECTOR_LABEL } from '../../../src/agent/route-reflectors.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';
import { pollUntil } from '../../poll.js';
import { repoRoot, testLabName } from '../lab/leftovers.js';
import { ProbeStreams, stopLeftoverStreams, type FlowSpec, type FlowStats } from '../resilience/probe-stream.js';

const LAB = testLabName('h17rr', 'rr');
const paths = labPaths(LAB);
const NODES = ['rr1', 'rr2', 'c1', 'c2', 'c3'];
const CLUSTER_ID = '10.10.1.254';
/** Node name → its rack address (the lab numbers nodes .11, .12, ... in topology order). */
const ADDRESS: Record<string, string> = { rr1: '10.10.1.11', rr2: '10.10.1.12', c1: '10.10.1.13', c2: '10.10.1.14', c3: '10.10.1.15' };
const POD_CIDRS: Record<string, string[]> = Object.fromEntries(NODES.map((n, i) => [n, [`10.244.${i + 1}.0/24`, `fd00:10:244:${i + 1}::/64`]]));

interface StatusJson {
  report: { bgp: { role?: string } | null } | null;
  peers: { address: string; state: string; type: string; routeReflectorClient?: boolean }[];
}

/** `podroute status -o json` inside the node (asynchronous: probe streams run in this process meanwhile). */
async function status(node: string): Promise<StatusJson> {
  const config = path.join(paths.nodeDir(node), 'agent.yaml');
  const { stdout } = await execa('ip', ['netns', 'exec', paths.netns(node), process.execPath, CLI_MAIN, 'status', '-c', config, '-o', 'json'], { timeout: 30_000 });
  return JSON.parse(stdout) as StatusJson;
}

const nodePeers = (s: StatusJson): StatusJson['peers'] => s.peers.filter((p) => p.type === 'node');

/** Every other node's podCIDRs (v4 and v6) in every node's kernel, each via its owner's address (v4) as the next hop. */
async function everyKernelRoutesEveryNode(): Promise<true | undefined> {
  for (const node of NODES) {
    const routes = await nodeRoutes(LAB, node);
    for (const other of NODES.filter((n) => n !== node)) {
      const v4 = routes.find((r) => r.prefix === POD_CIDRS[other]![0]);
      if (v4 === undefined || v4.nextHops.join() !== ADDRESS[other]) return undefined;
      if (!routes.some((r) => r.prefix === POD_CIDRS[other]![1])) return undefined;
    }
  }
  return true;
}

let pods: Map<string, { v4: string; v6: string; socket: string; node: string }>;

function flow(from: string, to: string, family: 'v4' | 'v6', protocol: 'tcp' | 'udp'): FlowSpec {
  const a = pods.get(from)!;
  const b = pods.get(to)!;
  return { name: `${from}(${a.node})->${to}(${b.node}) ${protocol} ${family}`, from: a.socket, target: b[family], port: 80, protocol, expectIdentity: to, ratePerSecond: 50 };
}

/** Client to client both ways, clients to each reflector's pods, v4 and v6. */
function flows(): FlowSpec[] {
  return [flow('x/c', 'x/d', 'v4', 'udp'), flow('x/d', 'x/e', 'v6', 'tcp'), flow('x/e', 'x/c', 'v4', 'tcp'), flow('x/c', 'x/a', 'v6', 'udp'), flow('x/d', 'x/b', 'v4', 'udp')];
}

const lost = (stats: FlowStats[]): number => stats.reduce((n, s) => n + s.lost, 0);
const summary = (stats: FlowStats[]): string => JSON.stringify(stats.map((s) => ({ flow: s.name, sent: s.sent, lost: s.lost, errors: s.errors })));

async function kubectl(...args: string[]): Promise<void> {
  await execa('kubectl', ['--kubeconfig', paths.kubeconfig, ...args], { timeout: 30_000 });
}

describe('route reflectors (one rack, two reflectors, three clients)', function () {
  this.timeout(300_000);

  before(async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    await labUp({ topologyFile: path.join(repoRoot(), 'topologies', 'route-reflectors.yaml'), name: LAB, timeoutMs: 180_000 });
    const lab = await labStatus(LAB);
    pods = new Map(
      lab.pods.map((p) => [
        `${p.namespace}/${p.name}`,
        { node: p.node, v4: p.ips.find((ip) => familyOf(ip) === 'ipv4')!, v6: p.ips.find((ip) => familyOf(ip) === 'ipv6')!, socket: paths.podSocket(p.namespace, p.name) },
      ]),
    );
    expect(pods.size).to.equal(5);
  });

  afterEach(async () => {
    await stopLeftoverStreams();
  });

  after(async () => {
    closeProbeConnections();
    if (readLabState(LAB) !== undefined) await labDown(LAB);
  });

  it('clients peer with the two reflectors only, reflectors with every node as rr-client; every kernel routes every node via its owner', async () => {
    await pollUntil('every node routes every other node\'s podCIDRs', everyKernelRoutesEveryNode, { timeoutMs: 60_000 });
    for (const client of ['c1', 'c2', 'c3']) {
      const s = await status(client);
      expect(s.report?.bgp?.role, client).to.equal('client');
      expect(nodePeers(s).map((p) => [p.address, p.state, p.routeReflectorClient ?? false]), client).to.have.deep.members([
        [ADDRESS.rr1, 'ESTABLISHED', false],
        [ADDRESS.rr2, 'ESTABLISHED', false],
      ]);
    }
    for (const reflector of ['rr1', 'rr2']) {
      const s = await status(reflector);
      expect(s.report?.bgp?.role, reflector).to.equal(`reflector (cluster ${CLUSTER_ID})`);
      expect(nodePeers(s).map((p) => [p.address, p.state, p.routeReflectorClient])).to.have.deep.members(
        NODES.filter((n) => n !== reflector).map((n) => [ADDRESS[n], 'ESTABLISHED', true]),
      );
    }
  });

  it('a reflector\'s gobgpd killed -9 and restarted: 0 probes lost between clients and to both reflectors\' pods', async () => {
    const streams = new ProbeStreams(flows());
    streams.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await labStop(LAB, 'gobgpd/rr1', 'SIGKILL');
    try {
      // The other reflector carries every client route; graceful restart keeps rr1's own podCIDR at the clients.
      await pollUntil('c1 sees its session to rr1 down', async () => (nodePeers(await status('c1')).find((p) => p.address === ADDRESS.rr1)?.state !== 'ESTABLISHED' ? true : undefined), { timeoutMs: 10_000, intervalMs: 300 });
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      labStart(LAB, 'gobgpd/rr1');
    }
    await pollUntil('rr1 has every session Established again', async () => (nodePeers(await status('rr1')).every((p) => p.state === 'ESTABLISHED') ? true : undefined), { timeoutMs: 60_000, intervalMs: 500 });
    await pollUntil('every node routes every other node\'s podCIDRs', everyKernelRoutesEveryNode, { timeoutMs: 30_000 });
    const stats = await streams.stop();
    expect(stats.every((s) => s.sent > 100), summary(stats)).to.equal(true);
    expect(lost(stats), summary(stats)).to.equal(0);
  });

  it('a client relabelled a reflector: new sessions first, then its old ones re-created one at a time, 0 probes lost', async () => {
    const streams = new ProbeStreams(flows());
    streams.start();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const labelledAt = streams.now();
    await kubectl('label', 'node', 'c3', `${ROUTE_REFLECTOR_LABEL}=${CLUSTER_ID}`);
    const converged = await pollUntil(
      'c3 reflects to every node and both clients peer with it',
      async () => {
        const c3 = await status('c3');
        const done =
          c3.report?.bgp?.role === `reflector (cluster ${CLUSTER_ID})` &&
          nodePeers(c3).length === 4 &&
          nodePeers(c3).every((p) => p.state === 'ESTABLISHED' && p.routeReflectorClient === true) &&
          (await Promise.all(['c1', 'c2'].map(status))).every((s) => nodePeers(s).some((p) => p.address === ADDRESS.c3 && p.state === 'ESTABLISHED'));
        return done ? streams.now() : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    await pollUntil('every node routes every other node\'s podCIDRs', everyKernelRoutesEveryNode, { timeoutMs: 30_000 });
    const stats = await streams.stop();
    console.log(`      relabel to reflector converged in ${Math.round(converged - labelledAt)} ms`);
    expect(lost(stats), summary(stats)).to.equal(0);
  });
});
