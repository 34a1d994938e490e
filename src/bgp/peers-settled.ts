// When a cold start may let go of what the previous run left in the kernel: once each graceful-restart peer has
// been Established for a settle time (gobgpd's watch shows no End-of-RIB, so the time stands in for it), or once
// the restart window is over (the peers' own graceful-restart helpers would have dropped our paths by then too).
// A peer that goes down again before it settled starts its settle time over at its next Established.
import type { PeerState } from './types.js';

export type PeersSettledReason = 'settled' | 'restart window over' | 'no graceful-restart peers' | 'aborted';

export interface PeersSettledOptions {
  /** Canonical addresses of the peers to wait for. */
  peers: readonly string[];
  settleMs: number;
  windowMs: number;
  /** The peer's state now (undefined: not known yet). */
  stateOf: (address: string) => PeerState | undefined;
  /** Calls the listener on every peer-state change; returns the unsubscribe function. */
  onPeerState: (listener: (address: string, state: PeerState) => void) => () => void;
  signal: AbortSignal;
}

export function peersSettled(options: PeersSettledOptions): Promise<PeersSettledReason> {
  const pending = new Set(options.peers);
  if (pending.size === 0) return Promise.resolve('no graceful-restart peers');
  if (options.signal.aborted) return Promise.resolve('aborted');
  return new Promise((resolve) => {
    const settleTimers = new Map<string, NodeJS.Timeout>();
    let unsubscribe = (): void => undefined;
    const finish = (reason: PeersSettledReason): void => {
      clearTimeout(window);
      for (const t of settleTimers.values()) clearTimeout(t);
      settleTimers.clear();
      unsubscribe();
      options.signal.removeEventListener('abort', onAbort);
      resolve(reason);
    };
    const onAbort = (): void => finish('aborted');
    const seen = (address: string, state: PeerState | undefined): void => {
      if (!pending.has(address)) return;
      const timer = settleTimers.get(address);
      if (state !== 'ESTABLISHED') {
        clearTimeout(timer);
        settleTimers.delete(address);
        return;
      }
      if (timer !== undefined) return;
      settleTimers.set(
        address,
        setTimeout(() => {
          settleTimers.delete(address);
          pending.delete(address);
          if (pending.size === 0) finish('settled');
        }, options.settleMs),
      );
    };
    const window = setTimeout(() => finish('restart window over'), options.windowMs);
    options.signal.addEventListener('abort', onAbort, { once: true });
    unsubscribe = options.onPeerState(seen);
    for (const address of [...pending]) seen(address, options.stateOf(address));
  });
}
