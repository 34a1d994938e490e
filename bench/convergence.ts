// Benchmark 2, convergence in the two-racks lab, watched from every other node's and every router's FIB
// (through /proc/PID/net of a process in each namespace, polled every few milliseconds):
//   - node (re)join: gobgpd + `podroute agent` start on a node (whose Node object exists) until every other
//     node and router routes to its podCIDRs; split into agent start-up, BGP connect (the back-off, reported
//     separately) and propagation after the first session is Established;
//   - gobgpd restart (killed, started again while the agent keeps running) until the agent has re-configured it
//     and every session is Established and advertising again; and how long any FIB lost the node's routes;
//   - node link down (carrier loss on the node's uplink) until every other node and router has withdrawn them,
//     and link up until they are back.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { LabStatusReport } from '../src/lab/lab.js';
import { CLI_MAIN, gobgpdArgs, processAlive } from '../src/lab/lab.js';
import { labPaths } from '../src/lab/paths.js';
import { readLabState } from '../src/lab/state.js';
import { hasNoRoutes, hasRoutes } from './lib/fib-presence.js';
import { RawGobgp } from './lib/gobgp-raw.js';
import { BenchError, ip, sleep } from './lib/proc.js';
import { summarize, type Summary } from './lib/stats.js';

export interface ConvergenceOptions {
  lab: string;
  reps: number;
  workDir: string;
  log: (m: string) => void;
}

