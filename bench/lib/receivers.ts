// The receivers of the route-programming benchmark, each in its own namespace on the injector's LAN: podroute
// (gobgpd + agent), the bare watcher (gobgpd + the smallest client of the agent's WatchEvent stream), gobgpd
// alone, FRR bgpd+zebra, BIRD 2 with its kernel protocol. Each reports how many of the injected routes it holds
// where it matters: the kernel FIB, the watcher's count, or (gobgpd alone) its own RIB.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { frrFiles, startFrrDaemon } from '../../src/lab/frr.js';
import { gobgpdArgs } from '../../src/lab/daemons.js';
import { startAgentHost, nodeObject, type AgentHost, type BenchApi } from './agent-host.js';
import { RawGobgp } from './gobgp-raw.js';
import { FibCounter } from './kernel-count.js';
import { BenchError, pollUntil, startDaemon, type Cleanup } from './proc.js';

export type ReceiverKind = 'podroute' | 'watcher' | 'gobgpd' | 'frr' | 'bird';
export const RECEIVER_KINDS: readonly ReceiverKind[] = ['podroute', 'watcher', 'gobgpd', 'frr', 'bird'];

export const RECEIVER_LABELS: Record<ReceiverKind | 'ip-batch', string> = {
  podroute: 'podroute (gobgpd + agent) → kernel',
  watcher: 'bare watcher: gobgpd → a WatchEvent client that only counts (floor of our design)',
  gobgpd: 'gobgpd alone → its RIB',
  frr: 'FRR 8.4 bgpd + zebra → kernel',
  bird: 'BIRD 2 (kernel protocol) → kernel',
  'ip-batch': '`ip -batch` of the same routes → kernel',
};

export interface Receiver {
  kind: ReceiverKind;
  netns: string;
  address: string;
  asn: number;
  /** Injected routes currently held (kernel: FIB prefixes above the idle baseline; gobgpd: RIB destinations). */
  installed(): Promise<number>;
  /** Mean cost of one `installed()` read so far, in ms (the counting's own overhead). */
  readCostMs(): number;
  /** The daemon whose RSS/CPU is reported, if any. */
  agentPid?: number;
  /** The receiver's own gobgpd (podroute, the bare watcher), whose CPU is reported beside the agent's. */
  gobgpdPid?: number;
}

export interface ReceiverContext {
  dir: string;
  injectorAddress: string;
  injectorAsn: number;
  /** The range the injected prefixes come from (podroute must accept it). */
  injectedRange: string;
  api: BenchApi;
  cleanup: Cleanup;
  agentNodeArgs?: string[];
  /** The agent's environment on top of the benchmark's (the DaemonSet's: daemonSetAgentEnv()). */
  agentEnv?: Record<string, string>;
}

/** A kernel-counting receiver: the baseline is taken once, while it holds none of the injected routes. */
function kernelCounter(pid: number): { installed: () => Promise<number>; readCostMs: () => number } {
  const counter = new FibCounter(pid);
  const baseline = counter.count();
  return { installed: () => Promise.resolve(counter.count() - baseline), readCostMs: () => counter.meanReadMs() };
}

