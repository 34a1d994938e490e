// The Kubernetes objects a lab's topology declares (namespaces, nodes, pods, policies): built from the topology
// and the layout, and created through the lab API server.
import { apiCreate, apiRequest } from './api.js';
import { LabError } from './errors.js';
import { labPaths } from './paths.js';
import type { LabLayout, Topology } from './topology.js';

/** Annotations the agent reads from its Node (src/kube/node-info.ts). */
const ANNOTATION_ASN = 'podroute.io/asn';
const ANNOTATION_PEERS = 'podroute.io/peers';

/** The file (in the agent's bgp.passwordDir) holding the TCP MD5 secret of a ToR's rack (topology `password`). */
export function torPasswordFile(tor: string): string {
  return `${tor}.md5`;
}

export function nodeObject(topology: Topology, layout: LabLayout, nodeName: string): Record<string, unknown> {
  const node = topology.nodes.find((n) => n.name === nodeName);
  const placed = layout.nodes.find((n) => n.name === nodeName);
  if (node === undefined || placed === undefined) throw new LabError('LAB_BAD_TARGET', `no node named ${nodeName}`);
  // The node's ToRs (two for a dual-homed node), one session per family each (a ToR listens on its rack in both).
  const peers = placed.gateways.flatMap((g) => {
    const tor = topology.routers.find((r) => r.name === g.tor);
    const md5 = layout.racks.find((r) => r.tor === g.tor)?.password !== undefined;
    return tor === undefined ? [] : [{ address: g.address, asn: tor.asn, ...(md5 ? { passwordFile: torPasswordFile(g.tor) } : {}) }];
  });
  const annotations: Record<string, string> = {
    [ANNOTATION_ASN]: String(placed.asn),
    ...(peers.length === 0 ? {} : { [ANNOTATION_PEERS]: JSON.stringify(peers) }),
    ...node.annotations,
  };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: node.name, labels: { 'kubernetes.io/hostname': node.name, 'kubernetes.io/os': 'linux', ...node.labels }, annotations },
    spec: { podCIDR: node.podCIDRs[0], podCIDRs: node.podCIDRs },
    status: nodeStatus(layout, nodeName),
  };
}

export function nodeStatus(layout: LabLayout, nodeName: string): Record<string, unknown> {
  const placed = layout.nodes.find((n) => n.name === nodeName);
  return {
    addresses: [...(placed?.addresses ?? []).map((a) => ({ type: 'InternalIP', address: a.address })), { type: 'Hostname', address: nodeName }],
    conditions: [{ type: 'Ready', status: 'True', reason: 'LabNodeReady', message: 'lab node namespace is up' }],
  };
}

export function podObject(pod: Topology['kubernetes']['pods'][number]): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: pod.name, namespace: pod.namespace, labels: pod.labels, annotations: pod.annotations },
    spec: {
      nodeName: pod.nodeName,
      hostNetwork: pod.hostNetwork,
      containers: [
        {
          name: 'serve',
          image: 'podroute.io/lab-podserver',
          ports: pod.containerPorts.map((p) => ({ ...(p.name === undefined ? {} : { name: p.name }), containerPort: p.containerPort, protocol: p.protocol })),
        },
      ],
    },
  };
}

export async function createClusterObjects(lab: string, topology: Topology, layout: LabLayout, phase: 'before-pods' | 'pods'): Promise<void> {
  const socket = labPaths(lab).apiSocket;
  if (phase === 'pods') {
    for (const pod of topology.kubernetes.pods) await apiCreate(socket, `/api/v1/namespaces/${pod.namespace}/pods`, podObject(pod));
    return;
  }
  for (const ns of topology.kubernetes.namespaces) {
    await apiCreate(socket, '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns.name, labels: { 'kubernetes.io/metadata.name': ns.name, ...ns.labels } } });
  }
  for (const node of topology.nodes) await createNodeObject(socket, topology, layout, node.name);
  for (const np of topology.kubernetes.networkPolicies) {
    const metadata = (np.metadata ?? {}) as { name?: string; namespace?: string };
    const namespace = metadata.namespace ?? 'default';
    await apiCreate(socket, `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies`, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      ...np,
      metadata: { ...metadata, namespace },
    });
  }
}

export async function createNodeObject(socket: string, topology: Topology, layout: LabLayout, nodeName: string): Promise<void> {
  await apiCreate(socket, '/api/v1/nodes', nodeObject(topology, layout, nodeName));
  // Like a real API server, the lab one may ignore status on create: set it through the status subresource.
  const res = await apiRequest(socket, 'PATCH', `/api/v1/nodes/${nodeName}/status`, { status: nodeStatus(layout, nodeName) }, 'application/merge-patch+json');
  if (res.status !== 200) throw new LabError('LAB_API_FAILED', `PATCH node ${nodeName} status answered ${res.status}: ${JSON.stringify(res.body)}`);
}
