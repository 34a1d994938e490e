// The LoadBalancer allocator at work: while this agent holds the allocator Lease, a level-triggered loop plans
// the allocations (planAllocations) from the Services the agent watches and writes them into the Services'
// status, with a condition saying how it went and an Event when that changes.
// - Only the Lease holder writes, and every write carries the resourceVersion it was planned from: a leader that
//   lost the Lease without knowing it, or planned from an old view, gets 409 Conflict instead of overwriting a
//   newer status. A conflict ends the pass's writes and the next pass plans again.
// - The watch cache says whether anything is to be done; before writing, the pass lists the Services from the
//   API and plans again from that list, so a cache lagging behind the previous leader's (or this leader's own)
//   last writes can never hand out an address twice.
// - The condition is the memory of what was reported: an Event goes out when a Service's condition changes, so
//   neither a pass nor a new leader repeats one.
// RBAC: all namespaces. Services live in every namespace, and so do the Events about them.
import type { Service } from '../kube/wire.js';
import type { KubeApi } from '../kube/kube-api.js';
import { KubeApiError } from '../kube/kube-api.js';
import { describeError } from '../kube/cluster-watch.js';
import type { Logger } from '../observe/log.js';
import { errorInfo, ReconcileLoop, type PassListener, type ReconcileStatus } from '../reconcile/loop.js';
import { parseIpAddress } from '../routes/ip-prefix.js';
import { externalIPProblems } from './advertise.js';
import { isOurLoadBalancer, planAllocations, serviceKey, type AllocationProblemReason, type LoadBalancerPool } from './allocator.js';
import { LeaseElector } from './lease-election.js';

/** Our condition on a LoadBalancer Service of ours: True when it holds the addresses it should, False with the problem. */
export const ALLOCATED_CONDITION = 'podroute.io/LoadBalancerAllocated';
/** Our condition on a Service with `spec.externalIPs` (when ranges are configured): False when one is not advertised. */
export const EXTERNAL_IPS_CONDITION = 'podroute.io/ExternalIPsAllowed';
export const DEFAULT_LEASE_NAME = 'podroute-allocator';

export type StatusProblemReason = AllocationProblemReason | 'ExternalIPNotAllowed';

/** metav1.Condition as the API stores it. */
export interface ServiceCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

interface LoadBalancerIngress {
  ip?: string;
  hostname?: string;
  [field: string]: unknown;
}

export interface ServiceEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** One Service's status write: a merge patch of the status subresource, and the Events to post once it is in. */
export interface StatusWrite {
  namespace: string;
  name: string;
  uid: string | undefined;
  /** The precondition: the version planned from. */
  resourceVersion: string | undefined;
  /** Only what changes: the ingress list of a Service whose addresses change, the conditions when one of ours does. */
  status: { loadBalancer?: { ingress: LoadBalancerIngress[] | null }; conditions?: ServiceCondition[] | null };
  events: ServiceEvent[];
  /** Addresses given and taken back by this write (for logs and counts). */
  allocated: string[];
  released: string[];
}

export interface StatusPlan {
  writes: StatusWrite[];
  /** Addresses held by Services of ours after the writes. */
  allocatedAddresses: number;
  problemsByReason: Map<StatusProblemReason, number>;
}

const PROBLEM_SEPARATOR = '; ';

function conditionsOf(service: Service): ServiceCondition[] {
  return ((service.status as { conditions?: ServiceCondition[] } | undefined)?.conditions ?? []).map((c) => ({ ...c }));
}

function canonical(ip: string | undefined): string | undefined {
  return ip === undefined ? undefined : parseIpAddress(ip)?.text;
}

/** The condition a Service should carry: True with `okReason`, or False with the first problem's reason and all messages. */
function wantedCondition(type: string, okReason: string, okMessage: string, problems: readonly { reason: string; message: string }[], generation: number | undefined): Omit<ServiceCondition, 'lastTransitionTime'> {
  const messages = [...new Set(problems.map((p) => p.message))];
  const base = problems.length === 0 ? { type, status: 'True' as const, reason: okReason, message: okMessage } : { type, status: 'False' as const, reason: problems[0]!.reason, message: messages.join(PROBLEM_SEPARATOR) };
  return generation === undefined ? base : { ...base, observedGeneration: generation };
}

