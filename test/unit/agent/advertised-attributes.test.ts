// Communities and local preference per advertised class: the configuration (validated, naming the key), the node's
// annotations (a bad one is a warning and is ignored), and the paths of the desired state that carry them.
import { expect } from 'chai';
import { advertisedAttributes } from '../../../src/agent/advertised-attributes.js';
import { planDesiredState, serviceRoutes } from '../../../src/agent/desired-state.js';
import { ConfigError, parseAgentConfig, type AgentConfigInput } from '../../../src/config/agent-config.js';
import { nodeInfoFromObject } from '../../../src/kube/node-info.js';
import type { Node, Service } from '../../../src/kube/wire.js';

const base = { nodeName: 'n1', cluster: { podRanges: ['10.244.0.0/16', 'fd00:10:244::/56'] } };

function config(bgp: AgentConfigInput['bgp'] = {}, extra: Partial<AgentConfigInput> = {}): ReturnType<typeof parseAgentConfig> {
  return parseAgentConfig({ ...base, bgp, ...extra });
}

function problemsOf(bgp: unknown): string[] {
  try {
    parseAgentConfig({ ...base, bgp });
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

function nodeObject(name: string, index: number, annotations: Record<string, string> = {}): Node {
  return {
    metadata: { name, annotations },
    spec: { podCIDRs: [`10.244.${index}.0/24`, `fd00:10:244:${index}::/64`] },
    status: { addresses: [{ type: 'InternalIP', address: `10.0.0.${10 + index}` }, { type: 'InternalIP', address: `fd00::${10 + index}` }] },
  };
}

describe('advertised communities: configuration', () => {
  it('takes standard, large and well-known communities per class, and a local preference', () => {
    const c = config({ communities: { podCIDRs: ['65000:100', 'no-export', '65000:1:2'], services: ['65000:200'] }, localPreference: { podCIDRs: 200 } });
    expect(c.bgp.communities).to.deep.equal({ podCIDRs: ['65000:100', 'no-export', '65000:1:2'], services: ['65000:200'] });
    expect(c.bgp.localPreference).to.deep.equal({ podCIDRs: 200 });
    expect(config().bgp.communities).to.deep.equal({ podCIDRs: [], services: [] });
  });

  it('refuses a bad community or local preference with the key that holds it', () => {
    expect(problemsOf({ communities: { podCIDRs: ['65000:100', '65000:70000'] } })).to.deep.equal([
      'bgp.communities.podCIDRs[1]: "65000:70000" is not a community: "ASN:value" takes two numbers 0..65535',
    ]);
    expect(problemsOf({ communities: { services: ['no-exprot'] } })[0]).to.match(/^bgp\.communities\.services\[0\]: "no-exprot" is not a community: .*no-export/);
    expect(problemsOf({ communities: { pods: [] } })[0]).to.match(/^bgp\.communities: unknown key\(s\) "pods"/);
    expect(problemsOf({ localPreference: { podCIDRs: -1 } })[0]).to.match(/^bgp\.localPreference\.podCIDRs: /);
    expect(problemsOf({ localPreference: { services: 2 ** 32 } })[0]).to.match(/^bgp\.localPreference\.services: /);
  });
});

describe('advertised communities: node annotations', () => {
  it('replace the configured communities and local preference of their class only', () => {
    const info = nodeInfoFromObject(
      nodeObject('n1', 1, { 'podroute.io/pod-cidr-communities': '65001:1, no-peer 65001:2:3', 'podroute.io/service-local-preference': '50' }),
    );
    expect(info.warnings).to.deep.equal([]);
    const c = config({ communities: { podCIDRs: ['65000:100'], services: ['65000:200'] }, localPreference: { podCIDRs: 200 } });
    expect(advertisedAttributes(c, info, 'podCIDRs')).to.deep.equal({ communities: ['65001:1', '65535:65284'], largeCommunities: ['65001:2:3'], localPref: 200 });
    expect(advertisedAttributes(c, info, 'services')).to.deep.equal({ communities: ['65000:200'], localPref: 50 });
  });

  it('an empty annotation means no communities for that class', () => {
    const info = nodeInfoFromObject(nodeObject('n1', 1, { 'podroute.io/service-communities': '' }));
    expect(advertisedAttributes(config({ communities: { services: ['65000:200'] } }), info, 'services')).to.deep.equal({});
  });

  it('a bad annotation is a warning naming it, and is ignored as a whole (the configuration applies)', () => {
    const info = nodeInfoFromObject(
      nodeObject('n1', 1, { 'podroute.io/pod-cidr-communities': '65001:1,65001:x', 'podroute.io/pod-cidr-local-preference': 'high', 'podroute.io/service-communities': 'no-export' }),
    );
    expect(info.warnings).to.deep.equal([
      'annotation podroute.io/pod-cidr-communities: "65001:x" is not a community: "ASN:value" takes two numbers 0..65535; the annotation is ignored (bgp.communities.podCIDRs applies)',
      'annotation podroute.io/pod-cidr-local-preference: "high" is not a local preference (0..4294967295); ignored (bgp.localPreference.podCIDRs applies)',
    ]);
    expect(info.podCIDRs).to.have.length(2);
    const c = config({ communities: { podCIDRs: ['65000:100'] } });
    expect(advertisedAttributes(c, info, 'podCIDRs')).to.deep.equal({ communities: ['65000:100'] });
    expect(advertisedAttributes(c, info, 'services')).to.deep.equal({ communities: ['65535:65281'] });
  });
});

describe('advertised communities: the desired state', () => {
  it("puts each class's attributes on its paths: podCIDRs from the node's annotation, Services from the configuration", () => {
    const c = config(
      { communities: { podCIDRs: ['65000:100'], services: ['65000:200', '65000:2:0'] }, peers: [{ address: '10.0.0.1', asn: 65001 }] },
      { services: { clusterIPRanges: ['10.96.0.0/16'] } },
    );
    const nodes = [nodeObject('n1', 1, { 'podroute.io/pod-cidr-communities': 'no-export' }), nodeObject('n2', 2)].map(nodeInfoFromObject);
    const result = planDesiredState({ config: c, nodeName: 'n1', nodes, secrets: new Map() });
    if (!result.ok) throw new Error(result.reason);
    expect(result.state.bgp.advertise).to.deep.equal([
      { prefix: '10.244.1.0/24', nextHop: '10.0.0.11', communities: ['65535:65281'] },
      { prefix: 'fd00:10:244:1::/64', nextHop: 'fd00::11', communities: ['65535:65281'] },
    ]);
    const other = planDesiredState({ config: c, nodeName: 'n2', nodes, secrets: new Map() });
    if (!other.ok) throw new Error(other.reason);
    expect(other.state.bgp.advertise.map((p) => p.communities)).to.deep.equal([['65000:100'], ['65000:100']]);
    const svc: Service = { metadata: { namespace: 'web', name: 'api' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.10' } };
    expect(serviceRoutes(c, nodes[0]!, [svc], []).paths).to.deep.equal([
      { prefix: '10.96.0.0/16', nextHop: '10.0.0.11', communities: ['65000:200'], largeCommunities: ['65000:2:0'] },
    ]);
  });
});
