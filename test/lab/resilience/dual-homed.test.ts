// Issue 6, fault 4: dual-homed racks. topologies/dual-homed.yaml comes up once (four nodes, each its own AS with no
// mesh, each with one routed uplink to each of two ToRs, two spines). Every remote podCIDR is an ECMP route over
// both ToRs in the nodes' kernels, and over both ToRs in the spines'. Then, with a continuous UDP probe stream
// between pods on two nodes (100/s per family), (a) one uplink of the sending node loses its link and comes back,
// (b) one ToR dies (its links go down, its routing stack is killed) and restarts: traffic keeps flowing over the
// other ToR, the loss is measured and must stay under one second of probes, and ECMP comes back after the repair.
// The ToRs run different BGP stacks (tor1 FRR, tor2 BIRD with TCP MD5 to its nodes): the uplink that fails goes to
// the FRR ToR (traffic goes on over BIRD), the ToR that dies is the BIRD one (traffic goes on over FRR).
// The figures go to test/lab/resilience/results/dual-homed.json (docs/resilience.md shows them).
import { expect } from 'chai';
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIRD_RECOVERY_WAIT_SECONDS, birdc, birdFiles } from '../../../src/lab/bird.js';
import { frrFiles, vtysh } from '../../../src/lab/frr.js';
import { routerNeighbors } from '../../../src/lab/routers.js';
import { labDown } from '../../../src/lab/down.js';
import { labRouterStart, labRouterStop, labStart, labStop } from '../../../src/lab/faults.js';
import type { LabStatusReport } from '../../../src/lab/status.js';
import { labUp } from '../../../src/lab/up.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections } from '../../../src/lab/probe.js';
import { readLabState } from '../../../src/lab/state.js';
import { parseTopology, planLayout, type NodeLayout } from '../../../src/lab/topology.js';
import { canonicalAddressText, familyOf, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { leftovers, NOTHING, repoRoot, testLabName } from '../lab/leftovers.js';
import { fibRoute, interfacesOf, legs, setLinks, type FibRoute } from './dual-fib.js';
import { ProbeStream, type WindowStats } from './dual-stream.js';
import { pollUntil } from '../../poll.js';
import { RouteMonitor } from '../route-monitor.js';

const LAB = testLabName('h13dh', 'dh');
const topologyFile = path.join(repoRoot(), 'topologies', 'dual-homed.yaml');
const resultsFile = path.join(repoRoot(), 'test', 'lab', 'resilience', 'results', 'dual-homed.json');
const topology = parseTopology(readFileSync(topologyFile, 'utf8'));
const layout = planLayout(topology);
const paths = labPaths(LAB);

const RATE = 100;
const PROBE_TIMEOUT_MS = 1000;
/** The target of issue 6: an ECMP failover loses less than one second of probes. */
const MAX_LOST = RATE;
const SENDER = { namespace: 'x', name: 'a', node: 'r1n1' };
const RECEIVER = { namespace: 'x', name: 'b', node: 'r1n2' };
/** The ToR whose link to the sending node fails (FRR), and the one that dies (BIRD); each time the other carries on. */
const FAILED_UPLINK_TOR = 'tor1';
const FAILED_TOR = 'tor2';
/** The node whose port to the BIRD ToR goes silent (neither probe end: the BFD check runs without the streams). */
const SILENT_NODE = 'r1n4';
/** BFD withdraws a silent port within this (issue 17 part 6; cluster.bfd of dual-homed.yaml is 200 ms x 3). */
const SILENT_CUT_TARGET_MS = 1_000;
const SURVIVING_TOR = 'tor1';
const spines = topology.routers.filter((r) => r.role === 'spine').map((r) => r.name);
const tors = topology.routers.filter((r) => r.role === 'tor').map((r) => r.name);
const stackOf = (router: string): string => topology.routers.find((r) => r.name === router)?.stack ?? '?';

const node = (name: string): NodeLayout => {
  const found = layout.nodes.find((n) => n.name === name);
  if (found === undefined) throw new Error(`no node ${name} in the layout`);
  return found;
};
/** The legs a node's route to a remote podCIDR must have: `dev gateway` per uplink whose ToR is in `via`. */
function nodeLegs(n: NodeLayout, family: IpFamily, via: string[] = tors): string[] {
  return n.uplinks
    .filter((u) => via.includes(u.tor))
    .flatMap((u) => u.gateways.filter((g) => g.family === family).map((g) => `${u.interface} ${g.address}`))
    .sort();
}
const devs = (route: FibRoute | undefined): string[] => legs(route).map((l) => l.split(' ')[0] ?? '');

/**
 * Which routes do not (yet) go over exactly the ToRs in `via`. Parts: `usable` = the legs the nodes' kernels may
 * forward on; `installed` = every leg the nodes' agents installed (dead ones too); `spines` = the spines' legs.
 */
type RoutingPart = 'usable' | 'installed' | 'spines';
async function routingProblems(via: string[] = tors, parts: RoutingPart[] = ['usable', 'installed', 'spines']): Promise<string[]> {
  const problems: string[] = [];
  for (const n of parts.includes('usable') || parts.includes('installed') ? layout.nodes : []) {
    for (const other of layout.nodes.filter((o) => o.name !== n.name)) {
      for (const cidr of other.podCIDRs) {
        const route = await fibRoute(paths.netns(n.name), cidr);
        const want = nodeLegs(n, familyOf(cidr), via);
        const got = legs(route);
        // Every next hop the kernel holds, usable or not: the agent's own choice must match too.
        const all = (route?.nextHops ?? []).map((h) => h.dev ?? '').sort();
        const usableWrong = parts.includes('usable') && JSON.stringify(got) !== JSON.stringify(want);
        const installedWrong = parts.includes('installed') && JSON.stringify(all) !== JSON.stringify(want.map((l) => l.split(' ')[0] ?? ''));
        if (usableWrong || installedWrong) {
          problems.push(`${n.name} -> ${cidr}: [${got.join(', ')}] (kernel: ${all.join(', ')}), want [${want.join(', ')}]`);
        }
      }
    }
  }
  for (const spine of parts.includes('spines') ? spines : []) {
    for (const cidr of layout.nodes.flatMap((n) => n.podCIDRs)) {
      const want = via.map((t) => `to-${t}`).sort();
      const got = devs(await fibRoute(paths.netns(spine), cidr));
      if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`${spine} -> ${cidr}: [${got.join(', ')}], want [${want.join(', ')}]`);
    }
  }
  return problems;
}

