// The lab's stand-in for kube-controller-manager's EndpointSlice controller, pure part: from a Service and the
// Pods of its namespace, the discovery.k8s.io/v1 EndpointSlices the real controller would keep, and the writes
// that turn the slices that exist into those. The thin loop is endpoint-slice-controller.ts.
// Semantics follow pkg/controller/endpointslice (Kubernetes 1.30): one slice set per address type, pods grouped
// by their resolved ports, terminating pods kept with ready=false, a placeholder slice when nothing matches.
import type { ObjectMeta as StoredObjectMeta } from '../apiserver/store.js';
import { familyOf, ipVersion } from '../../routes/ip-prefix.js';

/** The label the real controller sets on the slices it owns; other managers' slices are never touched. */
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY_CONTROLLER = 'endpointslice-controller.k8s.io';
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
/** --max-endpoints-per-slice default. */
export const MAX_ENDPOINTS_PER_SLICE = 100;

export type AddressType = 'IPv4' | 'IPv6';

/** The lab API server's object metadata, with the owner references the controller sets. */
export interface ObjectMeta extends StoredObjectMeta {
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ServicePort {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
  nodePort?: number;
  appProtocol?: string;
}

export interface Service {
  metadata: ObjectMeta;
  spec?: {
    type?: string;
    selector?: Record<string, string>;
    clusterIP?: string;
    clusterIPs?: string[];
    ipFamilies?: string[];
    ports?: ServicePort[];
    publishNotReadyAddresses?: boolean;
    externalIPs?: string[];
    externalTrafficPolicy?: string;
    internalTrafficPolicy?: string;
  };
  status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } };
}

export interface Pod {
  metadata: ObjectMeta;
  spec?: {
    nodeName?: string;
    hostname?: string;
    subdomain?: string;
    containers?: { name: string; ports?: { name?: string; containerPort: number; protocol?: string }[] }[];
  };
  status?: { phase?: string; podIP?: string; podIPs?: { ip: string }[]; conditions?: { type: string; status: string }[] };
}

export interface Node {
  metadata: ObjectMeta;
}

export interface EndpointConditions {
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface Endpoint {
  addresses: string[];
  conditions: EndpointConditions;
  hostname?: string;
  targetRef: { kind: 'Pod'; namespace: string; name: string; uid: string };
  nodeName?: string;
  zone?: string;
}

export interface EndpointPort {
  name: string;
  port: number;
  protocol: string;
  appProtocol?: string;
}

export interface EndpointSlice {
  apiVersion: 'discovery.k8s.io/v1';
  kind: 'EndpointSlice';
  metadata: ObjectMeta;
  addressType: string;
  endpoints?: Endpoint[] | null;
  ports?: EndpointPort[] | null;
}

export function podReady(pod: Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The address types a Service's slices carry: its ipFamilies, else the family of its ClusterIP (legacy objects). */
export function serviceAddressTypes(service: Service): AddressType[] {
  const families = service.spec?.ipFamilies ?? [];
  if (families.length > 0) return families.filter((f): f is AddressType => f === 'IPv4' || f === 'IPv6');
  const clusterIP = service.spec?.clusterIP;
  if (clusterIP !== undefined && clusterIP !== '' && clusterIP !== 'None') return [addressTypeOf(clusterIP)];
  return ['IPv4'];
}

function addressTypeOf(ip: string): AddressType {
  return `IPv${ipVersion(familyOf(ip))}`;
}

function podIPs(pod: Pod): string[] {
  const list = pod.status?.podIPs?.map((p) => p.ip) ?? [];
  if (list.length > 0) return list;
  return pod.status?.podIP === undefined || pod.status.podIP === '' ? [] : [pod.status.podIP];
}

export function selectorMatches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/**
 * A Service port's port on one pod (podutil.FindPort): a number is taken as it is, a name must be a containerPort
 * of that name and protocol, else the pod has no such port and the endpoint is listed without it.
 */
export function resolveTargetPort(pod: Pod, port: ServicePort): number | undefined {
  const target = port.targetPort ?? port.port;
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  const protocol = port.protocol ?? 'TCP';
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === target && (p.protocol ?? 'TCP') === protocol) return p.containerPort;
  }
  return undefined;
}

