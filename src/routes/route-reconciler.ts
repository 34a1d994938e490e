// The route reconciler: keeps the kernel's routes of our protocol equal to the desired routes. Level-triggered:
// setDesired() (the whole set) and updateDesired() (changed prefixes) only mark it dirty, so bursts coalesce
// into one sync; a sync plans the dirty prefixes against its memory of the kernel and applies the difference in
// one `ip -batch`, without reading the kernel back when the batch was fully accepted; a periodic resync
// re-reads the kernel and plans every prefix (repairs drift); a failed batch re-reads the kernel at once
// (memory stays true) and is retried with back-off, again planning every prefix. The pass schedule is the shared
// ReconcileLoop's.
// Stopping leaves the routes in place: the data plane keeps forwarding while the agent restarts. With
// keepRoutesFoundAtStart the new run keeps them too (graceful restart across agent runs): a route of ours found
// by the first read is not deleted, while nothing desired names its prefix, until releaseRoutesFoundAtStart().
import { KernelReadSchedule, type KernelChanges } from '../host/kernel-monitor.js';
import type { Logger } from '../observe/log.js';
import { ReconcileLoop, type ReconcileStatus } from '../reconcile/loop.js';
import { KernelRouteError, RouteInputError } from './errors.js';
import { canonicalNextHops, canonicalPrefixText, familyOf } from './ip-prefix.js';
import { IpRouteTable, validateProtocol, type RouteTable } from './kernel-routes.js';
import { hasDefaultKey, planRoutes, type KernelRoute, type RouteChange } from './plan-routes.js';
import type { DesiredRoute } from './select-routes.js';

export interface RouteReconcilerOptions {
  /** Routing protocol number on every route we install; routes of other protocols are never touched. */
  protocol: number;
  logger: Logger;
  /** How often the kernel is re-read to repair drift. Default 30 s. */
  resyncIntervalMs?: number;
  /** Program the routes of this named network namespace instead of the current one (tests, lab). */
  netns?: string;
  /** Back-off after a failed sync: first delay, doubled up to retryMaxMs. Defaults 500 ms and 30 s. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** The kernel access; an IpRouteTable for `protocol` and `netns` when omitted. */
  table?: RouteTable;
  /**
   * Route change notifications (the agent's KernelChangeMonitor): a resync reads the kernel only when a route
   * changed since the last read, and every readEveryResyncs-th resync regardless. Without it every resync reads.
   */
  kernelChanges?: KernelChanges;
  /** Default 10 (5 minutes at the default resync interval). */
  readEveryResyncs?: number;
  /**
   * Keep the routes of ours that the first read finds (the previous run's) until releaseRoutesFoundAtStart(),
   * unless the desired state names their prefix first: a new agent whose BGP sessions are still coming back
   * must not delete what the node forwards with. Default false.
   */
  keepRoutesFoundAtStart?: boolean;
}

export interface RouteReconcilerCounts {
  /** Routes installed for a prefix that had none of ours. */
  added: number;
  /** Routes of ours changed in place (next hops). */
  replaced: number;
  removed: number;
  /** Times a prefix became blocked by a foreign route (it is then left alone). */
  conflicts: number;
  /** Changes the kernel refused. */
  failedChanges: number;
  /** Full reads of the kernel's table (start-up, resyncs, after failures). */
  reads: number;
  /** Resyncs that did not read: no route changed in the kernel since the last read. */
  quietResyncs: number;
}

export interface RouteReconcilerStatus {
  /** Routes of ours in the kernel (by the reconciler's memory, re-read on every resync). */
  installed: number;
  /** The loop's passes: last attempt and success, last error, failures. */
  loop: ReconcileStatus;
  /** The desired state set last is fully applied (conflicts aside). */
  inSync: boolean;
  /** Prefixes currently blocked by another protocol's route. */
  conflicts: string[];
  /** Routes of the previous run still kept while nothing desired names them (keepRoutesFoundAtStart). */
  keptFromStart: number;
  counts: RouteReconcilerCounts;
}

const DEFAULT_RESYNC_MS = 30_000;
/** With route notifications, a resync reads the kernel anyway this often (a notification the kernel dropped). */
const DEFAULT_READ_EVERY_RESYNCS = 10;
const DEFAULT_RETRY_INITIAL_MS = 500;
const DEFAULT_RETRY_MAX_MS = 30_000;
/** Kernel refusals logged per failed batch: a 50k-route burst must not produce 50k log lines. */
const LOGGED_FAILURES = 10;

interface Waiter {
  generation: number;
  resolve: () => void;
}

