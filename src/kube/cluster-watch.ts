// Watches the Kubernetes objects the agent reacts to and keeps them in informer caches. Watch events only mark
// consumers dirty; consumers read whole snapshots (level-triggered), so a burst of events costs one reconcile.
import {
  CoreV1Api,
  KubeConfig,
  NetworkingV1Api,
  makeInformer,
  type Informer,
  type KubernetesObject,
  type ObjectCache,
  type V1Namespace,
  type V1NetworkPolicy,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from '../observe/log.js';

export type WatchedKind = 'nodes' | 'pods' | 'namespaces' | 'networkpolicies';

export interface ClusterSnapshot {
  nodes: readonly V1Node[];
  pods: readonly V1Pod[];
  namespaces: readonly V1Namespace[];
  networkPolicies: readonly V1NetworkPolicy[];
}

export interface ClusterWatchOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** Which kinds to watch; the route agent alone needs only nodes. */
  kinds: WatchedKind[];
  /** Called after any change, with the kind that changed. Must not do I/O itself: mark dirty and return. */
  onChange: (kind: WatchedKind) => void;
  /** Counts for metrics: watch events received, relists (re-connections that list from scratch), errors. */
  onStat?: (kind: WatchedKind, what: 'event' | 'connect' | 'error') => void;
}

type CachedInformer<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

export class ClusterWatch {
  private readonly informers = new Map<WatchedKind, CachedInformer<KubernetesObject>>();
  private readonly listed = new Set<WatchedKind>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private syncedWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(private readonly options: ClusterWatchOptions) {}

  start(signal: AbortSignal): void {
    const core = this.options.kubeConfig.makeApiClient(CoreV1Api);
    const networking = this.options.kubeConfig.makeApiClient(NetworkingV1Api);
    const listers: Record<WatchedKind, { path: string; list: () => Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }> }> = {
      nodes: { path: '/api/v1/nodes', list: () => core.listNode() },
      pods: { path: '/api/v1/pods', list: () => core.listPodForAllNamespaces() },
      namespaces: { path: '/api/v1/namespaces', list: () => core.listNamespace() },
      networkpolicies: {
        path: '/apis/networking.k8s.io/v1/networkpolicies',
        list: () => networking.listNetworkPolicyForAllNamespaces(),
      },
    };
    for (const kind of this.options.kinds) {
      const { path, list } = listers[kind];
      let backoffMs = RETRY_MIN_MS;
      const informer = makeInformer(this.options.kubeConfig, path, async () => {
        const result = await list();
        backoffMs = RETRY_MIN_MS;
        // The list completing is what makes the cache valid, even when it is empty (no add events then).
        queueMicrotask(() => this.markListed(kind));
        return result;
      });
      this.informers.set(kind, informer);
      const changed = (): void => {
        this.options.onStat?.(kind, 'event');
        this.options.onChange(kind);
      };
      informer.on('add', changed);
      informer.on('update', changed);
      informer.on('delete', changed);
      informer.on('connect', () => this.options.onStat?.(kind, 'connect'));
      informer.on('error', (err: unknown) => {
        // client-node's informer stops on errors; restart it with back-off. The caches keep the last known
        // state meanwhile, so consumers keep the data plane as it is while the API server is away.
        this.options.onStat?.(kind, 'error');
        if (this.stopped) return;
        this.options.logger.warn('kubernetes watch failed; retrying', { kind, retryInMs: backoffMs, error: describeError(err) });
        const timer = setTimeout(() => {
          this.retryTimers.delete(timer);
          if (this.stopped) return;
          informer.start().catch((e: unknown) => this.options.logger.warn('kubernetes watch restart failed', { kind, error: describeError(e) }));
        }, backoffMs);
        this.retryTimers.add(timer);
        backoffMs = Math.min(backoffMs * 2, RETRY_MAX_MS);
      });
      informer.start().catch((err: unknown) => this.options.logger.warn('kubernetes watch start failed', { kind, error: describeError(err) }));
    }
    signal.addEventListener('abort', () => void this.stop(), { once: true });
  }

  /** Resolves once every watched kind has been listed once (caches are then authoritative). */
  synced(): Promise<void> {
    if (this.options.kinds.every((k) => this.listed.has(k))) return Promise.resolve();
    return new Promise((resolve) => this.syncedWaiters.push(resolve));
  }

  isSynced(): boolean {
    return this.options.kinds.every((k) => this.listed.has(k));
  }

  snapshot(): ClusterSnapshot {
    const items = <T extends KubernetesObject>(kind: WatchedKind): T[] => [...((this.informers.get(kind)?.list() ?? []) as T[])];
    return {
      nodes: items<V1Node>('nodes'),
      pods: items<V1Pod>('pods'),
      namespaces: items<V1Namespace>('namespaces'),
      networkPolicies: items<V1NetworkPolicy>('networkpolicies'),
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
  }

  private markListed(kind: WatchedKind): void {
    this.listed.add(kind);
    this.options.onChange(kind);
    if (this.isSynced()) {
      const waiters = this.syncedWaiters;
      this.syncedWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}

export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; message?: unknown; statusCode?: unknown };
    for (const field of [e.message, e.code, e.statusCode]) {
      if (typeof field === 'string' || typeof field === 'number') return String(field);
    }
    return JSON.stringify(err);
  }
  return String(err);
}

/** Loads a kubeconfig file, or the in-cluster service account when no file is given. */
export function loadKubeConfig(file: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (file !== undefined) kc.loadFromFile(file);
  else kc.loadFromCluster();
  return kc;
}
