// Benchmark 5, footprint: `podroute agent` (with its gobgpd) on one node of a synthetic cluster held by an
// in-process lab API server: 1,000 nodes in racks of 20 (AS per rack, same-asn mesh), 30,000 pods, 1,000
// NetworkPolicies. Measures start-up until the node is reported ready, RSS and CPU while idle, and while the
// cluster churns (pod label changes, pods created and deleted, policies replaced).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { findProjectRoot } from '../src/bgp/gobgp-proto.js';
import type { KubeObject } from '../src/lab/apiserver/index.js';
import { nodeObject, startAgentHost, startBenchApi } from './lib/agent-host.js';
import { addNetns, BenchError, Cleanup, cpuMs, ipBatch, ip, pollUntil, rssMiB, sleep } from './lib/proc.js';

export interface FootprintOptions {
  prefix: string;
  workDir: string;
  nodes: number;
  pods: number;
  policies: number;
  /** Seconds of each measuring window (idle, churn). */
  windowSeconds: number;
  /** Changes per second during churn. */
  churnPerSecond: number;
  /** Extra Node.js flags for the agent, after the DaemonSet's own (daemonSetNodeOptions(): --cpu-prof, ...). */
  agentNodeArgs?: string[];
  /** Called once the idle window has been measured (a profiling driver takes its heap snapshot here). */
  onIdle?: (agentPid: number) => Promise<void>;
  log: (m: string) => void;
}

export interface FootprintResult {
  nodes: number;
  pods: number;
  policies: number;
  localPods: number;
  seedMs: number;
  /** Agent start until it reported NetworkUnavailable=False on its Node. */
  startupMs: number;
  /** After ready, until a 2 s window cost under 5 % of a core (settled false: still busy at the limit). */
  settleMs: number;
  settled: boolean;
  idle: { cpuPercent: number; rssMiB: number; gobgpdRssMiB: number };
  churn: { cpuPercent: number; rssMiBMax: number; changes: number };
  agentLog: string;
  /** The DaemonSet's NODE_OPTIONS the agent ran with. */
  nodeOptions: string[];
  /** The DaemonSet's other variables the agent ran with (daemonSetAgentEnv(); absent in older runs). */
  agentEnv?: Record<string, string>;
  /** The idle window on the monotonic clock of a --cpu-prof profile (bench/lib/cpu-profile.ts ProfileWindow). */
  idleWindow: { fromUs: number; toUs: number };
}

/** CLOCK_MONOTONIC in µs: the clock of V8's .cpuprofile timestamps, the same in every process. */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** The manifest whose agent flags the benchmark runs with: the footprint measured is the deployed one. */
export const DAEMONSET_MANIFEST = path.join(findProjectRoot(), 'deploy', 'base', 'daemonset.yaml');

/**
 * The Node.js flags the DaemonSet gives the agent (its NODE_OPTIONS), split into arguments. The benchmark
 * passes exactly these to the agent it measures, so a V8 setting changed in the manifest is what is measured.
 */
export function daemonSetNodeOptions(manifest = DAEMONSET_MANIFEST): string[] {
  const value = agentContainerEnv(manifest).find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
  return value.split(/\s+/).filter((a) => a !== '');
}

/**
 * The other variables the DaemonSet gives the agent a value of (glibc's malloc settings): the benchmarks start the
 * agent with them, so the memory measured is the deployed one. NODE_OPTIONS goes as flags (daemonSetNodeOptions).
 */
export function daemonSetAgentEnv(manifest = DAEMONSET_MANIFEST): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of agentContainerEnv(manifest)) if (e.name !== 'NODE_OPTIONS' && e.value !== undefined) env[e.name] = e.value;
  return env;
}

function agentContainerEnv(manifest: string): { name: string; value?: string }[] {
  const doc = YAML.parse(readFileSync(manifest, 'utf8')) as {
    spec?: { template?: { spec?: { containers?: { name: string; env?: { name: string; value?: string }[] }[] } } };
  };
  const agent = doc.spec?.template?.spec?.containers?.find((c) => c.name === 'podroute');
  if (agent === undefined) throw new BenchError('BENCH_SETUP_FAILED', `${manifest}: no container named podroute`);
  return agent.env ?? [];
}

const RACK_SIZE = 20;
/**
 * The idle window is at least this long: the agent re-plans periodically (the cluster loop every 30 s, the route
 * reconciler every routes.resyncSeconds, 30 s by default), and a window shorter than two periods can miss that work
 * or catch it twice by chance.
 */
const IDLE_MIN_MS = 65_000;
const SETTLE_MAX_MS = 90_000;
const POD_RANGE = '10.0.0.0/14';

