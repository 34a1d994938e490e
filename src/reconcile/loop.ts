// One loop for every reconciler (and the agent's own loops): events only mark it dirty (a one-slot signal, so a
// burst costs one pass), a periodic resync pass re-reads the world and repairs drift, a failed pass is retried
// after a back-off with jitter, passes that write to the kernel can be paced, and one status type says how it
// goes. The reconcilers keep what is theirs (what to read, plan and apply); how and when a pass runs is here.

/** A loop's account of its passes; the one shape observe reads. */
export interface ReconcileStatus {
  /** Start of the last pass, successful or not. */
  lastAttemptAt: Date | undefined;
  /** End of the last successful pass. */
  lastSuccessAt: Date | undefined;
  /** The error of the last pass when it failed; cleared by a success. */
  lastError: { code: string; message: string } | undefined;
  /** Failed passes since the last success. */
  consecutiveFailures: number;
  /** Passes in total (monotonic, for counters). */
  successes: number;
  failures: number;
}

export interface PassContext {
  signal: AbortSignal;
  /** The periodic resync is due: re-read the world rather than trust memory. */
  resync: boolean;
}

/** What a pass reports; a pass that returns nothing succeeded. */
export interface PassOutcome {
  /** Nothing could be done yet (no desired state, a table still loading): neither success nor failure. */
  skipped?: boolean;
  /** What the pass changed, for the pacer (passes that keep changing the same keys are spaced further apart). */
  changed?: ReadonlySet<string>;
}

/** Hears each pass that was not skipped, with how long it took. */
export type PassListener = (outcome: { ok: true } | { ok: false; error: unknown }, durationMs: number) => void;

export interface BackoffOptions {
  /** Delay after the first failure, doubled per consecutive failure up to maxMs. */
  initialMs: number;
  maxMs: number;
  /** Each delay is shortened by up to this fraction at random, so loops failing together do not retry in step. Default 0.2. */
  jitter?: number;
}

export interface ReconcileLoopOptions {
  /** For error codes and messages (`${name} pass failed`). */
  name: string;
  pass: (context: PassContext) => Promise<PassOutcome | void>;
  /** A resync pass comes at least this often (counted from the previous resync pass). */
  resyncIntervalMs: number;
  backoff: BackoffOptions;
  /** Paces passes (see PassPacer): a wake waits for the pacer's delay first. */
  pacer?: PassPacer;
  /** Called after a failed pass (the reconciler logs it its way); retryInMs is the back-off before the next pass. */
  onFailure?: (error: unknown, info: { consecutiveFailures: number; retryInMs: number }) => void;
  /** Called after every pass that was not skipped (health pushes, duration metrics). */
  onPass?: PassListener;
  /** Error code when a thrown value has none. Default 'ERROR'. */
  defaultErrorCode?: string;
  /** Whether the first pass runs at once (default true) or waits for a wake or the first resync. */
  startDirty?: boolean;
  /** For tests. */
  random?: () => number;
}

