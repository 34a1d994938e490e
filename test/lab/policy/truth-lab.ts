// The lab side of the NetworkPolicy truth tables: a running lab (two-racks), its objects changed through the lab
// API server, the whole reachability matrix probed from every pod and every node, and compared cell by cell with
// the oracle (src/policy/oracle.ts) evaluated on the objects the API server holds at that moment.
//
// Probing notes:
// - Denied traffic is dropped, so a denied probe ends by its timeout: probes are short and run concurrently.
// - A cell counts as allowed only when the right pod answers and it saw the source address we expect (no NAT:
//   ipBlock rules match pod and node addresses as they are).
// - Every probe is a fresh socket with a kernel-chosen (random) source port. A UDP probe can still land on the
//   5-tuple of an earlier allowed flow whose conntrack entry is alive (UDP entries live 30 s here) and pass as
//   ESTABLISHED although the rules now drop new flows. So a UDP cell that passes where the oracle says "deny" is
//   probed again, twice, with new sockets: a real hole passes every time (iptables verdicts for a new flow are
//   deterministic), a conntrack hit does not repeat. Such cells are counted and reported, not hidden, and a round
//   that had any is not taken as settled (its first probes may also have raced the rules being replaced).
// - An allowed probe that timed out gets one long chance (2 s): on a busy machine a reply can outlast 400 ms, and a
//   dropped packet never passes however long one waits.
// - Before every round the pods' and the node bridges' neighbor caches are flushed (as if the entries had expired):
//   IPv6 neighbor discovery crosses the node's ip6tables, and an entry resolved under earlier rules would hide
//   rules that break it. TRUTH_VERBOSE=1 prints the difference of every round that did not settle.
import type { Namespace, NetworkPolicy, Pod } from '../../../src/kube/wire.js';
import { execa } from 'execa';
import YAML from 'yaml';
import { apiRequest } from '../../../src/lab/api.js';
import { LAB_CNI_BRIDGE } from '../../../src/lab/daemons.js';
import { labDown } from '../../../src/lab/down.js';
import type { LabStatusReport } from '../../../src/lab/status.js';
import { labUp } from '../../../src/lab/up.js';
import { nodeProbeSocket } from '../../../src/lab/kubelet/kubelet.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections, parsePodReply, probeMany, type ProbeJob, type ProbeResult } from '../../../src/lab/probe.js';
import { readLabState } from '../../../src/lab/state.js';
import type { Topology } from '../../../src/lab/topology.js';
import { allowed, type OracleEndpoint } from '../../unit/policy/oracle.js';
import type { ClusterState } from '../../../src/policy/types.js';
import { familyOf, IP_FAMILIES, ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { pollUntil } from '../../poll.js';

export const TRUTH_PORTS = [80, 81] as const;
export const TRUTH_PROTOCOLS = ['TCP', 'UDP'] as const;
export const TRUTH_FAMILIES: readonly IpFamily[] = IP_FAMILIES;
export type TruthProtocol = (typeof TRUTH_PROTOCOLS)[number];

export interface TruthSource {
  /** `ns/name` for a pod, `node/NAME` for a node. */
  id: string;
  kind: 'pod' | 'node';
  node: string;
  controlSocket: string;
}

export interface TruthCell {
  from: string;
  to: string;
  family: IpFamily;
  port: number;
  protocol: TruthProtocol;
}

export interface CellOutcome extends TruthCell {
  expected: boolean;
  observed: boolean;
  /** Why a probe failed, or what was wrong with its answer. */
  detail?: string;
  /** A UDP pass the re-probes did not repeat (a live conntrack entry, or the rules changed mid-round). */
  conntrackSuspect?: boolean;
  /** Allowed, but only answered within the long re-probe timeout. */
  slow?: boolean;
}

export interface RoundReport {
  outcomes: CellOutcome[];
  mismatches: CellOutcome[];
  conntrackSuspects: CellOutcome[];
  /** Allowed cells that needed the long timeout. */
  slow: number;
}

export interface SettleReport {
  rounds: number;
  elapsedMs: number;
  cells: number;
  allowedCells: number;
  /** UDP passes (where the oracle denies) that re-probes did not repeat: rules changing mid-round, or conntrack. */
  conntrackSuspects: number;
  /** Allowed probes that needed the long timeout, over all rounds. */
  slow: number;
}

export class TruthTableError extends Error {
  readonly code = 'TRUTH_TABLE_MISMATCH';
  constructor(message: string) {
    super(message);
    this.name = 'TruthTableError';
  }
}

/** A pod a test creates after the lab is up. */
export interface LatePod {
  namespace: string;
  name: string;
  node: string;
  labels: Record<string, string>;
  ports: { name: string; containerPort: number; protocol: 'TCP' | 'UDP' }[];
}

export interface TruthTarget {
  /** `ns/name` for a pod, `external/NAME` for a host outside the cluster. */
  id: string;
  pod?: Pod;
  address(family: IpFamily): string | undefined;
  ports: { port: number; protocol: TruthProtocol }[];
}

export interface ExpectedCell {
  cell: TruthCell;
  allowed: boolean;
  /** The client address the target must report; undefined when any is right (masqueraded to the outside). */
  srcAddress: string | undefined;
}


const API_NETPOL = '/apis/networking.k8s.io/v1';
/** The one long chance of an allowed probe that timed out (see round()). */
const SLOW_PROBE_TIMEOUT_MS = 2000;
const METADATA_NAME_LABEL = 'kubernetes.io/metadata.name';

function cellKey(c: TruthCell): string {
  return `${c.from}>${c.to}>${c.family}>${c.protocol}/${c.port}`;
}

function podId(pod: Pod): string {
  return `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
}

function podIpOf(pod: Pod, family: IpFamily): string | undefined {
  return (pod.status?.podIPs ?? []).map((p) => p.ip).find((ip) => ip !== undefined && familyOf(ip) === family);
}

async function api(lab: string, method: string, urlPath: string, body?: unknown, contentType?: string): Promise<unknown> {
  const res = await apiRequest(labPaths(lab).apiSocket, method, urlPath, body, contentType);
  if (res.status >= 300) {
    throw new Error(`${method} ${urlPath} answered ${res.status}: ${JSON.stringify(res.body)}`);
  }
  return res.body;
}

export interface TruthLabOptions {
  lab: string;
  topologyFile: string;
  topology: Topology;
  /** Timeout of one probe: denied probes take this long (default 400 ms). */
  probeTimeoutMs?: number;
  /** Probes in flight (default 160). */
  concurrency?: number;
}

/**
 * One lab for a whole truth-table run. `start()` brings it up and learns the source addresses the nodes use
 * (from an unrestricted round); `stop()` always takes it down.
 */
export class TruthLab {
  readonly lab: string;
  private readonly opts: TruthLabOptions;
  private readonly probeTimeoutMs: number;
  private readonly concurrency: number;
  private status: LabStatusReport | undefined;
  /** node -> family -> address it uses towards its own pods (bridge) and towards other nodes' pods. */
  private readonly nodeSource = new Map<string, { local: Map<IpFamily, string>; remote: Map<IpFamily, string> }>();

  constructor(options: TruthLabOptions) {
    this.opts = options;
    this.lab = options.lab;
    this.probeTimeoutMs = options.probeTimeoutMs ?? 400;
    this.concurrency = options.concurrency ?? 160;
  }

  async start(): Promise<LabStatusReport> {
    if (readLabState(this.lab) !== undefined) await labDown(this.lab);
    this.status = await labUp({ topologyFile: this.opts.topologyFile, name: this.lab, timeoutMs: 200_000 });
    return this.status;
  }

  async stop(): Promise<void> {
    closeProbeConnections();
    if (readLabState(this.lab) !== undefined) await labDown(this.lab);
  }

  get nodes(): string[] {
    return this.opts.topology.nodes.map((n) => n.name);
  }

  // ---- objects ---------------------------------------------------------------------------------------------

  /** The objects NetworkPolicy depends on, as the API server holds them now (what the agents watch). */
  async cluster(): Promise<ClusterState> {
    const [pods, namespaces, policies] = await Promise.all([
      api(this.lab, 'GET', '/api/v1/pods'),
      api(this.lab, 'GET', '/api/v1/namespaces'),
      api(this.lab, 'GET', `${API_NETPOL}/networkpolicies`),
    ]);
    return {
      pods: (pods as { items: Pod[] }).items,
      namespaces: (namespaces as { items: Namespace[] }).items,
      policies: (policies as { items: NetworkPolicy[] }).items,
    };
  }

  /**
   * Runs kubectl against the lab as a user would (its default strict field validation included); returns stdout.
   * A refusal fails the step with kubectl's own message.
   */
  async kubectl(args: string[], stdin?: string): Promise<string> {
    const res = await execa('kubectl', ['--kubeconfig', labPaths(this.lab).kubeconfig, ...args], {
      ...(stdin === undefined ? {} : { input: stdin }),
      reject: false,
      timeout: 30_000,
    });
    if (res.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${res.exitCode}): ${res.stderr}`);
    return res.stdout;
  }

  /** `kubectl apply` of a NetworkPolicy written as YAML (the wire format kubectl sends). */
  async applyPolicy(policy: NetworkPolicy): Promise<void> {
    await this.kubectl(['apply', '-f', '-'], YAML.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', ...policy }, { version: '1.1' }));
  }

  /** `kubectl apply` of a Pod bound to a node, then waits until it runs and serves. */
  async createPod(pod: LatePod): Promise<Pod> {
    const manifest = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: pod.name, namespace: pod.namespace, labels: pod.labels },
      spec: { nodeName: pod.node, containers: [{ name: 'serve', image: 'podroute.io/lab-podserver', ports: pod.ports }] },
    };
    await this.kubectl(['apply', '-f', '-'], YAML.stringify(manifest, { version: '1.1' }));
    return this.waitForPod(`${pod.namespace}/${pod.name}`);
  }

  /** Waits until a pod runs with both addresses and its pod server answers on its control socket. */
  async waitForPod(id: string, deadlineMs = 60_000): Promise<Pod> {
    const [namespace, name] = id.split('/') as [string, string];
    return await pollUntil(
      `pod ${id} running with two addresses`,
      async () => {
        const pod = (await api(this.lab, 'GET', `/api/v1/namespaces/${namespace}/pods/${name}`)) as Pod;
        if (pod.status?.phase !== 'Running' || podIpOf(pod, 'ipv4') === undefined || podIpOf(pod, 'ipv6') === undefined) throw new Error(JSON.stringify(pod.status));
        // The pod server opens its control socket only after binding every port.
        const [r] = await probeMany([
          { from: labPaths(this.lab).podSocket(namespace, name), target: '127.0.0.1', port: 9, protocol: 'tcp', timeoutMs: 500 },
        ]);
        if (r === undefined || /control socket/.test(r.error ?? '')) throw new Error(`its pod server does not answer: ${r?.error}`);
        return pod;
      },
      { timeoutMs: deadlineMs, intervalMs: 200 },
    );
  }

  /** Deletes a pod and waits until it is gone. */
  async deletePod(namespace: string, name: string, deadlineMs = 60_000): Promise<void> {
    await this.kubectl(['delete', 'pod', name, '-n', namespace, '--wait=false']);
    await pollUntil(
      `pod ${namespace}/${name} gone after kubectl delete`,
      async () => (await apiRequest(labPaths(this.lab).apiSocket, 'GET', `/api/v1/namespaces/${namespace}/pods/${name}`)).status === 404,
      { timeoutMs: deadlineMs, intervalMs: 200 },
    );
  }

  /**
   * Back to the topology's state: no policies, the topology's labels on pods and namespaces, no late pods. Not
   * waited for in the data plane: the next step polls until the matrix is what its own objects say.
   */
  async reset(): Promise<void> {
    const cluster = await this.cluster();
    if (cluster.policies.length > 0) await this.kubectl(['delete', 'networkpolicy', '--all', '--all-namespaces']);
    const topologyPods = new Set(this.opts.topology.kubernetes.pods.map((p) => `${p.namespace}/${p.name}`));
    for (const p of cluster.pods) {
      if (!topologyPods.has(podId(p))) await this.deletePod(p.metadata?.namespace ?? '', p.metadata?.name ?? '');
    }
    // `kubectl label` arguments that bring labels back to the topology's: k=v to set, k- to remove.
    const restore = (current: Record<string, string> | undefined, wanted: Record<string, string>): string[] => {
      const args: string[] = [];
      for (const k of Object.keys(current ?? {})) if (!(k in wanted) && k !== METADATA_NAME_LABEL) args.push(`${k}-`);
      for (const [k, v] of Object.entries(wanted)) if (current?.[k] !== v) args.push(`${k}=${v}`);
      return args;
    };
    for (const want of this.opts.topology.kubernetes.namespaces) {
      const seen = cluster.namespaces.find((n) => n.metadata?.name === want.name);
      const args = restore(seen?.metadata?.labels, want.labels);
      if (args.length > 0) await this.kubectl(['label', 'namespace', want.name, ...args, '--overwrite']);
    }
    for (const want of this.opts.topology.kubernetes.pods) {
      const seen = cluster.pods.find((p) => podId(p) === `${want.namespace}/${want.name}`);
      const args = restore(seen?.metadata?.labels, want.labels);
      if (args.length > 0) await this.kubectl(['label', 'pod', want.name, '-n', want.namespace, ...args, '--overwrite']);
    }
  }

  // ---- the matrix ------------------------------------------------------------------------------------------

  /** Sources: every pod of the cluster (topology and late ones) and every node. */
  sources(cluster: ClusterState): TruthSource[] {
    const paths = labPaths(this.lab);
    const pods = livePods(cluster).map(
      (p): TruthSource => ({
        id: podId(p),
        kind: 'pod',
        node: p.spec?.nodeName ?? '',
        controlSocket: paths.podSocket(p.metadata?.namespace ?? '', p.metadata?.name ?? ''),
      }),
    );
    const nodes = this.nodes.map((n): TruthSource => ({ id: `node/${n}`, kind: 'node', node: n, controlSocket: nodeProbeSocket(this.lab, n) }));
    return [...pods, ...nodes];
  }

  /** The address a node's probe leaves with towards a pod, or outside (learned by learnNodeSources()). */
  private nodeAddress(node: string, dst: Pod | undefined, family: IpFamily): string {
    const learned = this.nodeSource.get(node);
    const address = (dst?.spec?.nodeName === node ? learned?.local : learned?.remote)?.get(family);
    if (address === undefined) throw new Error(`no learned IPv${ipVersion(family)} source address of node ${node} (learnNodeSources not run?)`);
    return address;
  }

  /**
   * Targets: every pod on ports 80/81 TCP+UDP, and the topology's external hosts on their ports (egress to
   * addresses outside the cluster; those hosts see the pods masqueraded, so their answers' client address is not
   * checked).
   */
  targets(cluster: ClusterState): TruthTarget[] {
    const pods = livePods(cluster).map(
      (pod): TruthTarget => ({
        id: podId(pod),
        pod,
        address: (family) => podIpOf(pod, family),
        ports: TRUTH_PROTOCOLS.flatMap((protocol) => TRUTH_PORTS.map((port) => ({ port, protocol }))),
      }),
    );
    const externals = this.opts.topology.externalHosts.map(
      (ext): TruthTarget => ({
        id: `external/${ext.name}`,
        address: (family) => ext.addresses.map((a) => a.split('/')[0] ?? a).find((a) => familyOf(a) === family),
        ports: ext.ports,
      }),
    );
    return [...pods, ...externals];
  }

  /** The oracle's answer for every cell of the matrix, and the client address a passing probe must show. */
  expected(cluster: ClusterState): Map<string, ExpectedCell> {
    const out = new Map<string, ExpectedCell>();
    const pods = livePods(cluster);
    for (const source of this.sources(cluster)) {
      const srcPod = pods.find((p) => podId(p) === source.id);
      for (const target of this.targets(cluster)) {
        for (const family of TRUTH_FAMILIES) {
          const dstAddress = target.address(family);
          if (dstAddress === undefined) continue;
          let srcAddress: string | undefined;
          let src: OracleEndpoint;
          if (srcPod !== undefined) {
            srcAddress = podIpOf(srcPod, family) ?? '';
            src = { pod: srcPod };
          } else {
            const address = this.nodeAddress(source.node, target.pod, family);
            srcAddress = address;
            src = { ip: address, node: source.node };
          }
          const dst: OracleEndpoint = target.pod !== undefined ? { pod: target.pod } : { ip: dstAddress };
          // Outside the cluster the masquerade reconciler rewrites pod sources: any client address is right there.
          if (target.pod === undefined) srcAddress = undefined;
          for (const { port, protocol } of target.ports) {
            const cell: TruthCell = { from: source.id, to: target.id, family, port, protocol };
            // A pod reaching its own address never leaves its namespace (loopback): no node rule can see it,
            // and the upstream e2e suite allows it too (AllowLoopback).
            const loopback = source.id === cell.to;
            const verdict = loopback || allowed(cluster, { src, dst, port, protocol, family });
            out.set(cellKey(cell), { cell, allowed: verdict, srcAddress });
          }
        }
      }
    }
    return out;
  }

  private jobsFor(cluster: ClusterState, cells: TruthCell[]): ProbeJob[] {
    const sockets = new Map(this.sources(cluster).map((s) => [s.id, s.controlSocket]));
    const targets = new Map(this.targets(cluster).map((t) => [t.id, t]));
    return cells.map((c) => ({
      from: sockets.get(c.from) ?? '',
      target: targets.get(c.to)?.address(c.family) ?? '',
      port: c.port,
      protocol: c.protocol === 'TCP' ? 'tcp' : 'udp',
      timeoutMs: this.probeTimeoutMs,
    }));
  }

  /**
   * Forgets every neighbor entry of the pods and of the nodes' pod bridges, as if they had expired. IPv6 neighbor
   * discovery is ICMPv6 and passes through the node's ip6tables (ARP never does): a round after this shows whether
   * pods can still resolve each other and their gateway under the rules in force, instead of riding on entries
   * resolved under earlier rules (they live tens of seconds, longer than a step).
   */
  async forgetNeighbors(cluster: ClusterState): Promise<void> {
    const paths = labPaths(this.lab);
    const commands = [
      ...livePods(cluster).map((p) => ['-n', paths.podNetns(p.metadata?.namespace ?? '', p.metadata?.name ?? ''), 'neigh', 'flush', 'all']),
      ...this.nodes.map((n) => ['-n', paths.netns(n), 'neigh', 'flush', 'dev', LAB_CNI_BRIDGE]),
    ];
    await Promise.all(commands.map((args) => execa('ip', args)));
  }

  /** Probes every cell once (UDP passes where the oracle denies are re-probed, see the file comment). */
  async round(cluster: ClusterState): Promise<RoundReport> {
    await this.forgetNeighbors(cluster);
    const expected = [...this.expected(cluster).values()];
    const cells = expected.map((e) => e.cell);
    const results = await probeMany(this.jobsFor(cluster, cells), this.concurrency);
    const outcomes = expected.map((e, i) => judge(e.cell, e.allowed, e.srcAddress, results[i]));
    const suspects = outcomes.filter((o) => o.protocol === 'UDP' && o.observed && !o.expected && o.detail === undefined);
    if (suspects.length > 0) {
      const again = await probeMany(this.jobsFor(cluster, [...suspects, ...suspects]), this.concurrency);
      suspects.forEach((o, i) => {
        const first = again[i];
        const second = again[i + suspects.length];
        if (first?.ok !== true && second?.ok !== true) {
          o.observed = false;
          o.conntrackSuspect = true;
          o.detail = `passed once, then denied twice with fresh sockets (${first?.error}, ${second?.error})`;
        }
      });
    }
    // On a busy machine an allowed probe can outlast the short timeout: give those one long chance. A pass proves
    // the path is open; a dropped packet never passes however long one waits.
    const slow = outcomes.filter((o) => o.expected && !o.observed && o.detail === 'timeout');
    if (slow.length > 0) {
      const again = await probeMany(
        this.jobsFor(cluster, slow).map((job) => ({ ...job, timeoutMs: SLOW_PROBE_TIMEOUT_MS })),
        this.concurrency,
      );
      const addresses = this.expected(cluster);
      slow.forEach((o, i) => {
        const retried = judge(o, o.expected, addresses.get(cellKey(o))?.srcAddress, again[i]);
        if (retried.observed) {
          o.observed = true;
          o.slow = true;
          delete o.detail;
        }
      });
    }
    return {
      outcomes,
      mismatches: outcomes.filter((o) => o.observed !== o.expected),
      conntrackSuspects: outcomes.filter((o) => o.conntrackSuspect === true),
      slow: outcomes.filter((o) => o.slow === true).length,
    };
  }

  /**
   * With no policy in force every probe must pass; the answers tell which address each node's probes leave
   * with (its bridge address towards its own pods, its LAN address towards other nodes' pods).
   */
  async learnNodeSources(deadlineMs = 60_000): Promise<void> {
    const cluster = await this.cluster();
    if (cluster.policies.length > 0) throw new Error('learnNodeSources needs a cluster without NetworkPolicies');
    const pods = livePods(cluster);
    await pollUntil('every node reaching every pod without policies', async () => {
      const cells: TruthCell[] = [];
      for (const node of this.nodes) {
        for (const dst of pods) {
          for (const family of TRUTH_FAMILIES) cells.push({ from: `node/${node}`, to: podId(dst), family, port: 80, protocol: 'TCP' });
        }
      }
      const results = await probeMany(this.jobsFor(cluster, cells), this.concurrency);
      const failed: string[] = [];
      this.nodeSource.clear();
      cells.forEach((c, i) => {
        const r = results[i];
        const reply = r?.ok === true ? parsePodReply(r.reply ?? '') : undefined;
        if (reply === undefined || reply.identity !== c.to) {
          failed.push(`${c.from} -> ${c.to} v${ipVersion(c.family)}: ${r?.error ?? r?.reply}`);
          return;
        }
        const node = c.from.slice('node/'.length);
        const entry = this.nodeSource.get(node) ?? { local: new Map(), remote: new Map() };
        this.nodeSource.set(node, entry);
        const dstNode = pods.find((p) => podId(p) === c.to)?.spec?.nodeName;
        const side = dstNode === node ? entry.local : entry.remote;
        const before = side.get(c.family);
        if (before !== undefined && before !== reply.clientAddress) {
          failed.push(`${c.from} -> ${c.to} v${ipVersion(c.family)}: source ${reply.clientAddress}, other pods saw ${before}`);
        }
        side.set(c.family, reply.clientAddress);
      });
      if (failed.length > 0) throw new Error(`\n  ${failed.join('\n  ')}`);
      return true;
    }, { timeoutMs: deadlineMs, intervalMs: 500 });
  }

  /**
   * Polls whole-matrix rounds until the probes agree with the oracle on the current objects, or the deadline
   * passes: then it throws with the difference of the last round.
   */
  async settle(what: string, deadlineMs = 30_000): Promise<SettleReport> {
    const started = Date.now();
    let rounds = 0;
    let suspects = 0;
    let slow = 0;
    for (;;) {
      const cluster = await this.cluster();
      const report = await this.round(cluster);
      rounds++;
      suspects += report.conntrackSuspects.length;
      slow += report.slow;
      if (process.env.TRUTH_VERBOSE === '1' && (report.mismatches.length > 0 || report.conntrackSuspects.length > 0)) {
        const lines = formatTruthDiff([...report.mismatches, ...report.conntrackSuspects]).split('\n');
        console.log(`      [${what}] round ${rounds} at ${Date.now() - started} ms: ${report.mismatches.length} mismatches, ` +
          `${report.conntrackSuspects.length} UDP re-probed\n${lines.slice(0, lines.indexOf('')).join('\n')}`);
      }
      // A round with re-probed UDP cells may straddle the moment the rules changed: only a clean round settles.
      if (report.mismatches.length === 0 && report.conntrackSuspects.length === 0) {
        return {
          rounds,
          elapsedMs: Date.now() - started,
          cells: report.outcomes.length,
          allowedCells: report.outcomes.filter((o) => o.expected).length,
          conntrackSuspects: suspects,
          slow,
        };
      }
      if (Date.now() - started > deadlineMs) {
        throw new TruthTableError(
          `${what}: after ${rounds} rounds in ${Date.now() - started} ms the lab still disagrees with the oracle on ` +
            `${report.mismatches.length} of ${report.outcomes.length} cells:\n${formatTruthDiff(report.outcomes)}`,
        );
      }
    }
  }
}

