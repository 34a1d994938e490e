import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { CLAB_BIRD_IMAGE, kindNodeContainer, renderClab } from '../../../src/lab/clab.js';
import { parseTopology } from '../../../src/lab/topology.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

function filesUnder(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    return statSync(full).isDirectory() ? filesUnder(full, base) : [path.relative(base, full)];
  });
}

describe('lab clab: the committed containerlab files', () => {
  const root = repoRoot();
  const topology = parseTopology(readFileSync(path.join(root, 'topologies', 'two-racks.yaml'), 'utf8'));
  const generated = renderClab(topology, 'two-racks');
  const committedDir = path.join(root, 'containerlab');

  it('are exactly what `podroute lab clab topologies/two-racks.yaml` generates (regenerate with --out-dir containerlab)', () => {
    const committed = filesUnder(committedDir).filter((f) => f === 'two-racks.clab.yml' || f.startsWith(`two-racks${path.sep}`));
    expect(committed.sort()).to.deep.equal(Object.keys(generated).sort());
    for (const [file, content] of Object.entries(generated)) {
      expect(readFileSync(path.join(committedDir, file), 'utf8'), file).to.equal(content);
    }
  });

  it('describe the same topology: FRR routers, kind nodes on the rack LANs, the external host, every link', () => {
    const clab = parse(generated['two-racks.clab.yml'] ?? '') as { name: string; topology: { nodes: Record<string, { kind: string; exec?: string[] }>; links: { endpoints: string[] }[] } };
    expect(clab.name).to.equal('two-racks');
    for (const r of topology.routers) expect(clab.topology.nodes[r.name]?.kind).to.equal('linux');
    expect(clab.topology.nodes['two-racks']?.kind).to.equal('k8s-kind');
    topology.nodes.forEach((n, i) => expect(clab.topology.nodes[kindNodeContainer('two-racks', i)]?.kind, n.name).to.equal('ext-container'));
    expect(clab.topology.links).to.have.length(7);
    expect(clab.topology.links.map((l) => l.endpoints.join(' '))).to.include('tor1:to-r1n1 two-racks-control-plane:eth1');
    // The node behind tor1 gets its rack address on its lab interface.
    expect(clab.topology.nodes['two-racks-control-plane']?.exec).to.include('ip address add 10.10.1.11/24 dev eth1');
    expect(generated['two-racks/tor1/frr.conf']).to.include('bgp listen range 10.10.1.0/24 peer-group NODES');
  });

  it('run a router whose topology says `stack: bird` as a BIRD container with the configuration `lab up` renders for it', () => {
    const dual = parseTopology(readFileSync(path.join(root, 'topologies', 'dual-homed.yaml'), 'utf8'));
    const files = renderClab(dual, 'dual');
    expect(Object.keys(files).filter((f) => f.startsWith('dual/tor')).sort()).to.deep.equal(['dual/tor1/daemons', 'dual/tor1/frr.conf', 'dual/tor2/bird.conf']);
    const clab = parse(files['dual.clab.yml'] ?? '') as { topology: { nodes: Record<string, { kind: string; image?: string; binds?: string[]; cmd?: string }> } };
    expect(clab.topology.nodes.tor2).to.deep.include({ kind: 'linux', image: CLAB_BIRD_IMAGE, binds: ['dual/tor2/bird.conf:/etc/bird/bird.conf'], cmd: '-f -c /etc/bird/bird.conf -s /run/bird.ctl' });
    expect(clab.topology.nodes.tor1?.image).to.not.equal(CLAB_BIRD_IMAGE);
    expect(files['dual/tor2/bird.conf']).to.include('neighbor range 10.10.2.0/24 external;');
    expect(files['dual/tor2/bird.conf']).to.include('log "/var/log/bird.log" all;');
    expect(files['dual.clab.yml']).to.include('# Routers run FRR or BIRD');
  });
});
