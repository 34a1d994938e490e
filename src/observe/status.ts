// The agent's status report (/status, `podroute status -o json`) and its human rendering (`podroute status`).
// One shape for both sources: the agent's /status, or gobgpd alone when the agent does not answer (then only
// the peer table is known and the other sections are null).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BgpRole } from '../bgp/types.js';
import type { LoopReport } from './health.js';
import type { PeerReport } from './peers.js';

export interface AgentStatusReport {
  node: string;
  version: string;
  generatedAt: string;
  gobgpd: { target: string; reachable: boolean; error: string | null };
  peers: PeerReport[];
  /** Our side of BGP: podCIDRs originated, the learned table. */
  bgp: {
    originated: number;
    learnedPrefixes: number;
    learnedPaths: number;
    tableSynced: boolean;
    /** This node's iBGP role: "mesh", "reflector (cluster 10.0.0.1)", "client", "off"; omitted before it is known. */
    role?: string;
  } | null;
  /** Kernel routes carrying podroute's protocol number. */
  routes: { installed: number; added: number; removed: number; replaced: number; conflicts: string[]; keptFromPreviousRun: number; inSync: boolean } | null;
  policy: { chains: number; sets: number; rules: number; invalidPolicies: number } | null;
  masquerade: { inSync: boolean; ipv4: boolean; ipv6: boolean } | null;
  /** BFD sessions, from the `podroute bfd` companion; null when BFD is not configured. */
  bfd?: BfdReport | null;
  /** Per loop: last successful pass, failures, last error, stuck or not. */
  reconcilers: LoopReport[];
  healthy: boolean;
  ready: boolean;
  notReadyReasons: string[];
}

export interface BfdReport {
  companionReachable: boolean;
  sessions: { peer: string; state: string; remoteState: string; diag: number; heldDown: boolean; detectionTimeMs: number | null; txIntervalMs: number; stateChanges: number }[];
}

/** What `podroute status` shows: the report plus where it came from. */
export interface StatusView {
  source: 'agent' | 'gobgpd';
  agent: { address: string; reachable: boolean; error: string | null };
  report: AgentStatusReport | null;
  /** The peer table: the agent's, or gobgpd's own when the agent did not answer. */
  gobgpd: { target: string; reachable: boolean; error: string | null };
  peers: PeerReport[];
}

/** "reflector (cluster 10.0.0.1)", "client", "mesh", "off". */
export function describeRole(role: BgpRole): string {
  return role.kind === 'reflector' ? `reflector (cluster ${role.clusterId})` : role.kind;
}

