// Issue 17, part 5: scale in the lab. topologies/three-racks.yaml (three racks of six nodes, an AS per rack, two
// nodes of each rack labelled as route reflectors) comes up once; then, for each iBGP shape in turn, every node's
// gobgpd and agent are stopped, their routes flushed, the agents re-configured (`bgp.mesh`) and all of them started
// at once:
//   - full mesh of the rack (`same-asn`) and route reflectors (`route-reflector`), side by side in one run: sessions
//     per node, time from all processes started to every route in every kernel (every node's and router's FIB
//     read through /proc/PID/net), routes per node (kernel, and paths received by gobgpd), agent and gobgpd CPU
//     (start-up to converged, and idle) and RSS per node;
//   - the cost of one route: the spine announces K extra prefixes (RFC 2544 benchmark addresses, accepted by the
//     agents for this run) and every node's gobgpd and agent are measured before and after they are in its kernel;
//   - with reflectors: one reflector's gobgpd killed with SIGKILL (and started again, as a DaemonSet would) while
//     probes flow between pods of client nodes (a route they learn only by reflection) and across racks.
// From the per-session and per-route costs, an extrapolation on paper to 1,000 and 5,000 nodes (formula in the
// report). The lab is down afterwards, also when a step fails.
import { ROUTE_REFLECTOR_LABEL } from '../src/agent/route-reflectors.js';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import YAML from 'yaml';
import { ProbeStreams, stopLeftoverStreams, type FlowSpec, type FlowStats } from '../test/lab/resilience/probe-stream.js';
import { findProjectRoot } from '../src/bgp/gobgp-proto.js';
import { labDown, listLabs } from '../src/lab/down.js';
import { labStart, labStop } from '../src/lab/faults.js';
import { frrFiles, vtysh } from '../src/lab/frr.js';
import { labPaths } from '../src/lab/paths.js';
import { logTail, processAlive } from '../src/lab/processes.js';
import { readLabState } from '../src/lab/state.js';
import { labStatus, type LabStatusReport } from '../src/lab/status.js';
import { parseTopology, planLayout } from '../src/lab/topology.js';
import { labUp } from '../src/lab/up.js';
import { DEFAULT_ROUTE_PROTOCOL } from '../src/routes/kernel-routes.js';
import { hasNoRoutes, hasRoutes } from './lib/fib-presence.js';
import { RawGobgp } from './lib/gobgp-raw.js';
import { BenchError, cpuMs, pollUntil, rssMiB, sleep } from './lib/proc.js';
import { formatMs, markdownTable, summarize, type Summary, formatSummary } from './lib/stats.js';
import { topologySubset, type TopologyDocument } from './lib/topology-subset.js';

export const THREE_RACKS = path.join(findProjectRoot(), 'topologies', 'three-racks.yaml');

export const SCALE_MODES = ['mesh', 'route-reflector'] as const;
export type ScaleMode = (typeof SCALE_MODES)[number];

/**
 * The agent's `bgp.mesh` in each mode: the switch between the two shapes. Reflectors are the nodes with the label
 * (src/agent/route-reflectors.ts); clients peer with the reflectors of their AS only.
 */
export const AGENT_MESH: Record<ScaleMode, string> = { mesh: 'same-asn', 'route-reflector': 'route-reflector' };

/** RFC 2544 benchmark addresses: the spine announces /32s from here to measure what one route costs a node. */
const INJECT_RANGE = '198.18.0.0/15';
const POLL_MS = 50;
/** `network` lines per vtysh call. */
const VTYSH_SLICE = 250;

export interface ScaleOptions {
  lab: string;
  topologyFile: string;
  /** Keep only the first racks and the first nodes of each (the smoke size); the whole topology when omitted. */
  shrink?: { racks: number; nodesPerRack: number };
  /** After converging, before the idle window (the agents finish their start-up work). */
  settleMs: number;
  /** The window idle CPU is measured over. */
  idleMs: number;
  /** Prefixes the spine announces for the per-route cost. */
  injectRoutes: number;
  /** How long the reflector's gobgpd stays dead before it is started again. */
  faultDownMs: number;
  /** A shape that has not put every route in every kernel by then fails (it says what is missing where). */
  convergeTimeoutMs: number;
  probeRatePerSecond: number;
  workDir: string;
  log: (m: string) => void;
}

export interface NodeSample {
  node: string;
  rack: string;
  role: 'mesh' | 'reflector' | 'client';
  /** Peers configured in gobgpd, and Established ones (ToR sessions included). */
  peers: number;
  sessions: number;
  /** Established sessions with other nodes (iBGP). */
  ibgpSessions: number;
  /** Paths gobgpd received (and accepted) from all its peers. */
  receivedPaths: number;
  acceptedPaths: number;
  /** Routes of the agent's protocol in the node's kernel (both families). */
  kernelRoutes: number;
  /** All processes started → this node's FIB had every other node's podCIDRs. */
  routedMs: number;
  /** CPU from the process's start to the moment every FIB was complete. */
  startCpuMs: { gobgpd: number; agent: number };
  idleCpuPercent: { gobgpd: number; agent: number };
  rssMiB: { gobgpd: number; agent: number };
}

