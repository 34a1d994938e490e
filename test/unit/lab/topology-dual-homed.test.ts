// Multi-homed nodes and routed rack ports (issue 6, fault 4): topologies/dual-homed.yaml, its layout, the FRR
// configuration and Node objects it gives, and the errors a bad multi-homed topology gets.
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { frrFiles, renderRouterConfig } from '../../../src/lab/frr.js';
import { nodeObject } from '../../../src/lab/cluster-objects.js';
import { labAgentConfig } from '../../../src/lab/daemons.js';
import { labPaths } from '../../../src/lab/paths.js';
import { memberBatch } from '../../../src/lab/netns.js';
import { nodeTors, parseTopology, planLayout, TopologyError, type Topology } from '../../../src/lab/topology.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}
const dualHomedText = readFileSync(path.join(repoRoot(), 'topologies', 'dual-homed.yaml'), 'utf8');
const twoRacksText = readFileSync(path.join(repoRoot(), 'topologies', 'two-racks.yaml'), 'utf8');

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests poke arbitrary (also wrong) values into it
type RawTopology = Record<string, any>;
function errorsAfter(edit: (raw: RawTopology) => void): string[] {
  const raw = parse(dualHomedText, { merge: true }) as RawTopology;
  edit(raw);
  try {
    parseTopology(stringify(raw));
    return [];
  } catch (err) {
    expect(err).to.be.instanceOf(TopologyError);
    return (err as TopologyError).issues;
  }
}

