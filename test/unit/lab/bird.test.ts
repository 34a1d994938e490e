import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIRD_RECOVERY_WAIT_SECONDS, birdArgs, birdFiles, birdNeighborStates, parseBirdProtocols, parseBirdRoutes, renderBirdConf } from '../../../src/lab/bird.js';
import { frrFiles, pendingFabricSessions, renderRouterConfig } from '../../../src/lab/frr.js';
import { routerProcessNames } from '../../../src/lab/routers.js';
import { parseTopology, planLayout, TopologyError, type Topology } from '../../../src/lab/topology.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}
const topologyText = (file: string): string => readFileSync(path.join(repoRoot(), 'topologies', file), 'utf8');
const birdOutput = (file: string): string => readFileSync(path.join(repoRoot(), 'test', 'unit', 'lab', 'bird-output', file), 'utf8');

/** two-racks.yaml with tor2 run by BIRD. */
function twoRacksWithBirdTor(): Topology {
  return parseTopology(topologyText('two-racks.yaml').replace('{ name: tor2, asn: 65002, routerId: 10.255.0.12, role: tor }', '{ name: tor2, asn: 65002, routerId: 10.255.0.12, role: tor, stack: bird }'));
}

/** The lines of the block that starts with `header` up to its closing `}` (top-level blocks only). */
function block(config: string, header: string): string[] {
  const lines = config.split('\n');
  const start = lines.findIndex((l) => l.startsWith(header));
  if (start === -1) return [];
  const end = lines.indexOf('}', start);
  return lines.slice(start, end + 1).map((l) => l.trim());
}

