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

  it('/status: a merge patch changes status only, a stale resourceVersion is a 409, ingress and conditions are validated', async () => {
    const created = (await call('POST', SERVICES, lbService('web'))).body;
    const rv = created.metadata.resourceVersion;
    const condition = { type: 'podroute.io/LoadBalancerAllocated', status: 'True', reason: 'Allocated', message: 'ok', lastTransitionTime: '2026-12-07T01:00:00Z' };
    const patch = (body: unknown) => call('PATCH', `${SERVICES}/web/status`, body, 'application/merge-patch+json');
    // A spec change through /status is dropped; the status change is kept.
    const written = await patch({ metadata: { resourceVersion: rv }, spec: { type: 'ClusterIP' }, status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] }, conditions: [condition] } });
    expect(written.status).to.equal(200);
    expect(written.body.spec.type).to.equal('LoadBalancer');
    // An address without ipMode is a VIP, as kube-apiserver 1.30+ defaults it.
    expect(written.body.status).to.deep.equal({ loadBalancer: { ingress: [{ ip: '192.0.2.1', ipMode: 'VIP' }] }, conditions: [condition] });
    // The resourceVersion read before that write is stale now: kube-apiserver answers 409 Conflict.
    const stale = await patch({ metadata: { resourceVersion: rv }, status: { loadBalancer: { ingress: [{ ip: '192.0.2.2' }] } } });
    expect(stale.status).to.equal(409);
    expect(stale.body).to.include({ reason: 'Conflict', code: 409 });
    expect((await call('GET', `${SERVICES}/web`)).body.status.loadBalancer.ingress).to.deep.equal([{ ip: '192.0.2.1', ipMode: 'VIP' }]);
    // A status change through the main resource is ignored.
    const main = await call('PATCH', `${SERVICES}/web`, { status: { loadBalancer: { ingress: [{ ip: '192.0.2.3' }] } } }, 'application/merge-patch+json');
    expect(main.body.status.loadBalancer.ingress).to.deep.equal([{ ip: '192.0.2.1', ipMode: 'VIP' }]);
    const refused: [unknown, string][] = [
      [{ loadBalancer: { ingress: [{ ip: '192.0.2.300' }] } }, 'status.loadBalancer.ingress[0].ip'],
      [{ loadBalancer: { ingress: [{ hostname: '192.0.2.3' }] } }, 'status.loadBalancer.ingress[0].hostname'],
      [{ loadBalancer: { ingress: [{ hostname: 'lb.example.com', ipMode: 'VIP' }] } }, 'status.loadBalancer.ingress[0].ipMode'],
      [{ loadBalancer: { ingress: [{ ip: '192.0.2.3', ipMode: 'Direct' }] } }, 'status.loadBalancer.ingress[0].ipMode'],
      [{ conditions: [{ ...condition, status: 'Yes' }] }, 'status.conditions[0].status'],
      [{ conditions: [{ ...condition, reason: 'Not allowed' }] }, 'status.conditions[0].reason'],
      [{ conditions: [{ ...condition, reason: '' }] }, 'status.conditions[0].reason'],
      [{ conditions: [{ ...condition, lastTransitionTime: undefined }] }, 'status.conditions[0].lastTransitionTime'],
      [{ conditions: [{ ...condition, type: 'bad type' }] }, 'status.conditions[0].type'],
      [{ conditions: [{ ...condition, message: 'x'.repeat(32769) }] }, 'status.conditions[0].message'],
      [{ conditions: [condition, { ...condition, status: 'False' }] }, 'status.conditions[1].type'],
    ];
    for (const [status, field] of refused) {
      const res = await patch({ status });
      expect(res.status, field).to.equal(422);
      expect(res.body.details.causes.map((c: { field: string }) => c.field), field).to.include(field);
    }
  });

  it('stores Events in the namespace of the object they are about, and refuses another', async () => {
    const event = (namespace: string) => ({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: 'web.', namespace: 'default' },
      involvedObject: { kind: 'Service', apiVersion: 'v1', name: 'web', namespace },
      type: 'Warning',
      reason: 'AddressInUse',
      message: '192.0.2.1 is already in use',
    });
    const ok = await call('POST', '/api/v1/namespaces/default/events', event('default'));
    expect(ok.status).to.equal(201);
    expect(ok.body.metadata.name).to.match(/^web\./);
    const elsewhere = await call('POST', '/api/v1/namespaces/default/events', event('kube-system'));
    expect(elsewhere.status).to.equal(422);
    expect(elsewhere.body.details.causes[0].field).to.equal('involvedObject.namespace');
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
