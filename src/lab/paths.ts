// Where a lab keeps its files and how it names its network namespaces. Every lab process derives paths from
// here, so `lab down` can find everything an earlier (possibly crashed) run left behind.
import path from 'node:path';
import { LabError } from './errors.js';

export const LAB_ROOT = '/run/podroute-lab';
/** Lab names become parts of netns, file and FRR pathspace names: keep them short and plain. */
export const LAB_NAME_PATTERN = /^[a-z][a-z0-9]{0,11}$/;
/** The node-local address where the lab kubelet relays the API server (inside each node netns). */
export const NODE_API_PROXY = { host: '127.0.0.1', port: 6443 } as const;

export function labDir(lab: string): string {
  return path.join(LAB_ROOT, lab);
}

export interface LabPaths {
  dir: string;
  /** `lab up`'s record of what it built: topology, namespaces, processes. */
  stateFile: string;
  /** The API server's unix socket (reachable from every namespace: it is a file). */
  apiSocket: string;
  /** The API server's persisted objects, so a restarted API server keeps the cluster. */
  apiStore: string;
  /** Kubeconfig for the host (kubectl, tests): the API server's loopback TCP port. */
  kubeconfig: string;
  logDir: string;
  pidDir: string;
  frrDir: (router: string) => string;
  /** A BIRD router's configuration, log and control socket. */
  birdDir: (router: string) => string;
  /** FRR's -N pathspace; FRR creates /var/run/frr/<pathspace>. */
  frrPathspace: (router: string) => string;
  nodeDir: (node: string) => string;
  gobgpSocket: (node: string) => string;
  /** The node agent's bgp.passwordDir: the TCP MD5 secrets of its ToRs' racks. */
  nodeSecretsDir: (node: string) => string;
  cniConfDir: (node: string) => string;
  cniIpamDir: (node: string) => string;
  /** The kubelet's libcni-style cache (results/ of every ADD), read by the agent (cni.cacheDir). */
  cniCacheDir: (node: string) => string;
  /** Kubeconfig used inside a node netns (the kubelet's relay at NODE_API_PROXY). */
  nodeKubeconfig: (node: string) => string;
  podDir: string;
  /** A pod's control socket: probes run from inside the pod's netns through it. */
  podSocket: (namespace: string, pod: string) => string;
  netns: (member: string) => string;
  podNetns: (namespace: string, pod: string) => string;
}

export function labPaths(lab: string): LabPaths {
  const dir = labDir(lab);
  return {
    dir,
    stateFile: path.join(dir, 'state.json'),
    apiSocket: path.join(dir, 'api.sock'),
    apiStore: path.join(dir, 'api-store.json'),
    kubeconfig: path.join(dir, 'kubeconfig'),
    logDir: path.join(dir, 'logs'),
    pidDir: path.join(dir, 'pids'),
    frrDir: (router) => path.join(dir, 'frr', router),
    birdDir: (router) => path.join(dir, 'bird', router),
    frrPathspace: (router) => `${lab}-${router}`,
    nodeDir: (node) => path.join(dir, 'nodes', node),
    gobgpSocket: (node) => path.join(dir, 'nodes', node, 'gobgp.sock'),
    nodeSecretsDir: (node) => path.join(dir, 'nodes', node, 'secrets'),
    cniConfDir: (node) => path.join(dir, 'nodes', node, 'cni', 'net.d'),
    cniIpamDir: (node) => path.join(dir, 'nodes', node, 'cni', 'ipam'),
    cniCacheDir: (node) => path.join(dir, 'nodes', node, 'cni', 'cache'),
    nodeKubeconfig: (node) => path.join(dir, 'nodes', node, 'kubeconfig'),
    podDir: path.join(dir, 'pods'),
    podSocket: (namespace, pod) => path.join(dir, 'pods', `${namespace}_${pod}.sock`),
    netns: (member) => `${lab}-${member}`,
    podNetns: (namespace, pod) => `${lab}-pod-${namespace}-${pod}`,
  };
}

export function checkLabName(lab: string): void {
  if (!LAB_NAME_PATTERN.test(lab)) throw new LabError('LAB_BAD_NAME', `lab name "${lab}" must match ${LAB_NAME_PATTERN.source}`);
}
