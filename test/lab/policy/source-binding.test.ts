// Pods send only from their own addresses (lab, real agents): each pod's veth is bound to the addresses its CNI
// result recorded, so
// - a pod under default-deny-egress that adds a second address (unassigned, in its node's podCIDR) reaches nothing
//   from it, TCP and UDP, IPv4 and IPv6;
// - a pod that takes an allowed pod's address (a second address on its eth0, as NET_RAW or NET_ADMIN allow) is
//   dropped at its own node: the target never sees it, and neither node has a conntrack entry of it;
// - a pod started while its node's agent is down is closed until the agent is back and has bound it; a pod started
//   with the agent running waits for its binding (measured and printed).
// Probes that choose their source address are socat inside the pod's network namespace; conntrack is read from
// /proc/net/nf_conntrack of the node namespaces (the conntrack tool is not installed here).
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Pod } from '../../../src/kube/wire.js';
import { labStart, labStop } from '../../../src/lab/faults.js';
import { labPaths } from '../../../src/lab/paths.js';
import { probeMany } from '../../../src/lab/probe.js';
import { parseTopology } from '../../../src/lab/topology.js';
import { familyOf, IP_FAMILIES, ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { testLabName } from '../lab/leftovers.js';
import { pollUntil } from '../../poll.js';
import { TruthLab, type LatePod } from './truth-lab.js';

const LAB = testLabName('srcbind', 'srcbind');

const TOPOLOGY = `
cluster: { podRanges: [10.244.0.0/16, "fd00:10:244::/56"], asn: 64512, mesh: same-asn }
routers: [{ name: tor1, asn: 65001, routerId: 10.255.0.11, role: tor }]
links: [{ type: rack, tor: tor1, ipv4: 10.10.1.0/24, ipv6: "fd00:10:1::/64" }]
nodes:
  - { name: n1, rack: tor1, asn: 64601, podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"] }
  - { name: n2, rack: tor1, asn: 64601, podCIDRs: [10.244.2.0/24, "fd00:10:244:2::/64"] }
kubernetes:
  namespaces:
    - { name: x, labels: { ns: x } }
    - { name: y, labels: { ns: y } }
    - { name: w, labels: { ns: w } }
  pods:
    - { namespace: x, name: allowed, nodeName: n1, labels: { pod: allowed }, containerPorts: &ports [
          { containerPort: 80, protocol: TCP }, { containerPort: 80, protocol: UDP } ] }
    - { namespace: x, name: attacker, nodeName: n1, labels: { pod: attacker }, containerPorts: *ports }
    - { namespace: w, name: locked, nodeName: n1, labels: { pod: locked }, containerPorts: *ports }
    - { namespace: y, name: target, nodeName: n2, labels: { pod: target }, containerPorts: *ports }
    - { namespace: y, name: near, nodeName: n1, labels: { pod: near }, containerPorts: *ports }
`;

function ipOf(pod: Pod, family: IpFamily): string {
  const ip = (pod.status?.podIPs ?? []).map((p) => p.ip).find((a) => a !== undefined && familyOf(a) === family);
  if (ip === undefined) throw new Error(`no IPv${ipVersion(family)} address of ${pod.metadata?.namespace}/${pod.metadata?.name}`);
  return ip;
}

describe('pods send only from their own addresses (lab: veths bound to their CNI results)', function () {
  this.timeout(300_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), `${LAB}-`));
  const topologyFile = path.join(dir, 'topology.yaml');
  writeFileSync(topologyFile, TOPOLOGY);
  const truth = new TruthLab({ lab: LAB, topologyFile, topology: parseTopology(TOPOLOGY), probeTimeoutMs: 500 });
  const paths = labPaths(LAB);
  let pods = new Map<string, Pod>();

  const pod = (id: string): Pod => {
    const p = pods.get(id);
    if (p === undefined) throw new Error(`no pod ${id}`);
    return p;
  };
  const netnsOf = (id: string): string => {
    const [ns, name] = id.split('/') as [string, string];
    return paths.podNetns(ns, name);
  };
  const refresh = async (): Promise<void> => {
    pods = new Map((await truth.cluster()).pods.map((p) => [`${p.metadata?.namespace}/${p.metadata?.name}`, p]));
  };

  /** From inside pod `from`, with source address `src` (and port): the first line the target answers, or ''. */
  async function sendFrom(from: string, src: string, sport: number, target: string, protocol: 'tcp' | 'udp'): Promise<string> {
    const v6 = familyOf(target) === 'ipv6';
    const host = v6 ? `[${target}]` : target;
    const bind = `${v6 ? `[${src}]` : src}:${sport}`;
    const address = protocol === 'tcp' ? `TCP${v6 ? '6' : '4'}:${host}:80,bind=${bind},connect-timeout=1` : `UDP${v6 ? '6' : '4'}:${host}:80,bind=${bind}`;
    const r = await execa('ip', ['netns', 'exec', netnsOf(from), 'timeout', '2', 'socat', '-T', '1.5', '-', address], { input: 'hello\n', reject: false });
    return r.stdout.trim();
  }

  /** A node's conntrack entries (from /proc/net/nf_conntrack of the node netns). */
  async function conntrackEntries(node: string): Promise<string[]> {
    const r = await execa('ip', ['netns', 'exec', paths.netns(node), 'cat', '/proc/net/nf_conntrack'], { reject: false });
    return r.stdout.split('\n');
  }

  function withSourcePort(entries: string[], sport: number): string[] {
    return entries.filter((l) => l.includes(`sport=${sport} `));
  }

  /** Our conntrack entries on a node with source port `sport`. */
  async function conntrackWith(node: string, sport: number): Promise<string[]> {
    return withSourcePort(await conntrackEntries(node), sport);
  }

  async function reaches(from: string, to: string, family: IpFamily = 'ipv4', timeoutMs = 500): Promise<boolean> {
    const [ns, name] = from.split('/') as [string, string];
    const [r] = await probeMany([{ from: paths.podSocket(ns, name), target: ipOf(pod(to), family), port: 80, protocol: 'tcp', timeoutMs }]);
    return r?.ok === true;
  }

  before(async function () {
    this.timeout(400_000);
    await truth.start();
    await refresh();
    await truth.applyPolicy({
      metadata: { namespace: 'y', name: 'target-admits-only-x-allowed' },
      spec: { podSelector: { matchLabels: { pod: 'target' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'x' } }, podSelector: { matchLabels: { pod: 'allowed' } } }] }] },
    });
    await truth.applyPolicy({ metadata: { namespace: 'w', name: 'default-deny-egress' }, spec: { podSelector: {}, policyTypes: ['Egress'] } });
    await pollUntil('the policies in force', async () => (await reaches('x/allowed', 'y/target')) && !(await reaches('x/attacker', 'y/target')) && !(await reaches('w/locked', 'y/near')), { timeoutMs: 60_000, intervalMs: 50 });
  });

  after(async function () {
    this.timeout(120_000);
    await truth.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a pod under default-deny-egress that adds a second address reaches nothing from it (TCP, UDP, IPv4, IPv6)', async () => {
    const locked = 'w/locked';
    await execa('ip', ['-n', netnsOf(locked), 'addr', 'add', '10.244.1.200/24', 'dev', 'eth0']);
    await execa('ip', ['-n', netnsOf(locked), '-6', 'addr', 'add', 'fd00:10:244:1::c8/64', 'dev', 'eth0', 'nodad']);
    // All at once, each from its own source port: a dropped probe waits out its timeout, and they do not interfere.
    let sport = 41000;
    const probes: Promise<string>[] = [];
    for (const [src, family] of [['10.244.1.200', 'ipv4'], ['fd00:10:244:1::c8', 'ipv6']] as const) {
      for (const to of ['y/target', 'y/near', 'x/allowed']) {
        for (const protocol of ['tcp', 'udp'] as const) {
          const port = sport++;
          probes.push(sendFrom(locked, src, port, ipOf(pod(to), family), protocol).then((reply) => (reply === '' ? '' : `${src} -> ${to} ${protocol}: ${reply}`)));
        }
      }
    }
    const passed = (await Promise.all(probes)).filter((p) => p !== '');
    expect(probes, 'every source, target and protocol probed').to.have.length(12);
    expect(passed, 'answered from the added address').to.deep.equal([]);
    // The same pod from its own address is held by its policy, as before.
    expect(await reaches(locked, 'y/near')).to.equal(false);
  });

  it('a pod spoofing an allowed pod\'s address is dropped at its own node: no answer, no conntrack entry anywhere', async () => {
    const allowed = pod('x/allowed');
    // The control: the allowed pod itself, from a fixed source port, is answered and leaves conntrack entries.
    for (const [family, sport] of [['ipv4', 42001], ['ipv6', 42002]] as const) {
      const reply = await sendFrom('x/allowed', ipOf(allowed, family), sport, ipOf(pod('y/target'), family), 'udp');
      expect(reply, `x/allowed over UDP/IPv${ipVersion(family)}`).to.match(/^y\/target /);
      expect(await conntrackWith('n1', sport), `conntrack entry of the control on n1 (IPv${ipVersion(family)})`).to.have.length.greaterThan(0);
    }
    await execa('ip', ['-n', netnsOf('x/attacker'), 'addr', 'add', `${ipOf(allowed, 'ipv4')}/32`, 'dev', 'eth0']);
    await execa('ip', ['-n', netnsOf('x/attacker'), '-6', 'addr', 'add', `${ipOf(allowed, 'ipv6')}/128`, 'dev', 'eth0', 'nodad']);
    const sent: { sport: number; what: string; reply: Promise<string> }[] = [];
    let sport = 43000;
    // All at once, each from its own source port (as above).
    for (const family of IP_FAMILIES) {
      for (const protocol of ['udp', 'tcp'] as const) {
        for (const to of ['y/target', 'y/near']) {
          const port = sport++;
          sent.push({ sport: port, what: `x/attacker as x/allowed -> ${to} ${protocol}/IPv${ipVersion(family)}`, reply: sendFrom('x/attacker', ipOf(allowed, family), port, ipOf(pod(to), family), protocol) });
        }
      }
    }
    expect(sent).to.have.length(8);
    for (const { what, reply } of sent) expect(await reply, what).to.equal('');
    // One read of each node's table, taken after every probe ended, serves all the probes.
    const tables = await Promise.all(['n1', 'n2'].map(async (node) => ({ node, entries: await conntrackEntries(node) })));
    for (const { sport: s, what } of sent) {
      for (const { node, entries } of tables) expect(withSourcePort(entries, s), `${what}: conntrack on ${node}`).to.deep.equal([]);
    }
    await execa('ip', ['-n', netnsOf('x/attacker'), 'addr', 'del', `${ipOf(allowed, 'ipv4')}/32`, 'dev', 'eth0']);
    await execa('ip', ['-n', netnsOf('x/attacker'), '-6', 'addr', 'del', `${ipOf(allowed, 'ipv6')}/128`, 'dev', 'eth0']);
  });

  it('a pod started while its agent is down stays closed until the agent binds it; a new pod waits for its binding', async () => {
    const ports: LatePod['ports'] = [{ name: 'serve-tcp', containerPort: 80, protocol: 'TCP' }, { name: 'serve-udp', containerPort: 80, protocol: 'UDP' }];
    await labStop(LAB, 'agent/n1');
    try {
      // The kubelet readies the pod without the agent; its traffic goes nowhere meanwhile.
      await truth.createPod({ namespace: 'x', name: 'late', node: 'n1', labels: { pod: 'late' }, ports });
      await refresh();
      for (const to of ['y/near', 'y/target']) {
        for (const family of IP_FAMILIES) expect(await reaches('x/late', to, family), `x/late -> ${to} IPv${ipVersion(family)} with the agent down`).to.equal(false);
      }
    } finally {
      labStart(LAB, 'agent/n1');
    }
    const restartedAt = Date.now();
    await pollUntil('x/late open once the agent is back', () => reaches('x/late', 'y/near'), { timeoutMs: 60_000, intervalMs: 50 });
    const afterRestart = Date.now() - restartedAt;
    // With the agent running: how long a new pod waits, from the moment its server (the pod's first process) is up
    // until its first connection passes. Its IP reaches the agent through the pod's status, which the kubelet posts
    // once the pod is set up.
    const created = Date.now();
    const creating = truth.createPod({ namespace: 'x', name: 'later', node: 'n1', labels: { pod: 'later' }, ports });
    await pollUntil('x/later serving', () => existsSync(paths.podSocket('x', 'later')), { timeoutMs: 60_000, intervalMs: 50 });
    const serving = Date.now();
    await pollUntil('x/later open', () => reaches('x/later', 'y/near', 'ipv4', 150), { intervalMs: 50 });
    const open = Date.now();
    await creating;
    await refresh();
    console.log(`    (x/late open ${afterRestart} ms after its agent restarted; x/later: serving ${serving - created} ms after creation, open ${open - serving} ms after that)`);
    expect(await reaches('x/later', 'y/near', 'ipv6')).to.equal(true);
    // The runtime's record of the pod goes with the pod (CNI DEL), and with it the binding.
    const record = path.join(paths.cniCacheDir('n1'), 'results', `podroute-podroute-lab-${pod('x/later').metadata?.uid ?? ''}-eth0`);
    expect(existsSync(record), record).to.equal(true);
    await truth.deletePod('x', 'later');
    // The lab API server removes the object at once; the kubelet tears the pod down after that.
    await pollUntil('the record of x/later removed', () => !existsSync(record), { intervalMs: 50 });
  });
});
