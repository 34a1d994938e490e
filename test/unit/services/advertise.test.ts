// Which Service addresses a node advertises: every node for externalTrafficPolicy Cluster, only nodes with a ready,
// not terminating local endpoint for Local, externalIPs only inside the allowed ranges, exclusions by label and
// annotation, the ClusterIP ranges as aggregates.
import { expect } from 'chai';
import type { EndpointSlice, Service } from '../../../src/kube/wire.js';
import { ADVERTISE_ANNOTATION, EXCLUDE_NODE_LABEL, planServiceAdvertisement, SERVICE_NAME_LABEL, type ServiceAdvertisementInput } from '../../../src/services/advertise.js';

function lb(name: string, ips: string[], o: { local?: boolean; externalIPs?: string[]; class?: string; annotations?: Record<string, string>; type?: string } = {}): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'web', name, ...(o.annotations === undefined ? {} : { annotations: o.annotations }) },
    spec: {
      type: o.type ?? 'LoadBalancer',
      ...(o.class === undefined ? {} : { loadBalancerClass: o.class }),
      externalTrafficPolicy: o.local === true ? 'Local' : 'Cluster',
      ...(o.externalIPs === undefined ? {} : { externalIPs: o.externalIPs }),
      ports: [{ port: 80 }],
    },
    status: { loadBalancer: { ingress: ips.map((ip) => ({ ip })) } },
  };
}

function slice(service: string, endpoints: { node: string; ready?: boolean; terminating?: boolean }[]): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    addressType: 'IPv4',
    metadata: { namespace: 'web', name: `${service}-abcde`, labels: { [SERVICE_NAME_LABEL]: service } },
    endpoints: endpoints.map((e, i) => ({
      addresses: [`10.244.0.${i + 10}`],
      nodeName: e.node,
      conditions: { ...(e.ready === undefined ? {} : { ready: e.ready }), ...(e.terminating === undefined ? {} : { terminating: e.terminating }) },
    })),
  };
}

function plan(over: Partial<ServiceAdvertisementInput>): ReturnType<typeof planServiceAdvertisement> {
  return planServiceAdvertisement({ nodeName: 'n1', nodeLabels: {}, services: [], endpointSlices: [], loadBalancerRanges: ['192.0.2.0/24', '2001:db8:5::/64'], externalIPRanges: [], clusterIPRanges: [], ...over });
}

describe('Service advertisement plan', () => {
  it('advertises a Cluster Service from every node and a Local one only where an endpoint is ready and not terminating', () => {
    const services = [lb('cluster', ['192.0.2.1', '2001:db8:5::1']), lb('local', ['192.0.2.2'], { local: true })];
    expect(plan({ services }).prefixes).to.deep.equal(['192.0.2.1/32', '2001:db8:5::1/128']);
    const here = [slice('local', [{ node: 'n2' }, { node: 'n1', ready: true }])];
    expect(plan({ services, endpointSlices: here }).prefixes).to.deep.equal(['192.0.2.1/32', '192.0.2.2/32', '2001:db8:5::1/128']);
    // A nil ready condition is ready, as the API defines it.
    expect(plan({ services, endpointSlices: [slice('local', [{ node: 'n1' }])] }).prefixes).to.include('192.0.2.2/32');
    for (const endpoint of [{ node: 'n1', ready: false }, { node: 'n1', ready: true, terminating: true }, { node: 'n2', ready: true }]) {
      expect(plan({ services, endpointSlices: [slice('local', [endpoint])] }).prefixes, JSON.stringify(endpoint)).not.to.include('192.0.2.2/32');
    }
  });

  it('advertises externalIPs only inside the allowed ranges, and reports the others', () => {
    const services = [lb('ext', [], { type: 'ClusterIP', externalIPs: ['198.51.100.7', '8.8.8.8', 'nonsense'] })];
    const result = plan({ services, externalIPRanges: ['198.51.100.0/24'] });
    expect(result.prefixes).to.deep.equal(['198.51.100.7/32']);
    expect(result.problems.map((p) => p.message)).to.deep.equal([
      'externalIPs entry "8.8.8.8" is outside services.externalIPRanges: not advertised',
      'externalIPs entry "nonsense" is outside services.externalIPRanges: not advertised',
    ]);
  });

  it('advertises nothing from an excluded node, nothing of an opted-out Service or of another class, and the ClusterIP ranges as they are', () => {
    const services = [lb('a', ['192.0.2.1']), lb('quiet', ['192.0.2.2'], { annotations: { [ADVERTISE_ANNOTATION]: 'false' } }), lb('other', ['192.0.2.3'], { class: 'example.com/lb' })];
    expect(plan({ services, clusterIPRanges: ['10.96.0.0/12'] }).prefixes).to.deep.equal(['10.96.0.0/12', '192.0.2.1/32']);
    expect(plan({ services, clusterIPRanges: ['10.96.0.0/12'], nodeLabels: { [EXCLUDE_NODE_LABEL]: '' } }).prefixes).to.deep.equal([]);
  });

  it('advertises ingress addresses only inside the pools, and reports the others', () => {
    const services = [lb('hand-written', ['203.0.113.9', '192.0.2.4'])];
    const result = plan({ services });
    expect(result.prefixes).to.deep.equal(['192.0.2.4/32']);
    expect(result.problems).to.deep.equal([
      { service: 'web/hand-written', reason: 'IngressNotInPool', message: 'status.loadBalancer.ingress "203.0.113.9" is in no services.loadBalancerPools: not advertised' },
    ]);
  });

  it('advertises the ClusterIPs of a Local Service as host routes only from nodes with a ready endpoint, inside the ClusterIP ranges', () => {
    const withClusterIPs = (service: Service, clusterIPs: string[], internal?: 'Local'): Service => ({
      ...service,
      spec: { ...service.spec, clusterIPs, ...(internal === undefined ? {} : { internalTrafficPolicy: internal }) },
    });
    const services = [
      withClusterIPs(lb('etp', ['192.0.2.1'], { local: true }), ['10.96.0.10', 'fd00:10:96::10']),
      withClusterIPs(lb('itp', [], { type: 'ClusterIP' }), ['10.96.0.11'], 'Local'),
      withClusterIPs(lb('outside', [], { type: 'ClusterIP' }), ['172.16.0.1'], 'Local'),
      withClusterIPs(lb('cluster', [], { type: 'ClusterIP' }), ['10.96.0.12']),
    ];
    const clusterIPRanges = ['10.96.0.0/16', 'fd00:10:96::/112'];
    const slices = [slice('etp', [{ node: 'n1' }]), slice('itp', [{ node: 'n1' }]), slice('outside', [{ node: 'n1' }]), slice('cluster', [{ node: 'n1' }])];
    expect(plan({ services, clusterIPRanges, endpointSlices: slices }).prefixes).to.deep.equal([
      '10.96.0.0/16',
      '10.96.0.10/32',
      '10.96.0.11/32',
      '192.0.2.1/32',
      'fd00:10:96::/112',
      'fd00:10:96::10/128',
    ]);
    expect(plan({ services, clusterIPRanges, endpointSlices: slices, nodeName: 'n2' }).prefixes).to.deep.equal(['10.96.0.0/16', 'fd00:10:96::/112']);
    // An excluded node advertises none of them, the host routes of its local endpoints included.
    expect(plan({ services, clusterIPRanges, endpointSlices: slices, nodeLabels: { [EXCLUDE_NODE_LABEL]: '' } }).prefixes).to.deep.equal([]);
  });
});