describe('lab topology: dual-homed racks', () => {
  let topology: Topology;
  before(() => {
    topology = parseTopology(dualHomedText);
  });

  it('declares two spines, two ToRs with routed ports, four nodes on both ToRs, each its own AS, no mesh, dual-stack', () => {
    expect(topology.routers.filter((r) => r.role === 'spine')).to.have.length(2);
    expect(topology.routers.filter((r) => r.role === 'tor')).to.have.length(2);
    expect(topology.cluster.mesh).to.equal('off');
    for (const n of topology.nodes) expect(nodeTors(n)).to.deep.equal(['tor1', 'tor2']);
    expect(new Set(topology.nodes.map((n) => n.asn)).size).to.equal(topology.nodes.length);
    for (const n of topology.nodes) expect(n.podCIDRs.map((c) => familyOf(c) === 'ipv6')).to.deep.equal([false, true]);
    expect(new Set(topology.kubernetes.pods.map((p) => p.nodeName)).size).to.equal(topology.nodes.length);
  });

  it('lays out one routed /31 and /127 per node and ToR: ToR host 2k, node host 2k+1, eth0 to tor1, eth1 to tor2', () => {
    const layout = planLayout(topology);
    const r1n2 = layout.nodes.find((n) => n.name === 'r1n2');
    expect(r1n2?.tors).to.deep.equal(['tor1', 'tor2']);
    expect(r1n2?.uplinks.map((u) => [u.interface, u.tor, u.addresses.map((a) => `${a.address}/${a.prefixLength}`), u.gateways.map((g) => g.address)])).to.deep.equal([
      ['eth0', 'tor1', ['10.10.1.5/31', 'fd00:10:1::5/127'], ['10.10.1.4', 'fd00:10:1::4']],
      ['eth1', 'tor2', ['10.10.2.5/31', 'fd00:10:2::5/127'], ['10.10.2.4', 'fd00:10:2::4']],
    ]);
    expect(r1n2?.addresses.map((a) => a.address)).to.deep.equal(['10.10.1.5', 'fd00:10:1::5', '10.10.2.5', 'fd00:10:2::5']);
    // The ToR's end of a routed port holds the ToR's address and is no bridge port; the ToR has no rack bridge.
    const torEnd = layout.veths.find((v) => v.a.member === 'tor2' && v.b.member === 'r1n2')?.a.interface;
    expect(torEnd).to.deep.equal({ name: 'to-r1n2', addresses: ['10.10.2.4/31', 'fd00:10:2::4/127'] });
    expect(layout.members.find((m) => m.name === 'tor1')?.bridges).to.deep.equal([]);
    expect(layout.racks.map((r) => [r.tor, r.ports, r.nodes.length])).to.deep.equal([
      ['tor1', 'routed', 4],
      ['tor2', 'routed', 4],
    ]);
  });

  it('gives a dual-homed node one multipath default route per family over both ToRs', () => {
    const layout = planLayout(topology);
    const member = layout.members.find((m) => m.name === 'r1n1');
    const lines = memberBatch(member!, layout);
    expect(lines.filter((l) => l.startsWith('route'))).to.deep.equal([
      'route replace 0.0.0.0/0 nexthop via 10.10.1.2 nexthop via 10.10.2.2',
      'route replace ::/0 nexthop via fd00:10:1::2 nexthop via fd00:10:2::2',
    ]);
    expect(lines).to.include('address add 10.10.2.3/31 dev eth1');
  });

  it("puts both ToRs in the Node's podroute.io/peers, each with its own ASN (and tor2's rack MD5 password file)", () => {
    const layout = planLayout(topology);
    const annotations = (nodeObject(topology, layout, 'r1n3').metadata as { annotations: Record<string, string> }).annotations;
    expect(annotations['podroute.io/asn']).to.equal('64603');
    expect(JSON.parse(annotations['podroute.io/peers'] ?? '[]')).to.deep.equal([
      { address: '10.10.1.6', asn: 65001 },
      { address: 'fd00:10:1::6', asn: 65001 },
      { address: '10.10.2.6', asn: 65002, passwordFile: 'tor2.md5' },
      { address: 'fd00:10:2::6', asn: 65002, passwordFile: 'tor2.md5' },
    ]);
    // The agent reads that file from its bgp.passwordDir, where the lab writes the rack's key.
    expect(labAgentConfig('t', topology, 'r1n3').bgp?.passwordDir).to.equal(labPaths('t').nodeSecretsDir('r1n3'));
  });

  it('configures a routed ToR to listen on its rack subnet, announce it, and take each node at its port address; multipath everywhere', () => {
    const layout = planLayout(topology);
    const files = frrFiles('/run/x/tor1');
    const tor1 = renderRouterConfig(topology, layout, 'tor1', files);
    expect(tor1.zebra).to.include('no zebra nexthop kernel enable');
    for (const line of [
      ' bgp listen range 10.10.1.0/24 peer-group NODES',
      ' bgp listen range fd00:10:1::/64 peer-group NODES',
      ' no bgp network import-check',
      '  network 10.10.1.0/24',
      ' set ip next-hop peer-address',
      ' set ipv6 next-hop peer-address',
      ' bgp bestpath as-path multipath-relax',
      '  maximum-paths 8',
    ]) {
      expect(tor1.bgpd.split('\n'), line).to.include(line);
    }
    const spine = renderRouterConfig(topology, layout, 'spine2', frrFiles('/run/x/spine2'));
    expect(spine.zebra).to.include('no zebra nexthop kernel enable');
    expect(spine.bgpd).to.include(' bgp bestpath as-path multipath-relax');
    expect(spine.bgpd).to.not.include('listen range');
  });

  it('leaves bridged racks as they were (two-racks: no next-hop rewrite, import check on, single default route)', () => {
    const twoRacks = parseTopology(twoRacksText);
    const layout = planLayout(twoRacks);
    const tor1 = renderRouterConfig(twoRacks, layout, 'tor1', frrFiles('/run/x/tor1')).bgpd;
    expect(tor1).to.not.include('next-hop peer-address');
    expect(tor1).to.not.include('import-check');
    expect(layout.racks.map((r) => r.ports)).to.deep.equal(['bridge', 'bridge']);
    expect(layout.nodes.map((n) => n.uplinks.length)).to.deep.equal([1, 1, 1, 1]);
  });

  it('takes a single-homed node on a routed rack', () => {
    expect(errorsAfter((t) => (t.nodes[3].rack = 'tor2'))).to.deep.equal([]);
    const raw = parse(dualHomedText, { merge: true }) as RawTopology;
    raw.nodes[3].rack = 'tor2';
    const layout = planLayout(parseTopology(stringify(raw)));
    expect(layout.nodes.find((n) => n.name === 'r1n4')?.uplinks.map((u) => [u.interface, u.addresses[0]?.address])).to.deep.equal([['eth0', '10.10.2.9']]);
  });

  it('names the bad field of a bad multi-homed topology', () => {
    expect(errorsAfter((t) => (t.nodes[0].rack = ['tor1', 'tor1']))).to.deep.equal(['nodes[0].rack[1]: "tor1" is listed twice']);
    expect(errorsAfter((t) => (t.nodes[1].rack = ['tor1', 'tor9']))).to.deep.equal(['nodes[1].rack[1]: no router named "tor9"']);
    expect(errorsAfter((t) => (t.nodes[1].rack = ['tor1', 'spine1']))).to.deep.equal(['nodes[1].rack[1]: router "spine1" has no rack link']);
    expect(errorsAfter((t) => (t.nodes[2].asn = 65002))).to.deep.equal([
      "nodes[2].asn: 65002 equals its ToR tor2's ASN (nodes peer with their ToR over eBGP)",
    ]);
    expect(errorsAfter((t) => (t.nodes[0].addresses = { ipv4: '10.10.1.3' }))).to.deep.equal([
      'nodes[0].addresses: only a node on one bridged rack may set its address (the others are derived)',
    ]);
    expect(errorsAfter((t) => (t.links[4].ipv4 = '10.10.1.0/29'))).to.deep.equal(['nodes[3]: rack LAN 10.10.1.0/29 of "tor1" is too small to derive an address']);
    expect(errorsAfter((t) => (t.links[4].ports = 'mesh'))[0]).to.match(/^links\[4\]\.ports: /);
    expect(errorsAfter((t) => (t.nodes[0].rack = []))[0]).to.match(/^nodes\[0\]\.rack/);
    expect(errorsAfter((t) => (t.nodes[0].rack = ['tor1', 'tor2', 'tor1', 'tor2', 'tor1']))[0]).to.match(/^nodes\[0\]\.rack/);
  });
});
