// Issue 17, part 6: no BFD flap under a loaded 2-core machine over a 10-minute run. topologies/dual-homed.yaml
// (four nodes, each with BFD to tor1's FRR bfdd and tor2's BIRD, 200 ms x 3 as the topology has it) comes up;
// once every BFD and BGP session is Up, one busy-loop process per core runs for the whole window (and, optionally,
// a pod comes or goes every few seconds: kubelet, CNI and agent work on the nodes). State changes are counted from
// snapshots taken before and after the window, at every place that keeps them:
//   - each node: its companion's log ('BFD session state changed' lines) and the agent's
//     podroute_bfd_state_changes_total (what the companion reported to it);
//   - tor1 (FRR): `show bfd peers counters json` (session-up + session-down per peer);
//   - tor2 (BIRD): `show bfd sessions` (a session's Since changes whenever its state does);
//   - BGP: FRR's connectionsEstablished + connectionsDropped per neighbor (`show bgp neighbors json`, at every FRR
//     router), BIRD's Since per BGP protocol (`show protocols`).
// The target is 0 of each, every session Up at the end. The load average is sampled through the run, and the
// CPU used by the companions (and the ToRs' BFD daemons, and the busy loops) over it is reported.
// The 200 ms x 3 of dual-homed.yaml rather than the agent's default 300 ms x 3: the tighter timers leave less slack
// to a starved process (600 ms of silence is a Down), so a pass there covers the default.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import YAML from 'yaml';
import { findProjectRoot } from '../src/bgp/gobgp-proto.js';
import { apiRequest } from '../src/lab/api.js';
import { birdc, birdFiles, NODE_RANGE_PROTOCOL } from '../src/lab/bird.js';
import { labDown, listLabs } from '../src/lab/down.js';
import { frrFiles, vtysh } from '../src/lab/frr.js';
import { labPaths } from '../src/lab/paths.js';
import { readLabState } from '../src/lab/state.js';
import { labStatus, type LabStatusReport } from '../src/lab/status.js';
import { labUp } from '../src/lab/up.js';
import { BenchError, cpuMs, pollUntil, sleep } from './lib/proc.js';
import { markdownTable } from './lib/stats.js';

export const DUAL_HOMED = path.join(findProjectRoot(), 'topologies', 'dual-homed.yaml');

/** The agent's metrics server in each lab node's namespace (src/lab/daemons.ts). */
const AGENT_METRICS_URL = 'http://127.0.0.1:9476/metrics';
const STATE_CHANGED = 'BFD session state changed';

export interface BfdSoakOptions {
  lab: string;
  topologyFile: string;
  durationS: number;
  /** How often the load average is sampled. */
  sampleS: number;
  /** Busy-loop processes for the whole window (one per core loads the machine fully). */
  busyWorkers: number;
  /** A pod created (and the previous one deleted) on the next node every this many ms; undefined: no churn. */
  churnIntervalMs: number | undefined;
  /** After every session is Up, before the first snapshot. */
  settleMs: number;
  workDir: string;
  log: (m: string) => void;
}

export const SOURCES = ['companion-log', 'agent-metric', 'frr-bfd', 'bird-bfd', 'frr-bgp', 'bird-bgp'] as const;
export type Source = (typeof SOURCES)[number];
export const BFD_SOURCES: readonly Source[] = ['companion-log', 'agent-metric', 'frr-bfd', 'bird-bfd'];
export const BGP_SOURCES: readonly Source[] = ['frr-bgp', 'bird-bgp'];

/** One session as one source sees it at one moment. */
export interface Observed {
  /** Up (BFD) or Established (BGP) now; undefined where the source has no state (a log). */
  up?: boolean;
  /** A count that grows with every state change (or every Up and every Down). */
  count?: number;
  /** When it last changed state, as the source prints it (BIRD). */
  since?: string;
}

/** Per source: `where peer` → what it shows. */
export type Snapshot = Record<Source, Record<string, Observed>>;