function livePods(cluster: ClusterState): Pod[] {
  return cluster.pods
    .filter((p) => p.status?.phase === 'Running' && p.spec?.hostNetwork !== true && p.metadata?.deletionTimestamp === undefined)
    .sort((a, b) => (podId(a) < podId(b) ? -1 : podId(a) > podId(b) ? 1 : 0));
}

function judge(cell: TruthCell, expected: boolean, srcAddress: string | undefined, r: ProbeResult | undefined): CellOutcome {
  if (r === undefined) return { ...cell, expected, observed: false, detail: 'no result' };
  if (!r.ok) return { ...cell, expected, observed: false, detail: r.error ?? 'failed' };
  const reply = parsePodReply(r.reply ?? '');
  if (reply?.identity !== cell.to) {
    return { ...cell, expected, observed: !expected, detail: `answered by ${reply?.identity ?? JSON.stringify(r.reply)}` };
  }
  if (srcAddress !== undefined && reply.clientAddress !== srcAddress) {
    // Reachable, but through a translation: wrong whatever the oracle says.
    return { ...cell, expected, observed: !expected, detail: `${cell.to} saw source ${reply.clientAddress}, not ${srcAddress}` };
  }
  return { ...cell, expected, observed: true };
}

/** Short name of a cell's probe: `v4 TCP/80`. */
function probeName(o: TruthCell): string {
  return `v${ipVersion(o.family)} ${o.protocol}/${o.port}`;
}

