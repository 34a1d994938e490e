// A kubelet for one DaemonSet pod on one lab node, with podman: the pod spec of the rendered manifests run as a
// kubelet runs it (src/lab/kubelet/podman-pod.ts translates it), inside the node's network namespace (the node's
// "host network"). Init containers one after the other, each must exit 0; then the containers, each restarted
// when it exits (restartPolicy Always); ConfigMap, Secret and projected volumes written as files with their
// modes, emptyDirs (medium Memory on a tmpfs) shared by the containers, hostPath volumes mapped to the lab node's
// own directories. The API server is the lab's, behind api-tls-front.ts: HTTPS signed by the service-account CA
// the projected volume carries, and the pod's token required.
// Every container carries the lab name in its name; stop() removes exactly those, also after a failed start.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import {
  containerName,
  httpProbeUrl,
  podmanRunArgs,
  restartDelay,
  volumeFiles,
  type PodFacts,
  type PodmanPlacement,
  type WireContainer,
  type WirePodSpec,
  type WireProbe,
} from '../../../src/lab/kubelet/podman-pod.js';
import { labPaths } from '../../../src/lab/paths.js';
import { repoRoot } from '../lab/leftovers.js';
import { pollUntil } from '../../poll.js';

/** podman and buildah settings of this machine (runc, no default rlimits, no network unless asked for). */
export const CONTAINERS_ENV = { CONTAINERS_CONF: path.join(repoRoot(), 'deploy/images/containers.conf') };
/** Where the kubelet's API server address points inside the node: api-tls-front.ts in the node's netns. */
export const API_FRONT = { host: '127.0.0.1', port: 6444 } as const;
const API_FRONT_SCRIPT = fileURLToPath(new URL('./api-tls-front.js', import.meta.url));

/** The lab node's own directory for each hostPath of the DaemonSet (a real node's paths, the lab node's places). */
export function labNodeHostPaths(lab: string, node: string): Record<string, string> {
  const paths = labPaths(lab);
  return {
    '/etc/cni/net.d': paths.cniConfDir(node),
    // The lab's kubelet runs the plugins from Debian's /usr/lib/cni; the init container fills this one as on a node.
    '/opt/cni/bin': path.join(paths.nodeDir(node), 'cni', 'bin'),
    '/var/lib/cni': paths.cniCacheDir(node),
    // One lock for every iptables user of the machine, as on a node.
    '/run/xtables.lock': '/run/xtables.lock',
    // Per network namespace: a process of the node's netns sees (and writes) the node's own net.* sysctls here.
    '/proc/sys/net': '/proc/sys/net',
  };
}

export interface RenderedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  data?: Record<string, string>;
  spec?: unknown;
}

export interface PodmanKubeletOptions {
  lab: string;
  node: string;
  /** The rendered overlay: its DaemonSet, ConfigMaps and Secrets. */
  objects: RenderedObject[];
  /** Changes a ConfigMap's data before it is projected (the agent configuration adapted to the lab). */
  adaptConfigMap?: (name: string, data: Record<string, string>) => Record<string, string>;
}

export interface ContainerExit {
  container: string;
  exitCode: number;
  at: number;
}

/** The fields of `podman inspect` the test reads. */
export interface ContainerInspect {
  State: { Pid: number; Running: boolean; ExitCode: number };
  HostConfig: { ReadonlyRootfs: boolean };
  Mounts: { Destination: string; Source: string; RW: boolean }[];
}

interface ProcessHandle {
  child: ChildProcess;
  exited: Promise<void>;
}

export class PodmanKubelet {
  readonly spec: WirePodSpec;
  readonly podName: string;
  readonly podNamespace: string;
  readonly dir: string;
  readonly netns: string;
  readonly facts: PodFacts;
  /** Every exit of a running container the runner saw (and restarted it after). */
  readonly exits: ContainerExit[] = [];
  private readonly placement: PodmanPlacement;
  /** ConfigMaps by name (the rendered ones, adapted, and kube-root-ca.crt once the CA is made). */
  private readonly configMaps = new Map<string, Record<string, string>>();
  /** Where start() placed each volume on the host. */
  private readonly volumeHostPaths = new Map<string, string>();
  private readonly tmpfsMounts: string[] = [];
  private readonly supervisors: Promise<void>[] = [];
  private front: ProcessHandle | undefined;
  private readonly stopping = new AbortController();

