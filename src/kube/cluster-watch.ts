// Watches the Kubernetes objects the agent reacts to and keeps them in informer caches. Watch events only mark
// consumers dirty; consumers read whole snapshots (level-triggered), so a burst of events costs one reconcile.
//
// The caches hold slim copies: only the fields podroute reads (see SLIM_FIELDS below). Whole objects carry
// managedFields, annotations such as kubectl's last-applied-configuration, container specs and status
// conditions; on a 30,000-pod cluster that is most of the agent's memory. A change that leaves the slim copy
// as it was (a kubelet status heartbeat, a container restart count) is not a change to podroute: it moves the
// watch's resourceVersion on and wakes nobody.
//
// The API calls go through ./kube-api.ts (client-node's types only: its runtime costs ~60 MB of memory).
import type { Container, ContainerPort, EndpointSlice, KubeObject, Namespace, NetworkPolicy, Node, Pod, Service } from './wire.js';
import { sleep } from '../reconcile/loop.js';
import { DEFAULT_WATCH_TIMEOUT_S, KubeApi, KubeApiError, loadKubeConfig, type KubeConnectionConfig, type KubeList, type WatchEvent } from './kube-api.js';
import type { Logger } from '../observe/log.js';

export type WatchedKind = 'nodes' | 'pods' | 'namespaces' | 'networkpolicies' | 'services' | 'endpointslices';

export interface ClusterSnapshot {
  nodes: readonly Node[];
  pods: readonly Pod[];
  namespaces: readonly Namespace[];
  networkPolicies: readonly NetworkPolicy[];
  services: readonly Service[];
  endpointSlices: readonly EndpointSlice[];
}