/** The one place desired routes are canonicalised: the planner and the kernel memory trust it. */
function validateRoute(route: DesiredRoute, field: string): DesiredRoute {
  const prefix = typeof route?.prefix === 'string' ? canonicalPrefixText(route.prefix) : undefined;
  if (prefix === undefined) throw new RouteInputError(`${field}.prefix`, route?.prefix, 'not a CIDR');
  const family = familyOf(prefix);
  const nextHops = Array.isArray(route.nextHops) ? canonicalNextHops(route.nextHops) : undefined;
  if (nextHops === undefined || nextHops.length === 0) {
    throw new RouteInputError(`${field}.nextHops`, route.nextHops, 'not a non-empty list of IP addresses');
  }
  const wrongFamily = nextHops.find((hop) => familyOf(hop) !== family);
  if (wrongFamily !== undefined) throw new RouteInputError(`${field}.nextHops`, route.nextHops, `${wrongFamily} is not an ${family} address`);
  // Keep the caller's object when it already is canonical: 50k fresh objects per sync cost GC time.
  return prefix === route.prefix && nextHops.length === route.nextHops.length && nextHops.every((h, i) => h === route.nextHops[i]) ? route : { prefix, nextHops };
}

function validateDesired(routes: readonly DesiredRoute[]): Map<string, DesiredRoute> {
  if (!Array.isArray(routes)) throw new RouteInputError('routes', routes, 'not a list');
  const byPrefix = new Map<string, DesiredRoute>();
  routes.forEach((route, i) => {
    const valid = validateRoute(route, `routes[${i}]`);
    if (byPrefix.has(valid.prefix)) throw new RouteInputError(`routes[${i}].prefix`, route.prefix, 'listed twice');
    byPrefix.set(valid.prefix, valid);
  });
  return byPrefix;
}

/** Validates changes keyed by prefix: the key and the route's prefix must name the same prefix. */
function validateChanges(changes: Iterable<[string, DesiredRoute | undefined]>): Map<string, DesiredRoute | undefined> {
  const valid = new Map<string, DesiredRoute | undefined>();
  for (const [key, route] of changes) {
    const prefix = typeof key === 'string' ? canonicalPrefixText(key) : undefined;
    if (prefix === undefined) throw new RouteInputError(`changes[${JSON.stringify(key)}]`, key, 'not a CIDR');
    if (route === undefined) {
      valid.set(prefix, undefined);
      continue;
    }
    const checked = validateRoute(route, `changes[${JSON.stringify(key)}]`);
    if (checked.prefix !== prefix) throw new RouteInputError(`changes[${JSON.stringify(key)}].prefix`, route.prefix, `not the prefix it is keyed by (${prefix})`);
    valid.set(prefix, checked);
  }
  return valid;
}

export class RouteReconciler {
  private readonly logger: Logger;
  private readonly table: RouteTable;
  private readonly protocol: number;
  private readonly loop: ReconcileLoop;

  /** The desired routes by canonical prefix; undefined until the first setDesired (nothing is written before). */
  private desired: Map<string, DesiredRoute> | undefined;
  /** Prefixes whose desired route changed since the last sync; `planAll` asks for every prefix instead. */
  private dirtyPrefixes = new Set<string>();
  private planAll = true;
  private generation = 0;
  private syncedGeneration = -1;
  /** The next pass reads the kernel first (start-up, after a failure). */
  private needsRead = true;
  private waiters: Waiter[] = [];
  /**
   * Prefixes of ours the first read found, kept while no desired route names them (keepRoutesFoundAtStart);
   * undefined before the first read, and empty once released.
   */
  private keptFromStart: Set<string> | undefined;
  private keepRoutesFoundAtStart: boolean;
  private readonly firstRead: Promise<void>;
  private resolveFirstRead: () => void = () => undefined;

  /** Memory of the kernel: our routes by prefix, and every foreign route. Undefined until the first read. */
  private ours: Map<string, KernelRoute[]> | undefined;
  private foreign: KernelRoute[] = [];
  private foreignByPrefix = new Map<string, KernelRoute[]>();
  private conflicts = new Set<string>();
  private readonly counts: RouteReconcilerCounts = {
    added: 0,
    replaced: 0,
    removed: 0,
    conflicts: 0,
    failedChanges: 0,
    reads: 0,
    quietResyncs: 0,
  };
  private readonly kernelChanges: KernelChanges | undefined;
  private readonly readSchedule: KernelReadSchedule;

