// Kubernetes Events for BGP sessions going up and down, so that `kubectl describe node` tells an operator which
// peer dropped and when. Level-triggered: every poll compares gobgpd's peer table with the previous one.
import { sleep } from '../reconcile/loop.js';
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
  intervalMs?: number;
}

export class PeerEventReporter {
  private states = new Map<string, PeerState>();

  constructor(private readonly options: PeerEventReporterOptions) {}

  /** Polls until the signal aborts. A failed poll (gobgpd away) changes nothing: the next one compares again. */
  async run(signal: AbortSignal): Promise<void> {
    const interval = this.options.intervalMs ?? 5_000;
    while (!signal.aborted) {
      try {
        const peers = await this.options.listPeers();
        for (const event of peerTransitions(this.states, peers)) await this.options.post(event);
        this.states = new Map(peers.map((p) => [p.address, p.state]));
      } catch {
        // gobgpd unreachable: its readiness and metrics say so; a restarted gobgpd's peers come back as "up" events.
        this.states = new Map();
      }
      await sleep(interval, signal);
    }
  }
}
