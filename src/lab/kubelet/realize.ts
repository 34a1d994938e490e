// The lab kubelet's applier: creates and removes pod network namespaces, runs the CNI plugins and the pod
// servers, and keeps one record per pod in labPaths(lab).podDir so a restarted kubelet adopts what exists.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { familyOf } from '../../routes/ip-prefix.js';
import { labPaths, type LabPaths } from '../paths.js';
import { formatPortList, type ServedPort } from '../podserver.js';
import { cniAdd, cniDel, resultIps, type CniConflist, type CniResult, type CniRuntimeArgs } from './cni.js';
import type { RealizedPod } from './plan.js';
import type { DesiredPod, PortMapping } from './podspec.js';

const execFileAsync = promisify(execFile);

/** One pod the kubelet set up: everything needed to adopt it after a restart and to tear it down. */
export interface PodRecord {
  version: 1;
  lab: string;
  node: string;
  namespace: string;
  name: string;
  uid: string;
  hostNetwork: boolean;
  state: 'adding' | 'ready';
  /** The pod's netns name (null for hostNetwork pods). */
  netns: string | null;
  containerId: string;
  /** The configuration list the pod was ADDed with: DEL must use the same one. */
  conflist: CniConflist | null;
  cniResult: CniResult | null;
  ips: string[];
  ports: ServedPort[];
  portMappings: PortMapping[];
  controlSocket: string;
  startTime: string;
}

export class PodRealizeError extends Error {
  constructor(
    readonly code: 'POD_HELD_BY_OTHER_NODE' | 'POD_SERVER_FAILED' | 'POD_NETNS_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'PodRealizeError';
  }
}

export const POD_IFNAME = 'eth0';
const NETNS_DIR = '/run/netns';

/** The pod server script next to this module's directory (src/lab/podserver.js in any build output). */
export const POD_SERVER_SCRIPT = fileURLToPath(new URL('../podserver.js', import.meta.url));

/** CNI_CONTAINERID: the pod uid is unique for the pod's life, and host-local records it next to each IP. */
export function containerIdFor(uid: string): string {
  return `podroute-lab-${uid}`;
}

export function podFileBase(paths: LabPaths, namespace: string, name: string): string {
  return path.join(paths.podDir, `${namespace}_${name}`);
}

export const podRecordPath = (paths: LabPaths, ns: string, name: string): string => `${podFileBase(paths, ns, name)}.json`;
export const podPidPath = (paths: LabPaths, ns: string, name: string): string => `${podFileBase(paths, ns, name)}.pid`;
export const podLogPath = (paths: LabPaths, ns: string, name: string): string => `${podFileBase(paths, ns, name)}.log`;

/** A named netns is a bind mount of an nsfs inode: a leftover plain file does not count. */
export function netnsMounted(name: string): boolean {
  try {
    return fs.statSync(path.join(NETNS_DIR, name)).dev !== fs.statSync(NETNS_DIR).dev;
  } catch {
    return false;
  }
}

async function ip(args: string[]): Promise<void> {
  try {
    await execFileAsync('ip', args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new PodRealizeError('POD_NETNS_FAILED', `ip ${args.join(' ')}: ${stderr || (err as Error).message}`);
  }
}

/** Waits (bounded) until none of `addresses` is a tentative IPv6 address in this netns or in `netns`. */
export async function waitIpv6Settled(addresses: readonly string[], netns: string | undefined, timeoutMs = 10_000): Promise<void> {
  const wanted = new Set(addresses.filter((a) => familyOf(a) === 'ipv6'));
  if (wanted.size === 0) return;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const args = [...(netns === undefined ? [] : ['-n', netns]), '-j', '-6', 'addr', 'show', 'tentative'];
    const { stdout } = await execFileAsync('ip', args);
    const links = JSON.parse(stdout || '[]') as { addr_info?: { local?: string }[] }[];
    const tentative = links.flatMap((l) => l.addr_info ?? []).some((a) => a.local !== undefined && wanted.has(a.local));
    if (!tentative || Date.now() > deadline) return;
    await sleep(50);
  }
}

