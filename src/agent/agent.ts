// The node agent: wires the watchers to the reconcilers. It owns no outside resource itself; each reconciler
// owns its own (gobgpd state, kernel routes of our protocol, our nat chain and sets, the CNI conflist).
//
//   Kubernetes watches ──► desired node state (pure) ──► BGP reconciler, masquerade, CNI conflist, route selection
//   gobgpd learned table (bgp/) ──► route selection loop (routes/) ──► route reconciler
//
// The cluster loop is a level-triggered ReconcileLoop: events only mark it dirty, and it reads whole snapshots.
import { setMaxListeners } from 'node:events';
import { BgpReconciler } from '../bgp/bgp-reconciler.js';
import { GobgpClient } from '../bgp/gobgp-client.js';
import type { AgentConfig } from '../config/agent-config.js';
import { readPasswordFiles } from '../config/password-file.js';
import { ClusterWatch, describeError, loadKubeConfig, type ClusterSnapshot, type WatchedKind } from '../kube/cluster-watch.js';
import type { Node, Service } from '../kube/wire.js';
import { KubeApi } from '../kube/kube-api.js';
import { LoadBalancerAllocator } from '../services/allocator-loop.js';
import { nodeInfoFromObject, type NodeInfo } from '../kube/node-info.js';
import type { ClusterState, PolicyNode } from '../policy/types.js';
import { NodeReporter } from '../kube/node-reporter.js';
import { MasqueradeReconciler } from '../nat/masquerade.js';
import { localRunner } from '../host/command.js';
import { KernelChangeMonitor } from '../host/kernel-monitor.js';
import { resolveIptablesBackend, type IptablesBackend } from '../host/iptables-backend.js';
import { writeCniConfig } from '../node/cni.js';
import { PodMtuTracker } from '../node/pod-mtu-tracker.js';
import { applySysctls } from '../node/sysctl.js';
import { PolicyReconciler } from '../policy/policy-reconciler.js';
import { AgentObserver } from '../observe/agent-observer.js';
import { PeerEventReporter } from '../observe/peer-events.js';
import type { ReconcilerHealth } from '../observe/health.js';
import type { Logger } from '../observe/log.js';
import { RouteReconciler } from '../routes/route-reconciler.js';
import { CONNECTED_REFRESH_MS, RouteSelectionLoop } from '../routes/route-selection-loop.js';
import { BfdControlClient } from '../bfd/control.js';
import type { BfdSessionStatus } from '../bfd/sessions.js';
import { readConnectedNetworks } from '../routes/connected-networks.js';
import { canonicalAddressText } from '../routes/ip-prefix.js';
import { planBfdHoldDown, planBfdPeers, type BfdDownVerdict } from './bfd-peers.js';
import { sameNodeStateInputs, type NodeStateInputs } from './node-state-inputs.js';
import { planDesiredState, serviceRoutes, servicesConfigured, type DesiredNodeState } from './desired-state.js';
import { errorInfo, ReconcileLoop, sleep, type PassListener } from '../reconcile/loop.js';

/** Both loops retry a failed pass after this long (a fixed delay: the work is in-memory planning). */
const RETRY = { initialMs: 2_000, maxMs: 2_000 };
/** How long a fresh gobgpd's start waits for the first read of the kernel's routes (see forwardingKeptAtStart). */
const FIRST_ROUTE_READ_WAIT_MS = 5_000;
/**
 * The cluster loop re-plans this often without any event: password files are mounted Secrets that change without a
 * watch event. Its own period, not the kernel route resync's (routes.resyncSeconds is about drift in the kernel).
 */
export const CLUSTER_RESYNC_MS = 30_000;
/**
 * Listeners the agent's signal may hold before Node warns. Every loop and reconciler waits on it for good (about a
 * dozen), and each call in flight adds one while it runs: Node's default of 10 warned within minutes of start
 * although nothing grew. Per-call listeners are removed when the call ends (see the listener test).
 */
export const AGENT_SIGNAL_MAX_LISTENERS = 64;

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
}