/** The longest a Node timer can wait; longer delays would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ReconcileLoop {
  private readonly options: ReconcileLoopOptions;
  private readonly dirty = new DirtySignal();
  private running = false;
  private stopped = false;
  /** Aborts the current wait when stop() is called. */
  private readonly stopping = new AbortController();
  private serial: Promise<unknown> = Promise.resolve();
  private readonly state: ReconcileStatus = {
    lastAttemptAt: undefined,
    lastSuccessAt: undefined,
    lastError: undefined,
    consecutiveFailures: 0,
    successes: 0,
    failures: 0,
  };
  private readonly firstSuccess: Promise<void>;
  private resolveFirstSuccess: () => void = () => undefined;

  constructor(options: ReconcileLoopOptions) {
    const { resyncIntervalMs, backoff } = options;
    const jitter = backoff.jitter ?? 0.2;
    if (!(resyncIntervalMs > 0 && backoff.initialMs > 0 && backoff.maxMs >= backoff.initialMs && jitter >= 0 && jitter < 1)) {
      throw new Error(`ReconcileLoop ${options.name}: need resyncIntervalMs > 0, 0 < backoff.initialMs <= backoff.maxMs, 0 <= jitter < 1`);
    }
    this.options = options;
    this.firstSuccess = new Promise((resolve) => (this.resolveFirstSuccess = resolve));
    if (options.startDirty !== false) this.dirty.set();
  }

  /** Asks for a pass; any number of calls before it starts cost one pass. */
  markDirty(): void {
    this.dirty.set();
  }

  /** Ends run() after the pass in progress, if any (the signal stays the caller's). */
  stop(): void {
    this.stopped = true;
    this.stopping.abort();
  }

  status(): ReconcileStatus {
    const s = this.state;
    return { ...s, lastError: s.lastError === undefined ? undefined : { ...s.lastError } };
  }

  hasSucceeded(): boolean {
    return this.state.successes > 0;
  }

  /** Settles at the first successful pass (never, if none succeeds). */
  whenSucceeded(): Promise<void> {
    return this.firstSuccess;
  }

  /** Runs `fn` while no pass runs; no pass starts before it ends (e.g. a removal that must not race a pass). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.serial.then(fn, fn);
    this.serial = next.catch(() => undefined);
    return next;
  }

  /** Runs `fn` as a pass outside the schedule (a pass on demand): serialized with the loop and counted in status(). */
  passNow<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      const startedAt = performance.now();
      this.state.lastAttemptAt = new Date();
      try {
        const result = await fn();
        this.succeeded(startedAt);
        return result;
      } catch (error) {
        this.failed(error, startedAt);
        throw error;
      }
    });
  }

  /** Runs passes until `signal` aborts or stop() is called; resolves then. A pass's errors are counted, never thrown. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error(`ReconcileLoop ${this.options.name}: already running`);
    this.running = true;
    const { resyncIntervalMs, pacer } = this.options;
    const ended = (): boolean => signal.aborted || this.stopped;
    // Waits end on the caller's abort or on stop(): one listener on the caller's signal for the whole run.
    const waits = new ForwardedAbort(signal, this.stopping.signal);
    let nextResyncAt = Date.now() + resyncIntervalMs;
    try {
      while (!ended()) {
        const failures = this.state.consecutiveFailures;
        let woken = false;
        // After a failure even a wake waits for the back-off: a broken kernel or daemon must not be hammered.
        if (failures > 0) await sleep(Math.min(MAX_TIMER_MS, this.retryDelay(failures)), waits.signal);
        else woken = await this.dirty.wait(Math.min(MAX_TIMER_MS, Math.max(0, nextResyncAt - Date.now())), waits.signal);
        if (ended()) break;
        // A wake after a quiet spell goes at once; during a burst the pacer spaces passes out.
        if (pacer !== undefined) await sleep(pacer.delay(Date.now()), waits.signal);
        if (ended()) break;
        // Wakes that came while sleeping are taken by this pass.
        woken = this.dirty.take() || woken;
        const resync = Date.now() >= nextResyncAt;
        if (!woken && !resync && failures === 0) continue;
        if (resync) nextResyncAt = Date.now() + resyncIntervalMs;
        await this.exclusive(() => this.runPass(signal, resync));
      }
    } finally {
      waits.release();
      this.running = false;
    }
  }

  /** The back-off before the next pass after `failures` consecutive failed passes: never more than maxMs. */
  retryDelay(failures: number): number {
    return backoffDelay(failures, this.options.backoff, this.options.random);
  }

  private async runPass(signal: AbortSignal, resync: boolean): Promise<void> {
    const startedAt = performance.now();
    const attemptAt = new Date();
    let outcome: PassOutcome | void;
    try {
      outcome = await this.options.pass({ signal, resync });
    } catch (error) {
      if (signal.aborted) return; // a pass cut short by the stop is no failure
      this.state.lastAttemptAt = attemptAt;
      this.failed(error, startedAt);
      this.options.onFailure?.(error, { consecutiveFailures: this.state.consecutiveFailures, retryInMs: this.retryDelay(this.state.consecutiveFailures) });
      return;
    }
    if (outcome?.skipped === true) return;
    this.state.lastAttemptAt = attemptAt;
    this.options.pacer?.passed(Date.now(), outcome?.changed ?? new Set());
    this.succeeded(startedAt);
  }

  private succeeded(startedAt: number): void {
    const s = this.state;
    s.lastSuccessAt = new Date();
    s.lastError = undefined;
    s.consecutiveFailures = 0;
    s.successes++;
    this.resolveFirstSuccess();
    this.notify({ ok: true }, startedAt);
  }

  private failed(error: unknown, startedAt: number): void {
    const s = this.state;
    s.lastError = errorInfo(error, this.options.defaultErrorCode ?? 'ERROR');
    s.consecutiveFailures++;
    s.failures++;
    this.notify({ ok: false, error }, startedAt);
  }

  private notify(outcome: { ok: true } | { ok: false; error: unknown }, startedAt: number): void {
    try {
      this.options.onPass?.(outcome, performance.now() - startedAt);
    } catch {
      // An observer must never break the loop it observes.
    }
  }
}