export interface SourceChanges {
  sessions: number;
  /** State changes between the snapshots (a Since moved beyond SINCE_ROUNDING_MS counts one: BIRD keeps no count). */
  changes: number;
  /** The sessions that changed, with how. */
  changed: string[];
  /** Sessions not Up in the second snapshot. */
  downAtEnd: string[];
}

export interface ProcessCpu {
  name: string;
  /** Share of one core over the window. */
  cpuPercent: number;
}

export interface BfdSoakResult {
  topology: string;
  timers: { minTxMs: number; minRxMs: number; multiplier: number };
  durationS: number;
  busyWorkers: number;
  churnIntervalMs: number | undefined;
  /** Pods created and deleted meanwhile, and churn requests that failed. */
  churnOps: number;
  churnErrors: number;
  cores: number;
  /** 1-minute load average through the window (one sample every sampleS), and the 1/5/15 at its end. */
  load1: { mean: number; max: number; min: number; samples: number };
  loadAtEnd: number[];
  /** All cores' busy share over the window (/proc/stat). */
  machineBusyPercent: number;
  processes: ProcessCpu[];
  bySource: Record<Source, SourceChanges>;
  /** The companions' 'BFD session state changed' lines of the window (at most 20). */
  events: string[];
}

// ---- pure parts: reading each source --------------------------------------------------------------------------

/** Per peer: the companion's state changes and current state, from the agent's /metrics (Prometheus text). */
export function parseBfdMetrics(text: string): Record<string, Observed> {
  const out: Record<string, Observed> = {};
  for (const line of text.split('\n')) {
    const m = /^(podroute_bfd_state_changes_total|podroute_bfd_session_state)\{([^}]*)\}\s+(\S+)/.exec(line);
    if (m === null) continue;
    const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    const peer = labels.peer;
    if (peer === undefined) continue;
    const entry = (out[peer] ??= {});
    const value = Number(m[3]);
    if (m[1] === 'podroute_bfd_state_changes_total') entry.count = value;
    else if (labels.state === 'Up') entry.up = value === 1;
  }
  return out;
}

/** Per peer: the companion's 'BFD session state changed' lines in its JSON log. */
export function countLoggedChanges(log: string): Record<string, Observed> {
  const out: Record<string, Observed> = {};
  for (const { peer } of loggedChanges(log)) out[peer] = { count: (out[peer]?.count ?? 0) + 1 };
  return out;
}

export function loggedChanges(log: string): { peer: string; from: string; to: string; timestamp: string; diag: string }[] {
  const out: { peer: string; from: string; to: string; timestamp: string; diag: string }[] = [];
  for (const line of log.split('\n')) {
    if (!line.includes(STATE_CHANGED)) continue;
    try {
      const e = JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
      const text = (v: unknown, fallback: string): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : fallback);
      out.push({ peer: text(e.peer, '?'), from: text(e.from, '?'), to: text(e.to, '?'), timestamp: text(e.timestamp ?? e.time, '?'), diag: text(e.diag, '') });
    } catch {
      out.push({ peer: '?', from: '?', to: '?', timestamp: '?', diag: line.slice(0, 200) });
    }
  }
  return out;
}

/** FRR bfdd: per peer, session-up + session-down (`show bfd peers counters json`) and the status (`show bfd peers json`). */
export function parseFrrBfd(countersJson: string, peersJson: string): Record<string, Observed> {
  const out: Record<string, Observed> = {};
  const key = (p: { peer?: string; interface?: string }): string => `${p.peer ?? '?'}${p.interface === undefined || p.interface === '' ? '' : `%${p.interface}`}`;
  for (const p of JSON.parse(countersJson) as { peer?: string; interface?: string; 'session-up'?: number; 'session-down'?: number }[]) {
    (out[key(p)] ??= {}).count = (p['session-up'] ?? 0) + (p['session-down'] ?? 0);
  }
  for (const p of JSON.parse(peersJson) as { peer?: string; interface?: string; status?: string }[]) (out[key(p)] ??= {}).up = p.status === 'up';
  return out;
}

