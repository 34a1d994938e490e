// The lab kubelet's pure planners: which pods to set up, tear down or restart, and which Pod statuses to patch.
// All the decisions live here; the realizer only carries them out.
import type { V1Pod } from '@kubernetes/client-node';
import type { ServedPort } from '../podserver.js';
import type { DesiredPod } from './podspec.js';

/** What the kubelet finds on disk and in the kernel for one pod it set up earlier (its record plus liveness). */
export interface RealizedPod {
  namespace: string;
  name: string;
  uid: string;
  hostNetwork: boolean;
  /** `adding`: the kubelet stopped between creating the netns and finishing CNI ADD; `ready`: fully set up. */
  state: 'adding' | 'ready';
  ports: ServedPort[];
  /** Pod IPs in CNI result order (hostNetwork pods: none, they use the node's). */
  ips: string[];
  /** Whether the pod's netns is still mounted (always true for hostNetwork pods). */
  netnsPresent: boolean;
  /** Whether the recorded pod server process is alive. */
  serverRunning: boolean;
}

export type PodAction =
  | { kind: 'remove'; pod: RealizedPod; reason: string }
  | { kind: 'add'; pod: DesiredPod }
  | { kind: 'restartServer'; pod: DesiredPod; reason: string };

export const podKey = (p: { namespace: string; name: string }): string => `${p.namespace}/${p.name}`;

function samePorts(a: readonly ServedPort[], b: readonly ServedPort[]): boolean {
  return a.length === b.length && a.every((p, i) => p.port === b[i]?.port && p.protocol === b[i]?.protocol);
}

/**
 * Desired pods vs what exists. Removals come first (they free IPs and names), then additions, then server
 * restarts. A ready pod is never added again while its netns exists: a restarted kubelet adopts it.
 */
export function planPods(desired: readonly DesiredPod[], realized: readonly RealizedPod[]): PodAction[] {
  const removes: PodAction[] = [];
  const adds: PodAction[] = [];
  const restarts: PodAction[] = [];
  const wanted = new Map(desired.map((d) => [podKey(d), d]));
  const kept = new Set<string>();
  for (const r of realized) {
    const d = wanted.get(podKey(r));
    let reason: string | undefined;
    if (d === undefined) reason = 'no longer bound to this node';
    else if (d.uid !== r.uid) reason = `replaced by a new pod (uid ${d.uid})`;
    else if (d.hostNetwork !== r.hostNetwork) reason = 'hostNetwork changed';
    else if (r.state !== 'ready') reason = 'set-up was interrupted';
    else if (!r.netnsPresent) reason = 'its network namespace disappeared';
    if (reason !== undefined) {
      removes.push({ kind: 'remove', pod: r, reason });
      continue;
    }
    kept.add(podKey(r));
    if (d === undefined) continue;
    if (!r.serverRunning) restarts.push({ kind: 'restartServer', pod: d, reason: 'its server is not running' });
    else if (!samePorts(d.ports, r.ports)) restarts.push({ kind: 'restartServer', pod: d, reason: 'its ports changed' });
  }
  for (const d of desired) {
    if (!kept.has(podKey(d))) adds.push({ kind: 'add', pod: d });
  }
  return [...removes, ...adds, ...restarts];
}

export interface PodStatusInput {
  /** Pod IPs (hostNetwork pods: the node's InternalIPs). */
  podIPs: string[];
  /** The node's InternalIPs. */
  hostIPs: string[];
  /** When the kubelet first set the pod up (kept across restarts). */
  startTime: string;
  /** The pod's containers (the pod server stands for all of them: it serves every declared port). */
  containers: { name: string; image: string }[];
}

const READY_CONDITIONS = ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'] as const;

/** The status the kubelet reports for a running pod, as JSON (the body of a merge patch on pods/status). */
export interface ReportedPodStatus {
  phase: 'Running';
  podIP?: string;
  podIPs: { ip: string }[];
  hostIP?: string;
  hostIPs: { ip: string }[];
  startTime: string;
  conditions: { type: string; status: 'True'; lastTransitionTime: string }[];
  /** What `kubectl get pods` counts in READY (ready / all containers). */
  containerStatuses: ReportedContainerStatus[];
}

export interface ReportedContainerStatus {
  name: string;
  image: string;
  imageID: string;
  containerID: string;
  ready: true;
  started: true;
  restartCount: 0;
  state: { running: { startedAt: string } };
}

export function desiredPodStatus(input: PodStatusInput, now: string): ReportedPodStatus {
  const status: ReportedPodStatus = {
    phase: 'Running',
    podIPs: input.podIPs.map((ip) => ({ ip })),
    hostIPs: input.hostIPs.map((ip) => ({ ip })),
    startTime: input.startTime,
    conditions: READY_CONDITIONS.map((type) => ({ type, status: 'True', lastTransitionTime: now })),
    containerStatuses: input.containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: c.image,
      containerID: `podroute-lab://${c.name}`,
      ready: true,
      started: true,
      restartCount: 0,
      state: { running: { startedAt: input.startTime } },
    })),
  };
  if (input.podIPs[0] !== undefined) status.podIP = input.podIPs[0];
  if (input.hostIPs[0] !== undefined) status.hostIP = input.hostIPs[0];
  return status;
}

function ipList(list: readonly { ip?: string }[] | undefined): string {
  return (list ?? []).map((x) => x.ip ?? '').join(',');
}

/** Whether the Pod's reported status already says what the kubelet would report (times aside). */
export function podStatusUpToDate(pod: V1Pod, input: PodStatusInput): boolean {
  const s = pod.status;
  if (s === undefined || s.phase !== 'Running') return false;
  if (ipList(s.podIPs) !== input.podIPs.join(',') || (s.podIP ?? '') !== (input.podIPs[0] ?? '')) return false;
  if (ipList(s.hostIPs) !== input.hostIPs.join(',') || (s.hostIP ?? '') !== (input.hostIPs[0] ?? '')) return false;
  const ready = s.conditions?.find((c) => c.type === 'Ready');
  const statuses = s.containerStatuses ?? [];
  const allReady = statuses.length === input.containers.length && input.containers.every((c) => statuses.some((st) => st.name === c.name && st.ready));
  return ready?.status === 'True' && allReady;
}
