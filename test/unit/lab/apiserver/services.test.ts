// What the lab API server does with Services, EndpointSlices and Leases, as kube-apiserver does: dual-stack
// cluster IPs, type-dependent defaults and refusals, the status subresource, and the discovery and coordination
// groups with their validation.
import { expect } from 'chai';
import { request, startServer, type Started } from './helpers.js';

const SERVICES = '/api/v1/namespaces/default/services';
const SLICES = '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices';
const LEASES = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases';

function lbService(name: string, spec: Record<string, unknown> = {}): unknown {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { type: 'LoadBalancer', selector: { app: name }, ports: [{ port: 80 }], ...spec } };
}

describe('lab API server: Services, EndpointSlices, Leases', () => {
  let api: Started;
  beforeEach(async () => {
    api = await startServer();
  });
  afterEach(async () => {
    await api.server.close();
  });
  const call = (method: string, p: string, body?: unknown, ct?: string) => request(api.url, method, p, body, ct);

  it('allocates cluster IPs per ipFamilyPolicy and defaults the traffic policies of a LoadBalancer', async () => {
    const single = await call('POST', SERVICES, lbService('single'));
    expect(single.status).to.equal(201);
    expect(single.body.spec).to.include({ ipFamilyPolicy: 'SingleStack', externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', allocateLoadBalancerNodePorts: true });
    expect(single.body.spec.ipFamilies).to.deep.equal(['IPv4']);
    expect(single.body.spec.clusterIPs).to.have.length(1);
    const dual = await call('POST', SERVICES, lbService('dual', { ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv6'] }));
    expect(dual.body.spec.ipFamilies).to.deep.equal(['IPv6', 'IPv4']);
    expect(dual.body.spec.clusterIPs[0]).to.match(/^fd00:10:96::/);
    expect(dual.body.spec.clusterIPs[1]).to.match(/^10\.96\./);
    const plain = await call('POST', SERVICES, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'plain' }, spec: { ports: [{ port: 80 }] } });
    expect(plain.body.spec.externalTrafficPolicy).to.equal(undefined);
  });

  it('refuses what kube-apiserver refuses on a Service, naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' }, spec: { ports: [{ port: 80 }], loadBalancerClass: 'podroute.io/bgp' } }, 'spec.loadBalancerClass'],
      [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'b' }, spec: { ports: [{ port: 80 }], externalTrafficPolicy: 'Local' } }, 'spec.externalTrafficPolicy'],
      [lbService('c', { externalTrafficPolicy: 'Nearby' }), 'spec.externalTrafficPolicy'],
      [lbService('d', { loadBalancerIP: '192.0.2.300' }), 'spec.loadBalancerIP'],
      [lbService('e', { externalIPs: ['not-an-ip'] }), 'spec.externalIPs[0]'],
      [lbService('f', { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4', 'IPv6'] }), 'spec.ipFamilies'],
      [lbService('g', { ipFamilies: ['IPv4', 'IPv4'], ipFamilyPolicy: 'PreferDualStack' }), 'spec.ipFamilies[1]'],
    ];
    for (const [body, field] of cases) {
      const res = await call('POST', SERVICES, body);
      expect(res.status, field).to.equal(422);
      expect(res.body.details.causes.map((c: { field: string }) => c.field), field).to.include(field);
    }
  });

  it('keeps a LoadBalancer class once set, wipes it with the type, and writes the ingress through /status only', async () => {
    const created = (await call('POST', SERVICES, lbService('web', { loadBalancerClass: 'podroute.io/bgp' }))).body;
    const changed = await call('PUT', `${SERVICES}/web`, { ...created, spec: { ...created.spec, loadBalancerClass: 'example.com/other' } });
    expect(changed.status).to.equal(422);
    const ingress = { loadBalancer: { ingress: [{ ip: '192.0.2.1', ipMode: 'VIP' }] } };
    const ignored = await call('PUT', `${SERVICES}/web`, { ...created, status: ingress });
    expect(ignored.body.status).to.deep.equal({ loadBalancer: {} });
    const written = await call('PUT', `${SERVICES}/web/status`, { ...ignored.body, status: ingress });
    expect(written.body.status).to.deep.equal(ingress);
    const clusterIP = await call('PUT', `${SERVICES}/web`, { ...written.body, spec: { ...written.body.spec, type: 'ClusterIP' } });
    expect(clusterIP.status).to.equal(200);
    expect(clusterIP.body.spec).not.to.have.any.keys('loadBalancerClass', 'externalTrafficPolicy', 'allocateLoadBalancerNodePorts');
  });

  it('serves EndpointSlices with their validation, and Leases', async () => {
    const slice = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'web-abc', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.244.1.5'], nodeName: 'r1n1', conditions: { ready: true, terminating: false } }],
      ports: [{ name: '', port: 80, protocol: 'TCP' }],
    };
    expect((await call('POST', SLICES, slice)).status).to.equal(201);
    const listed = await call('GET', `${SLICES}?labelSelector=kubernetes.io/service-name%3Dweb`);
    expect(listed.body.items.map((s: { metadata: { name: string } }) => s.metadata.name)).to.deep.equal(['web-abc']);
    const wrongFamily = await call('POST', SLICES, { ...slice, metadata: { name: 'web-v6' }, addressType: 'IPv6' });
    expect(wrongFamily.status).to.equal(422);
    expect(wrongFamily.body.details.causes[0].field).to.equal('endpoints[0].addresses[0]');
    const current = (await call('GET', `${SLICES}/web-abc`)).body;
    expect((await call('PUT', `${SLICES}/web-abc`, { ...current, addressType: 'IPv6', endpoints: [] })).status).to.equal(422);
    const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'podroute-allocator' }, spec: { holderIdentity: 'r1n1', leaseDurationSeconds: 15 } };
    expect((await call('POST', LEASES, lease)).status).to.equal(201);
    const bad = await call('POST', LEASES, { ...lease, metadata: { name: 'bad' }, spec: { leaseDurationSeconds: 0 } });
    expect(bad.status).to.equal(422);
    expect(bad.body.details.causes[0].field).to.equal('spec.leaseDurationSeconds');
  });
});