export interface ModeResult {
  mode: ScaleMode;
  agentMesh: string;
  nodes: NodeSample[];
  routers: { name: string; routedMs: number }[];
  /** Spawning every gobgpd and agent took this long (the start of the clock is the first spawn). */
  spawnMs: number;
  /** All processes started → every route in every kernel (nodes and routers). */
  allRoutedMs: number;
  /** All processes started → every configured session of every node Established. */
  allSessionsMs: number;
  idleWindowMs: number;
}

export interface RouteCost {
  routes: number;
  mode: ScaleMode;
  /** Announced at the spine → in every node's kernel. */
  arrivedMs: number;
  /** Per node (median over nodes) and per route. */
  gobgpdKiB: Summary;
  agentKiB: Summary;
  gobgpdCpuUs: Summary;
  agentCpuUs: Summary;
}

export interface FaultResult {
  reflector: string;
  /** Kill → started again → every session of the restarted gobgpd Established. */
  downMs: number;
  recoveredMs: number | undefined;
  flows: FlowStats[];
}

export interface ScaleResult {
  topology: string;
  racks: number;
  nodes: number;
  /** Nodes per AS (one AS per rack). */
  nodesPerAs: number;
  families: number;
  modes: ModeResult[];
  routeCost?: RouteCost;
  fault?: FaultResult;
  failures: string[];
}

interface LabNode {
  name: string;
  rack: string;
  netns: string;
  podCIDRs: string[];
  reflector: boolean;
  torAddresses: string[];
}

/** The topology the run uses: the whole file, or its first racks and nodes (the smoke size). */
export function scaleTopologyText(text: string, shrink?: ScaleOptions['shrink']): string {
  if (shrink === undefined) return text;
  const doc = YAML.parse(text, { merge: true }) as TopologyDocument;
  const tors = doc.routers.filter((r) => r.role === 'tor').slice(0, shrink.racks).map((r) => r.name);
  return YAML.stringify(topologySubset(doc, { tors, nodesPerRack: shrink.nodesPerRack }));
}

/** The i-th /32 of the injected range. */
export function injectedPrefix(i: number): string {
  return `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`;
}

/** Lines of /proc/net/route (little-endian hex destinations) that lie in 198.18.0.0/15. */
function injectedInFib(pid: number): number {
  let count = 0;
  for (const line of readFileSync(`/proc/${pid}/net/route`, 'utf8').split('\n')) {
    const dest = line.split('\t')[1];
    if (dest !== undefined && (dest.endsWith('12C6') || dest.endsWith('13C6'))) count++;
  }
  return count;
}

async function kernelRouteCount(netns: string): Promise<number> {
  let count = 0;
  for (const family of ['-4', '-6']) {
    const r = await execa('ip', ['-n', netns, family, 'route', 'show', 'proto', String(DEFAULT_ROUTE_PROTOCOL)]);
    count += r.stdout.split('\n').filter((l) => l.trim() !== '').length;
  }
  return count;
}

function pidOf(lab: string, name: string): number {
  const p = readLabState(lab)?.processes.find((x) => x.name === name);
  if (p === undefined) throw new BenchError('BENCH_SETUP_FAILED', `lab ${lab}: no process ${name}`);
  return p.pid;
}

async function peersOf(socket: string): Promise<Awaited<ReturnType<RawGobgp['listPeers']>>> {
  const client = new RawGobgp(`unix://${socket}`);
  try {
    return await client.listPeers();
  } finally {
    client.close();
  }
}