/** "3d4h", "2h05m", "4m07s", "12s". */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number): string => String(n).padStart(2, '0');
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${two(m)}m`;
  if (m > 0) return `${m}m${two(sec)}s`;
  return `${sec}s`;
}

/** Left-aligned columns separated by two spaces; the header in capitals. */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function renderPeers(peers: PeerReport[]): string {
  if (peers.length === 0) return 'No BGP peers.';
  return renderTable(
    ['PEER', 'ASN', 'TYPE', 'STATE', 'UPTIME', 'RECEIVED', 'ACCEPTED', 'ADVERTISED', 'DESCRIPTION'],
    peers.map((p) => [
      p.address,
      String(p.asn),
      p.routeReflectorClient === true ? `${p.type} (rr-client)` : p.type,
      p.adminState === 'UP' ? p.state : `${p.state} (${p.adminState})`,
      p.uptimeSeconds === null ? '-' : formatDuration(p.uptimeSeconds),
      String(p.received),
      String(p.accepted),
      String(p.advertised),
      p.description,
    ]),
  );
}

/** The human view of `podroute status`, like `calicoctl node status`. */
export function renderStatusView(view: StatusView): string {
  const out: string[] = [];
  const r = view.report;
  if (r !== null) {
    out.push(`podroute ${r.version} on node ${r.node}: ${r.healthy ? 'healthy' : 'UNHEALTHY'}, ${r.ready ? 'ready' : 'NOT READY'}`);
    for (const reason of r.notReadyReasons) out.push(`  not ready: ${reason}`);
  } else {
    out.push(`podroute agent not answering at ${view.agent.address}: ${view.agent.error ?? 'unknown error'}`);
    out.push('Showing gobgpd directly (peer table only).');
  }
  out.push(`gobgpd ${view.gobgpd.target}: ${view.gobgpd.reachable ? 'reachable' : `NOT REACHABLE (${view.gobgpd.error ?? 'unknown error'})`}`);
  out.push('', 'BGP peers:', renderPeers(view.peers));
  if (r === null) return out.join('\n') + '\n';

  if (r.bgp !== null) {
    out.push(
      '',
      ...(r.bgp.role === undefined ? [] : [`iBGP role: ${r.bgp.role}`]),
      `BGP: ${r.bgp.originated} prefixes originated, ${r.bgp.learnedPrefixes} prefixes learned (${r.bgp.learnedPaths} paths)` +
        (r.bgp.tableSynced ? '' : ', learned table not complete yet'),
    );
  }
  if (r.routes !== null) {
    out.push(
      `Routes installed by podroute: ${r.routes.installed} (added ${r.routes.added}, removed ${r.routes.removed}, replaced ${r.routes.replaced})` +
        (r.routes.inSync ? '' : ', sync pending'),
    );
    if (r.routes.conflicts.length > 0) out.push(`  held by other protocols, left alone: ${r.routes.conflicts.join(', ')}`);
    if (r.routes.keptFromPreviousRun > 0) out.push(`  kept from the previous run until the BGP peers are back: ${r.routes.keptFromPreviousRun}`);
  }
  if (r.policy !== null) {
    out.push(
      `NetworkPolicy: ${r.policy.chains} chains, ${r.policy.sets} sets, ${r.policy.rules} rules` +
        (r.policy.invalidPolicies > 0 ? `, ${r.policy.invalidPolicies} invalid policies (isolating, allowing nothing)` : ''),
    );
  }
  if (r.masquerade !== null) {
    const fams = [r.masquerade.ipv4 ? 'IPv4' : '', r.masquerade.ipv6 ? 'IPv6' : ''].filter((f) => f !== '').join(' + ') || 'no family';
    out.push(`Masquerade: ${fams}${r.masquerade.inSync ? '' : ', sync pending'}`);
  }
  if (r.bfd !== undefined && r.bfd !== null) {
    out.push('', `BFD sessions${r.bfd.companionReachable ? '' : ' (companion NOT REACHABLE: no peer is held down by BFD)'}:`);
    if (r.bfd.sessions.length > 0) {
      out.push(
        renderTable(
          ['PEER', 'STATE', 'REMOTE', 'DETECT', 'TX', 'CHANGES', 'BGP'],
          r.bfd.sessions.map((s) => [
            s.peer,
            s.diag === 0 ? s.state : `${s.state} (diag ${s.diag})`,
            s.remoteState,
            s.detectionTimeMs === null ? '-' : `${s.detectionTimeMs} ms`,
            `${s.txIntervalMs} ms`,
            String(s.stateChanges),
            s.heldDown ? 'held down' : '',
          ]),
        ),
      );
    }
  }
  if (r.reconcilers.length > 0) {
    out.push(
      '',
      'Reconcilers:',
      renderTable(
        ['NAME', 'STATE', 'LAST SYNC', 'FAILURES', 'LAST ERROR'],
        r.reconcilers.map((l) => [
          l.name,
          l.state,
          l.ageSeconds === null ? 'never' : `${formatDuration(l.ageSeconds)} ago`,
          String(l.failures),
          l.lastError === null ? '' : l.lastError.message.replace(/\s+/g, ' ').slice(0, 120),
        ]),
      ),
    );
  }
  return out.join('\n') + '\n';
}

let cachedVersion: string | undefined;

/** podroute's version from its package.json, found upwards from this file (works from dist/ and other out dirs). */
export function podrouteVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'podroute' && typeof pkg.version === 'string') return (cachedVersion = pkg.version);
    } catch {
      // not here; look one level up
    }
    dir = path.dirname(dir);
  }
  return (cachedVersion = 'unknown');
}
