// `podroute status --cluster` (from a workstation): what the agents report to Kubernetes, read from the API
// server: each Node's NetworkUnavailable condition (set False by the agent once its routes are programmed), its
// podCIDRs and addresses, and the agents' recent Warning Events. Pure: the lists in, the view and its text out.
import type { KubeEvent, Node } from '../kube/wire.js';
import { ANNOTATION_ASN } from '../kube/node-info.js';
import { CONDITION_REASON } from '../kube/node-reporter.js';
import { formatDuration, renderTable } from './status.js';

/** The component name the agent posts its Events under (source.component and reportingComponent). */
export const EVENT_COMPONENT = 'podroute';
/** Warnings shown, newest first. */
export const MAX_WARNINGS = 10;

export interface ClusterNodeStatus {
  name: string;
  /** available: podroute programmed its routes; unavailable: the condition says so; unknown: no condition. */
  network: 'available' | 'unavailable' | 'unknown';
  /** The condition's reason and message (another network plugin's, too, when it set the condition). */
  networkDetail: string;
  internalIPs: string[];
  podCIDRs: string[];
  /** The node's podroute.io/asn annotation; null: the cluster ASN. */
  asn: string | null;
}

export interface ClusterWarning {
  node: string;
  reason: string;
  message: string;
  count: number;
  /** ISO time of the last occurrence; null when the Event carries none. */
  lastSeen: string | null;
  /** What it is about when not the node (a NetworkPolicy: kind/namespace/name). */
  about: string | null;
}

export interface ClusterStatusView {
  server: string;
  nodes: ClusterNodeStatus[];
  warnings: ClusterWarning[];
  /** Every node reports podroute's routes programmed. */
  allAvailable: boolean;
}

export function clusterStatusView(server: string, nodes: readonly Node[], events: readonly KubeEvent[]): ClusterStatusView {
  const rows = nodes.map(nodeStatus).sort((a, b) => a.name.localeCompare(b.name));
  const warnings = events
    .filter((e) => e.type === 'Warning' && (e.source?.component === EVENT_COMPONENT || e.reportingComponent === EVENT_COMPONENT))
    .map(warningOf)
    .sort((a, b) => (b.lastSeen ?? '').localeCompare(a.lastSeen ?? ''))
    .slice(0, MAX_WARNINGS);
  return { server, nodes: rows, warnings, allAvailable: rows.length > 0 && rows.every((n) => n.network === 'available') };
}

function nodeStatus(node: Node): ClusterNodeStatus {
  const condition = node.status?.conditions?.find((c) => c.type === 'NetworkUnavailable');
  const network = condition === undefined ? 'unknown' : condition.status === 'False' ? 'available' : 'unavailable';
  const detail = condition === undefined ? 'no NetworkUnavailable condition: no agent has programmed this node' : `${condition.reason ?? ''}: ${condition.message ?? ''}`;
  const podCIDRs = node.spec?.podCIDRs ?? (node.spec?.podCIDR === undefined ? [] : [node.spec.podCIDR]);
  return {
    name: node.metadata?.name ?? '',
    // Set False by another plugin (its own reason) is not podroute's word: shown, but as it is.
    network: network === 'available' && condition?.reason !== CONDITION_REASON ? 'unknown' : network,
    networkDetail: detail,
    internalIPs: (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address),
    podCIDRs,
    asn: node.metadata?.annotations?.[ANNOTATION_ASN] ?? null,
  };
}

function warningOf(event: KubeEvent): ClusterWarning {
  const subject = event.involvedObject;
  const node = event.source?.host ?? event.reportingInstance ?? (subject.kind === 'Node' ? (subject.name ?? '') : '');
  const about = subject.kind === 'Node' ? null : `${subject.kind ?? ''}/${subject.namespace === undefined ? '' : `${subject.namespace}/`}${subject.name ?? ''}`;
  return {
    node,
    reason: event.reason ?? '',
    message: event.message ?? '',
    count: event.count ?? 1,
    lastSeen: event.lastTimestamp ?? event.eventTime ?? event.metadata.creationTimestamp ?? null,
    about,
  };
}

export function renderClusterStatus(view: ClusterStatusView, now: number = Date.now()): string {
  const available = view.nodes.filter((n) => n.network === 'available').length;
  const lines = [`API server ${view.server}: ${view.nodes.length} nodes, ${available} with podroute's routes programmed`, ''];
  lines.push(
    renderTable(
      ['node', 'network', 'internal-ip', 'pod-cidrs', 'asn'],
      view.nodes.map((n) => [n.name, n.network, n.internalIPs.join(',') || '-', n.podCIDRs.join(',') || '-', n.asn ?? '-']),
    ),
  );
  const notAvailable = view.nodes.filter((n) => n.network !== 'available');
  if (notAvailable.length > 0) {
    lines.push('', 'Not available:');
    for (const n of notAvailable) lines.push(`  ${n.name}: ${n.networkDetail}`);
  }
  lines.push('');
  if (view.warnings.length === 0) {
    lines.push('No podroute warnings.');
  } else {
    lines.push(`podroute warnings (newest first, at most ${MAX_WARNINGS}):`);
    const age = (at: string | null): string => (at === null ? '-' : formatDuration((now - Date.parse(at)) / 1000));
    lines.push(
      renderTable(
        ['last seen', 'node', 'reason', 'count', 'message'],
        view.warnings.map((w) => [age(w.lastSeen), w.node, w.reason, String(w.count), w.about === null ? w.message : `${w.about}: ${w.message}`]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}