export class Agent {
  private readonly config: AgentConfig;
  private readonly nodeName: string;
  private readonly logger: Logger;
  /** Only Node changes (and the periodic re-plan) need the node state planned again; pods, namespaces and policies feed policy alone. */
  private nodesChanged = true;
  /** Services or EndpointSlices changed: the Service paths are planned again (nothing else). */
  private servicesChanged = true;
  private serviceWarnings: string[] = [];
  /** The Service paths last handed to the BGP reconciler: an endpoint change that moves none of them is no news for it. */
  private servicePathsKey = '';
  private desired: DesiredNodeState | undefined;
  /** The inputs of the last node-state plan: a periodic re-plan with the same ones is skipped. */
  private planInputs: NodeStateInputs | undefined;
  /** The CNI conflist is in place: pods can start here, so the node may be reported network-available. */
  private cniWritten = false;
  private reportedWarnings = new Set<string>();
  private networkReported = false;
  /** Where policy and masquerade write (iptables.backend, or detected at start): nft until run() decides. */
  private iptablesBackend: IptablesBackend = 'nft';
  /** Settles once iptablesBackend is chosen: the masquerade and policy reconcilers are created after it. */
  private iptablesBackendChosen: Promise<void> = Promise.resolve();

  // Created in start(); the agent is one-shot.
  private watch!: ClusterWatch;
  private reporter!: NodeReporter;
  private gobgp!: GobgpClient;
  private bgp!: BgpReconciler;
  private routes!: RouteReconciler;
  private masquerade: MasqueradeReconciler | undefined;
  private observer!: AgentObserver;
  private clusterLoop!: ReconcileLoop;
  private routeSelection!: RouteSelectionLoop;
  private policy: PolicyReconciler | undefined;
  private allocator: LoadBalancerAllocator | undefined;
  private policyInput: PolicyInput | undefined;
  private podMtu!: PodMtuTracker;
  /** The BFD companion, once a peer wants BFD (bgp.bfd / bgp.peers[].bfd). */
  private bfd: BfdControlClient | undefined;
  /** How each BFD session down was judged (planBfdHoldDown), and the peers with graceful restart it judges by. */
  private bfdVerdicts = new Map<string, BfdDownVerdict>();
  private bfdGracefulRestartPeers = new Set<string>();
  /** The companion's reports, judged one after the other. */
  private bfdJudging: Promise<void> = Promise.resolve();

  constructor(options: AgentOptions) {
    this.config = options.config;
    if (options.config.nodeName === undefined) throw new Error('Agent: config.nodeName is required');
    this.nodeName = options.config.nodeName;
    this.logger = options.logger;
  }

