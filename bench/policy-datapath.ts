// Issue 4's packet-path figure: iperf3 TCP pod-to-pod across racks in the two-racks lab, with no NetworkPolicy and
// with 500 policies that select both pods and allow the traffic, alternated several times side by side. The
// policies go through the lab API server and the agents enforce them (each run waits until both nodes' kernels
// hold every chain our compiler says they should). Established traffic is accepted before any namespace or policy chain, so the
// cost should not grow with the number of policies.
import { execa } from 'execa';
import type { NetworkPolicy, Pod } from '../src/kube/wire.js';
import { apiRequest } from '../src/lab/api.js';
import type { LabStatusReport } from '../src/lab/status.js';
import { labPaths } from '../src/lab/paths.js';
import { CHAINS } from '../src/policy/compile.js';
import { compilePolicies } from '../test/unit/policy/scratch-compile.js';
import { parseIptablesSave } from '../src/policy/apply.js';
import { IPERF_PORT, iperf } from './datapath.js';
import { BenchError, pollUntil } from './lib/proc.js';
import { summarize, type Summary } from './lib/stats.js';
import { familyOf } from '../src/routes/ip-prefix.js';

export interface PolicyDatapathOptions {
  lab: string;
  /** Policies in the "with" state (default 500). */
  policies: number;
  /** Alternations (each: one run without, one with policies; the order flips every time). */
  reps: number;
  /** Seconds per iperf3 run. */
  seconds: number;
  log: (m: string) => void;
}

export interface PolicyDatapathResult {
  from: { node: string; pod: string };
  to: { node: string; pod: string };
  policies: number;
  /** Chains and rules the two nodes held with the policies in (both families). */
  kernel: { node: string; chains: number; rules: number }[];
  gbps: { none: Summary; policies: Summary };
  /** Every run in order: which state and the throughput. */
  runs: { state: 'none' | 'policies'; gbps: number }[];
  /** Median with policies over median without (1.0 = no cost). */
  ratio: number;
  /** With over without within each alternation (the two runs next to each other), and their median. */
  pairRatios: number[];
  pairRatio: number;
  /** How long the agents took to enforce the 500 policies (API writes until both kernels hold them), per rep. */
  enforceMs: number[];
}

const API_NETPOL = '/apis/networking.k8s.io/v1';
const POLICY_PREFIX = 'bench-dp-';

/** 500 policies of mixed shapes in the two pods' namespaces; each selects a pod, and together they allow iperf3. */
export function datapathPolicies(count: number, namespaces: [string, string], podRange: { v4: string; v6: string }): NetworkPolicy[] {
  return Array.from({ length: count }, (_, i) => {
    const ns = namespaces[i % 2] ?? namespaces[0];
    const shape = i % 5;
    const spec: NetworkPolicy['spec'] =
      shape === 0
        ? { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 5000, endPort: 6000 }] }] }
        : shape === 1
          ? { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }] }, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['x', 'y', 'z'] }] } }], ports: [{ port: IPERF_PORT }] }] }
          : shape === 2
            ? { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: podRange.v4 } }, { ipBlock: { cidr: podRange.v6 } }] }] }
            : shape === 3
              ? { podSelector: { matchLabels: {} }, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'bench', operator: 'DoesNotExist' }] }, namespaceSelector: {} }] }] }
              : { podSelector: {}, policyTypes: ['Ingress', 'Egress'], ingress: [{ ports: [{ port: 80 }, { port: `p${i % 7}` }] }], egress: [{ ports: [{ port: IPERF_PORT }, { protocol: 'UDP', port: 53 }] }] };
    return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: ns, name: `${POLICY_PREFIX}${i}` }, spec };
  });
}

