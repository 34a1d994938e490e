import { expect } from 'chai';
import { parseAgentConfig, type AgentConfigInput } from '../../../src/config/agent-config.js';
import { planDesiredState, type DesiredNodeState } from '../../../src/agent/desired-state.js';
import { clusterIdProblem, planRouteReflection, ROUTE_REFLECTOR_LABEL } from '../../../src/agent/route-reflectors.js';
import type { NodeInfo } from '../../../src/kube/node-info.js';
import { selectRoutes } from '../../../src/routes/select-routes.js';
import { buildExportBundle, buildImportBundle, validateDesired } from '../../../src/bgp/bgp-planner.js';
import type { DefinedSetSpec } from '../../../src/bgp/gobgp-codec.js';
import type { PolicyBundle } from '../../../src/bgp/bgp-planner.js';
import ipaddr from 'ipaddr.js';

function node(name: string, index: number, labels: Record<string, string> = {}, asn?: number): NodeInfo {
  return {
    name,
    podCIDRs: [`10.244.${index}.0/24`],
    internalIPs: [`10.0.0.${10 + index}`],
    labels,
    ...(asn === undefined ? {} : { asn }),
    annotationPeers: [],
    warnings: [],
  };
}

const rr = (id = '10.0.0.1'): Record<string, string> => ({ [ROUTE_REFLECTOR_LABEL]: id });
// r1, r2 reflect; c3..c5 are clients; x6 is in another AS.
const cluster = [node('r1', 1, rr()), node('r2', 2, rr()), node('c3', 3), node('c4', 4), node('c5', 5), node('x6', 6, rr(), 64999)];

function plan(nodeName: string, nodes: NodeInfo[] = cluster, bgp: AgentConfigInput['bgp'] = {}): DesiredNodeState {
  const config = parseAgentConfig({ cluster: { podRanges: ['10.244.0.0/16'] }, bgp: { mesh: 'route-reflector', ...bgp } });
  const result = planDesiredState({ config, nodeName, nodes, secrets: new Map() });
  if (!result.ok) throw new Error(result.reason);
  return result.state;
}

/** gobgpd's policy evaluation: the first statement whose conditions all match decides. */
function decide(bundle: PolicyBundle, neighbor: string, route: string): 'accept' | 'reject' {
  const sets = new Map(bundle.sets.map((s) => [s.name, s]));
  const inSet = (set: DefinedSetSpec): boolean => {
    const [addr, len] = ipaddr.parseCIDR(route);
    return (set.prefixes ?? []).some((e) => {
      const [p, plen] = ipaddr.parseCIDR(e.prefix);
      return len >= e.minLength && len <= e.maxLength && addr.match(p, plen);
    });
  };
  for (const st of bundle.policy.statements) {
    let match = true;
    if (st.match.routeType) match &&= st.match.routeType === 'local' ? neighbor === 'local' : neighbor !== 'local';
    if (st.match.prefixSet) match &&= inSet(sets.get(st.match.prefixSet.name)!);
    if (st.match.neighborSet) match &&= (sets.get(st.match.neighborSet.name)!.neighbors ?? []).includes(neighbor);
    if (match && st.action !== 'next') return st.action;
  }
  return bundle.defaultAction;
}

