// The BGP reconciler: keeps gobgpd equal to the desired state (level-triggered). gobgpd is reached through the
// GobgpRouter interface (gobgp-router.ts): GobgpClient in the agent, an in-memory fake in the unit tests.
//
// - setDesired() only stores the state and marks the reconciler dirty (a one-slot signal: bursts coalesce).
// - The loop (the shared ReconcileLoop) re-reads gobgpd, plans (bgp-planner.ts) and applies. A periodic resync
//   repairs drift; a failed pass is retried with back-off. When gobgpd comes back after going away (it lost all state) the next pass
//   simply finds it empty and re-applies everything.
// - A multi-object change (defined sets → policy → assignment) is undone when a later step fails, so gobgpd
//   never keeps half a bundle; everything else is re-read on the next pass, so the reconciler's memory is
//   gobgpd itself plus the uuids AddPath returned.
// - It runs the learned table (learned-table.ts) beside its loop, on the same gobgpd: the table's watch starts
//   once BGP runs and starts over when gobgpd comes back or BGP is started anew.
import { getMaxListeners, setMaxListeners } from 'node:events';
import type { Logger } from '../observe/log.js';
import { GobgpError } from './gobgp-codec.js';
import type { GobgpRouter } from './gobgp-router.js';
import type { BgpRole, OriginatedPath } from './types.js';
import { LearnedTable, restartWindowMs } from './learned-table.js';
import type { PeersSettledReason } from './peers-settled.js';
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
import { canonicalAddressText, type IpFamily } from '../routes/ip-prefix.js';
import { errorInfo, ReconcileLoop, type ReconcileStatus } from '../reconcile/loop.js';

export type { BgpDesiredState, BgpChange } from './bgp-planner.js';

/** How soon a pass looks again at role changes that wait for other sessions to be Established. */
const DEFERRED_PASS_MS = 1000;

