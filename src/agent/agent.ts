// The node agent: wires the watchers to the reconcilers. It owns no outside resource itself; each reconciler
// owns its own (gobgpd state, kernel routes of our protocol, our nat chain and sets, the CNI conflist).
//
//   Kubernetes watches ──► desired node state (pure) ──► BGP reconciler, masquerade, CNI conflist
//   gobgpd learned table ──► route selection (pure) ──► route reconciler
//
// Both loops are level-triggered: events only mark them dirty; each pass reads whole snapshots.
import { readFile } from 'node:fs/promises';
import { BgpReconciler, type LearnedTable } from '../bgp/bgp-reconciler.js';
import { GobgpClient } from '../bgp/gobgp-client.js';
import type { LearnedPath } from '../bgp/types.js';
import type { AgentConfig } from '../config/agent-config.js';
import { ClusterWatch, describeError, loadKubeConfig, type ClusterSnapshot, type WatchedKind } from '../kube/cluster-watch.js';
import { nodeInfoFromObject } from '../kube/node-info.js';
import { NodeReporter } from '../kube/node-reporter.js';
import { MasqueradeReconciler } from '../nat/masquerade.js';
import { writeCniConfig } from '../node/cni.js';
import { applySysctls } from '../node/sysctl.js';
import { PolicyReconciler } from '../policy/policy-reconciler.js';
import { AgentObserver } from '../observe/agent-observer.js';
import { PeerEventReporter } from '../observe/peer-events.js';
import type { ReconcilerHealth } from '../observe/health.js';
import type { Logger } from '../observe/log.js';
import { RouteReconciler } from '../routes/route-reconciler.js';
import { selectRoutes, type RejectedPath } from '../routes/select-routes.js';
import { readConnectedNetworks } from './connected-networks.js';
import { cidrsOverlap, planDesiredState, type DesiredNodeState } from './desired-state.js';
import { DirtySignal, settle, sleep } from './dirty-signal.js';

/** Connected networks change rarely (an address added by hand, a link renumbered): re-read them this often. */
const CONNECTED_REFRESH_MS = 10_000;
const RETRY_MS = 2_000;
/** A burst of learned paths has ended when none arrived for this long; a pass waits at most ROUTE_BURST_MAX_MS. */
const ROUTE_BURST_QUIET_MS = 50;
const ROUTE_BURST_MAX_MS = 500;

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
}

export class Agent {
  private readonly config: AgentConfig;
  private readonly nodeName: string;
  private readonly logger: Logger;
  private readonly clusterDirty = new DirtySignal();
  private readonly routesDirty = new DirtySignal();
  private desired: DesiredNodeState | undefined;
  private connectedNetworks: string[] = [];
  private connectedReadAt = 0;
  private reportedWarnings = new Set<string>();
  private reportedRejections = new Set<string>();

  // Created in start(); the agent is one-shot.
  private watch!: ClusterWatch;
  private reporter!: NodeReporter;
  private gobgp!: GobgpClient;
  private bgp!: BgpReconciler;
  private routes!: RouteReconciler;
  private masquerade: MasqueradeReconciler | undefined;
  private observer!: AgentObserver;
  private clusterHealth!: ReconcilerHealth;
  private routeSelectionHealth!: ReconcilerHealth;
  private policy: PolicyReconciler | undefined;

  constructor(options: AgentOptions) {
    this.config = options.config;
    if (options.config.nodeName === undefined) throw new Error('Agent: config.nodeName is required');
    this.nodeName = options.config.nodeName;
    this.logger = options.logger;
  }