  /** Runs until the signal aborts. Stopping leaves the data plane as it is (routes, rules, gobgpd state). */
  async run(signal: AbortSignal): Promise<void> {
    const { config, logger } = this;
    setMaxListeners(AGENT_SIGNAL_MAX_LISTENERS, signal);
    // Forwarding and bridge netfilter first: without them nothing else is worth doing (and the error says why).
    await applySysctls({ logger });
    if (config.policy.enabled || config.masquerade.enabled) {
      // Before any rule is written, and once: a backend that changed under a running agent would orphan its rules.
      // Beside BGP's start-up, which does not need it: counting the rules of both backends takes four processes.
      this.iptablesBackendChosen = resolveIptablesBackend(config.iptables.backend, localRunner(), signal).then((choice) => {
        this.iptablesBackend = choice.backend;
        logger.info('iptables backend chosen', { backend: choice.backend, setting: config.iptables.backend, reason: choice.reason });
      });
    }

    const kubeConfig = loadKubeConfig(config.kubeconfig);
    this.reporter = new NodeReporter({ kubeConfig, nodeName: this.nodeName, logger });
    const kinds: WatchedKind[] = config.policy.enabled ? ['nodes', 'pods', 'namespaces', 'networkpolicies'] : ['nodes'];
    if (servicesConfigured(config)) kinds.push('services', 'endpointslices');
    this.watch = new ClusterWatch({ kubeConfig, logger, kinds, onChange: (kind) => {
      if (kind === 'nodes') this.nodesChanged = true;
      if (kind === 'services' || kind === 'endpointslices') this.servicesChanged = true;
      if (kind === 'services') this.allocator?.trigger();
      this.clusterLoop.markDirty();
    }, onStat: (kind, what) => this.observer.watchStat(kind, what) });
    // One netlink monitor tells the kernel's readers whether anything changed: an idle node's resyncs read nothing.
    const kernelChanges = new KernelChangeMonitor({ logger: logger.child({ component: 'kernel-monitor' }) });
    kernelChanges.start(signal);
    this.podMtu = new PodMtuTracker({
      kernelChanges,
      configured: config.cni.mtu,
      logger,
      postEvent: (reason, message) => void this.reporter.event('Normal', reason, message),
    });
    this.gobgp = new GobgpClient({ target: config.gobgp.target, callTimeoutMs: config.gobgp.callTimeoutSeconds * 1000, logger });
    this.bgp = new BgpReconciler({
      client: this.gobgp,
      logger: logger.child({ component: 'bgp' }),
      // The kernel still routes with the previous run's routes: the new gobgpd claims forwarding state, so the
      // peers keep our paths as stale until it has sent them again (a kernel that cannot be read claims nothing).
      forwardingKeptAtStart: async () => (await Promise.race([this.routes.routesFoundAtStart(signal), sleep(FIRST_ROUTE_READ_WAIT_MS, signal).then(() => 0)])) > 0,
    });
    this.routes = new RouteReconciler({
      protocol: config.routes.protocol,
      logger: logger.child({ component: 'routes' }),
      resyncIntervalMs: config.routes.resyncSeconds * 1000,
      kernelChanges,
      // Graceful restart across agent runs (an upgrade, a restarted pod): see releaseRoutesFoundAtStart below.
      keepRoutesFoundAtStart: true,
    });
    this.observer = new AgentObserver({
      address: config.metrics.address,
      nodeName: this.nodeName,
      logger: logger.child({ component: 'observe' }),
      gobgp: this.gobgp,
      bgp: () => this.bgp,
      routes: () => this.routes,
      masquerade: config.masquerade.enabled ? () => this.masquerade : undefined,
      policy: config.policy.enabled ? () => this.policy : undefined,
      loadBalancerAllocator: () => this.allocator?.status(),
      podMtu: () => this.podMtu.status(),
      bfd: () => (this.bfd === undefined ? undefined : { companionReachable: this.bfd.connected, sessions: this.bfd.sessions().map((s) => ({ ...s, heldDown: this.bfdVerdicts.get(s.peer)?.holdDown === true })) }),
      resyncMs: { routes: config.routes.resyncSeconds * 1000 },
    });
    const clusterHealth = this.observer.loop('cluster', { resyncMs: CLUSTER_RESYNC_MS });
    const routeSelectionHealth = this.observer.loop('route-selection', { resyncMs: CONNECTED_REFRESH_MS });
    this.clusterLoop = new ReconcileLoop({
      name: 'cluster',
      resyncIntervalMs: CLUSTER_RESYNC_MS,
      backoff: RETRY,
      pass: ({ signal: passSignal, resync }) => this.clusterPass(passSignal, resync),
      onPass: pushTo(clusterHealth),
      onFailure: (err) => {
        this.nodesChanged = true;
        this.logger.error('applying the node state failed; retrying', { error: describeError(err) });
      },
    });
    this.routeSelection = new RouteSelectionLoop({
      kernelChanges,
      learned: this.bgp.learned,
      routes: this.routes,
      logger,
      reportRejection: (message) => void this.reporter.event('Warning', 'PodrouteRouteRejected', message),
      afterPass: (passSignal) => this.reportNetworkAvailable(passSignal),
      retry: RETRY,
      onPass: pushTo(routeSelectionHealth),
    });
    await this.observer.start(); // fails (ObserveServerError BIND_FAILED) before any loop starts

    this.watch.start(signal);
    const peerEvents = new PeerEventReporter({
      listPeers: () => this.gobgp.listPeers(),
      post: (event) => this.reporter.event(event.type, event.reason, event.message),
      // gobgpd's peer watch (the learned table's stream) wakes a read: no ListPeer every few seconds while idle.
      onPeerChange: (listener) => this.bgp.learned.onPeerStateEvent(() => listener()),
    });
    const running: Promise<unknown>[] = [];
    // One allocator in the cluster at a time: every agent with pools runs one, the Lease holder writes.
    if (config.services.loadBalancerPools.length > 0) {
      const allocatorHealth = this.observer.loop('lb-allocator', { resyncMs: CLUSTER_RESYNC_MS });
      this.allocator = new LoadBalancerAllocator({
        api: new KubeApi({ config: kubeConfig }),
        identity: this.nodeName,
        pools: config.services.loadBalancerPools,
        // Reported only where podroute is the one to advertise externalIPs (ranges configured).
        ...(config.services.externalIPRanges.length > 0 ? { externalIPRanges: config.services.externalIPRanges } : {}),
        services: () => this.watch.objects<Service>('services'),
        logger: logger.child({ component: 'lb-allocator' }),
        resyncIntervalMs: CLUSTER_RESYNC_MS,
        onPass: pushTo(allocatorHealth),
      });
      running.push(this.runWhenSynced(signal, () => this.allocator!.start(signal)));
    }
    running.push(
      this.bgp.start(signal),
      this.routes.start(signal),
      this.runClusterLoop(signal),
      this.routeSelection.run(signal),
      peerEvents.run(signal),
      this.bgp.peersSettledAfterStart(signal).then((why) => {
        if (why !== 'aborted') this.routes.releaseRoutesFoundAtStart(why);
      }),
    );
    logger.info('podroute agent started', { node: this.nodeName, gobgp: config.gobgp.target, routeProtocol: config.routes.protocol });
    await Promise.all(running.map((p) => p.catch((err: unknown) => {
      if (!signal.aborted) logger.error('agent loop failed', { error: describeError(err) });
    })));
    this.bfd?.stop();
    this.gobgp.close();
    await this.observer.close();
    logger.info('podroute agent stopped; routes, rules and gobgpd state are left in place');
  }

