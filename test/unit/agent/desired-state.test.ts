import { expect } from 'chai';
import fc from 'fast-check';
import { parseAgentConfig, type AgentConfigInput } from '../../../src/config/agent-config.js';
import { findPodCIDRConflicts, planDesiredState, serviceRoutes, servicesConfigured, type DesiredNodeState } from '../../../src/agent/desired-state.js';
import { prefixesOverlap, requireIpCidr } from '../../../src/routes/ip-prefix.js';
import type { Service } from '../../../src/kube/wire.js';
import { nodeInfoFromObject, type NodeInfo } from '../../../src/kube/node-info.js';
import { selectRoutes } from '../../../src/routes/select-routes.js';

function node(name: string, index: number, extra: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name,
    podCIDRs: [`10.244.${index}.0/24`, `fd00:10:244:${index}::/64`],
    internalIPs: [`10.0.${Math.ceil(index / 2)}.${10 + index}`, `fd00:0:${Math.ceil(index / 2)}::${10 + index}`],
    labels: { rack: `r${Math.ceil(index / 2)}` },
    annotationPeers: [],
    warnings: [],
    ...extra,
  };
}

const nodes = [node('n1', 1, { asn: 64601 }), node('n2', 2, { asn: 64601 }), node('n3', 3, { asn: 64602 }), node('n4', 4, { asn: 64602 })];

function plan(configInput: Partial<AgentConfigInput>, nodeName = 'n1', nodeList: NodeInfo[] = nodes, secrets = new Map<string, string>()): DesiredNodeState {
  const config = parseAgentConfig({ cluster: { podRanges: ['10.244.0.0/16', 'fd00:10:244::/56'] }, ...configInput });
  const result = planDesiredState({ config, nodeName, nodes: nodeList, secrets });
  if (!result.ok) throw new Error(result.reason);
  return result.state;
}

describe('Service routes of a node', () => {
  const services = {
    loadBalancerPools: [{ name: 'v4', cidrs: ['203.0.113.0/26'] }, { name: 'v6', cidrs: ['2001:db8:200::/120'] }],
    clusterIPRanges: ['10.96.0.0/16'],
  };
  const lb: Service = {
    metadata: { namespace: 'web', name: 'lb' },
    spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Cluster' },
    status: { loadBalancer: { ingress: [{ ip: '203.0.113.1' }, { ip: '2001:db8:200::1' }] } },
  };

  it('carries the ranges and the ToRs that advertise Services; a peer can opt out; nodes never carry them', () => {
    const state = plan({
      services,
      bgp: { mesh: 'full', peers: [{ address: '10.0.1.1', asn: 65001 }, { address: '10.0.1.2', asn: 65001, advertiseServices: false }] },
    });
    expect(state.bgp.services).to.deep.equal({ paths: [], ranges: ['203.0.113.0/26', '2001:db8:200::/120', '10.96.0.0/16'], peers: ['10.0.1.1'] });
    const cluster = { podRanges: ['10.244.0.0/16'] };
    expect(servicesConfigured(parseAgentConfig({ cluster, services }))).to.equal(true);
    expect(servicesConfigured(parseAgentConfig({ cluster }))).to.equal(false);
  });

  it('gives each path the node InternalIP of its family, and warns for a family the node has no address of', () => {
    const config = parseAgentConfig({ cluster: { podRanges: ['10.244.0.0/16', 'fd00:10:244::/56'] }, services });
    expect(serviceRoutes(config, nodes[0]!, [lb], [])).to.deep.equal({
      paths: [
        { prefix: '10.96.0.0/16', nextHop: '10.0.1.11' },
        { prefix: '203.0.113.1/32', nextHop: '10.0.1.11' },
        { prefix: '2001:db8:200::1/128', nextHop: 'fd00:0:1::11' },
      ],
      warnings: [],
    });
    const v4only = { ...nodes[0]!, internalIPs: ['10.0.1.11'] };
    const routes = serviceRoutes(config, v4only, [lb], []);
    expect(routes.paths.map((p) => p.prefix)).to.deep.equal(['10.96.0.0/16', '203.0.113.1/32']);
    expect(routes.warnings).to.deep.equal(['ipv6 Service addresses are not advertised: node n1 has no ipv6 InternalIP for their next hop']);
  });
});