describe('lab BIRD configuration', () => {
  const files = birdFiles('/run/podroute-lab/t/bird/tor2');

  it('a router runs FRR unless its topology says `stack: bird`; any other stack is refused with the field named', () => {
    const two = parseTopology(topologyText('two-racks.yaml'));
    expect(two.routers.map((r) => r.stack)).to.deep.equal(['frr', 'frr', 'frr']);
    expect(twoRacksWithBirdTor().routers.map((r) => `${r.name}:${r.stack}`)).to.deep.equal(['spine1:frr', 'tor1:frr', 'tor2:bird']);
    const bad = topologyText('two-racks.yaml').replace('role: tor }', 'role: tor, stack: gobgp }');
    expect(() => parseTopology(bad)).to.throw(TopologyError, /routers\[1\]\.stack/);
    expect(routerProcessNames({ name: 'tor2', stack: 'bird' })).to.deep.equal(['bird/tor2']);
    expect(routerProcessNames({ name: 'tor1', stack: 'frr' })).to.deep.equal(['bgpd/tor1', 'zebra/tor1']);
  });

  it('a BIRD ToR dials its known nodes and takes the rest from a listen range per rack subnet, eBGP with GTSM and graceful restart', () => {
    const t = twoRacksWithBirdTor();
    const conf = renderBirdConf(t, planLayout(t), 'tor2', files);
    const lines = conf.split('\n');
    expect(lines).to.include('router id 10.255.0.12;');
    expect(lines).to.include(`log "${files.log}" all;`);
    const template = block(conf, 'template bgp nodes');
    expect(template).to.include.members(['local as 65002;', 'ttl security on;', 'graceful restart on;', 'connect delay time 1;', 'connect retry time 1;']);
    expect(template).to.include.members(['ipv4 { import filter nodes_in_ipv4; export all; };', 'ipv6 { import filter nodes_in_ipv6; export all; };']);
    expect(template.join('\n'), 'no password on a rack without one').not.to.include('password');
    expect(lines.filter((l) => l.startsWith('protocol bgp node_'))).to.deep.equal([
      'protocol bgp node_10_10_2_11 from nodes { neighbor 10.10.2.11 external; }',
      'protocol bgp node_fd00_10_2__b from nodes { neighbor fd00:10:2::b external; }',
      'protocol bgp node_10_10_2_12 from nodes { neighbor 10.10.2.12 external; }',
      'protocol bgp node_fd00_10_2__c from nodes { neighbor fd00:10:2::c external; }',
    ]);
    expect(block(conf, 'protocol bgp nodes_range_0')).to.deep.equal(['protocol bgp nodes_range_0 from nodes {', 'neighbor range 10.10.2.0/24 external;', 'dynamic name "dyn";', '}']);
    expect(block(conf, 'protocol bgp nodes_range_1')).to.include('neighbor range fd00:10:2::/64 external;');
    expect(conf, "the other rack's subnet").not.to.include('10.10.1.0/24');
  });

  it('a BIRD router has one eBGP session per fabric link and family, carrying that family only', () => {
    const t = twoRacksWithBirdTor();
    const conf = renderBirdConf(t, planLayout(t), 'tor2', files);
    expect(block(conf, 'template bgp fabric')).to.include.members(['local as 65002;', 'graceful restart on;', 'connect delay time 1;']);
    expect(block(conf, 'protocol bgp fabric_10_255_1_2 ')).to.deep.equal([
      'protocol bgp fabric_10_255_1_2 from fabric {',
      'description "spine1";',
      'neighbor 10.255.1.2 as 65000;',
      'ipv4 { import all; export all; };',
      '}',
    ]);
    expect(block(conf, 'protocol bgp fabric_fd00_255_1__2 ')).to.include.members(['neighbor fd00:255:1::2 as 65000;', 'ipv6 { import all; export all; };']);
  });

  it('BGP routes go to the kernel as multipath routes (merge paths), persist over a crash and stay through a recovery; the rack subnets are announced', () => {
    const t = twoRacksWithBirdTor();
    const conf = renderBirdConf(t, planLayout(t), 'tor2', files);
    for (const family of ['ipv4', 'ipv6']) {
      expect(block(conf, `protocol kernel kernel_${family}`)).to.include.members([
        `${family} { import none; export where source = RTS_BGP; };`,
        'merge paths on limit 8;',
        'persist;',
        'graceful restart on;',
      ]);
    }
    expect(conf.split('\n')).to.include(`graceful restart wait ${BIRD_RECOVERY_WAIT_SECONDS};`);
    expect(block(conf, 'protocol static announce_ipv4')).to.include('route 10.10.2.0/24 unreachable;');
    expect(block(conf, 'protocol static announce_ipv6')).to.include('route fd00:10:2::/64 unreachable;');
    // The spine announces its external host's networks.
    const spine = renderBirdConf(t, planLayout(t), 'spine1', files);
    expect(block(spine, 'protocol static announce_ipv4')).to.include('route 198.51.100.0/24 unreachable;');
    expect(block(spine, 'protocol static announce_ipv6')).to.include('route 2001:db8:100::/64 unreachable;');
    expect(spine, 'a spine has no node sessions').not.to.include('template bgp nodes');
  });

  it('a BIRD ToR accepts from nodes what the FRR one does: pod ranges, Service host routes in the pools and external-IP ranges, ClusterIP aggregates', () => {
    const t = twoRacksWithBirdTor();
    const conf = renderBirdConf(t, planLayout(t), 'tor2', files);
    const lines = conf.split('\n');
    const start = lines.indexOf('filter nodes_in_ipv4 {');
    expect(lines.slice(start, start + 6).map((l) => l.trim())).to.deep.equal([
      'filter nodes_in_ipv4 {',
      'if net ~ [ 10.244.0.0/16{16,32}, 203.0.113.0/26{32,32}, 203.0.113.64/26{32,32}, 10.96.0.0/16{32,32}, 10.96.0.0/16 ] then {',
      'accept;',
      '}',
      'reject;',
      '}',
    ]);
    expect(block(conf, 'filter nodes_in_ipv6')[1]).to.equal(
      'if net ~ [ fd00:10:244::/56{56,128}, 2001:db8:200::/120{128,128}, 2001:db8:201::/120{128,128}, fd00:10:96::/112{128,128}, fd00:10:96::/112 ] then {',
    );
    // The same set as FRR's prefix-lists for the same topology.
    const frr = renderRouterConfig(t, planLayout(t), 'tor2', frrFiles('/x')).bgpd;
    expect(frr).to.include('ip prefix-list CLUSTER-PODS-V4 seq 5 permit 10.244.0.0/16 le 32');
    expect(frr).to.include('ip prefix-list CLUSTER-SERVICES-V4 seq 5 permit 203.0.113.0/26 ge 32');
  });

  it('a family without ranges accepts nothing from nodes (no empty set, which BIRD refuses)', () => {
    const v4Only = topologyText('two-racks.yaml')
      .replace('podRanges: [10.244.0.0/16, "fd00:10:244::/56"]', 'podRanges: [10.244.0.0/16]')
      .replace(/, "fd00:10:244:\d::\/64"/g, '')
      .replace(/\nservices:\n(?: {2}.*\n)+/, '\n');
    const t = parseTopology(v4Only);
    expect(t.services.clusterIPRanges).to.deep.equal([]);
    const conf = renderBirdConf(t, planLayout(t), 'tor1', files);
    expect(block(conf, 'filter nodes_in_ipv6')).to.deep.equal(['filter nodes_in_ipv6 {', 'reject;', '}']);
  });

  it('on a routed rack (dual-homed tor2) the next hop is the node port address, over a session of the same family; the MD5 password is on every node session', () => {
    const t = parseTopology(topologyText('dual-homed.yaml'));
    const layout = planLayout(t);
    expect(t.routers.map((r) => `${r.name}:${r.stack}`)).to.deep.equal(['spine1:frr', 'spine2:frr', 'tor1:frr', 'tor2:bird']);
    const conf = renderBirdConf(t, layout, 'tor2', files);
    expect(block(conf, 'filter nodes_in_ipv4')).to.include('if from.is_v4 then gw = from;');
    expect(block(conf, 'filter nodes_in_ipv6')).to.include('if !from.is_v4 then gw = from;');
    expect(block(conf, 'template bgp nodes')).to.include('password "lab-md5-tor2";');
    expect(conf.split('\n').filter((l) => l.startsWith('protocol bgp node_')).map((l) => /neighbor (\S+) /.exec(l)?.[1])).to.deep.equal([
      '10.10.2.3', 'fd00:10:2::3', '10.10.2.5', 'fd00:10:2::5', '10.10.2.7', 'fd00:10:2::7', '10.10.2.9', 'fd00:10:2::9',
    ]);
    // The routed rack is announced although no connected route covers it (FRR: no bgp network import-check).
    expect(block(conf, 'protocol static announce_ipv4')).to.include('route 10.10.2.0/24 unreachable;');
    // A bridged rack keeps the node's next hop.
    const two = twoRacksWithBirdTor();
    expect(renderBirdConf(two, planLayout(two), 'tor2', files)).not.to.include('gw = from');
  });

  it('the password of an FRR rack goes on its NODES peer group; the topology refuses one with spaces or quotes', () => {
    const t = parseTopology(topologyText('dual-homed.yaml').replace('{ type: rack, tor: tor1, ports: routed,', '{ type: rack, tor: tor1, ports: routed, password: frr-key,'));
    const bgpd = renderRouterConfig(t, planLayout(t), 'tor1', frrFiles('/x')).bgpd;
    expect(bgpd.split('\n')).to.include(' neighbor NODES password frr-key');
    expect(renderRouterConfig(parseTopology(topologyText('two-racks.yaml')), planLayout(parseTopology(topologyText('two-racks.yaml'))), 'tor1', frrFiles('/x')).bgpd).not.to.include('password');
    expect(() => parseTopology(topologyText('dual-homed.yaml').replace('password: lab-md5-tor2', 'password: "a b"'))).to.throw(TopologyError, /links\[5\]\.password/);
  });

  it('with cluster.bfd, a ToR runs BFD with its nodes at the topology\'s intervals, as FRR\'s bfdd does (off by default; not on fabric sessions); bird -p takes it', () => {
    const withBfd = parseTopology(topologyText('dual-homed.yaml').replace(/^ {2}bfd: .*$/m, '  bfd: { minTxMs: 200, minRxMs: 250, multiplier: 3 }'));
    const without = parseTopology(topologyText('dual-homed.yaml').replace(/^ {2}bfd: .*$/m, ''));
    expect(renderBirdConf(without, planLayout(without), 'tor2', files)).not.to.include('bfd');
    const l = planLayout(withBfd);
    const conf = renderBirdConf(withBfd, l, 'tor2', files);
    expect(block(conf, 'protocol bfd')).to.deep.equal(['protocol bfd {', 'interface "*" { min rx interval 250 ms; min tx interval 200 ms; multiplier 3; };', '}']);
    expect(block(conf, 'template bgp fabric')).not.to.include('bfd on;');
    expect(block(conf, 'template bgp nodes')).to.include('bfd on;');
    expect(renderRouterConfig(withBfd, l, 'tor1', frrFiles('/x')).bfdd).to.include('transmit-interval 200');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'podroute-bird-bfd-'));
    try {
      writeFileSync(path.join(dir, 'bird.conf'), conf);
      expect(execFileSync('bird', ['-p', '-c', path.join(dir, 'bird.conf')], { encoding: 'utf8' })).to.equal('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("BIRD 2's own parser (bird -p) takes every config generated for every router of every topology, and bird runs in the foreground", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'podroute-bird-'));
    try {
      for (const file of ['two-racks.yaml', 'dual-homed.yaml']) {
        const t = parseTopology(topologyText(file));
        const l = planLayout(t);
        for (const router of t.routers) {
          const routerFiles = birdFiles(path.join(dir, `${file}-${router.name}`));
          const conf = path.join(dir, `${file}-${router.name}.conf`);
          writeFileSync(conf, renderBirdConf(t, l, router.name, routerFiles));
          // -p parses and exits: 0 and silent, or the file, line and reason.
          const result = (() => {
            try {
              return execFileSync('bird', ['-p', '-c', conf], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
            } catch (err) {
              return `failed: ${String((err as { stderr?: string }).stderr ?? err)}`;
            }
          })();
          expect(result, `${file} ${router.name}`).to.equal('');
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(birdArgs(files)).to.deep.equal(['bird', '-f', '-c', files.config, '-s', files.socket]);
    expect(birdArgs(files, { recovery: true })).to.deep.equal(['bird', '-f', '-c', files.config, '-s', files.socket, '-R']);
  });
});

describe('lab BIRD state (birdc output of a running dual-homed lab)', () => {
  it('show protocols all: every BGP session with its neighbor, AS, state and imported routes; no kernel, static or listen-range protocol', () => {
    const protocols = parseBirdProtocols(birdOutput('show-protocols-all.txt'));
    expect(protocols.map((p) => p.name)).to.deep.equal([
      'fabric_10_255_1_2', 'fabric_fd00_255_1__2', 'fabric_10_255_1_6', 'fabric_fd00_255_1__6',
      'node_10_10_2_3', 'node_fd00_10_2__3', 'node_10_10_2_5', 'node_fd00_10_2__5', 'node_10_10_2_7', 'node_fd00_10_2__7', 'node_10_10_2_9', 'node_fd00_10_2__9',
    ]);
    expect(protocols[0]).to.deep.equal({ name: 'fabric_10_255_1_2', address: '10.255.1.2', remoteAs: 65000, state: 'Established', imported: 1 });
    expect(protocols.find((p) => p.name === 'node_10_10_2_3')).to.include({ address: '10.10.2.3', remoteAs: 64601, state: 'Established' });
  });

  it('the sessions read as FRR reports them, so `lab up` waits for the same fabric sessions whatever the stack', () => {
    const t = parseTopology(topologyText('dual-homed.yaml'));
    const neighbors = birdNeighborStates(parseBirdProtocols(birdOutput('show-protocols-all.txt')));
    expect(neighbors.find((n) => n.address === 'fd00:255:1::2')).to.deep.include({ family: 'ipv6', state: 'Established', remoteAs: 65000 });
    expect(pendingFabricSessions('tor2', planLayout(t), neighbors)).to.deep.equal([]);
    const spine2Down = neighbors.map((n) => (n.address === '10.255.1.6' ? { ...n, state: 'Active' } : n));
    expect(pendingFabricSessions('tor2', planLayout(t), spine2Down).map((s) => s.peerAddress)).to.deep.equal(['10.255.1.6']);
  });

  it('show route: each prefix with the protocols of all its routes, best first (multi-line and unreachable routes included)', () => {
    const v4 = parseBirdRoutes(birdOutput('show-route-master4.txt'));
    expect(v4.find((r) => r.prefix === '10.244.1.0/24')?.protocols).to.deep.equal(['node_10_10_2_3']);
    expect(v4.find((r) => r.prefix === '10.10.1.0/24')?.protocols).to.deep.equal(['fabric_10_255_1_2', 'fabric_10_255_1_6']);
    expect(v4.find((r) => r.prefix === '10.10.2.0/24')?.protocols).to.deep.equal(['announce_ipv4']);
    expect(v4).to.have.length(6);
    const v6 = parseBirdRoutes(birdOutput('show-route-master6.txt'));
    expect(v6.find((r) => r.prefix === 'fd00:10:244:2::/64')?.protocols).to.deep.equal(['node_fd00_10_2__5', 'fabric_fd00_255_1__2', 'fabric_fd00_255_1__6']);
  });
});
