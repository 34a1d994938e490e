// Route reflectors in the lab (issue 17 part 1): one rack, one AS, two reflector nodes (rr1, rr2, one cluster ID)
// and three clients (topologies/route-reflectors.yaml). The ToR cannot carry routes between nodes of its rack
// (their own AS would be in the path), so every node route a client holds came through a reflector. Probe streams
// count every lost probe while a reflector's gobgpd is killed and while a client is relabelled into a reflector.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { execa } from 'execa';
import { CLI_MAIN } from '../../../src/lab/daemons.js';
import { frrFiles, startFrrDaemon, type FrrFiles } from '../../../src/lab/frr.js';
import { parseAgentConfig } from '../../../src/config/agent-config.js';
import { planDesiredState, type DesiredNodeState } from '../../../src/agent/desired-state.js';
import { BgpReconciler } from '../../../src/bgp/bgp-reconciler.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import type { NodeInfo } from '../../../src/kube/node-info.js';
import { selectRoutes } from '../../../src/routes/select-routes.js';
import { GobgpdFixture, createNetnsPair, type NetnsPair } from './gobgpd-fixture.js';
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
async function everyKernelRoutesEveryNode(): Promise<true> {
  for (const node of NODES) {
    const routes = await nodeRoutes(LAB, node);
    for (const other of NODES.filter((n) => n !== node)) {
      const v4 = routes.find((r) => r.prefix === POD_CIDRS[other]![0]);
      const v6 = routes.find((r) => r.prefix === POD_CIDRS[other]![1]);
      if (v4?.nextHops.join() !== ADDRESS[other] || v6 === undefined) {
        lastMissing = { node, prefix: POD_CIDRS[other]![0]! };
        throw new Error(`${node} routes ${other}'s podCIDRs via ${v4?.nextHops.join() ?? 'nothing'} (v4) and ${v6?.nextHops.join() ?? 'nothing'} (v6)`);
      }
    }
  }
  return true;
}

/** The last route everyKernelRoutesEveryNode found missing: which node, which (v4) podCIDR. */
let lastMissing: { node: string; prefix: string } | undefined;

/**
 * Waits for every route in every kernel; a timeout also names every node's sessions and what the node's gobgpd
 * holds for the missing prefix (its RIB, with the reflectors' Adj-RIB-In), to say where it stopped.
 */
async function untilEveryKernelRoutesEveryNode(timeoutMs: number): Promise<void> {
  try {
    await pollUntil('every node routes every other node\'s podCIDRs', everyKernelRoutesEveryNode, { timeoutMs });
  } catch (error) {
    const sessions = await Promise.all(NODES.map(async (n) => `${n}: ${nodePeers(await status(n)).map((p) => `${p.address} ${p.state}`).join(', ')}`));
    const gobgp = async (...args: string[]): Promise<string> =>
      (await execa('gobgp', ['--target', `unix://${paths.gobgpSocket(lastMissing!.node)}`, ...args], { reject: false, timeout: 10_000 })).stdout.trim() || '(nothing)';
    const rib = lastMissing === undefined
      ? ''
      : `; ${lastMissing.node}'s gobgpd for ${lastMissing.prefix}: rib ${await gobgp('global', 'rib', '-a', 'ipv4', lastMissing.prefix)}; ` +
        `adj-in from rr1 ${await gobgp('neighbor', ADDRESS.rr1!, 'adj-in', '-a', 'ipv4', lastMissing.prefix)}; ` +
        `adj-in from rr2 ${await gobgp('neighbor', ADDRESS.rr2!, 'adj-in', '-a', 'ipv4', lastMissing.prefix)}`;
    throw new Error(`${(error as Error).message}; node sessions: ${sessions.join('; ')}${rib}`);
  }
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
    await untilEveryKernelRoutesEveryNode(60_000);
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
    await untilEveryKernelRoutesEveryNode(30_000);
    const stats = await streams.stop();
    expect(stats.every((s) => s.sent > 100), summary(stats)).to.equal(true);
    expect(lost(stats), summary(stats)).to.equal(0);
  });

  it('a client relabelled a reflector: new sessions first, then its old ones changed one at a time, 0 probes lost', async () => {
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
    await untilEveryKernelRoutesEveryNode(30_000);
    const stats = await streams.stop();
    console.log(`      relabel to reflector converged in ${Math.round(converged - labelledAt)} ms`);
    expect(lost(stats), summary(stats)).to.equal(0);
  });
});