function sameCondition(a: ServiceCondition | undefined, b: Omit<ServiceCondition, 'lastTransitionTime'>): boolean {
  return a !== undefined && a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration;
}

/** The problems a False condition of ours reported (its message lists them). */
function reportedProblems(condition: ServiceCondition | undefined): Set<string> {
  return condition?.status === 'False' ? new Set(condition.message.split(PROBLEM_SEPARATOR)) : new Set();
}

/**
 * From the Services as read, the pools and the allowed external ranges (undefined: external IPs not reported):
 * the status writes that bring every Service's ingress addresses and conditions of ours where they should be,
 * each with the Events to post. Pure; `now` stamps a condition whose status changes.
 */
export function planStatusWrites(services: readonly Service[], pools: readonly LoadBalancerPool[], externalIPRanges: readonly string[] | undefined, now: Date): StatusPlan {
  const plan = planAllocations(services, pools);
  const allocationProblems = new Map<string, { reason: StatusProblemReason; message: string }[]>();
  const problemsByReason = new Map<StatusProblemReason, number>();
  const count = (reason: StatusProblemReason): void => void problemsByReason.set(reason, (problemsByReason.get(reason) ?? 0) + 1);
  for (const p of plan.problems) {
    allocationProblems.set(p.service, [...(allocationProblems.get(p.service) ?? []), p]);
    count(p.reason);
  }
  const externalProblems = new Map<string, { reason: StatusProblemReason; message: string }[]>();
  for (const p of externalIPRanges === undefined ? [] : externalIPProblems(services, externalIPRanges)) {
    externalProblems.set(p.service, [...(externalProblems.get(p.service) ?? []), p]);
    count(p.reason);
  }
  const changes = new Map(plan.changes.map((c) => [`${c.namespace}/${c.name}`, c]));
  const time = now.toISOString().replace(/\.\d+Z$/, 'Z');
  const writes: StatusWrite[] = [];
  let allocatedAddresses = 0;
  for (const ips of plan.allocations.values()) allocatedAddresses += ips.length;

  for (const service of services) {
    const key = serviceKey(service);
    const generation = service.metadata?.generation;
    const current = conditionsOf(service);
    const events: ServiceEvent[] = [];
    let conditions = current;
    let conditionsChanged = false;
    /** Puts a condition of ours as wanted (undefined: removes it); a new problem in it is an Event. */
    const setCondition = (type: string, wanted: Omit<ServiceCondition, 'lastTransitionTime'> | undefined): void => {
      const old = conditions.find((c) => c.type === type);
      if (wanted === undefined) {
        if (old === undefined) return;
        conditions = conditions.filter((c) => c.type !== type);
        conditionsChanged = true;
        return;
      }
      if (sameCondition(old, wanted)) return;
      const reported = reportedProblems(old);
      if (wanted.status === 'False') {
        for (const message of wanted.message.split(PROBLEM_SEPARATOR)) {
          if (reported.has(message)) continue;
          const problem = [...(allocationProblems.get(key) ?? []), ...(externalProblems.get(key) ?? [])].find((p) => p.message === message);
          events.push({ type: 'Warning', reason: problem?.reason ?? wanted.reason, message });
        }
      }
      const lastTransitionTime = old !== undefined && old.status === wanted.status ? old.lastTransitionTime : time;
      const next: ServiceCondition = { ...wanted, lastTransitionTime };
      conditions = old === undefined ? [...conditions, next] : conditions.map((c) => (c.type === type ? next : c));
      conditionsChanged = true;
    };

    const ours = isOurLoadBalancer(service);
    const allocation = plan.allocations.get(key) ?? [];
    if (ours) {
      const problems = allocationProblems.get(key) ?? [];
      setCondition(ALLOCATED_CONDITION, wantedCondition(ALLOCATED_CONDITION, 'Allocated', allocation.length === 0 ? 'no address assigned' : `assigned ${allocation.join(', ')}`, problems, generation));
    } else {
      setCondition(ALLOCATED_CONDITION, undefined);
    }
    if (externalIPRanges !== undefined && (service.spec?.externalIPs ?? []).length > 0) {
      setCondition(EXTERNAL_IPS_CONDITION, wantedCondition(EXTERNAL_IPS_CONDITION, 'Allowed', 'every externalIPs entry is inside services.externalIPRanges', externalProblems.get(key) ?? [], generation));
    } else {
      setCondition(EXTERNAL_IPS_CONDITION, undefined);
    }

    const change = changes.get(key);
    const entries = (service.status?.loadBalancer?.ingress ?? []) as LoadBalancerIngress[];
    let ingress = entries;
    const held = new Set(entries.map((e) => canonical(e.ip)).filter((ip): ip is string => ip !== undefined));
    let allocated: string[] = [];
    let released: string[] = [];
    if (change !== undefined) {
      const wanted = new Set(change.ips);
      allocated = change.ips.filter((ip) => !held.has(ip));
      released = [...held].filter((ip) => !wanted.has(ip));
      if (ours) {
        // Ours alone: the status lists exactly the allocation (an entry kept as it was, with its other fields).
        ingress = change.ips.map((ip) => entries.find((e) => canonical(e.ip) === ip) ?? { ip });
      } else {
        // No longer ours: only the pool addresses go, whatever else is listed stays.
        ingress = entries.filter((e) => { const ip = canonical(e.ip); return ip === undefined || wanted.has(ip); });
      }
      if (allocated.length > 0) events.push({ type: 'Normal', reason: 'IPAllocated', message: `assigned ${allocated.join(', ')}` });
      if (released.length > 0) events.push({ type: 'Normal', reason: 'IPReleased', message: `released ${released.join(', ')}` });
    }
    if (change === undefined && !conditionsChanged) continue;
    writes.push({
      namespace: service.metadata?.namespace ?? '',
      name: service.metadata?.name ?? '',
      uid: service.metadata?.uid,
      resourceVersion: service.metadata?.resourceVersion,
      // Empty lists are written as null (removed), as the API renders them. A merge patch replaces a list whole:
      // the conditions of others go along as read, and the resourceVersion guarantees they are still those.
      status: {
        ...(change === undefined ? {} : { loadBalancer: { ingress: ingress.length === 0 ? null : ingress } }),
        ...(conditionsChanged ? { conditions: conditions.length === 0 ? null : conditions } : {}),
      },
      events,
      allocated,
      released,
    });
  }
  return { writes, allocatedAddresses, problemsByReason };
}