export async function runScale(o: ScaleOptions): Promise<ScaleResult> {
  await mkdir(o.workDir, { recursive: true });
  const text = scaleTopologyText(await readFile(o.topologyFile, 'utf8'), o.shrink);
  const topologyFile = path.join(o.workDir, 'topology.yaml');
  await writeFile(topologyFile, text);
  const topology = parseTopology(text);
  const layout = planLayout(topology);
  const families = new Set(topology.cluster.podRanges.map((c) => (c.includes(':') ? 'ipv6' : 'ipv4'))).size;
  const racks = layout.racks.map((r) => r.tor);
  const perAs = new Map<number, number>();
  for (const n of layout.nodes) perAs.set(n.asn, (perAs.get(n.asn) ?? 0) + 1);
  const result: ScaleResult = {
    topology: path.relative(findProjectRoot(), o.topologyFile) + (o.shrink === undefined ? '' : ` (first ${o.shrink.racks} racks, ${o.shrink.nodesPerRack} nodes each)`),
    racks: racks.length,
    nodes: layout.nodes.length,
    nodesPerAs: Math.max(...perAs.values()),
    families,
    modes: [],
    failures: [],
  };
  if (listLabs().includes(o.lab)) await labDown(o.lab);
  const started = Date.now();
  try {
    await labUp({ topologyFile, name: o.lab, timeoutMs: 600_000 });
    o.log(`scale: lab ${o.lab} up (${layout.nodes.length} nodes, ${racks.length} racks) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const status = await labStatus(o.lab);
    const paths = labPaths(o.lab);
    const nodes: LabNode[] = layout.nodes.map((n) => ({
      name: n.name,
      rack: n.tor,
      netns: paths.netns(n.name),
      podCIDRs: n.podCIDRs,
      reflector: topology.nodes.find((t) => t.name === n.name)?.labels[ROUTE_REFLECTOR_LABEL] !== undefined,
      torAddresses: n.gateways.map((g) => g.address),
    }));
    let routeCostTried = false;
    for (const mode of SCALE_MODES) {
      try {
        const measured = await measureMode(o, mode, nodes, status);
        result.modes.push(measured);
        const m = summarize(measured.nodes.map((n) => n.sessions));
        o.log(`scale: ${mode}: every route in every kernel ${formatMs(measured.allRoutedMs)} after the start; sessions per node ${formatSummary(m, String)}`);
        if (!routeCostTried && o.injectRoutes > 0) {
          routeCostTried = true;
          result.routeCost = await measureRouteCost(o, measured, nodes, status).catch((err: unknown) => {
            result.failures.push(`route cost (${mode}): ${err instanceof Error ? err.message : String(err)}`);
            return undefined;
          });
        }
        if (mode === 'route-reflector') result.fault = await reflectorKill(o, nodes, status);
      } catch (err) {
        result.failures.push(`${mode}: ${err instanceof Error ? err.message : String(err)}`);
        o.log(`scale: ${mode} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        await stopLeftoverStreams();
      }
    }
  } finally {
    await labDown(o.lab);
    o.log(`scale: lab ${o.lab} down`);
  }
  return result;
}

/** Stops every node's agent and gobgpd, flushes what the agents installed, waits until the routers withdrew. */
async function stopAllNodes(lab: string, nodes: LabNode[], status: LabStatusReport): Promise<void> {
  await Promise.all(
    nodes.map(async (n) => {
      await labStop(lab, `agent/${n.name}`, 'SIGTERM');
      await labStop(lab, `gobgpd/${n.name}`, 'SIGTERM');
    }),
  );
  await Promise.all(nodes.flatMap((n) => ['-4', '-6'].map((f) => execa('ip', ['-n', n.netns, f, 'route', 'flush', 'proto', String(DEFAULT_ROUTE_PROTOCOL)]))));
  const all = nodes.flatMap((n) => n.podCIDRs);
  const zebras = status.routers.map((r) => pidOf(lab, `zebra/${r.name}`));
  await pollUntil('every router withdrew the stopped nodes\' podCIDRs', 60_000, 100, () => (zebras.every((pid) => hasNoRoutes(pid, all)) ? true : undefined));
}

/** Each node's agent configuration with `bgp.mesh` of the mode, accepting the injected range. */
async function configureAgents(lab: string, nodes: LabNode[], mesh: string): Promise<void> {
  const paths = labPaths(lab);
  for (const n of nodes) {
    const file = path.join(paths.nodeDir(n.name), 'agent.yaml');
    const config = YAML.parse(await readFile(file, 'utf8')) as { bgp: Record<string, unknown>; cluster: Record<string, unknown> };
    config.bgp.mesh = mesh;
    config.cluster.extraAcceptRanges = [INJECT_RANGE];
    await writeFile(file, YAML.stringify(config));
  }
}