export interface ConvergenceResult {
  node: string;
  podCIDRs: string[];
  watchers: string[];
  join: { total: Summary; agentStartup: Summary; bgpConnect: Summary; propagation: Summary; leave: Summary };
  gobgpdRestart: { readvertised: Summary; agentReconfigured: Summary; bgpConnect: Summary; fibOutageMs: Summary };
  linkDown: { allWithdrawn: Summary; firstWithdrawn: Summary; nodesWithdrawn: Summary; routersWithdrawn: Summary; restored: Summary };
  /** Per watching node/router: join (until it routes) and link down (until it withdrew). */
  perWatcher: Record<string, { join: Summary; linkDown: Summary }>;
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

export async function runConvergence(status: LabStatusReport, o: ConvergenceOptions): Promise<ConvergenceResult> {
  const paths = labPaths(o.lab);
  const state = readLabState(o.lab);
  if (state === undefined) throw new BenchError('BENCH_SETUP_FAILED', `lab ${o.lab} has no state`);
  const target = status.nodes[status.nodes.length - 1]!;
  const pidOf = (name: string): number => {
    const p = state.processes.find((x) => x.name === name);
    if (p === undefined) throw new BenchError('BENCH_SETUP_FAILED', `lab ${o.lab}: no process ${name}`);
    return p.pid;
  };
  const watchers: Watcher[] = [
    ...status.nodes.filter((n) => n.name !== target.name).map((n) => ({ name: n.name, kind: 'node' as const, pid: pidOf(`kubelet/${n.name}`) })),
    ...status.routers.map((r) => ({ name: r.name, kind: 'router' as const, pid: pidOf(`zebra/${r.name}`) })),
  ];
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
  const record = (key: string, value: number): void => void series.set(key, [...(series.get(key) ?? []), value]);

  const stopAll = async (marker: string, signal: NodeJS.Signals): Promise<void> => {
    for (const pid of await pidsInNetns(netns, marker)) await killAndWait(pid, signal);
  };
  const startGobgpd = async (): Promise<void> => {
    await rm(socket, { force: true });
    spawnInNetns(netns, 'gobgpd', gobgpdArgs(socket), gobgpdLog);
  };
  const routedEverywhere = (w: Watcher): boolean => hasRoutes(w.pid, cidrs);
  const goneEverywhere = (w: Watcher): boolean => hasNoRoutes(w.pid, cidrs);

  /** Polls the node's gobgpd: when peers are configured, the first one Established, all Established and advertising. */
  const followSessions = async (t0: bigint, timeoutMs: number): Promise<{ configured?: number; firstUp?: number; allAdvertising?: number }> => {
    const client = new RawGobgp(`unix://${socket}`);
    const out: { configured?: number; firstUp?: number; allAdvertising?: number } = {};
    const deadline = Date.now() + timeoutMs;
    try {
      while (Date.now() < deadline && out.allAdvertising === undefined) {
        const peers = await listPeerStates(client).catch(() => []);
        const now = Number(process.hrtime.bigint() - t0) / 1e6;
        if (peers.length > 0 && out.configured === undefined) out.configured = now;
        if (peers.some((p) => p.state === 'ESTABLISHED') && out.firstUp === undefined) out.firstUp = now;
        if (peers.length > 0 && peers.every((p) => p.state === 'ESTABLISHED' && p.advertised > 0)) out.allAdvertising = now;
        await sleep(20);
      }
    } finally {
      client.close();
    }
    return out;
  };

  for (let rep = 0; rep < o.reps; rep++) {
    // ---- leave and (re)join ----
    try {
      let t0 = process.hrtime.bigint();
      await stopAll(agentConfig, 'SIGTERM');
      await stopAll(gobgpdMarker, 'SIGTERM');
      const left = await waitAll(t0, watchers, goneEverywhere, LEAVE_WAIT_MS);
      record('leave', maxOf(left));
      // A watcher that kept the stopped node's routes cannot show the join: it is left out (and named).
      const kept = watchers.filter((w) => left.get(w.name) === undefined);
      if (kept.length > 0) failures.push(`rep ${rep + 1} leave: ${kept.map((w) => w.name).join(', ')} still routed to the stopped node after ${LEAVE_WAIT_MS / 1000} s (left out of the join figure)`);
      const joining = watchers.filter((w) => !kept.includes(w));
      t0 = process.hrtime.bigint();
      await startGobgpd();
      spawnInNetns(netns, process.execPath, [CLI_MAIN, 'agent', '--config', agentConfig], agentLog);
      const [sessions, routed] = await Promise.all([followSessions(t0, 90_000), waitAll(t0, joining, routedEverywhere, 90_000)]);
      for (const [name, v] of routed) if (v !== undefined) record(`join:${name}`, v);
      const total = maxOf(routed);
      if (!Number.isFinite(total)) throw new BenchError('BENCH_TIMEOUT', `join: not routed everywhere after 90 s (${[...routed].filter(([, v]) => v === undefined).map(([k]) => k).join(', ')})`);
      record('joinTotal', total);
      if (sessions.configured !== undefined) record('joinStartup', sessions.configured);
      if (sessions.configured !== undefined && sessions.firstUp !== undefined) record('joinConnect', sessions.firstUp - sessions.configured);
      if (sessions.firstUp !== undefined) record('joinPropagation', total - sessions.firstUp);
    } catch (err) {
      failures.push(`rep ${rep + 1} join: ${err instanceof Error ? err.message : String(err)}`);
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
      if (sessions.configured !== undefined) record('restartReconfigured', sessions.configured);
      if (sessions.configured !== undefined && sessions.firstUp !== undefined) record('restartConnect', sessions.firstUp - sessions.configured);
      record('restartOutage', outage);
    } catch (err) {
      failures.push(`rep ${rep + 1} gobgpd restart: ${err instanceof Error ? err.message : String(err)}`);
    }

    // ---- link down / up ----
    try {
      await waitAll(process.hrtime.bigint(), watchers, routedEverywhere, 60_000);
      // A node's network manager keeps its addresses over a carrier loss; the kernel's default drops IPv6 ones.
      await ip(['netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv6.conf.eth0.keep_addr_on_down=1']);
      let t0 = process.hrtime.bigint();
      await ip(['-n', netns, 'link', 'set', 'eth0', 'down']);
      const gone = await waitAll(t0, watchers, goneEverywhere, LINK_DOWN_WAIT_MS);
      for (const [name, v] of gone) if (v !== undefined) record(`link:${name}`, v);
      const values = [...gone.values()].filter((v): v is number => v !== undefined);
      record('linkAll', maxOf(gone));
      if (values.length > 0) record('linkFirst', Math.min(...values));
      const of = (kind: Watcher['kind']): number => maxOf(new Map([...gone].filter(([k]) => watchers.find((w) => w.name === k)?.kind === kind)));
      record('linkNodes', of('node'));
      record('linkRouters', of('router'));
      const stale = [...gone].filter(([, v]) => v === undefined).map(([k]) => k);
      if (stale.length > 0) failures.push(`rep ${rep + 1} link down: still routed ${LINK_DOWN_WAIT_MS / 1000} s after the carrier loss on ${stale.join(', ')}`);
      t0 = process.hrtime.bigint();
      await ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
      const back = await waitAll(t0, watchers, routedEverywhere, 60_000);
      record('linkRestored', maxOf(back));
      const missing = [...back].filter(([, v]) => v === undefined).map(([k]) => k);
      if (missing.length > 0) failures.push(`rep ${rep + 1} link up: not routed again after 60 s on ${missing.join(', ')}`);
    } catch (err) {
      failures.push(`rep ${rep + 1} link down: ${err instanceof Error ? err.message : String(err)}`);
      await ip(['-n', netns, 'link', 'set', 'eth0', 'up']).catch(() => undefined);
    }
    o.log(`convergence: repetition ${rep + 1}/${o.reps} done`);
  }
  const s = (key: string): Summary => summarize(series.get(key) ?? []);
  return {
    node: target.name,
    podCIDRs: cidrs,
    watchers: watchers.map((w) => `${w.kind} ${w.name}`),
    join: { total: s('joinTotal'), agentStartup: s('joinStartup'), bgpConnect: s('joinConnect'), propagation: s('joinPropagation'), leave: s('leave') },
    gobgpdRestart: { readvertised: s('restartReadvertised'), agentReconfigured: s('restartReconfigured'), bgpConnect: s('restartConnect'), fibOutageMs: s('restartOutage') },
    linkDown: { allWithdrawn: s('linkAll'), firstWithdrawn: s('linkFirst'), nodesWithdrawn: s('linkNodes'), routersWithdrawn: s('linkRouters'), restored: s('linkRestored') },
    perWatcher: Object.fromEntries(watchers.map((w) => [w.name, { join: s(`join:${w.name}`), linkDown: s(`link:${w.name}`) }])),
    failures,
  };
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

async function listPeerStates(client: RawGobgp): Promise<{ state: string; advertised: number }[]> {
  return await client.listPeers();
}
