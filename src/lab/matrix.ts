// `podroute lab matrix`: every pod probes every pod (and every external host) on each declared port, TCP and UDP,
// IPv4 and IPv6, through the probe helpers of the pods' own namespaces, and the result is printed as a matrix.
import { parsePodReply, probeMany, closeProbeConnections, type ProbeJob, type ProbeProtocol } from './probe.js';
import { labStatus, type LabStatusReport } from './status.js';
import { labPaths } from './paths.js';
import { readLabState } from './state.js';
import { familyOf } from '../routes/ip-prefix.js';
import { parseTopology, type Topology } from './topology.js';

export interface MatrixTarget {
  /** `namespace/name` for pods, `external/NAME` for external hosts: what a correct answer names. */
  identity: string;
  addresses: string[];
  ports: { port: number; protocol: 'TCP' | 'UDP' }[];
}

export interface MatrixSource {
  identity: string;
  controlSocket: string;
}

export interface MatrixProbe {
  from: string;
  to: string;
  target: string;
  family: 'ipv4' | 'ipv6';
  port: number;
  protocol: 'TCP' | 'UDP';
  ok: boolean;
  reply?: string;
  error?: string;
}

export interface MatrixReport {
  sources: string[];
  targets: string[];
  probes: MatrixProbe[];
}

/** Pure: the probes to run, from every source to every target address and port. */
export function planMatrix(sources: MatrixSource[], targets: MatrixTarget[], timeoutMs: number): (ProbeJob & { meta: Omit<MatrixProbe, 'ok'> })[] {
  const jobs: (ProbeJob & { meta: Omit<MatrixProbe, 'ok'> })[] = [];
  for (const source of sources) {
    for (const target of targets) {
      for (const address of target.addresses) {
        for (const p of target.ports) {
          jobs.push({
            from: source.controlSocket,
            target: address,
            port: p.port,
            protocol: p.protocol.toLowerCase() as ProbeProtocol,
            timeoutMs,
            meta: { from: source.identity, to: target.identity, target: address, family: familyOf(address), port: p.port, protocol: p.protocol },
          });
        }
      }
    }
  }
  return jobs;
}

/** Sources and targets of a lab: its pods (SCTP ports are skipped: the kernel here has no SCTP) and external hosts. */
export function matrixParticipants(topology: Topology, status: LabStatusReport): { sources: MatrixSource[]; targets: MatrixTarget[] } {
  const paths = labPaths(status.name);
  const sources: MatrixSource[] = [];
  const targets: MatrixTarget[] = [];
  for (const pod of topology.kubernetes.pods) {
    const identity = `${pod.namespace}/${pod.name}`;
    const seen = status.pods.find((p) => p.namespace === pod.namespace && p.name === pod.name);
    sources.push({ identity, controlSocket: paths.podSocket(pod.namespace, pod.name) });
    targets.push({
      identity,
      addresses: seen?.ips ?? [],
      ports: pod.containerPorts.filter((p) => p.protocol !== 'SCTP').map((p) => ({ port: p.containerPort, protocol: p.protocol as 'TCP' | 'UDP' })),
    });
  }
  for (const ext of topology.externalHosts) {
    targets.push({ identity: `external/${ext.name}`, addresses: ext.addresses.map((a) => a.split('/')[0] ?? a), ports: ext.ports });
  }
  return { sources, targets };
}

export async function runMatrix(lab: string, options: { timeoutMs?: number; concurrency?: number } = {}): Promise<MatrixReport> {
  const state = readLabState(lab);
  if (state === undefined) throw new Error(`no lab named "${lab}"`);
  const topology = parseTopology(state.topologyText);
  const status = await labStatus(lab);
  const { sources, targets } = matrixParticipants(topology, status);
  const jobs = planMatrix(sources, targets, options.timeoutMs ?? 1000);
  try {
    const results = await probeMany(
      jobs.map(({ meta: _meta, ...job }) => job),
      options.concurrency ?? 64,
    );
    const probes = jobs.map((job, i): MatrixProbe => {
      const r = results[i];
      const answeredBy = r?.reply === undefined ? undefined : parsePodReply(r.reply)?.identity;
      // A reply from the wrong pod (a stale address) is a failure too.
      const ok = r?.ok === true && answeredBy === job.meta.to;
      return {
        ...job.meta,
        ok,
        ...(r?.reply === undefined ? {} : { reply: r.reply }),
        ...(ok ? {} : { error: r?.error ?? (r?.ok === true ? `answered by ${answeredBy ?? '?'}` : 'no result') }),
      };
    });
    return { sources: sources.map((s) => s.identity), targets: targets.map((t) => t.identity), probes };
  } finally {
    closeProbeConnections();
  }
}

/** Rows are sources, columns targets; each cell is `ok/total` over families, protocols and ports. */
export function formatMatrix(report: MatrixReport): string {
  const width = Math.max(8, ...report.targets.map((t) => t.length)) + 1;
  const rowHead = Math.max(8, ...report.sources.map((s) => s.length)) + 1;
  const lines = [' '.repeat(rowHead) + report.targets.map((t) => t.padStart(width)).join('')];
  for (const source of report.sources) {
    const cells = report.targets.map((target) => {
      const cell = report.probes.filter((p) => p.from === source && p.to === target);
      const ok = cell.filter((p) => p.ok).length;
      return `${ok === cell.length ? '' : ok === 0 ? 'x ' : '~ '}${ok}/${cell.length}`.padStart(width);
    });
    lines.push(source.padEnd(rowHead) + cells.join(''));
  }
  const total = report.probes.length;
  const passed = report.probes.filter((p) => p.ok).length;
  lines.push('', `${passed}/${total} probes answered by the right pod (cells: ok/total over v4+v6, TCP+UDP, every declared port)`);
  const byKind = new Map<string, number>();
  for (const p of report.probes.filter((x) => !x.ok)) {
    const key = `${p.family} ${p.protocol}: ${p.error ?? 'failed'}`;
    byKind.set(key, (byKind.get(key) ?? 0) + 1);
  }
  for (const [key, count] of [...byKind].sort((a, b) => b[1] - a[1])) lines.push(`  failed ${count}x  ${key}`);
  return lines.join('\n') + '\n';
}