/** The KubeApi calls the allocator makes. */
export type AllocatorApi = Pick<KubeApi, 'list' | 'read' | 'create' | 'patch'>;

export interface LoadBalancerAllocatorOptions {
  api: AllocatorApi;
  /** This agent's identity in the Lease and on Events (its node name). */
  identity: string;
  pools: readonly LoadBalancerPool[];
  /** Where `spec.externalIPs` may lie (services.externalIPRanges): the leader reports the others. Undefined: not reported. */
  externalIPRanges?: readonly string[];
  /** The Services as the agent's watch holds them now; call trigger() when they change. */
  services: () => readonly Service[];
  logger: Logger;
  /** The Lease (default podroute-allocator in the elector's default namespace, kube-system). */
  leaseName?: string;
  leaseNamespace?: string;
  /** Default 15 s (client-go's). */
  leaseDurationSeconds?: number;
  leaseRetryMs?: number;
  /** A pass at least this often while leading. Default 30 s. */
  resyncIntervalMs?: number;
  /** Retry after a failed pass, doubling from min to max. Default 1 s to 30 s. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Hears every pass (a follower's passes succeed: it has nothing to do), for health and duration metrics. */
  onPass?: PassListener;
}

export interface LoadBalancerAllocatorStatus {
  leading: boolean;
  /** Addresses held by Services of ours, as of the last pass that planned. */
  allocatedAddresses: number;
  /** Problems of the last pass that planned, by reason. */
  problems: Record<string, number>;
  /** Since start: status writes done, addresses given and taken back, writes refused with 409 Conflict. */
  statusWrites: number;
  allocations: number;
  releases: number;
  conflicts: number;
  loop: ReconcileStatus;
}