describe('desired node state', () => {
  it('meshes every other node with full mesh, over IPv4, both families', () => {
    const state = plan({});
    expect(state.bgp.peers.map((p) => [p.address, p.asn, p.description])).to.deep.equal([
      ['10.0.1.12', 64601, 'node:n2'],
      ['10.0.2.13', 64602, 'node:n3'],
      ['10.0.2.14', 64602, 'node:n4'],
    ]);
    expect(state.bgp.peers[0]!.families).to.deep.equal(['ipv4', 'ipv6']);
    expect(state.bgp.global).to.deep.equal({ asn: 64601, routerId: '10.0.1.11', listenPort: 179 });
    expect(state.bgp.importRules.nodePeers[0]).to.deep.equal({ address: '10.0.1.12', prefixes: ['10.244.2.0/24', 'fd00:10:244:2::/64'] });
  });

  it('meshes only same-ASN nodes with same-asn and none with off', () => {
    expect(plan({ bgp: { mesh: 'same-asn' } }).bgp.peers.map((p) => p.description)).to.deep.equal(['node:n2']);
    expect(plan({ bgp: { mesh: 'off' } }).bgp.peers).to.deep.equal([]);
  });

  it('advertises v4 podCIDRs with a v4 next hop and v6 with a v6 next hop', () => {
    expect(plan({}).bgp.advertise).to.deep.equal([
      { prefix: '10.244.1.0/24', nextHop: '10.0.1.11' },
      { prefix: 'fd00:10:244:1::/64', nextHop: 'fd00:0:1::11' },
    ]);
  });

  it('warns and skips a family with no InternalIP to be the next hop', () => {
    const v6only = node('n1', 1, { internalIPs: ['fd00:0:1::11'] });
    const state = plan({}, 'n1', [v6only, nodes[1]!]);
    expect(state.bgp.advertise).to.deep.equal([{ prefix: 'fd00:10:244:1::/64', nextHop: 'fd00:0:1::11' }]);
    expect(state.warnings.join('\n')).to.match(/10\.244\.1\.0\/24 is not advertised/);
    expect(state.warnings.join('\n')).to.match(/no IPv4 InternalIP: using router ID/);
    expect(state.bgp.peers[0]!.address).to.equal('fd00:0:1::12');
    expect(state.bgp.global.routerId).to.match(/^\d+\.\d+\.\d+\.\d+$/);
  });

  it('a router ID derived from the node name is never a loopback, multicast or broadcast address', () => {
    for (let i = 0; i < 2000; i++) {
      const name = `v6-only-${i}`;
      const v6only = node(name, 1, { internalIPs: ['fd00:0:1::11'] });
      const result = planDesiredState({ config: parseAgentConfig({ cluster: { podRanges: ['10.244.0.0/16', 'fd00:10:244::/56'] } }), nodeName: name, nodes: [v6only], secrets: new Map() });
      if (!result.ok) throw new Error(result.reason);
      const first = Number(result.state.bgp.global.routerId.split('.')[0]);
      expect(first === 0 || first === 127 || first >= 224, `${name}: ${result.state.bgp.global.routerId}`).to.equal(false);
    }
  });

  it('peers with configured peers whose node selector matches, and with annotation peers', () => {
    const self = node('n1', 1, { annotationPeers: [{ address: '10.0.1.254', asn: 65200 }] });
    const state = plan(
      {
        bgp: {
          mesh: 'off',
          peers: [
            { address: '10.0.1.1', asn: 65101, nodeSelector: { matchLabels: { rack: 'r1' } }, holdTime: 30 },
            { address: '10.0.2.1', asn: 65102, nodeSelector: { matchLabels: { rack: 'r2' } } },
          ],
        },
      },
      'n1',
      [self],
    );
    expect(state.bgp.peers.map((p) => [p.address, p.asn, p.holdTime])).to.deep.equal([
      ['10.0.1.1', 65101, 30],
      ['10.0.1.254', 65200, 9],
    ]);
    expect(state.bgp.importRules.externalPeers).to.deep.equal(['10.0.1.1', '10.0.1.254']);
  });

  it('gives each external peer its own family, and the other only when no peer of that family exists', () => {
    const tors = [{ address: '10.0.1.1', asn: 65101 }, { address: 'fd00:0:1::1', asn: 65101 }];
    const both = plan({ bgp: { mesh: 'off', peers: tors } });
    expect(both.bgp.peers.map((p) => p.families)).to.deep.equal([['ipv4'], ['ipv6']]);
    const v4only = plan({ bgp: { mesh: 'off', peers: [tors[0]!] } });
    expect(v4only.bgp.peers.map((p) => p.families)).to.deep.equal([['ipv4', 'ipv6']]);
  });

  it('limits every external peer (its own maxPrefixes, else bgp.maxPrefixes; 0 = none), node peers by bgp.meshMaxPrefixes', () => {
    const self = node('n1', 1, { annotationPeers: [{ address: '10.0.1.254', asn: 65200, maxPrefixes: 50 }, { address: '10.0.1.253', asn: 65200 }] });
    const peers = [
      { address: '10.0.1.1', asn: 65101 },
      { address: '10.0.1.2', asn: 65101, maxPrefixes: 0 },
    ];
    const byDefault = plan({ bgp: { mesh: 'full', peers } }, 'n1', [self, nodes[1]!]);
    expect(byDefault.bgp.peers.map((p) => [p.description, p.maxPrefixes])).to.deep.equal([
      ['node:n2', 100],
      ['config:bgp.peers[0]', 10_000],
      ['config:bgp.peers[1]', 0],
      ['annotation:podroute.io/peers[0]', 50],
      ['annotation:podroute.io/peers[1]', 10_000],
    ]);
    const global = plan({ bgp: { mesh: 'off', maxPrefixes: 300, peers } }, 'n1', [self]);
    expect(global.bgp.peers.map((p) => p.maxPrefixes)).to.deep.equal([300, 0, 50, 300]);
  });

  it('reads passwords from files and skips a peer whose password file is unreadable', () => {
    const peers = [
      { address: '10.0.1.1', asn: 65101, passwordFile: '/secrets/tor1' },
      { address: '10.0.1.2', asn: 65101, passwordFile: '/secrets/missing' },
    ];
    const state = plan({ bgp: { mesh: 'off', passwordDir: '/secrets', peers } }, 'n1', nodes, new Map([['/secrets/tor1', 's3cret']]));
    expect(state.bgp.peers.map((p) => [p.address, p.password])).to.deep.equal([['10.0.1.1', 's3cret']]);
    expect(state.warnings.join('\n')).to.match(/10\.0\.1\.2 .* skipped: its password file \/secrets\/missing could not be read/);
    expect(state.warnings.join('\n')).not.to.include('s3cret');
  });

  it('never configures a peer without TCP-MD5 because its password file is empty or blank', () => {
    const peers = [
      { address: '10.0.1.1', asn: 65101, passwordFile: '/secrets/empty' },
      { address: '10.0.1.2', asn: 65101, passwordFile: '/secrets/blank' },
      { address: '10.0.1.3', asn: 65101, passwordFile: '/secrets/good' },
    ];
    const secrets = new Map([['/secrets/empty', ''], ['/secrets/blank', ' \n\t'], ['/secrets/good', 'k']]);
    const state = plan({ bgp: { mesh: 'off', passwordDir: '/secrets', peers } }, 'n1', nodes, secrets);
    expect(state.bgp.peers.map((p) => [p.address, p.password])).to.deep.equal([['10.0.1.3', 'k']]);
    expect(state.warnings.join('\n')).to.match(/10\.0\.1\.1 .* skipped: its password file \/secrets\/empty is empty/);
    expect(state.warnings.join('\n')).to.match(/10\.0\.1\.2 .* skipped: its password file \/secrets\/blank is empty/);
  });

  it('says why a password file was not read', () => {
    const peers = [{ address: '10.0.1.1', asn: 65101, passwordFile: '/secrets/fifo' }];
    const config = parseAgentConfig({ cluster: { podRanges: ['10.244.0.0/16'] }, bgp: { mesh: 'off', passwordDir: '/secrets', peers } });
    const result = planDesiredState({ config, nodeName: 'n1', nodes, secrets: new Map(), secretProblems: new Map([['/secrets/fifo', '/secrets/fifo is not a regular file']]) });
    expect(result.ok && result.state.warnings.join('\n')).to.match(/10\.0\.1\.1 .* skipped: its password file \/secrets\/fifo could not be read \(\/secrets\/fifo is not a regular file\)/);
  });

  it('skips an annotation peer inside the pod ranges, or whose keepalive reaches the hold time it inherits', () => {
    const self = node('n1', 1, {
      annotationPeers: [
        { address: '10.244.7.1', asn: 65200 },
        { address: '10.0.1.250', asn: 65200, keepaliveInterval: 9 },
        { address: '10.0.1.254', asn: 65200 },
      ],
    });
    const state = plan({ bgp: { mesh: 'off' } }, 'n1', [self]);
    expect(state.bgp.peers.map((p) => p.address)).to.deep.equal(['10.0.1.254']);
    expect(state.warnings.join('\n')).to.match(/peer 10\.244\.7\.1 \(annotation:podroute\.io\/peers\[0\]\) skipped: inside the cluster pod ranges/);
    expect(state.warnings.join('\n')).to.match(/peer 10\.0\.1\.250 \(annotation:podroute\.io\/peers\[1\]\) skipped: keepaliveInterval 9 is not less than the hold time 9/);
  });

  it('limits the prefixes of mesh peers too (bgp.meshMaxPrefixes; 0 = no limit)', () => {
    const nodeLimits = (state: DesiredNodeState): (number | undefined)[] => state.bgp.peers.filter((p) => p.description?.startsWith('node:')).map((p) => p.maxPrefixes);
    expect(nodeLimits(plan({}))).to.deep.equal([100, 100, 100]);
    expect(nodeLimits(plan({ bgp: { meshMaxPrefixes: 8 } }))).to.deep.equal([8, 8, 8]);
    expect(nodeLimits(plan({ bgp: { meshMaxPrefixes: 0 } }))).to.deep.equal([0, 0, 0]);
  });

  it('asks GTSM (minimum TTL 254) of directly connected eBGP peers unless told otherwise', () => {
    // n1 is in AS 64601.
    const peers = [
      { address: '10.0.1.1', asn: 65101 },
      { address: '10.0.1.2', asn: 65101, ebgpMultihopTtl: 2 },
      { address: '10.0.1.3', asn: 64601 },
      { address: '10.0.1.4', asn: 65101, ttlSecurity: false },
      { address: '10.0.1.5', asn: 64601, ttlSecurity: true },
    ];
    const state = plan({ bgp: { mesh: 'full', peers } }, 'n1', [nodes[0]!, nodes[1]!]);
    expect(state.bgp.peers.map((p) => [p.description, p.ttlMin])).to.deep.equal([
      ['node:n2', undefined],
      ['config:bgp.peers[0]', 254],
      ['config:bgp.peers[1]', undefined],
      ['config:bgp.peers[2]', undefined],
      ['config:bgp.peers[3]', undefined],
      ['config:bgp.peers[4]', 254],
    ]);
  });

  it('authenticates the node mesh with bgp.meshPasswordFile, and skips the mesh rather than go without it', () => {
    const config = { bgp: { passwordDir: '/secrets', meshPasswordFile: '/secrets/mesh' } };
    const withKey = plan(config, 'n1', nodes, new Map([['/secrets/mesh', 'm3sh']]));
    expect(withKey.bgp.peers.map((p) => [p.description, p.password])).to.deep.equal([
      ['node:n2', 'm3sh'],
      ['node:n3', 'm3sh'],
      ['node:n4', 'm3sh'],
    ]);
    const without = plan(config, 'n1', nodes, new Map([['/secrets/mesh', ' ']]));
    expect(without.bgp.peers).to.deep.equal([]);
    expect(without.warnings.join('\n')).to.match(/node mesh skipped: its password file \/secrets\/mesh is empty/);
    const unread = plan(config, 'n1', nodes);
    expect(unread.bgp.peers).to.deep.equal([]);
    expect(unread.warnings.join('\n')).to.match(/node mesh skipped: its password file \/secrets\/mesh could not be read/);
    expect(plan({}, 'n1', nodes).bgp.peers.every((p) => p.password === undefined)).to.equal(true);
  });

  it('refuses duplicate peer addresses and peering with itself', () => {
    const state = plan({ bgp: { peers: [{ address: '10.0.1.12', asn: 65000 }, { address: '10.0.1.11', asn: 65000 }] } });
    expect(state.bgp.peers.filter((p) => p.address === '10.0.1.12')).to.have.length(1);
    expect(state.bgp.peers.some((p) => p.address === '10.0.1.11')).to.equal(false);
    expect(state.warnings).to.have.length(2);
  });

  it('routes no node CIDR that two nodes claim, and says so', () => {
    const clash = node('n9', 9, { podCIDRs: ['10.244.2.128/25'] });
    const state = plan({}, 'n1', [...nodes, clash]);
    expect(state.routeSelection.conflictedCIDRs).to.deep.equal(['10.244.2.0/24', '10.244.2.128/25']);
    expect(state.routeSelection.nodes.find((n) => n.name === 'n2')!.podCIDRs).to.deep.equal(['fd00:10:244:2::/64']);
    expect(state.bgp.importRules.nodePeers.find((p) => p.address === '10.0.1.12')!.prefixes).to.deep.equal(['fd00:10:244:2::/64']);
    expect(state.warnings.join('\n')).to.match(/podCIDR conflict: 10\.244\.2\.0\/24 of node n2 overlaps 10\.244\.2\.128\/25 of node n9/);
  });

  it('a Node with a zoned InternalIP is skipped with a warning; route selection keeps working for the rest', () => {
    const zoned = nodeInfoFromObject({
      metadata: { name: 'n9' },
      spec: { podCIDRs: ['10.244.9.0/24'] },
      status: { addresses: [{ type: 'InternalIP', address: 'fe80::1%eth0' }] },
    });
    const state = plan({}, 'n1', [...nodes, zoned]);
    expect(state.warnings.join('\n')).to.match(/node n9 is not meshed/);
    expect(state.bgp.peers.map((p) => p.description)).to.deep.equal(['node:n2', 'node:n3', 'node:n4']);
    const { conflictedCIDRs, ...context } = state.routeSelection;
    const selection = selectRoutes(
      [{ prefix: '10.244.2.0/24', family: 'ipv4', nextHop: '10.0.1.12', neighborIp: '10.0.1.12', asPath: [64601], isWithdraw: false }],
      { ...context, onLinkNetworks: ['10.0.1.0/24'], excludedCIDRs: conflictedCIDRs },
    );
    expect(selection.routes).to.deep.equal([{ prefix: '10.244.2.0/24', nextHops: ['10.0.1.12'] }]);
  });

  it('a Node reporting another node\'s InternalIP is a conflict: neither is meshed at it nor routed, and it is said', () => {
    const impostor = node('n9', 9, { internalIPs: ['10.0.1.12'] });
    const state = plan({}, 'n1', [...nodes, impostor]);
    expect(state.bgp.peers.map((p) => p.description)).to.deep.equal(['node:n3', 'node:n4']);
    expect(state.bgp.importRules.nodePeers.map((p) => p.address)).to.deep.equal(['10.0.2.13', '10.0.2.14']);
    expect(state.routeSelection.conflictedCIDRs).to.include.members(['10.244.2.0/24', 'fd00:10:244:2::/64', '10.244.9.0/24', 'fd00:10:244:9::/64']);
    expect(state.routeSelection.nodes.find((n) => n.name === 'n2')!.addresses).to.deep.equal(['fd00:0:1::12']);
    expect(state.routeSelection.nodes.find((n) => n.name === 'n9')!.addresses).to.deep.equal([]);
    expect(state.warnings.join('\n')).to.match(/InternalIP conflict: 10\.0\.1\.12 is reported by nodes n2 and n9/);
    // The order of the nodes does not decide who gets the slot.
    const reversed = plan({}, 'n1', [impostor, ...nodes]);
    expect(reversed.bgp.peers.map((p) => p.description)).to.deep.equal(['node:n3', 'node:n4']);
    // A node claiming this node's own address: the same.
    const selfie = plan({}, 'n1', [...nodes, node('n9', 9, { internalIPs: ['10.0.1.11'] })]);
    expect(selfie.bgp.peers.map((p) => p.description)).to.deep.equal(['node:n2', 'node:n3', 'node:n4']);
    expect(selfie.routeSelection.conflictedCIDRs).to.include('10.244.9.0/24');
  });

  it('waits for its own Node and its podCIDRs', () => {
    const config = parseAgentConfig({ cluster: { podRanges: ['10.244.0.0/16'] } });
    expect(planDesiredState({ config, nodeName: 'nx', nodes, secrets: new Map() })).to.deep.equal({ ok: false, reason: 'node nx is not (yet) in the cluster' });
    const bare = node('n1', 1, { podCIDRs: [] });
    expect(planDesiredState({ config, nodeName: 'n1', nodes: [bare], secrets: new Map() }).ok).to.equal(false);
  });

  it('finds no conflict between disjoint podCIDRs, and names a podCIDR that is no CIDR instead of guessing', () => {
    expect(findPodCIDRConflicts(nodes)).to.deep.equal([]);
    // Node reading drops such a podCIDR with a warning: here it would be a bug, and the error says which text.
    expect(() => findPodCIDRConflicts([node('bad', 9, { podCIDRs: ['10.244/16'] })])).to.throw('not a CIDR: "10.244/16"');
  });

  it('finds exactly the overlapping podCIDR pairs of a pairwise scan, in the same order (property)', () => {
    // Small address spaces so that nesting, duplicates and disjoint blocks all come up often.
    const v4 = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 22, max: 26 }))
      .map(([b, c, len]) => canonical(`10.${b}.${c}.0`, len));
    const v6 = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 60, max: 66 })).map(([x, len]) => canonical6(x, len));
    const world = fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.oneof(v4, v6)), { maxLength: 14 });
    fc.assert(
      fc.property(world, (owned) => {
        const byNode = new Map<string, string[]>();
        for (const [n, cidr] of owned) byNode.set(`n${n}`, [...(byNode.get(`n${n}`) ?? []), cidr]);
        const infos = [...byNode].map(([name, podCIDRs], i) => node(name, i + 1, { podCIDRs }));
        const flat = infos.flatMap((n) => n.podCIDRs.map((cidr) => ({ node: n.name, cidr })));
        const expected = [];
        for (let i = 0; i < flat.length; i++) {
          for (let j = i + 1; j < flat.length; j++) {
            const a = flat[i]!;
            const b = flat[j]!;
            if (a.node !== b.node && prefixesOverlap(requireIpCidr(a.cidr), requireIpCidr(b.cidr))) expected.push({ node: a.node, cidr: a.cidr, other: b.node, otherCidr: b.cidr });
          }
        }
        expect(findPodCIDRConflicts(infos)).to.deep.equal(expected);
      }),
      { numRuns: 300 },
    );
  });
});

function canonical(address: string, length: number): string {
  const value = address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
  const block = 2 ** (32 - length);
  const start = Math.floor(value / block) * block;
  return `${[24, 16, 8, 0].map((shift) => Math.floor(start / 2 ** shift) % 256).join('.')}/${length}`;
}

function canonical6(x: number, length: number): string {
  // fd00:0:0:X0::/len with X in 0..3: blocks of /60../66 around 4 neighbouring /64s.
  const group = (x * 16) >> Math.max(0, 64 - length) << Math.max(0, 64 - length);
  return `fd00:0:0:${group.toString(16)}::/${length}`;
}