  constructor(options: RouteReconcilerOptions) {
    this.protocol = validateProtocol(options.protocol, 'options.protocol');
    this.logger = options.logger;
    const retryInitialMs = positive(options.retryInitialMs, DEFAULT_RETRY_INITIAL_MS, 'options.retryInitialMs');
    this.loop = new ReconcileLoop({
      name: 'routes',
      resyncIntervalMs: positive(options.resyncIntervalMs, DEFAULT_RESYNC_MS, 'options.resyncIntervalMs'),
      backoff: { initialMs: retryInitialMs, maxMs: Math.max(retryInitialMs, positive(options.retryMaxMs, DEFAULT_RETRY_MAX_MS, 'options.retryMaxMs')) },
      pass: ({ signal, resync }) => this.pass(signal, resync),
      // Waiters are released once the pass is recorded, so status() agrees with them.
      onPass: (outcome) => {
        if (outcome.ok) this.releaseWaiters();
      },
      onFailure: (error, { consecutiveFailures }) => {
        this.logger.error('route sync failed; retrying', { error: error instanceof Error ? error.message : String(error), attempt: consecutiveFailures });
      },
    });
    this.kernelChanges = options.kernelChanges;
    this.keepRoutesFoundAtStart = options.keepRoutesFoundAtStart === true;
    this.firstRead = new Promise((resolve) => (this.resolveFirstRead = resolve));
    this.readSchedule = new KernelReadSchedule(options.readEveryResyncs ?? DEFAULT_READ_EVERY_RESYNCS);
    this.table = options.table ?? new IpRouteTable({ protocol: this.protocol, ...(options.netns === undefined ? {} : { netns: options.netns }) });
  }

  /**
   * The complete set of routes that should exist (not a delta). Nothing is written to the kernel before the
   * first call, so an agent that has not yet learned its BGP table does not wipe the routes of its previous run:
   * call it once the learned table is complete. Throws RouteInputError (naming the field) on bad input.
   */
  setDesired(routes: readonly DesiredRoute[]): void {
    this.desired = validateDesired(routes);
    this.forgetKept(this.desired.keys());
    this.planAll = true;
    this.dirtyPrefixes.clear();
    this.generation++;
    this.loop.markDirty();
  }

  /**
   * Changes the desired set by prefix: a route replaces the prefix's desired route, undefined removes it. Only
   * these prefixes are planned at the next sync. Throws RouteInputError (naming the field, changing nothing) on
   * bad input, and an Error when setDesired has not given the complete set yet.
   */
  updateDesired(changes: Iterable<[string, DesiredRoute | undefined]>): void {
    const desired = this.desired;
    if (desired === undefined) throw new Error('RouteReconciler.updateDesired: setDesired must give the complete set first');
    const valid = validateChanges(changes);
    if (valid.size === 0) return;
    const kept = this.keptFromStart;
    valid.forEach((route, prefix) => {
      if (route === undefined) desired.delete(prefix);
      else {
        desired.set(prefix, route);
        kept?.delete(prefix); // a desired route now governs it
      }
      this.dirtyPrefixes.add(prefix);
    });
    this.generation++;
    this.loop.markDirty();
  }

