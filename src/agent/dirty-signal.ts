// A one-slot "something changed" signal: set() any number of times, wait() returns once. The heart of every
// level-triggered loop here: watchers only mark dirty, bursts cost one pass. And the pacing of passes that write
// to the kernel (PassPacer).

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

export interface PassPacerOptions {
  /** Shortest time between the starts of two passes while changes keep coming. */
  minIntervalMs: number;
  /** Longest: the bound on how long a change can wait while something keeps flapping. */
  maxIntervalMs: number;
  /** After this long without any pass (nothing changed meanwhile), the interval is back to the minimum. */
  quietResetMs: number;
}

/**
 * Paces the passes of a loop that writes to the kernel, so a flapping source cannot become a kernel churn storm.
 * A change after a quiet spell goes through at once; while changes keep coming, passes are at least
 * minIntervalMs apart (a burst is taken in batches); when a pass changes again something the previous pass
 * changed (the same prefixes going back and forth), the interval doubles, up to maxIntervalMs, until the flapping
 * stops (no pass for quietResetMs). Within one interval the flaps cancel out: only the state at the pass is written.
 * Pure: the caller passes the clock.
 */
export class PassPacer {
  private readonly options: PassPacerOptions;
  private interval: number;
  private lastPassAt = -Infinity;
  private previous: ReadonlySet<string> = new Set();

  constructor(options: PassPacerOptions) {
    const { minIntervalMs, maxIntervalMs, quietResetMs } = options;
    // A reset sooner than the longest interval would undo the damping between two flapping passes.
    if (!(minIntervalMs > 0 && maxIntervalMs >= minIntervalMs && quietResetMs > maxIntervalMs)) {
      throw new Error(`PassPacer: need 0 < minIntervalMs <= maxIntervalMs < quietResetMs (got ${JSON.stringify(options)})`);
    }
    this.options = options;
    this.interval = minIntervalMs;
  }

  /** How long to wait before the next pass may start (0: now). */
  delay(now: number): number {
    if (now - this.lastPassAt >= this.options.quietResetMs) this.interval = this.options.minIntervalMs;
    return Math.max(0, this.lastPassAt + this.interval - now);
  }

  /** The current interval between passes (for logs and tests). */
  currentIntervalMs(): number {
    return this.interval;
  }

  /** Records a pass that started at `now` and changed these keys (empty: the pass changed nothing). */
  passed(now: number, changed: ReadonlySet<string>): void {
    this.lastPassAt = now;
    if (changed.size === 0) return;
    let flapped = false;
    const [small, large] = changed.size <= this.previous.size ? [changed, this.previous] : [this.previous, changed];
    for (const key of small) {
      if (large.has(key)) {
        flapped = true;
        break;
      }
    }
    if (flapped) this.interval = Math.min(this.options.maxIntervalMs, this.interval * 2);
    this.previous = changed;
  }
}

/**
 * The most passes a PassPacer lets start within `windowMs` when every pass flaps (the same keys change again
 * each time) and the loop is never idle for quietResetMs: the bound a churn test holds the kernel to.
 */
export function maxFlappingPasses(options: PassPacerOptions, windowMs: number): number {
  let passes = 1;
  let at = 0;
  let interval = options.minIntervalMs;
  for (;;) {
    // The first pass has nothing to flap against: the interval doubles from the second on.
    if (passes >= 2) interval = Math.min(options.maxIntervalMs, interval * 2);
    at += passes === 1 ? options.minIntervalMs : interval;
    if (at > windowMs) return passes;
    passes++;
  }
}
