// Everything the agent shows about itself, in one object the agent creates and starts: metrics, loop health,
// readiness, the status report and the HTTP server on metrics.address. It reads the reconcilers through their
// status() when asked (getters, so reconcilers created later, like the masquerade one, are picked up); every
// reconciler's passes are the one ReconcileStatus of its loop. It never changes anything.
import type { BgpReconcilerStatus } from '../bgp/bgp-reconciler.js';
import type { LearnedTableView } from '../bgp/learned-table.js';
import type { PolicyStatus } from '../policy/policy-reconciler.js';
import type { MasqueradeStatus } from '../nat/masquerade.js';
import type { RouteReconcilerStatus } from '../routes/route-reconciler.js';
import type { ReconcileStatus } from '../reconcile/loop.js';
import type { Logger } from './log.js';
import { HealthMonitor, errorMessage, type LoopObservation, type ReadinessCheck, type ReconcilerHealth } from './health.js';
import { AgentMetrics, type WatchStat } from './metrics.js';
import { PeerTable, countByNeighbor, type PeerListSource } from './peers.js';
import { ObserveServer, type ListenAddress } from './server.js';
import { describeRole, podrouteVersion, type AgentStatusReport } from './status.js';
import type { LoadBalancerAllocatorStatus } from '../services/allocator-loop.js';
import type { PodMtuStatus } from '../node/pod-mtu-tracker.js';
import type { BfdSessionStatus } from '../bfd/sessions.js';

/** What the observer needs from GobgpClient. */
export interface ObservedGobgp extends PeerListSource {
  getBgp(opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<{ asn: number }>;
  on(event: 'connected', listener: (e: { reconnected: boolean }) => void): unknown;
  off(event: 'connected', listener: (e: { reconnected: boolean }) => void): unknown;
}

type Getter<S> = () => { status(): S } | undefined;

export interface AgentObserverOptions {
  /** metrics.address (host:port); empty string: no HTTP server (metrics and health still work in-process). */
  address: string;
  nodeName: string;
  /** Default: package.json's version. */
  version?: string;
  logger: Logger;
  gobgp: ObservedGobgp;
  /** The reconcilers; each getter may return undefined while it does not exist (yet). Omit what does not run. */
  /** The BGP reconciler; its learned table gives each peer's accepted count. */
  bgp?: () => { status(): BgpReconcilerStatus; learned: { view(): LearnedTableView } } | undefined;
  routes?: Getter<RouteReconcilerStatus>;
  masquerade?: Getter<MasqueradeStatus>;
  policy?: Getter<PolicyStatus>;
  /** The LoadBalancer allocator (with services.loadBalancerPools configured). */
  loadBalancerAllocator?: () => LoadBalancerAllocatorStatus | undefined;
  /** The pods' MTU as last chosen (src/node/pod-mtu-tracker.ts). */
  podMtu?: () => PodMtuStatus | undefined;
  /** BFD sessions as the companion reports them; undefined while BFD is not configured. */
  bfd?: () => { companionReachable: boolean; sessions: BfdSessionStatus[] } | undefined;
  /** Resync interval of each reconciler: a loop is stuck after staleFactor × this without a successful pass. */
  resyncMs?: { bgp?: number; routes?: number; masquerade?: number; policy?: number };
  /** Default 3. */
  staleFactor?: number;
  /** Node.js process metrics (default: when there is a /metrics to read them, i.e. `address` is not ''). */
  processMetrics?: boolean;
}

export type ReconcilerName = 'bgp' | 'routes' | 'masquerade' | 'policy';

/** The reconcilers' default resync intervals (their constructors' defaults). */
const DEFAULT_RESYNC_MS = { bgp: 60_000, routes: 30_000, masquerade: 60_000, policy: 60_000 };
const GOBGP_PROBE_TIMEOUT_MS = 1_500;

export class AgentObserver {
  readonly health: HealthMonitor;
  readonly metrics: AgentMetrics;
  private readonly peers: PeerTable;
  private readonly server: ObserveServer | undefined;
  private readonly staleFactor: number;
  private readonly version: string;
  private readonly onConnected = (e: { reconnected: boolean }): void => {
    if (e.reconnected) this.metrics.gobgpReconnected();
  };
  private started = false;
  private readonly reconcilerHandles = new Map<ReconcilerName, ReconcilerHealth>();

