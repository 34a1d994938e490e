// A podroute node inside a benchmark namespace: gobgpd (unix socket), `podroute agent`, and a relay to an
// in-process lab API server that holds the Node object (and whatever synthetic cluster a benchmark seeds).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import type { AgentConfigInput } from '../../src/config/agent-config.js';
import { LabApiServer, renderKubeconfig, type KubeObject } from '../../src/lab/apiserver/index.js';
import { CLI_MAIN, gobgpdArgs } from '../../src/lab/daemons.js';
import { RawGobgp } from './gobgp-raw.js';
import { BenchError, logTail, pollUntil, startDaemon, type Cleanup, type Daemon } from './proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const RELAY_SCRIPT = path.join(here, '..', 'api-relay.js');
const METRICS_RELAY_SCRIPT = path.join(here, '..', 'metrics-relay.js');
const RELAY_PORT = 6443;
/** The agent's metrics server inside its namespace, when a benchmark turns it on (the agent's default address). */
const METRICS_PORT = 9476;

export interface BenchApi {
  server: LabApiServer;
  socket: string;
}

/** An in-process lab API server on a unix socket in `dir` (closed by `cleanup`). */
export async function startBenchApi(dir: string, cleanup: Cleanup): Promise<BenchApi> {
  await mkdir(dir, { recursive: true });
  const socket = path.join(dir, 'api.sock');
  // Synthetic clusters are created in one go: keep every change resumable for the agent's watches.
  const server = new LabApiServer({ eventWindow: 200_000, bookmarkIntervalMs: 60_000 });
  await server.start({ socketPath: socket });
  cleanup.add('bench API server', () => server.close());
  return { server, socket };
}

export interface NodeObjectOptions {
  name: string;
  address: string;
  podCIDRs: string[];
  asn?: number;
  /** Annotation peers; maxPrefixes 0 lifts the agent's default limit for external peers (benchmarks send 50k). */
  peers?: { address: string; asn: number; connectRetry?: number; maxPrefixes?: number; ttlSecurity?: boolean }[];
  labels?: Record<string, string>;
}

export function nodeObject(o: NodeObjectOptions): KubeObject {
  const annotations: Record<string, string> = {};
  if (o.asn !== undefined) annotations['podroute.io/asn'] = String(o.asn);
  if (o.peers !== undefined) annotations['podroute.io/peers'] = JSON.stringify(o.peers);
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: o.name, labels: { 'kubernetes.io/hostname': o.name, ...o.labels }, annotations },
    spec: { podCIDR: o.podCIDRs[0], podCIDRs: o.podCIDRs },
    status: {
      addresses: [{ type: 'InternalIP', address: o.address }, { type: 'Hostname', address: o.name }],
      conditions: [{ type: 'Ready', status: 'True', reason: 'BenchNode', message: 'benchmark node' }],
    },
  };
}

export interface AgentHostOptions {
  netns: string;
  nodeName: string;
  /** Working directory for sockets, configs, logs. */
  dir: string;
  api: BenchApi;
  cluster: { asn: number; podRanges: string[]; extraAcceptRanges?: string[] };
  /** The gobgpd peer the agent must have configured before the host counts as ready. */
  expectPeer?: string;
  mesh?: 'full' | 'same-asn' | 'off';
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Extra Node.js flags for the agent (e.g. --cpu-prof to find where its time goes). */
  nodeArgs?: string[];
  /** Variables for the agent on top of the benchmark's own environment (the DaemonSet's: daemonSetAgentEnv()). */
  env?: Record<string, string>;
  /**
   * Turn the agent's metrics server on (127.0.0.1:9476 in its namespace, relayed to a unix socket in `dir`: see
   * AgentHost.metricsSocket). Off by default, as the other benchmarks measure the agent without it.
   */
  metrics?: boolean;
}

export interface AgentHost {
  gobgpd: Daemon;
  agent: Daemon;
  relay: Daemon;
  gobgp: RawGobgp;
  socket: string;
  agentLog: string;
  /** The agent's /metrics through a relay (with `metrics: true`): GET it with http's socketPath. */
  metricsSocket?: string;
}