/**
 * A signal that aborts when either source does, with its listeners removed by release() (AbortSignal.any keeps
 * an entry on its sources for good in Node 20: a loop would pile them up).
 */
class ForwardedAbort {
  private readonly controller = new AbortController();
  private readonly abort = (): void => this.controller.abort();
  constructor(private readonly a: AbortSignal, private readonly b: AbortSignal) {
    if (a.aborted || b.aborted) this.controller.abort();
    else {
      a.addEventListener('abort', this.abort, { once: true });
      b.addEventListener('abort', this.abort, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  release(): void {
    this.a.removeEventListener('abort', this.abort);
    this.b.removeEventListener('abort', this.abort);
  }
}

/**
 * The back-off after `failures` consecutive failures: initialMs doubled per failure up to maxMs, shortened by up
 * to the jitter fraction at random (never longer than without jitter).
 */
export function backoffDelay(failures: number, backoff: BackoffOptions, random: () => number = Math.random): number {
  const { initialMs, maxMs, jitter = 0.2 } = backoff;
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
  return base * (1 - jitter * random());
}

/** The code and message of a thrown value (errors here carry a stable `code`). */
export function errorInfo(error: unknown, defaultCode = 'ERROR'): { code: string; message: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { code: typeof code === 'string' ? code : defaultCode, message: error.message };
  }
  return { code: defaultCode, message: String(error) };
}

/**
 * A one-slot "something changed" signal: set() any number of times, wait() returns once. Watchers only mark
 * dirty, bursts cost one pass.
 */
export class DirtySignal {
  private dirty = false;
  private waiter: (() => void) | undefined;

  set(): void {
    this.dirty = true;
    const wake = this.waiter;
    this.waiter = undefined;
    wake?.();
  }

  /** Returns whether it was set, and clears it. */
  take(): boolean {
    const was = this.dirty;
    this.dirty = false;
    return was;
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
    return this.take();
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
  /** After this long without a change, the interval is back to the minimum (and an old change is no flap). */
  quietResetMs: number;
}

/**
 * Paces the passes of a loop that writes to the kernel, so a flapping source cannot become a kernel churn storm.
 * A change after a quiet spell goes through at once; while changes keep coming, passes are at least
 * minIntervalMs apart (a burst is taken in batches); when a pass changes again something the previous pass
 * changed (the same prefixes going back and forth), the interval doubles, up to maxIntervalMs, until the flapping
 * stops (no change for quietResetMs). A key that changes again after a quiet spell is no flap: a route withdrawn
 * minutes after it came must not wait, even while passes that change nothing keep running (every cluster event
 * makes one). Within one interval the flaps cancel out: only the state at the pass is written.
 * Pure: the caller passes the clock.
 */
export class PassPacer {
  private readonly options: PassPacerOptions;
  private interval: number;
  private lastPassAt = -Infinity;
  private lastChangeAt = -Infinity;
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
    if (now - this.lastChangeAt >= this.options.quietResetMs) this.interval = this.options.minIntervalMs;
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
    const quiet = now - this.lastChangeAt >= this.options.quietResetMs;
    this.lastChangeAt = now;
    if (quiet) {
      this.interval = this.options.minIntervalMs;
      this.previous = changed;
      return;
    }
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
