// The BGP reconciler: keeps gobgpd equal to the desired state (level-triggered) and publishes the table of
// learned paths for the route reconciler.
//
// - setDesired() only stores the state and marks the reconciler dirty (a one-slot signal: bursts coalesce).
// - The loop (the shared ReconcileLoop) re-reads gobgpd, plans (bgp-planner.ts) and applies. A periodic resync
//   repairs drift; a failed pass is retried with back-off. When gobgpd comes back after going away (it lost all state) the next pass
//   simply finds it empty and re-applies everything.
// - A multi-object change (defined sets → policy → assignment) is undone when a later step fails, so gobgpd
//   never keeps half a bundle; everything else is re-read on the next pass, so the reconciler's memory is
//   gobgpd itself plus the uuids AddPath returned.
// - The learned table comes from one WatchEvent stream (peers + best paths with every equally good path,
//   initial dump first) and is published as a live Map<prefix, LearnedPath[]> plus the prefixes each change
//   touched, so consumers can work per changed prefix instead of re-reading the whole table.
// - Graceful restart on our side: when the watch starts over (gobgpd restarted and lost its RIB, or the stream
//   broke), the paths of the previous table are kept as stale, per neighbor, until that neighbor is Established
//   again and has had `staleSettleMs` to send its table (gobgpd's watch shows no End-of-RIB), or until the
//   restart window (the peers' graceful-restart restartTime) ends. Fresh paths of a neighbor replace its stale
//   ones at once. So a gobgpd restart never empties the kernel while the sessions come back.
import type { Logger } from '../observe/log.js';
import { GobgpError, type GobgpClient } from './gobgp-client.js';
import {
  emptyObservedState,
  planBgp,
  OWNED_PREFIX,
  type BgpChange,
  type BgpDesiredState,
  type ObservedBgpState,
  type ObservedPath,
  type PolicyBundle,
} from './bgp-planner.js';
import type { BgpEvent, Family, LearnedPath, PeerState } from './types.js';
import { backoffDelay, DirtySignal, errorInfo, ReconcileLoop, sleep, type ReconcileStatus } from '../reconcile/loop.js';

export type { BgpDesiredState, BgpChange } from './bgp-planner.js';

export interface BgpReconcilerOptions {
  client: GobgpClient;
  logger?: Logger;
  /** Re-read gobgpd and repair drift this often (default 60 s). */
  resyncIntervalMs?: number;
  /** Retry back-off after a failed pass (default 500 ms doubling to 30 s). */
  retryBackoffMs?: { initial: number; max: number };
  /**
   * After a neighbor is Established again, keep its stale paths this much longer so it can send its table
   * (default 3000 ms): gobgpd's watch does not show End-of-RIB.
   */
  staleSettleMs?: number;
}

export interface BgpReconcilerStatus {
  /** The loop's passes: last attempt and success, last error, failures. */
  loop: ReconcileStatus;
  /** Changes applied in total. */
  appliedChanges: number;
  /** Peers by session state, from the event stream. */
  peers: { total: number; established: number };
  advertised: number;
  learnedPrefixes: number;
  learnedPaths: number;
  /** The learned table holds gobgpd's whole table (initial dump received). */
  tableSynced: boolean;
  /** Neighbors whose paths from before a watch restart are still kept as stale (graceful restart). */
  staleNeighbors: string[];
}

/** The learned-path table: per prefix, every equally good path gobgpd accepted from peers (ours excluded). */
export interface LearnedTable {
  /** Increases with every change. */
  version: number;
  /** False until the first complete dump of gobgpd's table arrived (consumers must not prune before). */
  synced: boolean;
  /**
   * Paths by prefix. A live view, updated in place as paths arrive (copying a 50k-entry map for every small
   * batch of the watch made learning quadratic): read it synchronously, copy what must be kept.
   */
  paths: ReadonlyMap<string, readonly LearnedPath[]>;
}

export type LearnedTableListener = (table: LearnedTable, changedPrefixes: ReadonlySet<string>) => void;

export class BgpReconcilerError extends Error {
  constructor(
    readonly code: 'NOT_STARTED' | 'ALREADY_STARTED' | 'APPLY_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'BgpReconcilerError';
  }
}

