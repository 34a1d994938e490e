// A one-slot "something changed" signal: set() any number of times, wait() returns once. The heart of every
// level-triggered loop here: watchers only mark dirty, the loop reads whole snapshots, bursts cost one pass.

export class DirtySignal {
  private dirty = false;
  private lastSetAt = 0;
  private waiter: (() => void) | undefined;

  set(): void {
    this.dirty = true;
    this.lastSetAt = Date.now();
    const wake = this.waiter;
    this.waiter = undefined;
    wake?.();
  }

  /** When set() was last called (ms since the epoch; 0 = never). */
  lastChange(): number {
    return this.lastSetAt;
  }

  /** Resolves when set, after timeoutMs, or on abort; returns whether it was set, and clears it. */
  async wait(timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (!this.dirty && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.waiter = undefined;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done, { once: true });
        this.waiter = done;
      });
    }
    const was = this.dirty;
    this.dirty = false;
    return was;
  }
}

/**
 * After a wake-up: waits while changes keep arriving (no set() for quietMs), at most maxMs, so that one pass takes
 * a whole burst (gobgpd sends one watch event per prefix) instead of re-running for every small batch.
 */
export async function settle(dirty: DirtySignal, quietMs: number, maxMs: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (!signal.aborted && Date.now() < deadline) {
    const quietFor = Date.now() - dirty.lastChange();
    if (quietFor >= quietMs) return;
    await sleep(Math.min(quietMs - quietFor, deadline - Date.now()), signal);
  }
}

/** Sleeps, waking early on abort. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
