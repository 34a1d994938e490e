// Continuous probe streams for the fault tests (issue 6): each flow sends one probe every 1/rate s from a pod's
// control socket, without waiting for the previous answer; a probe not answered (by the expected pod) within its
// timeout is lost. Per flow: sent, lost, the longest time between two answered probes, and for flows that policy
// must deny, how many got through.
import { parsePodReply, probe, type ProbeProtocol } from '../../../src/lab/probe.js';

export interface FlowSpec {
  name: string;
  /** Control socket of the pod the probes leave from. */
  from: string;
  target: string;
  port: number;
  protocol: ProbeProtocol;
  /** `namespace/name` of the pod that must answer. */
  expectIdentity: string;
  /** Probes per second (default 100). */
  ratePerSecond?: number;
  /** Policy denies this flow: every answer is a breach. */
  denied?: boolean;
}

export interface FlowStats {
  name: string;
  sent: number;
  lost: number;
  /** Answers that came back on a flow policy denies. */
  breaches: number;
  /** Longest time between the send times of two answered probes in a row (ms). */
  longestGapMs: number;
  /** Lost probes as time at the flow's rate (ms). */
  lostMs: number;
  /** Send times (ms since start) of the first and the last lost probe. */
  firstLossAt?: number;
  lastLossAt?: number;
  errors: Record<string, number>;
}

interface Sample {
  at: number;
  ok: boolean;
  error?: string;
}

const PROBE_TIMEOUT_MS = 1000;

/** Streams started and not stopped yet: a test that failed half-way leaves its streams here (see stopLeftoverStreams). */
const running = new Set<ProbeStreams>();

/** Stops the streams a failed test left running (their loops would keep mocha from ever exiting). */
export async function stopLeftoverStreams(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** Several flows at once; start(), inject a fault, stop() for the figures. */
export class ProbeStreams {
  private readonly samples = new Map<string, Sample[]>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly loops: Promise<void>[] = [];
  private startedAt = 0;
  private stopped = false;

  constructor(private readonly flows: readonly FlowSpec[]) {}

  start(): void {
    running.add(this);
    this.startedAt = performance.now();
    for (const flow of this.flows) {
      this.samples.set(flow.name, []);
      this.loops.push(this.run(flow));
    }
  }

  /** Ms since start. */
  now(): number {
    return performance.now() - this.startedAt;
  }

  /** Stops sending, waits for every probe in flight and returns the figures per flow. */
  async stop(): Promise<FlowStats[]> {
    running.delete(this);
    this.stopped = true;
    await Promise.all(this.loops);
    await Promise.all([...this.inFlight]);
    return this.flows.map((flow) => statsOf(flow, this.samples.get(flow.name) ?? []));
  }

  private async run(flow: FlowSpec): Promise<void> {
    const interval = 1000 / (flow.ratePerSecond ?? 100);
    const list = this.samples.get(flow.name)!;
    let next = this.now();
    while (!this.stopped) {
      const at = this.now();
      const p = probe(flow.from, { target: flow.target, port: flow.port, protocol: flow.protocol, timeoutMs: PROBE_TIMEOUT_MS })
        .then((result) => {
          const answeredBy = result.ok ? parsePodReply(result.reply ?? '')?.identity : undefined;
          const ok = answeredBy === flow.expectIdentity;
          list.push(ok ? { at, ok } : { at, ok, error: result.ok ? `answered by ${answeredBy ?? result.reply ?? '?'}` : (result.error ?? 'failed') });
        })
        .catch((err: unknown) => {
          list.push({ at, ok: false, error: err instanceof Error ? err.message : String(err) });
        });
      this.inFlight.add(p);
      void p.finally(() => this.inFlight.delete(p));
      // Fixed schedule (no drift), but never a burst to catch up after a stall of the test process.
      next = Math.max(next + interval, this.now());
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - this.now())));
    }
  }
}

export function statsOf(flow: Pick<FlowSpec, 'name' | 'ratePerSecond' | 'denied'>, samplesIn: readonly Sample[]): FlowStats {
  const samples = [...samplesIn].sort((a, b) => a.at - b.at);
  const stats: FlowStats = { name: flow.name, sent: samples.length, lost: 0, breaches: 0, longestGapMs: 0, lostMs: 0, errors: {} };
  let lastOk: number | undefined;
  for (const s of samples) {
    if (flow.denied === true) {
      if (s.ok) stats.breaches++;
      continue;
    }
    if (s.ok) {
      if (lastOk !== undefined) stats.longestGapMs = Math.max(stats.longestGapMs, s.at - lastOk);
      lastOk = s.at;
    } else {
      stats.lost++;
      stats.firstLossAt ??= s.at;
      stats.lastLossAt = s.at;
      const key = s.error ?? 'failed';
      stats.errors[key] = (stats.errors[key] ?? 0) + 1;
    }
  }
  stats.lostMs = Math.round((stats.lost * 1000) / (flow.ratePerSecond ?? 100));
  stats.longestGapMs = Math.round(stats.longestGapMs);
  if (stats.firstLossAt !== undefined) stats.firstLossAt = Math.round(stats.firstLossAt);
  if (stats.lastLossAt !== undefined) stats.lastLossAt = Math.round(stats.lastLossAt);
  return stats;
}