export class BgpReconciler {
  private readonly client: GobgpClient;
  private readonly logger: Logger | undefined;
  private readonly backoff: { initial: number; max: number };
  private desired: BgpDesiredState | undefined;
  private readonly loop: ReconcileLoop;
  private started = false;
  /** uuid AddPath gave us, per prefix (with the next hop it was added with). */
  private readonly uuids = new Map<string, { nextHop: string; uuid: string }>();
  private readonly peerStates = new Map<string, PeerState>();
  private readonly staleSettleMs: number;
  /** What gobgpd holds now (from the watch); `table` is this plus the stale paths still kept. */
  private fresh = new Map<string, LearnedPath[]>();
  private stale: StaleTable | undefined;
  private readonly counts: Omit<BgpReconcilerStatus, 'loop'> = {
    appliedChanges: 0,
    peers: { total: 0, established: 0 },
    advertised: 0,
    learnedPrefixes: 0,
    learnedPaths: 0,
    tableSynced: false,
    staleNeighbors: [],
  };
  private table = new Map<string, LearnedPath[]>();
  private tableVersion = 0;
  private tableSynced = false;
  private readonly listeners = new Set<LearnedTableListener>();
  /** Set when BGP runs in gobgpd (a watch needs it); the watch loop waits for it. */
  private readonly bgpRunning = new DirtySignal();
  private watchAbort: AbortController | undefined;

  constructor(options: BgpReconcilerOptions) {
    this.client = options.client;
    this.logger = options.logger;
    this.backoff = options.retryBackoffMs ?? { initial: 500, max: 30_000 };
    this.loop = new ReconcileLoop({
      name: 'bgp',
      resyncIntervalMs: options.resyncIntervalMs ?? 60_000,
      backoff: { initialMs: this.backoff.initial, maxMs: Math.max(this.backoff.initial, this.backoff.max) },
      pass: async ({ signal }) => {
        if (this.desired === undefined) return { skipped: true };
        await this.syncOnce(this.desired, signal);
      },
      onFailure: (err, { retryInMs }) => this.logger?.warn('BGP reconcile failed; will retry', { ...errorInfo(err), retryInMs: Math.round(retryInMs) }),
    });
    this.staleSettleMs = options.staleSettleMs ?? 3_000;
  }

  /** Stores the desired state and marks the reconciler dirty; the loop applies it. */
  setDesired(state: BgpDesiredState): void {
    this.desired = state;
    this.loop.markDirty();
  }

  /** Asks for a pass now (e.g. from an operator or a test). */
  resync(): void {
    this.loop.markDirty();
  }

  status(): BgpReconcilerStatus {
    let established = 0;
    for (const s of this.peerStates.values()) if (s === 'ESTABLISHED') established++;
    let learnedPaths = 0;
    for (const l of this.table.values()) learnedPaths += l.length;
    return {
      ...this.counts,
      loop: this.loop.status(),
      peers: { total: this.peerStates.size, established },
      learnedPrefixes: this.table.size,
      learnedPaths,
      tableSynced: this.tableSynced,
      staleNeighbors: [...(this.stale?.retained ?? [])].sort(),
    };
  }

  /** The current learned table (its `paths` is a live view: see LearnedTable). */
  learnedTable(): LearnedTable {
    return { version: this.tableVersion, synced: this.tableSynced, paths: this.table };
  }

