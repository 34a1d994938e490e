// Prometheus metrics of the agent, in a registry the agent owns (never prom-client's global one).
//
// Most values are read at scrape time by collect() callbacks from the reconcilers' status() and gobgpd's peer
// list, so nothing has to be pushed around and a scrape always shows the current state. Pushed: Kubernetes
// watch counters, gobgpd reconnects and pass durations (from HealthMonitor's pass listener).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BgpReconcilerStatus } from '../bgp/bgp-reconciler.js';
import type { PolicyStatus } from '../policy/policy-reconciler.js';
import type { LoadBalancerAllocatorStatus } from '../services/allocator-loop.js';
import type { RouteReconcilerStatus } from '../routes/route-reconciler.js';
import type { PodMtuStatus } from '../node/pod-mtu-tracker.js';
import type { HealthMonitor } from './health.js';
import type { PeerTableReport } from './peers.js';
import type { BfdSessionStatus } from '../bfd/sessions.js';

export type WatchStat = 'event' | 'connect' | 'error';

export interface MetricsSources {
  nodeName: string;
  version: string;
  /** gobgpd's peers (read once per scrape). */
  peers?: () => Promise<PeerTableReport>;
  bgp?: () => BgpReconcilerStatus | undefined;
  routes?: () => RouteReconcilerStatus | undefined;
  policy?: () => PolicyStatus | undefined;
  /** The LoadBalancer allocator (src/services/allocator-loop.ts). */
  loadBalancerAllocator?: () => LoadBalancerAllocatorStatus | undefined;
  /** The pods' MTU as last chosen (src/node/pod-mtu-tracker.ts). */
  podMtu?: () => PodMtuStatus | undefined;
  /** BFD sessions (from the companion); undefined or empty: no BFD metrics. */
  bfd?: () => BfdSessionStatus[] | undefined;
  /** Loops' last success and error counts; pass durations are taken from its pass listener. */
  health?: HealthMonitor;
  /** Node.js process metrics (process_*, nodejs_*); default true. */
  processMetrics?: boolean;
}

