// Liveness and readiness of the agent's loops.
//
// Liveness (/healthz): every loop reports a heartbeat after each successful pass. A loop whose last successful
// pass is older than its allowed staleness (e.g. 3 × its resync interval) is stuck, and the agent is unhealthy.
// A loop that has not yet completed its first pass is "starting", not stuck: waiting for the cluster or for
// gobgpd is what readiness reports; restarting the agent would not help it.
//
// Readiness (/readyz): every loop completed a first pass, plus named checks (gobgpd reachable, ...). Each check
// answers with a reason when not ready, so the 503 body says why.
//
// Heartbeats can be pushed (ReconcilerHealth, by the loop itself) or read from a reconciler's own status()
// when the check runs (`observe`); both are merged, so a reconciler can start pushing without double counting.

/** What every loop feeds: a heartbeat after each successful pass, a failure after each failed one. */
export interface ReconcilerHealth {
  /** After each successful pass; durationMs (how long the pass took) goes into the duration histogram. */
  heartbeat(durationMs?: number): void;
  /** After each failed pass. */
  failure(error: unknown, durationMs?: number): void;
}

/** A reconciler's own account of its passes, read at check time. */
export interface LoopObservation {
  /** End of the last successful pass. */
  lastSuccessAt?: Date | null | undefined;
  /** The last failure, if it is more recent than the last success (cleared by a success). */
  lastError?: string | { message: string; code?: string; at?: Date } | null | undefined;
  /** Failed passes in total (monotonic). */
  failures?: number | undefined;
}

export interface LoopOptions {
  /** A loop whose last successful pass is older than this is stuck. */
  staleAfterMs: number;
  /** Reads the reconciler's status (undefined while it does not exist yet, e.g. created lazily). */
  observe?: () => LoopObservation | undefined;
  /** Whether readiness waits for this loop's first successful pass (default true). */
  requiredForReadiness?: boolean;
}

export type LoopState = 'ok' | 'starting' | 'stuck';

export interface LoopReport {
  name: string;
  state: LoopState;
  healthy: boolean;
  /** ISO time of the last successful pass, null before the first. */
  lastSuccessAt: string | null;
  /** Seconds since the last successful pass. */
  ageSeconds: number | null;
  staleAfterSeconds: number;
  failures: number;
  lastError: { message: string; at: string | null } | null;
}

export interface HealthReport {
  healthy: boolean;
  /** Names of the stuck loops. */
  stuck: string[];
  loops: LoopReport[];
}

export interface ReadinessReport {
  ready: boolean;
  /** One line per unmet condition. */
  reasons: string[];
  checks: { name: string; ready: boolean; reason: string | null }[];
}

/** Answers undefined when ready, else the reason (a short sentence). May be async; it is time-limited. */
export type ReadinessCheck = () => string | undefined | Promise<string | undefined>;

export type PassListener = (loop: string, outcome: 'success' | 'failure', durationMs: number | undefined) => void;

export class HealthError extends Error {
  constructor(
    readonly code: 'DUPLICATE_LOOP' | 'INVALID_OPTION',
    message: string,
  ) {
    super(message);
    this.name = 'HealthError';
  }
}

interface LoopRecord {
  name: string;
  options: LoopOptions;
  pushedSuccessAt: number | undefined;
  pushedFailures: number;
  pushedError: { message: string; at: number } | undefined;
}

const DEFAULT_CHECK_TIMEOUT_MS = 2_000;

export class HealthMonitor {
  private readonly loops = new Map<string, LoopRecord>();
  private readonly checks = new Map<string, ReadinessCheck>();
  private readonly passListeners = new Set<PassListener>();
  private readonly now: () => number;
  private readonly checkTimeoutMs: number;

  constructor(options: { now?: () => number; checkTimeoutMs?: number } = {}) {
    this.now = options.now ?? Date.now;
    this.checkTimeoutMs = options.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  }

  /** Registers a loop; the returned handle is what the loop feeds. */
  register(name: string, options: LoopOptions): ReconcilerHealth {
    if (this.loops.has(name)) throw new HealthError('DUPLICATE_LOOP', `loop ${JSON.stringify(name)} is already registered`);
    if (!(Number.isFinite(options.staleAfterMs) && options.staleAfterMs > 0)) {
      throw new HealthError('INVALID_OPTION', `loop ${name}: staleAfterMs must be a positive number of milliseconds, got ${String(options.staleAfterMs)}`);
    }
    const record: LoopRecord = { name, options, pushedSuccessAt: undefined, pushedFailures: 0, pushedError: undefined };
    this.loops.set(name, record);
    return {
      heartbeat: (durationMs) => {
        record.pushedSuccessAt = this.now();
        record.pushedError = undefined;
        this.emitPass(name, 'success', durationMs);
      },
      failure: (error, durationMs) => {
        record.pushedFailures++;
        record.pushedError = { message: errorMessage(error), at: this.now() };
        this.emitPass(name, 'failure', durationMs);
      },
    };
  }