  constructor(private readonly options: PodmanKubeletOptions) {
    const ds = options.objects.find((o) => o.kind === 'DaemonSet');
    if (ds === undefined) throw new Error('the rendered objects hold no DaemonSet');
    const template = (ds.spec as { template: { spec: WirePodSpec } }).template;
    this.spec = template.spec;
    this.podNamespace = ds.metadata.namespace ?? 'default';
    this.podName = `${ds.metadata.name}-${options.node}`;
    const paths = labPaths(options.lab);
    this.dir = path.join(paths.nodeDir(options.node), 'daemonset-pod');
    this.netns = paths.netns(options.node);
    const configMaps = this.configMaps;
    const secrets = new Map<string, Record<string, Buffer>>();
    for (const o of options.objects) {
      if (o.kind === 'ConfigMap') configMaps.set(o.metadata.name, options.adaptConfigMap?.(o.metadata.name, { ...o.data }) ?? { ...o.data });
      if (o.kind === 'Secret') secrets.set(o.metadata.name, Object.fromEntries(Object.entries(o.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])));
    }
    this.facts = {
      namespace: this.podNamespace,
      name: this.podName,
      nodeName: options.node,
      serviceAccountName: template.spec.serviceAccountName ?? 'default',
      configMaps,
      secrets,
      serviceAccountToken: randomBytes(32).toString('base64url'),
    };
    this.placement = {
      namePrefix: `${options.lab}-${ds.metadata.name}`,
      netnsPath: `/run/netns/${this.netns}`,
      volumeHostPaths: this.volumeHostPaths,
      kubeletEnv: { KUBERNETES_SERVICE_HOST: API_FRONT.host, KUBERNETES_SERVICE_PORT: String(API_FRONT.port) },
      labels: { 'podroute.io/lab': options.lab },
    };
  }

  get containerNames(): string[] {
    return [...(this.spec.initContainers ?? []), ...this.spec.containers].map((c) => containerName(this.placement, c.name));
  }

  nameOf(container: string): string {
    return containerName(this.placement, container);
  }

  container(name: string): WireContainer {
    const found = [...(this.spec.initContainers ?? []), ...this.spec.containers].find((c) => c.name === name);
    if (found === undefined) throw new Error(`the pod has no container ${name}`);
    return found;
  }

  /** Init containers in order (each must exit 0), then the containers, supervised. */
  async start(): Promise<void> {
    await this.removeContainers();
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    await this.startApiFront();
    await this.placeVolumes();
    for (const init of this.spec.initContainers ?? []) {
      const name = this.nameOf(init.name);
      await podman(['run', ...podmanRunArgs(this.spec, init, this.placement, this.facts)]);
      const { stdout } = await podman(['wait', name]);
      if (stdout.trim() !== '0') throw new Error(`init container ${init.name} exited ${stdout.trim()}:\n${await this.logs(init.name)}`);
    }
    for (const c of this.spec.containers) {
      await podman(['run', ...podmanRunArgs(this.spec, c, this.placement, this.facts)]);
      this.supervisors.push(this.supervise(c.name));
    }
  }

  /**
   * restartPolicy Always, with the kubelet's back-off (restartDelay). The kubelet makes a new container each time;
   * starting the same one again is the same for a read-only root.
   */
  private async supervise(container: string): Promise<void> {
    const name = this.nameOf(container);
    const signal = this.stopping.signal;
    let exits = 0;
    let startedAt = Date.now();
    while (!signal.aborted) {
      const waited = await execa('podman', ['wait', name], { env: CONTAINERS_ENV, reject: false });
      if (signal.aborted || waited.exitCode !== 0) return;
      this.exits.push({ container, exitCode: Number(waited.stdout.trim()), at: Date.now() });
      const next = restartDelay(exits, Date.now() - startedAt);
      exits = next.exits;
      await sleep(next.delayMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      startedAt = Date.now();
      await execa('podman', ['start', name], { env: CONTAINERS_ENV, reject: false });
    }
  }

  async logs(container: string): Promise<string> {
    const r = await execa('podman', ['logs', '--tail', '40', this.nameOf(container)], { env: CONTAINERS_ENV, reject: false, all: true });
    return r.all ?? '';
  }

  /** `podman kill --signal KILL` of one container (the runner restarts it). */
  async kill(container: string): Promise<void> {
    await podman(['kill', '--signal', 'KILL', this.nameOf(container)]);
  }

  async inspect(container: string): Promise<ContainerInspect> {
    const { stdout } = await podman(['inspect', this.nameOf(container)]);
    return (JSON.parse(stdout) as ContainerInspect[])[0]!;
  }

  /** One run of a container's probe, as the kubelet runs it: HTTP GET in the pod's network (2xx/3xx passes) or exec. */
  async probe(container: string, which: 'livenessProbe' | 'readinessProbe'): Promise<{ ok: boolean; detail: string }> {
    const c = this.container(container);
    const spec: WireProbe | undefined = c[which];
    if (spec === undefined) throw new Error(`${container} has no ${which}`);
    const timeout = `${spec.timeoutSeconds ?? 1}`;
    if (spec.exec !== undefined) {
      const r = await execa('podman', ['exec', this.nameOf(container), ...spec.exec.command], { env: CONTAINERS_ENV, reject: false, all: true });
      return { ok: r.exitCode === 0, detail: `exit ${r.exitCode}: ${r.all ?? ''}` };
    }
    const url = httpProbeUrl(c, spec);
    const r = await execa('ip', ['netns', 'exec', this.netns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', timeout, url], { reject: false });
    const code = Number(r.stdout);
    return { ok: code >= 200 && code < 400, detail: `${url}: ${r.stdout || r.stderr}` };
  }

  /**
   * The pod deleted, as the kubelet does it: SIGTERM to every container at once, SIGKILL to those still running
   * after terminationGracePeriodSeconds; no restart meanwhile. Then stop(). Returns each container's exit code.
   */
  async terminate(): Promise<Record<string, number>> {
    this.stopping.abort();
    const grace = this.spec.terminationGracePeriodSeconds ?? 30;
    await podman(['stop', '--time', String(grace), ...this.spec.containers.map((c) => this.nameOf(c.name))]);
    const exitCodes: Record<string, number> = {};
    for (const c of this.spec.containers) exitCodes[c.name] = (await this.inspect(c.name)).State.ExitCode;
    await this.stop();
    return exitCodes;
  }

  /** Removes every container it made (by name), the API front, the tmpfs mounts and the pod's files. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.removeContainers();
    await Promise.all(this.supervisors);
    if (this.front !== undefined && this.front.child.exitCode === null) {
      this.front.child.kill('SIGTERM');
      await this.front.exited;
    }
    for (const mount of this.tmpfsMounts.splice(0)) await execa('umount', [mount], { reject: false });
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async removeContainers(): Promise<void> {
    await podman(['rm', '--force', '--ignore', '--time', '0', ...this.containerNames]);
  }

  private async placeVolumes(): Promise<void> {
    const hostPaths = labNodeHostPaths(this.options.lab, this.options.node);
    const volumeHostPaths = this.volumeHostPaths;
    for (const volume of this.spec.volumes ?? []) {
      const dir = path.join(this.dir, 'volumes', volume.name);
      const files = volumeFiles(volume, this.facts);
      if (files !== undefined) {
        mkdirSync(dir, { recursive: true });
        for (const f of files) {
          mkdirSync(path.dirname(path.join(dir, f.path)), { recursive: true });
          writeFileSync(path.join(dir, f.path), f.content, { mode: f.mode });
        }
        volumeHostPaths.set(volume.name, dir);
      } else if (volume.emptyDir !== undefined) {
        mkdirSync(dir, { recursive: true, mode: 0o777 });
        if (volume.emptyDir.medium === 'Memory') {
          const size = volume.emptyDir.sizeLimit === undefined ? [] : [`size=${volume.emptyDir.sizeLimit.replace(/i$/, '').toLowerCase()}`];
          await execa('mount', ['-t', 'tmpfs', '-o', ['mode=0777', ...size].join(','), `${this.options.lab}-${volume.name}`, dir]);
          this.tmpfsMounts.push(dir);
        }
        volumeHostPaths.set(volume.name, dir);
      } else if (volume.hostPath !== undefined) {
        const mapped = hostPaths[volume.hostPath.path];
        if (mapped === undefined) throw new Error(`hostPath ${volume.hostPath.path} has no lab node place`);
        if (volume.hostPath.type === 'DirectoryOrCreate') mkdirSync(mapped, { recursive: true });
        if (volume.hostPath.type === 'FileOrCreate' && !existsSync(mapped)) closeSync(openSync(mapped, 'a'));
        if (!existsSync(mapped)) throw new Error(`hostPath ${volume.hostPath.path} (${mapped}) does not exist`);
        volumeHostPaths.set(volume.name, mapped);
      } else {
        throw new Error(`volume ${volume.name}: a kind the lab runner does not place`);
      }
    }
  }

  /** The service-account CA, the API server's certificate for 127.0.0.1 and the TLS front in the node's netns. */
  private async startApiFront(): Promise<void> {
    const tls = path.join(this.dir, 'api-tls');
    mkdirSync(tls, { recursive: true });
    const file = (n: string): string => path.join(tls, n);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await execa('openssl', ['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '1', '-subj', `/CN=${this.options.lab}-serviceaccount-ca`]);
    await execa('openssl', ['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=kube-apiserver']);
    writeFileSync(file('san.ext'), `subjectAltName=IP:${API_FRONT.host}\n`);
    await execa('openssl', ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', file('san.ext'), '-out', file('server.crt')]);
    writeFileSync(file('token'), this.facts.serviceAccountToken, { mode: 0o600 });
    // What kube-controller-manager publishes in every namespace: the CA that signs the API server's certificate.
    this.configMaps.set('kube-root-ca.crt', { 'ca.crt': readFileSync(file('ca.crt'), 'utf8') });

    const log = openSync(path.join(this.dir, 'api-tls-front.log'), 'a');
    const args = ['--listen', `${API_FRONT.host}:${API_FRONT.port}`, '--cert', file('server.crt'), '--key', file('server.key'), '--token-file', file('token'), '--api-socket', labPaths(this.options.lab).apiSocket];
    const child = spawn('nsenter', [`--net=/run/netns/${this.netns}`, '--', process.execPath, API_FRONT_SCRIPT, ...args], { stdio: ['ignore', log, log] });
    closeSync(log);
    this.front = { child, exited: new Promise((resolve) => child.once('exit', () => resolve())) };
    await pollUntil('the API TLS front to listen', async () => {
      if (child.exitCode !== null) throw new Error(`api-tls-front exited ${child.exitCode}`);
      const r = await execa('ip', ['netns', 'exec', this.netns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', file('ca.crt'), `https://${API_FRONT.host}:${API_FRONT.port}/version`], { reject: false });
      return r.stdout === '401';
    }, { timeoutMs: 10_000, intervalMs: 100 });
  }
}

async function podman(args: string[]): Promise<{ stdout: string }> {
  const r = await execa('podman', args, { env: CONTAINERS_ENV, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`podman ${args.slice(0, 3).join(' ')}... failed (${r.exitCode}): ${r.all ?? ''}`);
  return { stdout: r.stdout };
}

/**
 * The images the DaemonSet names, built from the current compiled tree with `deploy/images/build.sh` (its caches
 * make this a no-op when nothing changed, ~10 s when the agent layer must be redone). Returns the milliseconds taken.
 */
export async function buildImages(distRoot: string): Promise<number> {
  const started = performance.now();
  const r = await execa(path.join(repoRoot(), 'deploy/images/build.sh'), [], { cwd: repoRoot(), env: { DIST: distRoot }, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`deploy/images/build.sh failed (${r.exitCode}):\n${r.all ?? ''}`);
  return Math.round(performance.now() - started);
}
