// The pure parts between the topology and the world: ip commands, Kubernetes objects, exec targets, probe plans.
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { nodeObject, podObject } from '../../../src/lab/cluster-objects.js';
import { LabError } from '../../../src/lab/errors.js';
import { resolveExecTarget } from '../../../src/lab/exec.js';
import { planMatrix } from '../../../src/lab/matrix.js';
import { bridgeMac, memberBatch, memberSysctls, vethCommand } from '../../../src/lab/netns.js';
import { parseTopology, planLayout, type LabLayout, type Topology } from '../../../src/lab/topology.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

describe('lab: from layout to commands and objects', () => {
  let topology: Topology;
  let layout: LabLayout;
  before(() => {
    topology = parseTopology(readFileSync(path.join(repoRoot(), 'topologies', 'two-racks.yaml'), 'utf8'));
    layout = planLayout(topology);
  });

  it('veths are created with both ends inside lab namespaces', () => {
    const rackLink = layout.veths.find((v) => v.b.member === 'r1n2');
    expect(rackLink).to.not.equal(undefined);
    expect(vethCommand(rackLink!, (m) => `L-${m}`)).to.deep.equal(['link', 'add', 'to-r1n2', 'netns', 'L-tor1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'L-r1n2']);
  });

  it('a ToR creates its rack bridge before enslaving the node ports; a node gets addresses and default routes', () => {
    const tor = memberBatch(layout.members.find((m) => m.name === 'tor1')!, layout);
    expect(tor.indexOf(`link add rack0 address ${bridgeMac('tor1', 'rack0')} type bridge`)).to.be.lessThan(tor.indexOf('link set to-r1n1 master rack0'));
    expect(tor).to.include('address add fd00:10:1::1/64 dev rack0 nodad');
    const node = memberBatch(layout.members.find((m) => m.name === 'r1n1')!, layout);
    expect(node).to.deep.equal([
      'link set lo up',
      'address add 10.10.1.11/24 dev eth0',
      'address add fd00:10:1::b/64 dev eth0 nodad',
      'link set eth0 up',
      'route replace 0.0.0.0/0 via 10.10.1.1',
      'route replace ::/0 via fd00:10:1::1',
    ]);
    expect(memberSysctls(layout.members.find((m) => m.name === 'ext1')!)['net.ipv4.ip_forward']).to.equal('0');
    expect(memberSysctls(layout.members.find((m) => m.name === 'r1n1')!)['net.ipv6.conf.all.forwarding']).to.equal('1');
  });

  it("a link's mtu goes on both veth ends and on the rack bridge; links without one keep the kernel's default", () => {
    const raw = parse(readFileSync(path.join(repoRoot(), 'topologies', 'two-racks.yaml'), 'utf8'), { merge: true }) as { links: { type: string; tor?: string; mtu?: number }[] };
    for (const link of raw.links) link.mtu = link.tor === 'tor2' ? 1400 : 9000;
    const jumbo = planLayout(parseTopology(stringify(raw)));
    const spineLink = jumbo.veths.find((v) => v.a.member === 'spine1' && v.b.member === 'tor2')!;
    expect(vethCommand(spineLink, (m) => `L-${m}`)).to.deep.equal(['link', 'add', 'to-tor2', 'netns', 'L-spine1', 'mtu', '9000', 'type', 'veth', 'peer', 'name', 'to-spine1', 'netns', 'L-tor2', 'mtu', '9000']);
    const rack2 = jumbo.veths.find((v) => v.b.member === 'r2n1')!;
    expect([rack2.a.interface.mtu, rack2.b.interface.mtu]).to.deep.equal([1400, 1400]);
    expect(memberBatch(jumbo.members.find((m) => m.name === 'tor2')!, jumbo)).to.include(`link add rack0 address ${bridgeMac('tor2', 'rack0')} mtu 1400 type bridge`);
    expect(memberBatch(jumbo.members.find((m) => m.name === 'tor1')!, jumbo)).to.include(`link add rack0 address ${bridgeMac('tor1', 'rack0')} mtu 9000 type bridge`);
    // The external host's link has no mtu field: the kernel's 1500.
    expect(jumbo.veths.find((v) => v.b.member === 'ext1')!.a.interface).not.to.have.property('mtu');
  });

  it('Node objects carry podCIDRs, InternalIPs of both families, labels and the ASN/peer annotations', () => {
    const node = nodeObject(topology, layout, 'r2n1') as { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: unknown; status: { addresses: unknown[] } };
    expect(node.spec).to.deep.equal({ podCIDR: '10.244.3.0/24', podCIDRs: ['10.244.3.0/24', 'fd00:10:244:3::/64'] });
    expect(node.status.addresses).to.deep.equal([
      { type: 'InternalIP', address: '10.10.2.11' },
      { type: 'InternalIP', address: 'fd00:10:2::b' },
      { type: 'Hostname', address: 'r2n1' },
    ]);
    expect(node.metadata.labels['topology.kubernetes.io/zone']).to.equal('rack2');
    expect(node.metadata.annotations['podroute.io/asn']).to.equal('64602');
    expect(JSON.parse(node.metadata.annotations['podroute.io/peers'] ?? '[]')).to.deep.equal([
      { address: '10.10.2.1', asn: 65002 },
      { address: 'fd00:10:2::1', asn: 65002 },
    ]);
  });

  it('Pod objects keep nodeName, labels and the named containerPorts', () => {
    const pod = podObject(topology.kubernetes.pods[0]!) as { metadata: { namespace: string; labels: Record<string, string> }; spec: { nodeName: string; containers: { ports: unknown[] }[] } };
    expect(pod.metadata).to.include({ namespace: 'x' });
    expect(pod.metadata.labels).to.deep.equal({ pod: 'a' });
    expect(pod.spec.nodeName).to.equal('r1n1');
    expect(pod.spec.containers[0]?.ports).to.deep.include({ name: 'serve-81-udp', containerPort: 81, protocol: 'UDP' });
  });

  it('exec targets name pods, nodes, routers and external hosts; unknown ones are refused', () => {
    expect(resolveExecTarget('L', topology, 'x/a')).to.deep.equal({ netns: 'L-pod-x-a', kind: 'pod', member: 'x/a' });
    expect(resolveExecTarget('L', topology, 'node/r1n1').netns).to.equal('L-r1n1');
    expect(resolveExecTarget('L', topology, 'router/spine1').kind).to.equal('router');
    expect(resolveExecTarget('L', topology, 'host/ext1').netns).to.equal('L-ext1');
    expect(() => resolveExecTarget('L', topology, 'node/r9n9')).to.throw(LabError, /no node named "r9n9"/);
    expect(() => resolveExecTarget('L', topology, 'just-a-name')).to.throw(LabError, /expected NAMESPACE\/POD/);
  });

  it('the matrix plans one probe per source, target address and port', () => {
    const jobs = planMatrix(
      [{ identity: 'x/a', controlSocket: '/s/a' }],
      [{ identity: 'y/b', addresses: ['10.244.1.2', 'fd00::2'], ports: [{ port: 80, protocol: 'TCP' }, { port: 80, protocol: 'UDP' }] }],
      700,
    );
    expect(jobs.map((j) => `${j.from} ${j.target} ${j.port}/${j.protocol} ${j.meta.family}`)).to.deep.equal([
      '/s/a 10.244.1.2 80/tcp ipv4',
      '/s/a 10.244.1.2 80/udp ipv4',
      '/s/a fd00::2 80/tcp ipv6',
      '/s/a fd00::2 80/udp ipv6',
    ]);
    expect(jobs.every((j) => j.timeoutMs === 700)).to.equal(true);
  });
});