/** Polls named conditions until all have held once; returns when each first held, in ms of the stream's clock since `from`. */
async function timeline(stream: ProbeStream, from: number, conditions: Record<string, () => Promise<boolean>>, timeoutMs: number): Promise<Record<string, number>> {
  const reached: Record<string, number> = {};
  return await pollUntil('every condition of the timeline', async () => {
    for (const [name, check] of Object.entries(conditions)) {
      if (reached[name] === undefined && (await check())) reached[name] = Math.round(stream.now() - from);
    }
    const missing = Object.keys(conditions).filter((c) => reached[c] === undefined);
    if (missing.length > 0) throw new Error(`still waiting for ${missing.join(', ')}`);
    return reached;
  }, { timeoutMs });
}

/** How long each spine's bgpd has run, in s (from /proc: its start time in clock ticks since boot). */
function spineBgpdAges(): Record<string, number> {
  const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Object.fromEntries(
    spines.map((spine) => {
      const pid = readLabState(LAB)?.processes.find((p) => p.name === `bgpd/${spine}`)?.pid ?? -1;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return [spine, Math.round(uptime - Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) / ticks)];
    }),
  );
}

/** A re-installed route may be missing this long at most (faults.test.ts: under the 20 ms between probes). */
const REINSTALL_BOUND_MS = 20;

/** `ip -ts monitor` lines: the deletions of a route not added back (any next hops) in the next message within `boundMs`. */
function missingRoutes(lines: string[], boundMs: number): string[] {
  const parse = (line: string | undefined): { at: number; text: string } | undefined => {
    const m = line === undefined ? null : /^\[([^\]]+)\]\s*(.*)$/.exec(line.trim());
    return m === null ? undefined : { at: Date.parse(m[1]!), text: m[2]!.trim() };
  };
  const missing: string[] = [];
  lines.forEach((line, i) => {
    const now = parse(line);
    if (now === undefined || !now.text.startsWith('Deleted ')) return;
    const prefix = now.text.split(/\s+/)[1];
    const next = parse(lines[i + 1]);
    if (next === undefined || next.text.split(/\s+/)[0] !== prefix || next.at - now.at > boundMs) missing.push(line.trim());
  });
  return missing;
}

/** Waits until the streams have `count` more answered probes each (about count/RATE s of traffic). */
async function answered(streams: ProbeStream[], count: number): Promise<void> {
  const from = streams.map((s) => s.now());
  await pollUntil(`${count} answered probes`, () =>
    streams.every((s, i) => {
      const w = s.window(from[i] ?? 0, Infinity);
      return w.sent - w.lost >= count;
    })
      ? true
      : undefined, { timeoutMs: 60_000 });
}

async function txPackets(netns: string, link: string): Promise<number> {
  const { stdout } = await execa('ip', ['-n', netns, '-j', '-s', 'link', 'show', link]);
  return (JSON.parse(stdout) as { stats64?: { tx?: { packets?: number } } }[])[0]?.stats64?.tx?.packets ?? 0;
}

interface FaultFigures {
  description: string;
  /** Per family: the probes before the fault, from the fault to the repair, and from the repair to the end. */
  probes: Record<IpFamily, { baseline: WindowStats; fault: WindowStats; repair: WindowStats }>;
  /** ms after the fault (or after the repair, for the *AfterRepair entries) when each state was first seen. */
  timeline: Record<string, number>;
}

const results: { generatedBy: string; date: string; kernel: string; topology: string; probe: Record<string, unknown>; faults: Record<string, FaultFigures> } = {
  generatedBy: 'test/lab/resilience/dual-homed.test.ts',
  date: new Date().toISOString(),
  kernel: os.release(),
  topology: 'topologies/dual-homed.yaml',
  probe: {
    protocol: 'udp',
    ratePerSecondPerFamily: RATE,
    timeoutMs: PROBE_TIMEOUT_MS,
    from: `${SENDER.namespace}/${SENDER.name} on ${SENDER.node}`,
    to: `${RECEIVER.namespace}/${RECEIVER.name} on ${RECEIVER.node}`,
  },
  faults: {},
};