export async function deleteNetns(name: string): Promise<void> {
  if (netnsMounted(name)) await ip(['netns', 'delete', name]);
  else await fsp.rm(path.join(NETNS_DIR, name), { force: true });
}

/** Whether `pid` is alive and is the pod server serving `controlSocket` (a reused pid is not). */
export function isPodServer(pid: number, controlSocket: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = argv.indexOf('--control');
    return i !== -1 && argv[i + 1] === controlSocket;
  } catch {
    return false;
  }
}

export function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** SIGTERM, then SIGKILL if it lingers; only when the pid is still that pod's server. */
export async function stopPodServer(pid: number, controlSocket: string, graceMs = 3000): Promise<void> {
  if (!isPodServer(pid, controlSocket)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isPodServer(pid, controlSocket)) return;
    await sleep(25);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
  const killDeadline = Date.now() + 2000;
  while (Date.now() < killDeadline && isPodServer(pid, controlSocket)) await sleep(25);
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '';
  }
}

async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fsp.writeFile(tmp, text);
  await fsp.rename(tmp, file);
}

export interface PodRealizerOptions {
  lab: string;
  node: string;
  cniPath?: string;
  /** Node.js flags for the pod servers; many run at once, so their heaps are kept small. */
  podServerNodeFlags?: string[];
}

export class PodRealizer {
  private readonly paths: LabPaths;

  constructor(private readonly options: PodRealizerOptions) {
    this.paths = labPaths(options.lab);
  }

