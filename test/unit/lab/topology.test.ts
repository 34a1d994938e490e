import { expect } from 'chai';
import fc from 'fast-check';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify, parse } from 'yaml';
import {
  cidrContainsAddress,
  cidrsOverlap,
  MAX_INTERFACE_NAME,
  nthAddress,
  parseTopology,
  planLayout,
  TopologyError,
  type Topology,
} from '../../../src/lab/topology.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

/** The repository root: the nearest ancestor with a package.json (tests run from dist/ or any --outDir). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}
const twoRacksFile = path.join(repoRoot(), 'topologies', 'two-racks.yaml');
const twoRacksText = readFileSync(twoRacksFile, 'utf8');

/** two-racks as a plain object, changed by `edit`, back to YAML and parsed: the error (if any) it gives. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests poke arbitrary (also wrong) values into it
type RawTopology = Record<string, any>;
function errorsAfter(edit: (raw: RawTopology) => void): string[] {
  const raw = parse(twoRacksText, { merge: true }) as RawTopology;
  edit(raw);
  try {
    parseTopology(stringify(raw));
    return [];
  } catch (err) {
    expect(err).to.be.instanceOf(TopologyError);
    expect((err as TopologyError).code).to.equal('TOPOLOGY_INVALID');
    return (err as TopologyError).issues;
  }
}

describe('lab topology: two-racks', () => {
  let topology: Topology;
  before(() => {
    topology = parseTopology(twoRacksText);
  });

  it('declares one spine, two ToRs, two racks of two nodes, dual-stack, an external host', () => {
    expect(topology.routers.filter((r) => r.role === 'spine')).to.have.length(1);
    expect(topology.routers.filter((r) => r.role === 'tor')).to.have.length(2);
    for (const tor of ['tor1', 'tor2']) expect(topology.nodes.filter((n) => n.rack === tor)).to.have.length(2);
    expect(topology.cluster.podRanges.some((r) => familyOf(r) === 'ipv6')).to.equal(true);
    expect(topology.cluster.podRanges.some((r) => familyOf(r) === 'ipv4')).to.equal(true);
    for (const node of topology.nodes) expect(node.podCIDRs).to.have.length(2);
    expect(topology.cluster.mesh).to.equal('same-asn');
    // Nodes of a rack share an ASN, different from their ToR's.
    expect(new Set(topology.nodes.filter((n) => n.rack === 'tor1').map((n) => n.asn)).size).to.equal(1);
    expect(topology.externalHosts).to.have.length(1);
  });

  it('has namespaces x,y,z with pods a,b,c labelled and declaring 80/81 over TCP and UDP, on every node', () => {
    expect(topology.kubernetes.namespaces.map((n) => [n.name, n.labels.ns])).to.deep.equal([
      ['x', 'x'],
      ['y', 'y'],
      ['z', 'z'],
    ]);
    const pods = topology.kubernetes.pods;
    expect(pods.map((p) => `${p.namespace}/${p.name}`).sort()).to.deep.equal(['x/a', 'x/b', 'x/c', 'y/a', 'y/b', 'y/c', 'z/a', 'z/b', 'z/c']);
    for (const pod of pods) {
      expect(pod.labels.pod).to.equal(pod.name);
      expect(pod.containerPorts.map((p) => `${p.name}:${p.containerPort}/${p.protocol}`)).to.deep.equal([
        'serve-80-tcp:80/TCP',
        'serve-80-udp:80/UDP',
        'serve-81-tcp:81/TCP',
        'serve-81-udp:81/UDP',
      ]);
    }
    expect(new Set(pods.map((p) => p.nodeName))).to.deep.equal(new Set(topology.nodes.map((n) => n.name)));
  });

  it('lays out namespaces, veths, addresses and default routes', () => {
    const layout = planLayout(topology);
    expect(layout.members.map((m) => m.name)).to.deep.equal(['spine1', 'tor1', 'tor2', 'r1n1', 'r1n2', 'r2n1', 'r2n2', 'ext1']);
    expect(layout.veths).to.have.length(2 + 4 + 1);
    const r1n1 = layout.nodes.find((n) => n.name === 'r1n1');
    expect(r1n1?.addresses.map((a) => a.address)).to.deep.equal(['10.10.1.11', 'fd00:10:1::b']);
    expect(r1n1?.gateways.map((g) => g.address)).to.deep.equal(['10.10.1.1', 'fd00:10:1::1']);
    const nodeMember = layout.members.find((m) => m.name === 'r2n2');
    expect(nodeMember?.defaultRoutes).to.deep.equal([
      { family: 'ipv4', via: '10.10.2.1' },
      { family: 'ipv6', via: 'fd00:10:2::1' },
    ]);
    // Every interface address of a node lies in its rack LAN; the ToR's bridge holds the gateway.
    const tor1 = layout.members.find((m) => m.name === 'tor1');
    expect(tor1?.bridges[0]?.addresses).to.deep.equal(['10.10.1.1/24', 'fd00:10:1::1/64']);
    for (const v of layout.veths) {
      for (const end of [v.a, v.b]) expect(end.interface.name.length).to.be.at.most(MAX_INTERFACE_NAME);
    }
    // Two sessions (v4 and v6) per router-router link, seen from both ends.
    expect(layout.fabric).to.have.length(2 * 2 * 2);
    const spineToTor1v6 = layout.fabric.find((s) => s.router === 'spine1' && s.peer === 'tor1' && s.family === 'ipv6');
    expect(spineToTor1v6).to.include({ localAddress: 'fd00:255:1::', peerAddress: 'fd00:255:1::1', peerAsn: 65001 });
    const ext = layout.externals[0];
    expect(ext?.networks).to.deep.equal(['198.51.100.0/24', '2001:db8:100::/64']);
    expect(layout.members.find((m) => m.name === 'ext1')?.forwarding).to.equal(false);
  });
});

describe('lab topology: validation names the bad field', () => {
  it('a bad CIDR', () => {
    expect(errorsAfter((t) => (t.nodes[2].podCIDRs[0] = '10.244.3.0/33'))).to.deep.equal(['nodes[2].podCIDRs[0]: not a CIDR']);
  });

  it('a link mtu is an integer from 1280 (IPv6 may cross any lab link) to 65535', () => {
    expect(errorsAfter((t) => (t.links[0].mtu = 9000))).to.deep.equal([]);
    expect(errorsAfter((t) => (t.links[2].mtu = 1000))).to.deep.equal(['links[2].mtu: Number must be greater than or equal to 1280']);
    expect(errorsAfter((t) => (t.links[0].mtu = 1500.5))).to.deep.equal(['links[0].mtu: Expected integer, received float']);
  });

  it('a podCIDR outside the pod ranges, and overlapping podCIDRs', () => {
    expect(errorsAfter((t) => (t.nodes[1].podCIDRs[0] = '10.99.0.0/24'))).to.deep.equal([
      'nodes[1].podCIDRs[0]: 10.99.0.0/24 is not inside the cluster podRanges',
    ]);
    expect(errorsAfter((t) => (t.nodes[3].podCIDRs[0] = '10.244.1.128/25'))[0]).to.match(/^nodes\[3\]\.podCIDRs\[0\]: 10\.244\.1\.128\/25 overlaps nodes\[0\]\.podCIDRs\[0\]/);
  });

  it('an unknown rack, an address outside its LAN, a pod on a missing node', () => {
    expect(errorsAfter((t) => (t.nodes[0].rack = 'tor9'))).to.deep.equal(['nodes[0].rack: no router named "tor9"']);
    expect(errorsAfter((t) => (t.nodes[0].addresses = { ipv4: '10.10.2.50' }))).to.deep.equal([
      'nodes[0].addresses.ipv4: 10.10.2.50 is not inside the rack LAN 10.10.1.0/24',
    ]);
    expect(errorsAfter((t) => (t.kubernetes.pods[4].nodeName = 'nowhere'))).to.deep.equal(['kubernetes.pods[4].nodeName: no node named "nowhere"']);
  });

  it('duplicate names, unknown keys, names too long for an interface', () => {
    expect(errorsAfter((t) => (t.nodes[1].name = 'tor1'))).to.include('nodes[1].name: duplicate name "tor1"');
    expect(errorsAfter((t) => (t.routers[0].colour = 'red'))).to.deep.equal(["routers[0]: Unrecognized key(s) in object: 'colour'"]);
    expect(errorsAfter((t) => (t.routers[0].name = 'averyveryverylongname'))[0]).to.match(/^routers\[0\]\.name: must match/);
  });

  it('an external host inside the cluster range, a node sharing its ToR ASN, an undeclared namespace', () => {
    expect(errorsAfter((t) => (t.externalHosts[0].addresses = ['10.244.200.10/24']))).to.deep.equal([
      'externalHosts[0].addresses[0]: 10.244.200.0/24 overlaps the cluster pod range 10.244.0.0/16',
    ]);
    expect(errorsAfter((t) => (t.nodes[0].asn = 65001))).to.deep.equal([
      "nodes[0].asn: 65001 equals its ToR's ASN (nodes peer with their ToR over eBGP)",
    ]);
    expect(errorsAfter((t) => (t.kubernetes.pods[0].namespace = 'w'))).to.deep.equal(['kubernetes.pods[0].namespace: namespace "w" is not declared']);
  });

  it('Service ranges: no overlap with lab networks, pod ranges or each other; pool names unique; network CIDRs', () => {
    expect(errorsAfter((t) => (t.services.loadBalancerPools[0].cidrs = ['10.10.1.128/26']))).to.deep.equal([
      'services.loadBalancerPools[0].cidrs[0]: 10.10.1.128/26 overlaps links[2].ipv4 (10.10.1.0/24)',
    ]);
    expect(errorsAfter((t) => (t.services.externalIPRanges = ['10.244.9.0/24', '203.0.113.0/24']))).to.deep.equal([
      'services.externalIPRanges[0]: 10.244.9.0/24 overlaps the cluster pod range 10.244.0.0/16',
      'services.externalIPRanges[1]: 203.0.113.0/24 overlaps services.loadBalancerPools[0].cidrs[0] (203.0.113.0/26)',
    ]);
    expect(errorsAfter((t) => t.services.loadBalancerPools.push({ name: 'lab', cidrs: ['192.0.2.0/28'] }))).to.deep.equal(['services.loadBalancerPools[1].name: duplicate pool "lab"']);
    expect(errorsAfter((t) => (t.services.clusterIPRanges = ['10.96.0.1/16']))).to.deep.equal(['services.clusterIPRanges[0]: not a network address (host bits set)']);
    expect(errorsAfter((t) => (t.services.loadBalancerPools[0].bogus = 1))[0]).to.match(/services\.loadBalancerPools\.0|services\.loadBalancerPools\[0\]/);
    expect(errorsAfter((t) => delete t.services)).to.deep.equal([]);
  });

  it('two-racks configures a dual-stack LoadBalancer pool, external-IP ranges and the lab API server ClusterIP ranges', () => {
    const t = parseTopology(twoRacksText);
    expect(t.services).to.deep.equal({
      loadBalancerPools: [{ name: 'lab', cidrs: ['203.0.113.0/26', '2001:db8:200::/120'], autoAssign: true }],
      externalIPRanges: ['203.0.113.64/26', '2001:db8:201::/120'],
      clusterIPRanges: ['10.96.0.0/16', 'fd00:10:96::/112'],
    });
  });

  it('not YAML at all', () => {
    expect(() => parseTopology('cluster: [')).to.throw(TopologyError, /not valid YAML/);
  });
});

describe('lab topology: address arithmetic', () => {
  it('nthAddress stays inside its CIDR and overlap is symmetric', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 24 - 1 }), fc.integer({ min: 8, max: 30 }), fc.integer({ min: 0, max: 3 }), (base, len, n) => {
        const a = `${base >>> 16}.${(base >>> 8) & 255}.${base & 255}.0`;
        const cidr = `${a}/${len}`;
        const network = nthAddress(cidr, 0) as string;
        const normalized = `${network}/${len}`;
        const addr = nthAddress(normalized, n);
        if (addr !== undefined) expect(cidrContainsAddress(normalized, addr)).to.equal(true);
        expect(cidrsOverlap(normalized, '10.0.0.0/8')).to.equal(cidrsOverlap('10.0.0.0/8', normalized));
      }),
    );
    expect(nthAddress('fd00:10:1::/64', 11)).to.equal('fd00:10:1::b');
    expect(nthAddress('10.255.1.2/31', 2)).to.equal(undefined);
  });
});
