// The DaemonSet's pod, run as a kubelet would on one node of a two-racks lab (issue 18 part 2): the images built
// from the current tree (deploy/images/build.sh, cached), `kubectl kustomize deploy/overlays/as-per-rack` (the
// overlay whose AS-per-rack design two-racks is), the pod spec run with podman in the node's network namespace by
// PodmanKubelet. The lab's own gobgpd and agent of that node are stopped first (and the routes and the conflist
// they made removed), so whatever the node does afterwards is the pod's doing. The node must then route, answer
// its probes, keep every probe stream whole while either container is killed -9 and restarted, and enforce a
// NetworkPolicy applied with kubectl. The node runs the previous agent's image first (the last commit that changed
// the agent, its parent compiled: previous-agent.ts) and is rolled to the current one as a DaemonSet RollingUpdate
// rolls a node, the first test; the others check the current agent.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { execa } from 'execa';
import YAML from 'yaml';
import { adaptAgentConfigToLab } from '../../../src/lab/kubelet/podman-pod.js';
import { labDown } from '../../../src/lab/down.js';
import { labStop } from '../../../src/lab/faults.js';
import { runMatrix } from '../../../src/lab/matrix.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections, parsePodReply, probe } from '../../../src/lab/probe.js';
import { readLabState } from '../../../src/lab/state.js';
import { labStatus, nodeRoutes } from '../../../src/lab/status.js';
import { cidrContainsAddress } from '../../../src/lab/topology.js';
import { labUp } from '../../../src/lab/up.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';
import { pollUntil } from '../../poll.js';
import { repoRoot, testLabName } from '../lab/leftovers.js';
import { ProbeStreams, stopLeftoverStreams, type FlowSpec, type FlowStats } from '../resilience/probe-stream.js';
import { RouteMonitor } from '../route-monitor.js';
import { buildImages, CONTAINERS_ENV, labNodeHostPaths, PodmanKubelet, type RenderedObject } from './podman-kubelet.js';
import { ensurePreviousAgentImage, previousAgentCommit, PREVIOUS_AGENT_IMAGE, withAgentImage } from './previous-agent.js';
import { vtysh, frrFiles } from '../../../src/lab/frr.js';

const LAB = testLabName('h18pod', 'pod');
const paths = labPaths(LAB);
const NODE = 'r1n1';
const OVERLAY = 'deploy/overlays/as-per-rack';
/** The compiled tree this test runs from (dist/ or .build/<x>/): the agent image is built from it. */
const DIST_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const POD_CIDRS: Record<string, string[]> = {
  r1n1: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
  r1n2: ['10.244.2.0/24', 'fd00:10:244:2::/64'],
  r2n1: ['10.244.3.0/24', 'fd00:10:244:3::/64'],
  r2n2: ['10.244.4.0/24', 'fd00:10:244:4::/64'],
};
/** Linux capability numbers of the names the DaemonSet lists. */
const CAPABILITY_BITS: Record<string, number> = { NET_BIND_SERVICE: 10, NET_ADMIN: 12, NET_RAW: 13 };

let kubelet: PodmanKubelet;
/** What the upgrade test saw of the node's kernel routes (checked by the test after it). */
let roll: { routesBefore: Map<string, string>; routesAfter: Map<string, string>; nodeEvents: string[]; torEvents: string[] } | undefined;
/** The pod as the current manifests render it (the upgrade rolls the node to it). */
let newPod: () => PodmanKubelet;
let phaseStart = performance.now();
/** Prints how long the phase that ends here took (this file's lab time is budgeted). */
function phase(what: string): void {
  console.log(`      ${what}: ${Math.round(performance.now() - phaseStart)} ms`);
  phaseStart = performance.now();
}
let pods: Map<string, { node: string; v4: string; v6: string; socket: string }>;

function capabilityMask(names: string[]): bigint {
  return names.reduce((mask, n) => mask | (1n << BigInt(CAPABILITY_BITS[n] ?? -1)), 0n);
}