  /** Recomputes the desired node state whenever the cluster (or a peer's password file) may have changed. */
  private async runClusterLoop(signal: AbortSignal): Promise<void> {
    await this.runWhenSynced(signal, () => this.clusterLoop.run(signal));
  }

  /** Runs a loop that reads the caches once they are authoritative (every watched kind listed once). */
  private async runWhenSynced(signal: AbortSignal, run: () => Promise<void>): Promise<void> {
    // A stop while the API server was never reached must not wait for a first list that will not come.
    await Promise.race([this.watch.synced(), new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    if (!signal.aborted) await run();
  }

  private async clusterPass(signal: AbortSignal, resync: boolean): Promise<void> {
    if (this.nodesChanged || resync || this.desired === undefined) {
      // The periodic re-plan without a Node event is there for the inputs that change without one: it stops short
      // when they did not change either.
      const onlyPeriodic = !this.nodesChanged && this.desired !== undefined;
      this.nodesChanged = false;
      if (await this.planAndApplyNodeState(signal, onlyPeriodic)) return;
    }
    const desired = this.desired;
    if (desired === undefined) return;
    const snapshot = this.watch.snapshot();
    if (this.servicesChanged) this.applyServiceRoutes(snapshot, desired, false);
    if (this.config.policy.enabled) this.applyPolicy(snapshot, desired, signal);
  }

  /**
   * The Service paths follow endpoints (a Local Service's last endpoint leaving withdraws within the second), so they
   * are planned on their own, without the node state: an EndpointSlice change costs this plan and gobgpd calls only.
   */
  private applyServiceRoutes(snapshot: ClusterSnapshot, state: DesiredNodeState, nodeStateChanged: boolean): void {
    this.servicesChanged = false;
    // Without services.* configured nothing is watched and nothing comes out: the plan is then empty.
    const routes = serviceRoutes(this.config, state.self, snapshot.services, snapshot.endpointSlices);
    const services = state.bgp.services ?? { paths: [], ranges: [], peers: [] };
    const pathsKey = JSON.stringify(routes.paths);
    if (nodeStateChanged || pathsKey !== this.servicePathsKey) {
      this.servicePathsKey = pathsKey;
      this.bgp.setDesired({ ...state.bgp, services: { ...services, paths: routes.paths } });
    }
    if (routes.warnings.join('\n') !== this.serviceWarnings.join('\n')) {
      this.serviceWarnings = routes.warnings;
      this.reportWarnings([...state.warnings, ...routes.warnings]);
    }
  }

  /**
   * Plans the node state and hands it on; returns false when `skipWhenUnchanged` and its inputs are those of the
   * last plan (then only the CNI conflist is checked, a file someone may have removed).
   */
  private async planAndApplyNodeState(signal: AbortSignal, skipWhenUnchanged = false): Promise<boolean> {
    const snapshot = this.watch.snapshot();
    const nodes = snapshot.nodes.map((n) => nodeInfoOf(n));
    const self = nodes.find((n) => n.name === this.nodeName);
    const { secrets, problems } = await readPasswordFiles(
      this.config.bgp.passwordDir,
      [this.config.bgp.meshPasswordFile, ...[...this.config.bgp.peers, ...(self?.annotationPeers ?? [])].map((p) => p.passwordFile)],
    );
    // Read again at every re-plan: a changed fabric MTU rolls into the conflist (new pods get it). Chosen for the
    // node's InternalIPs before planning, so that an unchanged re-plan is known before it costs a plan.
    const podMtu = self === undefined ? undefined : await this.podMtu.choose(self.internalIPs, signal);
    const inputs: NodeStateInputs = { nodes: snapshot.nodes, secrets, secretProblems: problems, podMtu: podMtu?.mtu, podMtuWarnings: podMtu?.warnings ?? [] };
    if (skipWhenUnchanged && podMtu !== undefined && sameNodeStateInputs(this.planInputs, inputs) && this.desired !== undefined) {
      if (this.cniWritten) await this.writeCni(this.desired);
      return false;
    }
    const result = planDesiredState({ config: this.config, nodeName: this.nodeName, nodes, secrets, secretProblems: problems });
    if (!result.ok || podMtu === undefined) {
      // Keep everything as it is: a node that vanished from the API (or an API glitch) must not tear down routes.
      this.logger.warn('waiting for this node in the cluster; nothing is changed meanwhile', { reason: result.ok ? `node ${this.nodeName} is not (yet) in the cluster` : result.reason });
      this.planInputs = undefined;
      return true;
    }
    const state = result.state;
    this.planInputs = inputs;
    state.warnings.push(...podMtu.warnings);
    state.cni = { ...state.cni, mtu: podMtu.mtu };
    state.warnings.push(...(await this.applyBfdPeers(state, signal)));
    this.desired = state;
    this.routeSelection.setInput(state.routeSelection);
    this.reportWarnings([...state.warnings, ...this.serviceWarnings]);

    this.applyServiceRoutes(snapshot, state, true);
    await this.iptablesBackendChosen;
    const masqueradeConfig = {
      clusterRanges: state.masquerade.clusterRanges,
      nonMasqueradeCIDRs: state.masquerade.nonMasqueradeCIDRs,
      nodeAddresses: nodes.flatMap((n) => n.internalIPs),
    };
    if (this.config.masquerade.enabled) {
      if (this.masquerade === undefined) {
        this.masquerade = new MasqueradeReconciler({ ...masqueradeConfig, iptablesBackend: this.iptablesBackend, logger: this.logger.child({ component: 'nat' }) });
        this.masquerade.start(signal).catch((err: unknown) => {
          if (!signal.aborted) this.logger.error('masquerade reconciler stopped', { error: describeError(err) });
        });
      } else {
        this.masquerade.setDesired(masqueradeConfig);
      }
    }
    if (this.config.policy.enabled) this.applyPolicy(snapshot, state, signal);
    // The conflist lets pods start on this node: with policy on, only once its rules are in (a first apply that
    // failed, e.g. on a held xtables lock, would start pods unfiltered). Until then the node stays
    // NetworkUnavailable; the first successful sync re-plans (see applyPolicy).
    if (!this.config.policy.enabled || this.policy?.hasSynced() === true) {
      await this.writeCni(state);
      this.cniWritten = true;
    } else {
      this.logger.info('CNI network configuration waits for the first policy sync', { dir: this.config.cni.confDir });
    }
    this.routeSelection.markDirty(); // the selection context (nodes, ranges) may have changed
    return true;
  }

  /** Writes the CNI conflist when the file differs from the state's (missing, edited, or a new state). */
  private async writeCni(state: DesiredNodeState): Promise<void> {
    const wrote = await writeCniConfig({ confDir: this.config.cni.confDir, input: state.cni });
    if (wrote) this.logger.info('CNI network configuration written', { dir: this.config.cni.confDir, podCIDRs: state.cni.podCIDRs });
  }

  /** The policy reconciler gets whole snapshots, only once every kind has been listed (a partial one could open). */
  private applyPolicy(snapshot: ClusterSnapshot, state: DesiredNodeState, signal: AbortSignal): void {
    const node = { name: state.self.name, addresses: state.self.internalIPs, podCIDRs: state.self.podCIDRs };
    // The watch's arrays: a kind's array is replaced, never changed, when its objects change (ClusterWatch.objects).
    const cluster = { pods: snapshot.pods, namespaces: snapshot.namespaces, policies: snapshot.networkPolicies };
    // The periodic re-plan hands the same objects again (the watch keeps an unchanged object's identity): that is
    // no news for policy, whose own resync repairs drift. Handing it on would cost a compile and plan per re-plan.
    const input = { node, cluster };
    if (this.policy !== undefined && samePolicyInput(this.policyInput, input)) return;
    this.policyInput = input;
    if (this.policy === undefined) {
      this.policy = new PolicyReconciler({
        node,
        logger: this.logger.child({ component: 'policy' }),
        iptablesBackend: this.iptablesBackend,
        bridgeName: this.config.cni.bridge,
        sourceBinding: { cniCacheDir: this.config.cni.cacheDir, network: state.cni.networkName },
        onInvalidPolicy: (key, problems) => {
          const [namespace = '', name = ''] = key.split('/');
          // Event messages are meant to be short (events.k8s.io caps its note at 1 kB): the first problems, then a count.
          const what = problems.slice(0, 3).map((p) => `${p.field}: ${p.message}`).join('; ') + (problems.length > 3 ? ` (and ${problems.length - 3} more)` : '');
          void this.reporter.event('Warning', 'PodrouteInvalidNetworkPolicy', `enforced as "isolate, allow nothing" on node ${this.nodeName}: ${what}`, {
            kind: 'NetworkPolicy',
            apiVersion: 'networking.k8s.io/v1',
            namespace,
            name,
          });
        },
      });
      this.policy.setCluster(cluster);
      void this.policy.whenSynced().then(() => {
        this.nodesChanged = true; // writes the conflist
        this.clusterLoop.markDirty();
      });
      this.policy.start(signal).catch((err: unknown) => {
        if (!signal.aborted) this.logger.error('policy reconciler stopped', { error: describeError(err) });
      });
    } else {
      this.policy.setCluster(cluster, node);
    }
  }

  /** The node is network-available once pods can start (the conflist) and the first routes are in the kernel. */
  private async reportNetworkAvailable(signal: AbortSignal): Promise<void> {
    if (this.networkReported || !this.cniWritten) return;
    await this.routes.waitForSync(signal);
    await this.reporter.markNetworkAvailable();
    this.networkReported = true;
  }

  /**
   * Hands the BFD companion the peers to run sessions with; its reports feed the BGP reconciler the peers to hold
   * down. Returns the warnings of the BFD plan.
   */
  private async applyBfdPeers(state: DesiredNodeState, signal: AbortSignal): Promise<string[]> {
    const { config } = this;
    const asked = config.bgp.bfd.enabled || [...config.bgp.peers, ...state.self.annotationPeers].some((p) => p.bfd?.enabled === true);
    if (!asked && this.bfd === undefined) return [];
    const connectedNetworks = await readConnectedNetworks(signal);
    const plan = planBfdPeers({ config, self: state.self, peers: state.bgp.peers, connectedNetworks });
    if (this.bfd === undefined) {
      const client = new BfdControlClient(config.bgp.bfd.controlSocket, this.logger.child({ component: 'bfd' }));
      client.on('sessions', (sessions: BfdSessionStatus[]) => {
        this.bfdJudging = this.bfdJudging.then(() => this.judgeBfdDowns(sessions));
      });
      client.start();
      this.bfd = client;
    }
    this.bfdGracefulRestartPeers = new Set(state.bgp.peers.filter((p) => p.gracefulRestart?.enabled === true).flatMap((p) => canonicalAddressText(p.address) ?? []));
    this.bfd.setPeers(plan.peers);
    return plan.warnings;
  }

  /** Feeds the BGP reconciler the peers BFD holds down, asking gobgpd for its sessions' states when a down is new. */
  private async judgeBfdDowns(sessions: BfdSessionStatus[]): Promise<void> {
    const input = { sessions, gracefulRestartPeers: this.bfdGracefulRestartPeers, establishedPeers: undefined as Set<string> | undefined, verdicts: this.bfdVerdicts };
    let plan = planBfdHoldDown(input);
    if (plan.needsSessionStates) {
      try {
        input.establishedPeers = await this.bgp.establishedPeers();
      } catch (err) {
        // Unknown: hold down, as without graceful restart (a blackhole avoided beats routes kept).
        this.logger.warn('BGP session states unknown: BFD downs held down', errorInfo(err));
        input.establishedPeers = new Set(sessions.map((s) => s.peer));
      }
      plan = planBfdHoldDown(input);
    }
    for (const peer of plan.leftToGracefulRestart) {
      this.logger.info('BFD down while the BGP session was already down: a control-plane restart, left to graceful restart', { peer });
    }
    this.bfdVerdicts = plan.verdicts;
    this.bgp.setHeldDown(plan.heldDown);
  }

  private reportWarnings(warnings: string[]): void {
    const current = new Set(warnings);
    for (const warning of current) {
      if (this.reportedWarnings.has(warning)) continue;
      this.logger.warn(warning);
      void this.reporter.event('Warning', 'PodrouteConfigProblem', warning);
    }
    this.reportedWarnings = current;
  }
}

/** Node objects keep their identity while unchanged: their parsed form (annotations, CIDRs) is kept with them. */
const parsedNodes = new WeakMap<Node, NodeInfo>();
function nodeInfoOf(node: Node): NodeInfo {
  let info = parsedNodes.get(node);
  if (info === undefined) {
    info = nodeInfoFromObject(node);
    parsedNodes.set(node, info);
  }
  return info;
}

interface PolicyInput {
  node: PolicyNode;
  cluster: ClusterState;
}

/** The same node and the very same objects in the same order: nothing for the policy compiler to look at. */
function samePolicyInput(a: PolicyInput | undefined, b: PolicyInput): boolean {
  if (a === undefined || JSON.stringify(a.node) !== JSON.stringify(b.node)) return false;
  const same = (x: readonly object[], y: readonly object[]): boolean => x === y || (x.length === y.length && x.every((v, i) => v === y[i]));
  return same(a.cluster.pods, b.cluster.pods) && same(a.cluster.namespaces, b.cluster.namespaces) && same(a.cluster.policies, b.cluster.policies);
}

/** Feeds a loop's passes (with their durations) to its health handle. */
function pushTo(health: ReconcilerHealth): PassListener {
  return (outcome, durationMs) => (outcome.ok ? health.heartbeat(durationMs) : health.failure(outcome.error, durationMs));
}

export async function runAgent(config: AgentConfig, logger: Logger): Promise<void> {
  const controller = new AbortController();
  const stop = (signalName: string): void => {
    logger.info('stopping', { signal: signalName });
    controller.abort();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await new Agent({ config, logger }).run(controller.signal);
}
