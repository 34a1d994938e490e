// The lab kubelet: one per lab node, running inside the node's netns. It relays the lab API server into the
// node, watches the Pods bound to the node and realizes them (netns + real CNI plugins + a pod server), reports
// their status, and serves probes from the node itself. Pods outlive the kubelet: a restarted one adopts them.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  CoreV1Api,
  KubeConfig,
  ListWatch,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import ipaddr from 'ipaddr.js';
import { createLogger, type Logger } from '../../observe/log.js';
import { familyOf, ipVersion, parseIpAddress, prefixContainsAddress, requireIpCidr, type IpPrefix } from '../../routes/ip-prefix.js';
import { renderKubeconfig } from '../apiserver/index.js';
import { LAB_NAME_PATTERN, NODE_API_PROXY, labPaths } from '../paths.js';
import { serveProbeControl, type ProbeControlServer } from '../probe.js';
import { findConflist, parseConflist, type CniConflist } from './cni.js';
import { desiredPodStatus, planPods, podKey, podStatusUpToDate, type PodAction } from './plan.js';
import { isPodForNode, readPodSpec, type DesiredPod } from './podspec.js';
import { PodRealizer, type PodRecord } from './realize.js';
import { startApiRelay, type ApiRelay } from './relay.js';

export interface LabKubeletOptions {
  lab: string;
  node: string;
  logger?: Logger;
  signal?: AbortSignal;
  /** Full re-read of the world even without events (repairs drift such as a killed pod server). Default 10 s. */
  resyncMs?: number;
  /** CNI plugin directory. Default /usr/lib/cni. */
  cniPath?: string;
}

export class KubeletError extends Error {
  constructor(
    readonly code: 'KUBELET_BAD_OPTIONS' | 'KUBELET_PRIVATE_MOUNT_NAMESPACE',
    message: string,
  ) {
    super(message);
    this.name = 'KubeletError';
  }
}

const NODE_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Pods set up at the same time; CNI plugins are separate processes and the machine is small. */
const ADD_CONCURRENCY = 4;

/** The node's own probe socket: probes run from the node netns (host-network view), served by the kubelet. */
export function nodeProbeSocket(lab: string, node: string): string {
  return path.join(labPaths(lab).nodeDir(node), 'probe.sock');
}

export function nodeApiServerUrl(): string {
  return `http://${NODE_API_PROXY.host}:${NODE_API_PROXY.port}`;
}

/** Kubeconfig for processes inside a node netns (the podroute agent): the kubelet's relay, no credentials. */
export function renderNodeKubeconfig(node: string): string {
  return renderKubeconfig(nodeApiServerUrl(), `podroute-lab-${node}`);
}

/**
 * `ip netns exec` runs its command in a private mount namespace in which /run/netns is a slave mount: a netns
 * created there is invisible to the host (`lab exec`, `lab down`, tests). The kubelet must therefore share the
 * host's mount namespace, i.e. be started with `nsenter --net=/run/netns/<lab>-<node>`. Reads /proc/self/mountinfo.
 */
export function netnsMountsPropagateToHost(mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): boolean {
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields[4] !== '/run/netns') continue;
    const sep = fields.indexOf('-');
    const optional = fields.slice(6, sep === -1 ? undefined : sep);
    return optional.some((f) => f.startsWith('shared:')) || !optional.some((f) => f.startsWith('master:'));
  }
  // /run/netns is not a mount point yet: `ip netns add` will make it a shared one in this mount namespace.
  return true;
}

/** The command line that starts a process in a lab node's netns while keeping the host's mount namespace. */
export function nodeNetnsCommand(lab: string, node: string, command: string[]): string[] {
  return ['nsenter', `--net=/run/netns/${labPaths(lab).netns(node)}`, '--', ...command];
}

/** A one-slot "something changed" signal: bursts of events cost one reconcile. */
class DirtySignal {
  private dirty = true;
  private wake: (() => void) | undefined;
  mark(): void {
    this.dirty = true;
    this.wake?.();
  }
  async wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (!this.dirty && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done(): void {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        }
        this.wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
      this.wake = undefined;
    }
    this.dirty = false;
  }
}

