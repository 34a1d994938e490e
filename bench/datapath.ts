// Benchmark 3, the data path in the two-racks lab: iperf3 TCP throughput and ping latency, routed pod-to-pod
// across racks against node-to-node between the same two nodes (the same underlay path: the ceiling) and
// against a VXLAN overlay between the same nodes (the flannel-style alternative), built here for the purpose:
// a VXLAN device in each node namespace and a "pod" namespace of our own behind each node. Split paths say where
// the pod path's extra cost is: node → pod and pod → node (one end's veth + bridge), and pod → pod with
// bridge-nf-call-iptables off (what bridge netfilter, there for NetworkPolicy, costs).
import { execa } from 'execa';
import { labPaths } from '../src/lab/paths.js';
import type { LabStatusReport } from '../src/lab/status.js';
import { addNetns, BenchError, Cleanup, ip, ipBatch, setSysctl, sleep } from './lib/proc.js';
import { summarize, type Summary } from './lib/stats.js';
import { familyOf } from '../src/routes/ip-prefix.js';

export type PathKind = 'pod-routed' | 'node' | 'vxlan' | 'pod-routed-no-brnf' | 'node-to-pod' | 'pod-to-node';
export const PATH_LABELS: Record<PathKind, string> = {
  'pod-routed': 'pod → pod across racks, routed by podroute',
  node: 'node → node, same two nodes (ceiling)',
  vxlan: 'pod → pod over a VXLAN overlay between the same nodes',
  'pod-routed-no-brnf': 'split: pod → pod with bridge-nf-call-iptables off on both nodes',
  'node-to-pod': 'split: node → pod (the receiving pod\'s veth + bridge only)',
  'pod-to-node': 'split: pod → node (the sending pod\'s veth + bridge + netfilter only)',
};

/** The paths every repetition measures; the split ones say where the pod path's extra cost is. */
const KINDS: PathKind[] = ['node', 'pod-routed', 'pod-routed-no-brnf', 'node-to-pod', 'pod-to-node', 'vxlan'];
/** At least this many runs per path, whatever --reps says: single runs on a shared machine vary by ±30 %. */
const MIN_RUNS = 7;

export interface DatapathOptions {
  lab: string;
  /** Namespace prefix of the overlay "pods". */
  prefix: string;
  reps: number;
  /** Seconds per iperf3 run. */
  seconds: number;
  pings: number;
  log: (m: string) => void;
}

export interface DatapathResult {
  /** iperf3 runs per path (the repetitions, at least MIN_RUNS). */
  runs: number;
  from: { node: string; pod: string };
  to: { node: string; pod: string };
  throughputGbps: Partial<Record<PathKind, Summary>>;
  /** Retransmitted segments per run. */
  retransmits: Partial<Record<PathKind, Summary>>;
  rttMs: Partial<Record<PathKind, Summary>>;
  /**
   * Throughput of each path over node-to-node measured in the same round, right next to it (the order rotates
   * per round): a ratio of neighbours in time, robust to the machine's load drifting during the benchmark.
   */
  pairedRatio: Partial<Record<PathKind, Summary>>;
  /**
   * CPU seconds (iperf3 sender + receiver, kernel work included) per GB carried. The path's cost per byte: far
   * steadier than throughput on a shared machine, where a run's throughput is mostly how much CPU it got.
   */
  cpuSecondsPerGB: Partial<Record<PathKind, Summary>>;
  /** Cost per byte of each path over node-to-node's in the same round. */
  pairedCostRatio: Partial<Record<PathKind, Summary>>;
  mtu: Partial<Record<PathKind, number>>;
  failures: string[];
}

export interface Endpoint {
  netns: string;
  address: string;
}

export const IPERF_PORT = 5299;
/** The underlay's 1500 minus VXLAN's 50 bytes of outer headers, as flannel configures its pods. */
const VXLAN_MTU = 1450;

