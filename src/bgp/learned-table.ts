// The table of learned paths: per prefix, every equally good path gobgpd accepted from peers (ours excluded),
// read from one WatchEvent stream (peers + best paths with every equally good path, initial dump first) and
// published as a live Map<prefix, LearnedPath[]> plus the prefixes each change touched, so consumers can work per
// changed prefix instead of re-reading the whole table.
//
// Graceful restart on our side: when the watch starts over (gobgpd restarted and lost its RIB, or the stream
// broke), the paths of the previous table are kept as stale, per neighbor, until that neighbor is Established
// again and has had `staleSettleMs` to send its table (gobgpd's watch shows no End-of-RIB), or until the restart
// window (the peers' graceful-restart restartTime) ends. Fresh paths of a neighbor replace its stale ones at
// once. So a gobgpd restart never empties the kernel while the sessions come back.
import type { Logger } from '../observe/log.js';
import { backoffDelay, DirtySignal, errorInfo, sleep, type BackoffOptions } from '../reconcile/loop.js';
import type { BgpDesiredState } from './bgp-planner.js';
import type { GobgpRouter } from './gobgp-router.js';
import { peersSettled, type PeersSettledReason } from './peers-settled.js';
import type { BgpEvent, LearnedPath, PeerState } from './types.js';

/** The learned table as consumers read it. */
export interface LearnedTableView {
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

export type LearnedTableListener = (table: LearnedTableView, changedPrefixes: ReadonlySet<string>) => void;

export interface LearnedTableOptions {
  router: Pick<GobgpRouter, 'getBgp' | 'watchEvents'>;
  logger?: Logger | undefined;
  /**
   * After a neighbor is Established again, keep its stale paths this much longer so it can send its table
   * (default 3000 ms): gobgpd's watch does not show End-of-RIB.
   */
  staleSettleMs?: number | undefined;
  /** Back-off before a broken watch is started again. */
  retryBackoff: BackoffOptions;
  /** How long stale paths may be kept when a watch starts over (0: not at all), asked at that moment. */
  restartWindowMs: () => number;
}

export interface LearnedTableStatus {
  /** Peers by session state, from the event stream. */
  peers: { total: number; established: number };
  learnedPrefixes: number;
  learnedPaths: number;
  /** The table holds gobgpd's whole table (initial dump received). */
  synced: boolean;
  /** Neighbors whose paths from before a watch restart are still kept as stale (graceful restart). */
  staleNeighbors: string[];
}

export class LearnedTable {
  private readonly router: LearnedTableOptions['router'];
  private readonly logger: Logger | undefined;
  private readonly staleSettleMs: number;
  private readonly retryBackoff: BackoffOptions;
  private readonly restartWindowMs: () => number;
  private readonly peerStates = new Map<string, PeerState>();
  /** What gobgpd holds now (from the watch); `table` is this plus the stale paths still kept. */
  private fresh = new Map<string, LearnedPath[]>();
  private stale: StaleTable | undefined;
  private table = new Map<string, LearnedPath[]>();
  private version = 0;
  private synced = false;
  private readonly listeners = new Set<LearnedTableListener>();
  private readonly peerListeners = new Set<(address: string, state: PeerState) => void>();
  /** Set when BGP runs in gobgpd (a watch needs it); the watch loop waits for it. */
  private readonly bgpRunning = new DirtySignal();
  private watchAbort: AbortController | undefined;

  constructor(options: LearnedTableOptions) {
    this.router = options.router;
    this.logger = options.logger;
    this.staleSettleMs = options.staleSettleMs ?? 3_000;
    this.retryBackoff = options.retryBackoff;
    this.restartWindowMs = options.restartWindowMs;
  }

  /** The current table (its `paths` is a live view: see LearnedTableView). */
  view(): LearnedTableView {
    return { version: this.version, synced: this.synced, paths: this.table };
  }