/**
 * The difference, one line per source/destination pair: what should have been denied but passed, and what should
 * have passed but did not (with the probe's error). Then the expected table, `+` allowed and `.` denied, per pair
 * in the order v4 TCP/80 TCP/81 UDP/80 UDP/81, v6 likewise, with the mismatching cells shown as `!`.
 */
export function formatTruthDiff(outcomes: CellOutcome[]): string {
  const lines: string[] = [];
  const pairs = new Map<string, CellOutcome[]>();
  for (const o of outcomes) {
    const key = `${o.from} -> ${o.to}`;
    pairs.set(key, [...(pairs.get(key) ?? []), o]);
  }
  for (const [pair, cells] of pairs) {
    const leaks = cells.filter((c) => c.observed && !c.expected);
    const blocks = cells.filter((c) => !c.observed && c.expected);
    const once = cells.filter((c) => c.conntrackSuspect === true);
    if (leaks.length === 0 && blocks.length === 0 && once.length === 0) continue;
    const parts: string[] = [];
    if (once.length > 0) parts.push(`passed once, then denied on re-probe: ${once.map(probeName).join(', ')}`);
    if (leaks.length > 0) parts.push(`should be DENIED but passed: ${leaks.map((c) => probeName(c) + (c.detail ? ` (${c.detail})` : '')).join(', ')}`);
    if (blocks.length > 0) parts.push(`should PASS but failed: ${blocks.map((c) => `${probeName(c)} (${c.detail ?? '?'})`).join(', ')}`);
    lines.push(`  ${pair.padEnd(22)} ${parts.join('; ')}`);
  }
  const sources = [...new Set(outcomes.map((o) => o.from))];
  const targets = [...new Set(outcomes.map((o) => o.to))];
  const byKey = new Map(outcomes.map((o) => [cellKey(o), o]));
  const width = 20;
  lines.push('', `  expected (+ allow, . deny, ! mismatch), per cell v4[TCP80 TCP81 UDP80 UDP81] v6[...]:`);
  lines.push('  ' + ''.padEnd(12) + targets.map((t) => t.padEnd(width)).join(''));
  for (const s of sources) {
    const row = targets.map((t) => {
      const marks = TRUTH_FAMILIES.map((family) =>
        TRUTH_PROTOCOLS.flatMap((protocol) =>
          TRUTH_PORTS.map((port) => {
            const o = byKey.get(cellKey({ from: s, to: t, family, protocol, port }));
            if (o === undefined) return ' ';
            return o.observed !== o.expected ? '!' : o.expected ? '+' : '.';
          }),
        ).join(''),
      ).join(' ');
      return marks.padEnd(width);
    });
    lines.push('  ' + s.padEnd(12) + row.join(''));
  }
  return lines.join('\n');
}