export interface IperfRun {
  gbps: number;
  retransmits: number;
  /** CPU seconds of sender + receiver (user + system, which holds the softirq work of veth, bridge, netfilter) per GB. */
  cpuSecondsPerGB: number;
}

/** One iperf3 TCP run from client to server (a one-shot server in the server's namespace), retried until it listens. */
export async function iperf(server: Endpoint, client: Endpoint, seconds: number): Promise<IperfRun> {
  const srv = execa('ip', ['netns', 'exec', server.netns, 'iperf3', '-s', '-1', '-B', server.address, '-p', String(IPERF_PORT)], { reject: false, timeout: (seconds + 30) * 1000 });
  try {
    let lastError = '';
    for (let attempt = 0; attempt < 50; attempt++) {
      const r = await execa('ip', ['netns', 'exec', client.netns, 'iperf3', '-c', server.address, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'], { reject: false, timeout: (seconds + 20) * 1000 });
      // iperf3 -J can exit 0 with an "error" and no totals (e.g. the server was not listening yet): try again.
      let j: {
        error?: string;
        end?: {
          sum_received?: { bits_per_second?: number; bytes?: number; seconds?: number };
          sum_sent?: { retransmits?: number };
          cpu_utilization_percent?: { host_total?: number; remote_total?: number };
        };
      } = {};
      try {
        j = JSON.parse(r.stdout) as typeof j;
      } catch {
        // not JSON: reported below
      }
      const bps = j.end?.sum_received?.bits_per_second;
      if (r.exitCode === 0 && typeof bps === 'number') {
        const cpu = j.end?.cpu_utilization_percent;
        const busySeconds = (((cpu?.host_total ?? NaN) + (cpu?.remote_total ?? NaN)) / 100) * (j.end?.sum_received?.seconds ?? NaN);
        return { gbps: bps / 1e9, retransmits: j.end?.sum_sent?.retransmits ?? 0, cpuSecondsPerGB: busySeconds / ((j.end?.sum_received?.bytes ?? NaN) / 1e9) };
      }
      lastError = j.error ?? (r.stdout.slice(0, 300) || r.stderr);
      // The server is not listening yet: try again shortly.
      await sleep(100);
    }
    throw new BenchError('BENCH_SETUP_FAILED', `iperf3 ${client.netns} -> ${server.address}: ${lastError}`);
  } finally {
    srv.kill('SIGKILL');
    await srv;
  }
}

async function pingRtt(from: Endpoint, to: Endpoint, count: number): Promise<number> {
  const r = await execa('ip', ['netns', 'exec', from.netns, 'ping', '-q', '-c', String(count), '-i', '0.02', '-I', from.address, to.address], { reject: false, timeout: 60_000 });
  const match = /rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)\//.exec(r.stdout);
  if (match === null) throw new BenchError('BENCH_SETUP_FAILED', `ping ${from.netns} -> ${to.address}: ${r.stdout || r.stderr}`);
  return Number(match[1]);
}

/** The MTU of an interface inside a namespace. */
async function mtuOf(netns: string, dev: string): Promise<number> {
  const out = JSON.parse(await ip(['-n', netns, '-j', 'link', 'show', 'dev', dev])) as { mtu: number }[];
  return out[0]?.mtu ?? NaN;
}

export async function runDatapath(status: LabStatusReport, o: DatapathOptions): Promise<DatapathResult> {
  const paths = labPaths(o.lab);
  const nodeA = status.nodes[0];
  const nodeB = status.nodes.find((n) => n.tor !== nodeA?.tor);
  if (nodeA === undefined || nodeB === undefined) throw new BenchError('BENCH_SETUP_FAILED', 'the lab needs two nodes in different racks');
  const v4 = (ips: string[]): string => ips.find((a) => familyOf(a) === 'ipv4') ?? '';
  const podA = status.pods.find((p) => p.node === nodeA.name && p.phase === 'Running');
  const podB = status.pods.find((p) => p.node === nodeB.name && p.phase === 'Running');
  if (podA === undefined || podB === undefined) throw new BenchError('BENCH_SETUP_FAILED', `no running pods on ${nodeA.name} and ${nodeB.name}`);
  const endpoints: Record<PathKind, [Endpoint, Endpoint]> = {
    'pod-routed': [
      { netns: podA.netns, address: v4(podA.ips) },
      { netns: podB.netns, address: v4(podB.ips) },
    ],
    node: [
      { netns: nodeA.netns, address: v4(nodeA.addresses) },
      { netns: nodeB.netns, address: v4(nodeB.addresses) },
    ],
    vxlan: [
      { netns: `${o.prefix}-vxa`, address: '172.30.1.2' },
      { netns: `${o.prefix}-vxb`, address: '172.30.2.2' },
    ],
    'pod-routed-no-brnf': [
      { netns: podA.netns, address: v4(podA.ips) },
      { netns: podB.netns, address: v4(podB.ips) },
    ],
    'node-to-pod': [
      { netns: nodeA.netns, address: v4(nodeA.addresses) },
      { netns: podB.netns, address: v4(podB.ips) },
    ],
    'pod-to-node': [
      { netns: podA.netns, address: v4(podA.ips) },
      { netns: nodeB.netns, address: v4(nodeB.addresses) },
    ],
  };
  // bridge-nf-call-iptables is turned off only around the runs of 'pod-routed-no-brnf' (the agent sets it at
  // start for NetworkPolicy of same-node traffic and does not watch it), and always put back.
  const bridgeNf = async (value: '0' | '1'): Promise<void> => {
    for (const n of [nodeA, nodeB]) await setSysctl(n.netns, 'net.bridge.bridge-nf-call-iptables', value);
  };
  const cleanup = new Cleanup();
  const result: DatapathResult = {
    from: { node: nodeA.name, pod: `${podA.namespace}/${podA.name}` },
    to: { node: nodeB.name, pod: `${podB.namespace}/${podB.name}` },
    // A smoke run (1 s iperf runs, `bench/run.ts --quick`) only checks that every path carries traffic.
    runs: o.seconds >= 2 ? Math.max(o.reps, MIN_RUNS) : o.reps,
    throughputGbps: {},
    retransmits: {},
    rttMs: {},
    pairedRatio: {},
    cpuSecondsPerGB: {},
    pairedCostRatio: {},
    mtu: {},
    failures: [],
  };
  try {
    // The overlay: VNI 4242 between the two nodes' underlay addresses, a /24 of "pods" behind each end.
    const sides = [
      { node: paths.netns(nodeA.name), local: endpoints.node[0].address, remote: endpoints.node[1].address, pod: endpoints.vxlan[0], net: '172.30.1', other: '172.30.2', tunnel: '172.30.0.1', peer: '172.30.0.2' },
      { node: paths.netns(nodeB.name), local: endpoints.node[1].address, remote: endpoints.node[0].address, pod: endpoints.vxlan[1], net: '172.30.2', other: '172.30.1', tunnel: '172.30.0.2', peer: '172.30.0.1' },
    ];
    for (const [i, s] of sides.entries()) {
      await addNetns(s.pod.netns, cleanup);
      const hostSide = `${o.prefix}vp${i}`;
      await ip(['link', 'add', hostSide, 'netns', s.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', s.pod.netns]);
      cleanup.add(`veth ${hostSide}`, () => ip(['-n', s.node, 'link', 'del', hostSide]).then(() => undefined));
      await ip(['-n', s.node, 'link', 'add', `${o.prefix}vx`, 'mtu', String(VXLAN_MTU), 'type', 'vxlan', 'id', '4242', 'local', s.local, 'remote', s.remote, 'dstport', '4789']);
      cleanup.add(`vxlan in ${s.node}`, () => ip(['-n', s.node, 'link', 'del', `${o.prefix}vx`]).then(() => undefined));
      await ipBatch(s.node, [
        `addr add ${s.tunnel}/30 dev ${o.prefix}vx`,
        `link set ${o.prefix}vx up`,
        `link set ${hostSide} mtu ${VXLAN_MTU}`,
        `addr add ${s.net}.1/24 dev ${hostSide}`,
        `link set ${hostSide} up`,
        `route add ${s.other}.0/24 via ${s.peer} dev ${o.prefix}vx`,
      ]);
      await ipBatch(s.pod.netns, [`link set eth0 mtu ${VXLAN_MTU}`, `addr add ${s.pod.address}/24 dev eth0`, 'link set eth0 up', `route add default via ${s.net}.1`]);
    }
    const podMtu = await mtuOf(podA.netns, 'eth0');
    result.mtu = { 'pod-routed': podMtu, node: await mtuOf(nodeA.netns, 'eth0'), vxlan: await mtuOf(endpoints.vxlan[0].netns, 'eth0'), 'pod-routed-no-brnf': podMtu, 'node-to-pod': podMtu, 'pod-to-node': podMtu };
    // Every path must carry a packet before anything is timed.
    for (const [kind, [a, b]] of Object.entries(endpoints)) await pingRtt(a, b, 3).catch((err: unknown) => result.failures.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`));

    const gbps = new Map<PathKind, number[]>();
    const retr = new Map<PathKind, number[]>();
    const rtt = new Map<PathKind, number[]>();
    const paired = new Map<PathKind, number[]>();
    const cost = new Map<PathKind, number[]>();
    const pairedCost = new Map<PathKind, number[]>();
    const add = (m: Map<PathKind, number[]>, k: PathKind, v: number): void => void m.set(k, [...(m.get(k) ?? []), v]);
    for (let round = 0; round < result.runs; round++) {
      // Every path once per round, the order rotated by one each round: no path always follows the same one.
      const order = KINDS.map((_, i) => KINDS[(i + round) % KINDS.length]!);
      const roundGbps = new Map<PathKind, number>();
      const roundCost = new Map<PathKind, number>();
      for (const kind of order) {
        const [a, b] = endpoints[kind];
        try {
          if (kind === 'pod-routed-no-brnf') await bridgeNf('0');
          try {
            const t = await iperf(b, a, o.seconds);
            roundGbps.set(kind, t.gbps);
            add(gbps, kind, t.gbps);
            if (Number.isFinite(t.cpuSecondsPerGB)) {
              roundCost.set(kind, t.cpuSecondsPerGB);
              add(cost, kind, t.cpuSecondsPerGB);
            }
            add(retr, kind, t.retransmits);
          } finally {
            if (kind === 'pod-routed-no-brnf') await bridgeNf('1');
          }
          if (round < o.reps) add(rtt, kind, await pingRtt(a, b, o.pings));
        } catch (err) {
          result.failures.push(`round ${round + 1} ${kind}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      const node = roundGbps.get('node');
      if (node !== undefined && node > 0) for (const [kind, v] of roundGbps) add(paired, kind, v / node);
      const nodeCost = roundCost.get('node');
      if (nodeCost !== undefined && nodeCost > 0) for (const [kind, v] of roundCost) add(pairedCost, kind, v / nodeCost);
      o.log(`data path: round ${round + 1}/${result.runs} done`);
    }
    for (const k of KINDS) {
      result.throughputGbps[k] = summarize(gbps.get(k) ?? []);
      result.retransmits[k] = summarize(retr.get(k) ?? []);
      result.rttMs[k] = summarize(rtt.get(k) ?? []);
      result.pairedRatio[k] = summarize(paired.get(k) ?? []);
      result.cpuSecondsPerGB[k] = summarize(cost.get(k) ?? []);
      result.pairedCostRatio[k] = summarize(pairedCost.get(k) ?? []);
    }
  } finally {
    for (const problem of await cleanup.run()) o.log(`data path cleanup: ${problem}`);
  }
  return result;
}
