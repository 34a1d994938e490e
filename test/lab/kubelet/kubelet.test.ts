// The lab kubelet end to end in a small world of its own: one node netns, the lab API server in this process on
// the lab's unix socket, the podroute conflist, the real CNI plugins, and the kubelet as a real process inside
// the node netns. Pods are created through the API and probed through the probe sockets.
import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ipaddr from 'ipaddr.js';
import { LabApiServer } from '../../../src/lab/apiserver/index.js';
import type { KubeObject } from '../../../src/lab/apiserver/index.js';
import { nodeProbeSocket } from '../../../src/lab/kubelet/kubelet.js';
import { cleanupLabPods, containerIdFor, netnsMounted, podPidPath } from '../../../src/lab/kubelet/realize.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections, parsePodReply, probe, probeMany, type ProbeJob } from '../../../src/lab/probe.js';
import { gatewayOf, renderCniConflist } from '../../../src/node/cni.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

const LAB = testLabName('h4k', 'kl');
const NODE = 'n1';
const paths = labPaths(LAB);
const NODE_NETNS = paths.netns(NODE);
const POD_CIDRS = ['10.77.1.0/24', 'fd00:77:1::/64'];
const NODE_IPS = ['192.168.77.11', 'fd77::11'];
const KUBELET_MAIN = fileURLToPath(new URL('../../../src/lab/kubelet/main.js', import.meta.url));

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function inCidr(ip: string, cidr: string): boolean {
  const [net, bits] = ipaddr.parseCIDR(cidr);
  const a = ipaddr.parse(ip);
  return a.kind() === net.kind() && a.match(net, bits);
}

function podObject(name: string, ports: { containerPort: number; protocol?: string }[], hostNetwork = false): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: 'x', name, labels: { pod: name } },
    spec: { nodeName: NODE, hostNetwork, containers: [{ name: 'serve', image: 'lab/podserver', ports }] },
  };
}

const SERVE_80_81 = [
  { containerPort: 80, protocol: 'TCP' },
  { containerPort: 80, protocol: 'UDP' },
  { containerPort: 81, protocol: 'TCP' },
  { containerPort: 81, protocol: 'UDP' },
];

interface PodStatusView {
  phase?: string;
  podIP?: string;
  podIPs?: { ip: string }[];
  hostIP?: string;
  hostIPs?: { ip: string }[];
  conditions?: { type: string; status: string }[];
}

