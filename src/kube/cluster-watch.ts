// Watches the Kubernetes objects the agent reacts to and keeps them in informer caches. Watch events only mark
// consumers dirty; consumers read whole snapshots (level-triggered), so a burst of events costs one reconcile.
//
// The caches hold slim copies: only the fields podroute reads (see SLIM_FIELDS below). Whole objects carry
// managedFields, annotations such as kubectl's last-applied-configuration, container specs and status
// conditions; on a 30,000-pod cluster that is most of the agent's memory. A change that leaves the slim copy
// as it was (a kubelet status heartbeat, a container restart count) is not a change to podroute: it moves the
// watch's resourceVersion on and wakes nobody.
import {
  CoreV1Api,
  KubeConfig,
  ListWatch,
  NetworkingV1Api,
  Watch,
  type KubernetesObject,
  type V1Container,
  type V1ContainerPort,
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
  /** Objects per list request (lists are paged so a big cluster is never held twice in memory). Default 500. */
  listPageSize?: number;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
const LIST_PAGE_SIZE = 500;

/** Annotations podroute reads (src/kube/node-info.ts): every other annotation is dropped from cached Nodes. */
export const NODE_ANNOTATION_PREFIX = 'podroute.io/';

// ---- slim copies (pure) -----------------------------------------------------------------------------------

/**
 * Repeated short values (namespaces, node names, label keys and values, phases, port names) share one string.
 * Bounded: past MAX_INTERNED distinct values new ones are kept as they come (no growth with churn of unique
 * values such as pod-template hashes).
 */
const MAX_INTERNED = 50_000;
const interned = new Map<string, string>();
function intern(value: string): string;
function intern(value: string | undefined): string | undefined;
function intern(value: string | undefined): string | undefined {
  if (value === undefined || value.length > 64) return value;
  const known = interned.get(value);
  if (known !== undefined) return known;
  if (interned.size < MAX_INTERNED) interned.set(value, value);
  return value;
}

function internRecord(record: Record<string, string> | undefined): Record<string, string> | undefined {
  if (record === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(record)) out[intern(k)] = intern(v);
  return out;
}

/** Copies only the listed keys that are present (absent stays absent: consumers test with ?. and ??). */
function pick<T extends object, K extends keyof T>(from: T | undefined, keys: readonly K[]): Pick<T, K> | undefined {
  if (from === undefined || from === null) return undefined;
  const out = {} as Pick<T, K>;
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k];
  return out;
}

type Meta = NonNullable<KubernetesObject['metadata']>;

function slimMeta(meta: Meta | undefined, labels: boolean): Meta {
  const out: Meta = { name: meta?.name ?? '' };
  if (meta?.namespace !== undefined) out.namespace = intern(meta.namespace);
  if (meta?.resourceVersion !== undefined) out.resourceVersion = meta.resourceVersion;
  if (labels && meta?.labels !== undefined) out.labels = internRecord(meta.labels);
  return out;
}

/** Node: name, labels, podroute.io/* annotations, spec.podCIDR(s), status.addresses. */
export function slimNode(node: V1Node): V1Node {
  const metadata = slimMeta(node.metadata, true);
  const annotations = Object.entries(node.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(NODE_ANNOTATION_PREFIX));
  if (annotations.length > 0) metadata.annotations = Object.fromEntries(annotations);
  const out: V1Node = { metadata };
  const spec = pick(node.spec, ['podCIDR', 'podCIDRs']);
  if (spec !== undefined) out.spec = spec;
  if (node.status?.addresses !== undefined) out.status = { addresses: node.status.addresses.map((a) => ({ type: intern(a.type), address: a.address })) };
  return out;
}