/** Pass durations from a few ms (a no-op pass) to minutes (a 50k-route initial sync on a busy node). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly watchEvents: Counter<'kind'>;
  private readonly watchRelists: Counter<'kind'>;
  private readonly watchErrors: Counter<'kind'>;
  private readonly gobgpReconnects: Counter;
  private readonly passDuration: Histogram<'reconciler'>;
  private readonly unsubscribe: (() => void) | undefined;
  private scrapePeers: Promise<PeerTableReport> | undefined;

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    const peers = (): Promise<PeerTableReport> | undefined => this.peersOfScrape();

    new Gauge({
      name: 'podroute_build_info',
      help: 'Always 1; labels say which podroute runs on which node.',
      labelNames: ['version', 'node', 'nodejs'],
      registers,
    }).set({ version: sources.version, node: sources.nodeName, nodejs: process.version }, 1);

    // --- BGP peers (gobgpd's ListPeer at scrape time)
    const peerLabels = ['peer', 'asn', 'type'] as const;
    const peerGauge = (name: string, help: string, value: (p: PeerTableReport['peers'][number]) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: peerLabels,
        registers,
        async collect() {
          this.reset();
          const report = await peers();
          for (const p of report?.peers ?? []) this.set({ peer: p.address, asn: String(p.asn), type: p.type }, value(p));
        },
      });
    };
    peerGauge('podroute_bgp_peer_established', 'BGP session state per peer: 1 Established, 0 otherwise (or gobgpd not answering).', (p) =>
      p.state === 'ESTABLISHED' ? 1 : 0,
    );
    peerGauge('podroute_bgp_peer_prefix_limit_exceeded', "1 when gobgpd ended the session at the peer's max-prefix limit (it stays down until the peer's configuration changes).", (p) =>
      p.adminState === 'PREFIX_LIMIT' ? 1 : 0,
    );
    peerGauge('podroute_bgp_peer_prefixes_received', "Paths received from the peer (gobgpd's Adj-RIB-In, all families).", (p) => p.received);
    peerGauge('podroute_bgp_peer_prefixes_accepted', 'Paths from the peer that passed the import policy and are in use (best or equal-cost).', (p) => p.accepted);
    peerGauge('podroute_bgp_peer_prefixes_advertised', 'Prefixes advertised to the peer.', (p) => p.advertised);
    new Gauge({
      name: 'podroute_gobgpd_up',
      help: '1 when gobgpd answered the last peer list, else 0.',
      registers,
      async collect() {
        const report = await peers();
        this.set(report?.reachable === true ? 1 : 0);
      },
    });
    this.gobgpReconnects = new Counter({
      name: 'podroute_gobgpd_reconnects_total',
      help: 'Times the agent reconnected to gobgpd after losing it (gobgpd restarts).',
      registers,
    });

    // --- BGP reconciler
    const bgp = sources.bgp;
    if (bgp !== undefined) {
      new Gauge({
        name: 'podroute_bgp_originated_prefixes',
        help: "Prefixes this node originates (its podCIDRs) as last applied to gobgpd.",
        registers,
        collect() {
          const bgpStatus = bgp();
          if (bgpStatus !== undefined) this.set(bgpStatus.advertised);
        },
      });
      new Gauge({
        name: 'podroute_bgp_learned_prefixes',
        help: 'Prefixes in the learned table (accepted from peers, ours excluded).',
        registers,
        collect() {
          const bgpStatus = bgp();
          if (bgpStatus !== undefined) this.set(bgpStatus.learnedPrefixes);
        },
      });
    }

    // --- Kernel routes
    const routes = sources.routes;
    if (routes !== undefined) {
      new Gauge({
        name: 'podroute_routes_installed',
        help: 'Kernel routes with the podroute protocol number.',
        registers,
        collect() {
          const routeStatus = routes();
          if (routeStatus !== undefined) this.set(routeStatus.installed);
        },
      });
      new Gauge({
        name: 'podroute_routes_kept_from_previous_run',
        help: "Kernel routes of the agent's previous run kept until the BGP peers are back (none learned them again yet).",
        registers,
        collect() {
          const routeStatus = routes();
          if (routeStatus !== undefined) this.set(routeStatus.keptFromStart);
        },
      });
      new Gauge({
        name: 'podroute_routes_conflicts',
        help: "Prefixes left alone because another protocol's route holds them.",
        registers,
        collect() {
          const routeStatus = routes();
          if (routeStatus !== undefined) this.set(routeStatus.conflicts.length);
        },
      });
      const routeCounter = (name: string, help: string, value: (status: RouteReconcilerStatus) => number): void => {
        new Counter({
          name,
          help,
          registers,
          collect() {
            const routeStatus = routes();
            if (routeStatus === undefined) return;
            this.reset();
            this.inc(value(routeStatus));
          },
        });
      };
      routeCounter('podroute_routes_added_total', 'Kernel routes added for prefixes that had none of ours.', (status) => status.counts.added);
      routeCounter('podroute_routes_removed_total', 'Kernel routes of ours removed.', (status) => status.counts.removed);
      routeCounter('podroute_routes_replaced_total', 'Kernel routes of ours changed in place (next hops).', (status) => status.counts.replaced);
    }

    // --- NetworkPolicy
    const policy = sources.policy;
    if (policy !== undefined) {
      for (const [what, help] of [
        ['chains', 'iptables chains owned by podroute (both families).'],
        ['sets', 'ipsets owned by podroute.'],
        ['rules', 'iptables rules in the chains owned by podroute (both families).'],
      ] as const) {
        new Gauge({
          name: `podroute_policy_${what}`,
          help,
          registers,
          collect() {
            const policyStatus = policy();
            if (policyStatus !== undefined) this.set(policyStatus[what]);
          },
        });
      }
      new Gauge({
        name: 'podroute_policy_invalid',
        help: 'NetworkPolicies the agent cannot enforce as written (bad or unknown fields): each isolates the pods it selects and allows nothing.',
        registers,
        collect() {
          const policyStatus = policy();
          if (policyStatus !== undefined) this.set(new Set(policyStatus.problems.map((p) => p.policy)).size);
        },
      });
    }

    // --- Node setup
    const podMtu = sources.podMtu;
    if (podMtu !== undefined) {
      new Gauge({
        name: 'podroute_pod_mtu',
        help: "The MTU new pods get (the CNI conflist's), by where it came from: config (cni.mtu), interface (the InternalIP's link) or none (0: the bridge plugin's default).",
        labelNames: ['source'],
        registers,
        collect() {
          this.reset();
          const status = podMtu();
          if (status !== undefined) this.set({ source: status.source }, status.mtu ?? 0);
        },
      });
    }

    // --- LoadBalancer allocation (what this agent's allocator did; only the Lease holder allocates)
    const allocator = sources.loadBalancerAllocator;
    if (allocator !== undefined) {
      new Gauge({
        name: 'podroute_lb_allocator_leading',
        help: '1 while this agent holds the allocator Lease and allocates LoadBalancer addresses.',
        registers,
        collect() {
          const status = allocator();
          if (status !== undefined) this.set(status.leading ? 1 : 0);
        },
      });
      new Gauge({
        name: 'podroute_lb_addresses_allocated',
        help: 'Addresses held by LoadBalancer Services of ours, as of the last pass of the Lease holder that wrote.',
        registers,
        collect() {
          this.reset();
          const status = allocator();
          if (status?.leading === true) this.set(status.allocatedAddresses);
        },
      });
      new Gauge({
        name: 'podroute_lb_problems',
        help: 'Services with an allocation problem (or an externalIPs entry not advertised), by reason, as of the last pass of the Lease holder that wrote.',
        labelNames: ['reason'],
        registers,
        collect() {
          this.reset();
          const status = allocator();
          if (status?.leading !== true) return;
          for (const [reason, count] of Object.entries(status.problems)) this.set({ reason }, count);
        },
      });
      for (const [name, help, field] of [
        ['podroute_lb_allocations_total', 'LoadBalancer addresses this agent wrote into Services\' status.', 'allocations'],
        ['podroute_lb_releases_total', 'LoadBalancer addresses this agent took back from Services\' status.', 'releases'],
        ['podroute_lb_status_conflicts_total', 'Service status writes refused with 409 Conflict (planned again).', 'conflicts'],
      ] as const) {
        new Counter({
          name,
          help,
          registers,
          collect() {
            const status = allocator();
            if (status === undefined) return;
            this.reset();
            this.inc(status[field]);
          },
        });
      }
    }

    // --- Loops (reconcilers)
    this.passDuration = new Histogram({
      name: 'podroute_reconcile_duration_seconds',
      help: 'Duration of reconcile passes (successful and failed) per reconciler.',
      labelNames: ['reconciler'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    const health = sources.health;
    if (health !== undefined) {
      new Counter({
        name: 'podroute_reconcile_errors_total',
        help: 'Failed reconcile passes per reconciler.',
        labelNames: ['reconciler'],
        registers,
        collect() {
          this.reset();
          for (const loop of health.health().loops) this.inc({ reconciler: loop.name }, loop.failures);
        },
      });
      new Gauge({
        name: 'podroute_reconcile_last_success_timestamp_seconds',
        help: 'Unix time of the last successful pass per reconciler (absent before the first).',
        labelNames: ['reconciler'],
        registers,
        collect() {
          this.reset();
          for (const loop of health.health().loops) {
            if (loop.lastSuccessAt !== null) this.set({ reconciler: loop.name }, Date.parse(loop.lastSuccessAt) / 1000);
          }
        },
      });
      new Gauge({
        name: 'podroute_reconcile_stuck',
        help: 'Per reconciler: 1 when its last successful pass is older than allowed (/healthz is then 503).',
        labelNames: ['reconciler'],
        registers,
        collect() {
          this.reset();
          for (const loop of health.health().loops) this.set({ reconciler: loop.name }, loop.state === 'stuck' ? 1 : 0);
        },
      });
      this.unsubscribe = health.onPass((loop, _outcome, durationMs) => {
        if (durationMs !== undefined && Number.isFinite(durationMs) && durationMs >= 0) this.passDuration.observe({ reconciler: loop }, durationMs / 1000);
      });
    }

    // --- BFD sessions (the companion's last report)
    const bfd = sources.bfd;
    if (bfd !== undefined) {
      const bfdGauge = (name: string, help: string, labels: string[], fill: (g: Gauge<string>, s: BfdSessionStatus) => void): void => {
        new Gauge({
          name,
          help,
          labelNames: labels,
          registers,
          collect() {
            this.reset();
            for (const s of bfd() ?? []) fill(this, s);
          },
        });
      };
      bfdGauge('podroute_bfd_session_state', 'BFD session state per peer: 1 for the current state (AdminDown, Down, Init, Up).', ['peer', 'state'], (g, s) => {
        for (const state of ['AdminDown', 'Down', 'Init', 'Up']) g.set({ peer: s.peer, state }, s.state === state ? 1 : 0);
      });
      bfdGauge('podroute_bfd_session_held_down', 'Per peer: 1 while its BGP session is held down because BFD found the path broken.', ['peer'], (g, s) => g.set({ peer: s.peer }, s.heldDown ? 1 : 0));
      bfdGauge('podroute_bfd_detection_time_seconds', 'Per peer: silence after which the session is declared down (absent before the peer was heard).', ['peer'], (g, s) => {
        if (s.detectionTimeMs !== undefined) g.set({ peer: s.peer }, s.detectionTimeMs / 1000);
      });
      new Counter({
        name: 'podroute_bfd_state_changes_total',
        help: 'BFD session state changes per peer since the companion started (a flapping path counts up here).',
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset();
          for (const s of bfd() ?? []) this.inc({ peer: s.peer }, s.stateChanges);
        },
      });
    }

    // --- Kubernetes watches
    this.watchEvents = new Counter({
      name: 'podroute_kube_watch_events_total',
      help: 'Kubernetes watch events (add/update/delete) per kind.',
      labelNames: ['kind'],
      registers,
    });
    this.watchRelists = new Counter({
      name: 'podroute_kube_watch_relists_total',
      help: 'Kubernetes lists from scratch per kind: at start and when a watch cannot resume (410 Gone or a bad answer); a reconnect resumes from the last resourceVersion.',
      labelNames: ['kind'],
      registers,
    });
    this.watchErrors = new Counter({
      name: 'podroute_kube_watch_errors_total',
      help: 'Kubernetes watch failures (each followed by a retry with back-off) per kind.',
      labelNames: ['kind'],
      registers,
    });

    if (sources.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** ClusterWatch's onStat. */
  watchStat(kind: string, what: WatchStat): void {
    if (what === 'event') this.watchEvents.inc({ kind });
    else if (what === 'connect') this.watchRelists.inc({ kind });
    else this.watchErrors.inc({ kind });
  }

  /** Counts a reconnection to gobgpd (GobgpClient's 'connected' event with reconnected: true). */
  gobgpReconnected(): void {
    this.gobgpReconnects.inc();
  }

  /** Records a pass duration directly (for loops that do not report through HealthMonitor). */
  observePass(reconciler: string, durationMs: number): void {
    this.passDuration.observe({ reconciler }, durationMs / 1000);
  }

  /** The text exposition and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  close(): void {
    this.unsubscribe?.();
  }

  /** One gobgpd peer list per scrape: the peer gauges' collect() run in parallel and share the pending read. */
  private peersOfScrape(): Promise<PeerTableReport> | undefined {
    const source = this.sources.peers;
    if (source === undefined) return undefined;
    this.scrapePeers ??= source().finally(() => {
      this.scrapePeers = undefined;
    });
    return this.scrapePeers;
  }
}