async function measureMode(o: ScaleOptions, mode: ScaleMode, nodes: LabNode[], status: LabStatusReport): Promise<ModeResult> {
  const lab = o.lab;
  const paths = labPaths(lab);
  await stopAllNodes(lab, nodes, status);
  await configureAgents(lab, nodes, AGENT_MESH[mode]);
  const t0 = performance.now();
  for (const n of nodes) labStart(lab, `gobgpd/${n.name}`);
  for (const n of nodes) labStart(lab, `agent/${n.name}`);
  const spawnMs = performance.now() - t0;
  const pids = new Map(nodes.map((n) => [n.name, { gobgpd: pidOf(lab, `gobgpd/${n.name}`), agent: pidOf(lab, `agent/${n.name}`), kubelet: pidOf(lab, `kubelet/${n.name}`) }]));
  const all = nodes.flatMap((n) => n.podCIDRs);
  const members = [
    ...nodes.map((n) => ({ name: n.name, pid: pids.get(n.name)!.kubelet, want: all.filter((c) => !n.podCIDRs.includes(c)) })),
    ...status.routers.map((r) => ({ name: r.name, pid: pidOf(lab, `zebra/${r.name}`), want: all })),
  ];
  const routedAt = new Map<string, number>();
  const deadline = Date.now() + o.convergeTimeoutMs;
  while (routedAt.size < members.length) {
    for (const n of nodes) {
      const p = pids.get(n.name)!;
      for (const [what, pid] of [['agent', p.agent], ['gobgpd', p.gobgpd]] as const) {
        if (!processAlive(pid)) throw new BenchError('BENCH_PROCESS_EXITED', `${mode}: ${what} of ${n.name} exited:\n${logTail(paths, `${what}/${n.name}`)}`);
      }
    }
    const now = performance.now() - t0;
    for (const m of members) if (!routedAt.has(m.name) && hasRoutes(m.pid, m.want)) routedAt.set(m.name, now);
    if (Date.now() > deadline) {
      // What is missing where, and the sessions of the nodes that miss it: enough to tell a slow machine from a bug.
      const missing = await Promise.all(
        members
          .filter((m) => !routedAt.has(m.name))
          .map(async (m) => {
            const lacks = m.want.filter((c) => !hasRoutes(m.pid, [c]));
            const peers = nodes.some((n) => n.name === m.name) ? await peersOf(paths.gobgpSocket(m.name)).catch(() => []) : [];
            const sessions = peers.map((p) => `${p.address} ${p.state} received ${p.received} accepted ${p.accepted}`).join(', ');
            return `${m.name} lacks ${lacks.join(' ')}${sessions === '' ? '' : ` (sessions: ${sessions})`}`;
          }),
      );
      throw new BenchError('BENCH_TIMEOUT', `${mode}: not every route in every kernel after ${o.convergeTimeoutMs / 1000} s: ${missing.join('; ')}`);
    }
    await sleep(POLL_MS);
  }
  const allRoutedMs = Math.max(...routedAt.values());
  const startCpu = new Map(nodes.map((n) => [n.name, { gobgpd: cpuMs(pids.get(n.name)!.gobgpd), agent: cpuMs(pids.get(n.name)!.agent) }]));
  // Every configured session Established (a second reflector's may come after the routes did).
  const sessionsReady = await pollUntil(`${mode}: every configured session Established`, 120_000, 200, async () => {
    const lists = await Promise.all(nodes.map((n) => peersOf(paths.gobgpSocket(n.name))));
    return lists.every((l) => l.length > 0 && l.every((p) => p.state === 'ESTABLISHED')) ? performance.now() - t0 : undefined;
  });
  await sleep(o.settleMs);
  const idle0 = performance.now();
  const cpu0 = new Map(nodes.map((n) => [n.name, { gobgpd: cpuMs(pids.get(n.name)!.gobgpd), agent: cpuMs(pids.get(n.name)!.agent) }]));
  await sleep(o.idleMs);
  const idleWindowMs = performance.now() - idle0;
  const samples: NodeSample[] = [];
  for (const n of nodes) {
    const p = pids.get(n.name)!;
    const c0 = cpu0.get(n.name)!;
    const peers = await peersOf(paths.gobgpSocket(n.name));
    const established = peers.filter((x) => x.state === 'ESTABLISHED');
    samples.push({
      node: n.name,
      rack: n.rack,
      role: mode === 'mesh' ? 'mesh' : n.reflector ? 'reflector' : 'client',
      peers: peers.length,
      sessions: established.length,
      ibgpSessions: established.filter((x) => !n.torAddresses.includes(x.address)).length,
      receivedPaths: peers.reduce((s, x) => s + x.received, 0),
      acceptedPaths: peers.reduce((s, x) => s + x.accepted, 0),
      kernelRoutes: await kernelRouteCount(n.netns),
      routedMs: routedAt.get(n.name) ?? NaN,
      startCpuMs: startCpu.get(n.name)!,
      idleCpuPercent: { gobgpd: ((cpuMs(p.gobgpd) - c0.gobgpd) / idleWindowMs) * 100, agent: ((cpuMs(p.agent) - c0.agent) / idleWindowMs) * 100 },
      rssMiB: { gobgpd: rssMiB(p.gobgpd), agent: rssMiB(p.agent) },
    });
  }
  return {
    mode,
    agentMesh: AGENT_MESH[mode],
    nodes: samples,
    routers: status.routers.map((r) => ({ name: r.name, routedMs: routedAt.get(r.name) ?? NaN })),
    spawnMs,
    allRoutedMs,
    allSessionsMs: sessionsReady,
    idleWindowMs,
  };
}