/** Per-pod retry back-off so one broken pod neither spins nor blocks the others. */
class BackOff {
  private readonly entries = new Map<string, { until: number; delay: number }>();
  ready(key: string): boolean {
    return (this.entries.get(key)?.until ?? 0) <= Date.now();
  }
  failed(key: string): void {
    const delay = Math.min((this.entries.get(key)?.delay ?? 500) * 2, 30_000);
    this.entries.set(key, { until: Date.now() + delay, delay });
  }
  succeeded(key: string): void {
    this.entries.delete(key);
  }
  nextDue(): number | undefined {
    const times = [...this.entries.values()].map((e) => e.until);
    return times.length === 0 ? undefined : Math.min(...times);
  }
}

async function runLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, () => worker()));
}

function errorText(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  const base = err instanceof Error ? err.message : String(err);
  return typeof body === 'string' && body !== '' && !base.includes(body) ? `${base}: ${body.slice(0, 300)}` : base;
}

/** This netns's global unicast addresses outside the pod ranges: the node's IPs when the Node object has none. */
function localNodeAddresses(conflist: CniConflist | undefined): string[] {
  const podRanges: IpPrefix[] = [];
  for (const plugin of conflist?.plugins ?? []) {
    const ranges = (plugin.ipam as { ranges?: { subnet?: string }[][] } | undefined)?.ranges ?? [];
    for (const set of ranges) {
      for (const r of set) if (r.subnet !== undefined) podRanges.push(requireIpCidr(r.subnet));
    }
  }
  const out: string[] = [];
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      const parsed = ipaddr.parse(a.address);
      if (parsed.range() !== 'unicast' && parsed.range() !== 'private' && parsed.range() !== 'uniqueLocal') continue;
      const address = parseIpAddress(a.address);
      if (address !== undefined && podRanges.some((range) => prefixContainsAddress(range, address))) continue;
      out.push(a.address);
    }
  }
  return out.sort((a, b) => ipVersion(familyOf(a)) - ipVersion(familyOf(b)));
}

/** Runs the lab kubelet until `signal` aborts. Returns after its own sockets are closed; pods keep running. */
export async function runLabKubelet(options: LabKubeletOptions): Promise<void> {
  const { lab, node } = options;
  if (!LAB_NAME_PATTERN.test(lab)) throw new KubeletError('KUBELET_BAD_OPTIONS', `lab: "${lab}" does not match ${String(LAB_NAME_PATTERN)}`);
  if (!NODE_NAME_PATTERN.test(node)) throw new KubeletError('KUBELET_BAD_OPTIONS', `node: "${node}" is not a DNS label`);
  if (!netnsMountsPropagateToHost()) {
    throw new KubeletError(
      'KUBELET_PRIVATE_MOUNT_NAMESPACE',
      `the lab kubelet runs in a private mount namespace (started by "ip netns exec"?): pod namespaces it creates ` +
        `would be invisible to the host; start it with: ${nodeNetnsCommand(lab, node, ['node', '...']).join(' ')}`,
    );
  }
  const log = options.logger ?? createLogger({ component: 'lab-kubelet' });
  const signal = options.signal ?? new AbortController().signal;
  const paths = labPaths(lab);
  const resyncMs = options.resyncMs ?? 10_000;
  await fsp.mkdir(paths.podDir, { recursive: true });
  await fsp.mkdir(paths.nodeDir(node), { recursive: true });

  const closers: (() => Promise<void>)[] = [];
  try {
    const relay: ApiRelay = await startApiRelay({
      host: NODE_API_PROXY.host,
      port: NODE_API_PROXY.port,
      apiSocket: paths.apiSocket,
      onError: (err) => log.warn('API relay error', { error: err.message }),
    });
    closers.push(() => relay.close());
    const kubeconfigFile = paths.nodeKubeconfig(node);
    await fsp.writeFile(`${kubeconfigFile}.tmp`, renderNodeKubeconfig(node));
    await fsp.rename(`${kubeconfigFile}.tmp`, kubeconfigFile);
    const probeServer: ProbeControlServer = await serveProbeControl(nodeProbeSocket(lab, node));
    closers.push(() => probeServer.close());
    log.info('lab kubelet started', { lab, node, relay: nodeApiServerUrl(), probeSocket: probeServer.socketPath });

    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'lab', server: nodeApiServerUrl(), skipTLSVerify: true }],
      users: [{ name: node }],
      contexts: [{ name: 'lab', cluster: 'lab', user: node }],
      currentContext: 'lab',
    });
    const core = kc.makeApiClient(CoreV1Api);
    const kubelet = new KubeletLoop({ lab, node, log, core, cniPath: options.cniPath });
    await kubelet.run(kc, signal, resyncMs, closers);
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    log.info('lab kubelet stopped', { lab, node });
  }
}

