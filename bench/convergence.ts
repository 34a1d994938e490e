// Benchmark 2, convergence, watched from every other node's and every router's FIB (through /proc/PID/net of a
// process in each namespace, polled every few milliseconds).
// In the two-racks lab (bridged rack LANs, nodes of a rack in one AS with an iBGP mesh):
//   - node (re)join: gobgpd + `podroute agent` start on a node (whose Node object exists, its kernel emptied of
//     our routes as a new node's is) until every other node and router routes to its podCIDRs; split into agent start-up, BGP connect (the back-off, reported
//     separately, per session kind: ToR and mesh) and propagation after the session a watcher learns through is
//     Established. Twice: with the ToR dialing the node (the lab's router config: a neighbor per node address)
//     and with the ToR only listening (`bgp listen range`, the node must dial: gobgpd's first connect comes
//     after a random 5-10 s);
//   - gobgpd restart (killed, started again while the agent keeps running) until the agent has re-configured it
//     and every session is Established and advertising again; and how long any FIB lost the node's routes;
//   - node link down (carrier loss on the node's uplink) until every other node and router has withdrawn them,
//     and link up until they are back. The rack LAN is a bridge in the ToR: the carrier loss downs a bridge port
//     only, so the ToR waits for its hold timer (gobgpd has no BFD, so BFD on the ToR alone would not help).
// In the dual-homed lab (routed per-node ports, the layout an operator picks for fast failover without BFD):
//   - node link down (carrier loss on both uplinks of a node): the ToRs see their port go down and drop the
//     session at once (fast-external-failover), every other FIB withdraws; link up until routed again.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { findProjectRoot } from '../src/bgp/gobgp-proto.js';
import { frrFiles, NODE_CONNECT_RETRY_SECONDS, nodeNeighborAddresses, nodeNeighborCommands, vtysh } from '../src/lab/frr.js';
import { CLI_MAIN, gobgpdArgs } from '../src/lab/daemons.js';
import { labDown, listLabs } from '../src/lab/down.js';
import { processAlive } from '../src/lab/processes.js';
import { routerProcessNames } from '../src/lab/routers.js';
import { labStatus, type LabStatusReport } from '../src/lab/status.js';
import { labUp } from '../src/lab/up.js';
import { labPaths } from '../src/lab/paths.js';
import { readLabState } from '../src/lab/state.js';
import { parseTopology, planLayout } from '../src/lab/topology.js';
import { hasNoRoutes, hasRoutes } from './lib/fib-presence.js';
import { RawGobgp } from './lib/gobgp-raw.js';
import { BenchError, ip, ipBatch, sleep } from './lib/proc.js';
import { formatMs, formatSummary, summarize, type Summary } from './lib/stats.js';

export interface ConvergenceOptions {
  lab: string;
  reps: number;
  workDir: string;
  log: (m: string) => void;
  /** The dual-homed topology measured for link down on routed ports (default topologies/dual-homed.yaml); false: skipped. */
  dualHomedTopology?: string | false;
}

/** One way of joining: the figures of each repetition. */
export interface JoinFigures {
  /** gobgpd + agent start until every watcher routes to the node's pods. */
  total: Summary;
  /** Agent start until gobgpd has its peers. */
  agentStartup: Summary;
  /** gobgpd + agent start until every watcher through a ToR (routers, other racks) routes. */
  torTotal: Summary;
  /** Peers configured until the first session is Established (whichever kind). */
  bgpConnect: Summary;
  /** First session Established until every watcher routes. */
  propagation: Summary;
  /** Peers configured until every session with a ToR is Established (the connect back-off towards the ToRs). */
  torConnect: Summary;
  /** ToR sessions Established until every watcher that learns through a ToR (routers, other racks) routes. */
  torPropagation: Summary;
  /** Peers configured until every iBGP mesh session is Established (gobgpd to gobgpd: both back off). */
  meshConnect: Summary;
  /** Mesh sessions Established until every same-AS node (learns only through the mesh) routes. */
  meshPropagation: Summary;
  /** gobgpd + agent start until every same-AS node (learns over the gobgpd iBGP mesh only) routes (absent in older results). */
  meshTotal?: Summary;
}

export interface LinkDownFigures {
  allWithdrawn: Summary;
  firstWithdrawn: Summary;
  nodesWithdrawn: Summary;
  routersWithdrawn: Summary;
  restored: Summary;
}

export interface ConvergenceResult {
  node: string;
  podCIDRs: string[];
  watchers: string[];
  /** The ToR dials the node (a neighbor per node address; the lab's router config) and the node dials the ToR. */
  join: JoinFigures & { leave: Summary };
  /** The ToR only listens (`bgp listen range`): the node's gobgpd must make the first connect. */
  joinPassive: JoinFigures;
  gobgpdRestart: { readvertised: Summary; agentReconfigured: Summary; bgpConnect: Summary; fibOutageMs: Summary };
  /** Two-racks: carrier loss on the node's one uplink, a port of the ToR's rack bridge (hold-timer detection). */
  linkDown: LinkDownFigures;
  /** Per watching node/router: join (until it routes) and link down (until it withdrew). */
  perWatcher: Record<string, { join: Summary; linkDown: Summary }>;
  /** Dual-homed: carrier loss on both routed uplinks of a node (the ToRs' ports go down). */
  dualHomed?: {
    topology: string;
    node: string;
    podCIDRs: string[];
    watchers: string[];
    linkDown: LinkDownFigures;
    perWatcher: Record<string, { linkDown: Summary }>;
    failures: string[];
  };
  /** How each figure was produced (topology, detection mechanism), for the report. */
  mechanisms: { join: string; joinPassive: string; linkDown: string; dualHomedLinkDown: string };
  failures: string[];
}