/** The spine announces `injectRoutes` /32s; every node's gobgpd and agent, before and after they are in its kernel. */
async function measureRouteCost(o: ScaleOptions, measured: ModeResult, nodes: LabNode[], status: LabStatusReport): Promise<RouteCost> {
  const lab = o.lab;
  const mode = measured.mode;
  const spine = status.routers.find((r) => r.role === 'spine') ?? status.routers[0]!;
  const files = frrFiles(labPaths(lab).frrDir(spine.name));
  const k = o.injectRoutes;
  // bgpd originates them itself (`network` without the import check): the lab's routers run no staticd.
  const networks = Array.from({ length: k }, (_, i) => `network ${injectedPrefix(i)}`);
  // In slices: one vtysh call with thousands of lines outlasts its timeout on a loaded machine.
  const configure = async (what: string, lines: string[]): Promise<void> => {
    try {
      for (let i = 0; i < lines.length; i += VTYSH_SLICE) {
        await vtysh(files, ['configure terminal', `router bgp ${spine.asn}`, 'no bgp network import-check', 'address-family ipv4 unicast', ...lines.slice(i, i + VTYSH_SLICE), 'end'].join('\n'));
      }
    } catch (err) {
      const reason = (err instanceof Error ? err.message : String(err)).split('\n').pop();
      throw new BenchError('BENCH_SETUP_FAILED', `${spine.name}: ${what} ${k} routes failed: ${reason}`);
    }
  };
  const pids = nodes.map((n) => ({ name: n.name, gobgpd: pidOf(lab, `gobgpd/${n.name}`), agent: pidOf(lab, `agent/${n.name}`), kubelet: pidOf(lab, `kubelet/${n.name}`) }));
  // CPU a process spends anyway (its idle rate, measured just before) is not the routes': taken off over the interval.
  const idle = pids.map((p) => measured.nodes.find((n) => n.node === p.name)?.idleCpuPercent ?? { gobgpd: 0, agent: 0 });
  const snapshot = (): { at: number; gobgpdCpu: number; agentCpu: number; gobgpdRss: number; agentRss: number }[] =>
    pids.map((p) => ({ at: performance.now(), gobgpdCpu: cpuMs(p.gobgpd), agentCpu: cpuMs(p.agent), gobgpdRss: rssMiB(p.gobgpd), agentRss: rssMiB(p.agent) }));
  const before = snapshot();
  const t0 = performance.now();
  let arrivedMs: number;
  let after: typeof before;
  try {
    await configure('announcing', networks);
    arrivedMs = await pollUntil(`${k} announced routes in every node's kernel`, 180_000, 100, () => (pids.every((p) => injectedInFib(p.kubelet) >= k) ? performance.now() - t0 : undefined));
    // The agents and gobgpd finish what the burst started (garbage collection) before the reading.
    await sleep(2000);
    after = snapshot();
  } finally {
    // Also after a failure half-way: the next shape must not find the spine still announcing some of them.
    await configure('withdrawing', networks.map((line) => `no ${line}`));
  }
  await pollUntil('the announced routes gone from every node\'s kernel', 180_000, 100, () => (pids.every((p) => injectedInFib(p.kubelet) === 0) ? true : undefined));
  const per = (f: (b: (typeof before)[number], a: (typeof after)[number], i: number) => number): Summary => summarize(before.map((b, i) => f(b, after[i]!, i) / k));
  const idleMs = (b: (typeof before)[number], a: (typeof after)[number], percent: number): number => ((a.at - b.at) * percent) / 100;
  const cost: RouteCost = {
    routes: k,
    mode,
    arrivedMs,
    gobgpdKiB: per((b, a) => (a.gobgpdRss - b.gobgpdRss) * 1024),
    agentKiB: per((b, a) => (a.agentRss - b.agentRss) * 1024),
    gobgpdCpuUs: per((b, a, i) => (a.gobgpdCpu - b.gobgpdCpu - idleMs(b, a, idle[i]!.gobgpd)) * 1000),
    agentCpuUs: per((b, a, i) => (a.agentCpu - b.agentCpu - idleMs(b, a, idle[i]!.agent)) * 1000),
  };
  o.log(`scale: ${k} routes from the spine in every kernel after ${formatMs(arrivedMs)}; per route gobgpd ${cost.gobgpdKiB.median.toFixed(2)} KiB ${cost.gobgpdCpuUs.median.toFixed(0)} µs, agent ${cost.agentKiB.median.toFixed(2)} KiB ${cost.agentCpuUs.median.toFixed(0)} µs`);
  return cost;
}

/**
 * Probes between every pair of pods (none of them on the reflector) while the first reflector's gobgpd is killed
 * with SIGKILL, stays dead for faultDownMs and is started again, until all its sessions are Established.
 */