  /** Validates metrics.address at once (ObserveServerError INVALID_ADDRESS); binds nothing before start(). */
  constructor(private readonly options: AgentObserverOptions) {
    this.staleFactor = options.staleFactor ?? 3;
    this.version = options.version ?? podrouteVersion();
    this.health = new HealthMonitor();
    const bgpOf = options.bgp;
    this.peers = new PeerTable(options.gobgp, {
      accepted: bgpOf === undefined ? undefined : () => countByNeighbor(bgpOf()?.learned.view().paths.values() ?? []),
    });
    this.metrics = new AgentMetrics({
      nodeName: options.nodeName,
      version: this.version,
      peers: () => this.peers.read(),
      bgp: statusOf(options.bgp),
      routes: statusOf(options.routes),
      policy: statusOf(options.policy),
      loadBalancerAllocator: options.loadBalancerAllocator,
      podMtu: options.podMtu,
      bfd: () => options.bfd?.()?.sessions,
      health: this.health,
      // prom-client's process metrics time the event loop every 10 ms, waking an idle agent 100 times a second
      // (~0.3 % of a core measured): without a server nobody could read them.
      processMetrics: options.processMetrics ?? options.address !== '',
    });
    this.registerReconcilers();
    this.health.addReadinessCheck('gobgpd', () => this.gobgpReadiness());
    const bgp = options.bgp;
    if (bgp !== undefined) {
      this.health.addReadinessCheck('bgp-table', () =>
        bgp()?.status().tableSynced === true ? undefined : "bgp: gobgpd's table of learned paths not received completely yet",
      );
    }
    this.server =
      options.address === ''
        ? undefined
        : new ObserveServer({
            address: options.address,
            logger: options.logger,
            handlers: {
              metrics: () => this.metrics.render(),
              health: () => this.health.health(),
              readiness: () => this.health.readiness(),
              status: () => this.status(),
            },
          });
  }

  /**
   * Registers one of the agent's own loops (e.g. the cluster loop); the handle's heartbeat() goes after each
   * successful pass. resyncMs: the longest the loop waits between passes when nothing happens.
   */
  loop(name: string, options: { resyncMs: number; requiredForReadiness?: boolean }): ReconcilerHealth {
    return this.health.register(name, { staleAfterMs: this.staleFactor * options.resyncMs, requiredForReadiness: options.requiredForReadiness });
  }

  /**
   * The handle of a reconciler given in the options, for the reconciler to push its passes (with durations,
   * for podroute_reconcile_duration_seconds) on top of what its status() says. Getters are lazy, so the
   * observer can be created before the reconcilers and the handle passed to their constructors.
   */
  reconcilerHealth(name: ReconcilerName): ReconcilerHealth {
    const handle = this.reconcilerHandles.get(name);
    if (handle === undefined) throw new Error(`AgentObserver: no ${name} reconciler in the options`);
    return handle;
  }

  /** A further readiness condition (answers undefined when ready, else the reason). */
  addReadinessCheck(name: string, check: ReadinessCheck): void {
    this.health.addReadinessCheck(name, check);
  }

  /** ClusterWatch's onStat. */
  watchStat(kind: string, what: WatchStat): void {
    this.metrics.watchStat(kind, what);
  }

  /** Starts listening on metrics.address (rejects with ObserveServerError BIND_FAILED) and counts gobgpd reconnects. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.options.gobgp.on('connected', this.onConnected);
    await this.server?.start();
  }

  /** The bound address, undefined without a server. */
  address(): ListenAddress | undefined {
    return this.server?.address();
  }

  async close(): Promise<void> {
    this.options.gobgp.off('connected', this.onConnected);
    this.metrics.close();
    await this.server?.close();
  }