async function api(lab: string, method: string, urlPath: string, body?: unknown): Promise<unknown> {
  const res = await apiRequest(labPaths(lab).apiSocket, method, urlPath, body);
  if (res.status >= 300 && !(method === 'DELETE' && res.status === 404)) throw new BenchError('BENCH_SETUP_FAILED', `${method} ${urlPath} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
  return res.body;
}

async function inBatches<T>(items: T[], size: number, f: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(f));
}

/** Both nodes' kernels hold exactly the chain names our compiler wants for the API server's objects now. */
async function waitEnforced(lab: string, status: LabStatusReport, nodes: string[], deadlineMs: number): Promise<{ node: string; chains: number; rules: number }[]> {
  const [pods, namespaces, policies] = await Promise.all([api(lab, 'GET', '/api/v1/pods'), api(lab, 'GET', '/api/v1/namespaces'), api(lab, 'GET', `${API_NETPOL}/networkpolicies`)]);
  const cluster = { pods: (pods as { items: Pod[] }).items, namespaces: (namespaces as { items: [] }).items, policies: (policies as { items: NetworkPolicy[] }).items };
  return pollUntil(`the agents of ${nodes.join(', ')} enforce ${cluster.policies.length} policies`, deadlineMs, 200, async () => {
    const out: { node: string; chains: number; rules: number }[] = [];
    for (const name of nodes) {
      const n = status.nodes.find((x) => x.name === name);
      if (n === undefined) throw new BenchError('BENCH_SETUP_FAILED', `no node ${name} in the lab`);
      const want = compilePolicies({ ...cluster, node: { name, addresses: n.addresses, podCIDRs: n.podCIDRs } });
      let chains = 0;
      let rules = 0;
      for (const [family, cmd] of [[want.v4, 'iptables-save'], [want.v6, 'ip6tables-save']] as const) {
        const saved = parseIptablesSave((await execa('ip', ['netns', 'exec', n.netns, cmd, '-t', 'filter'])).stdout);
        // The source-binding chain depends on the node's CNI records, not on the API's objects: left out of the check.
        const have = [...saved.chains.keys()].filter((c) => c !== CHAINS.source).sort();
        const expected = [...family.chains.keys()].sort();
        if (have.length !== expected.length || have.some((c, i) => c !== expected[i])) return undefined;
        chains += have.length;
        rules += [...saved.chains.values()].reduce((s, r) => s + r.length, 0);
      }
      out.push({ node: name, chains, rules });
    }
    return out;
  });
}

export async function runPolicyDatapath(status: LabStatusReport, o: PolicyDatapathOptions): Promise<PolicyDatapathResult> {
  const nodeA = status.nodes[0];
  const nodeB = status.nodes.find((n) => n.tor !== nodeA?.tor);
  if (nodeA === undefined || nodeB === undefined) throw new BenchError('BENCH_SETUP_FAILED', 'the lab needs two nodes in different racks');
  const v4 = (ips: string[]): string => ips.find((a) => familyOf(a) === 'ipv4') ?? '';
  const podA = status.pods.find((p) => p.node === nodeA.name && p.phase === 'Running');
  const podB = status.pods.find((p) => p.node === nodeB.name && p.phase === 'Running' && p.namespace !== podA?.namespace) ?? status.pods.find((p) => p.node === nodeB.name && p.phase === 'Running');
  if (podA === undefined || podB === undefined) throw new BenchError('BENCH_SETUP_FAILED', `no running pods on ${nodeA.name} and ${nodeB.name}`);
  const client = { netns: podA.netns, address: v4(podA.ips) };
  const server = { netns: podB.netns, address: v4(podB.ips) };
  const policies = datapathPolicies(o.policies, [podA.namespace, podB.namespace], { v4: '10.244.0.0/16', v6: 'fd00:10:244::/56' });
  const nodes = [nodeA.name, nodeB.name];
  const runs: PolicyDatapathResult['runs'] = [];
  const enforceMs: number[] = [];
  let kernel: PolicyDatapathResult['kernel'] = [];
  let current: 'none' | 'policies' = 'none';
  const setState = async (state: 'none' | 'policies'): Promise<void> => {
    // Runs come in pairs whose order flips (none, with, with, none, ...): consecutive runs of one state share it.
    if (state === current) return;
    current = state;
    const t = Date.now();
    if (state === 'policies') {
      await inBatches(policies, 25, (p) => api(o.lab, 'POST', `${API_NETPOL}/namespaces/${p.metadata?.namespace}/networkpolicies`, p));
      kernel = await waitEnforced(o.lab, status, nodes, 300_000);
      enforceMs.push(Date.now() - t);
    } else {
      await removePolicies(o.lab, policies);
      await waitEnforced(o.lab, status, nodes, 300_000);
    }
  };
  try {
    await removePolicies(o.lab, policies);
    for (let rep = 0; rep < o.reps; rep++) {
      const order: ('none' | 'policies')[] = rep % 2 === 0 ? ['none', 'policies'] : ['policies', 'none'];
      for (const state of order) {
        await setState(state);
        runs.push({ state, gbps: (await iperf(server, client, o.seconds)).gbps });
      }
      o.log(`policy data path: alternation ${rep + 1}/${o.reps} done`);
    }
  } finally {
    await removePolicies(o.lab, policies).catch((err: unknown) => o.log(`policy data path cleanup: ${err instanceof Error ? err.message : String(err)}`));
  }
  const none = summarize(runs.filter((r) => r.state === 'none').map((r) => r.gbps));
  const pairRatios: number[] = [];
  for (let i = 0; i + 1 < runs.length; i += 2) {
    const pair = [runs[i], runs[i + 1]];
    const without = pair.find((x) => x?.state === 'none')?.gbps;
    const withP = pair.find((x) => x?.state === 'policies')?.gbps;
    if (without !== undefined && withP !== undefined && without > 0) pairRatios.push(withP / without);
  }
  const withPolicies = summarize(runs.filter((r) => r.state === 'policies').map((r) => r.gbps));
  return {
    from: { node: nodeA.name, pod: `${podA.namespace}/${podA.name}` },
    to: { node: nodeB.name, pod: `${podB.namespace}/${podB.name}` },
    policies: o.policies,
    kernel,
    gbps: { none, policies: withPolicies },
    runs,
    ratio: none.median > 0 ? withPolicies.median / none.median : NaN,
    pairRatios,
    pairRatio: summarize(pairRatios).median,
    enforceMs,
  };
}

async function removePolicies(lab: string, policies: NetworkPolicy[]): Promise<void> {
  await inBatches(policies, 25, (p) => api(lab, 'DELETE', `${API_NETPOL}/namespaces/${p.metadata?.namespace}/networkpolicies/${p.metadata?.name}`));
}