function nodeName(i: number): string {
  return `node-${String(i).padStart(4, '0')}`;
}

function podObject(i: number, nodes: number, namespaces: number, app: number): KubeObject {
  const node = i % nodes;
  const slot = Math.floor(i / nodes) + 2;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: `ns-${i % namespaces}`, name: `pod-${i}`, labels: { app: `app-${app}`, tier: ['web', 'api', 'db'][i % 3]! } },
    spec: { nodeName: nodeName(node), containers: [{ name: 'c', image: 'bench', ports: [{ containerPort: 8080, name: 'http' }] }] },
    status: { phase: 'Running', podIP: `10.${node >> 8}.${node & 255}.${slot}`, podIPs: [{ ip: `10.${node >> 8}.${node & 255}.${slot}` }] },
  };
}

function policyObject(i: number, namespaces: number): KubeObject {
  const shape = i % 3;
  const spec =
    shape === 0
      ? { podSelector: { matchLabels: { app: `app-${i % 50}` } }, ingress: [{ from: [{ podSelector: { matchLabels: { tier: 'web' } } }], ports: [{ port: 'http' }] }] }
      : shape === 1
        ? { podSelector: { matchLabels: { tier: 'db' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${i % 10}` } } }], ports: [{ port: 5432 }] }] }
        : { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }], ports: [{ port: 443 }] }] };
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: `ns-${i % namespaces}`, name: `pol-${i}` }, spec };
}

export async function runFootprint(o: FootprintOptions): Promise<FootprintResult> {
  const cleanup = new Cleanup();
  const netns = `${o.prefix}-fp`;
  try {
    await addNetns(netns, cleanup);
    // One uplink with the node's address (a veth whose far end stays in the same namespace: nothing to reach).
    await ip(['-n', netns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
    await ipBatch(netns, ['addr add 10.98.0.2/16 dev eth0', 'link set eth0 up', 'link set eth0p up']);
    const api = await startBenchApi(o.workDir, cleanup);
    const namespaces = Math.max(1, Math.round(o.pods / 300));
    const seedStart = performance.now();
    for (let n = 0; n < namespaces; n++) {
      api.server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${n}`, labels: { 'kubernetes.io/metadata.name': `ns-${n}`, team: `t${n % 10}` } } });
    }
    for (let i = 0; i < o.nodes; i++) {
      api.server.create(
        nodeObject({
          name: nodeName(i),
          address: `10.98.${(i + 2) >> 8}.${(i + 2) & 255}`,
          podCIDRs: [`10.${i >> 8}.${i & 255}.0/24`],
          asn: 64600 + Math.floor(i / RACK_SIZE),
          labels: { 'topology.kubernetes.io/zone': `rack-${Math.floor(i / RACK_SIZE)}` },
        }),
      );
    }
    for (let i = 0; i < o.pods; i++) api.server.create(podObject(i, o.nodes, namespaces, i % 50));
    for (let i = 0; i < o.policies; i++) api.server.create(policyObject(i, namespaces));
    const seedMs = performance.now() - seedStart;
    o.log(`footprint: API seeded with ${o.nodes} nodes, ${o.pods} pods, ${o.policies} policies in ${seedMs.toFixed(0)} ms`);

    const self = nodeName(0);
    const nodeOptions = daemonSetNodeOptions();
    const agentEnv = daemonSetAgentEnv();
    o.log(`footprint: agent runs with the DaemonSet's Node.js flags: ${nodeOptions.join(' ') || '(none)'} and environment: ${JSON.stringify(agentEnv)}`);
    const startedAt = performance.now();
    // Metrics on, as the DaemonSet's config has them (its process metrics keep a timer of their own).
    const host = await startAgentHost(
      { netns, nodeName: self, dir: o.workDir, api, cluster: { asn: 64512, podRanges: [POD_RANGE] }, mesh: 'same-asn', nodeArgs: [...nodeOptions, ...(o.agentNodeArgs ?? [])], env: agentEnv, metrics: true },
      cleanup,
    );
    await pollUntil('agent reports its node ready (NetworkUnavailable=False)', 300_000, 200, () => {
      const conditions = ((api.server.get('nodes', undefined, self).status as { conditions?: { type: string; status: string }[] })?.conditions ?? []);
      return conditions.some((c) => c.type === 'NetworkUnavailable' && c.status === 'False') || undefined;
    });
    const startupMs = performance.now() - startedAt;
    o.log(`footprint: agent ready after ${(startupMs / 1000).toFixed(1)} s`);
    // Start-up work goes on after the node is reported ready (policy sync, watches catching up): idle begins
    // when a 2 s window costs under 5 % of a core (or after SETTLE_MAX_MS, reported as not settled).
    const settleStart = performance.now();
    let settled = false;
    while (performance.now() - settleStart < SETTLE_MAX_MS) {
      const c0 = cpuMs(host.agent.pid);
      const w0 = performance.now();
      await sleep(2000);
      if (((cpuMs(host.agent.pid) - c0) / (performance.now() - w0)) * 100 < 5) {
        settled = true;
        break;
      }
    }
    const settleMs = performance.now() - settleStart;
    o.log(`footprint: agent ${settled ? 'settled' : 'still busy'} ${(settleMs / 1000).toFixed(1)} s after ready`);

    const window = o.windowSeconds * 1000;
    let idleWindow = { fromUs: 0, toUs: 0 };
    let cpu0 = cpuMs(host.agent.pid);
    let t0 = performance.now();
    const idleFromUs = monotonicUs();
    // A smoke run (a window under 10 s, `bench/run.ts --quick`) only checks that the code path works.
    await sleep(o.windowSeconds >= 10 ? Math.max(window, IDLE_MIN_MS) : window);
    idleWindow = { fromUs: idleFromUs, toUs: monotonicUs() };
    const idle = { cpuPercent: ((cpuMs(host.agent.pid) - cpu0) / (performance.now() - t0)) * 100, rssMiB: rssMiB(host.agent.pid), gobgpdRssMiB: rssMiB(host.gobgpd.pid) };
    o.log(`footprint: idle ${idle.cpuPercent.toFixed(1)} % CPU, ${idle.rssMiB.toFixed(0)} MiB`);
    await o.onIdle?.(host.agent.pid);

    // Churn: a steady rate of label changes on pods (local and remote), pod deletions/creations, policy swaps.
    cpu0 = cpuMs(host.agent.pid);
    t0 = performance.now();
    let changes = 0;
    let rssMax = rssMiB(host.agent.pid);
    let nextPod = o.pods;
    const interval = 1000 / o.churnPerSecond;
    while (performance.now() - t0 < window) {
      const k = changes;
      if (k % 10 === 9) {
        const victim = (k * 7919) % o.pods;
        try {
          const old = api.server.get('pods', `ns-${victim % namespaces}`, `pod-${victim}`);
          api.server.delete('pods', old.metadata?.namespace, String(old.metadata?.name));
          api.server.create({ ...podObject(victim, o.nodes, namespaces, k % 50), metadata: { ...podObject(victim, o.nodes, namespaces, k % 50).metadata, name: `pod-${nextPod++}` } });
        } catch {
          // already replaced earlier in the churn
        }
      } else if (k % 10 === 5) {
        const i = (k * 31) % o.policies;
        const p = api.server.get('networkpolicies', `ns-${i % namespaces}`, `pol-${i}`);
        api.server.update({ ...p, spec: policyObject(i + k, namespaces).spec });
      } else {
        // Every other change lands on this node's pods, the rest anywhere in the cluster.
        const i = k % 2 === 0 ? ((k * 13) % Math.floor(o.pods / o.nodes)) * o.nodes : (k * 104729) % o.pods;
        try {
          const p = api.server.get('pods', `ns-${i % namespaces}`, `pod-${i}`);
          api.server.update({ ...p, metadata: { ...p.metadata, labels: { ...(p.metadata?.labels ?? {}), app: `app-${k % 50}` } } });
        } catch {
          // replaced by the churn itself
        }
      }
      changes++;
      if (changes % Math.max(1, Math.round(o.churnPerSecond / 2)) === 0) rssMax = Math.max(rssMax, rssMiB(host.agent.pid));
      await sleep(interval);
    }
    const churn = { cpuPercent: ((cpuMs(host.agent.pid) - cpu0) / (performance.now() - t0)) * 100, rssMiBMax: Math.max(rssMax, rssMiB(host.agent.pid)), changes };
    o.log(`footprint: churn ${churn.cpuPercent.toFixed(1)} % CPU, max ${churn.rssMiBMax.toFixed(0)} MiB over ${changes} changes`);
    return {
      nodes: o.nodes,
      pods: o.pods,
      policies: o.policies,
      localPods: Math.ceil(o.pods / o.nodes),
      seedMs,
      startupMs,
      settleMs,
      settled,
      idle,
      churn,
      agentLog: path.relative(process.cwd(), host.agentLog),
      nodeOptions,
      agentEnv,
      idleWindow,
    };
  } finally {
    for (const problem of await cleanup.run()) o.log(`footprint cleanup: ${problem}`);
  }
}