async function reflectorKill(o: ScaleOptions, nodes: LabNode[], status: LabStatusReport): Promise<FaultResult> {
  const lab = o.lab;
  const reflector = nodes.find((n) => n.reflector);
  if (reflector === undefined) throw new BenchError('BENCH_SETUP_FAILED', `no node carries ${ROUTE_REFLECTOR_LABEL}`);
  const pods = status.pods.filter((p) => p.node !== reflector.name && p.ips.length > 0);
  if (pods.length < 2) throw new BenchError('BENCH_SETUP_FAILED', `the reflector-kill fault needs two pods off ${reflector.name}, the lab has ${pods.length}`);
  const flows: FlowSpec[] = pods.flatMap((from) =>
    pods
      .filter((to) => to !== from)
      .map((to) => ({
        name: `${from.namespace}/${from.name}@${from.node} → ${to.namespace}/${to.name}@${to.node}`,
        from: from.controlSocket,
        target: to.ips[0]!,
        port: 80,
        protocol: 'tcp' as const,
        expectIdentity: `${to.namespace}/${to.name}`,
        ratePerSecond: o.probeRatePerSecond,
      })),
  );
  const streams = new ProbeStreams(flows);
  streams.start();
  const t0 = performance.now();
  let recoveredMs: number | undefined;
  try {
    await sleep(2000);
    await labStop(lab, `gobgpd/${reflector.name}`, 'SIGKILL');
    await sleep(o.faultDownMs);
    labStart(lab, `gobgpd/${reflector.name}`);
    const socket = labPaths(lab).gobgpSocket(reflector.name);
    const peers = nodes.filter((n) => n.rack === reflector.rack).length - 1 + reflector.torAddresses.length;
    recoveredMs = await pollUntil(`${reflector.name}: every session Established after the restart`, 90_000, 200, async () => {
      const list = await peersOf(socket).catch(() => []);
      return list.length >= peers && list.every((p) => p.state === 'ESTABLISHED') ? performance.now() - t0 : undefined;
    }).catch(() => undefined);
    await sleep(2000);
  } catch (err) {
    await streams.stop();
    throw err;
  }
  const stats = await streams.stop();
  return { reflector: reflector.name, downMs: o.faultDownMs, recoveredMs, flows: stats };
}

// ---- the cost model and the extrapolation ------------------------------------------------------------------------

export interface CostModel {
  /** Fitted over every node of both modes: gobgpd + agent, base and per Established session. */
  base: { rssMiB: number; startCpuMs: number; idleCpuPercent: number };
  perSession: { rssKiB: number; startCpuMs: number; idleCpuPercent: number };
  /** From the spine's announced routes: gobgpd + agent per route (medians over nodes). */
  perRoute: { rssKiB: number; cpuUs: number };
  samples: number;
}

/** Least squares y = a + b x; undefined when x does not vary. */
export function fitLine(points: readonly { x: number; y: number }[]): { a: number; b: number } | undefined {
  const n = points.length;
  if (n < 2) return undefined;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  if (sxx === 0) return undefined;
  const b = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0) / sxx;
  return { a: my - b * mx, b };
}

/**
 * Per node: cost = base + sessions × perSession + paths × perRoute. perRoute comes from the announced routes; the
 * paths' share is taken off each node's figure and the rest is fitted on its Established sessions (nodes of both
 * modes: mesh nodes and reflectors have many sessions, clients few).
 */
export function costModel(r: ScaleResult): CostModel | undefined {
  const c = r.routeCost;
  if (c === undefined) return undefined;
  const perRoute = { rssKiB: Math.max(0, c.gobgpdKiB.median + c.agentKiB.median), cpuUs: Math.max(0, c.gobgpdCpuUs.median + c.agentCpuUs.median) };
  const nodes = r.modes.flatMap((m) => m.nodes);
  const fit = (y: (n: NodeSample) => number): { a: number; b: number } | undefined => fitLine(nodes.map((n) => ({ x: n.sessions, y: y(n) })));
  const rss = fit((n) => n.rssMiB.gobgpd + n.rssMiB.agent - (n.receivedPaths * perRoute.rssKiB) / 1024);
  const cpu = fit((n) => n.startCpuMs.gobgpd + n.startCpuMs.agent - (n.receivedPaths * perRoute.cpuUs) / 1000);
  const idle = fit((n) => n.idleCpuPercent.gobgpd + n.idleCpuPercent.agent);
  if (rss === undefined || cpu === undefined || idle === undefined) return undefined;
  return {
    base: { rssMiB: rss.a, startCpuMs: cpu.a, idleCpuPercent: idle.a },
    perSession: { rssKiB: rss.b * 1024, startCpuMs: cpu.b, idleCpuPercent: idle.b },
    perRoute,
    samples: nodes.length,
  };
}

export interface ExtrapolatedRow {
  nodes: number;
  shape: 'full mesh' | 'reflector' | 'client';
  sessions: number;
  clusterSessions: number;
  paths: number;
  kernelRoutes: number;
  rssMiB: number;
  startCpuS: number;
  idleCpuPercent: number;
}

/**
 * One iBGP domain of `n` nodes with `families` podCIDRs each (plus `torSessions` per node), as a full mesh and with
 * `reflectors` reflectors that are clients of each other (as podroute's are):
 *   full mesh:  sessions n−1, paths (n−1)·f, cluster sessions n(n−1)/2
 *   client:     sessions R,   paths R·(n−1)·f (every reflector sends every route)
 *   reflector:  sessions n−1, paths (n−1)·f + (R−1)·(n−2)·f (its clients, and the other reflectors' reflections)
 *   cluster sessions with reflectors: R·(n−R) + R(R−1)/2; every node's kernel holds (n−1)·f routes.
 * A negative fitted per-session cost (noise) counts as 0.
 */
