// A continuous probe stream between two lab pods (issue 6): one probe every 1/rate s from a pod's control socket,
// each answered or not within its timeout; what was lost, and the longest time without an answer, per window.
import { probe, type ProbeProtocol } from '../../../src/lab/probe.js';

export interface ProbeStreamOptions {
  /** Control socket of the pod the probes leave from. */
  from: string;
  target: string;
  port: number;
  protocol: ProbeProtocol;
  /** Probes per second (default 100). */
  ratePerSecond?: number;
  /** A probe not answered within this long is lost (default 1000 ms). */
  timeoutMs?: number;
}

export interface ProbeSample {
  /** Send time, ms since the stream started. */
  sentAt: number;
  ok: boolean;
  error?: string;
}

export interface WindowStats {
  sent: number;
  lost: number;
  /** Lost probes as time: lost / rate. */
  lostMs: number;
  /** Longest time between the send times of two answered probes in a row (about 1000/rate when nothing is lost). */
  longestGapMs: number;
  /** Errors of the lost probes, counted. */
  errors: Record<string, number>;
}

export class ProbeStream {
  /** The options with their defaults filled in (a new stream with the same ones: `new ProbeStream(s.options)`). */
  readonly options: Required<ProbeStreamOptions>;
  private readonly samples: ProbeSample[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly marks = new Map<string, number>();
  private startedAt = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(options: ProbeStreamOptions) {
    this.options = { ratePerSecond: 100, timeoutMs: 1000, ...options };
  }

  get intervalMs(): number {
    return 1000 / this.options.ratePerSecond;
  }

  start(): void {
    if (this.loop !== undefined) throw new Error('ProbeStream: already started');
    this.startedAt = performance.now();
    this.loop = this.run();
  }

  /** Ms since the stream started: the time to give `window()`. */
  now(): number {
    return performance.now() - this.startedAt;
  }

  /** Remembers the current time under a name (a fault injected, a repair). */
  mark(name: string): number {
    const at = this.now();
    this.marks.set(name, at);
    return at;
  }

  markAt(name: string): number {
    const at = this.marks.get(name);
    if (at === undefined) throw new Error(`ProbeStream: no mark named ${name}`);
    return at;
  }

  /** Stops sending and waits for the answers (or timeouts) of the probes in flight. */
  async stop(): Promise<ProbeSample[]> {
    this.stopped = true;
    await this.loop;
    await Promise.all([...this.inFlight]);
    return this.results();
  }

  results(): ProbeSample[] {
    return [...this.samples].sort((a, b) => a.sentAt - b.sentAt);
  }

  /** The probes sent in [fromMs, toMs) that have their outcome already. */
  window(fromMs: number, toMs: number): WindowStats {
    return summarizeWindow(this.results(), fromMs, toMs, this.intervalMs);
  }

  private async run(): Promise<void> {
    const { from, target, port, protocol, timeoutMs } = this.options;
    for (let i = 0; !this.stopped; i++) {
      // Keep the schedule: a late tick sends at once rather than shifting every later probe.
      const due = i * this.intervalMs;
      const wait = due - this.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (this.stopped) break;
      const sentAt = this.now();
      const pending = probe(from, { target, port, protocol, timeoutMs })
        .then((r) => {
          this.samples.push({ sentAt, ok: r.ok, ...(r.ok ? {} : { error: r.error ?? 'failed' }) });
        })
        .catch((err: unknown) => {
          this.samples.push({ sentAt, ok: false, error: err instanceof Error ? err.message : String(err) });
        })
        .finally(() => this.inFlight.delete(pending));
      this.inFlight.add(pending);
    }
  }
}

/** Pure: the stats of the samples sent in [fromMs, toMs). */
export function summarizeWindow(samples: readonly ProbeSample[], fromMs: number, toMs: number, intervalMs: number): WindowStats {
  const inside = samples.filter((s) => s.sentAt >= fromMs && s.sentAt < toMs).sort((a, b) => a.sentAt - b.sentAt);
  const errors: Record<string, number> = {};
  let lost = 0;
  let lastOk = fromMs;
  let longestGapMs = 0;
  for (const s of inside) {
    if (!s.ok) {
      lost++;
      const key = s.error ?? 'failed';
      errors[key] = (errors[key] ?? 0) + 1;
      continue;
    }
    longestGapMs = Math.max(longestGapMs, s.sentAt - lastOk);
    lastOk = s.sentAt;
  }
  if (inside.length > 0) longestGapMs = Math.max(longestGapMs, Math.min(toMs, (inside[inside.length - 1]?.sentAt ?? toMs) + intervalMs) - lastOk);
  return { sent: inside.length, lost, lostMs: Math.round(lost * intervalMs), longestGapMs: Math.round(longestGapMs), errors };
}
