// `podroute lab status` and `lab routes`: what a lab is made of and how it is doing, read from its recorded state
// and from the live parts (router sessions, gobgpd, the API server's pods, the nodes' kernel routes).
import { execa } from 'execa';
import { DEFAULT_ROUTE_PROTOCOL } from '../routes/kernel-routes.js';
import { listPods, type PodView } from './api.js';
import { externalHostSocket, gobgpdAnswers } from './daemons.js';
import { LabError } from './errors.js';
import type { BgpNeighborState } from './frr.js';
import { routerControlPath, routerNeighbors } from './routers.js';
import { checkLabName, labPaths } from './paths.js';
import { readLabState, type LabState } from './state.js';
import { parseTopology, planLayout } from './topology.js';

export interface LabStatusReport {
  name: string;
  phase: LabState['phase'];
  error?: string;
  apiUrl?: string;
  apiSocket: string;
  kubeconfig: string;
  topologyFile: string;
  routers: {
    name: string;
    role: string;
    asn: number;
    netns: string;
    /** The routing stack (topology `stack`) and where to talk to it: FRR's vty directory, BIRD's control socket. */
    stack: string;
    controlPath: string;
    sessions: { peer: string; family: string; address: string; state: string }[];
  }[];
  nodes: {
    name: string;
    netns: string;
    asn: number;
    tor: string;
    /** Every ToR of the node (two for a dual-homed one). */
    tors: string[];
    addresses: string[];
    podCIDRs: string[];
    gobgpSocket: string;
    gobgpd: 'answering' | 'silent';
  }[];
  externalHosts: { name: string; netns: string; router: string; addresses: string[]; controlSocket: string }[];
  pods: { namespace: string; name: string; node: string; phase: string; ips: string[]; netns: string; controlSocket: string }[];
}

export async function labStatus(lab: string, signal?: AbortSignal): Promise<LabStatusReport> {
  checkLabName(lab);
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}" (no ${labPaths(lab).stateFile})`);
  const topology = parseTopology(state.topologyText);
  const layout = planLayout(topology);
  const paths = labPaths(lab);
  const routers: LabStatusReport['routers'] = [];
  for (const router of topology.routers) {
    let neighbors: BgpNeighborState[] = [];
    try {
      neighbors = await routerNeighbors(lab, router, signal);
    } catch {
      // router down: its sessions show as unknown below
    }
    const fabric = layout.fabric.filter((s) => s.router === router.name);
    routers.push({
      name: router.name,
      role: router.role,
      asn: router.asn,
      netns: paths.netns(router.name),
      stack: router.stack,
      controlPath: routerControlPath(lab, router),
      sessions: [
        ...fabric.map((s) => ({
          peer: s.peer,
          family: s.family,
          address: s.peerAddress,
          state: neighbors.find((n) => n.family === s.family && n.address === s.peerAddress)?.state ?? 'Unknown',
        })),
        // Dynamic neighbors (nodes dialing a ToR) show up once they exist.
        ...neighbors
          .filter((n) => !fabric.some((s) => s.family === n.family && s.peerAddress === n.address))
          .map((n) => ({ peer: layout.nodes.find((x) => x.addresses.some((a) => a.address === n.address))?.name ?? 'dynamic', family: n.family, address: n.address, state: n.state })),
      ],
    });
  }
  const nodes: LabStatusReport['nodes'] = [];
  for (const node of layout.nodes) {
    const answering = await gobgpdAnswers(paths.gobgpSocket(node.name), signal).catch(() => false);
    nodes.push({
      name: node.name,
      netns: paths.netns(node.name),
      asn: node.asn,
      tor: node.tor,
      tors: node.tors,
      addresses: node.addresses.map((a) => a.address),
      podCIDRs: node.podCIDRs,
      gobgpSocket: paths.gobgpSocket(node.name),
      gobgpd: answering ? 'answering' : 'silent',
    });
  }
  let pods: PodView[] = [];
  try {
    pods = await listPods(lab);
  } catch {
    // API server down: pods unknown
  }
  return {
    name: lab,
    phase: state.phase,
    ...(state.error === undefined ? {} : { error: state.error }),
    ...(state.apiPort === undefined ? {} : { apiUrl: `http://127.0.0.1:${state.apiPort}` }),
    apiSocket: paths.apiSocket,
    kubeconfig: paths.kubeconfig,
    topologyFile: state.topologyFile,
    routers,
    nodes,
    externalHosts: layout.externals.map((e) => ({
      name: e.name,
      netns: paths.netns(e.name),
      router: e.router,
      addresses: e.addresses,
      controlSocket: externalHostSocket(paths, e.name),
    })),
    pods: pods.map((p) => ({ ...p, netns: paths.podNetns(p.namespace, p.name), controlSocket: paths.podSocket(p.namespace, p.name) })),
  };
}