/** /proc/PID/status fields of a container's first process, as the kernel sees it. */
function processStatus(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .map((l) => l.split(':\t'))
      .filter((kv) => kv.length === 2)
      .map(([k, v]) => [k!, v!.trim()]),
  );
}

interface PodStatusJson {
  peers: { address: string; state: string; type: string }[];
}

async function podStatus(): Promise<PodStatusJson> {
  const { stdout } = await execa('podman', ['exec', kubelet.nameOf('podroute'), 'podroute', 'status', '-c', '/etc/podroute/config.yaml', '-o', 'json'], { env: CONTAINERS_ENV, timeout: 30_000 });
  return JSON.parse(stdout) as PodStatusJson;
}

/** The node's peers (its ToR and the other node of its rack), all Established. */
async function allPeersEstablished(): Promise<true | undefined> {
  const s = await podStatus();
  return s.peers.length >= 2 && s.peers.every((p) => p.state === 'ESTABLISHED') ? true : undefined;
}

/** The node's kernel routes every other node's podCIDRs (v4 and v6), and every other node routes the node's. */
async function routesBothWays(): Promise<true | undefined> {
  const own = (await nodeRoutes(LAB, NODE)).map((r) => r.prefix);
  for (const [node, cidrs] of Object.entries(POD_CIDRS)) {
    if (node === NODE) continue;
    if (!cidrs.every((c) => own.includes(c))) return undefined;
    const theirs = (await nodeRoutes(LAB, node)).map((r) => r.prefix);
    if (!POD_CIDRS[NODE]!.every((c) => theirs.includes(c))) return undefined;
  }
  return true;
}

function flow(from: string, to: string, family: 'v4' | 'v6', protocol: 'tcp' | 'udp'): FlowSpec {
  const a = pods.get(from)!;
  const b = pods.get(to)!;
  return { name: `${from}(${a.node})->${to}(${b.node}) ${protocol} ${family}`, from: a.socket, target: b[family], port: 80, protocol, expectIdentity: to, ratePerSecond: 50 };
}

/** Into and out of the pod's node, from both racks, both families, TCP and UDP. */
const flows = (): FlowSpec[] => [flow('x/c', 'x/a', 'v4', 'tcp'), flow('x/a', 'y/a', 'v6', 'udp'), flow('x/b', 'z/c', 'v4', 'udp'), flow('y/b', 'z/b', 'v6', 'tcp')];
const summary = (stats: FlowStats[]): string => JSON.stringify(stats.map((s) => ({ flow: s.name, sent: s.sent, lost: s.lost, errors: s.errors })));

/** r1n1's addresses on its rack LAN: its ToR's neighbors (the ToR listens on the LAN, nodes dial it). */
const NODE_LAN_ADDRESSES = ['10.10.1.11', 'fd00:10:1::b'];
const TOR = 'tor1';

/** Our iptables chains and rules (policy PRPOL-*, masquerade PODROUTE-*) in both backends, with packet counters. */
async function ourRules(): Promise<{ rule: string; packets: number }[]> {
  const rules: { rule: string; packets: number }[] = [];
  for (const save of ['iptables-nft-save', 'ip6tables-nft-save', 'iptables-legacy-save', 'ip6tables-legacy-save']) {
    const { stdout } = await execa('ip', ['netns', 'exec', paths.netns(NODE), save, '-c'], { reject: false });
    let table = '';
    for (const line of stdout.split('\n')) {
      if (line.startsWith('*')) table = line;
      const chain = /^(:(PRPOL|PODROUTE)\S*)/.exec(line);
      if (chain !== null) rules.push({ rule: `${save} ${table} ${chain[1]}`, packets: 0 });
      const rule = /^\[(\d+):\d+\] (-A .*)$/.exec(line);
      if (rule !== null && /PRPOL|PODROUTE/.test(rule[2]!)) rules.push({ rule: `${save} ${table} ${rule[2]}`, packets: Number(rule[1]) });
    }
  }
  return rules;
}

