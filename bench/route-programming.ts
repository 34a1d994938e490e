// Benchmark 1, route programming: one injector gobgpd (loaded with AddPathStream while its peers are
// administratively down) announces N prefixes to each receiver in turn. Per receiver and repetition: enable
// the peer, time from Established until all N are installed; disable it, time until all are gone. Side by
// side in the same run: `ip -batch` of the same routes and podroute's own kernel step (RouteReconciler).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { GobgpClient } from '../src/bgp/gobgp-client.js';
import type { OriginatedPath } from '../src/bgp/types.js';
import { gobgpdArgs } from '../src/lab/daemons.js';
import { createLogger } from '../src/observe/log.js';
import { RouteReconciler } from '../src/routes/route-reconciler.js';
import type { DesiredRoute } from '../src/routes/select-routes.js';
import { measureDecode, type DecodeResult } from './decode.js';
import { daemonSetAgentEnv, daemonSetNodeOptions } from './footprint.js';
import { startBenchApi } from './lib/agent-host.js';
import { RawGobgp } from './lib/gobgp-raw.js';
import { addNetns, BenchError, Cleanup, ip, ipBatch, pollUntil, rssMiB, cpuMs, startDaemon } from './lib/proc.js';
import { RECEIVER_KINDS, startReceiver, type Receiver, type ReceiverKind } from './lib/receivers.js';
import { msSince, summarize, type Summary } from './lib/stats.js';

export interface RouteBenchOptions {
  /** Namespace name prefix (unique per concurrent run). */
  prefix: string;
  sizes: number[];
  reps: number;
  workDir: string;
  receivers?: readonly ReceiverKind[];
  /** Routes for the wire-decoding measurement (0 skips it). */
  decodeRoutes?: number;
  log: (message: string) => void;
  /** Extra Node.js flags for the podroute agent (profiling), after the DaemonSet's own (daemonSetNodeOptions()). */
  agentNodeArgs?: string[];
}

export interface SizeResult {
  n: number;
  /** AddPathStream of N paths into the injector. */
  injectorLoadMs: number;
  /** From Established until all N are installed. */
  program: Partial<Record<ReceiverKind, Summary>>;
  /** From EnablePeer until the injector reports Established (BGP's own connect and open exchange). */
  establish: Partial<Record<ReceiverKind, Summary>>;
  /** From DisablePeer until all are gone. */
  withdraw: Partial<Record<ReceiverKind, Summary>>;
  ipBatchAdd: Summary;
  ipBatchDel: Summary;
  reconcilerAdd: Summary;
  reconcilerDel: Summary;
  /** Mean cost of one count read, per receiver, ms. */
  countCostMs: Partial<Record<ReceiverKind, number>>;
  /** podroute agent after its N routes: RSS (MiB) and CPU spent during one programming + withdrawal (ms). */
  agentRssMiB?: number;
  agentCpuMsPerCycle?: Summary;
  /** podroute's own gobgpd over the same cycles (the bar: the agent spends no more than it). */
  gobgpdCpuMsPerCycle?: Summary;
  /** podroute's last install + withdraw cycle, in monotonic µs (a CPU profile's window). */
  podrouteCycleUs?: { fromUs: number; toUs: number };
  failures: string[];
}

export interface RouteBenchResult {
  sizes: SizeResult[];
  /** The DaemonSet's NODE_OPTIONS the podroute agent ran with (its RSS is then the deployed agent's). */
  agentNodeOptions?: string[];
  decode?: DecodeResult;
}

const INJECTOR = { address: '10.99.0.1', asn: 65100 };
const LAN = '10.99.0.0/24';
/** Injected prefixes: /32s from the bottom of this range; podroute's cluster range is this whole range. */
const INJECTED_RANGE = '10.128.0.0/9';
const RECEIVER_ASN: Record<ReceiverKind, number> = { podroute: 64512, watcher: 65204, gobgpd: 65201, frr: 65202, bird: 65203 };
const PROTO = 44;

export function injectedPrefixes(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `10.${128 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`);
}

interface PeerEvents {
  latest: Map<string, { state: string; at: bigint }>;
  waiters: Set<() => void>;
}

/** Follows the injector's peer states (its own view of Established) until the signal aborts. */
function followPeers(client: GobgpClient, signal: AbortSignal): PeerEvents {
  const events: PeerEvents = { latest: new Map(), waiters: new Set() };
  void (async () => {
    try {
      for await (const ev of client.watchEvents({ peers: true, bestPaths: false, init: false }, signal)) {
        if (ev.kind !== 'peer') continue;
        events.latest.set(ev.address, { state: ev.state, at: process.hrtime.bigint() });
        for (const w of [...events.waiters]) w();
      }
    } catch {
      // the injector went away: the measurements waiting on it time out with a clear message
    }
  })();
  return events;
}