// An external reflector with the node mesh off: an FRR router in the nodes' AS, each node its route-reflector
// client (`neighbor ... route-reflector-client`), as a ToR or a dedicated reflector is configured. Two nodes'
// gobgpds (each driven by its own agent planner and BgpReconciler, bgp.mesh: off) share a LAN with FRR and have no
// session with each other: each one's podCIDR must reach the other through FRR with the owner as next hop, and the
// agent's route selection must install it. (A gobgpd fixture, not a full lab: no second lab up for this check.)
describe('an external route reflector (FRR) with the node mesh off', function () {
  this.timeout(120_000);
  const NAME = testLabName('h17xr', 'xr');
  const ASN = 64512;
  let fx: GobgpdFixture;
  let net: NetnsPair;
  let files: FrrFiles;
  const frrPids: number[] = [];
  /** One per reconciler (each adds its own listeners to its signal). */
  const stops: AbortController[] = [];
  const running: Promise<void>[] = [];
  const clients: GobgpClient[] = [];

  const nodeA = (): NodeInfo => ({ name: 'a', podCIDRs: ['10.244.1.0/24'], internalIPs: [net.v4.a], labels: {}, annotationPeers: [], warnings: [] });
  const nodeB = (): NodeInfo => ({ name: 'b', podCIDRs: ['10.244.2.0/24'], internalIPs: [B_ADDRESS()], labels: {}, annotationPeers: [], warnings: [] });
  const B_ADDRESS = (): string => net.v4.a.replace(/\.1$/, '.3');

  function desiredOf(self: NodeInfo): DesiredNodeState {
    const config = parseAgentConfig({
      cluster: { asn: ASN, podRanges: ['10.244.0.0/16'] },
      bgp: { mesh: 'off', listenPort: -1, connectRetry: 1, peers: [{ address: net.v4.b, asn: ASN, localAddress: self.internalIPs[0] }] },
    });
    const result = planDesiredState({ config, nodeName: self.name, nodes: [nodeA(), nodeB()], secrets: new Map() });
    if (!result.ok) throw new Error(result.reason);
    return result.state;
  }

  before(async function () {
    fx = new GobgpdFixture(NAME);
    net = createNetnsPair(NAME, 217);
    net.addAddress(net.a, `${B_ADDRESS()}/24`);
    files = frrFiles(path.join(fx.dir, 'rr'));
    mkdirSync(files.runDir, { recursive: true });
    writeFileSync(files.zebraConf, ['hostname rr', `log file ${files.zebraLog}`, ''].join('\n'));
    writeFileSync(
      files.bgpdConf,
      [
        'frr defaults datacenter',
        'hostname rr',
        `log file ${files.bgpdLog}`,
        `router bgp ${ASN}`,
        ` bgp router-id ${net.v4.b}`,
        ' no bgp default ipv4-unicast',
        ' neighbor NODES peer-group',
        ' neighbor NODES remote-as internal',
        // Both node gobgpds live in one namespace: they dial, FRR only listens.
        ' neighbor NODES passive',
        ' neighbor NODES timers 3 9',
        ...[net.v4.a, B_ADDRESS()].map((n) => ` neighbor ${n} peer-group NODES`),
        ' address-family ipv4 unicast',
        '  neighbor NODES activate',
        '  neighbor NODES route-reflector-client',
        ' exit-address-family',
        '',
      ].join('\n'),
    );
    for (const daemon of ['zebra', 'bgpd'] as const) frrPids.push(await startFrrDaemon(net.b, daemon, files, `${NAME}-rr`));
  });

  after(async () => {
    for (const stop of stops) stop.abort();
    await Promise.all(running.map((r) => r.catch(() => undefined)));
    for (const c of clients) c.close();
    for (const pid of frrPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(`/var/run/frr/${NAME}-rr`, { recursive: true, force: true });
    await fx?.close();
    net?.close();
  });

  it('each node learns the other\'s podCIDR from the reflector, next hop the owner, and selects it for the kernel', async () => {
    const nodes = [nodeA(), nodeB()];
    const states = nodes.map(desiredOf);
    expect(states.map((s) => s.bgp.peers.map((p) => p.address))).to.deep.equal([[net.v4.b], [net.v4.b]]);
    expect(states.map((s) => s.bgp.role)).to.deep.equal([{ kind: 'off' }, { kind: 'off' }]);
    for (const [i, node] of nodes.entries()) {
      const gobgpd = await fx.spawn(node.name, net.a);
      const client = new GobgpClient({ target: gobgpd.target });
      clients.push(client);
      const reconciler = new BgpReconciler({ client, resyncIntervalMs: 2_000, retryBackoffMs: { initial: 200, max: 1_000 } });
      reconciler.setDesired(states[i]!.bgp);
      const stop = new AbortController();
      stops.push(stop);
      running.push(reconciler.start(stop.signal));
    }
    const other = [nodeB(), nodeA()];
    for (const [i, client] of clients.entries()) {
      const want = other[i]!;
      const learned = await pollUntil(
        `${nodes[i]!.name} learns ${want.podCIDRs[0]} from the reflector`,
        async () => {
          for await (const p of client.listPaths({ family: 'ipv4', table: 'global' })) if (p.prefix === want.podCIDRs[0] && p.neighborIp !== undefined) return p;
          return undefined;
        },
        { timeoutMs: 60_000, intervalMs: 300 },
      );
      expect([learned.neighborIp, learned.nextHop, learned.asPath], nodes[i]!.name).to.deep.equal([net.v4.b, want.internalIPs[0], []]);
      const { conflictedCIDRs, ...context } = states[i]!.routeSelection;
      const selection = selectRoutes([learned], { ...context, onLinkNetworks: [`${net.v4.a.replace(/\.1$/, '.0')}/24`], excludedCIDRs: conflictedCIDRs });
      expect(selection.routes).to.deep.equal([{ prefix: want.podCIDRs[0], nextHops: [want.internalIPs[0]] }]);
    }
  });
});