/** Pod: name, namespace, labels, node, hostNetwork, container ports (named ports), phase and IPs. */
export function slimPod(pod: V1Pod): V1Pod {
  const out: V1Pod = { metadata: slimMeta(pod.metadata, true) };
  const spec = pod.spec;
  if (spec !== undefined) {
    const slim: NonNullable<V1Pod['spec']> = { containers: slimContainers(spec.containers ?? []) };
    if (spec.initContainers !== undefined) {
      const init = slimContainers(spec.initContainers);
      if (init.length > 0) slim.initContainers = init;
    }
    if (spec.nodeName !== undefined) slim.nodeName = intern(spec.nodeName);
    if (spec.hostNetwork !== undefined) slim.hostNetwork = spec.hostNetwork;
    out.spec = slim;
  }
  if (pod.status !== undefined) {
    const status: NonNullable<V1Pod['status']> = {};
    if (pod.status.phase !== undefined) status.phase = intern(pod.status.phase);
    if (pod.status.podIP !== undefined) status.podIP = pod.status.podIP;
    if (pod.status.podIPs !== undefined) {
      // The first of podIPs is podIP: share the string.
      status.podIPs = pod.status.podIPs.map((p) => ({ ip: p.ip === status.podIP ? status.podIP : p.ip }));
    }
    out.status = status;
  }
  return out;
}

/** Containers that declare ports, with only their name and ports (named ports resolve per pod). */
function slimContainers(containers: V1Container[]): V1Container[] {
  return containers
    .filter((c) => (c.ports ?? []).length > 0)
    .map((c) => ({
      name: intern(c.name),
      ports: (c.ports ?? []).map((p) => {
        const port: V1ContainerPort = { containerPort: p.containerPort };
        if (p.name !== undefined) port.name = intern(p.name);
        if (p.protocol !== undefined) port.protocol = intern(p.protocol);
        return port;
      }),
    }));
}

/** Namespace: name and labels. */
export function slimNamespace(ns: V1Namespace): V1Namespace {
  return { metadata: slimMeta(ns.metadata, true) };
}

/** NetworkPolicy: name, namespace and the whole spec (the compiler validates all of it). */
export function slimNetworkPolicy(policy: V1NetworkPolicy): V1NetworkPolicy {
  const out: V1NetworkPolicy = { metadata: slimMeta(policy.metadata, false) };
  // Plain JSON: a listed policy is a generated model object with a slot for every absent field.
  if (policy.spec !== undefined) out.spec = JSON.parse(JSON.stringify(policy.spec)) as V1NetworkPolicy['spec'];
  return out;
}

export const SLIM: Record<WatchedKind, (o: KubernetesObject) => KubernetesObject> = {
  nodes: (o) => slimNode(o),
  pods: (o) => slimPod(o),
  namespaces: (o) => slimNamespace(o),
  networkpolicies: (o) => slimNetworkPolicy(o),
};

/** Whether two slim copies say the same to podroute: deep equality, resourceVersion left out. */
export function sameContent(a: KubernetesObject, b: KubernetesObject): boolean {
  const { resourceVersion: _a, ...metaA } = a.metadata ?? {};
  const { resourceVersion: _b, ...metaB } = b.metadata ?? {};
  return deepEqual({ ...a, metadata: metaA }, { ...b, metadata: metaB });
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

// ---- the watch --------------------------------------------------------------------------------------------

type ListPage = { items: KubernetesObject[]; metadata?: { resourceVersion?: string; _continue?: string } };
type Lister = (page: { limit: number; _continue?: string }) => Promise<ListPage>;
type WatchCallback = (phase: string, apiObj: any, watchObj?: any) => void; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * client-node's Watch, with bookmarks asked for (a quiet watch keeps a fresh resourceVersion, so a reconnect
 * resumes instead of relisting) and every object made slim before the informer caches it. A modification that
 * leaves the slim copy unchanged is handed on as a BOOKMARK: the informer moves its resourceVersion and calls
 * nobody.
 */
class SlimWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly slim: (o: KubernetesObject) => KubernetesObject,
    private readonly cached: (o: KubernetesObject) => KubernetesObject | undefined,
  ) {
    super(config);
  }

  override watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: WatchCallback, done: (err: unknown) => void): Promise<AbortController> {
    const slimmed: WatchCallback = (phase, obj: KubernetesObject | undefined) => {
      if ((phase !== 'ADDED' && phase !== 'MODIFIED' && phase !== 'DELETED') || typeof obj !== 'object' || obj === null) {
        callback(phase, obj);
        return;
      }
      const slim = this.slim(obj);
      const known = phase === 'DELETED' ? undefined : this.cached(slim);
      if (known !== undefined && sameContent(known, slim)) callback('BOOKMARK', { metadata: { resourceVersion: slim.metadata?.resourceVersion } });
      else callback(phase, slim);
    };
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true }, slimmed, done);
  }
}

/**
 * Lists every page and returns the slim items with the list's resourceVersion. An item whose slim copy is the
 * cached one's is returned as the cached object itself: the informer then sees the same version and calls
 * nobody, and consumers keep object identity (their memos stay valid) across a relist.
 */
async function listAllPages(
  list: Lister,
  pageSize: number,
  slim: (o: KubernetesObject) => KubernetesObject,
  cached: (o: KubernetesObject) => KubernetesObject | undefined,
): Promise<{ items: KubernetesObject[]; metadata: { resourceVersion?: string } }> {
  const items: KubernetesObject[] = [];
  let resourceVersion: string | undefined;
  let next: string | undefined;
  do {
    const page = await list({ limit: pageSize, ...(next === undefined ? {} : { _continue: next }) });
    // Every page of a paged list is the same snapshot: the first page's resourceVersion is the list's.
    resourceVersion ??= page.metadata?.resourceVersion;
    for (const item of page.items) {
      const copy = slim(item);
      const known = cached(copy);
      items.push(known !== undefined && sameContent(known, copy) ? known : copy);
    }
    next = page.metadata?._continue === '' ? undefined : page.metadata?._continue;
  } while (next !== undefined);
  return { items, metadata: { resourceVersion } };
}

export class ClusterWatch {
  private readonly informers = new Map<WatchedKind, ListWatch<KubernetesObject>>();
  private readonly listed = new Set<WatchedKind>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private syncedWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(private readonly options: ClusterWatchOptions) {}

  start(signal: AbortSignal): void {
    const core = this.options.kubeConfig.makeApiClient(CoreV1Api);
    const networking = this.options.kubeConfig.makeApiClient(NetworkingV1Api);
    const listers: Record<WatchedKind, { path: string; list: Lister }> = {
      nodes: { path: '/api/v1/nodes', list: (page) => core.listNode(page) },
      pods: { path: '/api/v1/pods', list: (page) => core.listPodForAllNamespaces(page) },
      namespaces: { path: '/api/v1/namespaces', list: (page) => core.listNamespace(page) },
      networkpolicies: { path: '/apis/networking.k8s.io/v1/networkpolicies', list: (page) => networking.listNetworkPolicyForAllNamespaces(page) },
    };
    const pageSize = this.options.listPageSize ?? LIST_PAGE_SIZE;
    for (const kind of this.options.kinds) {
      const { path, list } = listers[kind];
      const slim = SLIM[kind];
      let backoffMs = RETRY_MIN_MS;
      const cached = (o: KubernetesObject): KubernetesObject | undefined => informer.get(o.metadata?.name ?? '', o.metadata?.namespace);
      const informer: ListWatch<KubernetesObject> = new ListWatch(
        path,
        new SlimWatch(this.options.kubeConfig, slim, cached),
        async () => {
          const result = await listAllPages(list, pageSize, slim, cached);
          backoffMs = RETRY_MIN_MS;
          // The list completing is what makes the cache valid, even when it is empty (no add events then).
          queueMicrotask(() => this.markListed(kind));
          return result;
        },
        false,
      );
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