export interface BgpReconcilerOptions {
  client: GobgpRouter;
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
  /**
   * Asked when this process first finds gobgpd without BGP: whether the node kept forwarding anyway (the kernel
   * holds the routes of a previous run, kept until the peers settled), so the fresh gobgpd restarts gracefully.
   */
  forwardingKeptAtStart?: () => Promise<boolean>;
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
  /** This node's iBGP role (mesh, route reflector or client); undefined before a desired state was set. */
  role?: BgpRole;
}

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
  private readonly client: GobgpRouter;
  private readonly logger: Logger | undefined;
  private desired: BgpDesiredState | undefined;
  /** Peers held down by BFD (setHeldDown), merged into the desired state at each pass. */
  private heldDown: string[] = [];
  private readonly loop: ReconcileLoop;
  private started = false;
  /** uuid AddPath gave us, per prefix (with the next hop it was added with). */
  private readonly uuids = new Map<string, { nextHop: string; uuid: string }>();
  /** The paths gobgpd learned from peers; its watch runs beside the loop. */
  readonly learned: LearnedTable;
  private readonly counts = { appliedChanges: 0, advertised: 0 };
  /**
   * A pass completed against a running gobgpd in this process. If gobgpd is found without BGP after that, it
   * restarted under us while this agent kept the node forwarding (its pod routes, and the learned routes the
   * learned table keeps as stale): the fresh instance restarts gracefully (ObservedBgpState.forwardingPreserved).
   * A start of this agent claims it only when forwardingKeptAtStart says the kernel kept the previous run's routes.
   */
  private configuredGobgpd = false;
  private readonly forwardingKeptAtStart: (() => Promise<boolean>) | undefined;
  /** Resolved by the first setDesired (the peers a cold start waits for are known then). */
  private readonly firstDesired: Promise<void>;
  private resolveFirstDesired: () => void = () => undefined;
  /** The pass asked for while role changes wait for other sessions (see planRoleChanges). */
  private deferredPass: NodeJS.Timeout | undefined;

  constructor(options: BgpReconcilerOptions) {
    this.client = options.client;
    this.logger = options.logger;
    this.forwardingKeptAtStart = options.forwardingKeptAtStart;
    this.firstDesired = new Promise((resolve) => (this.resolveFirstDesired = resolve));
    const retry = options.retryBackoffMs ?? { initial: 500, max: 30_000 };
    const backoff = { initialMs: retry.initial, maxMs: Math.max(retry.initial, retry.max) };
    this.loop = new ReconcileLoop({
      name: 'bgp',
      resyncIntervalMs: options.resyncIntervalMs ?? 60_000,
      backoff,
      pass: async ({ signal }) => {
        if (this.desired === undefined) return { skipped: true };
        await this.syncOnce({ ...this.desired, heldDown: this.heldDown }, signal);
      },
      onFailure: (err, { retryInMs }) => this.logger?.warn('BGP reconcile failed; will retry', { ...errorInfo(err), retryInMs: Math.round(retryInMs) }),
    });
    this.learned = new LearnedTable({
      router: this.client,
      logger: this.logger,
      staleSettleMs: options.staleSettleMs,
      retryBackoff: backoff,
      restartWindowMs: () => restartWindowMs(this.desired),
    });
  }

  /** Stores the desired state and marks the reconciler dirty; the loop applies it. */
  setDesired(state: BgpDesiredState): void {
    this.desired = state;
    this.resolveFirstDesired();
    this.loop.markDirty();
  }

  /**
   * Resolves once every graceful-restart peer of the desired state has been Established for the settle time, or
   * the peers' restart window is over, counted from the first desired state: what a new agent waits for before
   * it lets go of the routes its previous run left in the kernel (peers-settled.ts).
   */
  async peersSettledAfterStart(signal: AbortSignal): Promise<PeersSettledReason> {
    await Promise.race([this.firstDesired, new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    if (signal.aborted) return 'aborted';
    const desired = this.desired!;
    const peers = desired.peers.filter((p) => p.gracefulRestart?.enabled === true).map((p) => canonicalAddressText(p.address) ?? p.address);
    return this.learned.peersSettled(peers, restartWindowMs(desired), signal);
  }

  /**
   * The peers BFD holds down (their path is broken): a second input of the desired state, from the BFD sessions
   * rather than the cluster. A change starts a pass at once: these are the changes that stop a blackhole.
   */
  setHeldDown(addresses: readonly string[]): void {
    const sorted = [...addresses].sort();
    if (sorted.join() === this.heldDown.join()) return;
    this.heldDown = sorted;
    this.loop.markDirty();
  }

  /** The peers whose session is Established in gobgpd now: asked, not remembered (BFD's verdicts need now). */
  async establishedPeers(): Promise<Set<string>> {
    const peers = await this.client.listPeerConfigs();
    return new Set(peers.filter((p) => p.status.state === 'ESTABLISHED').map((p) => canonicalAddressText(p.spec.address) ?? p.spec.address));
  }

  /** Asks for a pass now (e.g. from an operator or a test). */
  resync(): void {
    this.loop.markDirty();
  }

  status(): BgpReconcilerStatus {
    const learned = this.learned.status();
    return {
      ...this.counts,
      loop: this.loop.status(),
      peers: learned.peers,
      learnedPrefixes: learned.learnedPrefixes,
      learnedPaths: learned.learnedPaths,
      tableSynced: learned.synced,
      staleNeighbors: learned.staleNeighbors,
      role: this.desired?.role,
    };
  }

  /**
   * Runs until the signal fires: the reconcile loop and the learned table's watch. Resolves after both stopped.
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
        this.learned.restartWatch();
      }
      this.loop.markDirty();
    };
    const onDisconnected = (): void => this.learned.restartWatch();
    this.client.on('connected', onConnected);
    this.client.on('disconnected', onDisconnected);
    this.client.start();
    try {
      await Promise.all([this.loop.run(signal), this.learned.run(signal)]);
    } finally {
      clearTimeout(this.deferredPass);
      this.deferredPass = undefined;
      this.client.off('connected', onConnected);
      this.client.off('disconnected', onDisconnected);
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Reconcile

  /** One pass: observe, plan, apply. Exposed for tests and the CLI; the loop is the normal caller. */
  async syncOnce(desired: BgpDesiredState, signal?: AbortSignal): Promise<BgpChange[]> {
    const opts = { signal };
    // Each call in flight listens on the signal: a stage's calls at once are not a leak (Node warns past 10).
    if (signal !== undefined && getMaxListeners(signal) < MAX_LISTENERS_IN_A_STAGE) setMaxListeners(MAX_LISTENERS_IN_A_STAGE, signal);
    const observed = await this.observe(signal);
    const changes = planBgp(desired, observed);
    const applied = changes.filter((c) => c.kind !== 'defer-peer');
    if (applied.length > 0) this.logger?.info('BGP changes', { changes: applied.map(describeChange) });
    for (const stage of applyStages(applied)) {
      await eachWithin(stage, MAX_CALLS_IN_FLIGHT, async (change) => {
        await this.apply(change, opts);
        this.counts.appliedChanges++;
      });
    }
    const deferred = changes.filter((c) => c.kind === 'defer-peer');
    if (deferred.length > 0) {
      // A peer event does not wake this loop: look again shortly, until the waiting role changes are done.
      this.logger?.debug('BGP role changes waiting', { changes: deferred.map(describeChange) });
      if (this.deferredPass === undefined) {
        this.deferredPass = setTimeout(() => {
          this.deferredPass = undefined;
          this.loop.markDirty();
        }, DEFERRED_PASS_MS);
        this.deferredPass.unref();
      }
    }
    this.counts.advertised = desired.advertise.length + (desired.services?.paths.length ?? 0);
    this.configuredGobgpd = true;
    this.learned.bgpStarted();
    return changes;
  }

  /** What gobgpd holds, as the planner sees it (our paths carry the uuids this reconciler added them with). */
  async observe(signal?: AbortSignal): Promise<ObservedBgpState> {
    const opts = { signal };
    const g = await this.client.getBgp(opts);
    const observed = emptyObservedState({ asn: g.asn, routerId: g.routerId, listenPort: g.listenPort, useMultiplePaths: g.useMultiplePaths });
    if (g.asn === 0) {
      this.uuids.clear();
      if (this.configuredGobgpd || (await this.forwardingKeptAtStart?.()) === true) observed.forwardingPreserved = true;
      return observed;
    }
    // The reads are independent: asked at once, a pass waits for the slowest, not for their sum (each is a round
    // trip to gobgpd, and on a busy node each waits for a core).
    const ourPaths = async (family: IpFamily): Promise<ObservedPath[]> => {
      const out: ObservedPath[] = [];
      for await (const p of this.client.listPaths({ family, table: 'global', signal })) {
        if (p.neighborIp !== undefined || p.isWithdraw) continue; // learned, not ours
        const known = this.uuids.get(p.prefix);
        const path: ObservedPath = { prefix: p.prefix, nextHop: p.nextHop };
        if (p.communities !== undefined) path.communities = p.communities;
        if (p.largeCommunities !== undefined) path.largeCommunities = p.largeCommunities;
        if (p.localPref !== undefined) path.localPref = p.localPref;
        if (known !== undefined && known.nextHop === p.nextHop) path.uuid = known.uuid;
        out.push(path);
      }
      return out;
    };
    const [peers, paths4, paths6, prefixSets, neighborSets, policies, importPolicy, exportPolicy] = await Promise.all([
      this.client.listPeerConfigs(opts),
      ourPaths('ipv4'),
      ourPaths('ipv6'),
      this.client.listDefinedSets('prefix', opts),
      this.client.listDefinedSets('neighbor', opts),
      this.client.listPolicies(opts),
      this.client.getGlobalPolicy('import', opts),
      this.client.getGlobalPolicy('export', opts),
    ]);
    observed.peers = peers.map((p) => p.spec);
    observed.establishedPeers = peers.filter((p) => p.status.state === 'ESTABLISHED').map((p) => p.spec.address);
    observed.disabledPeers = peers.filter((p) => p.status.adminState === 'DOWN').map((p) => p.spec.address);
    observed.paths = [...paths4, ...paths6];
    // Forget uuids of paths gobgpd no longer has.
    const present = new Set(observed.paths.map((p) => p.prefix));
    for (const prefix of this.uuids.keys()) if (!present.has(prefix)) this.uuids.delete(prefix);
    observed.definedSets = [...prefixSets, ...neighborSets];
    observed.policies = policies;
    observed.importPolicy = importPolicy;
    observed.exportPolicy = exportPolicy;
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
        this.learned.restartWatch();
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
        await c.addPeer(change.spec, opts, { localRestarting: change.localRestarting === true });
        return;
      case 'change-peer-role':
        this.logger?.warn('changing the route-reflector role of a peer (gobgpd resets the session)', { peer: change.spec.address, changed: change.changed });
        await c.updatePeer(change.spec, opts);
        return;
      case 'defer-peer':
        return;
      case 'disable-peer':
        this.logger?.warn('taking peer down', { peer: change.address, reason: change.reason });
        await c.disablePeer(change.address, change.reason, opts);
        return;
      case 'enable-peer':
        this.logger?.info('bringing peer back up', { peer: change.address });
        await c.enablePeer(change.address, opts);
        return;
      case 'soft-reset-in':
        await c.softReset('all', { direction: 'in' }, opts);
        return;
      case 'soft-reset-out':
        await c.softReset('all', { direction: 'out' }, opts);
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
      // What an earlier, interrupted pass left is read again here, not taken from the plan's observation: a stop-bgp
      // earlier in this pass may have changed it, and AddPolicy appends to an existing policy.
      const [prefixSets, neighborSets, policies] = await Promise.all([c.listDefinedSets('prefix', opts), c.listDefinedSets('neighbor', opts), c.listPolicies(opts)]);
      const existing = new Set([...prefixSets, ...neighborSets].map((s) => `${s.kind}/${s.name}`));
      // A bundle's sets are independent of each other: asked for at once (one wait for gobgpd, not one per set).
      await eachWithin(bundle.sets.filter((set) => !existing.has(`${set.kind}/${set.name}`)), MAX_CALLS_IN_FLIGHT, async (set) => {
        await c.addDefinedSet(set, opts);
        createdSets.push(set);
      });
      if (!policies.some((p) => p.name === bundle.policy.name)) {
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
}

/**
 * The plan's changes in stages to apply one after the other. A run of paths or peers to add or delete, or of policy
 * bundles to install (the import and the export bundle: each of its own names, each undone alone when it fails), is
 * one stage, its calls made at once: a fresh gobgpd's first plan is some thirty calls, and made one by one on an
 * agent still starting, each waited for the event loop (0.3 s in all, measured on a lab node's start). Every other
 * change is a stage of its own, in the plan's order.
 */
export function applyStages(changes: readonly BgpChange[]): BgpChange[][] {
  const stages: BgpChange[][] = [];
  for (const change of changes) {
    const last = stages.at(-1);
    if (last !== undefined && CONCURRENT_KINDS.has(change.kind) && last[0]?.kind === change.kind) last.push(change);
    else stages.push([change]);
  }
  return stages;
}

const CONCURRENT_KINDS: ReadonlySet<BgpChange['kind']> = new Set(['delete-peer', 'delete-path', 'install-policy', 'add-path', 'add-peer']);

/** gobgpd calls of one stage in flight at a time: a thousand Service paths are not a thousand calls at once. */
const MAX_CALLS_IN_FLIGHT = 16;
/** The abort listeners a pass's signal may hold: the two bundles' calls in flight, and the pass's own. */
const MAX_LISTENERS_IN_A_STAGE = 2 * MAX_CALLS_IN_FLIGHT + 10;

/**
 * Runs `fn` over the items, at most `limit` at a time, until all have ended; then throws the first failure (the
 * others have been tried: the next pass re-reads gobgpd and plans what is left).
 */
async function eachWithin<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const failures: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failures.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, () => worker()));
  if (failures.length > 0) throw failures[0];
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
      return `add-peer ${c.spec.address}${c.localRestarting === true ? ' (restarting gracefully)' : ''}`;
    case 'update-peer':
      return `update-peer ${c.spec.address} [${c.changed.join(',')}]`;
    case 'delete-peer':
      return `delete-peer ${c.address}`;
    case 'change-peer-role':
      return `change-peer-role ${c.spec.address} [${c.changed.join(',')}]`;
    case 'defer-peer':
      return `defer-peer ${c.address} (${c.reason})`;
    case 'disable-peer':
      return `disable-peer ${c.address} (${c.reason})`;
    case 'enable-peer':
      return `enable-peer ${c.address}`;
    case 'add-path':
      return `add-path ${c.path.prefix} via ${c.path.nextHop}${describeAttributes(c.path)}`;
    case 'delete-path':
      return `delete-path ${c.path.prefix}`;
    case 'install-policy':
      return `install-policy ${c.bundle.policy.name} (${c.bundle.sets.length} sets)`;
    case 'assign-policy':
      return `assign-policy ${c.assignment.direction} ${c.assignment.policies.join(',')}`;
    case 'soft-reset-in':
    case 'soft-reset-out':
      return c.kind;
    case 'delete-policy':
      return `delete-policy ${c.policy ?? '(orphaned sets)'} (${c.sets.length} sets)`;
  }
}

export { OWNED_PREFIX };

/** " communities=… large=… local-pref=…" for the attributes a path carries; empty when it carries none. */
function describeAttributes(path: OriginatedPath): string {
  const parts: string[] = [];
  if (path.communities !== undefined && path.communities.length > 0) parts.push(`communities=${path.communities.join(',')}`);
  if (path.largeCommunities !== undefined && path.largeCommunities.length > 0) parts.push(`large=${path.largeCommunities.join(',')}`);
  if (path.localPref !== undefined) parts.push(`local-pref=${path.localPref}`);
  return parts.map((p) => ` ${p}`).join('');
}
