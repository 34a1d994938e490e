// Errors of the node set-up (sysctls, CNI config): a stable code and the key or field concerned.
export type NodeSetupErrorCode =
  | 'BR_NETFILTER_UNAVAILABLE'
  | 'SYSCTL_MISSING'
  | 'SYSCTL_WRITE_FAILED'
  | 'CNI_BAD_CONFIG'
  | 'CNI_WRITE_FAILED';

export class NodeSetupError extends Error {
  constructor(
    readonly code: NodeSetupErrorCode,
    message: string,
    /** The sysctl key or config field concerned. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'NodeSetupError';
  }
}