/** Our ipsets and their members. */
async function ourIpsets(): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'exec', paths.netns(NODE), 'ipset', 'save']);
  return stdout.split('\n').filter((l) => l.includes('PRPOL')).sort();
}

/** The node's routes (main table, both families) by destination. */
async function routesByPrefix(netnsNode: string): Promise<Map<string, string>> {
  const routes = new Map<string, string>();
  for (const family of ['-4', '-6']) {
    const { stdout } = await execa('ip', ['-n', paths.netns(netnsNode), family, 'route', 'show'], { env: { LC_ALL: 'C' } });
    for (const line of stdout.split('\n').filter((l) => l.trim() !== '')) routes.set(line.split(' ')[0]!, line);
  }
  return routes;
}

/** The destination of an `ip monitor route` line ("Deleted" and the route type left out). */
function monitoredPrefix(line: string): string {
  const words = line.replace(/^\[[^\]]*\]\s*/, '').split(' ').filter((w) => w !== 'Deleted');
  return ['local', 'broadcast', 'unreachable', 'blackhole', 'multicast', 'anycast'].includes(words[0]!) ? words[1]! : words[0]!;
}

interface FrrNeighbor {
  bgpState: string;
  bgpTimerUpEstablishedEpoch?: number;
  connectionsEstablished?: number;
  connectionsDropped?: number;
  lastResetDueTo?: string;
  lastNotificationReason?: string;
  gracefulRestartInfo?: { remoteGrMode?: string; localGrMode?: string };
}

/** The ToR's view of the node's sessions (FRR's `show bgp neighbors json`). */
async function torNeighbors(): Promise<Record<string, FrrNeighbor>> {
  const all = JSON.parse(await vtysh(frrFiles(paths.frrDir(TOR)), 'show bgp neighbors json')) as Record<string, FrrNeighbor>;
  return Object.fromEntries(NODE_LAN_ADDRESSES.filter((a) => all[a] !== undefined).map((a) => [a, all[a]!]));
}

async function kubectl(args: string[], input?: string): Promise<void> {
  await execa('kubectl', ['--kubeconfig', paths.kubeconfig, ...args], { timeout: 30_000, ...(input === undefined ? {} : { input }) });
}

async function killAndCount(container: string): Promise<FlowStats[]> {
  const exitsBefore = kubelet.exits.length;
  const streams = new ProbeStreams(flows());
  streams.start();
  await new Promise((resolve) => setTimeout(resolve, 500));
  await kubelet.kill(container);
  phaseStart = performance.now();
  await pollUntil(`${container} restarted by the runner`, async () => kubelet.exits.length > exitsBefore && (await kubelet.inspect(container)).State.Running, { timeoutMs: 20_000, intervalMs: 200 });
  phase(`${container} restarted`);
  await pollUntil('the agent ready again', async () => (await kubelet.probe('podroute', 'readinessProbe')).ok, { timeoutMs: 60_000, intervalMs: 500 });
  phase('agent ready');
  await pollUntil('every peer Established again', allPeersEstablished, { timeoutMs: 60_000, intervalMs: 500 });
  phase('peers Established');
  await pollUntil('routes both ways', routesBothWays, { timeoutMs: 30_000 });
  const stats = await streams.stop();
  expect(kubelet.exits.slice(exitsBefore).map((e) => [e.container, e.exitCode])).to.deep.equal([[container, 137]]);
  return stats;
}

