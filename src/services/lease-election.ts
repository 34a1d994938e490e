// One allocator in the cluster at a time: leader election on a coordination.k8s.io/v1 Lease among the agents, as
// client-go's leaderelection does it (no extra Deployment to run).
// - Expiry is judged on this node's own clock: a Lease counts as expired when its record has not changed for
//   leaseDurationSeconds since this agent last saw it change, so clock skew between nodes does not matter.
// - Every write carries the resourceVersion read: of two agents taking an expired Lease at once, one write wins
//   and the other gets a conflict and follows.
// - A leader that cannot renew for renewDeadline (two thirds of the duration) stops leading before anyone else
//   may take over, and a leader that stops gives the Lease up (an empty holder) so another takes over at once.
import type { KubeApi } from '../kube/kube-api.js';
import { KubeApiError } from '../kube/kube-api.js';
import { sleep } from '../reconcile/loop.js';

/** The spec of a Lease (coordination.k8s.io/v1 LeaseSpec, the fields leader election uses). */
export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface LeaseObject {
  metadata?: { resourceVersion?: string };
  spec?: LeaseRecord;
}

export type LeaseAction =
  | { kind: 'create'; spec: LeaseRecord }
  | { kind: 'renew'; spec: LeaseRecord }
  | { kind: 'acquire'; spec: LeaseRecord }
  | { kind: 'follow'; holder: string };

/** A MicroTime as the API writes it (RFC 3339 with six fractional digits). */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/**
 * What this agent does with the Lease as read: `unchangedForMs` is how long its record has stayed the same as this
 * agent observed it (undefined: it just changed, or was never seen).
 */
export function decideLease(current: LeaseRecord | undefined, identity: string, now: Date, durationSeconds: number, unchangedForMs: number | undefined): LeaseAction {
  const time = microTime(now);
  if (current === undefined) {
    return { kind: 'create', spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: time, renewTime: time, leaseTransitions: 0 } };
  }
  const holder = current.holderIdentity ?? '';
  if (holder === identity) return { kind: 'renew', spec: { ...current, leaseDurationSeconds: durationSeconds, renewTime: time } };
  const duration = (current.leaseDurationSeconds ?? durationSeconds) * 1000;
  if (holder !== '' && (unchangedForMs === undefined || unchangedForMs < duration)) return { kind: 'follow', holder };
  return {
    kind: 'acquire',
    spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: time, renewTime: time, leaseTransitions: (current.leaseTransitions ?? 0) + 1 },
  };
}

export interface LeaseElectorOptions {
  api: Pick<KubeApi, 'read' | 'create' | 'patch'>;
  /** Where the Lease lives; default the agent's own namespace, kube-system. */
  namespace?: string;
  name: string;
  /** This agent's identity in the Lease (its node name). */
  identity: string;
  /** Default 15 s, as client-go's. */
  durationSeconds?: number;
  /** How often the leader renews and a follower looks; default a fifth of the duration. */
  retryMs?: number;
  /** Hears every change of leadership. */
  onLeading: (leading: boolean) => void;
  onError?: (error: unknown) => void;
  /** Monotonic milliseconds; for tests. */
  now?: () => number;
}

export class LeaseElector {
  private readonly namespace: string;
  private readonly durationSeconds: number;
  private readonly retryMs: number;
  private readonly now: () => number;
  private leading = false;
  /** When this agent last renewed successfully (monotonic ms). */
  private renewedAt = -Infinity;
  /** The Lease record as last seen, and since when it has looked like that (monotonic ms). */
  private observed: { text: string; since: number } | undefined;

  constructor(private readonly options: LeaseElectorOptions) {
    this.namespace = options.namespace ?? 'kube-system';
    this.durationSeconds = options.durationSeconds ?? 15;
    this.retryMs = options.retryMs ?? (this.durationSeconds * 1000) / 5;
    this.now = options.now ?? (() => performance.now());
  }

  isLeading(): boolean {
    return this.leading;
  }

  /** Takes part until `signal` aborts; then gives the Lease up if it holds it. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.tryOnce(signal);
      } catch (error) {
        if (signal.aborted) break;
        this.options.onError?.(error);
      }
      // Renewing too late is losing: a leader that could not renew within the deadline stops leading.
      if (this.leading && this.now() - this.renewedAt > (this.durationSeconds * 1000 * 2) / 3) this.setLeading(false);
      await sleep(this.retryMs, signal);
    }
    if (this.leading) {
      this.setLeading(false);
      await this.release().catch((error: unknown) => this.options.onError?.(error));
    }
  }

  private async tryOnce(signal: AbortSignal): Promise<void> {
    const params = { namespace: this.namespace, name: this.options.name };
    let lease: LeaseObject | undefined;
    try {
      lease = await this.options.api.read<LeaseObject>('/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}', { params, signal });
    } catch (error) {
      if (!(error instanceof KubeApiError && error.status === 404)) throw error;
    }
    const now = this.now();
    const text = JSON.stringify(lease?.spec ?? null);
    if (this.observed?.text !== text) this.observed = { text, since: now };
    const action = decideLease(lease?.spec, this.options.identity, new Date(), this.durationSeconds, lease === undefined ? undefined : now - this.observed.since);
    if (action.kind === 'follow') {
      this.setLeading(false);
      return;
    }
    try {
      if (action.kind === 'create') {
        const body = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.options.name, namespace: this.namespace }, spec: action.spec };
        await this.options.api.create('/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases', body, { params: { namespace: this.namespace }, signal });
      } else {
        // The resourceVersion read is a precondition: another agent's write in between makes this one a conflict.
        const body = { metadata: { resourceVersion: lease?.metadata?.resourceVersion }, spec: action.spec };
        await this.options.api.patch('/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}', body, { params, patchType: 'merge', signal });
      }
    } catch (error) {
      // Another agent wrote first (409): it leads, this one follows.
      if (error instanceof KubeApiError && error.status === 409) {
        this.setLeading(false);
        return;
      }
      throw error;
    }
    this.renewedAt = this.now();
    this.setLeading(true);
  }

  /** An empty holder: the next agent to look takes the Lease at once instead of waiting for it to expire. */
  private async release(): Promise<void> {
    const params = { namespace: this.namespace, name: this.options.name };
    const lease = await this.options.api.read<LeaseObject>('/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}', { params });
    if (lease.spec?.holderIdentity !== this.options.identity) return;
    const body = { metadata: { resourceVersion: lease.metadata?.resourceVersion }, spec: { holderIdentity: '', renewTime: microTime(new Date()) } };
    await this.options.api.patch('/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}', body, { params, patchType: 'merge' });
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.options.onLeading(leading);
  }
}