  /** Calls the listener on every change of the table; returns the unsubscribe function. */
  onChange(listener: LearnedTableListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls the listener on every peer-state event of the watch (its initial dump included); returns the unsubscribe function. */
  onPeerStateEvent(listener: (address: string, state: PeerState) => void): () => void {
    this.peerListeners.add(listener);
    return () => this.peerListeners.delete(listener);
  }

  status(): LearnedTableStatus {
    let established = 0;
    for (const s of this.peerStates.values()) if (s === 'ESTABLISHED') established++;
    let learnedPaths = 0;
    for (const l of this.table.values()) learnedPaths += l.length;
    return {
      peers: { total: this.peerStates.size, established },
      learnedPrefixes: this.table.size,
      learnedPaths,
      synced: this.synced,
      staleNeighbors: [...(this.stale?.retained ?? [])].sort(),
    };
  }

  /**
   * Resolves once each of these peers has been Established for the settle time (the same as a watch restart's
   * stale paths wait for), or the window is over: see peers-settled.ts.
   */
  peersSettled(peers: readonly string[], windowMs: number, signal: AbortSignal): Promise<PeersSettledReason> {
    return peersSettled({
      peers,
      settleMs: this.staleSettleMs,
      windowMs,
      stateOf: (address) => this.peerStates.get(address),
      onPeerState: (listener) => this.onPeerStateEvent(listener),
      signal,
    });
  }

  /** BGP runs in gobgpd: a watch waiting for it may start. */
  bgpStarted(): void {
    this.bgpRunning.set();
  }

  /** Ends the running watch (gobgpd went away, or a new BGP instance): the loop starts a new one. */
  restartWatch(): void {
    this.watchAbort?.abort();
  }

  /** Watches gobgpd until the signal fires, starting over whenever the stream ends. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      // A watch needs a running BGP instance: wait for a successful pass.
      let running = false;
      try {
        running = (await this.router.getBgp({ signal })).asn !== 0;
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
        this.logger?.warn('learned-path watch ended; restarting', errorInfo(err));
      } finally {
        signal.removeEventListener('abort', onAbort);
        this.watchAbort = undefined;
      }
      if (!signal.aborted) await sleep(failures === 0 ? 100 : backoffDelay(failures, this.retryBackoff), signal);
    }
  }

  private async consumeWatch(signal: AbortSignal): Promise<void> {
    // The initial dump goes into a fresh table that replaces the old one at 'table-synced': prefixes that
    // vanished while we were not watching disappear then, and the consumer never sees a half table.
    let staging: Map<string, LearnedPath[]> | undefined = new Map();
    this.beginStale();
    this.peerStates.clear();
    for await (const ev of this.router.watchEvents({ peers: true, bestPaths: true, init: true, allPaths: true }, signal)) {
      if (ev.kind === 'peer') {
        this.peerStates.set(ev.address, ev.state);
        this.onPeerState(ev.address, ev.state);
        this.publishPeerState(ev.address, ev.state);
      } else if (ev.kind === 'table-synced') {
        const changed = new Set<string>([...this.fresh.keys(), ...(staging ?? new Map()).keys()]);
        this.fresh = staging ?? new Map();
        staging = undefined;
        this.synced = true;
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

  /** A new watch starts: what we published so far becomes stale, kept per neighbor until it is back. */
  private beginStale(): void {
    if (!this.synced || this.table.size === 0) return;
    const windowMs = this.restartWindowMs();
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

  private publishPeerState(address: string, state: PeerState): void {
    for (const l of this.peerListeners) {
      try {
        l(address, state);
      } catch (err) {
        this.logger?.error('peer-state listener failed', errorInfo(err));
      }
    }
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
    if (this.synced) this.refreshView(changed);
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
    const published = new Set<string>();
    for (const prefix of changed) {
      const merged = mergeStalePaths(this.fresh.get(prefix), stale.paths.get(prefix), stale.retained);
      if (putPaths(next, prefix, merged)) published.add(prefix);
    }
    if (published.size === 0) return;
    this.publish(published);
  }

  private publish(changed: ReadonlySet<string>): void {
    this.version++;
    const view = this.view();
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