/** ShouldPodBeInEndpoints with terminating pods included (EndpointSliceTerminatingCondition, GA since 1.26). */
function podBelongs(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return podIPs(pod).length > 0 && phase !== 'Succeeded' && phase !== 'Failed';
}

function endpointPorts(service: Service, pod: Pod): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const port of service.spec?.ports ?? []) {
    const resolved = resolveTargetPort(pod, port);
    if (resolved === undefined) continue;
    out.push({ name: port.name ?? '', port: resolved, protocol: port.protocol ?? 'TCP', ...(port.appProtocol === undefined ? {} : { appProtocol: port.appProtocol }) });
  }
  return out;
}

function slicesKey(addressType: string, ports: EndpointPort[] | null | undefined): string {
  const sorted = [...(ports ?? [])].sort((a, b) => a.name.localeCompare(b.name) || a.protocol.localeCompare(b.protocol) || a.port - b.port);
  return `${addressType}|${JSON.stringify(sorted.map((p) => [p.name, p.protocol, p.port, p.appProtocol ?? '']))}`;
}

/** Labels of a managed slice: the Service's own (as the controller copies them) plus the two it owns by. */
function sliceLabels(service: Service): Record<string, string> {
  const labels: Record<string, string> = { ...(service.metadata.labels ?? {}) };
  labels[SERVICE_NAME_LABEL] = service.metadata.name ?? '';
  labels[MANAGED_BY_LABEL] = MANAGED_BY_CONTROLLER;
  if (service.spec?.clusterIP === 'None') labels[HEADLESS_LABEL] = '';
  return labels;
}

function ownerReference(service: Service): OwnerReference {
  return { apiVersion: 'v1', kind: 'Service', name: service.metadata.name ?? '', uid: service.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
}

/** The slice name prefix (the controller's getEndpointSlicePrefix): the Service name, cut to leave room for the suffix. */
export function slicePrefix(serviceName: string): string {
  const prefix = `${serviceName}-`;
  return prefix.length > 58 ? prefix.slice(0, 58) : prefix;
}

/** What one slice must hold; slices of one group (same address type and ports) are interchangeable. */
export interface DesiredSlice {
  group: string;
  addressType: AddressType;
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

/**
 * The slices a Service must have. A Service without a selector (or ExternalName) has none managed by the
 * controller: its slices belong to whoever writes them.
 */
export function desiredSlices(service: Service, pods: readonly Pod[], nodes: readonly Node[]): DesiredSlice[] {
  const selector = service.spec?.selector;
  if (selector === undefined || Object.keys(selector).length === 0 || service.spec?.type === 'ExternalName') return [];
  const zones = new Map(nodes.map((n) => [n.metadata.name ?? '', n.metadata.labels?.[ZONE_LABEL]]));
  const publishNotReady = service.spec?.publishNotReadyAddresses === true;
  const out: DesiredSlice[] = [];
  for (const addressType of serviceAddressTypes(service)) {
    const groups = new Map<string, DesiredSlice>();
    const matching = pods
      .filter((p) => p.metadata.namespace === service.metadata.namespace && selectorMatches(selector, p.metadata.labels) && podBelongs(p))
      .sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
    for (const pod of matching) {
      const address = podIPs(pod).find((ip) => addressTypeOf(ip) === addressType);
      if (address === undefined) continue;
      const ports = endpointPorts(service, pod);
      const key = slicesKey(addressType, ports);
      const group = groups.get(key) ?? { group: key, addressType, ports, endpoints: [] };
      groups.set(key, group);
      const terminating = pod.metadata.deletionTimestamp !== undefined;
      const ready = podReady(pod);
      const nodeName = pod.spec?.nodeName;
      const zone = nodeName === undefined ? undefined : zones.get(nodeName);
      const hostname = pod.spec?.hostname !== undefined && pod.spec.subdomain === service.metadata.name ? pod.spec.hostname : undefined;
      group.endpoints.push({
        addresses: [address],
        conditions: { ready: publishNotReady || (ready && !terminating), serving: ready, terminating },
        ...(hostname === undefined ? {} : { hostname }),
        targetRef: { kind: 'Pod', namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', uid: pod.metadata.uid ?? '' },
        ...(nodeName === undefined ? {} : { nodeName }),
        ...(zone === undefined ? {} : { zone }),
      });
    }
    if (groups.size === 0) {
      // The placeholder: a Service that selects nothing still has a slice (empty), so consumers see "no endpoints".
      out.push({ group: slicesKey(addressType, []), addressType, ports: [], endpoints: [] });
      continue;
    }
    for (const group of groups.values()) {
      for (let i = 0; i < group.endpoints.length; i += MAX_ENDPOINTS_PER_SLICE) {
        out.push({ ...group, endpoints: group.endpoints.slice(i, i + MAX_ENDPOINTS_PER_SLICE) });
      }
    }
  }
  return out;
}

export type SliceWrite =
  | { kind: 'create'; slice: EndpointSlice }
  | { kind: 'update'; slice: EndpointSlice }
  | { kind: 'delete'; namespace: string; name: string };

function renderSlice(service: Service, want: DesiredSlice, existing?: EndpointSlice): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      ...(existing === undefined
        ? { generateName: slicePrefix(service.metadata.name ?? '') }
        : { name: existing.metadata.name ?? '', ...(existing.metadata.resourceVersion === undefined ? {} : { resourceVersion: existing.metadata.resourceVersion }) }),
      namespace: service.metadata.namespace ?? 'default',
      labels: sliceLabels(service),
      ownerReferences: [ownerReference(service)],
    },
    addressType: want.addressType,
    endpoints: want.endpoints,
    ports: want.ports,
  };
}