export function formatStatus(s: LabStatusReport): string {
  const lines: string[] = [`lab ${s.name}: ${s.phase}${s.error === undefined ? '' : ` (${s.error.split('\n')[0]})`}`];
  lines.push(`API ${s.apiUrl ?? '(down)'}  kubeconfig ${s.kubeconfig}`, '', 'ROUTERS');
  for (const r of s.routers) {
    lines.push(`  ${r.name} (${r.role}, ${r.stack}, AS ${r.asn}, netns ${r.netns})`);
    for (const x of r.sessions) lines.push(`    ${x.peer.padEnd(10)} ${x.family} ${x.address.padEnd(20)} ${x.state}`);
  }
  lines.push('', 'NODES');
  for (const n of s.nodes) lines.push(`  ${n.name.padEnd(10)} AS ${n.asn} tor ${n.tors.join('+')} ${n.addresses.join(',')} pods ${n.podCIDRs.join(',')} gobgpd ${n.gobgpd}`);
  lines.push('', 'EXTERNAL HOSTS');
  for (const e of s.externalHosts) lines.push(`  ${e.name.padEnd(10)} via ${e.router} ${e.addresses.join(',')}`);
  lines.push('', 'PODS');
  for (const p of s.pods) lines.push(`  ${`${p.namespace}/${p.name}`.padEnd(12)} ${p.node.padEnd(10)} ${p.phase.padEnd(8)} ${p.ips.join(',')}  netns ${p.netns}`);
  return lines.join('\n') + '\n';
}

export interface NodeRoute {
  prefix: string;
  nextHops: string[];
}

/** The routes the node's agent installed: the kernel's main table, podroute's protocol number only. */
export async function nodeRoutes(lab: string, nodeName: string, protocol = DEFAULT_ROUTE_PROTOCOL): Promise<NodeRoute[]> {
  const routes: NodeRoute[] = [];
  for (const family of ['-4', '-6']) {
    const { stdout } = await execa('ip', ['-n', labPaths(lab).netns(nodeName), '-j', family, 'route', 'show', 'proto', String(protocol)]);
    for (const r of JSON.parse(stdout || '[]') as { dst: string; gateway?: string; nexthops?: { gateway?: string }[] }[]) {
      const hops = r.gateway !== undefined ? [r.gateway] : (r.nexthops ?? []).flatMap((h) => (h.gateway === undefined ? [] : [h.gateway]));
      routes.push({ prefix: r.dst, nextHops: hops });
    }
  }
  return routes;
}

export async function formatNodeRoutes(lab: string): Promise<string> {
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  const lines = [`ROUTES INSTALLED BY PODROUTE (proto ${DEFAULT_ROUTE_PROTOCOL})`];
  for (const node of parseTopology(state.topologyText).nodes) {
    lines.push(`  ${node.name}`);
    for (const route of await nodeRoutes(lab, node.name)) lines.push(`    ${route.prefix.padEnd(22)} via ${route.nextHops.join(', ')}`);
  }
  return lines.join('\n') + '\n';
}