export function extrapolate(m: CostModel, n: number, o: { reflectors: number; families: number; torSessions: number }): ExtrapolatedRow[] {
  const f = o.families;
  const R = o.reflectors;
  const kernelRoutes = (n - 1) * f;
  const row = (shape: ExtrapolatedRow['shape'], ibgp: number, paths: number, clusterSessions: number): ExtrapolatedRow => {
    const sessions = ibgp + o.torSessions;
    return {
      nodes: n,
      shape,
      sessions,
      clusterSessions,
      paths,
      kernelRoutes,
      rssMiB: m.base.rssMiB + (sessions * Math.max(0, m.perSession.rssKiB) + paths * m.perRoute.rssKiB) / 1024,
      startCpuS: (m.base.startCpuMs + sessions * Math.max(0, m.perSession.startCpuMs) + (paths * m.perRoute.cpuUs) / 1000) / 1000,
      idleCpuPercent: m.base.idleCpuPercent + sessions * Math.max(0, m.perSession.idleCpuPercent),
    };
  };
  const rrCluster = R * (n - R) + (R * (R - 1)) / 2;
  return [
    row('full mesh', n - 1, (n - 1) * f, (n * (n - 1)) / 2),
    row('reflector', n - 1, (n - 1) * f + (R - 1) * (n - 2) * f, rrCluster),
    row('client', R, R * (n - 1) * f, rrCluster),
  ];
}

// ---- the report's section (bench/report.ts puts it in docs/benchmarks.md) ---------------------------------------

export interface ScaleTarget {
  what: string;
  measured: string;
  met: boolean | undefined;
  miss?: string;
}

const mib = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} MiB` : 'n/a');
const pct = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)} %` : 'n/a');
const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const med = (values: number[], format: (v: number) => string): string => formatSummary(summarize(values), format);