describe('deploy: the DaemonSet pod run as a kubelet would, with podman, on a lab node', function () {
  this.timeout(300_000);

  before(async function () {
    // On a machine that never built the images, build.sh runs mmdebstrap first (2 to 4 min).
    this.timeout(600_000);
    phaseStart = performance.now();
    await buildImages(DIST_ROOT);
    phase('images (deploy/images/build.sh, cached)');
    const previous = await previousAgentCommit();
    const { built } = await ensurePreviousAgentImage(previous.commit);
    phase(`${PREVIOUS_AGENT_IMAGE} of ${previous.commit.slice(0, 7)} (before ${previous.changedBy.slice(0, 7)}) ${built ? 'compiled and built' : 'cached'}`);
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    await labUp({ topologyFile: path.join(repoRoot(), 'topologies', 'two-racks.yaml'), name: LAB, timeoutMs: 180_000 });
    const lab = await labStatus(LAB);
    pods = new Map(
      lab.pods.map((p) => [
        `${p.namespace}/${p.name}`,
        { node: p.node, v4: p.ips.find((ip) => familyOf(ip) === 'ipv4')!, v6: p.ips.find((ip) => familyOf(ip) === 'ipv6')!, socket: paths.podSocket(p.namespace, p.name) },
      ]),
    );
    phase('lab up');
    // The node is the pod's from here on: the lab's agent and gobgpd stopped, what they made on the node removed
    // (its routes, its conflist), so routes, conflist and rules afterwards are the pod's.
    await labStop(LAB, `agent/${NODE}`, 'SIGTERM');
    await labStop(LAB, `gobgpd/${NODE}`, 'SIGKILL');
    for (const family of ['-4', '-6']) await execa('ip', ['netns', 'exec', paths.netns(NODE), 'ip', family, 'route', 'flush', 'proto', '44']);
    rmSync(path.join(paths.cniConfDir(NODE), '10-podroute.conflist'), { force: true });

    const { stdout } = await execa('kubectl', ['kustomize', path.join(repoRoot(), OVERLAY)]);
    const objects = YAML.parseAllDocuments(stdout).map((d) => d.toJS() as RenderedObject);
    const podOf = (rendered: RenderedObject[]): PodmanKubelet =>
      new PodmanKubelet({
        lab: LAB,
        node: NODE,
        objects: rendered,
        adaptConfigMap: (name, data) => (name.startsWith('podroute-config') ? { ...data, 'config.yaml': adaptAgentConfigToLab(data['config.yaml']!, { ipamDataDir: paths.cniIpamDir(NODE) }) } : data),
      });
    newPod = () => podOf(objects);
    // The node runs the previous agent first; the first test rolls it to the current one, the others check that.
    kubelet = podOf(withAgentImage(objects, PREVIOUS_AGENT_IMAGE));
    await kubelet.start();
    phase('lab daemons of the node stopped, pod of the previous agent started');
  });

  afterEach(async () => {
    await stopLeftoverStreams();
  });

  after(async () => {
    closeProbeConnections();
    await kubelet?.stop();
    const left = execFileSync('podman', ['ps', '--all', '--quiet', '--filter', `label=podroute.io/lab=${LAB}`], { encoding: 'utf8', env: { ...process.env, ...CONTAINERS_ENV } });
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    if (left.trim() !== '') throw new Error(`containers of lab ${LAB} left behind: ${left}`);
  });

  it('rolls the node from the previous agent to the current one as a DaemonSet RollingUpdate does: 0 probes lost, no policy rule or ipset rewritten, the rack neighbour keeps its routes to the node, the ToR its sessions (or a graceful restart)', async () => {
    phaseStart = performance.now();
    await pollUntil('the previous agent ready', async () => (await kubelet.probe('podroute', 'readinessProbe')).ok, { timeoutMs: 60_000, intervalMs: 500 });
    await pollUntil('every peer of the previous pod Established', allPeersEstablished, { timeoutMs: 60_000, intervalMs: 500 });
    await pollUntil('routes both ways (previous agent)', routesBothWays, { timeoutMs: 30_000 });
    phase('previous agent ready, peers Established, routes both ways');
    const routesBefore = await routesByPrefix(NODE);
    const rulesBefore = await ourRules();
    const ipsetsBefore = await ourIpsets();
    const torBefore = await torNeighbors();
    const monitors = {
      [NODE]: await RouteMonitor.start(paths.netns(NODE), { ignoreKernelRoutes: true }),
      [TOR]: await RouteMonitor.start(paths.netns(TOR), { ignoreKernelRoutes: true }),
      r1n2: await RouteMonitor.start(paths.netns('r1n2'), { ignoreKernelRoutes: true }),
    };
    const streams = new ProbeStreams(flows());
    let stats: FlowStats[];
    const seen: Record<string, string[]> = {};
    let exitCodes: Record<string, number>;
    try {
      streams.start();
      await new Promise((resolve) => setTimeout(resolve, 500));
      phaseStart = performance.now();
      // RollingUpdate (maxUnavailable 1) on one node: the old pod deleted (SIGTERM, the grace period, KILL), then
      // the new pod created, its init containers first.
      exitCodes = await kubelet.terminate();
      // A sentinel in each route monitor's stream: the events before it happened while the old pod stopped.
      for (const monitor of Object.values(monitors)) await monitor.mark();
      phase(`previous pod terminated (exit codes ${JSON.stringify(exitCodes)})`);
      kubelet = newPod();
      await kubelet.start();
      phase('current pod started');
      await pollUntil('the current agent ready', async () => (await kubelet.probe('podroute', 'readinessProbe')).ok, { timeoutMs: 60_000, intervalMs: 500 });
      phase('current agent ready');
      await pollUntil('every peer Established again', allPeersEstablished, { timeoutMs: 60_000, intervalMs: 500 });
      phase('peers Established');
      await pollUntil('routes both ways', routesBothWays, { timeoutMs: 30_000 });
      stats = await streams.stop();
      for (const [where, monitor] of Object.entries(monitors)) seen[where] = await monitor.close();
    } finally {
      for (const monitor of Object.values(monitors)) monitor.stop();
    }
    const routesAfter = await routesByPrefix(NODE);
    const rulesAfter = await ourRules();
    const torAfter = await torNeighbors();
    const torSummary = (n: Record<string, FrrNeighbor>): string => JSON.stringify(Object.entries(n).map(([a, v]) => [a, v.bgpState, v.bgpTimerUpEstablishedEpoch, v.connectionsDropped, v.lastResetDueTo, v.lastNotificationReason])); 
    console.log(`      roll: ${summary(stats)}; ${TOR} before ${torSummary(torBefore)} after ${torSummary(torAfter)}; route events ${JSON.stringify(seen)}`);

    // Every failed check is listed, so that one run shows all that a roll did.
    const problems: string[] = [];
    const check = (ok: boolean, what: string): void => {
      if (!ok) problems.push(what);
    };
    // The agent and bfd stopped on their SIGTERM within the grace period (gobgpd's image stop signal is SIGKILL).
    check(exitCodes.podroute === 0 && exitCodes.bfd === 0, `exit codes on SIGTERM: ${JSON.stringify(exitCodes)}`);
    check(stats.every((s) => s.sent > 100), `too few probes sent: ${summary(stats)}`);
    check(stats.every((s) => s.lost === 0), `probes lost: ${summary(stats)}`);

    const eventsFor = (where: string): string[] => seen[where]!.filter((l) => POD_CIDRS[NODE]!.includes(monitoredPrefix(l)));
    roll = { routesBefore, routesAfter, nodeEvents: seen[NODE]!, torEvents: eventsFor(TOR) };
    // The node's podCIDRs stayed routed at its rack neighbour: nothing withdrawn, nothing replaced. (At the ToR: the
    // pending test below.)
    check(eventsFor('r1n2').length === 0, `route events on r1n2 for ${NODE}'s podCIDRs: ${JSON.stringify(eventsFor('r1n2'))}`);

    // Policy and masquerade rules not rewritten: the same rules, their packet counters not reset (iptables-restore
    // of a chain zeroes them), some of them counting the streams' packets.
    check(JSON.stringify(rulesAfter.map((r) => r.rule)) === JSON.stringify(rulesBefore.map((r) => r.rule)), `rules changed: ${JSON.stringify(rulesBefore.map((r) => r.rule))} -> ${JSON.stringify(rulesAfter.map((r) => r.rule))}`);
    check(rulesBefore.some((r) => r.packets > 0), 'none of our rules counts packets: a counter reset would not show');
    const reset = rulesBefore.flatMap((r, i) => (rulesAfter[i] !== undefined && rulesAfter[i].packets < r.packets ? [`${r.rule}: ${r.packets} -> ${rulesAfter[i].packets}`] : []));
    check(reset.length === 0, `rule counters reset: ${JSON.stringify(reset)}`);
    const ipsetsAfter = await ourIpsets();
    check(JSON.stringify(ipsetsAfter) === JSON.stringify(ipsetsBefore), `ipsets changed: ${JSON.stringify(ipsetsBefore)} -> ${JSON.stringify(ipsetsAfter)}`);

    // The ToR's sessions to the node came back; if one went down, the node had announced graceful restart and the
    // ToR ended it as one (the routes above not withdrawn).
    check(JSON.stringify(Object.keys(torAfter).sort()) === JSON.stringify(Object.keys(torBefore).sort()) && Object.keys(torBefore).length > 0, `ToR neighbors ${Object.keys(torBefore).join(",")} -> ${Object.keys(torAfter).join(",")}`);
    for (const [address, after] of Object.entries(torAfter)) {
      const before = torBefore[address];
      check(after.bgpState === 'Established', `${TOR}: ${address} ${after.bgpState}`);
      if (before === undefined || after.bgpTimerUpEstablishedEpoch === before.bgpTimerUpEstablishedEpoch) continue;
      check(before.gracefulRestartInfo?.remoteGrMode === 'Restart', `${TOR}: ${address} reset (${after.lastResetDueTo}) without graceful restart announced (${before.gracefulRestartInfo?.remoteGrMode})`);
      check(after.lastNotificationReason === undefined || after.lastNotificationReason === before.lastNotificationReason, `${TOR}: ${address} ended by a NOTIFICATION from the node (${after.lastNotificationReason}): no graceful restart`);
    }
    expect(problems).to.deep.equal([]);
  });

  // The new agent starts with a new gobgpd: it keeps the kernel's routes of the previous run until its peers have
  // settled (route-reconciler.ts keepRoutesFoundAtStart), and its gobgpd claims forwarding state, so the ToR keeps
  // the node's paths as stale instead of replacing them (RFC 4724 4.2).
  it('the roll rewrote none of the node\'s kernel routes that are the same before and after, and the ToR kept its routes to the node', () => {
    if (roll === undefined) throw new Error('the roll did not complete');
    const { routesBefore, routesAfter, nodeEvents, torEvents } = roll;
    expect(torEvents, `route events on ${TOR} for ${NODE}'s podCIDRs`).to.deep.equal([]);
    const unchanged = [...routesBefore].filter(([prefix, line]) => routesAfter.get(prefix) === line).map(([prefix]) => prefix);
    const otherPodCidrs = Object.entries(POD_CIDRS).flatMap(([n, c]) => (n === NODE ? [] : c));
    expect(unchanged, `${NODE}'s routes before and after`).to.include.members(otherPodCidrs);
    // Sentinel 10.99.99.2 (route monitor) marks the end of the old pod's termination.
    expect(nodeEvents.filter((l) => unchanged.includes(monitoredPrefix(l))), `route events on ${NODE}: ${JSON.stringify(nodeEvents)}`).to.deep.equal([]);
  });

  it('runs the init containers to exit 0, then the containers in the node netns: listed capabilities only, read-only root, RuntimeDefault seccomp, no new privileges', async () => {
    const nodeNetns = statSync(`/run/netns/${paths.netns(NODE)}`).ino;
    for (const init of kubelet.spec.initContainers ?? []) expect((await kubelet.inspect(init.name)).State.ExitCode, init.name).to.equal(0);
    const binDir = labNodeHostPaths(LAB, NODE)['/opt/cni/bin']!;
    for (const plugin of ['bridge', 'host-local', 'portmap', 'loopback']) expect(statSync(path.join(binDir, plugin)).mode & 0o777, plugin).to.equal(0o755);

    for (const c of kubelet.spec.containers) {
      const inspected = await kubelet.inspect(c.name);
      expect(inspected.State.Running, `${c.name}:\n${await kubelet.logs(c.name)}`).to.equal(true);
      expect(inspected.HostConfig.ReadonlyRootfs, c.name).to.equal(true);
      const status = processStatus(inspected.State.Pid);
      const wanted = capabilityMask(c.securityContext?.capabilities?.add ?? []);
      for (const set of ['CapEff', 'CapPrm', 'CapBnd']) expect(BigInt(`0x${status[set]}`), `${c.name} ${set}`).to.equal(wanted);
      expect(status.Seccomp, `${c.name} seccomp filter mode`).to.equal('2');
      expect(status.NoNewPrivs, c.name).to.equal('1');
      expect(statSync(`/proc/${inspected.State.Pid}/ns/net`).ino, `${c.name} in the node's netns`).to.equal(nodeNetns);
      expect(status.Uid?.split('\t')[0], c.name).to.equal('0');
      const root = await execa('podman', ['exec', kubelet.nameOf(c.name), 'touch', '/written'], { env: CONTAINERS_ENV, reject: false });
      expect(root.exitCode, `${c.name}: the root filesystem is read-only`).to.not.equal(0);
    }
  });

  it('projects ConfigMap, Secret and service-account files as the kubelet does, the token only into the agent', async () => {
    const volumes = path.join(kubelet.dir, 'volumes');
    const mode = (p: string): number => statSync(path.join(volumes, p)).mode & 0o777;
    expect(mode('config/config.yaml')).to.equal(0o644);
    expect(mode('bgp-passwords/rack1-tor')).to.equal(0o400);
    expect(readFileSync(path.join(volumes, 'bgp-passwords/rack1-tor'), 'utf8')).to.equal('podroute-lab-rack1\n');
    for (const f of ['token', 'ca.crt', 'namespace']) expect(mode(`kube-api-access/${f}`), f).to.equal(0o644);
    expect(readFileSync(path.join(volumes, 'kube-api-access/namespace'), 'utf8')).to.equal('kube-system');
    const SA = '/var/run/secrets/kubernetes.io/serviceaccount';
    for (const c of kubelet.spec.containers) {
      const mounted = (await kubelet.inspect(c.name)).Mounts.some((m) => m.Destination === SA);
      expect(mounted, `${c.name} has the service-account volume`).to.equal(c.name === 'podroute');
    }
    const env = await execa('podman', ['exec', kubelet.nameOf('podroute'), 'printenv', 'NODE_NAME'], { env: CONTAINERS_ENV });
    expect(env.stdout).to.equal(NODE);
    // The agent's in-cluster client reached the API server (TLS, the projected CA, the token): it is ready.
    await pollUntil('the agent ready (first full sync done)', async () => (await kubelet.probe('podroute', 'readinessProbe')).ok, { timeoutMs: 60_000, intervalMs: 500 });
    // Written once the agent's first policy sync is done (the node takes pods only then), not before readiness.
    const conflistFile = path.join(paths.cniConfDir(NODE), '10-podroute.conflist');
    const conflist = await pollUntil('the agent\'s conflist on the node', () => JSON.parse(readFileSync(conflistFile, 'utf8')) as { plugins: { ipam?: { dataDir?: string } }[] }, { timeoutMs: 30_000, intervalMs: 200 });
    expect(conflist.plugins.find((p) => p.ipam !== undefined)?.ipam?.dataDir, 'the conflist written through the hostPath mount').to.equal(paths.cniIpamDir(NODE));
  });

  it('routes as a lab node: its BGP sessions up, the other nodes\' podCIDRs in its kernel again, every pod reaches every pod', async () => {
    phaseStart = performance.now();
    await pollUntil('every peer of the pod\'s gobgpd Established', allPeersEstablished, { timeoutMs: 60_000, intervalMs: 500 });
    phase('peers Established');
    await pollUntil('routes both ways', routesBothWays, { timeoutMs: 30_000 });
    phase('routes both ways');
    const report = await runMatrix(LAB, { timeoutMs: 1000 });
    phase(`matrix of ${report.probes.length} probes`);
    expect(report.probes.filter((p) => !p.ok).map((p) => `${p.from}->${p.to} ${p.target} ${p.port}/${p.protocol}: ${p.error}`)).to.deep.equal([]);
  });

  it('its probes pass as the spec declares them: /healthz and /readyz on the metrics port, gobgpd over its socket', async () => {
    for (const [container, which] of [['podroute', 'livenessProbe'], ['podroute', 'readinessProbe'], ['gobgpd', 'livenessProbe']] as const) {
      const result = await kubelet.probe(container, which);
      expect(result.ok, `${container} ${which}: ${result.detail}`).to.equal(true);
    }
  });

  for (const container of ['podroute', 'gobgpd']) {
    it(`${container} killed -9 and restarted by the runner (restartPolicy Always): 0 probes lost`, async () => {
      const stats = await killAndCount(container);
      expect(stats.every((s) => s.sent > 100), summary(stats)).to.equal(true);
      expect(stats.reduce((n, s) => n + s.lost, 0), summary(stats)).to.equal(0);
    });
  }

  it('a pod created on the node after the handover gets its address from the pod\'s conflist, is routed, and a kubectl NetworkPolicy isolates it until deleted', async () => {
    // The conflist, the CNI cache (/var/lib/cni: policy binds the new veth to its addresses) and the routes of a
    // pod the pod's agent never saw before: all through the pod's mounts.
    const podYaml = YAML.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'late', namespace: 'x', labels: { pod: 'late' } },
      spec: { nodeName: NODE, containers: [{ name: 'serve', image: 'podroute.io/lab-podserver', ports: [{ containerPort: 80, protocol: 'TCP' }] }] },
    });
    await kubectl(['apply', '-f', '-'], podYaml);
    const late = await pollUntil(
      'x/late Running with an address of each family',
      async () => {
        const p = (await labStatus(LAB)).pods.find((q) => q.namespace === 'x' && q.name === 'late');
        return p !== undefined && p.phase === 'Running' && p.ips.length === 2 ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 300 },
    );
    const v4 = late.ips.find((ip) => familyOf(ip) === 'ipv4')!;
    expect(cidrContainsAddress(POD_CIDRS[NODE]![0]!, v4), `${v4} in ${NODE}'s podCIDR`).to.equal(true);
    const from = pods.get('x/c')!;
    const answered = async (): Promise<boolean> => {
      const r = await probe(from.socket, { target: v4, port: 80, protocol: 'tcp', timeoutMs: 500 });
      return r.ok && parsePodReply(r.reply ?? '')?.identity === 'x/late';
    };
    await pollUntil('x/c (other rack) reaches x/late', answered, { timeoutMs: 20_000, intervalMs: 200 });
    const policy = YAML.stringify({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'deny-into-late', namespace: 'x' },
      spec: { podSelector: { matchLabels: { pod: 'late' } }, policyTypes: ['Ingress'] },
    });
    await kubectl(['apply', '-f', '-'], policy);
    await pollUntil('x/late isolated by the pod\'s agent', async () => !(await answered()), { timeoutMs: 20_000, intervalMs: 200 });
    await kubectl(['delete', '-n', 'x', 'networkpolicy', 'deny-into-late']);
    await pollUntil('x/late reachable again', answered, { timeoutMs: 20_000, intervalMs: 200 });
  });
});
