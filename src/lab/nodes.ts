// `podroute lab node add|remove`: a node joins a running lab or leaves it as a machine would, and the lab's
// recorded topology and its ToRs' configuration follow.
import YAML from 'yaml';
import { apiRequest } from './api.js';
import { createNodeObject } from './cluster-objects.js';
import { startGobgpd, startNode } from './daemons.js';
import { LabError } from './errors.js';
import { nodeNeighborAddresses } from './frr.js';
import { addNetns, addVeth, deleteNetns, listNetns, memberBatch, memberSysctls, netnsPids, runBatch, setSysctls, vethEndBatch } from './netns.js';
import { labPaths } from './paths.js';
import { cmdlineMatches, killGone } from './processes.js';
import { updateTorNeighbors } from './routers.js';
import { LabStateRecorder, readLabState, writeLabState } from './state.js';
import { parseTopology, planLayout, type LabLayout, type Topology, type TopologyNode } from './topology.js';

/**
 * Joins a node to a running lab, as a new machine joins a cluster: its namespace on its rack LAN, gobgpd, the Node
 * object, the kubelet and the agent. The lab's recorded topology grows by the node, so status and down know it.
 */
export async function labNodeAdd(lab: string, node: TopologyNodeInput): Promise<void> {
  const paths = labPaths(lab);
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  const current = parseTopology(state.topologyText);
  const topologyText = YAML.stringify({ ...current, nodes: [...current.nodes, node] });
  const topology = parseTopology(topologyText); // validates the node against the rest (names, rack, CIDRs)
  const layout = planLayout(topology);
  const member = layout.members.find((m) => m.name === node.name);
  if (member === undefined) throw new LabError('LAB_BAD_TARGET', `node ${node.name} is not in the planned layout`);
  const recorder = new LabStateRecorder({ ...state, topologyText });
  const ns = paths.netns(node.name);
  recorder.recordNetns(ns);
  await addNetns(ns);
  await setSysctls(ns, memberSysctls(member));
  const veths = layout.veths.filter((v) => v.a.member === node.name || v.b.member === node.name);
  for (const veth of veths) await addVeth(veth, paths.netns);
  await runBatch(ns, memberBatch(member, layout));
  // The far ends (a port of the ToR's rack bridge, or a routed port): only the new ports, the rest is already up.
  for (const end of veths.flatMap((v) => [v.a, v.b]).filter((e) => e.member !== node.name)) {
    await runBatch(paths.netns(end.member), vethEndBatch(end));
  }
  // The ToRs learn the new node as a neighbor before its gobgpd runs (FRR refuses to turn a dynamic neighbor
  // into a configured one), and write it to their config so a restarted router knows it too.
  await updateTorNodeNeighbors(lab, topology, layout, nodeNeighbors(layout, node.name), 'add');
  startGobgpd(lab, node.name, recorder);
  await createNodeObject(paths.apiSocket, topology, layout, node.name);
  await startNode(lab, topology, node.name, recorder);
}

/**
 * Removes a node as when its machine is gone: the Node object is deleted, its processes stopped, its namespace
 * and pods' namespaces deleted. Routes to it must then disappear from every other node through BGP alone.
 */
export async function labNodeRemove(lab: string, nodeName: string): Promise<void> {
  const paths = labPaths(lab);
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  const topology = parseTopology(state.topologyText);
  if (!topology.nodes.some((n) => n.name === nodeName)) throw new LabError('LAB_BAD_TARGET', `no node named ${nodeName} in lab ${lab}`);
  const res = await apiRequest(paths.apiSocket, 'DELETE', `/api/v1/nodes/${nodeName}`);
  if (res.status !== 200 && res.status !== 404) throw new LabError('LAB_API_FAILED', `DELETE node ${nodeName} answered ${res.status}`);
  const ns = paths.netns(nodeName);
  const mine = state.processes.filter((p) => p.netns === ns);
  for (const p of mine) if (cmdlineMatches(p.pid, p.cmdlineMarkers)) killGone(p.pid);
  // Pods of the node: their servers and namespaces go with the machine (no kubelet is left to tear them down).
  const listed = await apiRequest(paths.apiSocket, 'GET', `/api/v1/pods?fieldSelector=spec.nodeName%3D${nodeName}`);
  const pods = ((listed.body as { items?: { metadata: { namespace: string; name: string } }[] }).items ?? []).map((p) => p.metadata);
  for (const pod of pods) {
    await apiRequest(paths.apiSocket, 'DELETE', `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}`);
    const podNs = paths.podNetns(pod.namespace, pod.name);
    if ((await listNetns()).includes(podNs)) {
      for (const pid of await netnsPids(podNs)) killGone(pid);
      await deleteNetns(podNs);
    }
  }
  for (const pid of await netnsPids(ns)) killGone(pid);
  await deleteNetns(ns);
  const remaining: Topology = { ...topology, nodes: topology.nodes.filter((n) => n.name !== nodeName) };
  await updateTorNodeNeighbors(lab, remaining, planLayout(remaining), nodeNeighbors(planLayout(topology), nodeName), 'remove');
  writeLabState({
    ...state,
    topologyText: YAML.stringify({
      ...topology,
      nodes: topology.nodes.filter((n) => n.name !== nodeName),
      kubernetes: { ...topology.kubernetes, pods: topology.kubernetes.pods.filter((p) => p.nodeName !== nodeName) },
    }),
    netns: state.netns.filter((n) => n !== ns),
    processes: state.processes.filter((p) => p.netns !== ns),
  });
}

/** Per ToR of the node: the node's addresses the ToR peers with. */
function nodeNeighbors(layout: LabLayout, nodeName: string): Map<string, string[]> {
  const placed = layout.nodes.find((n) => n.name === nodeName);
  return new Map((placed?.tors ?? []).map((tor) => [tor, nodeNeighborAddresses(layout, tor, nodeName)]));
}

/**
 * Adds or removes a node's neighbors on its running ToRs (vtysh, birdc) and rewrites their configuration from
 * `topology` (the topology after the change), so a ToR restarted later neither forgets a node nor waits for one that is gone.
 */
async function updateTorNodeNeighbors(lab: string, topology: Topology, layout: LabLayout, neighbors: Map<string, string[]>, op: 'add' | 'remove'): Promise<void> {
  for (const [torName, addresses] of neighbors) {
    const tor = topology.routers.find((r) => r.name === torName);
    if (tor !== undefined) await updateTorNeighbors(lab, topology, layout, tor, addresses, op);
  }
}

/** A node as a topology file declares it (defaults filled in by the topology schema). */
export type TopologyNodeInput = Omit<Partial<TopologyNode>, 'name' | 'rack' | 'podCIDRs'> & Pick<TopologyNode, 'name' | 'rack' | 'podCIDRs'>;