/** BIRD: per session, its state and Since (`show bfd sessions`: IP address, Interface, State, Since, Interval, Timeout). */
export function parseBirdBfd(text: string): Record<string, Observed> {
  const out: Record<string, Observed> = {};
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 6 || !/^[0-9a-f.:]+$/i.test(cols[0]!) || !/^(Up|Down|Init|AdminDown)$/.test(cols[2]!)) continue;
    out[`${cols[0]}%${cols[1]}`] = { up: cols[2] === 'Up', since: cols.slice(3, -2).join(' ') };
  }
  return out;
}

/** FRR bgpd: per neighbor, connections established + dropped and whether it is Established (`show bgp neighbors json`). */
export function parseFrrBgpNeighbors(json: string): Record<string, Observed> {
  const out: Record<string, Observed> = {};
  for (const [neighbor, n] of Object.entries(JSON.parse(json) as Record<string, { bgpState?: string; connectionsEstablished?: number; connectionsDropped?: number }>)) {
    if (typeof n !== 'object' || n === null || n.bgpState === undefined) continue;
    out[neighbor] = { up: n.bgpState === 'Established', count: (n.connectionsEstablished ?? 0) + (n.connectionsDropped ?? 0) };
  }
  return out;
}

/** BIRD: per BGP protocol, Since and whether it is up and Established (`show protocols`). */
export function parseBirdBgpProtocols(text: string): Record<string, Observed> {
  const out: Record<string, Observed> = {};
  const timeLike = /^(\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}(\.\d+)?)$/;
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    // A neighbor range's protocol only listens (BIRD shows it Passive for ever); the sessions it spawns are listed.
    if (cols.length < 5 || cols[1] !== 'BGP' || cols[0]!.startsWith(NODE_RANGE_PROTOCOL)) continue;
    const sinceCols = cols.slice(4).filter((c, i, all) => all.slice(0, i + 1).every((x) => timeLike.test(x)));
    const info = cols.slice(4 + sinceCols.length).join(' ');
    out[cols[0]!] = { up: cols[3] === 'up' && info.startsWith('Established'), since: sinceCols.join(' ') };
  }
  return out;
}

// ---- pure parts: counting and rendering -----------------------------------------------------------------------

/**
 * BIRD prints Since as now minus the session's age, so the same session's Since drifts by a millisecond from one
 * read to the next (three such 1 ms moves were counted as state changes by the soak of eebead2). A real state
 * change moves it to the moment of the change: seconds at least after the session came up before the window.
 */
export const SINCE_ROUNDING_MS = 10;