/** The slice's content as the controller compares it (labels, owner, endpoints, ports). */
function sliceContent(slice: EndpointSlice): string {
  return JSON.stringify([
    Object.entries(slice.metadata.labels ?? {}).sort(([a], [b]) => a.localeCompare(b)),
    (slice.metadata.ownerReferences ?? []).map((o) => o.uid),
    slice.addressType,
    slice.endpoints ?? [],
    slice.ports ?? [],
  ]);
}

export function isManagedSlice(slice: EndpointSlice): boolean {
  return slice.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_CONTROLLER;
}

/**
 * The writes that make one Service's managed slices what they must be: an existing slice with the same address
 * type and ports is updated in place (kept when equal), missing ones are created, the rest deleted. `service`
 * undefined: the Service is gone and its managed slices go too. Slices of other managers are never in the plan.
 */
export function planServiceSlices(service: Service | undefined, pods: readonly Pod[], nodes: readonly Node[], existing: readonly EndpointSlice[]): SliceWrite[] {
  const owned = existing.filter(isManagedSlice);
  const writes: SliceWrite[] = [];
  const wanted = service === undefined ? [] : desiredSlices(service, pods, nodes);
  const unused = [...owned];
  // Existing slices of another Service object under the same name (deleted and recreated) are replaced.
  const sameOwner = (s: EndpointSlice): boolean => service !== undefined && (s.metadata.ownerReferences ?? []).some((o) => o.uid === service.metadata.uid);
  for (const want of wanted) {
    const index = unused.findIndex((s) => sameOwner(s) && slicesKey(s.addressType, s.ports) === want.group);
    const match = index < 0 ? undefined : unused.splice(index, 1)[0];
    if (service === undefined) continue;
    const slice = renderSlice(service, want, match);
    if (match === undefined) writes.push({ kind: 'create', slice });
    else if (sliceContent(match) !== sliceContent(slice)) writes.push({ kind: 'update', slice });
  }
  for (const s of unused) writes.push({ kind: 'delete', namespace: s.metadata.namespace ?? 'default', name: s.metadata.name ?? '' });
  return writes;
}