interface Watcher {
  name: string;
  kind: 'node' | 'router';
  pid: number;
}

const POLL_MS = 5;
const LEAVE_WAIT_MS = 20_000;
/** Hold time (9 s) plus margin: a withdrawal that needs more is reported as not happening. */
const LINK_DOWN_WAIT_MS = 15_000;

function spawnInNetns(netns: string, command: string, args: string[], logFile: string): number {
  const fd = openSync(logFile, 'a');
  try {
    // Detached: `lab down` ends it like every other process in the lab's namespaces.
    const child = spawn('ip', ['netns', 'exec', netns, command, ...args], { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', () => undefined);
    child.unref();
    if (child.pid === undefined) throw new BenchError('BENCH_SETUP_FAILED', `could not start ${command} in ${netns}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

async function killAndWait(pid: number, signal: NodeJS.Signals): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + 10_000;
  while (processAlive(pid) && Date.now() < deadline) await sleep(10);
  if (processAlive(pid)) process.kill(pid, 'SIGKILL');
}

/** Polls until `check` holds for every watcher; returns ms since `t0` when each first did (undefined: never). */
async function waitAll(t0: bigint, watchers: Watcher[], check: (w: Watcher) => boolean, timeoutMs: number): Promise<Map<string, number | undefined>> {
  const at = new Map<string, number | undefined>(watchers.map((w) => [w.name, undefined]));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const w of watchers) {
      if (at.get(w.name) === undefined && check(w)) at.set(w.name, Number(process.hrtime.bigint() - t0) / 1e6);
    }
    if ([...at.values()].every((v) => v !== undefined)) break;
    await sleep(POLL_MS);
  }
  return at;
}

function maxOf(at: Map<string, number | undefined>): number {
  const values = [...at.values()];
  return values.some((v) => v === undefined) ? NaN : Math.max(...(values as number[]));
}

/** Per peer address: when the node's gobgpd first had it (configured) and first saw it Established. */
interface SessionTimes {
  configured?: number;
  firstUp?: number;
  allAdvertising?: number;
  upAt: Map<string, number>;
}

function maxOver(at: Map<string, number | undefined>, names: readonly string[]): number | undefined {
  const values = names.map((n) => at.get(n));
  return values.length === 0 || values.some((v) => v === undefined) ? undefined : Math.max(...(values as number[]));
}

export async function runConvergence(status: LabStatusReport, o: ConvergenceOptions): Promise<ConvergenceResult> {
  const paths = labPaths(o.lab);
  const state = readLabState(o.lab);
  if (state === undefined) throw new BenchError('BENCH_SETUP_FAILED', `lab ${o.lab} has no state`);
  const target = status.nodes[status.nodes.length - 1]!;
  const layout = planLayout(parseTopology(state.topologyText));
  const placed = layout.nodes.find((n) => n.name === target.name);
  if (placed === undefined) throw new BenchError('BENCH_SETUP_FAILED', `lab ${o.lab}: node ${target.name} not in its topology`);
  /** The ToR addresses the node peers with; every other peer of its gobgpd is a mesh peer. */
  const torAddresses = placed.gateways.map((g) => g.address);
  const pidOf = (name: string): number => {
    const p = state.processes.find((x) => x.name === name);
    if (p === undefined) throw new BenchError('BENCH_SETUP_FAILED', `lab ${o.lab}: no process ${name}`);
    return p.pid;
  };
  const watchers: Watcher[] = [
    ...status.nodes.filter((n) => n.name !== target.name).map((n) => ({ name: n.name, kind: 'node' as const, pid: pidOf(`kubelet/${n.name}`) })),
    ...status.routers.map((r) => ({ name: r.name, kind: 'router' as const, pid: pidOf(`zebra/${r.name}`) })),
  ];
  // A node of the target's AS rejects the target's routes through a ToR (its own AS in the path): it learns them
  // over the iBGP mesh only. Everyone else learns them through the target's ToR.
  const meshWatchers = status.nodes.filter((n) => n.name !== target.name && n.asn === target.asn).map((n) => n.name);
  const torWatchers = watchers.map((w) => w.name).filter((n) => !meshWatchers.includes(n));
  const cidrs = target.podCIDRs;
  const netns = paths.netns(target.name);
  const socket = paths.gobgpSocket(target.name);
  const agentConfig = path.join(paths.nodeDir(target.name), 'agent.yaml');
  await mkdir(o.workDir, { recursive: true });
  const gobgpdLog = path.join(o.workDir, `gobgpd-${target.name}.log`);
  const agentLog = path.join(o.workDir, `agent-${target.name}.log`);
  const gobgpdMarker = `unix://${socket}`;
  const failures: string[] = [];
  const series = new Map<string, number[]>();
  const record = (key: string, value: number | undefined): void => {
    if (value !== undefined && Number.isFinite(value)) series.set(key, [...(series.get(key) ?? []), value]);
  };

  const stopAll = async (marker: string, signal: NodeJS.Signals): Promise<void> => {
    for (const pid of await pidsInNetns(netns, marker)) await killAndWait(pid, signal);
  };
  const startGobgpd = async (): Promise<void> => {
    await rm(socket, { force: true });
    spawnInNetns(netns, 'gobgpd', gobgpdArgs(socket), gobgpdLog);
  };
  const routedEverywhere = (w: Watcher): boolean => hasRoutes(w.pid, cidrs);
  const goneEverywhere = (w: Watcher): boolean => hasNoRoutes(w.pid, cidrs);

  /** Whether the ToRs have the node as a configured neighbor now: the lab's config does. */
  let torDials = true;
  /**
   * The ToRs of the node dial it (a configured neighbor per node address) or only listen. Called while the node is
   * stopped: FRR refuses to turn a live dynamic neighbor into a configured one, and deletes a dynamic neighbor as
   * its session goes down, so a refusal is retried for a moment.
   */
  const setTorDials = async (dials: boolean): Promise<void> => {
    for (const tor of placed.tors) {
      const asn = status.routers.find((r) => r.name === tor)?.asn;
      const addresses = nodeNeighborAddresses(layout, tor, target.name);
      const commands = addresses.flatMap((a) => (dials ? nodeNeighborCommands(a).map((c) => c.trim()) : [`no neighbor ${a}`]));
      const files = frrFiles(paths.frrDir(tor));
      let lastError: unknown;
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          const out = await vtysh(files, ['configure terminal', `router bgp ${asn}`, ...commands, 'end'].join('\n'));
          if (!out.includes('%')) {
            lastError = undefined;
            break;
          }
          lastError = new Error(out.trim());
        } catch (err) {
          lastError = err;
        }
        await sleep(250);
      }
      if (lastError !== undefined) throw new BenchError('BENCH_SETUP_FAILED', `${tor}: could not ${dials ? 'add' : 'remove'} the neighbors of ${target.name}: ${lastError instanceof Error ? lastError.message : 'vtysh refused'}`);
    }
    torDials = dials;
  };

  /** Polls the node's gobgpd: when peers are configured, when each one is first Established, all advertising. */
  const followSessions = async (t0: bigint, timeoutMs: number): Promise<SessionTimes> => {
    const client = new RawGobgp(`unix://${socket}`);
    const out: SessionTimes = { upAt: new Map() };
    const deadline = Date.now() + timeoutMs;
    try {
      while (Date.now() < deadline && out.allAdvertising === undefined) {
        const peers = await listPeerStates(client).catch(() => []);
        const now = Number(process.hrtime.bigint() - t0) / 1e6;
        if (peers.length > 0 && out.configured === undefined) out.configured = now;
        for (const p of peers) if (p.state === 'ESTABLISHED' && !out.upAt.has(p.address)) out.upAt.set(p.address, now);
        if (peers.some((p) => p.state === 'ESTABLISHED') && out.firstUp === undefined) out.firstUp = now;
        if (peers.length > 0 && peers.every((p) => p.state === 'ESTABLISHED' && p.advertised > 0)) out.allAdvertising = now;
        await sleep(20);
      }
    } finally {
      client.close();
    }
    return out;
  };

  /** Stops the node (leave), sets how the ToR finds it, starts it again (join); records under `key`. */
  const leaveAndJoin = async (key: 'join' | 'passive', rep: number, redialPhase: number): Promise<void> => {
    let t0 = process.hrtime.bigint();
    await stopAll(agentConfig, 'SIGTERM');
    await stopAll(gobgpdMarker, 'SIGTERM');
    const left = await waitAll(t0, watchers, goneEverywhere, LEAVE_WAIT_MS);
    record(`${key}:leave`, maxOf(left));
    // A watcher that kept the stopped node's routes cannot show the join: it is left out (and named).
    const kept = watchers.filter((w) => left.get(w.name) === undefined);
    if (kept.length > 0) failures.push(`rep ${rep + 1} leave (${key}): ${kept.map((w) => w.name).join(', ')} still routed to the stopped node after ${LEAVE_WAIT_MS / 1000} s (left out of the join figure)`);
    // A new node: the ToR's neighbor for it is new too (set afresh each time). A neighbor whose session just ended
    // would first wait out FRR's idle hold, which grows with each reset (measured: up to 5 s at the second join).
    if (key === 'join' && torDials) await setTorDials(false);
    await setTorDials(key === 'join');
    // A new node: its kernel holds no routes of ours (a stopped agent leaves them, and a new agent that finds them
    // restarts gracefully instead, which defers its gobgpd's updates: that is the restart, not the join).
    for (const family of ['-4', '-6']) await ip([family, '-n', netns, 'route', 'flush', 'proto', '44']);
    const joining = watchers.filter((w) => !kept.includes(w));
    // The ToR's redial timer started when its neighbors were set just now, a fixed time before the start:
    // every join would meet it at the same phase, and the total would move in whole seconds with start-up. A node
    // joining a running fabric meets it at any phase: the joins start at phases spread over the period.
    await sleep(redialPhase);
    t0 = process.hrtime.bigint();
    await startGobgpd();
    spawnInNetns(netns, process.execPath, [CLI_MAIN, 'agent', '--config', agentConfig], agentLog);
    const [sessions, routed] = await Promise.all([followSessions(t0, 90_000), waitAll(t0, joining, routedEverywhere, 90_000)]);
    if (key === 'join') for (const [name, v] of routed) if (v !== undefined) record(`join:${name}`, v);
    const total = maxOf(routed);
    if (!Number.isFinite(total)) throw new BenchError('BENCH_TIMEOUT', `join: not routed everywhere after 90 s (${[...routed].filter(([, v]) => v === undefined).map(([k]) => k).join(', ')})`);
    record(`${key}:total`, total);
    const { configured, firstUp, upAt } = sessions;
    record(`${key}:startup`, configured);
    const torUp = maxOver(upAt, torAddresses);
    const meshPeers = [...upAt.keys()].filter((a) => !torAddresses.includes(a));
    const meshUp = meshWatchers.length === 0 ? undefined : maxOver(upAt, meshPeers);
    if (configured !== undefined) {
      if (firstUp !== undefined) record(`${key}:connect`, firstUp - configured);
      if (torUp !== undefined) record(`${key}:torConnect`, torUp - configured);
      if (meshUp !== undefined) record(`${key}:meshConnect`, meshUp - configured);
    }
    // The FIBs are polled every 5 ms, the sessions every 20 ms: a FIB may show the route a few ms before the poll
    // sees its session Established. Such a propagation counts as 0.
    const after = (from: number, to: number): number => Math.max(0, to - from);
    if (firstUp !== undefined) record(`${key}:propagation`, after(firstUp, total));
    const torRouted = maxOver(routed, torWatchers.filter((n) => joining.some((w) => w.name === n)));
    record(`${key}:torTotal`, torRouted);
    if (torUp !== undefined && torRouted !== undefined) record(`${key}:torPropagation`, after(torUp, torRouted));
    const meshRouted = maxOver(routed, meshWatchers.filter((n) => joining.some((w) => w.name === n)));
    if (meshRouted !== undefined) record(`${key}:meshTotal`, meshRouted);
    if (meshUp !== undefined && meshRouted !== undefined) record(`${key}:meshPropagation`, after(meshUp, meshRouted));
  };

  for (let rep = 0; rep < o.reps; rep++) {
    // ---- leave and (re)join: the ToR only listening, then the ToR dialing too (the lab's config, left in place) ----
    const joins = [
      { key: 'passive' as const, redialPhase: 0 },
      ...Array.from({ length: JOINS_PER_REP }, (_, j) => ({ key: 'join' as const, redialPhase: redialPhaseMs(rep * JOINS_PER_REP + j, o.reps * JOINS_PER_REP) })),
    ];
    for (const { key, redialPhase } of joins) {
      try {
        await leaveAndJoin(key, rep, redialPhase);
      } catch (err) {
        failures.push(`rep ${rep + 1} ${key === 'join' ? 'join' : 'join (ToR listening only)'}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }

    // ---- gobgpd restart (crash) while the agent runs ----
    try {
      await waitAll(process.hrtime.bigint(), watchers, routedEverywhere, 60_000);
      const t0 = process.hrtime.bigint();
      await stopAll(gobgpdMarker, 'SIGKILL');
      await startGobgpd();
      let outage = 0;
      let watching = true;
      const outageWatch = (async () => {
        let last = process.hrtime.bigint();
        while (watching) {
          const now = process.hrtime.bigint();
          if (!watchers.every(routedEverywhere)) outage += Number(now - last) / 1e6;
          last = now;
          await sleep(POLL_MS);
        }
      })();
      const sessions = await followSessions(t0, 90_000);
      watching = false;
      await outageWatch;
      if (sessions.allAdvertising === undefined) throw new BenchError('BENCH_TIMEOUT', 'gobgpd restart: sessions not all Established and advertising after 90 s');
      record('restartReadvertised', sessions.allAdvertising);
      record('restartReconfigured', sessions.configured);
      if (sessions.configured !== undefined && sessions.firstUp !== undefined) record('restartConnect', sessions.firstUp - sessions.configured);
      record('restartOutage', outage);
    } catch (err) {
      failures.push(`rep ${rep + 1} gobgpd restart: ${err instanceof Error ? err.message : String(err)}`);
    }

    // ---- link down / up ----
    try {
      await waitAll(process.hrtime.bigint(), watchers, routedEverywhere, 60_000);
      const figures = await linkDownUp(netns, ['eth0'], watchers, cidrs, `rep ${rep + 1}`, failures);
      for (const [name, v] of figures.perWatcher) if (v !== undefined) record(`link:${name}`, v);
      for (const [k, v] of Object.entries(figures.summary)) record(`link:${k}`, v);
    } catch (err) {
      failures.push(`rep ${rep + 1} link down: ${err instanceof Error ? err.message : String(err)}`);
    }
    o.log(`convergence: repetition ${rep + 1}/${o.reps} done`);
  }
  const s = (key: string): Summary => summarize(series.get(key) ?? []);
  const joinFigures = (key: 'join' | 'passive'): JoinFigures => ({
    total: s(`${key}:total`),
    torTotal: s(`${key}:torTotal`),
    agentStartup: s(`${key}:startup`),
    bgpConnect: s(`${key}:connect`),
    propagation: s(`${key}:propagation`),
    torConnect: s(`${key}:torConnect`),
    torPropagation: s(`${key}:torPropagation`),
    meshConnect: s(`${key}:meshConnect`),
    meshPropagation: s(`${key}:meshPropagation`),
    meshTotal: s(`${key}:meshTotal`),
  });
  const dualHomedTopology = o.dualHomedTopology ?? path.join(findProjectRoot(), 'topologies', 'dual-homed.yaml');
  let dualHomed: ConvergenceResult['dualHomed'];
  if (dualHomedTopology !== false) {
    try {
      dualHomed = await runDualHomedLinkDown(`${o.lab}d`, dualHomedTopology, o);
    } catch (err) {
      failures.push(`dual-homed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return {
    node: target.name,
    podCIDRs: cidrs,
    watchers: watchers.map((w) => `${w.kind} ${w.name}`),
    join: { ...joinFigures('join'), leave: s('join:leave') },
    joinPassive: joinFigures('passive'),
    gobgpdRestart: { readvertised: s('restartReadvertised'), agentReconfigured: s('restartReconfigured'), bgpConnect: s('restartConnect'), fibOutageMs: s('restartOutage') },
    linkDown: linkFigures(s, 'link'),
    perWatcher: Object.fromEntries(watchers.map((w) => [w.name, { join: s(`join:${w.name}`), linkDown: s(`link:${w.name}`) }])),
    ...(dualHomed === undefined ? {} : { dualHomed }),
    mechanisms: {
      join:
        `two-racks: ${target.name}'s ToR (${placed.tors.join(', ')}) has it as a configured neighbor and dials it every 1 s (FRR timers connect 1) ` +
        'while gobgpd dials the ToR too; same-AS nodes learn the routes over the gobgpd iBGP mesh, whose first connect is gobgpd\'s own back-off. ' +
        `Each repetition joins ${JOINS_PER_REP} times, the joins of all repetitions starting at phases of the ToR's redial period spread evenly over it (a node joining a running fabric meets the timer at any phase)`,
      joinPassive: `two-racks: the ToR only listens (bgp listen range): ${target.name}'s gobgpd makes the first connect, after a random 5-10 s in gobgpd 3.10`,
      linkDown:
        'two-racks: carrier loss on the node\'s only uplink, a port of the rack bridge inside the ToR: no interface of the ToR goes down, so it ' +
        'waits for its hold timer (9 s); same-AS nodes keep the iBGP route as graceful-restart helpers (stale until the restart time)',
      dualHomedLinkDown:
        'dual-homed: carrier loss on both routed uplinks of the node: each ToR\'s port goes down and FRR drops the session at once ' +
        '(fast-external-failover), then withdraws to the spines and to the other nodes\' gobgpd',
    },
    failures,
  };
}

function linkFigures(s: (key: string) => Summary, prefix: string): LinkDownFigures {
  return {
    allWithdrawn: s(`${prefix}:all`),
    firstWithdrawn: s(`${prefix}:first`),
    nodesWithdrawn: s(`${prefix}:nodes`),
    routersWithdrawn: s(`${prefix}:routers`),
    restored: s(`${prefix}:restored`),
  };
}

/** Takes `interfaces` of the node down (carrier loss) until every watcher withdrew, then up until it routes again. */
async function linkDownUp(
  netns: string,
  interfaces: string[],
  watchers: Watcher[],
  cidrs: string[],
  what: string,
  failures: string[],
): Promise<{ perWatcher: Map<string, number | undefined>; summary: Record<'all' | 'first' | 'nodes' | 'routers' | 'restored', number | undefined> }> {
  const goneEverywhere = (w: Watcher): boolean => hasNoRoutes(w.pid, cidrs);
  const routedEverywhere = (w: Watcher): boolean => hasRoutes(w.pid, cidrs);
  // A node's network manager keeps its addresses over a carrier loss; the kernel's default drops IPv6 ones.
  for (const dev of interfaces) await ip(['netns', 'exec', netns, 'sysctl', '-qw', `net.ipv6.conf.${dev}.keep_addr_on_down=1`]);
  try {
    let t0 = process.hrtime.bigint();
    // One batch: every uplink loses carrier at the same moment.
    await ipBatch(netns, interfaces.map((dev) => `link set ${dev} down`));
    const gone = await waitAll(t0, watchers, goneEverywhere, LINK_DOWN_WAIT_MS);
    const values = [...gone.values()].filter((v): v is number => v !== undefined);
    const of = (kind: Watcher['kind']): number => maxOf(new Map([...gone].filter(([k]) => watchers.find((w) => w.name === k)?.kind === kind)));
    const stale = [...gone].filter(([, v]) => v === undefined).map(([k]) => k);
    if (stale.length > 0) failures.push(`${what} link down: still routed ${LINK_DOWN_WAIT_MS / 1000} s after the carrier loss on ${stale.join(', ')}`);
    t0 = process.hrtime.bigint();
    await ipBatch(netns, interfaces.map((dev) => `link set ${dev} up`));
    const back = await waitAll(t0, watchers, routedEverywhere, 60_000);
    const missing = [...back].filter(([, v]) => v === undefined).map(([k]) => k);
    if (missing.length > 0) failures.push(`${what} link up: not routed again after 60 s on ${missing.join(', ')}`);
    return {
      perWatcher: gone,
      summary: { all: maxOf(gone), first: values.length > 0 ? Math.min(...values) : undefined, nodes: of('node'), routers: of('router'), restored: maxOf(back) },
    };
  } catch (err) {
    await ipBatch(netns, interfaces.map((dev) => `link set ${dev} up`)).catch(() => undefined);
    throw err;
  }
}

/** The dual-homed lab, up for this figure only: both uplinks of its last node lose carrier, `reps` times. */
async function runDualHomedLinkDown(lab: string, topologyFile: string, o: ConvergenceOptions): Promise<NonNullable<ConvergenceResult['dualHomed']>> {
  if (listLabs().includes(lab)) await labDown(lab);
  const started = Date.now();
  try {
    await labUp({ topologyFile, name: lab, timeoutMs: 240_000 });
    const status = await labStatus(lab);
    const state = readLabState(lab);
    const pidOf = (name: string): number => {
      const p = state?.processes.find((x) => x.name === name);
      if (p === undefined) throw new BenchError('BENCH_SETUP_FAILED', `lab ${lab}: no process ${name}`);
      return p.pid;
    };
    const target = status.nodes[status.nodes.length - 1]!;
    const watchers: Watcher[] = [
      ...status.nodes.filter((n) => n.name !== target.name).map((n) => ({ name: n.name, kind: 'node' as const, pid: pidOf(`kubelet/${n.name}`) })),
      // A process in the router's netns: zebra for FRR, bird for BIRD (tor2 of this lab runs BIRD).
      ...status.routers.map((r) => ({ name: r.name, kind: 'router' as const, pid: pidOf(routerProcessNames({ name: r.name, stack: r.stack === 'bird' ? 'bird' : 'frr' }).at(-1) ?? '') })),
    ];
    const everyone = [...watchers];
    const all = status.nodes.flatMap((n) => n.podCIDRs);
    const routedAll = await waitAll(process.hrtime.bigint(), everyone, (w) => hasRoutes(w.pid, all.filter((c) => !(status.nodes.find((n) => n.name === w.name)?.podCIDRs ?? []).includes(c))), 180_000);
    if ([...routedAll.values()].some((v) => v === undefined)) throw new BenchError('BENCH_TIMEOUT', `lab ${lab}: not every FIB routes every podCIDR after 180 s`);
    o.log(`lab ${lab} (dual-homed) up and routed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const interfaces = layoutUplinks(state?.topologyText ?? '', target.name);
    const failures: string[] = [];
    const series = new Map<string, number[]>();
    const record = (key: string, value: number | undefined): void => {
      if (value !== undefined && Number.isFinite(value)) series.set(key, [...(series.get(key) ?? []), value]);
    };
    for (let rep = 0; rep < o.reps; rep++) {
      try {
        await waitAll(process.hrtime.bigint(), watchers, (w) => hasRoutes(w.pid, target.podCIDRs), 60_000);
        const figures = await linkDownUp(labPaths(lab).netns(target.name), interfaces, watchers, target.podCIDRs, `dual-homed rep ${rep + 1}`, failures);
        for (const [name, v] of figures.perWatcher) record(`link:${name}`, v);
        for (const [k, v] of Object.entries(figures.summary)) record(`link:${k}`, v);
      } catch (err) {
        failures.push(`dual-homed rep ${rep + 1} link down: ${err instanceof Error ? err.message : String(err)}`);
      }
      o.log(`convergence (dual-homed): repetition ${rep + 1}/${o.reps} done`);
    }
    const s = (key: string): Summary => summarize(series.get(key) ?? []);
    return {
      topology: path.relative(findProjectRoot(), topologyFile),
      node: target.name,
      podCIDRs: target.podCIDRs,
      watchers: watchers.map((w) => `${w.kind} ${w.name}`),
      linkDown: linkFigures(s, 'link'),
      perWatcher: Object.fromEntries(watchers.map((w) => [w.name, { linkDown: s(`link:${w.name}`) }])),
      failures,
    };
  } finally {
    await labDown(lab);
    o.log(`lab ${lab} down`);
  }
}

/** The node's uplink interfaces (eth0, eth1, ...), from the lab's recorded topology. */
function layoutUplinks(topologyText: string, node: string): string[] {
  const placed = planLayout(parseTopology(topologyText)).nodes.find((n) => n.name === node);
  if (placed === undefined) throw new BenchError('BENCH_SETUP_FAILED', `node ${node} not in the dual-homed topology`);
  return placed.uplinks.map((u) => u.interface);
}

/** PIDs of the processes in a namespace whose command line has `marker` as one argument. */
async function pidsInNetns(netns: string, marker: string): Promise<number[]> {
  const out = await ip(['netns', 'pids', netns]);
  return out
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(marker);
      } catch {
        return false;
      }
    });
}

/**
 * Joins to a ToR that dials, per repetition: the ToR's redial phase makes most of a join's spread, so it is sampled
 * more often than the rest (each join costs a few seconds).
 */
export const JOINS_PER_REP = 2;

/** How long after setting the ToR's neighbors join `i` of `n` starts: the n joins evenly spread over one redial period. */
export function redialPhaseMs(i: number, n: number): number {
  return ((i + 0.5) / n) * NODE_CONNECT_RETRY_SECONDS * 1000;
}

async function listPeerStates(client: RawGobgp): Promise<{ address: string; state: string; advertised: number }[]> {
  return await client.listPeers();
}

// ---- the report's section (bench/report.ts puts it in docs/benchmarks.md) ---------------------------------------

export interface ConvergenceTarget {
  what: string;
  measured: string;
  met: boolean | undefined;
  miss?: string;
}

function mdTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The end-to-end target of a new node (issue 19 part 4): agent started until it is routed, per topology mode. */
export const NODE_JOIN_TOTAL_TARGET_MS = 2000;

export interface JoinTotalByMode {
  mode: string;
  total: Summary;
  /** What the time goes to, from the sub-figures of the same runs. */
  limit: string;
}

/**
 * Pure: the total of a join (gobgpd + agent started until every watcher of the mode routes to the node's pods) for
 * each topology mode the two-racks lab holds, with what limits each.
 */
export function joinTotalsByMode(c: Pick<ConvergenceResult, 'join' | 'joinPassive'>): JoinTotalByMode[] {
  const f = (x: Summary | undefined): string => formatSummary(x);
  const rows: JoinTotalByMode[] = [
    {
      mode: 'eBGP to a ToR that dials its nodes (FRR `timers connect 1`): routers and nodes behind the ToR',
      total: c.join.torTotal,
      limit: `agent start-up ${f(c.join.agentStartup)} + BGP connect ${f(c.join.torConnect)} (the ToR redials every 1 s; gobgpd's own dial would come later) + propagation ${f(c.join.torPropagation)}`,
    },
    {
      mode: 'eBGP to a ToR that only listens (`bgp listen range`)',
      total: c.joinPassive.torTotal,
      limit: `BGP connect ${f(c.joinPassive.torConnect)}: gobgpd 3.10 dials first after a random 5-9 s (pkg/server/fsm.go connectLoop), a listen range never dials`,
    },
  ];
  const mesh = c.join.meshTotal;
  if (mesh !== undefined && mesh.n > 0) {
    rows.push({
      mode: 'iBGP between gobgpd (same-AS mesh; a client and its gobgpd reflector are the same kind of pair)',
      total: mesh,
      limit:
        `BGP connect ${f(c.join.meshConnect)}: neither gobgpd dials before its random 5-9 s (the joining node's first dial; the others redial ` +
        'every 5-9 s), although each accepts a session at once: gobgpd 3.10 has no shorter connect timer (minConnectRetryInterval 5 s)',
    });
  }
  rows.push({
    mode: 'the two-racks lab as a whole (ToR dials + same-AS mesh): every watcher',
    total: c.join.total,
    limit: 'the slower of the two above: the mesh',
  });
  return rows;
}

/** Section 2 of docs/benchmarks.md: the figures with how each was measured, and the two targets of issue 7. */
export function renderConvergence(c: ConvergenceResult): { lines: string[]; targets: ConvergenceTarget[] } {
  const f = (x: Summary | undefined): string => formatSummary(x);
  const out: string[] = [];
  out.push(
    `Node ${c.node} (podCIDRs ${c.podCIDRs.join(', ')}) of the two-racks lab joins, restarts and loses its link; the FIBs of ${c.watchers.join(', ')} ` +
      'are watched (`/proc/PID/net/route` and `ipv6_route` of a process in each namespace, every 5 ms). All times from the event. ' +
      "Watchers \"through the ToR\" are the routers and the other rack's nodes; a same-AS node rejects the routes through the ToR (its own AS " +
      'in the path) and learns them over the gobgpd iBGP mesh only.',
    '',
    `- join, the ToR dials: ${c.mechanisms.join}`,
    `- join, the ToR only listens: ${c.mechanisms.joinPassive}`,
    `- uplink down: ${c.mechanisms.linkDown}`,
    `- uplinks down: ${c.mechanisms.dualHomedLinkDown}`,
    '',
  );
  const join = (j: JoinFigures): string[][] => [
    ['', '**every watcher routes to its pods (total)**', f(j.total)],
    ['', 'every watcher through the ToR routes (routers, other rack)', f(j.torTotal)],
    ['', 'agent start-up until gobgpd is configured', f(j.agentStartup)],
    ['', 'BGP connect to the ToR: configured → ToR sessions Established (back-off)', f(j.torConnect)],
    ['', '**propagation through the ToR: ToR sessions Established → every watcher through the ToR routes**', f(j.torPropagation)],
    ['', 'BGP connect of the mesh: configured → mesh sessions Established (gobgpd back-off)', f(j.meshConnect)],
    ['', 'propagation over the mesh: mesh sessions Established → same-AS nodes route', f(j.meshPropagation)],
    ['', 'first session Established → every watcher routes', f(j.propagation)],
  ];
  out.push(
    'A new node end to end (issue 19): gobgpd and the agent started until every watcher of a topology mode routes to its pods, ' +
      `target ≤ ${formatMs(NODE_JOIN_TOTAL_TARGET_MS)}.`,
    '',
    mdTable(
      ['topology mode', 'total: agent started → routed', 'what limits it'],
      joinTotalsByMode(c).map((r) => [r.mode, r.total.n === 0 ? 'n/a' : `${f(r.total)}${r.total.median <= NODE_JOIN_TOTAL_TARGET_MS ? '' : ' (over target)'}`, r.limit]),
    ),
    '',
  );
  const dual = c.dualHomed;
  out.push(
    mdTable(
      ['event', 'figure', 'median (min–max)'],
      [
        ['leave (agent + gobgpd stopped with SIGTERM)', 'every watcher withdrew', f(c.join.leave)],
        ['(re)join, the ToR dials the node', '', ''],
        ...join(c.join),
        ['(re)join, the ToR only listens', '', ''],
        ...join(c.joinPassive),
        ['gobgpd killed (SIGKILL) and started again', '**all sessions Established and advertising again**', f(c.gobgpdRestart.readvertised)],
        ['', 'agent re-configured the new gobgpd', f(c.gobgpdRestart.agentReconfigured)],
        ['', 'BGP connect after re-configuration', f(c.gobgpdRestart.bgpConnect)],
        ['', 'time any watcher lacked the routes (graceful restart)', f(c.gobgpdRestart.fibOutageMs)],
        ['two-racks: uplink down (carrier loss on a rack-bridge port)', 'first watcher withdrew', f(c.linkDown.firstWithdrawn)],
        ['', 'routers withdrew', f(c.linkDown.routersWithdrawn)],
        ['', 'other nodes withdrew', f(c.linkDown.nodesWithdrawn)],
        ['', '**every watcher withdrew**', f(c.linkDown.allWithdrawn)],
        ['', 'uplink up: every watcher routes again', f(c.linkDown.restored)],
        ...(dual === undefined
          ? []
          : [
              [`dual-homed: both uplinks of ${dual.node} down (routed ToR ports lose carrier)`, 'first watcher withdrew', f(dual.linkDown.firstWithdrawn)],
              ['', 'routers withdrew', f(dual.linkDown.routersWithdrawn)],
              ['', 'other nodes withdrew', f(dual.linkDown.nodesWithdrawn)],
              ['', '**every watcher withdrew**', f(dual.linkDown.allWithdrawn)],
              ['', 'uplinks up: every watcher routes again', f(dual.linkDown.restored)],
            ]),
      ],
    ),
    '',
  );
  out.push(mdTable(['two-racks watcher', 'join (ToR dials): routes after', 'link down: withdrawn after'], Object.entries(c.perWatcher).map(([w, v]) => [w, f(v.join), f(v.linkDown)])), '');
  if (dual !== undefined) {
    out.push(mdTable([`dual-homed watcher (${dual.topology})`, 'uplinks down: withdrawn after'], Object.entries(dual.perWatcher).map(([w, v]) => [w, f(v.linkDown)])), '');
  }
  const failures = [...c.failures, ...(dual?.failures ?? [])];
  if (failures.length > 0) out.push('Not reached within the wait:', '', ...failures.map((x) => `- ${x.split('\n')[0]}`), '');

  const targets: ConvergenceTarget[] = [];
  const tor = c.join.torPropagation;
  targets.push({
    what: 'node join under 1 s, excluding BGP connect back-off (the ToR dials the node; ToR session Established → every watcher through the ToR routes)',
    measured: `${f(tor)}; BGP connect to the ToR ${f(c.join.torConnect)} (ToR only listening: ${f(c.joinPassive.torConnect)})`,
    met: tor.n === 0 ? undefined : tor.median < 1000,
    miss: 'Propagation through the ToR took longer than 1 s: the per-watcher table shows the slow hop.',
  });
  const torTotal = c.join.torTotal;
  targets.push({
    what: `a new node routed everywhere within ${formatMs(NODE_JOIN_TOTAL_TARGET_MS)} of its agent starting, in the recommended topology (eBGP to a ToR that dials its nodes)`,
    measured: `${f(torTotal)}; ToR only listening ${f(c.joinPassive.torTotal)}; over a gobgpd iBGP mesh ${f(c.join.meshTotal)}`,
    met: torTotal.n === 0 ? undefined : torTotal.median <= NODE_JOIN_TOTAL_TARGET_MS,
    miss: 'The table "A new node end to end" names the part that took the time (agent start-up, BGP connect, propagation).',
  });
  const dualDown = dual?.linkDown.allWithdrawn;
  targets.push({
    what: 'withdraw under 1 s on carrier loss (every node and router; dual-homed lab, routed ToR ports)',
    measured:
      dualDown === undefined || dualDown.n === 0
        ? `not measured in the dual-homed lab; two-racks (bridged rack LAN, hold timer): routers ${f(c.linkDown.routersWithdrawn)}`
        : `${f(dualDown)} (two-racks, bridged rack LAN, hold timer: routers ${f(c.linkDown.routersWithdrawn)}, every watcher ${f(c.linkDown.allWithdrawn)})`,
    met: dualDown === undefined || dualDown.n === 0 ? undefined : dualDown.median < 1000,
    miss:
      'On routed ToR ports FRR drops the session as soon as the port loses carrier: a miss there is the propagation after it (per-watcher ' +
      'table). On a bridged rack LAN only a hold timer or BFD can tell, and gobgpd 3.10 has no BFD.',
  });
  return { lines: out, targets };
}