  /** Adds a readiness condition besides "every loop passed once". */
  addReadinessCheck(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Called on every pushed pass (the metrics' duration histogram listens). Returns the unsubscribe function. */
  onPass(listener: PassListener): () => void {
    this.passListeners.add(listener);
    return () => this.passListeners.delete(listener);
  }

  loopNames(): string[] {
    return [...this.loops.keys()];
  }

  health(): HealthReport {
    const now = this.now();
    const loops = [...this.loops.values()].map((r) => this.reportLoop(r, now));
    const stuck = loops.filter((l) => l.state === 'stuck').map((l) => l.name);
    return { healthy: stuck.length === 0, stuck, loops };
  }

  async readiness(): Promise<ReadinessReport> {
    const now = this.now();
    const checks: ReadinessReport['checks'] = [];
    for (const record of this.loops.values()) {
      if (record.options.requiredForReadiness === false) continue;
      const report = this.reportLoop(record, now);
      const reason =
        report.lastSuccessAt !== null
          ? null
          : `${record.name}: no successful pass yet${report.lastError === null ? '' : ` (last error: ${report.lastError.message})`}`;
      checks.push({ name: `loop:${record.name}`, ready: reason === null, reason });
    }
    const results = await Promise.all(
      [...this.checks].map(async ([name, check]) => ({ name, reason: await runCheck(name, check, this.checkTimeoutMs) })),
    );
    for (const { name, reason } of results) checks.push({ name, ready: reason === undefined, reason: reason ?? null });
    const reasons = checks.flatMap((c) => (c.reason === null ? [] : [c.reason]));
    return { ready: reasons.length === 0, reasons, checks };
  }

  private reportLoop(record: LoopRecord, now: number): LoopReport {
    const observed = safeObserve(record);
    const observedSuccess = observed?.lastSuccessAt instanceof Date ? observed.lastSuccessAt.getTime() : undefined;
    const lastSuccess = maxDefined(record.pushedSuccessAt, observedSuccess);
    const observedError = normalizeError(observed?.lastError);
    // The newer of the two errors; an error older than the last success is history, not the current state.
    let lastError = record.pushedError;
    if (observedError !== undefined && (lastError === undefined || (observedError.at ?? now) >= lastError.at)) {
      lastError = { message: observedError.message, at: observedError.at ?? now };
    }
    if (lastError !== undefined && lastSuccess !== undefined && lastError.at < lastSuccess) lastError = undefined;
    const failures = Math.max(record.pushedFailures, observed?.failures ?? 0);
    const ageMs = lastSuccess === undefined ? undefined : Math.max(0, now - lastSuccess);
    const state: LoopState = ageMs === undefined ? 'starting' : ageMs > record.options.staleAfterMs ? 'stuck' : 'ok';
    return {
      name: record.name,
      state,
      healthy: state !== 'stuck',
      lastSuccessAt: lastSuccess === undefined ? null : new Date(lastSuccess).toISOString(),
      ageSeconds: ageMs === undefined ? null : ageMs / 1000,
      staleAfterSeconds: record.options.staleAfterMs / 1000,
      failures,
      lastError: lastError === undefined ? null : { message: lastError.message, at: new Date(lastError.at).toISOString() },
    };
  }

  private emitPass(name: string, outcome: 'success' | 'failure', durationMs: number | undefined): void {
    for (const l of this.passListeners) {
      try {
        l(name, outcome, durationMs);
      } catch {
        // A metrics listener must never break the loop that reports.
      }
    }
  }
}

function safeObserve(record: LoopRecord): LoopObservation | undefined {
  try {
    return record.options.observe?.();
  } catch {
    return undefined;
  }
}

function normalizeError(e: LoopObservation['lastError']): { message: string; at: number | undefined } | undefined {
  if (e === undefined || e === null) return undefined;
  if (typeof e === 'string') return { message: e, at: undefined };
  const message = e.code !== undefined && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message;
  return { message, at: e.at?.getTime() };
}

function maxDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

async function runCheck(name: string, check: ReadinessCheck, timeoutMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`${name}: check did not answer within ${timeoutMs} ms`), timeoutMs);
    });
    return await Promise.race([Promise.resolve().then(check), timeout]);
  } catch (err) {
    return `${name}: check failed: ${errorMessage(err)}`;
  } finally {
    clearTimeout(timer);
  }
}