describe('route reflection: roles and peers', () => {
  it('a reflector peers with every other node of its AS as its client (reflectors too), under its cluster ID', () => {
    const state = plan('r1');
    expect(state.bgp.role).to.deep.equal({ kind: 'reflector', clusterId: '10.0.0.1' });
    expect(state.bgp.peers.map((p) => [p.description, p.routeReflectorClusterId])).to.deep.equal([
      ['node:r2', '10.0.0.1'],
      ['node:c3', '10.0.0.1'],
      ['node:c4', '10.0.0.1'],
      ['node:c5', '10.0.0.1'],
    ]);
    // What a reflector passes on: every node's podCIDR of the AS, to its node peers only.
    expect(state.bgp.reflect).to.deep.equal({ peers: ['10.0.0.12', '10.0.0.13', '10.0.0.14', '10.0.0.15'], prefixes: ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24', '10.244.5.0/24'] });
    expect(state.warnings).to.deep.equal([]);
  });

  it('a client peers with the reflectors only, as plain peers, and takes every podCIDR of its AS from them', () => {
    const state = plan('c3');
    expect(state.bgp.role).to.deep.equal({ kind: 'client' });
    expect(state.bgp.peers.map((p) => [p.description, p.routeReflectorClusterId])).to.deep.equal([
      ['node:r1', undefined],
      ['node:r2', undefined],
    ]);
    expect(state.bgp.reflect).to.equal(undefined);
    const all = ['10.244.1.0/24', '10.244.2.0/24', '10.244.4.0/24', '10.244.5.0/24'];
    expect(state.bgp.importRules.nodePeers).to.deep.equal([
      { address: '10.0.0.11', prefixes: all },
      { address: '10.0.0.12', prefixes: all },
    ]);
  });

  it('a reflector takes from every node, another reflector included, exactly its own podCIDRs', () => {
    const rules = plan('r1').bgp.importRules.nodePeers;
    expect(rules.find((r) => r.address === '10.0.0.13')!.prefixes).to.deep.equal(['10.244.3.0/24']);
    // A sibling's reflection of c4's route would carry our own cluster ID: gobgpd takes it in (its check is on send)
    // and, picked as best, never passes it on. The reflector hears c4 directly.
    expect(rules.find((r) => r.address === '10.0.0.12')!.prefixes).to.deep.equal(['10.244.2.0/24']);
    const imports = buildImportBundle(validateDesired(plan('r1').bgp));
    expect(decide(imports, '10.0.0.13', '10.244.3.0/24')).to.equal('accept');
    expect(decide(imports, '10.0.0.13', '10.244.4.0/24')).to.equal('reject');
    expect(decide(imports, '10.0.0.12', '10.244.2.0/24')).to.equal('accept');
    expect(decide(imports, '10.0.0.12', '10.244.4.0/24')).to.equal('reject');
    expect(decide(imports, '10.0.0.12', '10.244.1.0/24')).to.equal('reject'); // our own podCIDR, from anyone
    // The same with reflectors of two cluster IDs: each still peers with every node.
    const twoClusters = [node('r1', 1, rr()), node('r2', 2, rr('10.0.0.2')), node('c3', 3)];
    expect(plan('r1', twoClusters).bgp.importRules.nodePeers).to.deep.equal([
      { address: '10.0.0.12', prefixes: ['10.244.2.0/24'] },
      { address: '10.0.0.13', prefixes: ['10.244.3.0/24'] },
    ]);
  });

  it('every node session of the mode takes bgp.maxPrefixes, so a role change never changes a limit', () => {
    const limits = [...plan('r1').bgp.peers, ...plan('c3').bgp.peers].map((p) => p.maxPrefixes);
    expect(new Set(limits)).to.deep.equal(new Set([10_000]));
    expect(plan('c3', cluster, { maxPrefixes: 500 }).bgp.peers.map((p) => p.maxPrefixes)).to.deep.equal([500, 500]);
  });

  it('nodes of other ASes are never node peers (they are reached through the ToRs)', () => {
    expect(plan('x6').bgp.peers).to.deep.equal([]);
    expect(plan('x6').warnings.join('\n')).to.match(/cluster 10\.0\.0\.1 of AS 64999 has a single reflector \(x6\)/);
    expect(plan('r1').bgp.peers.map((p) => p.description)).not.to.include('node:x6');
  });

  it('a client installs a reflected path: the reflector is the neighbor, the owner the next hop', () => {
    const state = plan('c3');
    const { conflictedCIDRs, ...context } = state.routeSelection;
    const reflected = (neighborIp: string) => ({ prefix: '10.244.4.0/24', family: 'ipv4' as const, nextHop: '10.0.0.14', neighborIp, asPath: [], isWithdraw: false });
    const selection = selectRoutes([reflected('10.0.0.11'), reflected('10.0.0.12')], { ...context, onLinkNetworks: ['10.0.0.0/24'], excludedCIDRs: conflictedCIDRs });
    expect(selection.routes).to.deep.equal([{ prefix: '10.244.4.0/24', nextHops: ['10.0.0.14'] }]);
    // A reflector cannot make itself the next hop of another node's podCIDR.
    const hijack = selectRoutes([{ ...reflected('10.0.0.11'), nextHop: '10.0.0.11' }], { ...context, onLinkNetworks: ['10.0.0.0/24'], excludedCIDRs: conflictedCIDRs });
    expect(hijack.routes).to.deep.equal([]);
    expect(hijack.rejected.map((r) => r.reason)).to.deep.equal(['not-from-owner']);
  });
});

describe('route reflection: labels and fallbacks', () => {
  it('validates the cluster ID: a canonical dotted quad, not 0.0.0.0 or the broadcast address', () => {
    expect(clusterIdProblem('10.0.0.1')).to.equal(undefined);
    for (const bad of ['10.0.0', '10.0.0.01', '010.0.0.1', 'rack-1', '1.2.3.4.5', '0.0.0.0', '255.255.255.255', '4294967295', '::1', '']) {
      expect(clusterIdProblem(bad), bad).to.be.a('string');
    }
  });

  it('a bad label is a warning on that node only, which becomes a client; nothing else changes', () => {
    const nodes = [...cluster.slice(0, 2), node('c3', 3, rr('rack-1')), ...cluster.slice(3)];
    const own = plan('c3', nodes);
    expect(own.bgp.role).to.deep.equal({ kind: 'client' });
    expect(own.warnings).to.deep.equal([`node c3: label ${ROUTE_REFLECTOR_LABEL} ignored (not a dotted-quad cluster ID: "rack-1"); the node is a route-reflector client`]);
    expect(own.bgp.peers.map((p) => p.description)).to.deep.equal(['node:r1', 'node:r2']);
    expect(plan('r1', nodes).warnings).to.deep.equal([]);
    expect(plan('r1', nodes).bgp.peers).to.deep.equal(plan('r1').bgp.peers);
  });

  it('a cluster ID with a single reflector is said by that reflector; its clients still peer with it', () => {
    const nodes = [node('r1', 1, rr()), node('r2', 2, rr('10.0.0.2')), node('c3', 3)];
    expect(plan('r1', nodes).warnings).to.deep.equal(['route-reflector cluster 10.0.0.1 of AS 64512 has a single reflector (r1): label a second node with it for redundancy']);
    expect(plan('c3', nodes).warnings).to.deep.equal([]);
    expect(plan('c3', nodes).bgp.peers.map((p) => p.description)).to.deep.equal(['node:r1', 'node:r2']);
  });

  it('an AS without a reflector falls back to a full mesh of its nodes, with a warning: no route is lost', () => {
    const nodes = [node('a', 1), node('b', 2), node('c', 3), node('d', 4, {}, 64999)];
    const state = plan('a', nodes);
    expect(state.bgp.role).to.deep.equal({ kind: 'mesh' });
    expect(state.bgp.peers.map((p) => [p.description, p.routeReflectorClusterId])).to.deep.equal([
      ['node:b', undefined],
      ['node:c', undefined],
    ]);
    expect(state.warnings).to.deep.equal([`bgp.mesh is route-reflector but no node of AS 64512 carries a valid ${ROUTE_REFLECTOR_LABEL} label: its nodes form a full iBGP mesh until one does`]);
  });

  it('the label means nothing in the other mesh modes', () => {
    const config = parseAgentConfig({ cluster: { podRanges: ['10.244.0.0/16'] }, bgp: { mesh: 'full' } });
    const result = planDesiredState({ config, nodeName: 'r1', nodes: cluster, secrets: new Map() });
    if (!result.ok) throw new Error(result.reason);
    expect(result.state.bgp.role).to.deep.equal({ kind: 'mesh' });
    expect(result.state.bgp.peers.every((p) => p.routeReflectorClusterId === undefined)).to.equal(true);
    expect(result.state.bgp.reflect).to.equal(undefined);
  });

  it('a reflector changing cluster ID or becoming a client is a pure function of the labels (the planner sequences it)', () => {
    const solo = planRouteReflection(node('c3', 3), cluster.slice(0, 5).filter((n) => n.name !== 'c3'), 64512);
    expect(solo.reflectors).to.deep.equal([
      { name: 'r1', clusterId: '10.0.0.1' },
      { name: 'r2', clusterId: '10.0.0.1' },
    ]);
    const promoted = planRouteReflection(node('c3', 3, rr('10.0.0.1')), cluster.slice(0, 5).filter((n) => n.name !== 'c3'), 64512);
    expect(promoted.role).to.deep.equal({ kind: 'reflector', clusterId: '10.0.0.1' });
    expect(promoted.peers.map((p) => [p.node.name, p.client])).to.deep.equal([
      ['r1', true],
      ['r2', true],
      ['c4', true],
      ['c5', true],
    ]);
  });
});

describe('route reflection: the reflector export policy', () => {
  it('passes node podCIDRs on to node peers, never to an external peer; a client passes on nothing', () => {
    const reflector = validateDesired({ ...plan('r1').bgp, peers: [...plan('r1').bgp.peers, { address: '10.0.0.1', asn: 65001 }], importRules: { ...plan('r1').bgp.importRules, externalPeers: ['10.0.0.1'] } });
    const exports = buildExportBundle(reflector.advertise, reflector.externalPeers, reflector.services, reflector.reflect);
    expect(decide(exports, '10.0.0.13', '10.244.4.0/24')).to.equal('accept');
    expect(decide(exports, '10.0.0.12', '10.244.4.0/24')).to.equal('accept');
    expect(decide(exports, '10.0.0.1', '10.244.4.0/24')).to.equal('reject');
    expect(decide(exports, '10.0.0.13', '10.244.99.0/24')).to.equal('reject');
    expect(decide(exports, '10.0.0.1', '10.244.1.0/24')).to.equal('accept'); // its own, as before
    const client = validateDesired(plan('c3').bgp);
    const clientExports = buildExportBundle(client.advertise, client.externalPeers, client.services, client.reflect);
    expect(decide(clientExports, '10.0.0.11', '10.244.4.0/24')).to.equal('reject');
    expect(decide(clientExports, '10.0.0.11', '10.244.3.0/24')).to.equal('accept');
  });
});