interface KubeletLoopOptions {
  lab: string;
  node: string;
  log: Logger;
  core: CoreV1Api;
  cniPath: string | undefined;
}

class KubeletLoop {
  private readonly dirty = new DirtySignal();
  private readonly backOff = new BackOff();
  private readonly realizer: PodRealizer;
  private readonly warned = new Set<string>();
  /** True once a full list succeeded: before that, an empty cache must not be read as "no pods". */
  private synced = false;
  private informerErrors = 0;
  private nodeIPs: { ips: string[]; at: number } | undefined;
  private conflistWaitLogged = false;

  constructor(private readonly o: KubeletLoopOptions) {
    this.realizer = new PodRealizer({ lab: o.lab, node: o.node, ...(o.cniPath === undefined ? {} : { cniPath: o.cniPath }) });
  }

  async run(kc: KubeConfig, signal: AbortSignal, resyncMs: number, closers: (() => Promise<void>)[]): Promise<void> {
    const fieldSelector = `spec.nodeName=${this.o.node}`;
    const informer = new ListWatch<V1Pod>(
      '/api/v1/pods',
      new Watch(kc),
      () => this.o.core.listPodForAllNamespaces({ fieldSelector }),
      false,
      undefined,
      fieldSelector,
    );
    for (const verb of ['add', 'update', 'delete'] as const) informer.on(verb, () => this.dirty.mark());
    let retryDelay = 250;
    let retryTimer: NodeJS.Timeout | undefined;
    const start = async (): Promise<void> => {
      const errorsBefore = this.informerErrors;
      await informer.start().catch((err: unknown) => this.onInformerError(err));
      if (this.informerErrors === errorsBefore && !signal.aborted) {
        if (!this.synced) this.o.log.info('pod watch synced', { pods: informer.list().length });
        this.synced = true;
        retryDelay = 250;
        this.dirty.mark();
      }
    };
    // The informer stops on any error but a 410 (which it relists itself); restart it with back-off and keep the
    // last known pods meanwhile: an unreachable API server must not make the kubelet tear pods down.
    informer.on('error', (err: unknown) => {
      this.onInformerError(err);
      if (signal.aborted || retryTimer !== undefined) return;
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        void start();
      }, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10_000);
    });
    closers.push(async () => {
      clearTimeout(retryTimer);
      await informer.stop();
    });
    void start();

    while (!signal.aborted) {
      const due = this.backOff.nextDue();
      const wait = due === undefined ? resyncMs : Math.max(50, Math.min(resyncMs, due - Date.now()));
      await this.dirty.wait(wait, signal);
      if (signal.aborted || !this.synced) continue;
      try {
        const again = await this.reconcile(informer.list());
        if (again) setTimeout(() => this.dirty.mark(), 500).unref();
      } catch (err) {
        this.o.log.error('reconcile failed', { error: errorText(err) });
        setTimeout(() => this.dirty.mark(), 1000).unref();
      }
    }
  }

  private onInformerError(err: unknown): void {
    this.informerErrors++;
    this.o.log.warn('pod watch interrupted; retrying', { error: errorText(err) });
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.o.log.warn(message);
  }

  /** One level-triggered pass. Returns true when work is waiting on something that appears by itself (CNI config). */
  private async reconcile(pods: readonly V1Pod[]): Promise<boolean> {
    const paths = labPaths(this.o.lab);
    const desired: DesiredPod[] = [];
    const objects = new Map<string, V1Pod>();
    for (const pod of pods) {
      if (!isPodForNode(pod, this.o.node)) continue;
      const reading = readPodSpec(pod, paths.podSocket);
      const uid = pod.metadata?.uid ?? '';
      for (const w of reading.warnings) this.warnOnce(`${uid}:${w}`, w);
      if (reading.error !== undefined) {
        this.warnOnce(`${uid}:${reading.error.message}`, `skipping pod: ${reading.error.message}`);
        continue;
      }
      if (reading.pod === undefined) continue;
      desired.push(reading.pod);
      objects.set(podKey(reading.pod), pod);
    }
    const { realized } = await this.realizer.observe();
    const actions = planPods(desired, realized);
    const found = await findConflist(paths.cniConfDir(this.o.node));
    let conflist: CniConflist | undefined;
    if (found !== undefined) {
      try {
        conflist = parseConflist(found.text, found.path);
      } catch (err) {
        this.warnOnce(`conflist:${found.text}`, `ignoring CNI configuration: ${errorText(err)}`);
      }
    }
    let waitingForConflist = false;
    const act = async (action: PodAction): Promise<void> => {
      const key = podKey(action.pod);
      if (!this.backOff.ready(key)) return;
      try {
        if (action.kind === 'remove') {
          this.o.log.info('removing pod', { pod: key, uid: action.pod.uid, reason: action.reason });
          await this.realizer.remove(action.pod.namespace, action.pod.name);
        } else if (action.kind === 'add') {
          if (!action.pod.hostNetwork && conflist === undefined) {
            waitingForConflist = true;
            return;
          }
          const record = await this.realizer.add(action.pod, conflist);
          this.o.log.info('pod running', { pod: key, ips: record.ips, hostNetwork: record.hostNetwork });
        } else {
          this.o.log.info('restarting pod server', { pod: key, reason: action.reason });
          await this.realizer.restartServer(action.pod);
        }
        this.backOff.succeeded(key);
      } catch (err) {
        this.backOff.failed(key);
        this.o.log.error(`${action.kind} failed`, { pod: key, error: errorText(err) });
      }
    };
    // Removals first and one by one (they free names and IPs the additions may need).
    for (const a of actions.filter((x) => x.kind === 'remove')) await act(a);
    await runLimited(actions.filter((x) => x.kind !== 'remove'), ADD_CONCURRENCY, act);
    if (waitingForConflist && !this.conflistWaitLogged) {
      this.conflistWaitLogged = true;
      this.o.log.info('waiting for a CNI configuration list', { dir: paths.cniConfDir(this.o.node) });
    }
    await this.reportStatuses(desired, objects, conflist);
    return waitingForConflist;
  }

  private async reportStatuses(desired: DesiredPod[], objects: Map<string, V1Pod>, conflist: CniConflist | undefined): Promise<void> {
    const { realized, records } = await this.realizer.observe();
    const running = new Map(realized.filter((r) => r.state === 'ready' && r.serverRunning).map((r) => [podKey(r), r]));
    for (const d of desired) {
      const key = podKey(d);
      const r = running.get(key);
      const record: PodRecord | undefined = records.get(key);
      const pod = objects.get(key);
      if (r === undefined || record === undefined || pod === undefined || r.uid !== d.uid) continue;
      const hostIPs = await this.hostIPs(conflist);
      const containers = (pod.spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image ?? '' }));
      const input = { podIPs: d.hostNetwork ? hostIPs : record.ips, hostIPs, startTime: record.startTime, containers };
      if (podStatusUpToDate(pod, input)) continue;
      try {
        await this.o.core.patchNamespacedPodStatus(
          { namespace: d.namespace, name: d.name, body: { status: desiredPodStatus(input, new Date().toISOString()) } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.o.log.info('pod status reported', { pod: key, podIPs: input.podIPs });
      } catch (err) {
        this.o.log.warn('pod status patch failed', { pod: key, error: errorText(err) });
      }
    }
  }

  /** The node's InternalIPs from its Node object (cached briefly), else this netns's own addresses. */
  private async hostIPs(conflist: CniConflist | undefined): Promise<string[]> {
    if (this.nodeIPs !== undefined && Date.now() - this.nodeIPs.at < 10_000) return this.nodeIPs.ips;
    let ips: string[] = [];
    try {
      const nodeObj = await this.o.core.readNode({ name: this.o.node });
      ips = (nodeObj.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address);
    } catch (err) {
      this.warnOnce('node-read', `cannot read Node ${this.o.node} (${errorText(err)}); using this netns's addresses`);
    }
    if (ips.length === 0) ips = localNodeAddresses(conflist);
    this.nodeIPs = { ips, at: Date.now() };
    return ips;
  }
}