const STATUS_LIST_PAGE = 500;
/** Passes in a row whose writes met a conflict, planned again at once; the next one waits for the back-off. */
const MAX_CONFLICTED_PASSES = 3;

export class LoadBalancerAllocator {
  private readonly loop: ReconcileLoop;
  private readonly elector: LeaseElector;
  private readonly logger: Logger;
  /** Aborted when this agent stops leading: requests of a term end with it. */
  private term: AbortController | undefined;
  private started = false;
  private readonly stopping = new AbortController();
  private readonly counts = { statusWrites: 0, allocations: 0, releases: 0, conflicts: 0 };
  private conflictedPasses = 0;
  private last: { allocatedAddresses: number; problems: Record<string, number> } = { allocatedAddresses: 0, problems: {} };

  constructor(private readonly options: LoadBalancerAllocatorOptions) {
    this.logger = options.logger;
    const retryMinMs = options.retryMinMs ?? 1_000;
    this.loop = new ReconcileLoop({
      name: 'lb-allocator',
      resyncIntervalMs: options.resyncIntervalMs ?? 30_000,
      backoff: { initialMs: retryMinMs, maxMs: Math.max(retryMinMs, options.retryMaxMs ?? 30_000) },
      defaultErrorCode: 'ALLOCATOR_ERROR',
      // A follower's pass has nothing to do and is done: it is healthy while another agent allocates.
      pass: async () => {
        const term = this.term;
        if (term === undefined) return;
        try {
          await this.allocate(term.signal);
        } catch (error) {
          if (term.signal.aborted) return; // the Lease was lost mid-pass: the next leader carries on
          throw error;
        }
      },
      onFailure: (error, { retryInMs }) => this.logger.error('LoadBalancer allocation failed; retrying', { ...errorInfo(error, 'ALLOCATOR_ERROR'), retryMs: Math.round(retryInMs) }),
      ...(options.onPass === undefined ? {} : { onPass: options.onPass }),
    });
    this.elector = new LeaseElector({
      api: options.api,
      name: options.leaseName ?? DEFAULT_LEASE_NAME,
      ...(options.leaseNamespace === undefined ? {} : { namespace: options.leaseNamespace }),
      identity: options.identity,
      ...(options.leaseDurationSeconds === undefined ? {} : { durationSeconds: options.leaseDurationSeconds }),
      ...(options.leaseRetryMs === undefined ? {} : { retryMs: options.leaseRetryMs }),
      onLeading: (leading) => this.setLeading(leading),
      onError: (error) => this.logger.warn('allocator Lease: could not read or write it', { error: describeError(error) }),
    });
  }

  /** Takes part in the election and allocates while leading, until `signal` aborts or stop(); then hands the Lease over. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.started) throw new Error('LoadBalancerAllocator.start: already started');
    this.started = true;
    const stop = (): void => this.stopping.abort();
    signal.addEventListener('abort', stop, { once: true });
    if (signal.aborted) stop();
    try {
      await Promise.all([this.elector.run(this.stopping.signal), this.loop.run(this.stopping.signal)]);
    } finally {
      signal.removeEventListener('abort', stop);
      this.setLeading(false);
    }
  }

  /** Ends start(): the pass in progress is cut short and the Lease is given up. */
  stop(): void {
    this.stopping.abort();
  }

  /** The Services changed (or a pass is wanted): one pass, however many calls. */
  trigger(): void {
    this.loop.markDirty();
  }

  isLeading(): boolean {
    return this.term !== undefined;
  }

  status(): LoadBalancerAllocatorStatus {
    return { leading: this.isLeading(), ...this.last, problems: { ...this.last.problems }, ...this.counts, loop: this.loop.status() };
  }

  private setLeading(leading: boolean): void {
    if (leading === (this.term !== undefined)) return;
    this.term?.abort();
    this.term = leading ? new AbortController() : undefined;
    this.logger.info(leading ? 'holding the allocator Lease: allocating LoadBalancer addresses' : 'not holding the allocator Lease: another agent allocates', { identity: this.options.identity });
    if (leading) this.loop.markDirty();
  }