function saveResults(): void {
  mkdirSync(path.dirname(resultsFile), { recursive: true });
  writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n');
}

describe('resilience: dual-homed racks (ECMP over two ToRs; one ToR link or one ToR lost)', function () {
  this.timeout(600_000);
  let status: LabStatusReport;
  let streams: Record<IpFamily, ProbeStream>;

  before(async function () {
    this.timeout(400_000);
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    status = await labUp({ topologyFile, name: LAB, timeoutMs: 240_000 });
    // Every node dials both ToRs after `up` returns: wait for the full ECMP picture once.
    let last: string[] = [];
    await pollUntil('ECMP routes everywhere', async () => {
      last = await routingProblems();
      return last.length === 0 ? true : undefined;
    }, { timeoutMs: 180_000 }).catch((err: unknown) => {
      throw new Error(`${String(err)}:\n  ${last.join('\n  ')}`);
    });
    const pod = (p: { namespace: string; name: string }) => status.pods.find((x) => x.namespace === p.namespace && x.name === p.name);
    const receiver = pod(RECEIVER);
    const target = (family: IpFamily): string => {
      const ip = receiver?.ips.find((a) => familyOf(a) === family);
      if (ip === undefined) throw new Error(`${RECEIVER.namespace}/${RECEIVER.name} has no ${family} address`);
      return ip;
    };
    const from = paths.podSocket(SENDER.namespace, SENDER.name);
    streams = {
      ipv4: new ProbeStream({ from, target: target('ipv4'), port: 80, protocol: 'udp', ratePerSecond: RATE, timeoutMs: PROBE_TIMEOUT_MS }),
      ipv6: new ProbeStream({ from, target: target('ipv6'), port: 80, protocol: 'udp', ratePerSecond: RATE, timeoutMs: PROBE_TIMEOUT_MS }),
    };
  });

  after(async function () {
    this.timeout(120_000);
    closeProbeConnections();
    const pids = (readLabState(LAB)?.processes ?? []).map((p) => p.pid);
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    expect(leftovers(LAB, pids)).to.deep.equal(NOTHING);
  });

  it('the pods sit on different nodes of the rack, each node on both ToRs', () => {
    expect(status.phase).to.equal('up');
    for (const p of [SENDER, RECEIVER]) expect(status.pods.find((x) => x.namespace === p.namespace && x.name === p.name)?.node).to.equal(p.node);
    for (const n of layout.nodes) expect(n.uplinks.map((u) => `${u.interface}:${u.tor}`)).to.deep.equal(['eth0:tor1', 'eth1:tor2']);
  });

  it('the ToRs run both routing stacks: tor1 FRR, tor2 BIRD; each has an Established session with every node on each of its addresses', async () => {
    expect(tors.map((t) => `${t}:${stackOf(t)}`)).to.deep.equal([`${SURVIVING_TOR}:frr`, `${FAILED_TOR}:bird`]);
    for (const tor of topology.routers.filter((r) => r.role === 'tor')) {
      const neighbors = await routerNeighbors(LAB, tor);
      const want = layout.nodes.flatMap((n) => n.uplinks.filter((u) => u.tor === tor.name).flatMap((u) => u.addresses.map((a) => a.address))).sort();
      const established = [...new Set(neighbors.filter((n) => n.state === 'Established').map((n) => n.address))].sort();
      expect(established, `${tor.name} (${tor.stack}) sessions with nodes`).to.include.members(want);
    }
  });

  it("the BIRD ToR's node sessions are TCP MD5: both ends hold the rack's password and are Established (a one-sided or different key gets no session)", async () => {
    const rack = layout.racks.find((r) => r.tor === FAILED_TOR);
    expect(rack?.password, `${FAILED_TOR} rack password`).to.be.a('string');
    for (const n of layout.nodes) {
      for (const gateway of n.uplinks.filter((u) => u.tor === FAILED_TOR).flatMap((u) => u.gateways)) {
        const { stdout } = await execa('gobgp', ['--target', `unix://${paths.gobgpSocket(n.name)}`, 'neighbor', gateway.address, '-j']);
        const peer = JSON.parse(stdout) as { conf?: { auth_password?: string }; state?: { session_state?: number | string } };
        expect(peer.conf?.auth_password, `${n.name} -> ${gateway.address}: the agent's key`).to.equal(rack?.password);
        expect(String(peer.state?.session_state), `${n.name} -> ${gateway.address}: session`).to.match(/^(6|established)$/i);
      }
    }
    const birdConf = readFileSync(path.join(paths.birdDir(FAILED_TOR), 'bird.conf'), 'utf8');
    expect(birdConf, "the BIRD ToR's key on its node sessions").to.include(`password "${rack?.password ?? ''}";`);
  });

  it("every node has a multipath route to every other node's podCIDRs, v4 and v6, one leg per ToR (kernel FIB)", async () => {
    for (const n of layout.nodes) {
      for (const other of layout.nodes.filter((o) => o.name !== n.name)) {
        for (const cidr of other.podCIDRs) {
          const route = await fibRoute(paths.netns(n.name), cidr);
          expect(route?.protocol, `${n.name} -> ${cidr} installed by podroute (proto 44)`).to.equal('44');
          expect(legs(route), `${n.name} -> ${cidr}`).to.deep.equal(nodeLegs(n, familyOf(cidr)));
        }
      }
    }
  });

  it('every spine has a multipath route to every podCIDR over both ToRs (kernel FIB, and two multipath paths in bgpd)', async () => {
    for (const spine of spines) {
      for (const cidr of layout.nodes.flatMap((n) => n.podCIDRs)) {
        expect(devs(await fibRoute(paths.netns(spine), cidr)), `${spine} -> ${cidr}`).to.deep.equal(tors.map((t) => `to-${t}`).sort());
        const family = familyOf(cidr);
        const { stdout } = await execa('vtysh', ['--vty_socket', frrFiles(paths.frrDir(spine)).runDir, '-c', `show bgp ${family} unicast ${cidr} json`]);
        const entry = JSON.parse(stdout) as { paths?: { multipath?: boolean; bestpath?: { overall?: boolean } }[] };
        const used = (entry.paths ?? []).filter((p) => p.multipath === true || p.bestpath?.overall === true);
        expect(used, `${spine}: bgpd paths used for ${cidr}`).to.have.length(2);
      }
    }
  });

  it("each ToR routes every node's podCIDRs straight down that node's own port", async () => {
    for (const tor of tors) {
      for (const n of layout.nodes) {
        for (const cidr of n.podCIDRs) expect(devs(await fibRoute(paths.netns(tor), cidr)), `${tor} -> ${cidr}`).to.deep.equal([`to-${n.name}`]);
      }
    }
  });

  it("each node announces its podCIDRs to each ToR with its own address on that ToR's link as the next hop", async () => {
    // Checked at the source (the node's gobgpd Adj-RIB-Out): the lab's ToRs rewrite a node's next hop to its port
    // address, which hides a wrong one from the FIB checks above, but a ToR that trusts the announced next hop
    // would find it unreachable.
    const wrong: string[] = [];
    for (const n of layout.nodes) {
      for (const uplink of n.uplinks) {
        for (const gateway of uplink.gateways) {
          const own = uplink.addresses.find((a) => a.family === gateway.family)?.address;
          const { stdout } = await execa('gobgp', [
            '--target', `unix://${paths.gobgpSocket(n.name)}`, 'neighbor', gateway.address, 'adj-out', '-a', gateway.family, '-j',
          ]);
          const table = JSON.parse(stdout.trim() === '' ? '{}' : stdout) as Record<string, { attrs?: { type: number; nexthop?: string }[] }[]>;
          for (const cidr of n.podCIDRs.filter((c) => familyOf(c) === gateway.family)) {
            const nextHop = table[cidr]?.[0]?.attrs?.find((a) => a.type === 3 || a.type === 14)?.nexthop;
            if (nextHop !== own) wrong.push(`${n.name} -> ${uplink.tor} (${gateway.address}): ${cidr} next hop ${nextHop ?? 'not announced'}, want ${own ?? '?'}`);
          }
        }
      }
    }
    expect(wrong).to.deep.equal([]);
  });

  it("the receiving node's gobgpd killed (-9) and restarted: FRR and BIRD both keep its podCIDRs as graceful-restart helpers, no ToR or spine route to them deleted, 0 probes lost", async () => {
    const victim = node(RECEIVER.node);
    const victimAddresses = new Set(victim.uplinks.flatMap((u) => u.addresses.map((a) => a.address)));
    const torRouters = topology.routers.filter((r) => r.role === 'tor');
    /** Per ToR: its sessions with the victim, address -> state (BIRD and FRR alike, as routerNeighbors reads them). */
    const victimSessions = async (): Promise<Record<string, string[]>> =>
      Object.fromEntries(
        await Promise.all(
          torRouters.map(async (t) => [t.name, (await routerNeighbors(LAB, t)).filter((n) => victimAddresses.has(n.address)).map((n) => n.state)] as const),
        ),
      );
    const monitors = await Promise.all([...tors, ...spines].map(async (r) => ({ router: r, monitor: await RouteMonitor.start(paths.netns(r)) })));
    streams = { ipv4: new ProbeStream(streams.ipv4.options), ipv6: new ProbeStream(streams.ipv6.options) };
    const all = [streams.ipv4, streams.ipv6];
    let deleted: Record<string, string[]> = {};
    try {
      for (const s of all) s.start();
      await answered(all, RATE);
      const fault = streams.ipv4.mark('gobgpd-killed');
      streams.ipv6.mark('gobgpd-killed');
      await labStop(LAB, `gobgpd/${victim.name}`, 'SIGKILL');
      let faultTimeline: Record<string, number>;
      try {
        // Not a restart nobody noticed: each ToR's sessions with the node go down (TCP closed by the node's kernel).
        faultTimeline = await timeline(streams.ipv4, fault, {
          bothTorsLostTheirSessions: async () => Object.values(await victimSessions()).every((states) => states.length > 0 && states.every((st) => st !== 'Established')),
        }, 30_000);
      } finally {
        labStart(LAB, `gobgpd/${victim.name}`);
      }
      const repair = streams.ipv4.mark('gobgpd-restarted');
      streams.ipv6.mark('gobgpd-restarted');
      const repairTimeline = await timeline(streams.ipv4, repair, {
        bothTorsEstablishedAgain: async () => Object.values(await victimSessions()).every((states) => states.length > 0 && states.every((st) => st === 'Established')),
        ecmpEverywhere: async () => (await routingProblems()).length === 0,
      }, 60_000);
      await answered(all, RATE);
      await Promise.all(all.map((s) => s.stop()));
      // Only deletions count: a helper that takes the restarted node's identical paths may write them again.
      deleted = Object.fromEntries(
        await Promise.all(
          monitors.map(async ({ router, monitor }) => [router, (await monitor.close()).filter((l) => l.startsWith('Deleted') && victim.podCIDRs.some((c) => l.includes(c)))] as const),
        ),
      );
      const figures = figuresOf('gobgpd-killed', 'gobgpd-restarted', `gobgpd of ${victim.name} (the receiving node) killed with SIGKILL, restarted once both ToRs lost their sessions with it`);
      figures.timeline = { ...faultTimeline, ...repairTimeline };
      results.faults.nodeGobgpdRestart = figures;
      saveResults();
      console.log(`      node gobgpd restart: ${JSON.stringify(figures)}`);
      for (const family of ['ipv4', 'ipv6'] as const) {
        expect(figures.probes[family].fault.lost + figures.probes[family].repair.lost, `${family} probes lost`).to.equal(0);
      }
      expect(deleted, `routes to ${victim.name}'s podCIDRs deleted at a ToR (${tors.map((t) => `${t}: ${stackOf(t)}`).join(', ')}) or a spine`).to.deep.equal(
        Object.fromEntries([...tors, ...spines].map((r) => [r, []])),
      );
    } finally {
      for (const { monitor } of monitors) monitor.stop();
      await Promise.all(all.map((s) => s.stop()));
    }
  });

  it('one uplink of the sending node loses its link: traffic flows on over the other ToR, loss under 1 s of probes; ECMP back after repair', async () => {
    const sender = node(SENDER.node);
    const receiver = node(RECEIVER.node);
    const failed = sender.uplinks.find((u) => u.tor === FAILED_UPLINK_TOR);
    if (failed === undefined) throw new Error(`${sender.name} has no uplink to ${FAILED_UPLINK_TOR}`);
    const senderNs = paths.netns(sender.name);
    // Fresh streams: a test before this one (the gobgpd restart) may have run its own.
    streams = { ipv4: new ProbeStream(streams.ipv4.options), ipv6: new ProbeStream(streams.ipv6.options) };
    const all = [streams.ipv4, streams.ipv6];
    const txBefore = await Promise.all(sender.uplinks.map((u) => txPackets(senderNs, u.interface)));
    for (const s of all) s.start();
    await answered(all, 3 * RATE);
    const txAfter = await Promise.all(sender.uplinks.map((u) => txPackets(senderNs, u.interface)));
    // Before any fault the probes really use both legs (flows hash over the ECMP route by port).
    sender.uplinks.forEach((u, i) => {
      expect((txAfter[i] ?? 0) - (txBefore[i] ?? 0), `packets sent on ${u.interface} (to ${u.tor})`).to.be.greaterThan(0.1 * 3 * RATE);
    });

    const fault = streams.ipv4.mark('link-down');
    streams.ipv6.mark('link-down');
    await execa('ip', ['-n', senderNs, 'link', 'set', failed.interface, 'down']);
    const via = tors.filter((t) => t !== FAILED_UPLINK_TOR);
    const remoteOnlySurvivor = async (): Promise<boolean> => {
      for (const cidr of sender.podCIDRs) {
        const route = await fibRoute(paths.netns(receiver.name), cidr);
        if (JSON.stringify(legs(route)) !== JSON.stringify(nodeLegs(receiver, familyOf(cidr), via)) || route?.nextHops.length !== 1) return false;
      }
      return true;
    };
    const failedTorViaSpines = async (): Promise<boolean> => {
      for (const cidr of sender.podCIDRs) {
        if (JSON.stringify(devs(await fibRoute(paths.netns(FAILED_UPLINK_TOR), cidr))) !== JSON.stringify(spines.map((s) => `to-${s}`).sort())) return false;
      }
      return true;
    };
    const senderKernelSkipsLeg = async (): Promise<boolean> => {
      for (const cidr of receiver.podCIDRs) {
        if (JSON.stringify(legs(await fibRoute(senderNs, cidr))) !== JSON.stringify(nodeLegs(sender, familyOf(cidr), via))) return false;
      }
      return true;
    };
    const senderAgentDropsLeg = async (): Promise<boolean> => {
      for (const cidr of receiver.podCIDRs) if ((await fibRoute(senderNs, cidr))?.nextHops.length !== 1) return false;
      return true;
    };
    const faultTimeline = await timeline(
      streams.ipv4,
      fault,
      {
        senderKernelSkipsDeadLeg: senderKernelSkipsLeg,
        failedTorReroutesOverBothSpines: failedTorViaSpines,
        receiverRoutesOnlyOverSurvivingTor: remoteOnlySurvivor,
        senderAgentDropsDeadLeg: senderAgentDropsLeg,
      },
      60_000,
    );
    await answered(all, RATE);

    const repair = streams.ipv4.mark('link-up');
    streams.ipv6.mark('link-up');
    await execa('ip', ['-n', senderNs, 'link', 'set', failed.interface, 'up']);
    let last: string[] = [];
    const repairTimeline = await timeline(streams.ipv4, repair, { ecmpBackEverywhereAfterRepair: async () => (last = await routingProblems()).length === 0 }, 120_000).catch(
      (err: unknown) => {
        throw new Error(`${String(err)}:\n  ${last.join('\n  ')}`);
      },
    );
    await answered(all, RATE);
    await Promise.all(all.map((s) => s.stop()));

    const figures = figuresOf('link-down', 'link-up', 'one uplink (eth0 -> tor1) of the sending node set down in the node netns (carrier loss at the ToR), then up');
    figures.timeline = { ...faultTimeline, ...repairTimeline };
    results.faults.uplinkDown = figures;
    saveResults();
    console.log(`      uplink down: ${JSON.stringify(figures)}`);
    for (const family of ['ipv4', 'ipv6'] as const) {
      expect(figures.probes[family].fault.lost, `${family} probes lost after the link went down`).to.be.lessThan(MAX_LOST);
      expect(figures.probes[family].repair.lost, `${family} probes lost after the link came back`).to.be.lessThan(MAX_LOST);
    }
  });

  it(`BFD with both ToR stacks: every node has a session Up with tor1 (FRR bfdd) and tor2 (BIRD); a silent cut of ${SILENT_NODE}'s port to the BIRD ToR takes its podCIDRs off that port at tor2, and tor2 off ${SILENT_NODE}'s routes, in under ${SILENT_CUT_TARGET_MS} ms`, async () => {
    const addressesOn = (tor: string): string[] => layout.nodes.flatMap((n) => n.uplinks.filter((u) => u.tor === tor).flatMap((u) => u.addresses.map((a) => canonicalAddressText(a.address) ?? a.address)));
    await pollUntil('BFD Up with every node at both ToRs, v4 and v6', async () => {
      const frr = (JSON.parse(await vtysh(frrFiles(paths.frrDir('tor1')), 'show bfd peers json')) as { peer: string; status: string }[])
        .filter((p) => p.status === 'up')
        .map((p) => canonicalAddressText(p.peer) ?? p.peer);
      // BIRD: "IP address  Interface  State  Since  Interval  Timeout" rows.
      const bird = (await birdc(birdFiles(paths.birdDir('tor2')), 'show bfd sessions'))
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter((cols) => cols[2] === 'Up' && /^[0-9a-f.:]+$/i.test(cols[0] ?? ''))
        .map((cols) => canonicalAddressText(cols[0] ?? '') ?? '');
      return addressesOn('tor1').every((a) => frr.includes(a)) && addressesOn('tor2').every((a) => bird.includes(a)) ? true : undefined;
    }, { timeoutMs: 60_000 });

    const silent = node(SILENT_NODE);
    const port = silent.uplinks.find((u) => u.tor === FAILED_TOR);
    if (port === undefined) throw new Error(`${SILENT_NODE} has no uplink to ${FAILED_TOR}`);
    const ns = paths.netns(SILENT_NODE);
    const rules = async (op: '-I' | '-D'): Promise<void> => {
      for (const cmd of ['iptables', 'ip6tables']) {
        await execa('ip', ['netns', 'exec', ns, cmd, '-t', 'raw', op, 'PREROUTING', '-i', port.interface, '-m', 'comment', '--comment', 'silent-cut', '-j', 'DROP']);
        await execa('ip', ['netns', 'exec', ns, cmd, '-t', 'mangle', op, 'POSTROUTING', '-o', port.interface, '-m', 'comment', '--comment', 'silent-cut', '-j', 'DROP']);
      }
    };
    const others = layout.nodes.filter((n) => n.name !== SILENT_NODE).flatMap((n) => n.podCIDRs);
    const torDropsPort = async (): Promise<boolean> => {
      for (const cidr of silent.podCIDRs) if (devs(await fibRoute(paths.netns(FAILED_TOR), cidr)).includes(`to-${SILENT_NODE}`)) return false;
      return true;
    };
    const nodeDropsTor = async (): Promise<boolean> => {
      for (const cidr of others) if (devs(await fibRoute(ns, cidr)).includes(port.interface)) return false;
      return true;
    };
    await rules('-I');
    const cutAt = performance.now();
    const seen: Record<string, number> = {};
    try {
      expect((await execa('ip', ['-n', ns, 'link', 'show', port.interface])).stdout, 'carrier stays up').to.include('LOWER_UP');
      await pollUntil('both ends drop the silent port', async () => {
        if (seen.birdTorDropsPort === undefined && (await torDropsPort())) seen.birdTorDropsPort = Math.round(performance.now() - cutAt);
        if (seen.nodeDropsBirdTor === undefined && (await nodeDropsTor())) seen.nodeDropsBirdTor = Math.round(performance.now() - cutAt);
        return seen.birdTorDropsPort !== undefined && seen.nodeDropsBirdTor !== undefined ? true : undefined;
      }, { timeoutMs: 20_000, intervalMs: 20 });
    } finally {
      await rules('-D');
    }
    const repairedAt = performance.now();
    let last: string[] = [];
    await pollUntil('ECMP over both ToRs again', async () => {
      last = await routingProblems();
      return last.length === 0 ? true : undefined;
    }, { timeoutMs: 120_000 }).catch((err: unknown) => {
      throw new Error(`${String(err)}:\n  ${last.join('\n  ')}`);
    });
    const figures = { ...seen, ecmpBackAfterRepairMs: Math.round(performance.now() - repairedAt) };
    console.log(`      silent cut: ${JSON.stringify(figures)}`);
    expect(seen.birdTorDropsPort, `tor2 (BIRD) moved ${SILENT_NODE}'s podCIDRs off its port after (ms): ${JSON.stringify(figures)}`).to.be.below(SILENT_CUT_TARGET_MS);
    expect(seen.nodeDropsBirdTor, `${SILENT_NODE} dropped its tor2 legs after (ms): ${JSON.stringify(figures)}`).to.be.below(SILENT_CUT_TARGET_MS);
  });

  it('one ToR dies (links down, its routing stack killed): traffic flows on over the other, loss under 1 s of probes; ECMP back after it restarts', async () => {
    const torNs = paths.netns(FAILED_TOR);
    const torLinks = await interfacesOf(torNs);
    streams = { ipv4: new ProbeStream(streams.ipv4.options), ipv6: new ProbeStream(streams.ipv6.options) };
    const all = [streams.ipv4, streams.ipv6];
    for (const s of all) s.start();
    await answered(all, 3 * RATE);

    const fault = streams.ipv4.mark('tor-down');
    streams.ipv6.mark('tor-down');
    // As when the switch loses power: every link at once, then its control plane.
    await setLinks(torNs, torLinks, 'down');
    await labRouterStop(LAB, FAILED_TOR, 'SIGKILL');
    let last: string[] = [];
    const faultTimeline = await timeline(
      streams.ipv4,
      fault,
      {
        spinesRouteOnlyOverSurvivingTor: async () => (await routingProblems([SURVIVING_TOR], ['spines'])).length === 0,
        nodeKernelsSkipDeadLegs: async () => (await routingProblems([SURVIVING_TOR], ['usable'])).length === 0,
        nodeAgentsDropDeadLegs: async () => (last = await routingProblems([SURVIVING_TOR], ['installed'])).length === 0,
      },
      60_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}:\n  ${last.join('\n  ')}`);
    });
    await answered(all, RATE);

    const repair = streams.ipv4.mark('tor-up');
    streams.ipv6.mark('tor-up');
    await setLinks(torNs, torLinks, 'up');
    // Its forwarding state went with its links: it starts cold (a graceful restart is the next test).
    await labRouterStart(LAB, FAILED_TOR, { coldStart: true });
    const repairTimeline = await timeline(
      streams.ipv4,
      repair,
      {
        spinesEcmpAfterRestart: async () => (await routingProblems(tors, ['spines'])).length === 0,
        nodesEcmpAfterRestart: async () => (last = await routingProblems(tors, ['usable', 'installed'])).length === 0,
      },
      120_000,
    ).catch(
      (err: unknown) => {
        throw new Error(`${String(err)}:\n  ${last.join('\n  ')}`);
      },
    );
    await answered(all, RATE);
    await Promise.all(all.map((s) => s.stop()));

    const figures = figuresOf('tor-down', 'tor-up', `${FAILED_TOR} (${stackOf(FAILED_TOR)}) dies: all its links down, its routing stack killed (SIGKILL); then links up, the stack started again`);
    figures.timeline = { ...faultTimeline, ...repairTimeline };
    results.faults.torDown = figures;
    saveResults();
    console.log(`      ToR down: ${JSON.stringify(figures)}`);
    for (const family of ['ipv4', 'ipv6'] as const) {
      expect(figures.probes[family].fault.lost, `${family} probes lost after the ToR died`).to.be.lessThan(MAX_LOST);
      expect(figures.probes[family].repair.lost, `${family} probes lost while the ToR came back`).to.be.lessThan(MAX_LOST);
    }
  });

  it(`the BIRD ToR restarts (bird killed -9, links up, started again in graceful-restart recovery): 0 probes lost, the spines see its forwarding state kept, no pod route deleted at a ToR or missing at a spine, none changed at a node`, async () => {
    const files = birdFiles(paths.birdDir(FAILED_TOR));
    const recovering = async (): Promise<boolean> => /Graceful restart recovery in progress/.test(await birdc(files, 'show status'));
    const spineAges = spineBgpdAges();
    const tor2Sessions = layout.fabric.filter((f) => f.router === FAILED_TOR).length + layout.nodes.flatMap((n) => n.uplinks.filter((u) => u.tor === FAILED_TOR).flatMap((u) => u.addresses)).length;
    const members = [...tors, ...spines, ...layout.nodes.map((n) => n.name)];
    const monitors = await Promise.all(members.map(async (m) => ({ member: m, monitor: await RouteMonitor.start(paths.netns(m), { timestamps: true }) })));
    streams = { ipv4: new ProbeStream(streams.ipv4.options), ipv6: new ProbeStream(streams.ipv6.options) };
    const all = [streams.ipv4, streams.ipv6];
    let changes: Record<string, string[]> = {};
    try {
      for (const s of all) s.start();
      await answered(all, RATE);
      streams.ipv4.mark('bird-killed');
      streams.ipv6.mark('bird-killed');
      await labRouterStop(LAB, FAILED_TOR, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const restart = streams.ipv4.mark('bird-started');
      streams.ipv6.mark('bird-started');
      await labRouterStart(LAB, FAILED_TOR);
      let last: string[] = [];
      const restartTimeline = await timeline(
        streams.ipv4,
        restart,
        {
          // Once seen: the recovery is on (bird -R), then over (every protocol converged, or its wait).
          inRecovery: recovering,
          everySessionEstablished: async () => {
            const states = (await routerNeighbors(LAB, topology.routers.find((r) => r.name === FAILED_TOR)!)).map((n) => n.state);
            return states.length >= tor2Sessions && states.every((st) => st === 'Established');
          },
          recoveryOver: async () => !(await recovering()),
          ecmpEverywhereAfterRecovery: async () => !(await recovering()) && (last = await routingProblems()).length === 0,
        },
        (BIRD_RECOVERY_WAIT_SECONDS + 60) * 1000,
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}:\n  ${last.join('\n  ')}`);
      });
      await answered(all, RATE);
      await Promise.all(all.map((s) => s.stop()));
      const podRoute = /(^|\s)(10\.244\.|fd00:10:244:)/;
      changes = Object.fromEntries(await Promise.all(monitors.map(async ({ member, monitor }) => [member, (await monitor.close()).filter((l) => podRoute.test(l))] as const)));
      // The spines took tor2's new session as a restart with its forwarding state kept (the F bit of -R).
      const fBits: Record<string, boolean | undefined> = {};
      for (const session of layout.fabric.filter((f) => f.router === FAILED_TOR)) {
        const out = JSON.parse(await vtysh(frrFiles(paths.frrDir(session.peer)), `show bgp neighbors ${session.localAddress} json`)) as Record<string, { gracefulRestartInfo?: Record<string, { fBit?: boolean }> }>;
        const info = out[session.localAddress]?.gracefulRestartInfo;
        fBits[`${session.peer} <- ${session.localAddress}`] = info?.[session.family === 'ipv4' ? 'ipv4Unicast' : 'ipv6Unicast']?.fBit;
      }
      const figures = figuresOf('bird-killed', 'bird-started', `${FAILED_TOR} (${stackOf(FAILED_TOR)}) restarts: bird killed with SIGKILL, links up, started again 1 s later with -R (graceful-restart recovery, kernel routes persisted)`);
      const tor2Rewrites = (changes[FAILED_TOR] ?? []).filter((l) => !/Deleted/.test(l));
      figures.timeline = restartTimeline;
      const spineChanges = Object.fromEntries(spines.map((sp) => [sp, (changes[sp] ?? []).length]));
      results.faults.birdTorRestart = { ...figures, spinesSawForwardingStateKept: fBits, torRoutesRewrittenAfterRecovery: tor2Rewrites.length, spineBgpdAgesAtStartS: spineAges, spineRouteChanges: spineChanges } as FaultFigures;
      saveResults();
      console.log(`      BIRD ToR restart: ${JSON.stringify(results.faults.birdTorRestart)}`);
      for (const family of ['ipv4', 'ipv6'] as const) {
        expect(figures.probes[family].fault.lost + figures.probes[family].repair.lost, `${family} probes lost`).to.equal(0);
      }
      expect(Object.values(fBits), `spines see ${FAILED_TOR}'s forwarding state kept: ${JSON.stringify(fBits)}`).to.deep.equal(layout.fabric.filter((f) => f.router === FAILED_TOR).map(() => true));
      // The BIRD ToR rewrites some routes when its recovery ends (the kernel sync), identical, never deleting one;
      // the other ToR and the nodes (helpers: they kept its routes as stale until its End-of-RIB) do not move.
      // A spine whose bgpd is younger than its restart time (FRR's startup timer, 120 s; this lab's are about 70 s
      // old here) sets the Restart State bit in its OPEN: BIRD then owes it no wait (RFC 4724 4.1) and sends its
      // End-of-RIB at once, and the spine sweeps tor2's stale paths, keeping tor1's. So at a spine a pod route may
      // change its legs but never be missing: a deletion is a re-install (added back in the next message, within
      // the bound fault 3 of faults.test.ts allows).
      const spineGaps = Object.fromEntries(spines.map((sp) => [sp, missingRoutes(changes[sp] ?? [], REINSTALL_BOUND_MS)]));
      expect(spineGaps, `pod routes missing at a spine longer than ${REINSTALL_BOUND_MS} ms`).to.deep.equal(Object.fromEntries(spines.map((sp) => [sp, []])));
      const others = members.filter((m) => !spines.includes(m));
      expect(
        Object.fromEntries(others.map((m) => [m, m === FAILED_TOR ? (changes[m] ?? []).filter((l) => /Deleted/.test(l)) : (changes[m] ?? [])])),
        'pod route changes at the other ToR and the nodes, deletions at the BIRD ToR',
      ).to.deep.equal(Object.fromEntries(others.map((m) => [m, []])));
    } finally {
      for (const { monitor } of monitors) monitor.stop();
      await Promise.all(all.map((s) => s.stop()));
    }
  });

  function figuresOf(faultMark: string, repairMark: string, description: string): FaultFigures {
    const probes = {} as FaultFigures['probes'];
    for (const family of ['ipv4', 'ipv6'] as const) {
      const s = streams[family];
      const fault = s.markAt(faultMark);
      const repair = s.markAt(repairMark);
      probes[family] = { baseline: s.window(0, fault), fault: s.window(fault, repair), repair: s.window(repair, Infinity) };
    }
    return { description, probes, timeline: {} };
  }
});