  /** Runs until the signal aborts. Stopping leaves the data plane as it is (routes, rules, gobgpd state). */
  async run(signal: AbortSignal): Promise<void> {
    const { config, logger } = this;
    // Forwarding and bridge netfilter first: without them nothing else is worth doing (and the error says why).
    await applySysctls({ logger });

    const kubeConfig = loadKubeConfig(config.kubeconfig);
    this.reporter = new NodeReporter({ kubeConfig, nodeName: this.nodeName, logger });
    const kinds: WatchedKind[] = config.policy.enabled ? ['nodes', 'pods', 'namespaces', 'networkpolicies'] : ['nodes'];
    this.watch = new ClusterWatch({ kubeConfig, logger, kinds, onChange: () => this.clusterDirty.set(), onStat: (kind, what) => this.observer.watchStat(kind, what) });
    this.gobgp = new GobgpClient({ target: config.gobgp.target, callTimeoutMs: config.gobgp.callTimeoutSeconds * 1000, logger });
    this.bgp = new BgpReconciler({ client: this.gobgp, logger: logger.child({ component: 'bgp' }) });
    this.routes = new RouteReconciler({
      protocol: config.routes.protocol,
      logger: logger.child({ component: 'routes' }),
      resyncIntervalMs: config.routes.resyncSeconds * 1000,
    });
    this.bgp.onLearnedPaths(() => this.routesDirty.set());
    this.observer = new AgentObserver({
      address: config.metrics.address,
      nodeName: this.nodeName,
      logger: logger.child({ component: 'observe' }),
      gobgp: this.gobgp,
      bgp: () => this.bgp,
      routes: () => this.routes,
      masquerade: config.masquerade.enabled ? () => this.masquerade : undefined,
      policy: config.policy.enabled ? () => this.policy : undefined,
      resyncMs: { routes: config.routes.resyncSeconds * 1000 },
    });
    this.clusterHealth = this.observer.loop('cluster', { resyncMs: config.routes.resyncSeconds * 1000 });
    this.routeSelectionHealth = this.observer.loop('route-selection', { resyncMs: CONNECTED_REFRESH_MS });
    await this.observer.start(); // fails (ObserveServerError BIND_FAILED) before any loop starts

    this.watch.start(signal);
    const peerEvents = new PeerEventReporter({
      listPeers: () => this.gobgp.listPeers(),
      post: (event) => this.reporter.event(event.type, event.reason, event.message),
    });
    const running: Promise<unknown>[] = [
      this.bgp.start(signal),
      this.routes.start(signal),
      this.clusterLoop(signal),
      this.routeLoop(signal),
      peerEvents.run(signal),
    ];
    logger.info('podroute agent started', { node: this.nodeName, gobgp: config.gobgp.target, routeProtocol: config.routes.protocol });
    await Promise.all(running.map((p) => p.catch((err: unknown) => {
      if (!signal.aborted) logger.error('agent loop failed', { error: describeError(err) });
    })));
    this.gobgp.close();
    await this.observer.close();
    logger.info('podroute agent stopped; routes, rules and gobgpd state are left in place');
  }

