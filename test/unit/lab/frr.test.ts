import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  frrDaemonArgs,
  frrFiles,
  FRR_BIN_DIR,
  FRR_GRACEFUL_RESTART_SECONDS,
  nodeNeighborAddresses,
  parseBgpSummary,
  pendingFabricSessions,
  renderIntegratedConfig,
  renderRouterConfig,
} from '../../../src/lab/frr.js';
import { parseTopology, planLayout, type LabLayout, type Topology } from '../../../src/lab/topology.js';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

/** The lines of the `address-family FAMILY unicast` block. */
function addressFamily(config: string, family: 'ipv4' | 'ipv6'): string[] {
  const lines = config.split('\n');
  const start = lines.indexOf(` address-family ${family} unicast`);
  if (start === -1) return [];
  const end = lines.indexOf(' exit-address-family', start);
  return lines.slice(start + 1, end).map((l) => l.trim());
}

describe('lab FRR configuration', () => {
  let topology: Topology;
  let layout: LabLayout;
  const files = frrFiles('/run/podroute-lab/t/frr/tor1');
  before(() => {
    topology = parseTopology(readFileSync(path.join(repoRoot(), 'topologies', 'two-racks.yaml'), 'utf8'));
    layout = planLayout(topology);
  });

  it('a ToR listens on its rack LAN in both families with a datacenter profile and multipath', () => {
    const { bgpd } = renderRouterConfig(topology, layout, 'tor1', files);
    const lines = bgpd.split('\n');
    expect(lines).to.include('frr defaults datacenter');
    expect(lines).to.include('router bgp 65001');
    expect(lines).to.include(' bgp router-id 10.255.0.11');
    expect(lines).to.include(' bgp bestpath as-path multipath-relax');
    expect(lines).to.include(' neighbor NODES peer-group');
    expect(lines).to.include(' neighbor NODES remote-as external');
    // The agent asks GTSM of directly connected eBGP peers by default: the ToR must do it too.
    expect(lines).to.include(' neighbor NODES ttl-security hops 1');
    expect(lines).to.include(' bgp listen range 10.10.1.0/24 peer-group NODES');
    expect(lines).to.include(' bgp listen range fd00:10:1::/64 peer-group NODES');
    expect(bgpd).not.to.include('10.10.2.0/24 peer-group');
    for (const family of ['ipv4', 'ipv6'] as const) {
      const af = addressFamily(bgpd, family);
      expect(af).to.include('neighbor NODES activate');
      expect(af).to.include('maximum-paths 8');
    }
  });

  it('a ToR dials every address of the nodes of its rack (1 s connect retry), and only those', () => {
    const { bgpd } = renderRouterConfig(topology, layout, 'tor1', files);
    const lines = bgpd.split('\n');
    expect(lines).to.include(' neighbor NODES timers connect 1');
    const dialed = lines.filter((l) => / peer-group NODES$/.test(l) && !l.includes('listen range'));
    expect(dialed).to.deep.equal([
      ' neighbor 10.10.1.11 peer-group NODES',
      ' neighbor fd00:10:1::b peer-group NODES',
      ' neighbor 10.10.1.12 peer-group NODES',
      ' neighbor fd00:10:1::c peer-group NODES',
    ]);
    // The listen range still takes a node the ToR was not told about.
    expect(lines.indexOf(' bgp listen range 10.10.1.0/24 peer-group NODES')).to.be.greaterThan(lines.indexOf(' neighbor 10.10.1.12 peer-group NODES'));
    expect(nodeNeighborAddresses(layout, 'tor1', 'r1n2')).to.deep.equal(['10.10.1.12', 'fd00:10:1::c']);
    expect(nodeNeighborAddresses(layout, 'tor2', 'r1n2')).to.deep.equal([]);
    expect(renderRouterConfig(topology, layout, 'spine1', files).bgpd).not.to.include('NODES');
  });

  it('every router restarts gracefully: forwarding state preserved (zebra -K keeps the kernel routes), updates held until its peers are back', () => {
    for (const router of ['spine1', 'tor1', 'tor2']) {
      const lines = renderRouterConfig(topology, layout, router, files).bgpd.split('\n');
      expect(lines, router).to.include(' bgp graceful-restart');
      expect(lines, router).to.include(' bgp graceful-restart preserve-fw-state');
      expect(lines, router).to.include(' update-delay 30');
      // The first boot has no stale routes at its peers to protect: it announces as soon as its sessions are up.
      const firstBoot = renderRouterConfig(topology, layout, router, files, { firstBoot: true }).bgpd.split('\n');
      expect(firstBoot.filter((l) => l.includes('update-delay')), router).to.deep.equal([]);
      expect(firstBoot.filter((l) => !l.includes('update-delay')), router).to.deep.equal(lines.filter((l) => !l.includes('update-delay')));
    }
    const zebra = frrDaemonArgs('zebra', files, 't-tor1');
    expect(zebra[zebra.indexOf('-K') + 1]).to.equal(String(FRR_GRACEFUL_RESTART_SECONDS));
    expect(frrDaemonArgs('bgpd', files, 't-tor1')).not.to.include('-K');
  });

  it('a routed-port ToR (dual-homed) dials each node at its port address', () => {
    const dual = parseTopology(readFileSync(path.join(repoRoot(), 'topologies', 'dual-homed.yaml'), 'utf8'));
    const dualLayout = planLayout(dual);
    expect(nodeNeighborAddresses(dualLayout, 'tor1')).to.deep.equal(['10.10.1.3', 'fd00:10:1::3', '10.10.1.5', 'fd00:10:1::5', '10.10.1.7', 'fd00:10:1::7', '10.10.1.9', 'fd00:10:1::9']);
    expect(nodeNeighborAddresses(dualLayout, 'tor2', 'r1n1')).to.deep.equal(['10.10.2.3', 'fd00:10:2::3']);
    expect(renderRouterConfig(dual, dualLayout, 'tor2', files).bgpd.split('\n')).to.include(' neighbor 10.10.2.3 peer-group NODES');
  });

  it("FRR 8.4's own parser (bgpd --dryrun) takes every line of every generated config", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'podroute-frr-'));
    try {
      for (const file of ['two-racks.yaml', 'dual-homed.yaml']) {
        const t = parseTopology(readFileSync(path.join(repoRoot(), 'topologies', file), 'utf8'));
        const l = planLayout(t);
        for (const router of t.routers) {
          const routerFiles = frrFiles(path.join(dir, router.name));
          const conf = path.join(dir, `${router.name}.conf`);
          writeFileSync(conf, renderRouterConfig(t, l, router.name, routerFiles).bgpd.replace(/^log file .*$/m, '!'));
          // --dryrun exits 0 whatever it rejects: the rejected lines are in its output.
          const out = execFileSync(path.join(FRR_BIN_DIR, 'bgpd'), ['-C', '-f', conf, '-u', 'root', '-g', 'frrvty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
          expect(out.split('\n').filter((line) => /No such command|Unknown command|Ambiguous|\[EC \d+\]/.test(line)), `${file} ${router.name}`).to.deep.equal([]);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a ToR accepts only the cluster pod ranges from nodes (le 32 / le 128)', () => {
    const { bgpd } = renderRouterConfig(topology, layout, 'tor1', files);
    const lines = bgpd.split('\n');
    expect(lines).to.include('ip prefix-list CLUSTER-PODS-V4 seq 5 permit 10.244.0.0/16 le 32');
    expect(lines).to.include('ipv6 prefix-list CLUSTER-PODS-V6 seq 5 permit fd00:10:244::/56 le 128');
    expect(lines.filter((l) => l.includes('prefix-list CLUSTER-PODS') && l.includes('permit'))).to.have.length(2);
    expect(addressFamily(bgpd, 'ipv4')).to.include('neighbor NODES route-map NODES-IN-V4 in');
    expect(addressFamily(bgpd, 'ipv6')).to.include('neighbor NODES route-map NODES-IN-V6 in');
    const routeMap = lines.slice(lines.indexOf('route-map NODES-IN-V4 permit 10'), lines.indexOf('route-map NODES-IN-V4 permit 10') + 2);
    expect(routeMap[1]).to.equal(' match ip address prefix-list CLUSTER-PODS-V4');
  });

  it('a ToR also accepts Service host routes inside the pools and external-IP ranges, and the ClusterIP ranges, nothing else', () => {
    const lines = renderRouterConfig(topology, layout, 'tor1', files).bgpd.split('\n');
    expect(lines.filter((l) => l.includes('prefix-list CLUSTER-SERVICES'))).to.deep.equal([
      'ip prefix-list CLUSTER-SERVICES-V4 seq 5 permit 203.0.113.0/26 ge 32',
      'ip prefix-list CLUSTER-SERVICES-V4 seq 10 permit 203.0.113.64/26 ge 32',
      'ip prefix-list CLUSTER-SERVICES-V4 seq 15 permit 10.96.0.0/16',
      'ip prefix-list CLUSTER-SERVICES-V4 seq 20 permit 10.96.0.0/16 ge 32',
      'ipv6 prefix-list CLUSTER-SERVICES-V6 seq 5 permit 2001:db8:200::/120 ge 128',
      'ipv6 prefix-list CLUSTER-SERVICES-V6 seq 10 permit 2001:db8:201::/120 ge 128',
      'ipv6 prefix-list CLUSTER-SERVICES-V6 seq 15 permit fd00:10:96::/112',
      'ipv6 prefix-list CLUSTER-SERVICES-V6 seq 20 permit fd00:10:96::/112 ge 128',
      ' match ip address prefix-list CLUSTER-SERVICES-V4',
      ' match ipv6 address prefix-list CLUSTER-SERVICES-V6',
    ]);
    const second = lines.indexOf('route-map NODES-IN-V4 permit 20');
    expect(lines[second + 1]).to.equal(' match ip address prefix-list CLUSTER-SERVICES-V4');
    // Without Service ranges the list denies everything (an absent list would let any prefix through the permit).
    const bare = { ...topology, services: { loadBalancerPools: [], externalIPRanges: [], clusterIPRanges: ['10.96.0.0/32'] } };
    const bareLines = renderRouterConfig(bare, layout, 'tor1', files).bgpd.split('\n');
    expect(bareLines).to.include('ipv6 prefix-list CLUSTER-SERVICES-V6 seq 5 deny any');
    expect(bareLines).to.include('ip prefix-list CLUSTER-SERVICES-V4 seq 5 permit 10.96.0.0/32');
    // The spine takes whatever its ToRs send and spreads equal routes over them (different AS paths: multipath-relax).
    const spine = renderRouterConfig(topology, layout, 'spine1', files).bgpd.split('\n');
    expect(spine).to.include(' bgp bestpath as-path multipath-relax');
    expect(spine).to.include('  maximum-paths 8');
    expect(spine.some((l) => l.includes('route-map'))).to.equal(false);
  });

  it('router-router sessions are numbered, one per family, each activated only in its own family', () => {
    const { bgpd } = renderRouterConfig(topology, layout, 'spine1', files);
    const lines = bgpd.split('\n');
    expect(lines).to.include(' neighbor 10.255.1.1 remote-as 65001');
    expect(lines).to.include(' neighbor fd00:255:1::1 remote-as 65001');
    expect(lines).to.include(' neighbor 10.255.1.3 remote-as 65002');
    expect(lines).to.include(' neighbor fd00:255:1::3 remote-as 65002');
    expect(lines).to.include(' no bgp default ipv4-unicast');
    expect(lines).to.include(' no bgp ebgp-requires-policy');
    const v4 = addressFamily(bgpd, 'ipv4');
    const v6 = addressFamily(bgpd, 'ipv6');
    expect(v4).to.include.members(['neighbor 10.255.1.1 activate', 'neighbor 10.255.1.3 activate']);
    expect(v4.some((l) => l.includes('fd00'))).to.equal(false);
    expect(v6).to.include.members(['neighbor fd00:255:1::1 activate', 'neighbor fd00:255:1::3 activate']);
    expect(v6.some((l) => /neighbor 10\./.test(l))).to.equal(false);
    // The spine has no rack: no listen range, no node peer group.
    expect(bgpd).not.to.include('listen range');
    expect(bgpd).not.to.include('NODES');
  });

  it('rack LANs and the external network are announced, so masqueraded node traffic reaches outside and back', () => {
    const tor = renderRouterConfig(topology, layout, 'tor2', files).bgpd;
    expect(addressFamily(tor, 'ipv4')).to.include('network 10.10.2.0/24');
    expect(addressFamily(tor, 'ipv6')).to.include('network fd00:10:2::/64');
    const spine = renderRouterConfig(topology, layout, 'spine1', files).bgpd;
    expect(addressFamily(spine, 'ipv4')).to.include('network 198.51.100.0/24');
    expect(addressFamily(spine, 'ipv6')).to.include('network 2001:db8:100::/64');
  });

  it('zebra keeps nexthop groups out of the kernel and logs to the router dir', () => {
    const { zebra } = renderRouterConfig(topology, layout, 'tor1', files);
    expect(zebra.split('\n')).to.include('no zebra nexthop kernel enable');
    expect(zebra.split('\n')).to.include(`log file ${files.zebraLog}`);
  });

  it('the integrated config (containerlab) carries the same routing config', () => {
    const integrated = renderIntegratedConfig(topology, layout, 'tor1');
    expect(integrated).to.include('no zebra nexthop kernel enable');
    expect(integrated).to.include(' bgp listen range 10.10.1.0/24 peer-group NODES');
    expect(integrated.match(/^log file/gm)).to.have.length(1);
  });

  it('daemons run with a pathspace, vty sockets in the router dir, no TCP vty, group frrvty', () => {
    const args = frrDaemonArgs('bgpd', files, 't-tor1');
    const after = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
    expect(args[0]).to.equal('/usr/lib/frr/bgpd');
    expect(after('-N')).to.equal('t-tor1');
    expect(after('--vty_socket')).to.equal(files.runDir);
    expect(after('-z')).to.equal(files.zservSocket);
    expect(after('-P')).to.equal('0');
    expect(after('-g')).to.equal('frrvty');
    expect(after('-f')).to.equal(files.bgpdConf);
  });

  it('reads `show bgp summary json` and finds the fabric sessions that are not Established', () => {
    const summary = JSON.stringify({
      ipv4Unicast: { routerId: '10.255.0.1', as: 65000, peers: { '10.255.1.1': { remoteAs: 65001, state: 'Established', pfxRcd: 1 }, '10.255.1.3': { remoteAs: 65002, state: 'Active' } } },
      ipv6Unicast: { routerId: '10.255.0.1', as: 65000, peers: { 'fd00:255:1::1': { remoteAs: 65001, state: 'Established' } } },
    });
    const neighbors = parseBgpSummary(summary);
    expect(neighbors).to.deep.include({ family: 'ipv4', address: '10.255.1.1', state: 'Established', remoteAs: 65001, prefixesReceived: 1 });
    const pending = pendingFabricSessions('spine1', layout, neighbors).map((s) => `${s.family} ${s.peerAddress}`);
    expect(pending).to.deep.equal(['ipv4 10.255.1.3', 'ipv6 fd00:255:1::3']);
    expect(parseBgpSummary('{}')).to.deep.equal([]);
  });
});
