// A small policy lab in network namespaces (test helper): one "node" netns with the pod bridge podroute0 and
// three pod netns on it (x/a, x/b, y/a), plus a "remote" netns routed through the node that stands for pod z/c
// of another node. Every member runs the lab pod server (TCP/UDP 80 and 81, and a probe control socket).
import { execa } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Namespace, Pod } from '../../../src/kube/wire.js';
import type { PolicyNode } from '../../../src/policy/types.js';
import { probeMany, type ProbeJob } from '../../../src/lab/probe.js';
import { pollUntil } from '../../poll.js';

const PODSERVER = fileURLToPath(new URL('../../../src/lab/podserver.js', import.meta.url));
export const PORTS = [80, 81];

export interface LabPod {
  ns: string;
  name: string;
  netns: string;
  v4: string;
  v6: string;
  node: string;
  labels: Record<string, string>;
  control: string;
}

export interface PolicyLab {
  prefix: string;
  nodeNetns: string;
  node: PolicyNode & { v4: string; v6: string };
  nodeControl: string;
  pods: LabPod[];
  namespaces: Namespace[];
  dir: string;
  podObjects(labels?: Record<string, Record<string, string>>): Pod[];
  teardown(): Promise<void>;
}

async function sh(args: string[], input?: string): Promise<string> {
  const r = await execa(args[0] ?? '', args.slice(1), { reject: false, ...(input === undefined ? {} : { input }) });
  if (r.exitCode !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function batch(netns: string, lines: string[]): Promise<void> {
  await sh(['ip', '-n', netns, '-batch', '-'], lines.join('\n') + '\n');
}

export async function buildPolicyLab(prefix: string): Promise<PolicyLab> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  const nodeNetns = `${prefix}-node`;
  const remoteNetns = `${prefix}-remote`;
  const created: string[] = [];
  const children: { pid: number; kill: () => void }[] = [];
  const teardown = async (): Promise<void> => {
    for (const c of children) c.kill();
    for (const ns of created.reverse()) await execa('ip', ['netns', 'delete', ns], { reject: false });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const addNs = async (ns: string): Promise<void> => {
      await sh(['ip', 'netns', 'add', ns]);
      created.push(ns);
      // No duplicate address detection: addresses (link-local ones too) are usable at once.
      await sh(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
      await batch(ns, ['link set lo up']);
    };
    await addNs(nodeNetns);
    await sh(['ip', 'netns', 'exec', nodeNetns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // Established flows outlive policy changes (as in every conntrack-based implementation); a UDP probe that
    // happens to reuse the source port of an earlier, allowed probe would ride on its entry. Short UDP timeouts
    // keep one step's flows from leaking into the next step's truth table.
    await sh(['ip', 'netns', 'exec', nodeNetns, 'sysctl', '-qw', 'net.netfilter.nf_conntrack_udp_timeout=1', 'net.netfilter.nf_conntrack_udp_timeout_stream=1']);
    await batch(nodeNetns, [
      'link add podroute0 type bridge',
      'link set podroute0 up',
      'addr add 10.77.0.1/24 dev podroute0',
      'addr add fd77::1/64 dev podroute0 nodad',
    ]);
    const specs = [
      { ns: 'x', name: 'a', host: 11 },
      { ns: 'x', name: 'b', host: 12 },
      { ns: 'y', name: 'a', host: 13 },
    ];
    const pods: LabPod[] = [];
    for (const s of specs) {
      const netns = `${prefix}-${s.ns}${s.name}`;
      await addNs(netns);
      const v4 = `10.77.0.${s.host}`;
      const v6 = `fd77::${s.host}`;
      await batch(nodeNetns, [
        `link add v${s.ns}${s.name} type veth peer name eth0 netns ${netns}`,
        `link set v${s.ns}${s.name} master podroute0`,
        `link set v${s.ns}${s.name} up`,
      ]);
      await batch(netns, [
        'link set eth0 up',
        `addr add ${v4}/24 dev eth0`,
        `addr add ${v6}/64 dev eth0 nodad`,
        'route add default via 10.77.0.1',
        'route add default via fd77::1',
      ]);
      pods.push({ ns: s.ns, name: s.name, netns, v4, v6, node: 'n1', labels: { pod: s.name }, control: path.join(dir, `${s.ns}_${s.name}.sock`) });
    }
    // The remote pod z/c lives on node n2 (podCIDR 10.79.0.0/24), reached over a routed link from n1.
    await addNs(remoteNetns);
    await batch(nodeNetns, [
      `link add uplink type veth peer name uplink netns ${remoteNetns}`,
      'link set uplink up',
      'addr add 10.78.0.1/30 dev uplink',
      'addr add fd78::1/64 dev uplink nodad',
      'route add 10.79.0.0/24 via 10.78.0.2',
      'route add fd79::/64 via fd78::2',
    ]);
    await batch(remoteNetns, [
      'link set uplink up',
      'addr add 10.78.0.2/30 dev uplink',
      'addr add fd78::2/64 dev uplink nodad',
      'addr add 10.79.0.5/32 dev lo',
      'addr add fd79::5/128 dev lo nodad',
      'route add 10.77.0.0/24 via 10.78.0.1 src 10.79.0.5',
      'route add fd77::/64 via fd78::1 src fd79::5',
    ]);
    pods.push({ ns: 'z', name: 'c', netns: remoteNetns, v4: '10.79.0.5', v6: 'fd79::5', node: 'n2', labels: { pod: 'c' }, control: path.join(dir, 'z_c.sock') });

    const serve = (netns: string, identity: string, control: string): void => {
      const ports = PORTS.flatMap((p) => [`${p}/TCP`, `${p}/UDP`]).join(',');
      const child = execa('ip', ['netns', 'exec', netns, process.execPath, PODSERVER, '--identity', identity, '--ports', ports, '--control', control], {
        reject: false,
        stdio: 'ignore',
      });
      const pid = child.pid;
      if (pid === undefined) throw new Error(`podserver in ${netns} did not start`);
      children.push({ pid, kill: () => child.kill('SIGTERM') });
    };
    const nodeControl = path.join(dir, 'node.sock');
    serve(nodeNetns, 'node/n1', nodeControl);
    for (const p of pods) serve(p.netns, `${p.ns}/${p.name}`, p.control);
    for (const c of [nodeControl, ...pods.map((p) => p.control)]) await pollUntil(`control socket ${c}`, () => fs.existsSync(c), { timeoutMs: 15_000, intervalMs: 50 });
    // Connectivity before any policy: the node reaches every pod and the remote pod reaches the local ones.
    const checks: ProbeJob[] = [];
    for (const p of pods) {
      for (const target of [p.v4, p.v6]) checks.push({ from: nodeControl, target, port: 80, protocol: 'tcp', timeoutMs: 500 });
      if (p.node === 'n1') for (const target of [p.v4, p.v6]) checks.push({ from: path.join(dir, 'z_c.sock'), target, port: 80, protocol: 'tcp', timeoutMs: 500 });
    }
    await pollUntil('the lab connected', async () => {
      const results = await probeMany(checks);
      const failed = checks.filter((_, i) => results[i]?.ok !== true);
      if (failed.length > 0) throw new Error(`not connected: ${failed.map((f) => `${f.from} -> ${f.target}`).join(', ')}`);
      return true;
    }, { timeoutMs: 20_000, intervalMs: 200 });

    const namespaces: Namespace[] = ['x', 'y', 'z'].map((n) => ({ metadata: { name: n, labels: { ns: n } } }));
    return {
      prefix,
      nodeNetns,
      node: { name: 'n1', addresses: ['10.78.0.1', 'fd78::1'], podCIDRs: ['10.77.0.0/24', 'fd77::/64'], v4: '10.78.0.1', v6: 'fd78::1' },
      nodeControl,
      pods,
      namespaces,
      dir,
      podObjects: (labels = {}) =>
        pods.map((p) => ({
          metadata: { namespace: p.ns, name: p.name, labels: labels[`${p.ns}/${p.name}`] ?? p.labels },
          spec: {
            nodeName: p.node,
            containers: [
              {
                name: 'main',
                ports: PORTS.flatMap((port) =>
                  (['TCP', 'UDP'] as const).map((protocol) => ({ containerPort: port, protocol, name: `serve-${port}-${protocol.toLowerCase()}` })),
                ),
              },
            ],
          },
          status: { phase: 'Running', podIP: p.v4, podIPs: [{ ip: p.v4 }, { ip: p.v6 }] },
        })),
      teardown,
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}