  async readRecord(namespace: string, name: string): Promise<PodRecord | undefined> {
    try {
      return JSON.parse(await fsp.readFile(podRecordPath(this.paths, namespace, name), 'utf8')) as PodRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** This node's records, with what the kernel and /proc say about them now. */
  async observe(): Promise<{ realized: RealizedPod[]; records: Map<string, PodRecord> }> {
    await fsp.mkdir(this.paths.podDir, { recursive: true });
    const records = new Map<string, PodRecord>();
    const realized: RealizedPod[] = [];
    for (const file of await fsp.readdir(this.paths.podDir)) {
      if (!file.endsWith('.json')) continue;
      let record: PodRecord;
      try {
        record = JSON.parse(await fsp.readFile(path.join(this.paths.podDir, file), 'utf8')) as PodRecord;
      } catch {
        continue; // being written (atomic rename) or foreign: not ours to judge
      }
      if (record.version !== 1 || record.lab !== this.options.lab || record.node !== this.options.node) continue;
      records.set(`${record.namespace}/${record.name}`, record);
      const pid = readPid(podPidPath(this.paths, record.namespace, record.name));
      realized.push({
        namespace: record.namespace,
        name: record.name,
        uid: record.uid,
        hostNetwork: record.hostNetwork,
        state: record.state,
        ports: record.ports,
        ips: record.ips,
        netnsPresent: record.netns === null ? true : netnsMounted(record.netns),
        serverRunning: pid !== undefined && isPodServer(pid, record.controlSocket),
      });
    }
    return { realized, records };
  }

  private runtimeArgs(record: PodRecord): CniRuntimeArgs {
    return {
      containerId: record.containerId,
      netns: path.join(NETNS_DIR, record.netns ?? ''),
      ifName: POD_IFNAME,
      args: {
        K8S_POD_NAMESPACE: record.namespace,
        K8S_POD_NAME: record.name,
        K8S_POD_INFRA_CONTAINER_ID: record.containerId,
        K8S_POD_UID: record.uid,
      },
      ...(record.portMappings.length > 0 ? { capabilityArgs: { portMappings: record.portMappings } } : {}),
    };
  }

  /**
   * Sets a pod up: record (`adding`) → netns → CNI ADD → record (`ready`) → pod server. A crash in between
   * leaves an `adding` record, which the planner turns into a clean removal and a fresh add.
   */
  async add(pod: DesiredPod, conflist: CniConflist | undefined): Promise<PodRecord> {
    const existing = await this.readRecord(pod.namespace, pod.name);
    if (existing !== undefined && existing.node !== this.options.node) {
      throw new PodRealizeError(
        'POD_HELD_BY_OTHER_NODE',
        `pod ${pod.namespace}/${pod.name} is still set up on node ${existing.node}; waiting for it to be removed there`,
      );
    }
    if (!pod.hostNetwork && conflist === undefined) throw new Error('add: a CNI configuration list is required');
    const netns = pod.hostNetwork ? null : this.paths.podNetns(pod.namespace, pod.name);
    const record: PodRecord = {
      version: 1,
      lab: this.options.lab,
      node: this.options.node,
      namespace: pod.namespace,
      name: pod.name,
      uid: pod.uid,
      hostNetwork: pod.hostNetwork,
      state: 'adding',
      netns,
      containerId: containerIdFor(pod.uid),
      conflist: pod.hostNetwork ? null : (conflist ?? null),
      cniResult: null,
      ips: [],
      ports: pod.ports,
      portMappings: pod.portMappings,
      controlSocket: this.paths.podSocket(pod.namespace, pod.name),
      startTime: new Date().toISOString(),
    };
    await fsp.mkdir(this.paths.podDir, { recursive: true });
    await this.writeRecord(record);
    if (netns !== null && conflist !== undefined) {
      // A netns of this name without a record of ours is a leftover of a crash before the record existed.
      if (netnsMounted(netns)) await deleteNetns(netns);
      await ip(['netns', 'add', netns]);
      await ip(['-n', netns, 'link', 'set', 'lo', 'up']);
      const result = await cniAdd(conflist, this.runtimeArgs(record), this.cniOptions());
      record.cniResult = result;
      record.ips = resultIps(result);
      // A fresh bridge's IPv6 gateway address stays tentative (DAD) for about a second: the node cannot reach
      // the pod over IPv6 meanwhile, nor the pod leave its subnet. Ready must mean reachable.
      const gateways = (result.ips ?? []).map((i) => i.gateway).filter((g): g is string => g !== undefined);
      await waitIpv6Settled(gateways, undefined);
      await waitIpv6Settled(record.ips, netns);
    }
    record.state = 'ready';
    await this.writeRecord(record);
    await this.startServer(record);
    return record;
  }

  /** Stops the server, CNI DEL, deletes the netns, then forgets the pod. Safe to repeat after a failure. */
  async remove(namespace: string, name: string): Promise<void> {
    const record = await this.readRecord(namespace, name);
    if (record === undefined || record.node !== this.options.node) return;
    const pidFile = podPidPath(this.paths, namespace, name);
    const pid = readPid(pidFile);
    if (pid !== undefined) await stopPodServer(pid, record.controlSocket);
    if (record.netns !== null) {
      if (record.conflist !== null) {
        await cniDel(record.conflist, this.runtimeArgs(record), record.cniResult ?? undefined, this.cniOptions());
      }
      await deleteNetns(record.netns);
    }
    await fsp.rm(pidFile, { force: true });
    await fsp.rm(record.controlSocket, { force: true });
    await fsp.rm(podLogPath(this.paths, namespace, name), { force: true });
    await fsp.rm(podRecordPath(this.paths, namespace, name), { force: true });
  }

  /** Restarts a ready pod's server (it died, or the pod's ports changed) without touching its network. */
  async restartServer(pod: DesiredPod): Promise<void> {
    const record = await this.readRecord(pod.namespace, pod.name);
    if (record === undefined || record.state !== 'ready') throw new Error(`restartServer: ${pod.namespace}/${pod.name} is not set up`);
    const pid = readPid(podPidPath(this.paths, pod.namespace, pod.name));
    if (pid !== undefined) await stopPodServer(pid, record.controlSocket);
    record.ports = pod.ports;
    await this.writeRecord(record);
    await this.startServer(record);
  }

  private cniOptions(): { cniPath?: string; cacheDir: string } {
    const cacheDir = this.paths.cniCacheDir(this.options.node);
    return this.options.cniPath === undefined ? { cacheDir } : { cniPath: this.options.cniPath, cacheDir };
  }

  private async writeRecord(record: PodRecord): Promise<void> {
    await writeFileAtomic(podRecordPath(this.paths, record.namespace, record.name), JSON.stringify(record, null, 2) + '\n');
  }

  /**
   * Starts the pod server detached (it outlives a kubelet restart) and waits for its control socket, which it
   * opens only after every port is bound.
   */
  private async startServer(record: PodRecord): Promise<void> {
    const { namespace, name } = record;
    const logFile = podLogPath(this.paths, namespace, name);
    await fsp.rm(record.controlSocket, { force: true });
    const serverArgs = [
      ...(this.options.podServerNodeFlags ?? ['--max-old-space-size=32', '--max-semi-space-size=1']),
      POD_SERVER_SCRIPT,
      '--identity',
      `${namespace}/${name}`,
      '--ports',
      formatPortList(record.ports),
      '--control',
      record.controlSocket,
    ];
    // `ip netns exec` execs in place: the pid we get is the pod server's.
    const [command, args] =
      record.netns === null
        ? [process.execPath, serverArgs]
        : ['ip', ['netns', 'exec', record.netns, process.execPath, ...serverArgs]];
    const log = fs.openSync(logFile, 'a');
    let exited: string | undefined;
    try {
      const child = spawn(command, args, { detached: true, stdio: ['ignore', log, log] });
      child.on('error', (err) => (exited = err.message));
      child.on('exit', (code, signal) => (exited = `exited (${signal ?? String(code)})`));
      child.unref();
      if (child.pid === undefined) throw new PodRealizeError('POD_SERVER_FAILED', `pod ${namespace}/${name}: server did not start`);
      await writeFileAtomic(podPidPath(this.paths, namespace, name), `${child.pid}\n`);
    } finally {
      fs.closeSync(log);
    }
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (exited !== undefined) break;
      if (await canConnect(record.controlSocket)) return;
      await sleep(50);
    }
    throw new PodRealizeError(
      'POD_SERVER_FAILED',
      `pod ${namespace}/${name}: server ${exited ?? 'did not open its control socket'}: ${tail(logFile)}`,
    );
  }
}

/**
 * Removes every pod of a lab without the API (for `lab down`, also after a crash): stops the pod servers named by
 * the pidfiles, deletes the pods' network namespaces, and the pod directory. No CNI DEL: the node namespaces that
 * hold the bridges and the IPAM state go away with the lab.
 */
export async function cleanupLabPods(lab: string): Promise<void> {
  const paths = labPaths(lab);
  let files: string[] = [];
  try {
    files = await fsp.readdir(paths.podDir);
  } catch {
    // no pod directory
  }
  await Promise.all(
    files
      .filter((f) => f.endsWith('.pid'))
      .map(async (f) => {
        const base = f.slice(0, -'.pid'.length);
        const pid = readPid(path.join(paths.podDir, f));
        if (pid !== undefined) await stopPodServer(pid, path.join(paths.podDir, `${base}.sock`));
      }),
  );
  const prefix = `${paths.netns('pod')}-`;
  let names: string[] = [];
  try {
    names = await fsp.readdir(NETNS_DIR);
  } catch {
    // no netns directory
  }
  for (const name of names.filter((n) => n.startsWith(prefix))) await deleteNetns(name);
  await fsp.rm(paths.podDir, { recursive: true, force: true });
}