/** A Since as BIRD prints it ("07:06:00.000", or with its date before it) in milliseconds; undefined if not one. */
export function sinceMs(text: string): number | undefined {
  const m = /^(?:(\d{4})-(\d{2})-(\d{2})\s+)?(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?$/.exec(text.trim());
  if (m === null) return undefined;
  const day = m[1] === undefined ? 0 : Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return day + ((Number(m[4]) * 60 + Number(m[5])) * 60 + Number(m[6])) * 1000 + Number((m[7] ?? '0').padEnd(3, '0'));
}

/** Whether a session's Since moved by more than BIRD's rounding (any change when it cannot be read as a time). */
export function sinceMoved(was: string, is: string): boolean {
  if (was === is) return false;
  const a = sinceMs(was);
  const b = sinceMs(is);
  // Both with a date or both without: a time of day and a full date cannot be compared.
  if (a === undefined || b === undefined || /^\d{4}-/.test(was.trim()) !== /^\d{4}-/.test(is.trim())) return true;
  return Math.abs(b - a) > SINCE_ROUNDING_MS;
}

/** What changed per source between two snapshots; a session that appeared or went away counts as a change. */
export function countChanges(before: Snapshot, after: Snapshot): Record<Source, SourceChanges> {
  const out = {} as Record<Source, SourceChanges>;
  for (const source of SOURCES) {
    const b = before[source];
    const a = after[source];
    const result: SourceChanges = { sessions: Object.keys(a).length, changes: 0, changed: [], downAtEnd: [] };
    for (const key of [...new Set([...Object.keys(b), ...Object.keys(a)])].sort()) {
      const was = b[key];
      const is = a[key];
      if (is?.up === false) result.downAtEnd.push(key);
      if (was === undefined || is === undefined) {
        result.changes++;
        result.changed.push(`${key}: ${was === undefined ? 'appeared' : 'went away'}`);
        continue;
      }
      const delta = is.count !== undefined && was.count !== undefined ? is.count - was.count : 0;
      const moved = is.since !== undefined && was.since !== undefined && sinceMoved(was.since, is.since);
      if (delta !== 0) {
        result.changes += Math.abs(delta);
        result.changed.push(`${key}: ${delta > 0 ? '+' : ''}${delta}`);
      } else if (moved) {
        result.changes++;
        result.changed.push(`${key}: since ${was.since} → ${is.since}`);
      }
    }
    out[source] = result;
  }
  return out;
}

/** Every session of every source Up (the log has no state), and none of the sources empty. */
export function allUp(s: Snapshot): boolean {
  return SOURCES.every((source) => Object.keys(s[source]).length > 0 && Object.values(s[source]).every((o) => o.up !== false));
}

const SOURCE_LABELS: Record<Source, string> = {
  'companion-log': "nodes: the companions' logs ('BFD session state changed')",
  'agent-metric': "nodes: the agents' `podroute_bfd_state_changes_total`",
  'frr-bfd': 'FRR ToR: bfdd `show bfd peers counters` (session-up + session-down)',
  'bird-bfd': 'BIRD ToR: `show bfd sessions` (Since)',
  'frr-bgp': 'BGP at the FRR routers: connections established + dropped',
  'bird-bgp': 'BGP at the BIRD ToR: `show protocols` (Since)',
};

export interface BfdSoakTarget {
  what: string;
  measured: string;
  met: boolean | undefined;
  miss?: string;
}

const sum = (r: BfdSoakResult, sources: readonly Source[]): number => sources.reduce((t, s) => t + r.bySource[s].changes, 0);
const downAtEnd = (r: BfdSoakResult, sources: readonly Source[]): string[] => sources.flatMap((s) => r.bySource[s].downAtEnd.map((k) => `${s} ${k}`));

export function renderBfdSoak(r: BfdSoakResult): { lines: string[]; targets: BfdSoakTarget[] } {
  const t = r.timers;
  const minutes = (r.durationS / 60).toFixed(r.durationS % 60 === 0 ? 0 : 1);
  const out: string[] = [];
  out.push(
    `\`${r.topology}\` (four dual-homed nodes; BFD between every node and both ToRs, **${t.minTxMs} ms x ${t.multiplier}** as the topology sets it: ` +
      `tighter than the agent's default 300 ms x 3, so less slack for a starved process) comes up; once every BFD and BGP session is Up, ` +
      `${r.busyWorkers} busy-loop process${r.busyWorkers === 1 ? '' : 'es'} (one per core of ${r.cores}) run for **${minutes} min**` +
      (r.churnIntervalMs === undefined ? '' : `, and a pod comes or goes on the next node every ${(r.churnIntervalMs / 1000).toFixed(0)} s (${r.churnOps} changes, ${r.churnErrors} failed)`) +
      `. State changes are counted from snapshots taken before and after the window at every place that keeps them; a Since that moved (BIRD keeps no count) is one change, unless it moved by ${SINCE_ROUNDING_MS} ms or less: BIRD prints it as now minus the session's age, which drifts by a millisecond between reads; a session that appeared or went away is one change.`,
    '',
  );
  out.push(
    markdownTable(
      ['load', 'value'],
      [
        ['1-minute load average through the window (mean / min / max)', `${r.load1.mean.toFixed(1)} / ${r.load1.min.toFixed(1)} / ${r.load1.max.toFixed(1)} (${r.load1.samples} samples)`],
        ['load average at the end (1 / 5 / 15 min)', r.loadAtEnd.map((l) => l.toFixed(1)).join(' / ')],
        [`all ${r.cores} cores busy (/proc/stat, over the window)`, `${r.machineBusyPercent.toFixed(0)} %`],
      ],
    ),
    '',
  );
  out.push(
    markdownTable(
      ['where', 'sessions', 'state changes', 'not Up at the end'],
      SOURCES.map((s) => {
        const c = r.bySource[s];
        return [SOURCE_LABELS[s], String(c.sessions), c.changes === 0 ? '0' : `**${c.changes}** (${c.changed.slice(0, 6).join('; ')}${c.changed.length > 6 ? '; …' : ''})`, c.downAtEnd.length === 0 ? 'none' : c.downAtEnd.join(', ')];
      }),
    ),
    '',
  );
  out.push('CPU over the window (share of one core):', '');
  out.push(markdownTable(['process', 'CPU'], r.processes.map((p) => [p.name, `${p.cpuPercent.toFixed(1)} %`])), '');
  if (r.events.length > 0) out.push("The companions' state changes in the window:", '', ...r.events.map((e) => `- ${e}`), '');

  const bfd = sum(r, BFD_SOURCES);
  const bgp = sum(r, BGP_SOURCES);
  const bfdDown = downAtEnd(r, BFD_SOURCES);
  const bgpDown = downAtEnd(r, BGP_SOURCES);
  const load = `load ${r.load1.mean.toFixed(1)} on ${r.cores} cores`;
  const targets: BfdSoakTarget[] = [
    {
      what: `BFD (${t.minTxMs} ms x ${t.multiplier}, both ToR stacks) on a loaded machine over ${minutes} min: 0 state changes`,
      measured: `${bfd} (${BFD_SOURCES.map((s) => r.bySource[s].changes).join(' / ')} at ${BFD_SOURCES.join(' / ')}; ${load})${bfdDown.length === 0 ? '' : `, not Up at the end: ${bfdDown.join(', ')}`}`,
      met: bfd === 0 && bfdDown.length === 0,
      miss:
        'A session changed state while the machine was loaded: the events above say which peer and when. ' +
        "If the node's companion declared the Down (diag 1, detection time expired), its event loop or the packets starved: " +
        'look at its CPU share and run it at a higher scheduling priority (or with a real-time timer thread); if the ToR did, the node sent too late.',
    },
    {
      what: `BGP sessions over the same ${minutes} min: 0 flaps`,
      measured: `${bgp}${bgpDown.length === 0 ? '' : `, not Established at the end: ${bgpDown.join(', ')}`}`,
      met: bgp === 0 && bgpDown.length === 0,
      miss: 'A BGP session dropped: a BFD Down takes it down (see the BFD row); without one, its hold timer expired under load.',
    },
  ];
  return { lines: out, targets };
}

// ---- the run --------------------------------------------------------------------------------------------------

async function nodeMetrics(netns: string): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', netns, 'curl', '-sS', '--max-time', '10', AGENT_METRICS_URL]);
  return r.stdout;
}

