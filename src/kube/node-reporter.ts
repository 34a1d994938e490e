// What the agent tells Kubernetes about its node: the NetworkUnavailable condition once routes are programmed,
// and Events for things an operator must see (bad annotations, rejected routes, peers going down).
import type { KubeEvent } from './wire.js';
import type { Logger } from '../observe/log.js';
import { describeError } from './cluster-watch.js';
import { KubeApi, type KubeConnectionConfig } from './kube-api.js';

export const CONDITION_REASON = 'PodrouteRoutesProgrammed';

export interface EventLimits {
  /** The same message is posted again only after this long (an Event storm helps nobody). */
  repeatMs: number;
  /** Messages remembered for repeatMs at most; past this the oldest are forgotten. */
  maxRemembered: number;
  /** Events of one reason posted back to back before the rate applies. */
  burst: number;
  /** Events of one reason posted per minute after the burst. */
  perMinute: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = { repeatMs: 10 * 60_000, maxRemembered: 1024, burst: 5, perMinute: 6 };

/**
 * Which Events go out: a message seen within repeatMs does not, and each reason has a token bucket, so a peer
 * rotating prefixes (a new message each time) costs a burst and then a trickle, not an Event per prefix. Memory is
 * bounded: messages older than repeatMs are dropped, and at most maxRemembered are kept.
 */
export class EventLimiter {
  // Key -> when posted; kept in posting order (a repost moves its key to the end), so the oldest come first.
  private readonly posted = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly limits: EventLimits = DEFAULT_EVENT_LIMITS) {}

  /** True when an Event with this key (its object and message) and reason may be posted at `now` (ms). */
  admit(key: string, reason: string, now: number): boolean {
    this.forget(now);
    const last = this.posted.get(key);
    if (last !== undefined && now - last < this.limits.repeatMs) return false;
    const bucket = this.buckets.get(reason) ?? { tokens: this.limits.burst, at: now };
    bucket.tokens = Math.min(this.limits.burst, bucket.tokens + ((now - bucket.at) * this.limits.perMinute) / 60_000);
    bucket.at = now;
    this.buckets.set(reason, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    this.posted.delete(key);
    this.posted.set(key, now);
    while (this.posted.size > this.limits.maxRemembered) this.posted.delete(this.posted.keys().next().value as string);
    return true;
  }

  /** How many messages are remembered now. */
  get remembered(): number {
    return this.posted.size;
  }

  private forget(now: number): void {
    for (const [key, at] of this.posted) {
      if (now - at < this.limits.repeatMs) break;
      this.posted.delete(key);
    }
    // A full bucket is the same as none; reasons are few, but a bucket is only kept while it matters.
    for (const [reason, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * this.limits.perMinute) / 60_000 >= this.limits.burst) this.buckets.delete(reason);
    }
  }
}

export interface NodeReporterOptions {
  kubeConfig: KubeConnectionConfig;
  nodeName: string;
  logger: Logger;
  /** Namespace Events about the Node go to (cluster-scoped objects' events live in "default"). */
  eventNamespace?: string;
  eventLimits?: EventLimits;
  /** Milliseconds now (tests pass a fake clock). */
  clock?: () => number;
}

/** The object an Event is about (its involvedObject). */
export interface EventSubject {
  kind: string;
  apiVersion: string;
  name: string;
  namespace?: string;
}

export class NodeReporter {
  private readonly api: KubeApi;
  private readonly limiter: EventLimiter;
  private readonly clock: () => number;
  private conditionSet = false;

  constructor(private readonly options: NodeReporterOptions) {
    this.api = new KubeApi({ config: options.kubeConfig });
    this.limiter = new EventLimiter(options.eventLimits);
    this.clock = options.clock ?? Date.now;
  }

  /** Sets NetworkUnavailable=False (once per process; the condition outlives agent restarts anyway). */
  async markNetworkAvailable(signal?: AbortSignal): Promise<void> {
    if (this.conditionSet) return;
    const now = new Date().toISOString();
    const body = {
      status: {
        conditions: [
          { type: 'NetworkUnavailable', status: 'False', reason: CONDITION_REASON, message: 'podroute programmed the routes of this node', lastTransitionTime: now, lastHeartbeatTime: now },
        ],
      },
    };
    // Strategic merge: conditions merge by type, so the kubelet's own conditions stay as they are.
    await this.api.patch('/api/v1/nodes/{name}/status', body, { params: { name: this.options.nodeName }, patchType: 'strategic-merge', ...(signal === undefined ? {} : { signal }) });
    this.conditionSet = true;
    this.options.logger.info('node condition NetworkUnavailable=False set', { node: this.options.nodeName });
  }

  /**
   * Posts an Event on the Node, or on `about` (e.g. a NetworkPolicy, so that `kubectl describe` shows it there);
   * failures are logged, never thrown (Events are best effort).
   */
  async event(type: 'Normal' | 'Warning', reason: string, message: string, about?: EventSubject): Promise<void> {
    const key = `${about?.kind ?? 'Node'}/${about?.namespace ?? ''}/${about?.name ?? ''}/${type}/${reason}/${message}`;
    if (!this.limiter.admit(key, reason, this.clock())) {
      this.options.logger.debug('Event not posted (repeated or over its rate)', { reason, message });
      return;
    }
    const namespace = about?.namespace ?? this.options.eventNamespace ?? 'default';
    const now = new Date(this.clock()).toISOString();
    // Timestamps as the API's strings (the generated client would have serialized Dates the same way).
    const body: Omit<KubeEvent, 'firstTimestamp' | 'lastTimestamp'> & { firstTimestamp: string; lastTimestamp: string } = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${this.options.nodeName}.podroute.`, namespace },
      involvedObject: about ?? { kind: 'Node', name: this.options.nodeName, apiVersion: 'v1' },
      type,
      reason,
      message,
      source: { component: 'podroute', host: this.options.nodeName },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      reportingComponent: 'podroute',
      reportingInstance: this.options.nodeName,
    };
    try {
      await this.api.create('/api/v1/namespaces/{namespace}/events', body, { params: { namespace } });
    } catch (err) {
      this.options.logger.warn('could not post a Kubernetes Event', { reason, error: describeError(err) });
    }
  }

  /** Closes idle connections to the API server. */
  close(): void {
    this.api.close();
  }
}
