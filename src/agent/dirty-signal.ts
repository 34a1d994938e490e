// A one-slot "something changed" signal: set() any number of times, wait() returns once. The heart of every
// level-triggered loop here: watchers only mark dirty, the loop reads whole snapshots, bursts cost one pass.

export class DirtySignal {
  private dirty = false;
  private waiter: (() => void) | undefined;

  set(): void {
    this.dirty = true;
    const wake = this.waiter;
    this.waiter = undefined;
    wake?.();
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