  /** Recomputes the desired node state whenever the cluster (or a peer's password file) may have changed. */
  private async clusterLoop(signal: AbortSignal): Promise<void> {
    // A stop while the API server was never reached must not wait for a first list that will not come.
    await Promise.race([this.watch.synced(), new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    let retry = false;
    while (!signal.aborted) {
      // Re-plan periodically too: password files are mounted Secrets that change without any watch event.
      await this.clusterDirty.wait(retry ? RETRY_MS : this.config.routes.resyncSeconds * 1000, signal);
      if (signal.aborted) break;
      const passStart = performance.now();
      try {
        await this.planAndApplyNodeState(signal);
        retry = false;
        this.clusterHealth.heartbeat(performance.now() - passStart);
      } catch (err) {
        retry = true;
        this.clusterHealth.failure(err, performance.now() - passStart);
        this.logger.error('applying the node state failed; retrying', { error: describeError(err) });
      }
    }
  }

  private async planAndApplyNodeState(signal: AbortSignal): Promise<void> {
    const snapshot = this.watch.snapshot();
    const nodes = snapshot.nodes.map(nodeInfoFromObject);
    const self = nodes.find((n) => n.name === this.nodeName);
    const secrets = await readPasswordFiles([...this.config.bgp.peers, ...(self?.annotationPeers ?? [])].map((p) => p.passwordFile));
    const result = planDesiredState({ config: this.config, nodeName: this.nodeName, nodes, secrets });
    if (!result.ok) {
      // Keep everything as it is: a node that vanished from the API (or an API glitch) must not tear down routes.
      this.logger.warn('waiting for this node in the cluster; nothing is changed meanwhile', { reason: result.reason });
      return;
    }
    const state = result.state;
    this.desired = state;
    this.reportWarnings(state.warnings);

    const wrote = await writeCniConfig({ confDir: this.config.cni.confDir, input: state.cni });
    if (wrote) this.logger.info('CNI network configuration written', { dir: this.config.cni.confDir, podCIDRs: state.cni.podCIDRs });

    this.bgp.setDesired(state.bgp);
    const masqueradeConfig = {
      clusterRanges: state.masquerade.clusterRanges,
      nonMasqueradeCIDRs: state.masquerade.nonMasqueradeCIDRs,
      nodeAddresses: nodes.flatMap((n) => n.internalIPs),
    };
    if (this.config.masquerade.enabled) {
      if (this.masquerade === undefined) {
        this.masquerade = new MasqueradeReconciler({ ...masqueradeConfig, logger: this.logger.child({ component: 'nat' }) });
        this.masquerade.start(signal).catch((err: unknown) => {
          if (!signal.aborted) this.logger.error('masquerade reconciler stopped', { error: describeError(err) });
        });
      } else {
        this.masquerade.setDesired(masqueradeConfig);
      }
    }
    if (this.config.policy.enabled) this.applyPolicy(snapshot, state, signal);
    this.routesDirty.set(); // the selection context (nodes, ranges) may have changed
  }

  /** The policy reconciler gets whole snapshots, only once every kind has been listed (a partial one could open). */
  private applyPolicy(snapshot: ClusterSnapshot, state: DesiredNodeState, signal: AbortSignal): void {
    const node = { name: state.self.name, addresses: state.self.internalIPs, podCIDRs: state.self.podCIDRs };
    const cluster = { pods: [...snapshot.pods], namespaces: [...snapshot.namespaces], policies: [...snapshot.networkPolicies] };
    if (this.policy === undefined) {
      this.policy = new PolicyReconciler({ node, logger: this.logger.child({ component: 'policy' }), bridgeName: this.config.cni.bridge });
      this.policy.setCluster(cluster);
      this.policy.start(signal).catch((err: unknown) => {
        if (!signal.aborted) this.logger.error('policy reconciler stopped', { error: describeError(err) });
      });
    } else {
      this.policy.setCluster(cluster, node);
    }
  }

  /** Turns the learned table into kernel routes. Waits for a complete table: a partial one would delete routes. */
  private async routeLoop(signal: AbortSignal): Promise<void> {
    let networkReported = false;
    while (!signal.aborted) {
      await this.routesDirty.wait(CONNECTED_REFRESH_MS, signal);
      // Selection reads the whole table: let a burst of learned paths land first (bounded, so routes still flow).
      await settle(this.routesDirty, ROUTE_BURST_QUIET_MS, ROUTE_BURST_MAX_MS, signal);
      if (signal.aborted) break;
      const desired = this.desired;
      const table = this.bgp.learnedTable();
      if (desired === undefined || !table.synced) continue;
      const passStart = performance.now();
      try {
        if (Date.now() - this.connectedReadAt >= CONNECTED_REFRESH_MS) {
          this.connectedNetworks = await readConnectedNetworks(signal);
          this.connectedReadAt = Date.now();
        }
        const selection = selectRoutes(flattenTable(table), { ...desired.routeSelection, onLinkNetworks: this.connectedNetworks });
        // Two nodes claim these: installing either would hijack the other's pods.
        const routes = selection.routes.filter((r) => !desired.routeSelection.conflictedCIDRs.some((c) => cidrsOverlap(c, r.prefix)));
        this.reportRejections(selection.rejected);
        this.routes.setDesired(routes);
        if (!networkReported) {
          await this.routes.waitForSync(signal);
          await this.reporter.markNetworkAvailable();
          networkReported = true;
        }
        this.routeSelectionHealth.heartbeat(performance.now() - passStart);
      } catch (err) {
        if (signal.aborted) break;
        this.routeSelectionHealth.failure(err, performance.now() - passStart);
        this.logger.error('route selection failed; retrying', { error: describeError(err) });
        await sleep(RETRY_MS, signal);
        this.routesDirty.set();
      }
    }
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

  private reportRejections(rejected: RejectedPath[]): void {
    const current = new Set(rejected.map((r) => `${r.prefix} from ${r.neighborIp ?? 'local'} via ${r.nextHop}: ${r.reason}`));
    for (const line of current) {
      if (this.reportedRejections.has(line)) continue;
      this.logger.warn('learned path not installed', { path: line });
      void this.reporter.event('Warning', 'PodrouteRouteRejected', `learned path not installed: ${line}`);
    }
    this.reportedRejections = current;
  }
}

function flattenTable(table: LearnedTable): LearnedPath[] {
  const paths: LearnedPath[] = [];
  for (const list of table.paths.values()) paths.push(...list);
  return paths;
}

/** Reads each distinct password file; unreadable ones are left out (their peers are skipped, with a warning). */
async function readPasswordFiles(files: (string | undefined)[]): Promise<Map<string, string>> {
  const secrets = new Map<string, string>();
  for (const file of new Set(files)) {
    if (file === undefined) continue;
    try {
      secrets.set(file, (await readFile(file, 'utf8')).trim());
    } catch {
      // planDesiredState reports the peer as skipped; the error text could contain nothing more useful.
    }
  }
  return secrets;
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