export function renderScale(s: ScaleResult): { lines: string[]; targets: ScaleTarget[] } {
  const out: string[] = [];
  out.push(
    `${s.topology}: ${s.nodes} nodes in ${s.racks} racks, an AS per rack (${s.nodesPerAs} nodes), each node an eBGP peer of its ToR. ` +
      'The lab comes up once; for each iBGP shape every node\'s gobgpd and agent are stopped, the agents\' kernel routes flushed (the routers withdraw), ' +
      'the agents re-configured and all gobgpd and agents started at once. The clock starts at the first start; "every route in every kernel" is every node\'s ' +
      'and router\'s FIB holding every other node\'s podCIDRs (both families), read through `/proc/PID/net` every 50 ms. CPU from start-up to that moment and RSS ' +
      'are per process (/proc); idle CPU over a window after a settle pause. Figures per node are median (min–max) over the nodes of that role.',
    '',
  );
  const rows: string[][] = [];
  for (const m of s.modes) {
    const roles = [...new Set(m.nodes.map((n) => n.role))];
    for (const role of roles) {
      const ns = m.nodes.filter((n) => n.role === role);
      rows.push([
        `${m.mode} (\`bgp.mesh: ${m.agentMesh}\`)`,
        `${role} × ${ns.length}`,
        med(ns.map((n) => n.sessions), int) + ` (iBGP ${med(ns.map((n) => n.ibgpSessions), int)})`,
        med(ns.map((n) => n.receivedPaths), int),
        med(ns.map((n) => n.kernelRoutes), int),
        med(ns.map((n) => n.routedMs), formatMs),
        med(ns.map((n) => n.startCpuMs.gobgpd), formatMs) + ' / ' + med(ns.map((n) => n.startCpuMs.agent), formatMs),
        med(ns.map((n) => n.idleCpuPercent.gobgpd), pct) + ' / ' + med(ns.map((n) => n.idleCpuPercent.agent), pct),
        med(ns.map((n) => n.rssMiB.gobgpd), mib) + ' / ' + med(ns.map((n) => n.rssMiB.agent), mib),
      ]);
    }
  }
  out.push(
    markdownTable(
      ['shape', 'nodes', 'sessions per node', 'paths received by gobgpd', 'routes in the kernel', 'start → own FIB complete', 'CPU start → converged (gobgpd / agent)', 'idle CPU (gobgpd / agent)', 'RSS (gobgpd / agent)'],
      rows,
    ),
    '',
  );
  out.push(
    markdownTable(
      ['shape', 'all started → every route in every kernel', 'all started → every session Established', 'iBGP sessions in the cluster', 'spawning all processes took'],
      s.modes.map((m) => [m.mode, formatMs(m.allRoutedMs), formatMs(m.allSessionsMs), int(m.nodes.reduce((t, n) => t + n.ibgpSessions, 0) / 2), formatMs(m.spawnMs)]),
    ),
    '',
  );
  const c = s.routeCost;
  if (c !== undefined) {
    out.push(
      `Cost of one route (${s.modes.find((m) => m.mode === c.mode) === undefined ? c.mode : c.mode} shape): the spine announced ${int(c.routes)} /32s from ${INJECT_RANGE} (accepted by the agents for this run); ` +
        `in every node's kernel ${formatMs(c.arrivedMs)} later. Per route and node (median (min–max) over nodes): gobgpd ${formatSummary(c.gobgpdKiB, (v) => `${v.toFixed(2)} KiB`)}, ` +
        `${formatSummary(c.gobgpdCpuUs, (v) => `${v.toFixed(0)} µs`)} CPU; agent ${formatSummary(c.agentKiB, (v) => `${v.toFixed(2)} KiB`)}, ${formatSummary(c.agentCpuUs, (v) => `${v.toFixed(0)} µs`)} CPU ` +
        '(CPU less each process\'s idle rate over the same interval; RSS grows in steps, so a few thousand routes give a coarse figure; the kernel\'s own memory for the routes is not in it).',
      '',
    );
  }
  const targets: ScaleTarget[] = [];
  const f = s.fault;
  if (f !== undefined) {
    const lost = f.flows.reduce((t, x) => t + x.lost, 0);
    const sent = f.flows.reduce((t, x) => t + x.sent, 0);
    out.push(
      `Reflector killed: ${f.reflector}'s gobgpd killed with SIGKILL while probes flowed (TCP, ${f.flows.length} flows between the pods of other nodes), started again ${formatMs(f.downMs)} later; ` +
        `all its sessions Established again ${f.recoveredMs === undefined ? '(not within 90 s)' : `${formatMs(f.recoveredMs)} after the probes began (the kill was at 2 s)`}.`,
      '',
      markdownTable(['flow', 'sent', 'lost', 'longest gap between answers'], f.flows.map((x) => [x.name, int(x.sent), int(x.lost), formatMs(x.longestGapMs)])),
      '',
    );
    targets.push({
      what: 'one route reflector killed (SIGKILL) while probes flow: 0 probes lost',
      measured: `${int(lost)} of ${int(sent)} lost`,
      met: sent > 0 && lost === 0,
      miss: 'The flows that lost probes and their longest gaps are in section 8: a client that lost its route held it from the killed reflector only.',
    });
  } else {
    targets.push({ what: 'one route reflector killed (SIGKILL) while probes flow: 0 probes lost', measured: 'not measured', met: undefined });
  }
  const model = costModel(s);
  if (model !== undefined) {
    const tor = summarize(s.modes.flatMap((m) => m.nodes.map((n) => n.sessions - n.ibgpSessions))).median;
    const ex = [1000, 5000].flatMap((n) => extrapolate(model, n, { reflectors: 2, families: s.families, torSessions: tor }));
    out.push(
      '### Extrapolation to 1,000 and 5,000 nodes (on paper)',
      '',
      `From this run, per node (gobgpd + agent), fitted over the ${model.samples} nodes of both shapes: **cost = base + sessions × per-session + paths × per-route**, ` +
        `with per-route from the announced routes above (${model.perRoute.rssKiB.toFixed(2)} KiB, ${model.perRoute.cpuUs.toFixed(0)} µs CPU), and base and per-session ` +
        `the least-squares line of each node's figure less its paths' share against its Established sessions: base ${mib(model.base.rssMiB)}, ${formatMs(model.base.startCpuMs)} CPU to converge, ` +
        `${pct(model.base.idleCpuPercent)} idle; per session ${model.perSession.rssKiB.toFixed(0)} KiB, ${formatMs(model.perSession.startCpuMs)} CPU, ${pct(model.perSession.idleCpuPercent)} idle ` +
        '(a negative fitted figure is noise and counts as 0). One iBGP domain of n nodes (Calico\'s default full mesh; here one AS per rack keeps it at ' +
        `${s.nodesPerAs}), ${s.families} podCIDRs per node, R = 2 reflectors that are each other's clients, ${int(tor)} ToR session(s) per node: ` +
        'full mesh: sessions n−1, paths (n−1)·f, cluster sessions n(n−1)/2; client: sessions R, paths R·(n−1)·f; reflector: sessions n−1, paths (n−1)·f + (R−1)·(n−2)·f; ' +
        'with reflectors the cluster has R·(n−R) + R(R−1)/2 sessions; every kernel holds (n−1)·f routes. ' +
        'Not in the model: BGP UPDATE bursts that queue behind each other at start-up (the time to converge is not extrapolated), the kernel\'s memory for routes, and the Kubernetes watch of n Nodes (section 5).',
      '',
      markdownTable(
        ['nodes', 'shape', 'sessions per node', 'iBGP sessions in the cluster', 'paths received per node', 'kernel routes per node', 'RSS per node (gobgpd + agent)', 'CPU to converge per node', 'idle CPU per node'],
        ex.map((e) => [int(e.nodes), e.shape, int(e.sessions), int(e.clusterSessions), int(e.paths), int(e.kernelRoutes), mib(e.rssMiB), `${e.startCpuS.toFixed(1)} s`, pct(e.idleCpuPercent)]),
      ),
      '',
    );
  } else {
    out.push('No extrapolation: the run has no per-route cost or no spread of sessions between nodes to fit.', '');
  }
  if (s.failures.length > 0) out.push('Failures:', '', ...s.failures.map((x) => `- ${x.split('\n')[0]}`), '');
  return { lines: out, targets };
}
