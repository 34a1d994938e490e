// Kubernetes Events for BGP sessions going up and down, so that `kubectl describe node` tells an operator which
// peer dropped and when. Level-triggered: every read compares gobgpd's peer table with the previous one. The reads
// are woken by gobgpd's peer-state watch (the learned table's WatchEvent stream); a slow periodic read is the
// safety net for a change the watch did not show (a watch being restarted), so an idle agent asks gobgpd nothing.
import { DirtySignal } from '../reconcile/loop.js';
import type { PeerState, PeerStatus } from '../bgp/types.js';

export interface PeerTransition {
  type: 'Normal' | 'Warning';
  reason: 'PodrouteBgpPeerUp' | 'PodrouteBgpPeerDown';
  message: string;
}

/**
 * Pure: the Events between two peer tables. A peer counts as up only when Established; a peer that is new and not
 * Established is not news (it is still connecting), and a peer removed from the configuration is not "down".
 */
export function peerTransitions(previous: ReadonlyMap<string, PeerState>, current: readonly PeerStatus[]): PeerTransition[] {
  const events: PeerTransition[] = [];
  for (const peer of current) {
    const before = previous.get(peer.address);
    const wasUp = before === 'ESTABLISHED';
    const isUp = peer.state === 'ESTABLISHED';
    const who = `BGP peer ${peer.address} (AS ${peer.asn}${peer.description === '' ? '' : `, ${peer.description}`})`;
    if (isUp && !wasUp) events.push({ type: 'Normal', reason: 'PodrouteBgpPeerUp', message: `${who} is Established` });
    if (!isUp && wasUp) events.push({ type: 'Warning', reason: 'PodrouteBgpPeerDown', message: `${who} went down (now ${peer.state})${peer.adminState === 'PREFIX_LIMIT' ? LIMIT_NOTE : ''}` });
  }
  return events;
}

const LIMIT_NOTE = ": prefix limit exceeded; gobgpd keeps the session down until the peer's configuration changes";

export interface PeerEventReporterOptions {
  listPeers: () => Promise<PeerStatus[]>;
  post: (event: PeerTransition) => Promise<void>;
  /**
   * Subscribes to peer-state changes (gobgpd's peer watch); returns the unsubscribe function. Each change wakes one
   * read of the peer table (a burst costs one). Without it the reporter polls every safetyIntervalMs.
   */
  onPeerChange?: (listener: () => void) => () => void;
  /** The longest time between two reads when no change is reported (default 60 s; 5 s without onPeerChange). */
  safetyIntervalMs?: number;
}

export class PeerEventReporter {
  private states = new Map<string, PeerState>();
  private readonly changed = new DirtySignal();

  constructor(private readonly options: PeerEventReporterOptions) {}

  /** Reads gobgpd's peers at start, at every peer change and at the safety interval, until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { onPeerChange } = this.options;
    const interval = this.options.safetyIntervalMs ?? (onPeerChange === undefined ? 5_000 : 60_000);
    const unsubscribe = onPeerChange?.(() => this.changed.set());
    try {
      while (!signal.aborted) {
        this.changed.take(); // a change reported before this read is seen by it
        await this.readOnce();
        await this.changed.wait(interval, signal);
      }
    } finally {
      unsubscribe?.();
    }
  }

  /** One read: posts the transitions since the previous one. A failed read (gobgpd away) forgets the states. */
  private async readOnce(): Promise<void> {
    try {
      const peers = await this.options.listPeers();
      for (const event of peerTransitions(this.states, peers)) await this.options.post(event);
      this.states = new Map(peers.map((p) => [p.address, p.state]));
    } catch {
      // gobgpd unreachable: its readiness and metrics say so; a restarted gobgpd's peers come back as "up" events.
      this.states = new Map();
    }
  }
}