function logOf(lab: string, node: string): string {
  const file = path.join(labPaths(lab).logDir, `bfd_${node}.log`);
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

async function takeSnapshot(lab: string, status: LabStatusReport): Promise<Snapshot> {
  const s: Snapshot = { 'companion-log': {}, 'agent-metric': {}, 'frr-bfd': {}, 'bird-bfd': {}, 'frr-bgp': {}, 'bird-bgp': {} };
  const add = (source: Source, where: string, seen: Record<string, Observed>): void => {
    for (const [peer, o] of Object.entries(seen)) s[source][`${where} ${peer}`] = o;
  };
  const paths = labPaths(lab);
  await Promise.all([
    ...status.nodes.map(async (n) => {
      add('companion-log', n.name, countLoggedChanges(logOf(lab, n.name)));
      add('agent-metric', n.name, parseBfdMetrics(await nodeMetrics(n.netns)));
    }),
    ...status.routers.map(async (r) => {
      if (r.stack === 'bird') {
        const files = birdFiles(paths.birdDir(r.name));
        if (r.role === 'tor') add('bird-bfd', r.name, parseBirdBfd(await birdc(files, 'show bfd sessions')));
        add('bird-bgp', r.name, parseBirdBgpProtocols(await birdc(files, 'show protocols')));
      } else {
        const files = frrFiles(paths.frrDir(r.name));
        if (r.role === 'tor') add('frr-bfd', r.name, parseFrrBfd(await vtysh(files, 'show bfd peers counters json'), await vtysh(files, 'show bfd peers json')));
        add('frr-bgp', r.name, parseFrrBgpNeighbors(await vtysh(files, 'show bgp neighbors json')));
      }
    }),
  ]);
  return s;
}

/** Busy and total jiffies of all cores (/proc/stat's first line). */
function cpuTimes(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  const total = fields.reduce((t, v) => t + v, 0);
  return { busy: total - idle, total };
}

function safeCpuMs(pid: number): number {
  try {
    return cpuMs(pid);
  } catch {
    return NaN;
  }
}

function timersOf(topologyFile: string): BfdSoakResult['timers'] {
  const doc = YAML.parse(readFileSync(topologyFile, 'utf8')) as { cluster?: { bfd?: BfdSoakResult['timers'] } };
  const bfd = doc.cluster?.bfd;
  if (bfd === undefined) throw new BenchError('BENCH_BAD_OPTIONS', `${topologyFile} has no cluster.bfd: nothing to soak`);
  return bfd;
}

export async function runBfdSoak(o: BfdSoakOptions): Promise<BfdSoakResult> {
  const timers = timersOf(o.topologyFile);
  await mkdir(o.workDir, { recursive: true });
  const busyScript = path.join(o.workDir, 'busy-loop.js');
  await writeFile(busyScript, 'for (;;) {}\n');
  if (listLabs().includes(o.lab)) await labDown(o.lab);
  const workers: ChildProcess[] = [];
  const stopChurn = new AbortController();
  let churn: Promise<void> | undefined;
  const started = Date.now();
  try {
    await labUp({ topologyFile: o.topologyFile, name: o.lab, timeoutMs: 240_000 });
    const status = await labStatus(o.lab);
    await pollUntil(`lab ${o.lab}: every BFD and BGP session Up`, 120_000, 1000, async () => (allUp(await takeSnapshot(o.lab, status)) ? true : undefined));
    o.log(`bfd-soak: lab ${o.lab} up, every session Up after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await sleep(o.settleMs);

    const state = readLabState(o.lab);
    const watched = (state?.processes ?? []).filter((p) => /^(bfd|bfdd|bird|agent)\//.test(p.name) && p.pid !== undefined);
    const before = await takeSnapshot(o.lab, status);
    const logMarks = new Map(status.nodes.map((n) => [n.name, logOf(o.lab, n.name).length]));
    const cpu0 = new Map(watched.map((p) => [p.name, safeCpuMs(p.pid)]));
    const machine0 = cpuTimes();
    const windowStart = Date.now();
    for (let i = 0; i < o.busyWorkers; i++) workers.push(spawn(process.execPath, [busyScript], { stdio: 'ignore' }));
    const workerCpu0 = workers.map((w) => (w.pid === undefined ? NaN : safeCpuMs(w.pid)));
    let churnOps = 0;
    let churnErrors = 0;
    if (o.churnIntervalMs !== undefined) {
      const interval = o.churnIntervalMs;
      const socket = labPaths(o.lab).apiSocket;
      churn = (async () => {
        let previous: string | undefined;
        for (let i = 0; !stopChurn.signal.aborted; i++) {
          const name = `soak-${i}`;
          const node = status.nodes[i % status.nodes.length]!.name;
          const ops: [string, string, unknown][] = [
            ['POST', '/api/v1/namespaces/x/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'x', labels: { app: 'soak' } }, spec: { nodeName: node, containers: [{ name: 'serve', image: 'podroute.io/lab-podserver' }] } }],
            ...(previous === undefined ? [] : [['DELETE', `/api/v1/namespaces/x/pods/${previous}`, undefined] as [string, string, unknown]]),
          ];
          for (const [method, url, body] of ops) {
            const res = await apiRequest(socket, method, url, body).catch(() => ({ status: 0 }));
            churnOps++;
            if (res.status >= 300 || res.status === 0) churnErrors++;
          }
          previous = name;
          await sleep(interval, stopChurn.signal).catch(() => undefined);
        }
        if (previous !== undefined) await apiRequest(socket, 'DELETE', `/api/v1/namespaces/x/pods/${previous}`).catch(() => undefined);
      })();
    }

    const loads: number[] = [];
    const windowMs = o.durationS * 1000;
    while (Date.now() - windowStart < windowMs) {
      await sleep(Math.min(o.sampleS * 1000, windowMs - (Date.now() - windowStart)));
      loads.push(os.loadavg()[0]!);
      const elapsed = Math.round((Date.now() - windowStart) / 1000);
      if (elapsed % 60 < o.sampleS) o.log(`bfd-soak: ${elapsed}/${o.durationS} s, load ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')}`);
    }
    // The second snapshot while the load still runs: a session about to drop counts.
    const after = await takeSnapshot(o.lab, status);
    const windowEnd = Date.now();
    const machine1 = cpuTimes();
    const processes: ProcessCpu[] = watched.map((p) => ({ name: p.name, cpuPercent: ((safeCpuMs(p.pid) - cpu0.get(p.name)!) / (windowEnd - windowStart)) * 100 }));
    workers.forEach((w, i) => processes.push({ name: `busy loop ${i + 1}`, cpuPercent: ((w.pid === undefined ? NaN : safeCpuMs(w.pid)) - workerCpu0[i]!) / (windowEnd - windowStart) * 100 }));
    const loadAtEnd = os.loadavg();
    stopChurn.abort();
    await churn;
    for (const w of workers) w.kill('SIGKILL');

    const events = status.nodes.flatMap((n) =>
      loggedChanges(logOf(o.lab, n.name).slice(logMarks.get(n.name) ?? 0)).map((e) => `${e.timestamp} ${n.name} ↔ ${e.peer}: ${e.from} → ${e.to}${e.diag === '' || e.diag === '0' ? '' : ` (diag ${e.diag})`}`),
    );
    const order = (name: string): number => ['bfd/', 'bfdd/', 'bird/', 'agent/', 'busy'].findIndex((p) => name.startsWith(p));
    return {
      topology: path.relative(findProjectRoot(), o.topologyFile),
      timers: { minTxMs: timers.minTxMs, minRxMs: timers.minRxMs, multiplier: timers.multiplier },
      durationS: o.durationS,
      busyWorkers: o.busyWorkers,
      churnIntervalMs: o.churnIntervalMs,
      churnOps,
      churnErrors,
      cores: os.cpus().length,
      load1: loads.length === 0 ? { mean: NaN, min: NaN, max: NaN, samples: 0 } : { mean: loads.reduce((t, l) => t + l, 0) / loads.length, min: Math.min(...loads), max: Math.max(...loads), samples: loads.length },
      loadAtEnd,
      machineBusyPercent: ((machine1.busy - machine0.busy) / Math.max(1, machine1.total - machine0.total)) * 100,
      processes: processes.sort((a, b) => order(a.name) - order(b.name) || a.name.localeCompare(b.name)),
      bySource: countChanges(before, after),
      events: events.sort().slice(0, 20),
    };
  } finally {
    stopChurn.abort();
    await churn?.catch(() => undefined);
    for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    await labDown(o.lab);
    o.log(`bfd-soak: lab ${o.lab} down`);
  }
}