  /** Calls the listener on every change of the learned table; returns the unsubscribe function. */
  onLearnedPaths(listener: LearnedTableListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Runs until the signal fires: the reconcile loop and the learned-path watch. Resolves after both stopped.
   * Errors of single passes are recorded in status() and retried, never thrown.
   */
  async start(signal: AbortSignal): Promise<void> {
    if (this.started) throw new BgpReconcilerError('ALREADY_STARTED', 'BgpReconciler.start() called twice');
    this.started = true;
    const onConnected = (e: { reconnected: boolean }): void => {
      if (e.reconnected) {
        // gobgpd restarted: it lost every object; the uuids we hold are void.
        this.logger?.warn('gobgpd came back without state: re-applying the desired state');
        this.uuids.clear();
        this.watchAbort?.abort();
      }
      this.loop.markDirty();
    };
    const onDisconnected = (): void => this.watchAbort?.abort();
    this.client.on('connected', onConnected);
    this.client.on('disconnected', onDisconnected);
    this.client.start();
    try {
      await Promise.all([this.loop.run(signal), this.watchLoop(signal)]);
    } finally {
      this.client.off('connected', onConnected);
      this.client.off('disconnected', onDisconnected);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Reconcile

  /** One pass: observe, plan, apply. Exposed for tests and the CLI; the loop is the normal caller. */
  async syncOnce(desired: BgpDesiredState, signal?: AbortSignal): Promise<BgpChange[]> {
    const opts = { signal };
    const observed = await this.observe(signal);
    const changes = planBgp(desired, observed);
    if (changes.length > 0) this.logger?.info('BGP changes', { changes: changes.map(describeChange) });
    for (const change of changes) {
      await this.apply(change, opts);
      this.counts.appliedChanges++;
    }
    this.counts.advertised = desired.advertise.length;
    this.bgpRunning.set();
    return changes;
  }

  private async observe(signal?: AbortSignal): Promise<ObservedBgpState> {
    const opts = { signal };
    const g = await this.client.getBgp(opts);
    const observed = emptyObservedState({ asn: g.asn, routerId: g.routerId, listenPort: g.listenPort, useMultiplePaths: g.useMultiplePaths });
    if (g.asn === 0) {
      this.uuids.clear();
      return observed;
    }
    observed.peers = (await this.client.listPeerConfigs(opts)).map((p) => p.spec);
    for (const family of ['ipv4', 'ipv6'] as Family[]) {
      for await (const p of this.client.listPaths({ family, table: 'global', signal })) {
        if (p.neighborIp !== undefined || p.isWithdraw) continue; // learned, not ours
        const known = this.uuids.get(p.prefix);
        const path: ObservedPath = { prefix: p.prefix, nextHop: p.nextHop };
        if (known !== undefined && known.nextHop === p.nextHop) path.uuid = known.uuid;
        observed.paths.push(path);
      }
    }
    // Forget uuids of paths gobgpd no longer has.
    const present = new Set(observed.paths.map((p) => p.prefix));
    for (const prefix of this.uuids.keys()) if (!present.has(prefix)) this.uuids.delete(prefix);
    observed.definedSets = [...(await this.client.listDefinedSets('prefix', opts)), ...(await this.client.listDefinedSets('neighbor', opts))];
    observed.policies = await this.client.listPolicies(opts);
    observed.importPolicy = await this.client.getGlobalPolicy('import', opts);
    observed.exportPolicy = await this.client.getGlobalPolicy('export', opts);
    return observed;
  }

  private async apply(change: BgpChange, opts: { signal?: AbortSignal | undefined }): Promise<void> {
    const c = this.client;
    switch (change.kind) {
      case 'stop-bgp':
        this.logger?.warn('restarting BGP in gobgpd (drops every session)', { reason: change.reason });
        await c.stopBgp(opts);
        this.uuids.clear();
        return;
      case 'start-bgp':
        await c.startBgp({ ...change.global, useMultiplePaths: true }, opts);
        // A new instance: the running watch (if any) belongs to the old one.
        this.watchAbort?.abort();
        return;
      case 'delete-peer':
        await ignoreNotFound(c.deletePeer(change.address, opts));
        return;
      case 'delete-path': {
        const p = change.path;
        if (p.uuid !== undefined) await ignoreNotFound(c.deletePath(change.family, p.uuid, opts));
        else await ignoreNotFound(c.deletePathByPrefix({ prefix: p.prefix, nextHop: p.nextHop }, opts));
        this.uuids.delete(p.prefix);
        return;
      }
      case 'install-policy':
        await this.installBundle(change.bundle, opts);
        return;
      case 'assign-policy':
        await c.setGlobalPolicy(change.assignment, opts);
        return;
      case 'add-path': {
        const uuid = await c.addPath(change.path, opts);
        this.uuids.set(change.path.prefix, { nextHop: change.path.nextHop, uuid });
        return;
      }
      case 'update-peer':
        this.logger?.warn('updating peer (gobgpd resets the session)', { peer: change.spec.address, changed: change.changed });
        await c.updatePeer(change.spec, opts);
        return;
      case 'add-peer':
        await c.addPeer(change.spec, opts);
        return;
      case 'soft-reset-in':
        await c.softReset('all', { direction: 'in' }, opts);
        return;
      case 'delete-policy':
        if (change.policy !== undefined) await ignoreNotFound(c.deletePolicy(change.policy, opts));
        for (const s of change.sets) await ignoreNotFound(c.deleteDefinedSet(s.kind, s.name, opts));
        return;
    }
  }

  /** Sets, then the policy, then the assignment switch; on failure, removes what this call created. */
  private async installBundle(bundle: PolicyBundle, opts: { signal?: AbortSignal | undefined }): Promise<void> {
    const c = this.client;
    const createdSets: PolicyBundle['sets'] = [];
    let createdPolicy = false;
    try {
      const existing = new Set(
        [...(await c.listDefinedSets('prefix', opts)), ...(await c.listDefinedSets('neighbor', opts))].map((s) => `${s.kind}/${s.name}`),
      );
      for (const set of bundle.sets) {
        if (existing.has(`${set.kind}/${set.name}`)) continue; // from an earlier, interrupted pass
        await c.addDefinedSet(set, opts);
        createdSets.push(set);
      }
      if (!(await c.listPolicies(opts)).some((p) => p.name === bundle.policy.name)) {
        await c.addPolicy(bundle.policy, opts);
        createdPolicy = true;
      }
      await c.setGlobalPolicy({ direction: bundle.direction, policies: [bundle.policy.name], defaultAction: bundle.defaultAction }, opts);
    } catch (err) {
      // Undo in reverse order, best effort: the next pass re-reads gobgpd anyway.
      if (createdPolicy) await c.deletePolicy(bundle.policy.name).catch(() => undefined);
      for (const s of createdSets.reverse()) await c.deleteDefinedSet(s.kind, s.name).catch(() => undefined);
      throw err;
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Learned paths

  private async watchLoop(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      // A watch needs a running BGP instance: wait for a successful pass.
      let running = false;
      try {
        running = (await this.client.getBgp({ signal })).asn !== 0;
      } catch {
        running = false;
      }
      if (!running) {
        await this.bgpRunning.wait(1_000, signal);
        continue;
      }
      const ac = new AbortController();
      this.watchAbort = ac;
      const onAbort = (): void => ac.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        await this.consumeWatch(ac.signal);
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        const info = errorInfo(err);
        this.logger?.warn('learned-path watch ended; restarting', info);
      } finally {
        signal.removeEventListener('abort', onAbort);
        this.watchAbort = undefined;
      }
      if (!signal.aborted) await sleep(failures === 0 ? 100 : backoffDelay(failures, { initialMs: this.backoff.initial, maxMs: Math.max(this.backoff.initial, this.backoff.max) }), signal);
    }
  }

  private async consumeWatch(signal: AbortSignal): Promise<void> {
    // The initial dump goes into a fresh table that replaces the old one at 'table-synced': prefixes that
    // vanished while we were not watching disappear then, and the consumer never sees a half table.
    let staging: Map<string, LearnedPath[]> | undefined = new Map();
    this.beginStale();
    this.peerStates.clear();
    for await (const ev of this.client.watchEvents({ peers: true, bestPaths: true, init: true, allPaths: true }, signal)) {
        if (ev.kind === 'peer') {
          this.peerStates.set(ev.address, ev.state);
          this.onPeerState(ev.address, ev.state);
        } else if (ev.kind === 'table-synced') {
          const changed = new Set<string>([...this.fresh.keys(), ...(staging ?? new Map()).keys()]);
          this.fresh = staging ?? new Map();
          staging = undefined;
          this.tableSynced = true;
          this.refreshView(changed);
        } else if (ev.kind === 'paths') {
          if (staging !== undefined) applyPaths(staging, ev);
          else {
            const changed = applyPaths(this.fresh, ev);
            if (changed.size > 0) this.refreshView(changed);
          }
        }
      }
  }

  // ------------------------------------------------------------------------------------------------------
  // Stale paths (graceful restart on the receiving side)

  /** A new watch starts: what we published so far becomes stale, kept per neighbor until it is back. */
  private beginStale(): void {
    if (!this.tableSynced || this.table.size === 0) return;
    const windowMs = restartWindowMs(this.desired);
    if (windowMs === 0) return;
    const previous = this.stale;
    const paths = new Map(this.table);
    const retained = new Set<string>();
    for (const list of paths.values()) for (const p of list) if (p.neighborIp !== undefined) retained.add(p.neighborIp);
    // A watch that starts over while paths are still stale: the view (stale included) becomes the new stale table.
    if (previous !== undefined) clearStaleTimers(previous);
    const stale: StaleTable = { paths, retained, settleTimers: new Map(), deadline: undefined as unknown as NodeJS.Timeout };
    stale.deadline = setTimeout(() => this.endStale(stale, 'restart window over'), windowMs);
    stale.deadline.unref?.();
    this.stale = stale;
    this.fresh = new Map(); // the next dump fills it; until then the view is the stale table alone
    this.logger?.info('keeping learned paths as stale until their peers are back', { neighbors: [...retained].sort(), windowMs });
  }

  private onPeerState(address: string, state: PeerState): void {
    const stale = this.stale;
    if (stale === undefined || !stale.retained.has(address)) return;
    const timer = stale.settleTimers.get(address);
    if (state !== 'ESTABLISHED') {
      // Down again before it settled: wait for the next Established (or the window).
      if (timer !== undefined) clearTimeout(timer);
      stale.settleTimers.delete(address);
      return;
    }
    if (timer !== undefined) return;
    const t = setTimeout(() => this.releaseStale(stale, [address], 'peer Established and settled'), this.staleSettleMs);
    t.unref?.();
    stale.settleTimers.set(address, t);
  }

  /** Drops the stale paths of these neighbors (their fresh ones, if any, stay). */
  private releaseStale(stale: StaleTable, neighbors: string[], why: string): void {
    if (this.stale !== stale) return;
    const changed = new Set<string>();
    for (const n of neighbors) {
      if (!stale.retained.delete(n)) continue;
      const t = stale.settleTimers.get(n);
      if (t !== undefined) clearTimeout(t);
      stale.settleTimers.delete(n);
      for (const [prefix, list] of stale.paths) if (list.some((p) => p.neighborIp === n)) changed.add(prefix);
    }
    if (changed.size > 0 || neighbors.length > 0) this.logger?.info('stale paths released', { neighbors, why, prefixes: changed.size });
    if (stale.retained.size === 0) {
      clearTimeout(stale.deadline);
      this.stale = undefined;
    }
    if (this.tableSynced) this.refreshView(changed);
  }

  private endStale(stale: StaleTable, why: string): void {
    if (this.stale !== stale) return;
    this.releaseStale(stale, [...stale.retained], why);
    clearStaleTimers(stale);
    this.stale = undefined;
  }

  /**
   * Recomputes the published table for these prefixes (fresh plus the stale paths still kept) and publishes.
   * Without stale paths the published table is the fresh table itself; with them, a table of its own, updated
   * in place per changed prefix.
   */
  private refreshView(changed: ReadonlySet<string>): void {
    const stale = this.stale;
    if (stale === undefined) {
      if (this.table === this.fresh && changed.size === 0) return;
      if (this.table !== this.fresh) {
        // Leaving the merged view: every prefix it held may differ from the fresh table.
        const all = new Set(changed);
        for (const prefix of this.table.keys()) all.add(prefix);
        changed = all;
      }
      this.table = this.fresh;
      this.publish(changed);
      return;
    }
    if (this.table === this.fresh) this.table = new Map(this.fresh);
    const next = this.table;
    const really = new Set<string>();
    for (const prefix of changed) {
      const merged = mergeStalePaths(this.fresh.get(prefix), stale.paths.get(prefix), stale.retained);
      if (putPaths(next, prefix, merged)) really.add(prefix);
    }
    if (really.size === 0) return;
    this.publish(really);
  }

  private publish(changed: ReadonlySet<string>): void {
    this.tableVersion++;
    const view = this.learnedTable();
    for (const l of this.listeners) {
      try {
        l(view, changed);
      } catch (err) {
        this.logger?.error('learned-path listener failed', errorInfo(err));
      }
    }
  }
}

interface StaleTable {
  /** The table as published before the watch started over. */
  paths: Map<string, LearnedPath[]>;
  /** Neighbors whose stale paths are still kept. */
  retained: Set<string>;
  settleTimers: Map<string, NodeJS.Timeout>;
  deadline: NodeJS.Timeout;
}

function clearStaleTimers(stale: StaleTable): void {
  for (const t of stale.settleTimers.values()) clearTimeout(t);
  stale.settleTimers.clear();
  clearTimeout(stale.deadline);
}

/** The restart window: the longest graceful-restart restartTime among the desired peers (0: none enabled). */
export function restartWindowMs(desired: BgpDesiredState | undefined): number {
  let seconds = 0;
  for (const p of desired?.peers ?? []) if (p.gracefulRestart?.enabled === true) seconds = Math.max(seconds, p.gracefulRestart.restartTime);
  return seconds * 1000;
}

/**
 * One prefix of the published table while stale paths are kept: every fresh path, plus the stale paths of
 * retained neighbors that have no fresh path for it yet (a neighbor's fresh paths replace its stale ones).
 */
export function mergeStalePaths(
  fresh: readonly LearnedPath[] | undefined,
  stale: readonly LearnedPath[] | undefined,
  retained: ReadonlySet<string>,
): LearnedPath[] | undefined {
  const out = [...(fresh ?? [])];
  const freshFrom = new Set(out.map((p) => p.neighborIp));
  for (const p of stale ?? []) {
    if (p.neighborIp !== undefined && retained.has(p.neighborIp) && !freshFrom.has(p.neighborIp)) out.push(p);
  }
  return out.length > 0 ? out : undefined;
}

/**
 * Applies one `paths` event (replace-per-prefix: the non-withdrawn paths of a prefix are its new set) to the
 * table. Our own paths (no neighbor) are not learned routes and are left out. Returns the prefixes that changed.
 */
export function applyPaths(table: Map<string, LearnedPath[]>, ev: Extract<BgpEvent, { kind: 'paths' }>): Set<string> {
  const groups = new Map<string, LearnedPath[]>();
  for (const p of ev.paths) {
    let g = groups.get(p.prefix);
    if (g === undefined) groups.set(p.prefix, (g = []));
    if (!p.isWithdraw && p.neighborIp !== undefined) g.push(p);
  }
  const changed = new Set<string>();
  for (const [prefix, paths] of groups) if (putPaths(table, prefix, paths.length === 0 ? undefined : paths)) changed.add(prefix);
  return changed;
}

/** Puts a prefix's paths into the table (undefined: none, the prefix goes); true when the table changed. */
function putPaths(table: Map<string, LearnedPath[]>, prefix: string, paths: LearnedPath[] | undefined): boolean {
  const before = table.get(prefix);
  if (paths === undefined) return table.delete(prefix);
  if (before !== undefined && samePaths(before, paths)) return false;
  table.set(prefix, paths);
  return true;
}

function samePaths(a: readonly LearnedPath[], b: readonly LearnedPath[]): boolean {
  if (a.length !== b.length) return false;
  const key = (p: LearnedPath): string => `${p.neighborIp ?? ''}|${p.nextHop}|${p.asPath.join(' ')}|${p.localPref ?? ''}|${p.med ?? ''}|${p.origin ?? ''}`;
  const ka = a.map(key).sort();
  const kb = b.map(key).sort();
  return ka.every((k, i) => k === kb[i]);
}

async function ignoreNotFound(p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GobgpError && err.code === 'NOT_FOUND') return;
    throw err;
  }
}

function describeChange(c: BgpChange): string {
  switch (c.kind) {
    case 'start-bgp':
      return `start-bgp asn=${c.global.asn} router-id=${c.global.routerId}`;
    case 'stop-bgp':
      return `stop-bgp (${c.reason})`;
    case 'add-peer':
      return `add-peer ${c.spec.address}`;
    case 'update-peer':
      return `update-peer ${c.spec.address} [${c.changed.join(',')}]`;
    case 'delete-peer':
      return `delete-peer ${c.address}`;
    case 'add-path':
      return `add-path ${c.path.prefix} via ${c.path.nextHop}`;
    case 'delete-path':
      return `delete-path ${c.path.prefix}`;
    case 'install-policy':
      return `install-policy ${c.bundle.policy.name} (${c.bundle.sets.length} sets)`;
    case 'assign-policy':
      return `assign-policy ${c.assignment.direction} ${c.assignment.policies.join(',')}`;
    case 'soft-reset-in':
      return 'soft-reset-in';
    case 'delete-policy':
      return `delete-policy ${c.policy ?? '(orphaned sets)'} (${c.sets.length} sets)`;
  }
}

export { OWNED_PREFIX };
