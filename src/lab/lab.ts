// `podroute lab up|down|status|exec`: builds a topology in network namespaces with the real parts (FRR routers,
// gobgpd per node, the lab API server, the lab kubelet, pods made by the real CNI plugins) and takes it all
// down again, also after a crash. The contract is in ARCHITECTURE.md ("The lab").
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { DEFAULT_ROUTE_PROTOCOL } from '../routes/kernel-routes.js';
import YAML from 'yaml';
import type { AgentConfigInput } from '../config/agent-config.js';
import { renderNodeKubeconfig } from './kubelet/kubelet.js';
import type { Logger } from '../observe/log.js';
import {
  bgpSummary,
  frrDaemonArgs,
  frrFiles,
  nodeNeighborAddresses,
  nodeNeighborCommands,
  pendingFabricSessions,
  renderRouterConfig,
  startFrrDaemon,
  vtysh,
  writeRouterConfig,
  type BgpNeighborState,
} from './frr.js';
import { addNetns, addVeth, deleteNetns, hostRoutes, listNetns, memberBatch, memberSysctls, netnsPids, runBatch, setSysctls, vethEndBatch } from './netns.js';
import { LAB_NAME_PATTERN, LAB_ROOT, labDir, labPaths, type LabPaths } from './paths.js';
import { LabStateRecorder, newLabState, readLabState, writeLabState, type LabState, type ProcessRecord } from './state.js';
import { cidrsOverlap, parseTopology, planLayout, type LabLayout, type Topology, type TopologyNode } from './topology.js';

export class LabError extends Error {
  constructor(
    readonly code: 'LAB_BAD_NAME' | 'LAB_EXISTS' | 'LAB_NOT_FOUND' | 'LAB_UNSAFE' | 'LAB_START_FAILED' | 'LAB_NOT_CONVERGED' | 'LAB_BAD_TARGET' | 'LAB_API_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'LabError';
  }
}

/** Directory where FRR's `-N PATHSPACE` creates its per-instance directory. */
export const FRR_STATE_ROOT = '/var/run/frr';
/** The CNI bridge the agents of the lab configure (the agent's default). */
export const LAB_CNI_BRIDGE = 'podroute0';
/** Annotations the agent reads from its Node (src/kube/node-info.ts). */
const ANNOTATION_ASN = 'podroute.io/asn';
const ANNOTATION_PEERS = 'podroute.io/peers';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The CLI entry point next to this module (works from dist/ and from any --outDir build). */
export const CLI_MAIN = path.join(here, '..', 'cli', 'main.js');
export const PODSERVER_SCRIPT = path.join(here, 'podserver.js');

export function checkLabName(lab: string): void {
  if (!LAB_NAME_PATTERN.test(lab)) throw new LabError('LAB_BAD_NAME', `lab name "${lab}" must match ${LAB_NAME_PATTERN.source}`);
}

/** The control socket of an external host's server (probes from outside the cluster run through it). */
export function externalHostSocket(paths: LabPaths, host: string): string {
  return path.join(paths.dir, 'hosts', `${host}.sock`);
}

export function frrFilesOf(lab: string, router: string) {
  return frrFiles(labPaths(lab).frrDir(router));
}

// ---- processes ---------------------------------------------------------------------------------------------

interface SpawnSpec {
  name: string;
  netns?: string;
  /**
   * How to enter `netns`: `ip netns exec` also gives the process a private mount namespace (fine for daemons that
   * only need the network); `nsenter --net` keeps the host's, for processes that create namespaces the host must
   * see (the lab kubelet makes pod namespaces).
   */
  enter?: 'ip-netns-exec' | 'nsenter';
  command: string;
  args: string[];
  markers: string[];
}

function logFileName(name: string): string {
  return `${name.replace(/[^a-zA-Z0-9_.-]/g, '_')}.log`;
}

/** Starts a daemon detached (own session, stdio to its log file) and records its PID at once. */
function spawnDaemon(paths: LabPaths, recorder: LabStateRecorder, spec: SpawnSpec): ProcessRecord {
  mkdirSync(paths.logDir, { recursive: true });
  const logFile = path.join(paths.logDir, logFileName(spec.name));
  const fd = openSync(logFile, 'a');
  const [command, args] =
    spec.netns === undefined
      ? [spec.command, spec.args]
      : spec.enter === 'nsenter'
        ? ['nsenter', [`--net=/run/netns/${spec.netns}`, '--', spec.command, ...spec.args]]
        : ['ip', ['netns', 'exec', spec.netns, spec.command, ...spec.args]];
  try {
    const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) throw new LabError('LAB_START_FAILED', `${spec.name}: could not start ${command}`);
    child.on('error', () => undefined);
    child.unref();
    const record: ProcessRecord = {
      name: spec.name,
      pid: child.pid,
      ...(spec.netns === undefined ? {} : { netns: spec.netns }),
      cmdlineMarkers: spec.markers,
      argv: [command, ...args],
    };
    recorder.recordProcess(record);
    return record;
  } finally {
    closeSync(fd);
  }
}

function readCmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s) => s !== '');
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** True when /proc/PID/cmdline still belongs to the recorded process (PIDs get reused). */
export function cmdlineMatches(pid: number, markers: string[]): boolean {
  const args = readCmdline(pid);
  return args !== undefined && markers.every((m) => args.includes(m));
}

function logTail(paths: LabPaths, name: string, lines = 15): string {
  try {
    return readFileSync(path.join(paths.logDir, logFileName(name)), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Polls `check` until it returns undefined (done) or the deadline passes; `check` returns what is still missing. */
async function waitFor(what: string, deadline: number, signal: AbortSignal | undefined, check: () => Promise<string | undefined>): Promise<void> {
  let missing: string | undefined = 'not checked yet';
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    try {
      missing = await check();
    } catch (err) {
      missing = err instanceof Error ? err.message : String(err);
    }
    if (missing === undefined) return;
    await sleep(300, signal);
  }
  throw new LabError('LAB_NOT_CONVERGED', `${what}: still waiting after the deadline: ${missing}`);
}

// ---- the lab API server (plain REST over its unix socket) ----------------------------------------------------

export interface ApiResponse {
  status: number;
  body: unknown;
}

export async function apiRequest(socketPath: string, method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  // Writes are decoded strictly, as kubectl asks by default: a field the API does not know is an error, not dropped.
  if (payload !== undefined && method !== 'DELETE' && !urlPath.includes('fieldValidation=')) {
    urlPath += `${urlPath.includes('?') ? '&' : '?'}fieldValidation=Strict`;
  }
  return await new Promise<ApiResponse>((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        method,
        path: urlPath,
        headers: { accept: 'application/json', ...(payload === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }) },
        timeout: 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            // not JSON: keep the text for the error message
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: timed out`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** Creates an object; an existing one is left as it is (a restarted API server keeps its store). */
async function apiCreate(socketPath: string, collection: string, object: Record<string, unknown>): Promise<void> {
  const res = await apiRequest(socketPath, 'POST', collection, object);
  if (res.status === 201 || res.status === 200 || res.status === 409) return;
  throw new LabError('LAB_API_FAILED', `POST ${collection} answered ${res.status}: ${JSON.stringify(res.body)}`);
}

// ---- Kubernetes objects from the topology (pure) ------------------------------------------------------------

export function nodeObject(topology: Topology, layout: LabLayout, nodeName: string): Record<string, unknown> {
  const node = topology.nodes.find((n) => n.name === nodeName);
  const placed = layout.nodes.find((n) => n.name === nodeName);
  if (node === undefined || placed === undefined) throw new LabError('LAB_BAD_TARGET', `no node named ${nodeName}`);
  // The node's ToRs (two for a dual-homed node), one session per family each (a ToR listens on its rack in both).
  const peers = placed.gateways.flatMap((g) => {
    const tor = topology.routers.find((r) => r.name === g.tor);
    return tor === undefined ? [] : [{ address: g.address, asn: tor.asn }];
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

// ---- up ----------------------------------------------------------------------------------------------------

export interface LabUpOptions {
  topologyFile: string;
  name: string;
  /** Converged within this long or `up` fails (default 180 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  log?: Logger;
}

/** Refuses lab networks that overlap routes of the host namespace: no lab namespace may reach the host's networks. */
export async function checkHostOverlap(topology: Topology, layout: LabLayout): Promise<void> {
  const labNetworks = [
    ...topology.cluster.podRanges,
    ...topology.links.flatMap((l) => [l.ipv4, l.ipv6]).filter((c): c is string => c !== undefined),
    ...layout.externals.flatMap((e) => e.networks),
  ];
  const clashes: string[] = [];
  for (const route of await hostRoutes()) {
    for (const net of labNetworks) if (cidrsOverlap(route, net)) clashes.push(`${net} overlaps the host route ${route}`);
  }
  if (clashes.length > 0) throw new LabError('LAB_UNSAFE', `refusing to build: ${clashes.join('; ')}`);
}

export async function labUp(options: LabUpOptions): Promise<LabStatusReport> {
  const { name: lab, signal, log } = options;
  checkLabName(lab);
  const topologyText = await readFile(options.topologyFile, 'utf8');
  const topology = parseTopology(topologyText);
  const layout = planLayout(topology);
  await checkHostOverlap(topology, layout);
  const paths = labPaths(lab);
  if (existsSync(paths.dir)) {
    throw new LabError('LAB_EXISTS', `lab "${lab}" exists (${paths.dir}); run \`podroute lab down ${lab}\` first`);
  }
  const deadline = Date.now() + (options.timeoutMs ?? 180_000);
  mkdirSync(paths.dir, { recursive: true, mode: 0o755 });
  const recorder = new LabStateRecorder(newLabState(lab, path.resolve(options.topologyFile), topologyText));
  try {
    for (const dir of [paths.logDir, paths.pidDir, paths.podDir, path.join(paths.dir, 'hosts')]) await mkdir(dir, { recursive: true });
    await buildNetwork(lab, layout, recorder, log);
    signal?.throwIfAborted();
    await startRouters(lab, topology, layout, recorder, log);
    for (const node of layout.nodes) startGobgpd(lab, node.name, recorder);
    const apiPort = await startApiServer(lab, recorder, deadline, signal);
    log?.info('lab API server up', { lab, apiPort });
    await createClusterObjects(lab, topology, layout, 'before-pods');
    for (const node of layout.nodes) await startNode(lab, topology, node.name, recorder);
    await createClusterObjects(lab, topology, layout, 'pods');
    for (const ext of topology.externalHosts) startExternalHost(lab, ext, recorder);
    await waitConverged(lab, topology, layout, deadline, signal);
    recorder.update({ phase: 'up' });
    log?.info('lab converged', { lab });
  } catch (err) {
    recorder.update({ phase: 'failed', error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
  return await labStatus(lab);
}

async function buildNetwork(lab: string, layout: LabLayout, recorder: LabStateRecorder, log?: Logger): Promise<void> {
  const paths = labPaths(lab);
  for (const member of layout.members) {
    const ns = paths.netns(member.name);
    recorder.recordNetns(ns);
    await addNetns(ns);
    await setSysctls(ns, memberSysctls(member));
  }
  for (const veth of layout.veths) await addVeth(veth, paths.netns);
  await Promise.all(layout.members.map((m) => runBatch(paths.netns(m.name), memberBatch(m, layout))));
  log?.info('lab network built', { lab, namespaces: layout.members.length, veths: layout.veths.length });
}

async function startRouters(lab: string, topology: Topology, layout: LabLayout, recorder: LabStateRecorder, log?: Logger): Promise<void> {
  const paths = labPaths(lab);
  await Promise.all(
    topology.routers.map(async (router) => {
      const files = frrFiles(paths.frrDir(router.name));
      await writeRouterConfig(files, renderRouterConfig(topology, layout, router.name, files));
      const pathspace = paths.frrPathspace(router.name);
      recorder.recordFrrPathspace(pathspace);
      for (const daemon of ['zebra', 'bgpd'] as const) {
        const pid = await startFrrDaemon(paths.netns(router.name), daemon, files, pathspace);
        const args = frrDaemonArgs(daemon, files, pathspace);
        recorder.recordProcess({
          name: `${daemon}/${router.name}`,
          pid,
          netns: paths.netns(router.name),
          cmdlineMarkers: [args[0] ?? daemon, pathspace],
          // labStart runs it in the foreground (no -d): the PID it spawns is then the daemon's own.
          argv: ['ip', 'netns', 'exec', paths.netns(router.name), ...args.filter((a) => a !== '-d')],
        });
      }
      log?.info('router started', { lab, router: router.name });
    }),
  );
}

export function gobgpdArgs(socket: string): string[] {
  return ['--api-hosts', `unix://${socket}`, '--pprof-disable', '--log-plain', '--log-level', 'info'];
}

function startGobgpd(lab: string, nodeName: string, recorder: LabStateRecorder): void {
  const paths = labPaths(lab);
  mkdirSync(paths.nodeDir(nodeName), { recursive: true });
  const socket = paths.gobgpSocket(nodeName);
  spawnDaemon(paths, recorder, {
    name: `gobgpd/${nodeName}`,
    netns: paths.netns(nodeName),
    // gobgpd killed with -9 leaves its socket behind and a new one then fails to bind: clear it first, as the
    // DaemonSet's gobgpd entrypoint does.
    command: 'sh',
    args: ['-c', 'rm -f "$0" && exec gobgpd "$@"', socket, ...gobgpdArgs(socket)],
    markers: [`unix://${socket}`],
  });
}

async function startApiServer(lab: string, recorder: LabStateRecorder, deadline: number, signal?: AbortSignal): Promise<number> {
  const paths = labPaths(lab);
  const record = spawnDaemon(paths, recorder, {
    name: 'apiserver',
    command: process.execPath,
    args: [CLI_MAIN, 'lab', 'apiserver', '--lab', lab, '--port', '0'],
    markers: ['apiserver', '--lab', lab],
  });
  let port: number | undefined;
  await waitFor('lab API server', deadline, signal, () => {
    if (!processAlive(record.pid)) throw new LabError('LAB_START_FAILED', `lab API server exited:\n${logTail(paths, 'apiserver')}`);
    const match = /^ready (\d+)$/m.exec(logTail(paths, 'apiserver', 200));
    if (match === null) return Promise.resolve('no "ready <port>" line yet');
    port = Number(match[1]);
    return Promise.resolve(undefined);
  });
  if (port === undefined) throw new LabError('LAB_START_FAILED', 'lab API server gave no port');
  recorder.update({ apiPort: port });
  return port;
}

async function createClusterObjects(lab: string, topology: Topology, layout: LabLayout, phase: 'before-pods' | 'pods'): Promise<void> {
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

async function createNodeObject(socket: string, topology: Topology, layout: LabLayout, nodeName: string): Promise<void> {
  await apiCreate(socket, '/api/v1/nodes', nodeObject(topology, layout, nodeName));
  // Like a real API server, the lab one may ignore status on create: set it through the status subresource.
  const res = await apiRequest(socket, 'PATCH', `/api/v1/nodes/${nodeName}/status`, { status: nodeStatus(layout, nodeName) }, 'application/merge-patch+json');
  if (res.status !== 200) throw new LabError('LAB_API_FAILED', `PATCH node ${nodeName} status answered ${res.status}: ${JSON.stringify(res.body)}`);
}

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
 * Adds or removes a node's neighbors on its running ToRs (vtysh) and rewrites their bgpd.conf from `topology` (the
 * topology after the change), so a ToR restarted later neither forgets a node nor waits for one that is gone.
 */
async function updateTorNodeNeighbors(lab: string, topology: Topology, layout: LabLayout, neighbors: Map<string, string[]>, op: 'add' | 'remove'): Promise<void> {
  const paths = labPaths(lab);
  for (const [torName, addresses] of neighbors) {
    const tor = topology.routers.find((r) => r.name === torName);
    if (tor === undefined) continue;
    const files = frrFiles(paths.frrDir(torName));
    await writeFile(files.bgpdConf, renderRouterConfig(topology, layout, torName, files).bgpd);
    const commands = addresses.flatMap((a) => (op === 'add' ? nodeNeighborCommands(a).map((c) => c.trim()) : [`no neighbor ${a}`]));
    if (commands.length === 0) continue;
    await vtysh(files, ['configure terminal', `router bgp ${tor.asn}`, ...commands, 'end'].join('\n'));
  }
}

/** A node as a topology file declares it (defaults filled in by the topology schema). */
export type TopologyNodeInput = Omit<Partial<TopologyNode>, 'name' | 'rack' | 'podCIDRs'> & Pick<TopologyNode, 'name' | 'rack' | 'podCIDRs'>;

/**
 * Per node: the lab kubelet (it relays the API server into the node netns and realizes pods once a CNI conflist
 * exists), then `podroute agent` next to the node's gobgpd, configured like a DaemonSet's ConfigMap would be.
 */
async function startNode(lab: string, topology: Topology, nodeName: string, recorder: LabStateRecorder): Promise<void> {
  const paths = labPaths(lab);
  await mkdir(paths.cniConfDir(nodeName), { recursive: true });
  await mkdir(paths.cniIpamDir(nodeName), { recursive: true });
  // Written here as well as by the kubelet, so the agent never races the kubelet for it.
  await writeFile(paths.nodeKubeconfig(nodeName), renderNodeKubeconfig(nodeName));
  spawnDaemon(paths, recorder, {
    name: `kubelet/${nodeName}`,
    netns: paths.netns(nodeName),
    enter: 'nsenter',
    command: process.execPath,
    args: [CLI_MAIN, 'lab', 'kubelet', '--lab', lab, '--node', nodeName],
    markers: ['kubelet', '--lab', lab, '--node', nodeName],
  });
  const configFile = path.join(paths.nodeDir(nodeName), 'agent.yaml');
  await writeFile(configFile, YAML.stringify(labAgentConfig(lab, topology, nodeName)));
  spawnDaemon(paths, recorder, {
    name: `agent/${nodeName}`,
    netns: paths.netns(nodeName),
    command: process.execPath,
    args: [CLI_MAIN, 'agent', '--config', configFile],
    markers: ['agent', '--config', configFile],
  });
}

/** The agent configuration of a lab node: the cluster settings of the topology, the node's lab paths. */
export function labAgentConfig(lab: string, topology: Topology, nodeName: string): AgentConfigInput {
  const paths = labPaths(lab);
  return {
    nodeName,
    kubeconfig: paths.nodeKubeconfig(nodeName),
    gobgp: { target: `unix://${paths.gobgpSocket(nodeName)}` },
    cluster: { asn: topology.cluster.asn, podRanges: topology.cluster.podRanges },
    bgp: { mesh: topology.cluster.mesh, connectRetry: 1 },
    cni: { confDir: paths.cniConfDir(nodeName), ipamDataDir: paths.cniIpamDir(nodeName), cacheDir: paths.cniCacheDir(nodeName), bridge: LAB_CNI_BRIDGE },
    log: { level: 'debug', format: 'text' },
    // Each node netns has its own loopback: the same port on every node does not collide.
    metrics: { address: '127.0.0.1:9476' },
  };
}

function startExternalHost(lab: string, ext: Topology['externalHosts'][number], recorder: LabStateRecorder): void {
  const paths = labPaths(lab);
  const socket = externalHostSocket(paths, ext.name);
  spawnDaemon(paths, recorder, {
    name: `podserver/${ext.name}`,
    netns: paths.netns(ext.name),
    command: process.execPath,
    args: [PODSERVER_SCRIPT, '--identity', `external/${ext.name}`, '--ports', ext.ports.map((p) => `${p.port}/${p.protocol}`).join(','), '--control', socket],
    markers: ['--control', socket],
  });
}

// ---- convergence -------------------------------------------------------------------------------------------

export async function gobgpdAnswers(socket: string, signal?: AbortSignal): Promise<boolean> {
  const result = await execa('gobgp', ['--target', `unix://${socket}`, 'global'], { reject: false, timeout: 10_000, ...(signal === undefined ? {} : { cancelSignal: signal }) });
  return result.exitCode === 0 && /AS:/.test(result.stdout);
}

interface PodView {
  namespace: string;
  name: string;
  node: string;
  phase: string;
  ips: string[];
}

async function listPods(lab: string): Promise<PodView[]> {
  const res = await apiRequest(labPaths(lab).apiSocket, 'GET', '/api/v1/pods');
  if (res.status !== 200) throw new LabError('LAB_API_FAILED', `GET /api/v1/pods answered ${res.status}`);
  const items = ((res.body as { items?: unknown[] }).items ?? []) as {
    metadata?: { namespace?: string; name?: string };
    spec?: { nodeName?: string };
    status?: { phase?: string; podIPs?: { ip: string }[]; podIP?: string };
  }[];
  return items.map((p) => ({
    namespace: p.metadata?.namespace ?? '',
    name: p.metadata?.name ?? '',
    node: p.spec?.nodeName ?? '',
    phase: p.status?.phase ?? 'Pending',
    ips: p.status?.podIPs?.map((i) => i.ip) ?? (p.status?.podIP === undefined ? [] : [p.status.podIP]),
  }));
}

async function waitConverged(lab: string, topology: Topology, layout: LabLayout, deadline: number, signal?: AbortSignal): Promise<void> {
  const paths = labPaths(lab);
  const state = readLabState(lab);
  const checkDaemons = (): void => {
    for (const p of state?.processes ?? []) {
      if (!processAlive(p.pid)) throw new LabError('LAB_START_FAILED', `${p.name} (PID ${p.pid}) exited:\n${logTail(paths, p.name)}`);
    }
  };
  await waitFor('router-to-router BGP sessions', deadline, signal, async () => {
    checkDaemons();
    const pending: string[] = [];
    for (const router of topology.routers) {
      const neighbors = await bgpSummary(frrFiles(paths.frrDir(router.name)), signal);
      for (const s of pendingFabricSessions(router.name, layout, neighbors)) pending.push(`${router.name}->${s.peer} ${s.family} ${s.peerAddress}`);
    }
    return pending.length === 0 ? undefined : `not Established: ${pending.join(', ')}`;
  });
  await waitFor('gobgpd on every node', deadline, signal, async () => {
    const silent: string[] = [];
    for (const node of layout.nodes) if (!(await gobgpdAnswers(paths.gobgpSocket(node.name), signal))) silent.push(node.name);
    return silent.length === 0 ? undefined : `no answer from gobgpd on ${silent.join(', ')}`;
  });
  // Sessions up is not routes in: a router that (re)starts holds its updates back (update-delay) until its peers
  // sent End-of-RIB, so the fabric's routes can lag the sessions by up to that delay.
  await waitFor('every node reaches the external hosts and the other nodes', deadline, signal, async () => {
    checkDaemons();
    const targets = [...layout.externals.flatMap((e) => e.addresses.map((a) => a.split('/')[0] ?? a)), ...layout.nodes.flatMap((n) => n.addresses.map((a) => a.address))];
    const unreachable: string[] = [];
    await Promise.all(
      layout.nodes.flatMap((node) =>
        targets
          .filter((target) => !node.addresses.some((a) => a.address === target))
          .map(async (target) => {
            const ping = await execa('ip', ['netns', 'exec', paths.netns(node.name), 'ping', '-n', '-q', '-c', '1', '-W', '1', target], { reject: false, timeout: 5_000 });
            if (ping.exitCode !== 0) unreachable.push(`${node.name}->${target}`);
          }),
      ),
    );
    return unreachable.length === 0 ? undefined : `unreachable: ${unreachable.sort().join(', ')}`;
  });
  await waitFor('pods Running with IPs', deadline, signal, async () => {
    checkDaemons();
    const pods = await listPods(lab);
    const waiting = topology.kubernetes.pods
      .filter((want) => {
        const got = pods.find((p) => p.namespace === want.namespace && p.name === want.name);
        const families = topology.nodes.find((n) => n.name === want.nodeName)?.podCIDRs.length ?? 1;
        return got === undefined || got.phase !== 'Running' || got.ips.length < families;
      })
      .map((p) => `${p.namespace}/${p.name}`);
    return waiting.length === 0 ? undefined : `waiting for ${waiting.join(', ')}`;
  });
}

// ---- status ------------------------------------------------------------------------------------------------

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
    vtyDir: string;
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
    const files = frrFiles(paths.frrDir(router.name));
    let neighbors: BgpNeighborState[] = [];
    try {
      neighbors = await bgpSummary(files, signal);
    } catch {
      // router down: its sessions show as unknown below
    }
    const fabric = layout.fabric.filter((s) => s.router === router.name);
    routers.push({
      name: router.name,
      role: router.role,
      asn: router.asn,
      netns: paths.netns(router.name),
      vtyDir: files.runDir,
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
    lines.push(`  ${r.name} (${r.role}, AS ${r.asn}, netns ${r.netns})`);
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

// ---- exec --------------------------------------------------------------------------------------------------

export interface ExecTarget {
  netns: string;
  kind: 'pod' | 'node' | 'router' | 'host';
  member: string;
}

/** `NAMESPACE/POD`, `node/N`, `router/R` or `host/EXT` to the namespace it names. */
export function resolveExecTarget(lab: string, topology: Topology, target: string): ExecTarget {
  const paths = labPaths(lab);
  const [kind, member, ...rest] = target.split('/');
  if (kind === undefined || member === undefined || member === '' || rest.length > 0) {
    throw new LabError('LAB_BAD_TARGET', `target "${target}": expected NAMESPACE/POD, node/NODE, router/ROUTER or host/EXTERNAL`);
  }
  const known = (names: string[], what: string): void => {
    if (!names.includes(member)) throw new LabError('LAB_BAD_TARGET', `target "${target}": no ${what} named "${member}" (have: ${names.join(', ')})`);
  };
  switch (kind) {
    case 'node':
      known(topology.nodes.map((n) => n.name), 'node');
      return { netns: paths.netns(member), kind: 'node', member };
    case 'router':
      known(topology.routers.map((r) => r.name), 'router');
      return { netns: paths.netns(member), kind: 'router', member };
    case 'host':
      known(topology.externalHosts.map((e) => e.name), 'external host');
      return { netns: paths.netns(member), kind: 'host', member };
    default:
      return { netns: paths.podNetns(kind, member), kind: 'pod', member: `${kind}/${member}` };
  }
}

/** Runs a command in the target's namespace (with the caller's stdio by default); resolves to its exit code. */
export async function labExec(lab: string, target: string, argv: string[], options: { stdio?: 'inherit' | 'ignore' } = {}): Promise<number> {
  checkLabName(lab);
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  if (argv.length === 0) throw new LabError('LAB_BAD_TARGET', 'no command given (lab exec NAME TARGET -- CMD ...)');
  const topology = parseTopology(state.topologyText);
  const resolved = resolveExecTarget(lab, topology, target);
  if (!(await listNetns()).includes(resolved.netns)) throw new LabError('LAB_BAD_TARGET', `target "${target}": namespace ${resolved.netns} does not exist`);
  let command = argv;
  // vtysh in a router namespace talks to that router's daemons.
  if (resolved.kind === 'router' && argv[0] === 'vtysh' && !argv.includes('--vty_socket')) {
    command = ['vtysh', '--vty_socket', frrFiles(labPaths(lab).frrDir(resolved.member)).runDir, ...argv.slice(1)];
  }
  return await new Promise<number>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', resolved.netns, ...command], { stdio: options.stdio ?? 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, sig) => resolve(code ?? (sig === null ? 1 : 128)));
  });
}

// ---- down --------------------------------------------------------------------------------------------------

export interface LabDownOptions {
  log?: Logger;
  /** How long processes get after SIGTERM before SIGKILL (default 3 s). */
  graceMs?: number;
}

/** Labs that have a directory under LAB_ROOT (every `up` creates it before anything else). */
export function listLabs(): string[] {
  try {
    return readdirSync(LAB_ROOT, { withFileTypes: true })
      .filter((d) => d.isDirectory() && LAB_NAME_PATTERN.test(d.name))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

/**
 * SIGKILL for a process of a machine that goes away; one that ended since it was listed (a short-lived child of
 * the agent, such as a restore finishing) is no error.
 */
function killGone(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function terminate(pids: Map<number, string>, graceMs: number, log?: Logger): Promise<void> {
  for (const [pid, what] of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      pids.delete(pid);
    }
    log?.debug('SIGTERM', { pid, what });
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && [...pids.keys()].some(processAlive)) await sleep(50);
  for (const [pid, what] of pids) {
    if (!processAlive(pid)) continue;
    log?.warn('process ignored SIGTERM; killing', { pid, what });
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const killDeadline = Date.now() + 5_000;
  while (Date.now() < killDeadline && [...pids.keys()].some(processAlive)) await sleep(50);
}

/** Processes on the host whose command line names this lab's directory or `--lab NAME`: ours, by construction. */
function labProcessesByCmdline(lab: string): Map<number, string> {
  const found = new Map<number, string>();
  const dirPrefix = labDir(lab) + '/';
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || pid === process.ppid) continue;
    const args = readCmdline(pid);
    if (args === undefined) continue;
    const labFlag = args.some((a, i) => (a === '--lab' && args[i + 1] === lab) || a === `--lab=${lab}`);
    if (labFlag || args.some((a) => a.includes(dirPrefix) || a.endsWith(labDir(lab)))) found.set(pid, args.slice(0, 3).join(' '));
  }
  return found;
}

function mountsOf(lab: string): string[] {
  const dirPrefix = labDir(lab) + '/';
  const netnsPrefix = `/run/netns/${lab}-`;
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dirPrefix) || m === labDir(lab) || m.startsWith(netnsPrefix));
}

/** Everything `up` made, gone: processes, pod and member namespaces, FRR pathspace dirs, mounts, files. */
export async function labDown(lab: string, options: LabDownOptions = {}): Promise<void> {
  checkLabName(lab);
  const { log } = options;
  const graceMs = options.graceMs ?? 3_000;
  const paths = labPaths(lab);
  let state: LabState | undefined;
  try {
    state = readLabState(lab);
  } catch (err) {
    log?.warn('lab state unreadable; cleaning by names', { lab, error: err instanceof Error ? err.message : String(err) });
  }
  const ours = (ns: string): boolean => ns.startsWith(`${lab}-`);

  // 1. Recorded processes, each only if /proc/PID/cmdline still is the process we started.
  const victims = new Map<number, string>();
  for (const p of state?.processes ?? []) {
    if (cmdlineMatches(p.pid, p.cmdlineMarkers)) victims.set(p.pid, p.name);
    else if (processAlive(p.pid)) log?.warn('recorded PID now belongs to another process; left alone', { pid: p.pid, name: p.name });
  }
  await terminate(victims, graceMs, log);

  // 2. Whatever else runs inside our namespaces (pod servers, a daemon started just before a crash) or names our
  //    lab on its command line.
  const namespaces = [...new Set([...(state?.netns ?? []), ...(await listNetns()).filter(ours)])].filter(ours);
  const existing = new Set(await listNetns());
  const stragglers = labProcessesByCmdline(lab);
  for (const ns of namespaces) {
    if (!existing.has(ns)) continue;
    for (const pid of await netnsPids(ns)) if (pid !== process.pid) stragglers.set(pid, `in netns ${ns}`);
  }
  await terminate(stragglers, graceMs, log);

  // 3. Namespaces: pods first (their veths live in node namespaces), then nodes, routers, hosts.
  const podPrefix = paths.podNetns('', '').replace(/-+$/, '-');
  const ordered = [...namespaces.filter((n) => n.startsWith(podPrefix)), ...namespaces.filter((n) => !n.startsWith(podPrefix))];
  for (const ns of ordered) {
    if (!(await listNetns()).includes(ns)) continue;
    await deleteNetns(ns);
  }

  // 4. FRR pathspace directories.
  const pathspaces = new Set(state?.frrPathspaces ?? []);
  try {
    for (const entry of readdirSync(FRR_STATE_ROOT)) if (ours(entry)) pathspaces.add(entry);
  } catch {
    // no /var/run/frr: nothing of ours there
  }
  for (const ps of pathspaces) if (ours(ps)) await rm(path.join(FRR_STATE_ROOT, ps), { recursive: true, force: true });

  // 5. Mounts (none expected: `ip netns delete` unmounts its own) and finally the files.
  for (const mount of mountsOf(lab).reverse()) {
    const result = await execa('umount', ['-l', mount], { reject: false });
    if (result.exitCode !== 0) log?.warn('umount failed', { mount, error: result.stderr });
  }
  await rm(paths.dir, { recursive: true, force: true });
  log?.info('lab down', { lab, processes: victims.size + stragglers.size, namespaces: ordered.length });
}

/** `down --all`: every lab under LAB_ROOT whose name starts with `prefix` (all labs without one). */
export async function labDownAll(options: LabDownOptions & { prefix?: string } = {}): Promise<string[]> {
  const labs = listLabs().filter((l) => options.prefix === undefined || l.startsWith(options.prefix));
  for (const lab of labs) await labDown(lab, options);
  return labs;
}

// ---- what the agents installed ------------------------------------------------------------------------------

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

// ---- faults --------------------------------------------------------------------------------------------------

/** Stops a daemon of the lab (e.g. `agent/r1n1`, `gobgpd/r1n1`) with the given signal and waits until it is gone. */
export async function labStop(lab: string, processName: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const record = processRecordOf(lab, processName);
  if (!processAlive(record.pid) || !cmdlineMatches(record.pid, record.cmdlineMarkers)) return;
  process.kill(record.pid, signal);
  const deadline = Date.now() + 15_000;
  while (processAlive(record.pid)) {
    if (Date.now() > deadline) throw new LabError('LAB_START_FAILED', `${processName} (pid ${record.pid}) did not stop on ${signal}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts a stopped daemon of the lab again with the command line it was first started with; returns its PID. */
export function labStart(lab: string, processName: string): number {
  const record = processRecordOf(lab, processName);
  if (processAlive(record.pid) && cmdlineMatches(record.pid, record.cmdlineMarkers)) {
    throw new LabError('LAB_BAD_TARGET', `${processName} is running (pid ${record.pid})`);
  }
  const [command, ...args] = record.argv ?? [];
  if (command === undefined) throw new LabError('LAB_START_FAILED', `${processName}: its command line was not recorded`);
  // The recorded command line already enters the namespace (`ip netns exec` / `nsenter`): run it as it was.
  const recorder = new LabStateRecorder(readLabState(lab)!);
  const started = spawnDaemon(labPaths(lab), recorder, { name: record.name, command, args, markers: record.cmdlineMarkers });
  recorder.recordProcess({ ...started, ...(record.netns === undefined ? {} : { netns: record.netns }) });
  return started.pid;
}

export async function labRestart(lab: string, processName: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
  await labStop(lab, processName, signal);
  return labStart(lab, processName);
}

/**
 * A router's routing stack restarts as on a real ToR: bgpd and zebra stopped (bgpd first) and started again,
 * zebra first and bgpd once zebra answers. zebra -K keeps the kernel routes meanwhile, so forwarding goes on.
 * Returns the time the router was without its daemons (ms).
 */
export async function labRouterRestart(lab: string, router: string, options: { signal?: NodeJS.Signals; downMs?: number } = {}): Promise<number> {
  const daemons = ['bgpd', 'zebra'] as const;
  for (const daemon of daemons) processRecordOf(lab, `${daemon}/${router}`); // both exist before anything stops
  const stoppedAt = performance.now();
  for (const daemon of daemons) await labStop(lab, `${daemon}/${router}`, options.signal ?? 'SIGKILL');
  if (options.downMs !== undefined) await sleep(options.downMs);
  labStart(lab, `zebra/${router}`);
  const files = frrFiles(labPaths(lab).frrDir(router));
  await waitFor(`zebra of ${router} answers`, Date.now() + 30_000, undefined, async () => {
    const result = await execa('vtysh', ['--vty_socket', files.runDir, '-d', 'zebra', '-c', 'show version'], { reject: false, timeout: 5_000 });
    return result.exitCode === 0 ? undefined : `vtysh exit ${result.exitCode}`;
  });
  labStart(lab, `bgpd/${router}`);
  return Math.round(performance.now() - stoppedAt);
}

function processRecordOf(lab: string, processName: string): ProcessRecord {
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  const record = state.processes.find((p) => p.name === processName);
  if (record === undefined) throw new LabError('LAB_BAD_TARGET', `lab ${lab} has no process named ${processName}`);
  return record;
}