export interface ClusterWatchOptions {
  kubeConfig: KubeConnectionConfig;
  logger: Logger;
  /** Which kinds to watch; the route agent alone needs only nodes. */
  kinds: WatchedKind[];
  /** Called after any change, with the kind that changed. Must not do I/O itself: mark dirty and return. */
  onChange: (kind: WatchedKind) => void;
  /** Counts for metrics: watch events received, relists (re-connections that list from scratch), errors. */
  onStat?: (kind: WatchedKind, what: 'event' | 'connect' | 'error') => void;
  /** Objects per list request (lists are paged so a big cluster is never held twice in memory). Default 500. */
  listPageSize?: number;
  /** Server-side duration of one watch request, in seconds (it then resumes from where it was). Default 300. */
  watchTimeoutSeconds?: number;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
const LIST_PAGE_SIZE = 500;

/** Annotations podroute reads (src/kube/node-info.ts, src/services/): every other annotation is dropped from cached Nodes and Services. */
export const PODROUTE_ANNOTATION_PREFIX = 'podroute.io/';

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

/**
 * Whole slim parts that many objects carry alike (the replicas of a Deployment have the same labels and container
 * ports) are shared as well: one frozen copy per distinct content, so a consumer that wrongly edited one would
 * fail loudly instead of changing other objects. Bounded like the strings: past MAX_SHARED distinct contents
 * (a cluster whose pods each have a label of their own) new ones are kept as they come.
 */
const MAX_SHARED = 5_000;
const shared = new Map<string, unknown>();
function share<T extends object>(value: T): T {
  const key = JSON.stringify(value);
  const known = shared.get(key);
  if (known !== undefined) return known as T;
  if (shared.size < MAX_SHARED) shared.set(key, deepFreeze(value));
  return value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** Copies only the listed keys that are present (absent stays absent: consumers test with ?. and ??). */
function pick<T extends object, K extends keyof T>(from: T | undefined, keys: readonly K[]): Pick<T, K> | undefined {
  if (from === undefined || from === null) return undefined;
  const out = {} as Pick<T, K>;
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k];
  return out;
}

type Meta = NonNullable<KubeObject['metadata']>;
/** The slim copies are built field by field; the wire types mark server-set fields read-only. */
type Writable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * `resourceVersion`: kept for the kinds podroute writes with it as a precondition (the allocator's Service status);
 * a pod's is never read, and 30,000 of them are memory for nothing.
 */
function slimMeta(meta: Meta | undefined, labels: boolean, resourceVersion = true): Writable<Meta> {
  const out: Writable<Meta> = { name: meta?.name ?? '' };
  if (meta?.namespace !== undefined) out.namespace = intern(meta.namespace);
  if (resourceVersion && meta?.resourceVersion !== undefined) out.resourceVersion = meta.resourceVersion;
  if (labels && meta?.labels !== undefined) out.labels = internRecord(meta.labels);
  return out;
}

/** Node: name, labels, podroute.io/* annotations, spec.podCIDR(s), status.addresses. */
export function slimNode(node: Node): Node {
  const metadata = slimMeta(node.metadata, true);
  const annotations = Object.entries(node.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(PODROUTE_ANNOTATION_PREFIX));
  if (annotations.length > 0) metadata.annotations = Object.fromEntries(annotations);
  const out: Writable<Node> = { metadata };
  const spec = pick(node.spec, ['podCIDR', 'podCIDRs']);
  if (spec !== undefined) out.spec = spec;
  if (node.status?.addresses !== undefined) out.status = { addresses: node.status.addresses.map((a) => ({ type: intern(a.type), address: a.address })) };
  return out;
}

/** Pod: name, namespace, labels, node, hostNetwork, container ports (named ports), phase and IPs. */
export function slimPod(pod: Pod): Pod {
  const metadata = slimMeta(pod.metadata, true, false);
  // Replicas share their label set (a node's or a namespace's labels name it: those are not shared).
  if (metadata.labels !== undefined) metadata.labels = share(metadata.labels);
  const out: Writable<Pod> = { metadata };
  const spec = pod.spec;
  if (spec !== undefined) {
    const slim: NonNullable<Pod['spec']> = { containers: share(slimContainers(spec.containers ?? [])) };
    if (spec.initContainers !== undefined) {
      const init = slimContainers(spec.initContainers);
      if (init.length > 0) slim.initContainers = share(init);
    }
    if (spec.nodeName !== undefined) slim.nodeName = intern(spec.nodeName);
    if (spec.hostNetwork !== undefined) slim.hostNetwork = spec.hostNetwork;
    out.spec = slim;
  }
  if (pod.status !== undefined) {
    const status: NonNullable<Pod['status']> = {};
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
function slimContainers(containers: Container[]): Container[] {
  return containers
    .filter((c) => (c.ports ?? []).length > 0)
    .map((c) => ({
      name: intern(c.name),
      ports: (c.ports ?? []).map((p) => {
        const port: ContainerPort = { containerPort: p.containerPort };
        if (p.name !== undefined) port.name = intern(p.name);
        if (p.protocol !== undefined) port.protocol = intern(p.protocol);
        return port;
      }),
    }));
}

/** Namespace: name and labels. */
export function slimNamespace(ns: Namespace): Namespace {
  return { metadata: slimMeta(ns.metadata, true) };
}

/** NetworkPolicy: name, namespace and the whole spec (the compiler validates all of it). */
export function slimNetworkPolicy(policy: NetworkPolicy): NetworkPolicy {
  const out: NetworkPolicy = { metadata: slimMeta(policy.metadata, false) };
  // Plain JSON: a listed policy is a generated model object with a slot for every absent field.
  if (policy.spec !== undefined) out.spec = JSON.parse(JSON.stringify(policy.spec)) as NetworkPolicy['spec'];
  return out;
}

/**
 * Service: what the LoadBalancer allocator and the advertisement planner read (src/services/): labels, podroute.io/*
 * annotations, the creation time (the older Service keeps a contested address), the addressing and traffic-policy
 * fields of the spec, and the load balancer status with its conditions. Ports, selectors and session affinity are
 * the service proxy's, not ours.
 */
export function slimService(service: Service): Service {
  const metadata = slimMeta(service.metadata, true);
  const annotations = Object.entries(service.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(PODROUTE_ANNOTATION_PREFIX));
  if (annotations.length > 0) metadata.annotations = Object.fromEntries(annotations);
  if (service.metadata?.creationTimestamp !== undefined) metadata.creationTimestamp = service.metadata.creationTimestamp;
  const out: Writable<Service> = { metadata };
  const spec = pick(service.spec, [
    'type',
    'loadBalancerClass',
    'loadBalancerIP',
    'externalIPs',
    'externalTrafficPolicy',
    'internalTrafficPolicy',
    'clusterIP',
    'clusterIPs',
    'ipFamilies',
    'ipFamilyPolicy',
  ]);
  if (spec !== undefined) {
    if (spec.type !== undefined) spec.type = intern(spec.type);
    out.spec = spec;
  }
  const status = pick(service.status, ['loadBalancer', 'conditions']);
  if (status !== undefined && Object.keys(status).length > 0) out.status = JSON.parse(JSON.stringify(status)) as Service['status'];
  return out;
}

/**
 * EndpointSlice: its Service (the kubernetes.io/service-name label), address type, and per endpoint the
 * addresses, node and conditions: which nodes have a ready local endpoint is all the advertisement needs.
 */
export function slimEndpointSlice(slice: EndpointSlice): EndpointSlice {
  const metadata = slimMeta(slice.metadata, true);
  return {
    metadata,
    addressType: intern(slice.addressType),
    endpoints: (slice.endpoints ?? []).map((e) => {
      const endpoint: Writable<EndpointSlice['endpoints'][number]> = { addresses: e.addresses };
      if (e.nodeName !== undefined) endpoint.nodeName = intern(e.nodeName);
      if (e.conditions !== undefined) endpoint.conditions = pick(e.conditions, ['ready', 'serving', 'terminating']);
      return endpoint;
    }),
  };
}

export const SLIM: Record<WatchedKind, (o: KubeObject) => KubeObject> = {
  // Each endpoint lists and watches one kind, so its objects are of that kind.
  nodes: (o) => slimNode(o as Node),
  pods: (o) => slimPod(o as Pod),
  namespaces: (o) => slimNamespace(o as Namespace),
  networkpolicies: (o) => slimNetworkPolicy(o as NetworkPolicy),
  services: (o) => slimService(o as Service),
  endpointslices: (o) => slimEndpointSlice(o as EndpointSlice),
};

/** Whether two slim copies say the same to podroute: deep equality, resourceVersion left out. */
export function sameContent(a: KubeObject, b: KubeObject): boolean {
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

type ListPage = KubeList<KubeObject>;
type Lister = (page: { limit: number; continue?: string; signal: AbortSignal }) => Promise<ListPage>;
type WatchFrom = (query: { resourceVersion: string; signal: AbortSignal }, onEvent: (event: WatchEvent<KubeObject>) => void) => Promise<void>;

/** How each kind is listed and watched (literal paths: the RBAC test reads them). */
function endpoints(api: KubeApi, timeoutSeconds: number): Record<WatchedKind, { listPage: Lister; watchFrom: WatchFrom }> {
  const watchOptions = (q: { resourceVersion: string; signal: AbortSignal }): { resourceVersion: string; signal: AbortSignal; allowWatchBookmarks: true; timeoutSeconds: number } => ({
    ...q,
    allowWatchBookmarks: true,
    timeoutSeconds,
  });
  return {
    nodes: {
      listPage: (page) => api.list('/api/v1/nodes', page),
      watchFrom: (q, onEvent) => api.watch('/api/v1/nodes', watchOptions(q), onEvent),
    },
    pods: {
      listPage: (page) => api.list('/api/v1/pods', page),
      watchFrom: (q, onEvent) => api.watch('/api/v1/pods', watchOptions(q), onEvent),
    },
    namespaces: {
      listPage: (page) => api.list('/api/v1/namespaces', page),
      watchFrom: (q, onEvent) => api.watch('/api/v1/namespaces', watchOptions(q), onEvent),
    },
    networkpolicies: {
      listPage: (page) => api.list('/apis/networking.k8s.io/v1/networkpolicies', page),
      watchFrom: (q, onEvent) => api.watch('/apis/networking.k8s.io/v1/networkpolicies', watchOptions(q), onEvent),
    },
    services: {
      listPage: (page) => api.list('/api/v1/services', page),
      watchFrom: (q, onEvent) => api.watch('/api/v1/services', watchOptions(q), onEvent),
    },
    endpointslices: {
      listPage: (page) => api.list('/apis/discovery.k8s.io/v1/endpointslices', page),
      watchFrom: (q, onEvent) => api.watch('/apis/discovery.k8s.io/v1/endpointslices', watchOptions(q), onEvent),
    },
  };
}

const keyOf = (o: KubeObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/**
 * Lists every page and returns the slim items with the list's resourceVersion. An item whose slim copy is the
 * cached one's is returned as the cached object itself: the cache then sees the same object and calls nobody,
 * and consumers keep object identity (their memos stay valid) across a relist.
 */
async function listAllPages(
  list: Lister,
  pageSize: number,
  signal: AbortSignal,
  slim: (o: KubeObject) => KubeObject,
  cached: (o: KubeObject) => KubeObject | undefined,
): Promise<{ items: KubeObject[]; resourceVersion: string | undefined }> {
  const items: KubeObject[] = [];
  let resourceVersion: string | undefined;
  let next: string | undefined;
  do {
    const page = await list({ limit: pageSize, signal, ...(next === undefined ? {} : { continue: next }) });
    // Every page of a paged list is the same snapshot: the first page's resourceVersion is the list's.
    resourceVersion ??= page.metadata.resourceVersion;
    for (const item of page.items) {
      const copy = slim(item);
      const known = cached(copy);
      if (known !== undefined && sameContent(known, copy)) {
        // Same content, newer resourceVersion (see apply): identity kept, precondition fresh.
        if (known.metadata !== undefined && copy.metadata?.resourceVersion !== undefined) (known.metadata as Writable<Meta>).resourceVersion = copy.metadata.resourceVersion;
        items.push(known);
      } else {
        items.push(copy);
      }
    }
    next = page.metadata.continue === '' ? undefined : page.metadata.continue;
  } while (next !== undefined);
  return { items, resourceVersion };
}

/** One kind's cache, kept by list-then-watch. */
interface Informer {
  readonly cache: Map<string, KubeObject>;
  /** The cache's objects as handed out by objects(), until the cache changes: unchanged kinds cost no copy. */
  items?: readonly KubeObject[] | undefined;
  /** Where the watch resumes from; undefined until listed and after a failure that calls for a relist. */
  resourceVersion: string | undefined;
}

export class ClusterWatch {
  private readonly informers = new Map<WatchedKind, Informer>();
  private readonly listed = new Set<WatchedKind>();
  private syncedWaiters: (() => void)[] = [];
  private readonly stopping = new AbortController();
  private api: KubeApi | undefined;
  private loops: Promise<void>[] = [];

  constructor(private readonly options: ClusterWatchOptions) {}

  start(signal: AbortSignal): void {
    const api = new KubeApi({ config: this.options.kubeConfig });
    this.api = api;
    const kinds = endpoints(api, this.options.watchTimeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_S);
    for (const kind of this.options.kinds) {
      const informer: Informer = { cache: new Map(), resourceVersion: undefined };
      this.informers.set(kind, informer);
      this.loops.push(this.run(kind, informer, kinds[kind]));
    }
    if (signal.aborted) void this.stop();
    else signal.addEventListener('abort', () => void this.stop(), { once: true });
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
    return {
      nodes: this.objects<Node>('nodes'),
      pods: this.objects<Pod>('pods'),
      namespaces: this.objects<Namespace>('namespaces'),
      networkPolicies: this.objects<NetworkPolicy>('networkpolicies'),
      services: this.objects<Service>('services'),
      endpointSlices: this.objects<EndpointSlice>('endpointslices'),
    };
  }

  /**
   * One kind's cached objects (the cache's objects). The same array until the kind's cache changes, so a consumer can
   * tell an unchanged kind by identity; it is never changed afterwards, and must not be changed by its holders.
   */
  objects<T extends KubeObject>(kind: WatchedKind): readonly T[] {
    const informer = this.informers.get(kind);
    if (informer === undefined) return [];
    informer.items ??= [...informer.cache.values()];
    return informer.items as readonly T[];
  }

  /** The resourceVersion each kind's watch is at (bookmarks keep it fresh on a quiet watch). For status and tests. */
  resourceVersions(): Partial<Record<WatchedKind, string>> {
    const out: Partial<Record<WatchedKind, string>> = {};
    for (const [kind, informer] of this.informers) if (informer.resourceVersion !== undefined) out[kind] = informer.resourceVersion;
    return out;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.loops);
    this.api?.close();
  }

  /**
   * List, then watch from the list's resourceVersion; a watch the server ends resumes where it was. 410 Gone
   * lists again at once; any other failure retries with back-off (resuming the watch if it was running). The
   * cache keeps the last known state meanwhile, so consumers keep the data plane as it is while the API server
   * is away.
   */
  private async run(kind: WatchedKind, informer: Informer, endpoint: { listPage: Lister; watchFrom: WatchFrom }): Promise<void> {
    const signal = this.stopping.signal;
    const slim = SLIM[kind];
    const cached = (o: KubeObject): KubeObject | undefined => informer.cache.get(keyOf(o));
    const pageSize = this.options.listPageSize ?? LIST_PAGE_SIZE;
    let backoffMs = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        if (informer.resourceVersion === undefined) {
          this.options.onStat?.(kind, 'connect');
          const listed = await listAllPages(endpoint.listPage, pageSize, signal, slim, cached);
          if (listed.resourceVersion === undefined) throw new KubeApiError('BAD_RESPONSE', `${kind}: the list has no resourceVersion`);
          this.replaceCache(kind, informer, listed.items);
          informer.resourceVersion = listed.resourceVersion;
          // The list completing is what makes the cache valid, even when it is empty.
          this.markListed(kind);
        }
        await endpoint.watchFrom({ resourceVersion: informer.resourceVersion, signal }, (event) => {
          informer.resourceVersion = this.apply(kind, informer, event, slim) ?? informer.resourceVersion;
        });
        backoffMs = RETRY_MIN_MS;
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof KubeApiError && err.code === 'RESOURCE_EXPIRED' && informer.resourceVersion !== undefined) {
          // The watch is too old to resume from: list again now. (A list's continue token gone stale is also a
          // 410; that one retries with back-off below, so a server that keeps refusing is not hammered.)
          this.options.logger.info('kubernetes watch expired; listing again', { kind });
          informer.resourceVersion = undefined;
          continue;
        }
        this.options.onStat?.(kind, 'error');
        if (!(err instanceof KubeApiError) || err.code === 'BAD_RESPONSE' || err.code === 'API_STATUS') informer.resourceVersion = undefined;
        this.options.logger.warn('kubernetes watch failed; retrying', { kind, retryInMs: backoffMs, error: describeError(err) });
        await sleep(backoffMs, signal);
        backoffMs = Math.min(backoffMs * 2, RETRY_MAX_MS);
      }
    }
  }

  /** Applies one watch event to the cache; returns the resourceVersion it carries. */
  private apply(kind: WatchedKind, informer: Informer, event: WatchEvent<KubeObject>, slim: (o: KubeObject) => KubeObject): string | undefined {
    const obj = event.object;
    if (typeof obj !== 'object' || obj === null) return undefined;
    const resourceVersion = obj.metadata?.resourceVersion;
    if (event.type === 'BOOKMARK') return resourceVersion;
    const copy = slim(obj);
    const key = keyOf(copy);
    const known = informer.cache.get(key);
    if (event.type === 'DELETED') {
      if (known === undefined) return resourceVersion;
      informer.cache.delete(key);
    } else {
      // A change podroute cannot see (status heartbeat, restart count) moves the resourceVersion on, nothing else.
      // The cached copy keeps its identity but takes the new resourceVersion: a write preconditioned on it (the
      // allocator's status patch) must not be refused forever for a change it never saw.
      if (known !== undefined && sameContent(known, copy)) {
        if (known.metadata !== undefined && resourceVersion !== undefined) (known.metadata as Writable<Meta>).resourceVersion = resourceVersion;
        return resourceVersion;
      }
      informer.cache.set(key, copy);
    }
    informer.items = undefined;
    this.changed(kind);
    return resourceVersion;
  }

  /** A relist: the listed items replace the cache; consumers hear of it if anything differs. */
  private replaceCache(kind: WatchedKind, informer: Informer, items: KubeObject[]): void {
    const next = new Map<string, KubeObject>();
    for (const item of items) next.set(keyOf(item), item);
    let differences = 0;
    for (const [key, item] of next) if (informer.cache.get(key) !== item) differences++;
    for (const key of informer.cache.keys()) if (!next.has(key)) differences++;
    informer.cache.clear();
    for (const [key, item] of next) informer.cache.set(key, item);
    informer.items = undefined;
    for (let i = 0; i < differences; i++) this.options.onStat?.(kind, 'event');
  }

  private changed(kind: WatchedKind): void {
    this.options.onStat?.(kind, 'event');
    this.options.onChange(kind);
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

/** Loads a kubeconfig file, or the in-cluster service account when no file is given (see ./kube-api.ts). */
export { loadKubeConfig };
export type { KubeConnectionConfig };
