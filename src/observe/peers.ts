// The BGP peer table as operators read it: gobgpd's peers (ListPeer), classified node|external, with uptime
// and prefix counts. Read at scrape/status time; when gobgpd does not answer, the last known peers are shown
// as not established (their sessions are gone with gobgpd), so gauges drop to 0 instead of vanishing.
import type { PeerAdminState, PeerStatus } from '../bgp/types.js';
import { familyOf } from '../routes/ip-prefix.js';
import { errorMessage } from './health.js';

export type PeerType = 'node' | 'external';

export interface PeerReport {
  address: string;
  asn: number;
  type: PeerType;
  /** gobgpd's description of the peer: "node:NAME" for mesh nodes, the config/annotation origin otherwise. */
  description: string;
  /** gobgpd's session state; UNKNOWN when gobgpd does not answer. */
  state: string;
  /** DOWN: disabled by configuration; PREFIX_LIMIT: gobgpd ended the session at the peer's max-prefix limit. */
  adminState: PeerAdminState;
  establishedSince: string | null;
  uptimeSeconds: number | null;
  /** Paths in gobgpd's Adj-RIB-In from this peer. */
  received: number;
  /**
   * Paths from this peer that passed the import policy: from the agent, those in its learned table (in use:
   * best or equal-cost); from gobgpd alone, those in gobgpd's global RIB.
   */
  accepted: number;
  advertised: number;
  /** This node is a route reflector and the peer its client; omitted otherwise. */
  routeReflectorClient?: boolean;
}

export interface PeerTableReport {
  target: string;
  reachable: boolean;
  error: string | null;
  peers: PeerReport[];
}

/** What the peer table needs from gobgpd (GobgpClient has it). */
export interface PeerListSource {
  readonly target: string;
  listPeers(opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<PeerStatus[]>;
}

/** Node mesh peers carry "node:NAME" (set by the desired-state planner); everything else is external. */
export function peerType(description: string): PeerType {
  return description.startsWith('node:') ? 'node' : 'external';
}

export function peerReport(p: PeerStatus, now: number): PeerReport {
  const since = p.state === 'ESTABLISHED' ? p.establishedSince : undefined;
  return {
    address: p.address,
    asn: p.asn,
    type: peerType(p.description),
    description: p.description,
    state: p.state,
    adminState: p.adminState ?? 'UP',
    establishedSince: since === undefined ? null : since.toISOString(),
    uptimeSeconds: since === undefined ? null : Math.max(0, Math.round((now - since.getTime()) / 1000)),
    received: p.received,
    accepted: p.accepted,
    advertised: p.advertised,
    ...(p.routeReflectorClient === true ? { routeReflectorClient: true } : {}),
  };
}

/** Sorted by type (nodes first) then address, so tables and diffs are stable. */
export function sortPeers(peers: PeerReport[]): PeerReport[] {
  return [...peers].sort((a, b) => (a.type === b.type ? compareAddresses(a.address, b.address) : a.type === 'node' ? -1 : 1));
}

function compareAddresses(a: string, b: string): number {
  const key = (s: string): string => (familyOf(s) === 'ipv6' ? `1${s}` : `0${s.split('.').map((o) => o.padStart(3, '0')).join('.')}`);
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

/**
 * Accepted paths per peer address. gobgpd 3.10's own `accepted` count ignores the global import policy (it
 * equals `received` for every non-route-server peer, measured), so the count comes from what passed the policy.
 */
export type AcceptedCounter = () => AcceptedCounts | Promise<AcceptedCounts>;
/** undefined: not known, gobgpd's own count is shown. */
type AcceptedCounts = ReadonlyMap<string, number> | undefined;

export interface PeerTableOptions {
  /** Per-call deadline towards gobgpd (default 2 s). */
  timeoutMs?: number;
  now?: () => number;
  /** Where `accepted` comes from; gobgpd's own count when omitted. */
  accepted?: AcceptedCounter;
}

/** Counts the paths of a learned table (or any list of paths) per neighbor. */
export function countByNeighbor(paths: Iterable<readonly { neighborIp?: string | undefined }[]>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const list of paths) {
    for (const p of list) if (p.neighborIp !== undefined) counts.set(p.neighborIp, (counts.get(p.neighborIp) ?? 0) + 1);
  }
  return counts;
}

export class PeerTable {
  private known: PeerReport[] = [];
  private inflight: Promise<PeerTableReport> | undefined;

  constructor(
    private readonly source: PeerListSource,
    private readonly options: PeerTableOptions = {},
  ) {}

  /** Reads gobgpd's peers; concurrent readers (a scrape and a status call) share one ListPeer. */
  read(): Promise<PeerTableReport> {
    this.inflight ??= this.readOnce().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async readOnce(): Promise<PeerTableReport> {
    const now = (this.options.now ?? Date.now)();
    try {
      const listed = await this.source.listPeers({ timeoutMs: this.options.timeoutMs ?? 2_000 });
      const accepted = this.options.accepted === undefined ? undefined : await this.options.accepted();
      const peers = sortPeers(listed.map((p) => peerReport(accepted === undefined ? p : { ...p, accepted: accepted.get(p.address) ?? 0 }, now)));
      this.known = peers;
      return { target: this.source.target, reachable: true, error: null, peers };
    } catch (err) {
      const peers = this.known.map((p) => ({ ...p, state: 'UNKNOWN', establishedSince: null, uptimeSeconds: null, received: 0, accepted: 0, advertised: 0 }));
      return { target: this.source.target, reachable: false, error: errorMessage(err), peers };
    }
  }
}