  async status(): Promise<AgentStatusReport> {
    const o = this.options;
    const [peerTable, readiness] = await Promise.all([this.peers.read(), this.health.readiness()]);
    const health = this.health.health();
    const bgp = o.bgp?.()?.status();
    const routes = o.routes?.()?.status();
    const policy = o.policy?.()?.status();
    const masq = o.masquerade?.()?.status();
    const bfd = o.bfd?.();
    return {
      node: o.nodeName,
      version: this.version,
      generatedAt: new Date().toISOString(),
      gobgpd: { target: peerTable.target, reachable: peerTable.reachable, error: peerTable.error },
      peers: peerTable.peers,
      bgp:
        bgp === undefined
          ? null
          : {
              originated: bgp.advertised,
              learnedPrefixes: bgp.learnedPrefixes,
              learnedPaths: bgp.learnedPaths,
              tableSynced: bgp.tableSynced,
              // Only once a desired state exists (the agent knows the Nodes): a missing role means not yet known.
              ...(bgp.role === undefined ? {} : { role: describeRole(bgp.role) }),
            },
      routes:
        routes === undefined
          ? null
          : {
              installed: routes.installed,
              added: routes.counts.added,
              removed: routes.counts.removed,
              replaced: routes.counts.replaced,
              conflicts: routes.conflicts,
              keptFromPreviousRun: routes.keptFromStart,
              inSync: routes.inSync,
            },
      policy: policy === undefined ? null : { chains: policy.chains, sets: policy.sets, rules: policy.rules, invalidPolicies: policy.problems.length },
      masquerade: masq === undefined ? null : { inSync: masq.inSync, ipv4: masq.families.ipv4, ipv6: masq.families.ipv6 },
      bfd:
        bfd === undefined
          ? null
          : {
              companionReachable: bfd.companionReachable,
              sessions: bfd.sessions.map((s) => ({
                peer: s.peer,
                state: s.state,
                remoteState: s.remoteState,
                diag: s.diag,
                heldDown: s.heldDown,
                detectionTimeMs: s.detectionTimeMs ?? null,
                txIntervalMs: s.txIntervalMs,
                stateChanges: s.stateChanges,
              })),
            },
      reconcilers: health.loops,
      healthy: health.healthy,
      ready: readiness.ready,
      notReadyReasons: readiness.reasons,
    };
  }

  private registerReconcilers(): void {
    const o = this.options;
    const resync = { ...DEFAULT_RESYNC_MS, ...o.resyncMs };
    const reconcilers: [ReconcilerName, (() => { loop: ReconcileStatus } | undefined) | undefined][] = [
      ['bgp', o.bgp === undefined ? undefined : () => o.bgp?.()?.status()],
      ['routes', statusOf(o.routes)],
      ['masquerade', statusOf(o.masquerade)],
      ['policy', statusOf(o.policy)],
    ];
    for (const [name, status] of reconcilers) {
      if (status === undefined) continue;
      this.reconcilerHandles.set(name, this.health.register(name, {
        staleAfterMs: this.staleFactor * resync[name],
        observe: () => {
          const loop = status()?.loop;
          return loop === undefined ? undefined : loopObservation(loop);
        },
      }));
    }
  }

  private async gobgpReadiness(): Promise<string | undefined> {
    try {
      const g = await this.options.gobgp.getBgp({ timeoutMs: GOBGP_PROBE_TIMEOUT_MS });
      return g.asn === 0 ? 'gobgpd: BGP not started yet (no successful BGP pass)' : undefined;
    } catch (err) {
      return `gobgpd not reachable at ${this.options.gobgp.target}: ${errorMessage(err)}`;
    }
  }
}

function statusOf<S>(get: Getter<S> | undefined): (() => S | undefined) | undefined {
  return get === undefined ? undefined : () => get()?.status();
}

/** A loop's status as health reads it: the error's time is the start of the pass that failed. */
export function loopObservation(status: ReconcileStatus): LoopObservation {
  const { lastError, lastAttemptAt } = status;
  return {
    lastSuccessAt: status.lastSuccessAt,
    lastError: lastError === undefined ? undefined : { ...lastError, ...(lastAttemptAt === undefined ? {} : { at: lastAttemptAt }) },
    failures: status.failures,
  };
}
