// Benchmark 3, the data path in the two-racks lab: iperf3 TCP throughput and ping latency, routed pod-to-pod
// across racks against node-to-node between the same two nodes (the same underlay path: the ceiling) and
// against a VXLAN overlay between the same nodes (the flannel-style alternative), built here for the purpose:
// a VXLAN device in each node namespace and a "pod" namespace of our own behind each node.
import { execa } from 'execa';
import { labPaths } from '../src/lab/paths.js';
import type { LabStatusReport } from '../src/lab/lab.js';
import { addNetns, BenchError, Cleanup, ip, ipBatch, sleep } from './lib/proc.js';
import { summarize, type Summary } from './lib/stats.js';

export type PathKind = 'pod-routed' | 'node' | 'vxlan';
export const PATH_LABELS: Record<PathKind, string> = {
  'pod-routed': 'pod → pod across racks, routed by podroute',
  node: 'node → node, same two nodes (ceiling)',
  vxlan: 'pod → pod over a VXLAN overlay between the same nodes',
};

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
  from: { node: string; pod: string };
  to: { node: string; pod: string };
  throughputGbps: Partial<Record<PathKind, Summary>>;
  /** Retransmitted segments per run. */
  retransmits: Partial<Record<PathKind, Summary>>;
  rttMs: Partial<Record<PathKind, Summary>>;
  mtu: Partial<Record<PathKind, number>>;
  failures: string[];
}

interface Endpoint {
  netns: string;
  address: string;
}

const IPERF_PORT = 5299;
/** The underlay's 1500 minus VXLAN's 50 bytes of outer headers, as flannel configures its pods. */
const VXLAN_MTU = 1450;

async function iperf(server: Endpoint, client: Endpoint, seconds: number): Promise<{ gbps: number; retransmits: number }> {
  const srv = execa('ip', ['netns', 'exec', server.netns, 'iperf3', '-s', '-1', '-B', server.address, '-p', String(IPERF_PORT)], { reject: false, timeout: (seconds + 30) * 1000 });
  try {
    let lastError = '';
    for (let attempt = 0; attempt < 50; attempt++) {
      const r = await execa('ip', ['netns', 'exec', client.netns, 'iperf3', '-c', server.address, '-p', String(IPERF_PORT), '-t', String(seconds), '-J'], { reject: false, timeout: (seconds + 20) * 1000 });
      // iperf3 -J can exit 0 with an "error" and no totals (e.g. the server was not listening yet): try again.
      let j: { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } } = {};
      try {
        j = JSON.parse(r.stdout) as typeof j;
      } catch {
        // not JSON: reported below
      }
      const bps = j.end?.sum_received?.bits_per_second;
      if (r.exitCode === 0 && typeof bps === 'number') return { gbps: bps / 1e9, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
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
  const v4 = (ips: string[]): string => ips.find((a) => !a.includes(':')) ?? '';
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
  };
  const cleanup = new Cleanup();
  const result: DatapathResult = {
    from: { node: nodeA.name, pod: `${podA.namespace}/${podA.name}` },
    to: { node: nodeB.name, pod: `${podB.namespace}/${podB.name}` },
    throughputGbps: {},
    retransmits: {},
    rttMs: {},
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
    result.mtu = { 'pod-routed': await mtuOf(podA.netns, 'eth0'), node: await mtuOf(nodeA.netns, 'eth0'), vxlan: await mtuOf(endpoints.vxlan[0].netns, 'eth0') };
    // Every path must carry a packet before anything is timed.
    for (const [kind, [a, b]] of Object.entries(endpoints)) await pingRtt(a, b, 3).catch((err: unknown) => result.failures.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`));

    const kinds = Object.keys(endpoints) as PathKind[];
    const gbps = new Map<PathKind, number[]>();
    const retr = new Map<PathKind, number[]>();
    const rtt = new Map<PathKind, number[]>();
    const add = (m: Map<PathKind, number[]>, k: PathKind, v: number): void => void m.set(k, [...(m.get(k) ?? []), v]);
    for (let rep = 0; rep < o.reps; rep++) {
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[(i + rep) % kinds.length]!;
        const [a, b] = endpoints[kind];
        try {
          const t = await iperf(b, a, o.seconds);
          add(gbps, kind, t.gbps);
          add(retr, kind, t.retransmits);
          add(rtt, kind, await pingRtt(a, b, o.pings));
        } catch (err) {
          result.failures.push(`rep ${rep + 1} ${kind}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      o.log(`data path: repetition ${rep + 1}/${o.reps} done`);
    }
    for (const k of kinds) {
      result.throughputGbps[k] = summarize(gbps.get(k) ?? []);
      result.retransmits[k] = summarize(retr.get(k) ?? []);
      result.rttMs[k] = summarize(rtt.get(k) ?? []);
    }
  } finally {
    for (const problem of await cleanup.run()) o.log(`data path cleanup: ${problem}`);
  }
  return result;
}