  /**
   * The number of routes of the previous run kept (keepRoutesFoundAtStart), once the first read of the kernel is
   * done: 0 without the option.
   */
  async routesFoundAtStart(signal: AbortSignal): Promise<number> {
    await Promise.race([this.firstRead, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    return this.keptFromStart?.size ?? 0;
  }

  /** Stops keeping the previous run's routes: the next pass deletes those no desired route names. */
  releaseRoutesFoundAtStart(why: string): void {
    const kept = this.keptFromStart;
    this.keepRoutesFoundAtStart = false; // a first read still to come keeps nothing
    if (kept === undefined || kept.size === 0) return;
    this.keptFromStart = new Set();
    this.logger.info('routes of the previous run no longer kept', { routes: kept.size, why });
    for (const prefix of kept) this.dirtyPrefixes.add(prefix);
    this.generation++;
    this.loop.markDirty();
  }

  /** A desired route now governs these prefixes: a route of the previous run is no longer kept for them. */
  private forgetKept(prefixes: Iterable<string>): void {
    const kept = this.keptFromStart;
    if (kept === undefined || kept.size === 0) return;
    for (const prefix of prefixes) kept.delete(prefix);
  }

  /** Runs the loop until `signal` aborts; resolves then. Errors are logged, counted and retried, never thrown. */
  async start(signal: AbortSignal): Promise<void> {
    try {
      await this.loop.run(signal);
    } finally {
      this.table.close?.();
    }
  }

  /** Resolves once the desired state set before this call is in the kernel (conflicts aside). */
  waitForSync(signal?: AbortSignal): Promise<void> {
    const generation = this.generation;
    if (this.syncedGeneration >= generation && this.desired !== undefined) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { generation, resolve };
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(signal?.reason instanceof Error ? signal.reason : new Error('waitForSync aborted'));
      };
      waiter.resolve = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  status(): RouteReconcilerStatus {
    let installed = 0;
    for (const routes of this.ours?.values() ?? []) installed += routes.length;
    return {
      installed,
      loop: this.loop.status(),
      inSync: this.desired !== undefined && this.syncedGeneration === this.generation,
      conflicts: [...this.conflicts].sort(),
      keptFromStart: this.keptFromStart?.size ?? 0,
      counts: { ...this.counts },
    };
  }

  /** One pass of the loop: the start-up read, a resync (re-read, plan all) or the prefixes changed since the last. */
  private async pass(signal: AbortSignal, resync: boolean): Promise<{ skipped: boolean }> {
    // A resync re-reads the kernel to repair drift; with route notifications only when a route changed since.
    if (resync) {
      if (this.readSchedule.due(this.kernelChanges?.mark('route'))) this.needsRead = true;
      else this.counts.quietResyncs++;
    }
    try {
      const done = await this.sync(this.needsRead, signal);
      this.needsRead = false;
      return { skipped: !done };
    } catch (error) {
      this.needsRead = true;
      this.readSchedule.forget();
      throw error;
    }
  }

  private async readKernel(signal: AbortSignal): Promise<void> {
    // Taken before the read: a change during it is seen by the next resync.
    const mark = this.kernelChanges?.mark('route');
    const snapshot = await this.table.read(signal);
    this.readSchedule.read(mark);
    const ours = new Map<string, KernelRoute[]>();
    for (const route of snapshot.ours) {
      const list = ours.get(route.prefix);
      if (list === undefined) ours.set(route.prefix, [route]);
      else list.push(route);
    }
    const foreignByPrefix = new Map<string, KernelRoute[]>();
    for (const route of snapshot.foreign) {
      const list = foreignByPrefix.get(route.prefix);
      if (list === undefined) foreignByPrefix.set(route.prefix, [route]);
      else list.push(route);
    }
    this.ours = ours;
    this.foreign = snapshot.foreign;
    this.foreignByPrefix = foreignByPrefix;
    this.counts.reads++;
    if (this.keptFromStart === undefined) {
      this.keptFromStart = this.keepRoutesFoundAtStart ? new Set(ours.keys()) : new Set();
      if (this.desired !== undefined) this.forgetKept(this.desired.keys());
      if (this.keptFromStart.size > 0) this.logger.info('keeping the routes of the previous run until the BGP peers are back', { routes: this.keptFromStart.size });
      this.resolveFirstRead();
    }
  }

  /** Returns false when there is nothing to apply yet (read-only until the first setDesired). */
  private async sync(read: boolean, signal: AbortSignal): Promise<boolean> {
    const generation = this.generation;
    const desired = this.desired;
    // After a read the kernel may differ anywhere: plan every prefix. Otherwise only what changed since the
    // last sync (the memory of the kernel is kept true by every accepted change).
    let all = this.planAll || read || this.ours === undefined;
    if (read || this.ours === undefined) await this.readKernel(signal);
    const ours = this.ours as Map<string, KernelRoute[]>;
    if (desired === undefined) return false; // read-only until the caller says what it wants
    all ||= this.planAll; // a setDesired that came during the read
    const dirty = this.dirtyPrefixes;
    this.dirtyPrefixes = new Set();
    this.planAll = false;
    const started = Date.now();
    let changes: RouteChange[];
    // A route of the previous run still kept is left out of the plan: nothing desired names it, so it would go.
    const kept = this.keptFromStart;
    const isKept = (prefix: string): boolean => kept !== undefined && kept.size > 0 && kept.has(prefix);
    if (all) {
      const observed: KernelRoute[] = [];
      for (const [prefix, routes] of ours) if (!isKept(prefix)) observed.push(...routes);
      changes = planRoutes([...desired.values()], observed, this.foreign);
      this.trackConflicts(changes, undefined);
    } else {
      const want: DesiredRoute[] = [];
      const observed: KernelRoute[] = [];
      const foreign: KernelRoute[] = [];
      for (const prefix of dirty) {
        const route = desired.get(prefix);
        if (route !== undefined) want.push(route);
        const mine = ours.get(prefix);
        if (mine !== undefined && !isKept(prefix)) observed.push(...mine);
        const theirs = this.foreignByPrefix.get(prefix);
        if (theirs !== undefined) foreign.push(...theirs);
      }
      // The planner decides each prefix on its own: planning a subset gives that subset's changes.
      changes = planRoutes(want, observed, foreign);
      this.trackConflicts(changes, dirty);
    }
    const result = await this.table.apply(changes, signal);
    for (const change of result.applied) this.remember(ours, change);
    let added = 0;
    let replaced = 0;
    let removed = 0;
    for (const change of result.applied) {
      if (change.kind === 'delete') removed++;
      else if (change.kind === 'replace' && change.previous === undefined) added++;
      else if (change.kind === 'replace') replaced++;
    }
    this.counts.added += added;
    this.counts.replaced += replaced;
    this.counts.removed += removed;
    if (added + replaced + removed > 0) {
      this.logger.info('routes programmed', { added, replaced, removed, failed: result.failed.length, ms: Date.now() - started });
    }
    if (result.failed.length > 0) {
      this.counts.failedChanges += result.failed.length;
      for (const failure of result.failed.slice(0, LOGGED_FAILURES)) {
        this.logger.warn('kernel refused route change', { change: describe(failure.change), error: failure.error });
      }
      // Part of the batch went through: re-read now so memory matches the kernel before the retry.
      await this.readKernel(signal).catch((error: unknown) => {
        this.ours = undefined;
        this.logger.error('re-reading routes after a failed batch failed', { error: String(error) });
      });
      const first = result.failed[0];
      throw new KernelRouteError('ROUTES_BATCH_FAILED', `${result.failed.length} of ${changes.length} route changes refused by the kernel; first: ${describe(first?.change)}: ${first?.error ?? ''}`);
    }
    this.syncedGeneration = generation;
    return true;
  }

  private releaseWaiters(): void {
    const synced = this.syncedGeneration;
    const ready = this.waiters.filter((w) => w.generation <= synced);
    this.waiters = this.waiters.filter((w) => w.generation > synced);
    for (const waiter of ready) waiter.resolve();
  }

  /** Conflicts after a plan of every prefix (`scope` undefined) or of the prefixes in `scope`. */
  private trackConflicts(changes: readonly RouteChange[], scope: ReadonlySet<string> | undefined): void {
    const now = new Set<string>();
    for (const change of changes) {
      if (change.kind !== 'conflict') continue;
      now.add(change.route.prefix);
      if (!this.conflicts.has(change.route.prefix)) {
        this.counts.conflicts++;
        this.logger.warn('route not installed: another protocol owns the prefix', {
          prefix: change.route.prefix,
          foreign: change.foreign.map((f) => ({ protocol: f.protocol, nextHops: f.nextHops, metric: f.metric })),
        });
      }
    }
    for (const prefix of scope ?? this.conflicts) {
      if (this.conflicts.has(prefix) && !now.has(prefix)) {
        this.logger.info('route conflict resolved', { prefix });
        this.conflicts.delete(prefix);
      }
    }
    if (scope === undefined) this.conflicts = now;
    else for (const prefix of now) this.conflicts.add(prefix);
  }

  /** Updates the memory of the kernel with one change the kernel accepted. */
  private remember(ours: Map<string, KernelRoute[]>, change: RouteChange): void {
    if (change.kind === 'conflict') return;
    if (change.kind === 'delete') {
      const existing = ours.get(change.route.prefix) ?? [];
      if (existing.length === 1 && existing[0]?.metric === change.route.metric) {
        ours.delete(change.route.prefix);
        return;
      }
      const rest = existing.filter((r) => r.metric !== change.route.metric);
      if (rest.length === 0) ours.delete(change.route.prefix);
      else ours.set(change.route.prefix, rest);
      return;
    }
    const route: KernelRoute = { prefix: change.route.prefix, nextHops: change.route.nextHops, protocol: this.protocol };
    const existing = ours.get(change.route.prefix);
    if (existing === undefined) ours.set(change.route.prefix, [route]);
    else ours.set(change.route.prefix, [...existing.filter((r) => !hasDefaultKey(r)), route]);
  }
}

function describe(change: RouteChange | undefined): string {
  if (change === undefined) return '';
  if (change.kind === 'delete') return `delete ${change.route.prefix}`;
  return `${change.kind} ${change.route.prefix} via ${change.route.nextHops.join(',')}`;
}

function positive(value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new RouteInputError(field, value, 'a positive number of milliseconds');
  return value;
}