/** Starts relay, gobgpd and agent in `netns` and waits until the agent has configured gobgpd. */
export async function startAgentHost(o: AgentHostOptions, cleanup: Cleanup): Promise<AgentHost> {
  const dir = path.join(o.dir, o.nodeName);
  await mkdir(path.join(dir, 'cni'), { recursive: true });
  const socket = path.join(dir, 'gobgp.sock');
  const relay = startDaemon({ name: `relay/${o.nodeName}`, netns: o.netns, command: process.execPath, args: [RELAY_SCRIPT, '--socket', o.api.socket, '--port', String(RELAY_PORT)], logFile: path.join(dir, 'relay.log') }, cleanup);
  const gobgpd = startDaemon({ name: `gobgpd/${o.nodeName}`, netns: o.netns, command: 'gobgpd', args: gobgpdArgs(socket), logFile: path.join(dir, 'gobgpd.log') }, cleanup);
  const kubeconfig = path.join(dir, 'kubeconfig');
  await writeFile(kubeconfig, renderKubeconfig(`http://127.0.0.1:${RELAY_PORT}`, `bench-${o.nodeName}`));
  const config: AgentConfigInput = {
    nodeName: o.nodeName,
    kubeconfig,
    gobgp: { target: `unix://${socket}` },
    cluster: o.cluster,
    bgp: { mesh: o.mesh ?? 'off', connectRetry: 1 },
    cni: { confDir: path.join(dir, 'cni'), ipamDataDir: path.join(dir, 'ipam') },
    log: { level: o.logLevel ?? 'info', format: 'text' },
    metrics: { address: o.metrics === true ? `127.0.0.1:${METRICS_PORT}` : '' },
  };
  const configFile = path.join(dir, 'agent.yaml');
  await writeFile(configFile, YAML.stringify(config));
  await pollUntil(`relay in ${o.netns}`, 20_000, 50, () => (relay.exited ? Promise.reject(new Error(logTail(path.join(dir, 'relay.log')))) : /ready/.test(logTail(path.join(dir, 'relay.log'))) || undefined));
  const gobgp = new RawGobgp(`unix://${socket}`);
  cleanup.add(`gobgp client ${o.nodeName}`, () => gobgp.close());
  await gobgp.waitReady(20_000);
  const agentLog = path.join(dir, 'agent.log');
  const agent = startDaemon({ name: `agent/${o.nodeName}`, netns: o.netns, command: process.execPath, args: [...(o.nodeArgs ?? []), CLI_MAIN, 'agent', '--config', configFile], logFile: agentLog, graceMs: o.nodeArgs === undefined ? 3000 : 30_000, ...(o.env === undefined ? {} : { env: { ...process.env, ...o.env } }) }, cleanup);
  // A big synthetic cluster takes the agent a while to list before it starts BGP.
  await pollUntil(`podroute agent on ${o.nodeName} configures gobgpd`, 240_000, 100, async () => {
    if (agent.exited) throw new BenchError('BENCH_PROCESS_EXITED', `agent exited:\n${logTail(agentLog)}`);
    // Without a peer to wait for: GetTable answers (instead of failing) once the agent has started BGP.
    if (o.expectPeer === undefined) return (await gobgp.destinations('ipv4')) >= 0 || undefined;
    return (await gobgp.peerState(o.expectPeer).catch(() => undefined)) !== undefined || undefined;
  }).catch((err: unknown) => {
    throw new BenchError('BENCH_SETUP_FAILED', `${err instanceof Error ? err.message : String(err)}\nagent log:\n${logTail(agentLog)}`);
  });
  if (o.metrics !== true) return { gobgpd, agent, relay, gobgp, socket, agentLog };
  const metricsSocket = path.join(dir, 'metrics.sock');
  const metricsLog = path.join(dir, 'metrics-relay.log');
  const metricsRelay = startDaemon({ name: `metrics-relay/${o.nodeName}`, netns: o.netns, command: process.execPath, args: [METRICS_RELAY_SCRIPT, '--socket', metricsSocket, '--port', String(METRICS_PORT)], logFile: metricsLog }, cleanup);
  await pollUntil(`metrics relay in ${o.netns}`, 20_000, 50, () => (metricsRelay.exited ? Promise.reject(new Error(logTail(metricsLog))) : /ready/.test(logTail(metricsLog)) || undefined));
  return { gobgpd, agent, relay, gobgp, socket, agentLog, metricsSocket };
}