describe('lab kubelet (real CNI plugins, node netns, lab API server)', function () {
  this.timeout(120_000);
  let api: LabApiServer | undefined;
  let kubelet: ChildProcess | undefined;
  let kubeletLog = '';

  function cleanupWorld(): void {
    try {
      sh('ip', ['netns', 'delete', NODE_NETNS]);
    } catch {
      // not there
    }
    fs.rmSync(paths.dir, { recursive: true, force: true });
  }

  function startApi(): Promise<unknown> {
    api = new LabApiServer({ storePath: paths.apiStore, persistDebounceMs: 0 });
    return api.start({ socketPath: paths.apiSocket });
  }

  function startKubelet(): void {
    kubeletLog = '';
    const child = spawn('nsenter', [`--net=/run/netns/${NODE_NETNS}`, '--', process.execPath, KUBELET_MAIN, '--lab', LAB, '--node', NODE, '--resync-ms', '1000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (kubeletLog += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (kubeletLog += d));
    kubelet = child;
  }

  async function stopKubelet(): Promise<void> {
    const child = kubelet;
    kubelet = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  function podStatus(name: string): PodStatusView {
    return (api?.get('Pod', 'x', name) as { status?: PodStatusView }).status ?? {};
  }

  const running = (name: string): Promise<PodStatusView> =>
    pollUntil(`pod x/${name} Running with IPs`, () => {
      const s = podStatus(name);
      return s.phase === 'Running' && (s.podIPs?.length ?? 0) > 0 ? s : undefined;
    });

  function podIPs(name: string): string[] {
    return (podStatus(name).podIPs ?? []).map((p) => p.ip);
  }

  function ipamFiles(): string[] {
    const dir = path.join(paths.cniIpamDir(NODE), 'podroute');
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/.test(f)) : [];
  }

  function serverPid(name: string): number {
    return Number(fs.readFileSync(podPidPath(paths, 'x', name), 'utf8').trim());
  }

  function alive(pid: number): boolean {
    try {
      process.kill(pid, 0);
      return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
    } catch {
      return false;
    }
  }

  before(async () => {
    await cleanupLabPods(LAB);
    cleanupWorld();
    fs.mkdirSync(paths.dir, { recursive: true });
    sh('ip', ['netns', 'add', NODE_NETNS]);
    const inNode = (...args: string[]): string => sh('ip', ['-n', NODE_NETNS, ...args]);
    inNode('link', 'set', 'lo', 'up');
    // The node's "LAN" address lives on a veth pair kept inside the node: the node has an InternalIP other than its bridge's.
    inNode('link', 'add', 'h4keth0', 'type', 'veth', 'peer', 'name', 'h4keth1');
    inNode('link', 'set', 'h4keth1', 'up');
    inNode('addr', 'add', `${NODE_IPS[0]}/24`, 'dev', 'h4keth0');
    inNode('addr', 'add', `${NODE_IPS[1]}/64`, 'dev', 'h4keth0', 'nodad');
    inNode('link', 'set', 'h4keth0', 'up');
    await startApi();
    api!.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
    api!.create({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: NODE },
      spec: { podCIDR: POD_CIDRS[0], podCIDRs: POD_CIDRS },
      status: { addresses: NODE_IPS.map((address) => ({ type: 'InternalIP', address })) },
    });
  });

  after(async () => {
    closeProbeConnections();
    await stopKubelet().catch(() => undefined);
    await cleanupLabPods(LAB).catch(() => undefined);
    await api?.close().catch(() => undefined);
    cleanupWorld();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') process.stderr.write(`--- kubelet log ---\n${kubeletLog}\n`);
  });

  it('waits for a CNI configuration list, then realizes pods with IPs from the podCIDRs (bridge + host-local)', async () => {
    startKubelet();
    await pollUntil('the kubelet relay and probe socket', () => fs.existsSync(nodeProbeSocket(LAB, NODE)) && fs.existsSync(paths.nodeKubeconfig(NODE)));
    expect(fs.readFileSync(paths.nodeKubeconfig(NODE), 'utf8')).to.contain('server: http://127.0.0.1:6443');
    api!.create(podObject('a', SERVE_80_81));
    await pollUntil('the kubelet to wait for a conflist', () => kubeletLog.includes('waiting for a CNI configuration list'));
    expect(netnsMounted(paths.podNetns('x', 'a'))).to.equal(false);

    fs.mkdirSync(paths.cniConfDir(NODE), { recursive: true });
    fs.writeFileSync(
      path.join(paths.cniConfDir(NODE), '10-podroute.conflist'),
      renderCniConflist({ podCIDRs: POD_CIDRS, bridgeName: 'h4kbr0', networkName: 'podroute', ipamDataDir: paths.cniIpamDir(NODE) }),
    );
    api!.create(podObject('b', SERVE_80_81));
    for (const name of ['a', 'b']) {
      const s = await running(name);
      const ips = (s.podIPs ?? []).map((p) => p.ip);
      expect(ips, `x/${name} podIPs`).to.have.length(2);
      expect(inCidr(ips[0]!, POD_CIDRS[0]!), `${ips[0]} in ${POD_CIDRS[0]}`).to.equal(true);
      expect(inCidr(ips[1]!, POD_CIDRS[1]!), `${ips[1]} in ${POD_CIDRS[1]}`).to.equal(true);
      expect(s.podIP).to.equal(ips[0]);
      expect((s.hostIPs ?? []).map((h) => h.ip)).to.deep.equal(NODE_IPS);
      expect(s.hostIP).to.equal(NODE_IPS[0]);
      expect(s.conditions?.find((c) => c.type === 'Ready')?.status).to.equal('True');
      expect(netnsMounted(paths.podNetns('x', name))).to.equal(true);
      // host-local keeps the allocation under the lab node's IPAM dir, keyed by our container id.
      const uid = (api!.get('Pod', 'x', name).metadata as { uid: string }).uid;
      for (const ip of ips) {
        expect(fs.readFileSync(path.join(paths.cniIpamDir(NODE), 'podroute', ip), 'utf8')).to.contain(containerIdFor(uid));
      }
      // The pod's interface really carries those addresses, inside its own netns.
      const addrs = sh('ip', ['-n', paths.podNetns('x', name), '-j', 'addr', 'show', 'dev', 'eth0']);
      for (const ip of ips) expect(addrs).to.contain(`"${ip}"`);
    }
    expect(new Set([...podIPs('a'), ...podIPs('b')]).size).to.equal(4);
  });

  it('serves every declared port over TCP and UDP, v4 and v6, from the node: identity and the node-side client address', async () => {
    const jobs: ProbeJob[] = [];
    for (const ip of podIPs('a')) {
      for (const port of [80, 81]) for (const protocol of ['tcp', 'udp'] as const) jobs.push({ from: nodeProbeSocket(LAB, NODE), target: ip, port, protocol });
    }
    const results = await probeMany(jobs, 16);
    results.forEach((r, i) => {
      const job = jobs[i]!;
      expect(r.ok, `${job.protocol} ${job.target}:${job.port} ${JSON.stringify(r)}`).to.equal(true);
      const reply = parsePodReply(r.reply ?? '');
      expect(reply?.identity).to.equal('x/a');
      // The node reaches its pods from its bridge, whose addresses are the podCIDRs' gateways.
      const gateway = gatewayOf(familyOf(job.target) === 'ipv6' ? POD_CIDRS[1]! : POD_CIDRS[0]!);
      expect(reply?.clientAddress, `${job.protocol} ${job.target}:${job.port}`).to.equal(gateway);
    });
    // Undeclared ports are not served.
    const closed = await probe(nodeProbeSocket(LAB, NODE), { target: podIPs('a')[0]!, port: 82, protocol: 'tcp' });
    expect(closed).to.include({ ok: false, error: 'refused' });
  });

  it('answers another pod on the same node with that pod\'s own IP (no NAT)', async () => {
    const [bV4, bV6] = podIPs('b');
    const jobs: ProbeJob[] = podIPs('a').flatMap((target) =>
      (['tcp', 'udp'] as const).map((protocol) => ({ from: paths.podSocket('x', 'b'), target, port: 80, protocol })),
    );
    const results = await probeMany(jobs, 8);
    results.forEach((r, i) => {
      const job = jobs[i]!;
      expect(r.ok, `${job.protocol} ${job.target} ${JSON.stringify(r)}`).to.equal(true);
      expect(parsePodReply(r.reply ?? '')).to.deep.equal({ identity: 'x/a', clientAddress: familyOf(job.target) === 'ipv6' ? bV6 : bV4 });
    });
  });

  it('serves a hostNetwork pod in the node netns with the node\'s IPs, reachable from a pod', async () => {
    api!.create(podObject('h', [{ containerPort: 8080, protocol: 'TCP' }, { containerPort: 8080, protocol: 'UDP' }], true));
    const s = await running('h');
    expect((s.podIPs ?? []).map((p) => p.ip)).to.deep.equal(NODE_IPS);
    expect(netnsMounted(paths.podNetns('x', 'h'))).to.equal(false);
    const [bV4, bV6] = podIPs('b');
    for (const [target, client] of [[NODE_IPS[0]!, bV4], [NODE_IPS[1]!, bV6]] as const) {
      for (const protocol of ['tcp', 'udp'] as const) {
        // UDP proves the reply leaves from the address the pod asked, not from the bridge's.
        const r = await probe(paths.podSocket('x', 'b'), { target, port: 8080, protocol });
        expect(r.ok, `${protocol} ${target} ${JSON.stringify(r)}`).to.equal(true);
        expect(parsePodReply(r.reply ?? '')).to.deep.equal({ identity: 'x/h', clientAddress: client });
      }
    }
  });

  it('skips a pod with a protocol it cannot serve with a clear warning, and serves the rest', async () => {
    api!.create(podObject('s', [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 9, protocol: 'SCTP' }]));
    await running('s');
    await pollUntil('the SCTP warning', () => kubeletLog.includes('spec.containers[0].ports[1].protocol: SCTP'));
    const r = await probe(nodeProbeSocket(LAB, NODE), { target: podIPs('s')[0]!, port: 80, protocol: 'tcp' });
    expect(parsePodReply(r.reply ?? '')?.identity).to.equal('x/s');
  });

  it('restarts a pod server that died, without touching the pod\'s network', async () => {
    const before = serverPid('b');
    const ips = podIPs('b');
    process.kill(before, 'SIGKILL');
    const after = await pollUntil('a new server for x/b', () => {
      const pid = serverPid('b');
      return pid !== before && alive(pid) ? pid : undefined;
    });
    expect(after).to.not.equal(before);
    expect(podIPs('b')).to.deep.equal(ips);
    const r = await pollUntil('x/b answering', async () => {
      const res = await probe(nodeProbeSocket(LAB, NODE), { target: ips[0]!, port: 81, protocol: 'udp' });
      return res.ok ? res : undefined;
    });
    expect(parsePodReply(r.reply ?? '')?.identity).to.equal('x/b');
  });

  it('adopts existing pods after a kubelet restart without a new CNI ADD', async () => {
    const pidA = serverPid('a');
    const vethsBefore = sh('ip', ['-n', NODE_NETNS, '-o', 'link', 'show', 'type', 'veth']);
    const ipamBefore = ipamFiles().sort();
    await stopKubelet();
    // Pods outlive the kubelet.
    expect(alive(pidA)).to.equal(true);
    startKubelet();
    await pollUntil('the restarted kubelet to sync', () => kubeletLog.includes('pod watch synced'));
    api!.create(podObject('c', SERVE_80_81));
    await running('c');
    expect(serverPid('a')).to.equal(pidA);
    const readdedA = kubeletLog.split('\n').filter((l) => l.includes('"pod running"') && l.includes('"x/a"'));
    expect(readdedA, 'log lines of a new ADD for x/a').to.deep.equal([]);
    const vethsAfter = sh('ip', ['-n', NODE_NETNS, '-o', 'link', 'show', 'type', 'veth']);
    // Every veth of before is still there (same index and name); only x/c's is new.
    for (const line of vethsBefore.trim().split('\n')) expect(vethsAfter).to.contain(line.split(':').slice(0, 2).join(':'));
    expect(vethsAfter.trim().split('\n')).to.have.length(vethsBefore.trim().split('\n').length + 1);
    expect(ipamFiles().sort()).to.deep.equal([...ipamBefore, ...podIPs('c')].sort());
  });

  it('deleting a pod removes its server, netns and IPAM allocation', async () => {
    const pid = serverPid('a');
    const ips = podIPs('a');
    api!.delete('Pod', 'x', 'a');
    // The pid file goes last, after the netns (the server removes its own socket as it stops): wait for all of it.
    await pollUntil('x/a torn down', () => !netnsMounted(paths.podNetns('x', 'a')) && !alive(pid) && !fs.existsSync(paths.podSocket('x', 'a')) && !fs.existsSync(podPidPath(paths, 'x', 'a')));
    await pollUntil('x/a IPAM released', () => ips.every((ip) => !ipamFiles().includes(ip)));
    // Its neighbours are untouched.
    const r = await probe(nodeProbeSocket(LAB, NODE), { target: podIPs('b')[0]!, port: 80, protocol: 'tcp' });
    expect(parsePodReply(r.reply ?? '')?.identity).to.equal('x/b');
  });

  it('keeps pods running while the API server is away, and resumes when it is back', async () => {
    const pidB = serverPid('b');
    await api!.close();
    api = undefined;
    await pollUntil('the kubelet to notice', () => kubeletLog.includes('pod watch interrupted'));
    // Several reconcile periods (resync 1 s) pass while the API is down: the pods stay.
    const interruptions = (): number => kubeletLog.split('pod watch interrupted').length - 1;
    await pollUntil('a few failed reconnects', () => interruptions() >= 3);
    expect(alive(pidB)).to.equal(true);
    expect(netnsMounted(paths.podNetns('x', 'b'))).to.equal(true);
    await startApi();
    api!.create(podObject('d', SERVE_80_81));
    await running('d');
    expect(serverPid('b')).to.equal(pidB);
    const r = await probe(paths.podSocket('x', 'd'), { target: podIPs('b')[0]!, port: 80, protocol: 'udp' });
    expect(parsePodReply(r.reply ?? '')).to.deep.equal({ identity: 'x/b', clientAddress: podIPs('d')[0] });
  });

  it('tears down a pod deleted while the kubelet was down, once it is back', async () => {
    const pidC = serverPid('c');
    const ipsC = podIPs('c');
    await stopKubelet();
    api!.delete('Pod', 'x', 'c');
    expect(alive(pidC)).to.equal(true);
    startKubelet();
    await pollUntil('x/c torn down', () => !netnsMounted(paths.podNetns('x', 'c')) && !alive(pidC) && ipsC.every((ip) => !ipamFiles().includes(ip)));
    expect(kubeletLog).to.contain('no longer bound to this node');
    expect(alive(serverPid('b'))).to.equal(true);
  });

  it('realizes a burst of pods concurrently, each with its own addresses, all answering', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `burst${i}`);
    for (const name of names) api!.create(podObject(name, [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 80, protocol: 'UDP' }]));
    for (const name of names) await running(name);
    const all = names.flatMap(podIPs);
    expect(new Set(all).size).to.equal(names.length * 2);
    const jobs: ProbeJob[] = names.flatMap((name) =>
      podIPs(name).flatMap((target) => (['tcp', 'udp'] as const).map((protocol) => ({ from: paths.podSocket('x', 'b'), target, port: 80, protocol }))),
    );
    const results = await probeMany(jobs, 32);
    const identities = results.map((r) => parsePodReply(r.reply ?? '')?.identity);
    expect(identities).to.deep.equal(names.flatMap((name) => Array<string>(4).fill(`x/${name}`)));
    for (const name of names) api!.delete('Pod', 'x', name);
    await pollUntil('the burst torn down', () => names.every((n) => !netnsMounted(paths.podNetns('x', n))) && all.every((ip) => !ipamFiles().includes(ip)));
    // No step needed a retry: concurrent CNI ADD/DEL on one bridge and one IPAM dir went through cleanly.
    expect(kubeletLog.split('\n').filter((l) => l.includes('"level":"error"'))).to.deep.equal([]);
  });

  it('cleanupLabPods (for lab down) stops every pod server and deletes every pod netns and the pod directory', async () => {
    await stopKubelet();
    const pids = ['b', 'd', 'h', 's'].map(serverPid);
    expect(pids.every(alive)).to.equal(true);
    await cleanupLabPods(LAB);
    expect(pids.filter(alive)).to.deep.equal([]);
    const prefix = `${paths.netns('pod')}-`;
    expect(fs.readdirSync('/run/netns').filter((n) => n.startsWith(prefix))).to.deep.equal([]);
    expect(fs.existsSync(paths.podDir)).to.equal(false);
  });
});
