// `podroute status --cluster`: the cluster as the agents report it, read with the user's kubeconfig. The kubeconfig
// is read by @kubernetes/client-node, which does what kubectl does with it (exec and auth-provider plugins for EKS,
// GKE, AKS and OIDC, client certificates, tokens, proxy-url, impersonation, $KUBECONFIG lists). The agent's own
// client (kube/kube-api.ts) stays lean: client-node is loaded here only, when this command runs.
//
// These requests run with the user's credentials, not the agent's ServiceAccount: the RBAC test leaves this file out.
import type https from 'node:https';
import { KubeApi, type RequestOverrides } from '../kube/kube-api.js';
import type { KubeEvent, Node } from '../kube/wire.js';
import { clusterStatusView, type ClusterStatusView } from '../observe/cluster-status.js';

export interface ClusterStatusOptions {
  /** A kubeconfig file; kubectl's default ($KUBECONFIG, ~/.kube/config, in-cluster) when absent. */
  kubeconfig?: string;
  /** A context of the kubeconfig other than its current-context. */
  context?: string;
  timeoutMs: number;
}

export class ClusterStatusError extends Error {
  readonly code = 'CLUSTER_STATUS_FAILED';
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = 'ClusterStatusError';
  }
}

/** Reads Nodes and Events through the API server the kubeconfig names. */
export async function collectClusterStatus(options: ClusterStatusOptions): Promise<ClusterStatusView> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  try {
    if (options.kubeconfig === undefined) kc.loadFromDefault();
    else kc.loadFromFile(options.kubeconfig);
    if (options.context !== undefined) {
      if (kc.getContextObject(options.context) === null) throw new Error(`no context "${options.context}" in the kubeconfig`);
      kc.setCurrentContext(options.context);
    }
  } catch (err) {
    throw new ClusterStatusError(`kubeconfig ${options.kubeconfig ?? '(default)'}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new ClusterStatusError(`kubeconfig ${options.kubeconfig ?? '(default)'}: no cluster in context "${kc.getCurrentContext()}"`);
  const api = new KubeApi({
    config: { server: cluster.server.replace(/\/+$/, ''), insecureSkipTlsVerify: cluster.skipTLSVerify, source: options.kubeconfig ?? 'the default kubeconfig' },
    requestTimeoutMs: options.timeoutMs,
    userAgent: 'podroute-cli',
    // Per request: an exec plugin's credential expires, and client-node caches it until then.
    requestOptions: async (): Promise<RequestOverrides> => {
      const request: https.RequestOptions = {};
      await kc.applyToHTTPSOptions(request);
      return {
        ...(request.agent instanceof Object ? { agent: request.agent } : {}),
        ...(request.headers === undefined ? {} : { headers: request.headers as Record<string, string> }),
        ...(request.auth === undefined || request.auth === null ? {} : { auth: request.auth }),
      };
    },
  });
  try {
    const [nodes, events] = await Promise.all([
      api.list<Node>('/api/v1/nodes'),
      // Events about Nodes live in "default", about NetworkPolicies in their namespaces: all of them.
      api.list<KubeEvent>('/api/v1/events'),
    ]);
    return clusterStatusView(cluster.server, nodes.items, events.items);
  } catch (err) {
    throw new ClusterStatusError(`${cluster.server}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    api.close();
  }
}