  private plan(services: readonly Service[]): StatusPlan {
    return planStatusWrites(services, this.options.pools, this.options.externalIPRanges, new Date());
  }

  private async allocate(signal: AbortSignal): Promise<void> {
    // The cache says whether anything is to be done; what is written is planned from the API's own list.
    if (this.plan(this.options.services()).writes.length === 0) return;
    const plan = this.plan(await this.listServices(signal));
    this.last = { allocatedAddresses: plan.allocatedAddresses, problems: Object.fromEntries(plan.problemsByReason) };
    for (const write of plan.writes) {
      if (!(await this.write(write, signal))) {
        // Planned from a Service that changed since: the rest of the plan may rest on it too. Plan again, at once;
        // but a Service that keeps changing under every plan is no reason to hammer the API: then back off.
        if (++this.conflictedPasses >= MAX_CONFLICTED_PASSES) {
          this.conflictedPasses = 0;
          throw Object.assign(new Error(`${write.namespace}/${write.name} changed under ${MAX_CONFLICTED_PASSES} plans in a row`), { code: 'ALLOCATOR_CONFLICT' });
        }
        this.loop.markDirty();
        return;
      }
    }
    this.conflictedPasses = 0;
  }

  private async listServices(signal: AbortSignal): Promise<Service[]> {
    const items: Service[] = [];
    let next: string | undefined;
    do {
      const page = await this.options.api.list<Service>('/api/v1/services', { limit: STATUS_LIST_PAGE, ...(next === undefined ? {} : { continue: next }), signal });
      items.push(...page.items);
      next = page.metadata?.continue || undefined;
    } while (next !== undefined);
    return items;
  }

  /** Writes one status; false when the Service changed since it was read (409), or is gone (404). */
  private async write(write: StatusWrite, signal: AbortSignal): Promise<boolean> {
    const params = { namespace: write.namespace, name: write.name };
    // The resourceVersion is a precondition: a stale leader or an old view gets 409 instead of overwriting.
    const body = { metadata: { resourceVersion: write.resourceVersion }, status: write.status };
    try {
      await this.options.api.patch('/api/v1/namespaces/{namespace}/services/{name}/status', body, { params, patchType: 'merge', signal });
    } catch (error) {
      if (error instanceof KubeApiError && (error.status === 409 || error.status === 404)) {
        if (error.status === 409) this.counts.conflicts++;
        this.logger.debug('Service changed since it was read: planning again', { service: `${write.namespace}/${write.name}`, status: error.status });
        return false;
      }
      throw error;
    }
    this.counts.statusWrites++;
    this.counts.allocations += write.allocated.length;
    this.counts.releases += write.released.length;
    if (write.allocated.length > 0 || write.released.length > 0) {
      this.logger.info('LoadBalancer addresses written', { service: `${write.namespace}/${write.name}`, allocated: write.allocated, released: write.released });
    }
    for (const event of write.events) await this.postEvent(write, event, signal);
    return true;
  }

  /** Best effort, as kube's event recorder: a failure is logged, never a failed pass. */
  private async postEvent(write: StatusWrite, event: ServiceEvent, signal: AbortSignal): Promise<void> {
    const now = new Date().toISOString();
    const body = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${write.name}.`, namespace: write.namespace },
      involvedObject: { kind: 'Service', apiVersion: 'v1', name: write.name, namespace: write.namespace, ...(write.uid === undefined ? {} : { uid: write.uid }) },
      type: event.type,
      reason: event.reason,
      message: event.message,
      source: { component: 'podroute-allocator', host: this.options.identity },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      reportingComponent: 'podroute.io/allocator',
      reportingInstance: this.options.identity,
    };
    try {
      await this.options.api.create('/api/v1/namespaces/{namespace}/events', body, { params: { namespace: write.namespace }, signal });
    } catch (error) {
      if (signal.aborted) return;
      this.logger.warn('could not post a Kubernetes Event', { service: `${write.namespace}/${write.name}`, reason: event.reason, error: describeError(error) });
    }
  }
}