export async function startReceiver(kind: ReceiverKind, netns: string, address: string, asn: number, ctx: ReceiverContext): Promise<Receiver> {
  const dir = path.join(ctx.dir, kind);
  await mkdir(dir, { recursive: true });
  switch (kind) {
    case 'gobgpd': {
      const gobgp = await startLoneGobgpd(netns, address, asn, dir, ctx, false);
      let reads = 0;
      let readMs = 0;
      return {
        kind,
        netns,
        address,
        asn,
        installed: async () => {
          const start = performance.now();
          const n = await gobgp.destinations('ipv4');
          readMs += performance.now() - start;
          reads++;
          return n;
        },
        readCostMs: () => (reads === 0 ? NaN : readMs / reads),
      };
    }
    case 'watcher': {
      // Its gobgpd runs as the agent's does (every equally good path in the watch).
      const gobgp = await startLoneGobgpd(netns, address, asn, dir, ctx, true);
      const count = startBareWatcher(`unix://${gobgp.socket}`, path.join(dir, 'bare-watcher.log'), ctx.cleanup);
      await pollUntil('bare watcher subscribed', 20_000, 20, () => Promise.resolve(count() === 0 ? true : undefined));
      return { kind, netns, address, asn, gobgpdPid: gobgp.pid, installed: () => Promise.resolve(count()), readCostMs: () => 0 };
    }
    case 'frr': {
      const files = frrFiles(dir);
      await mkdir(files.runDir, { recursive: true });
      await writeFile(files.zebraConf, ['frr defaults datacenter', `hostname ${netns}`, `log file ${files.zebraLog}`, ''].join('\n'));
      await writeFile(
        files.bgpdConf,
        [
          'frr defaults datacenter',
          `hostname ${netns}`,
          `log file ${files.bgpdLog}`,
          `router bgp ${asn}`,
          ` bgp router-id ${address}`,
          ' no bgp ebgp-requires-policy',
          ` neighbor ${ctx.injectorAddress} remote-as ${ctx.injectorAsn}`,
          ' address-family ipv4 unicast',
          `  neighbor ${ctx.injectorAddress} activate`,
          ' exit-address-family',
          '',
        ].join('\n'),
      );
      const pathspace = netns;
      ctx.cleanup.add(`FRR pathspace ${pathspace}`, () => rm(path.join('/var/run/frr', pathspace), { recursive: true, force: true }));
      const pids: number[] = [];
      ctx.cleanup.add(`FRR daemons in ${netns}`, () => {
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      });
      for (const daemon of ['zebra', 'bgpd'] as const) pids.push(await startFrrDaemon(netns, daemon, files, pathspace));
      return { kind, netns, address, asn, ...(kernelCounter(pids[0]!)) };
    }
    case 'bird': {
      const conf = path.join(dir, 'bird.conf');
      await writeFile(
        conf,
        [
          `router id ${address};`,
          'protocol device { scan time 60; }',
          // The kernel protocol exports every best route into the main table; no learning, no persistence.
          'protocol kernel { ipv4 { import none; export all; }; scan time 60; }',
          `protocol bgp injector { local ${address} as ${asn}; neighbor ${ctx.injectorAddress} as ${ctx.injectorAsn}; ipv4 { import all; export none; }; }`,
          '',
        ].join('\n'),
      );
      const daemon = startDaemon({ name: 'bird', netns, command: 'bird', args: ['-f', '-c', conf, '-s', path.join(dir, 'bird.ctl'), '-P', path.join(dir, 'bird.pid')], logFile: path.join(dir, 'bird.log') }, ctx.cleanup);
      await pollUntil('BIRD control socket', 20_000, 50, async () => {
        if (daemon.exited) throw new BenchError('BENCH_PROCESS_EXITED', `bird exited: ${await readFile(path.join(dir, 'bird.log'), 'utf8').catch(() => '')}`);
        const r = await execa('birdc', ['-s', path.join(dir, 'bird.ctl'), 'show', 'status'], { reject: false });
        return r.exitCode === 0 && /Daemon is up/.test(r.stdout) ? true : undefined;
      });
      return { kind, netns, address, asn, ...(kernelCounter(daemon.pid)) };
    }
    case 'podroute': {
      const nodeName = 'bench-receiver';
      ctx.api.server.create(
        nodeObject({
          name: nodeName,
          address,
          podCIDRs: [RECEIVER_POD_CIDR],
          asn,
          // The injector sends up to 50k prefixes: no max-prefix limit (the agent's default would shut it down). It
          // serves the other receivers too, without GTSM: none here either.
          peers: [{ address: ctx.injectorAddress, asn: ctx.injectorAsn, connectRetry: 1, maxPrefixes: 0, ttlSecurity: false }],
        }),
      );
      const host: AgentHost = await startAgentHost(
        { netns, nodeName, dir, api: ctx.api, cluster: { asn, podRanges: [RECEIVER_POD_RANGE], extraAcceptRanges: [ctx.injectedRange] }, expectPeer: ctx.injectorAddress, ...(ctx.agentNodeArgs === undefined ? {} : { nodeArgs: ctx.agentNodeArgs }), ...(ctx.agentEnv === undefined ? {} : { env: ctx.agentEnv }) },
        ctx.cleanup,
      );
      return { kind, netns, address, asn, agentPid: host.agent.pid, gobgpdPid: host.gobgpd.pid, ...(kernelCounter(host.gobgpd.pid)) };
    }
  }
}

/**
 * The receiver's cluster: its own pod range and podCIDR. The injector's prefixes are not node podCIDRs, so they
 * come in as an external peer's routes, through cluster.extraAcceptRanges (e.g. another cluster's pods).
 */
const RECEIVER_POD_RANGE = '10.127.0.0/16';
const RECEIVER_POD_CIDR = '10.127.0.0/24';

/** gobgpd alone in the receiver's namespace, peered with the injector; its client and its PID. */
async function startLoneGobgpd(netns: string, address: string, asn: number, dir: string, ctx: ReceiverContext, useMultiplePaths: boolean): Promise<RawGobgp & { pid: number; socket: string }> {
  const socket = path.join(dir, 'gobgp.sock');
  const daemon = startDaemon({ name: `gobgpd/${path.basename(dir)}`, netns, command: 'gobgpd', args: gobgpdArgs(socket), logFile: path.join(dir, 'gobgpd.log') }, ctx.cleanup);
  const gobgp = new RawGobgp(`unix://${socket}`);
  ctx.cleanup.add(`gobgp client (${path.basename(dir)})`, () => gobgp.close());
  await gobgp.waitReady(20_000);
  await gobgp.startBgp(asn, address, 179, useMultiplePaths);
  await gobgp.addPeer({ address: ctx.injectorAddress, asn: ctx.injectorAsn, connectRetry: 1, families: ['ipv4'] }, false);
  return Object.assign(gobgp, { pid: daemon.pid, socket });
}

/**
 * bench/bare-watcher.js on the gobgpd at `target`, in a process of its own; returns the latest count it printed
 * (-1 until it is subscribed).
 */
function startBareWatcher(target: string, logFile: string, cleanup: Cleanup): () => number {
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [BARE_WATCHER, target], { stdio: ['ignore', 'pipe', fd] });
  } finally {
    closeSync(fd);
  }
  let latest = -1;
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    if (lines.length > 0) latest = Number(lines[lines.length - 1]);
  });
  child.on('error', () => undefined);
  cleanup.add(`bare watcher (${child.pid})`, () => {
    child.kill('SIGKILL');
  });
  return () => latest;
}

const BARE_WATCHER = fileURLToPath(new URL('../bare-watcher.js', import.meta.url));
