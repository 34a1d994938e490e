// The vocabulary shared by the policy compiler, the reconciler and the tests' oracle: plain Kubernetes objects in,
// one node's view of them.
import type { Namespace, NetworkPolicy, Pod } from '../kube/wire.js';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

/** One consistent snapshot of the objects NetworkPolicy depends on. */
export interface ClusterState {
  pods: readonly Pod[];
  namespaces: readonly Namespace[];
  policies: readonly NetworkPolicy[];
}

/** The node whose pods the compiler protects. */
export interface PolicyNode {
  name: string;
  /** The node's own addresses (InternalIP...): traffic from them to the node's pods is always allowed. */
  addresses: string[];
  /** The ranges the node's pods take their IPs from, IPv4 and/or IPv6. */
  podCIDRs: string[];
}