async function waitPeerState(events: PeerEvents, address: string, state: string, after: bigint, timeoutMs: number): Promise<bigint> {
  return await new Promise<bigint>((resolve, reject) => {
    const check = (): void => {
      const s = events.latest.get(address);
      if (s !== undefined && s.state === state && s.at >= after) {
        cleanup();
        resolve(s.at);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new BenchError('BENCH_TIMEOUT', `injector peer ${address}: not ${state} within ${timeoutMs} ms (last: ${events.latest.get(address)?.state ?? 'none'})`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      events.waiters.delete(check);
    };
    events.waiters.add(check);
    check();
  });
}

/** Polls `read` with pauses of at least 2 ms and 5x the read's own cost; returns the hrtime at which `done` held. */
async function waitInstalled(read: () => Promise<number>, done: (n: number) => boolean, timeoutMs: number): Promise<{ at: bigint | undefined; last: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const start = performance.now();
    const n = await read();
    if (done(n)) return { at: process.hrtime.bigint(), last: n };
    if (Date.now() > deadline) return { at: undefined, last: n };
    await new Promise((r) => setTimeout(r, Math.max(2, (performance.now() - start) * 5)));
  }
}

export async function runRouteProgramming(options: RouteBenchOptions): Promise<RouteBenchResult> {
  const kinds = options.receivers ?? RECEIVER_KINDS;
  const cleanup = new Cleanup();
  const p = options.prefix;
  const injNs = `${p}-inj`;
  const ipbNs = `${p}-ipb`;
  // The agent runs with the DaemonSet's V8 flags and malloc settings, as the footprint benchmark's does: its RSS is comparable.
  const nodeOptions = kinds.includes('podroute') ? daemonSetNodeOptions() : undefined;
  const agentEnv = daemonSetAgentEnv();
  const result: RouteBenchResult = { sizes: [], ...(nodeOptions === undefined ? {} : { agentNodeOptions: nodeOptions }) };
  try {
    await mkdir(options.workDir, { recursive: true });
    // The injector's LAN: a bridge in its namespace, one veth per receiver (and one for the ip -batch floor).
    await addNetns(injNs, cleanup);
    await ip(['-n', injNs, 'link', 'add', 'lan', 'type', 'bridge']);
    await ip(['-n', injNs, 'addr', 'add', `${INJECTOR.address}/24`, 'dev', 'lan']);
    await ip(['-n', injNs, 'link', 'set', 'lan', 'up']);
    const members = [...kinds.map((k) => ({ kind: k, netns: `${p}-${k === 'podroute' ? 'podr' : k}` })), { kind: 'ipb' as const, netns: ipbNs }];
    const addresses = new Map<string, string>();
    for (const [i, m] of members.entries()) {
      await addNetns(m.netns, cleanup);
      const address = `10.99.0.${11 + i}`;
      addresses.set(m.kind, address);
      await ip(['link', 'add', `${p}v${i}`, 'netns', injNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', m.netns]);
      await ipBatch(injNs, [`link set ${p}v${i} master lan`, `link set ${p}v${i} up`]);
      await ipBatch(m.netns, [`addr add ${address}/24 dev eth0`, 'link set eth0 up']);
    }
    options.log(`route programming: LAN ${LAN} with ${members.length} members`);

    const api = await startBenchApi(options.workDir, cleanup);
    const receivers: Receiver[] = [];
    for (const kind of kinds) {
      const netns = members.find((m) => m.kind === kind)!.netns;
      receivers.push(
        await startReceiver(kind, netns, addresses.get(kind)!, RECEIVER_ASN[kind], {
          dir: options.workDir,
          injectorAddress: INJECTOR.address,
          injectorAsn: INJECTOR.asn,
          injectedRange: INJECTED_RANGE,
          api,
          cleanup,
          ...(nodeOptions === undefined ? {} : { agentNodeArgs: [...nodeOptions, ...(options.agentNodeArgs ?? [])], agentEnv }),
        }),
      );
      options.log(`route programming: receiver ${kind} up in ${netns}`);
    }
    if ((options.decodeRoutes ?? 0) > 0) result.decode = measureDecode(options.decodeRoutes ?? 0);

    const givenUp = new Map<ReceiverKind, string>();
    for (const n of options.sizes) {
      result.sizes.push(await runSize(n, receivers, { ...options, injNs, ipbNs, ipbAddress: addresses.get('ipb')!, givenUp: givenUp }));
    }
  } finally {
    const problems = await cleanup.run();
    for (const problem of problems) options.log(`route programming cleanup: ${problem}`);
  }
  return result;
}

async function runSize(n: number, receivers: Receiver[], o: RouteBenchOptions & { injNs: string; ipbNs: string; ipbAddress: string; givenUp: Map<ReceiverKind, string> }): Promise<SizeResult> {
  const cleanup = new Cleanup();
  const failures: string[] = [];
  const program = new Map<ReceiverKind, number[]>();
  const withdraw = new Map<ReceiverKind, number[]>();
  const establish = new Map<ReceiverKind, number[]>();
  const agentCpu: number[] = [];
  const gobgpdCpu: number[] = [];
  let podrouteCycleUs: SizeResult['podrouteCycleUs'];
  const timeoutMs = 30_000 + n * 2;
  let agentRss: number | undefined;
  const prefixes = injectedPrefixes(n);
  try {
    // A fresh injector per size, loaded while every peer is administratively down.
    const socket = path.join(o.workDir, `injector-${n}.sock`);
    startDaemon({ name: `gobgpd/injector-${n}`, netns: o.injNs, command: 'gobgpd', args: gobgpdArgs(socket), logFile: path.join(o.workDir, `injector-${n}.log`) }, cleanup);
    const injector = new RawGobgp(`unix://${socket}`);
    cleanup.add('injector client', () => injector.close());
    await injector.waitReady(20_000);
    await injector.startBgp(INJECTOR.asn, INJECTOR.address, -1);
    const paths: OriginatedPath[] = prefixes.map((prefix) => ({ prefix, nextHop: INJECTOR.address }));
    const loadStart = process.hrtime.bigint();
    await injector.addPathStream(paths);
    await pollUntil(`injector RIB holds ${n}`, 60_000, 20, async () => ((await injector.destinations('ipv4')) >= n ? true : undefined));
    const injectorLoadMs = msSince(loadStart);
    for (const r of receivers) {
      await injector.addPeer({ address: r.address, asn: r.asn, connectRetry: 1, families: ['ipv4'], gracefulRestart: { enabled: false, restartTime: 0 } }, true);
    }
    const watcher = new GobgpClient({ target: `unix://${socket}` });
    const watchStop = new AbortController();
    cleanup.add('injector watch', () => {
      watchStop.abort();
      watcher.close();
    });
    const events = followPeers(watcher, watchStop.signal);
    o.log(`route programming N=${n}: injector loaded in ${injectorLoadMs.toFixed(0)} ms`);

    for (let rep = 0; rep < o.reps; rep++) {
      // Rotate the order so no receiver always goes first (or right after the most expensive one).
      const order = receivers.map((_, i) => receivers[(i + rep) % receivers.length]!);
      for (const r of order) {
        const skipped = o.givenUp.get(r.kind);
        if (skipped !== undefined) {
          if (rep === 0) failures.push(`N=${n} ${r.kind}: not measured: ${skipped}`);
          continue;
        }
        try {
          const cpuBefore = r.agentPid === undefined ? 0 : cpuMs(r.agentPid);
          const gobgpdCpuBefore = r.agentPid === undefined || r.gobgpdPid === undefined ? 0 : cpuMs(r.gobgpdPid);
          const enabledAt = process.hrtime.bigint();
          await injector.enablePeer(r.address);
          const established = await waitPeerState(events, r.address, 'ESTABLISHED', enabledAt, timeoutMs);
          push(establish, r.kind, Number(established - enabledAt) / 1e6);
          const up = await waitInstalled(() => r.installed(), (c) => c >= n, timeoutMs);
          if (up.at === undefined) throw new BenchError('BENCH_TIMEOUT', `${r.kind}: ${up.last}/${n} routes after ${timeoutMs} ms`);
          push(program, r.kind, Number(up.at - established) / 1e6);
          if (r.agentPid !== undefined) agentRss = Math.max(agentRss ?? 0, rssMiB(r.agentPid));
          const disabledAt = process.hrtime.bigint();
          await injector.disablePeer(r.address);
          const down = await waitInstalled(() => r.installed(), (c) => c <= 0, timeoutMs);
          if (down.at === undefined) throw new BenchError('BENCH_TIMEOUT', `${r.kind}: ${down.last} routes left ${timeoutMs} ms after the peer was disabled`);
          push(withdraw, r.kind, Number(down.at - disabledAt) / 1e6);
          if (r.kind === 'podroute') podrouteCycleUs = { fromUs: Number(enabledAt / 1000n), toUs: Number(down.at / 1000n) };
          if (r.agentPid !== undefined) agentCpu.push(cpuMs(r.agentPid) - cpuBefore);
          if (r.agentPid !== undefined && r.gobgpdPid !== undefined) gobgpdCpu.push(cpuMs(r.gobgpdPid) - gobgpdCpuBefore);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          failures.push(`N=${n} rep ${rep + 1} ${r.kind}: ${message}`);
          // A receiver that cannot finish once will not finish on the next try or at a bigger N: stop spending
          // the run's time on it, and let it drain before the others continue.
          o.givenUp.set(r.kind, `gave up at N=${n}: ${message}`);
          await injector.disablePeer(r.address).catch(() => undefined);
          const drained = await waitInstalled(() => r.installed(), (c) => c <= 0, timeoutMs);
          if (drained.at === undefined) failures.push(`N=${n} ${r.kind}: still held ${drained.last} routes ${timeoutMs} ms after giving up`);
        }
      }
      o.log(`route programming N=${n}: repetition ${rep + 1}/${o.reps} done`);
    }
    const kernel = await kernelStep(o.ipbNs, prefixes, o.reps, INJECTOR.address);
    return {
      n,
      injectorLoadMs,
      program: Object.fromEntries([...program].map(([k, v]) => [k, summarize(v)])),
      withdraw: Object.fromEntries([...withdraw].map(([k, v]) => [k, summarize(v)])),
      establish: Object.fromEntries([...establish].map(([k, v]) => [k, summarize(v)])),
      ...kernel,
      countCostMs: Object.fromEntries(receivers.map((r) => [r.kind, r.readCostMs()])),
      ...(agentRss === undefined ? {} : { agentRssMiB: agentRss }),
      ...(agentCpu.length === 0 ? {} : { agentCpuMsPerCycle: summarize(agentCpu) }),
      ...(gobgpdCpu.length === 0 ? {} : { gobgpdCpuMsPerCycle: summarize(gobgpdCpu) }),
      ...(podrouteCycleUs === undefined ? {} : { podrouteCycleUs }),
      failures,
    };
  } finally {
    for (const problem of await cleanup.run()) o.log(`route programming N=${n} cleanup: ${problem}`);
  }
}

function push(map: Map<ReceiverKind, number[]>, kind: ReceiverKind, value: number): void {
  const list = map.get(kind) ?? [];
  list.push(value);
  map.set(kind, list);
}

/** The kernel floor (`ip -batch` add/del) and podroute's kernel step (RouteReconciler) on the same routes. */
async function kernelStep(netns: string, prefixes: string[], reps: number, nextHop: string): Promise<Pick<SizeResult, 'ipBatchAdd' | 'ipBatchDel' | 'reconcilerAdd' | 'reconcilerDel'>> {
  const addLines = prefixes.map((p) => `route add ${p} via ${nextHop} proto ${PROTO}`);
  const delLines = prefixes.map((p) => `route del ${p} proto ${PROTO}`);
  const desired: DesiredRoute[] = prefixes.map((prefix) => ({ prefix, nextHops: [nextHop] }));
  const ipAdd: number[] = [];
  const ipDel: number[] = [];
  const recAdd: number[] = [];
  const recDel: number[] = [];
  const logger = createLogger({ level: 'error', format: 'text' });
  for (let rep = 0; rep < reps; rep++) {
    let t = process.hrtime.bigint();
    await ipBatch(netns, addLines);
    ipAdd.push(msSince(t));
    t = process.hrtime.bigint();
    await ipBatch(netns, delLines);
    ipDel.push(msSince(t));

    const reconciler = new RouteReconciler({ protocol: PROTO, logger, netns, resyncIntervalMs: 3_600_000 });
    const stop = new AbortController();
    const running = reconciler.start(stop.signal);
    try {
      await pollUntil('route reconciler first read', 30_000, 5, () => (reconciler.status().counts.reads >= 1 ? true : undefined));
      t = process.hrtime.bigint();
      reconciler.setDesired(desired);
      await reconciler.waitForSync();
      recAdd.push(msSince(t));
      if (reconciler.status().installed !== prefixes.length) throw new BenchError('BENCH_SETUP_FAILED', `reconciler installed ${reconciler.status().installed}/${prefixes.length}`);
      t = process.hrtime.bigint();
      reconciler.setDesired([]);
      await reconciler.waitForSync();
      recDel.push(msSince(t));
    } finally {
      stop.abort();
      await running.catch(() => undefined);
    }
  }
  return { ipBatchAdd: summarize(ipAdd), ipBatchDel: summarize(ipDel), reconcilerAdd: summarize(recAdd), reconcilerDel: summarize(recDel) };
}

