// What the lab kubelet needs to know about a Pod, read and checked from the API object. A bad spec becomes a
// PodSpecError naming the field, and the kubelet skips that pod instead of half-realizing it.
import type { V1Pod } from '@kubernetes/client-node';
import type { ServedPort } from '../podserver.js';

export interface DesiredPod {
  namespace: string;
  name: string;
  uid: string;
  hostNetwork: boolean;
  /** Distinct (port, protocol) pairs over all containers, sorted. */
  ports: ServedPort[];
  /** containerPorts with a hostPort: handed to CNI plugins with the portMappings capability. */
  portMappings: PortMapping[];
}

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
  hostIP?: string;
}

export class PodSpecError extends Error {
  readonly code = 'POD_SPEC_INVALID';
  constructor(
    readonly pod: string,
    readonly field: string,
    problem: string,
  ) {
    super(`pod ${pod}: ${field}: ${problem}`);
    this.name = 'PodSpecError';
  }
}

/** Unix socket paths are limited to 108 bytes with the terminating NUL. */
export const MAX_UNIX_SOCKET_PATH = 107;

export interface PodSpecReading {
  pod?: DesiredPod;
  error?: PodSpecError;
  /** Problems that do not stop the pod (a port the lab cannot serve). */
  warnings: string[];
}

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/**
 * Reads a Pod bound to this node. `controlSocketPath` lets the caller's path scheme be checked (a too long
 * namespace/name would make an unusable control socket).
 */
export function readPodSpec(pod: V1Pod, controlSocketPath?: (namespace: string, name: string) => string): PodSpecReading {
  const namespace = pod.metadata?.namespace ?? 'default';
  const name = pod.metadata?.name ?? '';
  const id = `${namespace}/${name}`;
  const warnings: string[] = [];
  const fail = (field: string, problem: string): PodSpecReading => ({
    error: new PodSpecError(id, field, problem),
    warnings,
  });
  const uid = pod.metadata?.uid;
  if (name === '') return fail('metadata.name', 'missing');
  if (typeof uid !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(uid)) {
    return fail('metadata.uid', 'missing or not usable as a CNI container id');
  }
  // The pod's names become netns names and file names.
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(namespace)) return fail('metadata.namespace', 'not a DNS label');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) return fail('metadata.name', 'not a DNS subdomain');
  if (controlSocketPath !== undefined) {
    const socketPath = controlSocketPath(namespace, name);
    if (Buffer.byteLength(socketPath) > MAX_UNIX_SOCKET_PATH) {
      return fail('metadata.name', `namespace and name too long for the control socket path ${socketPath}`);
    }
  }
  const seen = new Map<string, ServedPort>();
  const portMappings: PortMapping[] = [];
  const containers = pod.spec?.containers ?? [];
  for (const [ci, container] of containers.entries()) {
    for (const [pi, cp] of (container.ports ?? []).entries()) {
      const field = `spec.containers[${ci}].ports[${pi}]`;
      const protocol = cp.protocol ?? 'TCP';
      if (!isPort(cp.containerPort)) return fail(`${field}.containerPort`, `${String(cp.containerPort)} is not in 1..65535`);
      if (cp.hostPort !== undefined && cp.hostPort !== null && !isPort(cp.hostPort)) {
        return fail(`${field}.hostPort`, `${String(cp.hostPort)} is not in 1..65535`);
      }
      if (protocol === 'SCTP') {
        // A valid Kubernetes protocol the kernel here has no sockets for: serve the rest of the pod.
        warnings.push(`pod ${id}: ${field}.protocol: SCTP is not served by the lab (no SCTP sockets), port ${cp.containerPort} skipped`);
        continue;
      }
      if (protocol !== 'TCP' && protocol !== 'UDP') {
        return fail(`${field}.protocol`, `unknown protocol ${JSON.stringify(protocol)} (TCP, UDP or SCTP)`);
      }
      seen.set(`${cp.containerPort}/${protocol}`, { port: cp.containerPort, protocol });
      if (isPort(cp.hostPort)) {
        portMappings.push({
          hostPort: cp.hostPort,
          containerPort: cp.containerPort,
          protocol: protocol === 'TCP' ? 'tcp' : 'udp',
          ...(cp.hostIP ? { hostIP: cp.hostIP } : {}),
        });
      }
    }
  }
  const ports = [...seen.values()].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
  return {
    pod: { namespace, name, uid, hostNetwork: pod.spec?.hostNetwork === true, ports, portMappings },
    warnings,
  };
}

/** A pod is this node's to run when bound here and not being deleted or finished. */
export function isPodForNode(pod: V1Pod, node: string): boolean {
  if (pod.spec?.nodeName !== node) return false;
  if (pod.metadata?.deletionTimestamp !== undefined && pod.metadata?.deletionTimestamp !== null) return false;
  const phase = pod.status?.phase;
  return phase !== 'Succeeded' && phase !== 'Failed';
}
