// What runs in a lab, and with which command line and configuration: FRR or BIRD on the routers; gobgpd, the lab
// kubelet and `podroute agent` on each node; a pod server on each external host; the API server on the host.
import { mkdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import YAML from 'yaml';
import type { AgentConfigInput } from '../config/agent-config.js';
import type { Logger } from '../observe/log.js';
import { LabError } from './errors.js';
import { renderNodeKubeconfig } from './kubelet/kubelet.js';
import { labPaths, type LabPaths } from './paths.js';
import { logTail, processAlive, spawnDaemon } from './processes.js';
import { startRouter } from './routers.js';
import type { LabStateRecorder } from './state.js';
import { planLayout, type LabLayout, type Topology } from './topology.js';
import { torPasswordFile } from './cluster-objects.js';
import { waitFor } from './wait.js';

/** The CNI bridge the agents of the lab configure (the agent's default). */
export const LAB_CNI_BRIDGE = 'podroute0';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The CLI entry point next to this module (works from dist/ and from any --outDir build). */
export const CLI_MAIN = path.join(here, '..', 'cli', 'main.js');
export const PODSERVER_SCRIPT = path.join(here, 'podserver.js');

/** The control socket of an external host's server (probes from outside the cluster run through it). */
export function externalHostSocket(paths: LabPaths, host: string): string {
  return path.join(paths.dir, 'hosts', `${host}.sock`);
}

/** The control socket of a node's BFD companion. */
export function bfdControlSocket(paths: LabPaths, nodeName: string): string {
  return path.join(paths.nodeDir(nodeName), 'bfd.sock');
}

export async function startRouters(lab: string, topology: Topology, layout: LabLayout, recorder: LabStateRecorder, log?: Logger): Promise<void> {
  await Promise.all(
    topology.routers.map(async (router) => {
      await startRouter(lab, topology, layout, router, recorder);
      log?.info('router started', { lab, router: router.name, stack: router.stack });
    }),
  );
}

export function gobgpdArgs(socket: string): string[] {
  return ['--api-hosts', `unix://${socket}`, '--pprof-disable', '--log-plain', '--log-level', 'info'];
}

export function startGobgpd(lab: string, nodeName: string, recorder: LabStateRecorder): void {
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

export async function startApiServer(lab: string, recorder: LabStateRecorder, deadline: number, signal?: AbortSignal): Promise<number> {
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

/**
 * The lab's stand-ins for what a cluster's control plane and kube-proxy do for Services: the EndpointSlice
 * controller and the service proxy (src/lab/services/). Host processes next to the API server; the agent does
 * not depend on them.
 */
export function startServiceStandIns(lab: string, recorder: LabStateRecorder): void {
  const paths = labPaths(lab);
  for (const name of SERVICE_STAND_INS) {
    spawnDaemon(paths, recorder, {
      name,
      command: process.execPath,
      args: [CLI_MAIN, 'lab', name, '--lab', lab],
      markers: [name, '--lab', lab],
    });
  }
}

/** Process names (and `podroute lab` subcommands) of the Service stand-ins. */
export const SERVICE_STAND_INS = ['endpointslice-controller', 'service-proxy'] as const;

/**
 * Per node: the lab kubelet (it relays the API server into the node netns and realizes pods once a CNI conflist
 * exists), then `podroute agent` next to the node's gobgpd, configured like a DaemonSet's ConfigMap would be.
 */
export async function startNode(lab: string, topology: Topology, nodeName: string, recorder: LabStateRecorder): Promise<void> {
  const paths = labPaths(lab);
  await mkdir(paths.cniConfDir(nodeName), { recursive: true });
  await mkdir(paths.cniIpamDir(nodeName), { recursive: true });
  // Written here as well as by the kubelet, so the agent never races the kubelet for it.
  await writeFile(paths.nodeKubeconfig(nodeName), renderNodeKubeconfig(nodeName));
  // The TCP MD5 secrets of the node's racks, as a mounted Secret would hold them (the Node annotation names them).
  await mkdir(paths.nodeSecretsDir(nodeName), { recursive: true, mode: 0o700 });
  for (const rack of planLayout(topology).racks.filter((r) => r.password !== undefined && r.nodes.includes(nodeName))) {
    await writeFile(path.join(paths.nodeSecretsDir(nodeName), torPasswordFile(rack.tor)), `${rack.password ?? ''}\n`, { mode: 0o600 });
  }
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
  if (topology.cluster.bfd !== undefined) {
    // The BFD companion, as the DaemonSet's sidecar: it outlives agent restarts.
    const socket = bfdControlSocket(paths, nodeName);
    spawnDaemon(paths, recorder, {
      name: `bfd/${nodeName}`,
      netns: paths.netns(nodeName),
      command: process.execPath,
      args: [CLI_MAIN, 'bfd', '--control-socket', socket],
      markers: ['bfd', '--control-socket', socket],
    });
  }
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
    bgp: {
      mesh: topology.cluster.mesh,
      connectRetry: 1,
      passwordDir: paths.nodeSecretsDir(nodeName),
      ...(topology.cluster.bfd === undefined ? {} : { bfd: { enabled: true, ...topology.cluster.bfd, controlSocket: bfdControlSocket(paths, nodeName) } }),
    },
    services: {
      loadBalancerPools: topology.services.loadBalancerPools.map((p) => ({ ...p, cidrs: [...p.cidrs] })),
      externalIPRanges: topology.services.externalIPRanges,
      clusterIPRanges: topology.services.clusterIPRanges,
    },
    cni: { confDir: paths.cniConfDir(nodeName), ipamDataDir: paths.cniIpamDir(nodeName), cacheDir: paths.cniCacheDir(nodeName), bridge: LAB_CNI_BRIDGE },
    log: { level: 'debug', format: 'text' },
    // Each node netns has its own loopback: the same port on every node does not collide.
    metrics: { address: '127.0.0.1:9476' },
  };
}

export function startExternalHost(lab: string, ext: Topology['externalHosts'][number], recorder: LabStateRecorder): void {
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

export async function gobgpdAnswers(socket: string, signal?: AbortSignal): Promise<boolean> {
  const result = await execa('gobgp', ['--target', `unix://${socket}`, 'global'], { reject: false, timeout: 10_000, ...(signal === undefined ? {} : { cancelSignal: signal }) });
  return result.exitCode === 0 && /AS:/.test(result.stdout);
}
