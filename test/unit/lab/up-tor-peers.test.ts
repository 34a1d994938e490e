// lab up starts the routers' bgpd once every agent holds the ToR peers its Node names: which peers those are.
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTopology, planLayout, type Topology } from '../../../src/lab/topology.js';
import { expectedTorPeers } from '../../../src/lab/up.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

function withNodeAnnotations(topology: Topology, node: string, annotations: Record<string, string>): Topology {
  return { ...topology, nodes: topology.nodes.map((n) => (n.name === node ? { ...n, annotations: { ...n.annotations, ...annotations } } : n)) };
}

describe('lab up: the ToR peers each agent must hold before the routers start', () => {
  const topology = parseTopology(readFileSync(path.join(repoRoot(), 'topologies', 'two-racks.yaml'), 'utf8'));

  it('are the ToR addresses on the node link, both families, for every node', () => {
    const peers = expectedTorPeers(topology, planLayout(topology));
    expect([...peers.keys()].sort()).to.deep.equal(['r1n1', 'r1n2', 'r2n1', 'r2n2']);
    expect(peers.get('r1n1')).to.deep.equal(['10.10.1.1', 'fd00:10:1::1']);
    expect(peers.get('r2n2')).to.deep.equal(['10.10.2.1', 'fd00:10:2::1']);
  });

  it('follow a podroute.io/peers annotation of the topology: only the ToR addresses it names, none if it is unreadable', () => {
    const onlyV4 = withNodeAnnotations(topology, 'r1n1', { 'podroute.io/peers': JSON.stringify([{ address: '10.10.1.1', asn: 65001 }, { address: '192.0.2.9', asn: 65009 }]) });
    expect(expectedTorPeers(onlyV4, planLayout(onlyV4)).get('r1n1')).to.deep.equal(['10.10.1.1']);
    const unreadable = withNodeAnnotations(topology, 'r1n1', { 'podroute.io/peers': '[{address: ' });
    const peers = expectedTorPeers(unreadable, planLayout(unreadable));
    expect(peers.get('r1n1')).to.deep.equal([]);
    expect(peers.get('r1n2')).to.deep.equal(['10.10.1.1', 'fd00:10:1::1']);
  });
});
