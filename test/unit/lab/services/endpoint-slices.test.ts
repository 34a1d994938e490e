import { expect } from 'chai';
import {
  MANAGED_BY_CONTROLLER,
  MANAGED_BY_LABEL,
  desiredSlices,
  planServiceSlices,
  resolveTargetPort,
  serviceAddressTypes,
  slicePrefix,
  type EndpointSlice,
  type Pod,
  type Service,
} from '../../../../src/lab/services/endpoint-slices.js';
import { planAllSlices } from '../../../../src/lab/services/endpoint-slice-controller.js';

function svc(spec: Service['spec'] = {}, name = 'web'): Service {
  return {
    metadata: { name, namespace: 'x', uid: `uid-${name}`, labels: { team: 'a' } },
    spec: {
      selector: { app: 'web' },
      ipFamilies: ['IPv4', 'IPv6'],
      ports: [
        { name: 'http', port: 80, targetPort: 'serve', protocol: 'TCP' },
        { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
      ],
      ...spec,
    },
  };
}

function pod(name: string, node: string, ips: string[], opts: { ready?: boolean; deleting?: boolean; labels?: Record<string, string>; namedPort?: number; phase?: string } = {}): Pod {
  return {
    metadata: {
      name,
      namespace: 'x',
      uid: `uid-${name}`,
      labels: opts.labels ?? { app: 'web' },
      ...(opts.deleting === true ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: {
      nodeName: node,
      containers: [{ name: 'c', ports: opts.namedPort === undefined ? [] : [{ name: 'serve', containerPort: opts.namedPort, protocol: 'TCP' }] }],
    },
    status: {
      phase: opts.phase ?? 'Running',
      podIPs: ips.map((ip) => ({ ip })),
      conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }],
    },
  };
}

const nodes = [{ metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'rack1' } } }, { metadata: { name: 'n2' } }];

describe('lab EndpointSlice controller: desired slices', () => {
  it('one slice group per address type, endpoints with node, zone, targetRef and kube-controller-manager conditions', () => {
    const slices = desiredSlices(svc(), [pod('a', 'n1', ['10.244.1.5', 'fd00::5'], { namedPort: 8080 })], nodes);
    expect(slices.map((s) => s.addressType)).to.deep.equal(['IPv4', 'IPv6']);
    expect(slices[0]?.endpoints).to.deep.equal([
      {
        addresses: ['10.244.1.5'],
        conditions: { ready: true, serving: true, terminating: false },
        targetRef: { kind: 'Pod', namespace: 'x', name: 'a', uid: 'uid-a' },
        nodeName: 'n1',
        zone: 'rack1',
      },
    ]);
    expect(slices[1]?.endpoints?.[0]?.addresses).to.deep.equal(['fd00::5']);
    expect(slices[0]?.ports).to.deep.equal([
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'dns', port: 5353, protocol: 'UDP' },
    ]);
  });

  it('readiness: not ready -> ready=false serving=false; terminating -> ready=false, serving from readiness; publishNotReadyAddresses', () => {
    const pods = [pod('a', 'n1', ['10.0.0.1'], { ready: false, namedPort: 80 }), pod('b', 'n2', ['10.0.0.2'], { deleting: true, namedPort: 80 })];
    const [v4] = desiredSlices(svc({ ipFamilies: ['IPv4'] }), pods, nodes);
    expect(v4?.endpoints.map((e) => [e.targetRef.name, e.conditions])).to.deep.equal([
      ['a', { ready: false, serving: false, terminating: false }],
      ['b', { ready: false, serving: true, terminating: true }],
    ]);
    const [published] = desiredSlices(svc({ ipFamilies: ['IPv4'], publishNotReadyAddresses: true }), pods, nodes);
    expect(published?.endpoints.map((e) => e.conditions.ready)).to.deep.equal([true, true]);
  });

  it('skips pods without an IP, finished pods, other namespaces and non-matching labels', () => {
    const pods = [
      pod('noip', 'n1', []),
      pod('done', 'n1', ['10.0.0.3'], { phase: 'Succeeded' }),
      pod('other', 'n1', ['10.0.0.4'], { labels: { app: 'db' } }),
      { ...pod('elsewhere', 'n1', ['10.0.0.5']), metadata: { name: 'elsewhere', namespace: 'y', labels: { app: 'web' } } },
    ];
    const slices = desiredSlices(svc({ ipFamilies: ['IPv4'] }), pods, nodes);
    // Nothing matches: one placeholder slice without endpoints or ports.
    expect(slices).to.deep.equal([{ group: 'IPv4|[]', addressType: 'IPv4', ports: [], endpoints: [] }]);
  });

  it('a named target port missing on a pod leaves that port out: pods with different port mappings get different slices', () => {
    const slices = desiredSlices(svc({ ipFamilies: ['IPv4'] }), [pod('a', 'n1', ['10.0.0.1'], { namedPort: 8080 }), pod('b', 'n1', ['10.0.0.2'])], nodes);
    expect(slices.map((s) => [s.endpoints.map((e) => e.targetRef.name), s.ports.map((p) => `${p.name}:${p.port}`)])).to.deep.equal([
      [['a'], ['http:8080', 'dns:5353']],
      [['b'], ['dns:5353']],
    ]);
    expect(resolveTargetPort(pod('c', 'n1', []), { port: 80 })).to.equal(80);
    expect(resolveTargetPort(pod('c', 'n1', [], { namedPort: 9 }), { port: 80, targetPort: 'serve', protocol: 'UDP' })).to.equal(undefined);
  });

  it('no selector or ExternalName: no managed slices; address types fall back to the ClusterIP family', () => {
    expect(desiredSlices(svc({ selector: undefined }), [pod('a', 'n1', ['10.0.0.1'])], nodes)).to.deep.equal([]);
    expect(desiredSlices(svc({ type: 'ExternalName' }), [pod('a', 'n1', ['10.0.0.1'])], nodes)).to.deep.equal([]);
    expect(serviceAddressTypes({ metadata: {}, spec: { clusterIP: 'fd00:10:96::1' } })).to.deep.equal(['IPv6']);
    expect(slicePrefix('a'.repeat(70))).to.have.length(58);
  });
});

describe('lab EndpointSlice controller: writes', () => {
  const service = svc({ ipFamilies: ['IPv4'] });
  const pods = [pod('a', 'n1', ['10.0.0.1'], { namedPort: 80 })];

  it('creates with generateName, labels, ownerReference; an equal existing slice is kept; a changed one updated in place', () => {
    const [create] = planServiceSlices(service, pods, nodes, []);
    expect(create?.kind).to.equal('create');
    const slice = create?.kind === 'create' ? create.slice : undefined;
    expect(slice?.metadata).to.deep.equal({
      generateName: 'web-',
      namespace: 'x',
      labels: { team: 'a', 'kubernetes.io/service-name': 'web', [MANAGED_BY_LABEL]: MANAGED_BY_CONTROLLER },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'uid-web', controller: true, blockOwnerDeletion: true }],
    });
    const stored: EndpointSlice = { ...(slice as EndpointSlice), metadata: { ...slice?.metadata, name: 'web-abcde', resourceVersion: '7' } };
    expect(planServiceSlices(service, pods, nodes, [stored])).to.deep.equal([]);
    const writes = planServiceSlices(service, [pod('a', 'n1', ['10.0.0.1'], { namedPort: 80, ready: false })], nodes, [stored]);
    expect(writes.map((w) => w.kind)).to.deep.equal(['update']);
    expect(writes[0]?.kind === 'update' ? writes[0].slice.metadata : undefined).to.include({ name: 'web-abcde', resourceVersion: '7' });
  });

  it('deletes the slices of a Service that is gone, of a recreated Service (other uid), and extra ones; never foreign slices', () => {
    const [create] = planServiceSlices(service, pods, nodes, []);
    const ours = { ...(create?.kind === 'create' ? create.slice : ({} as EndpointSlice)), metadata: { name: 'web-1', namespace: 'x', labels: { 'kubernetes.io/service-name': 'web', [MANAGED_BY_LABEL]: MANAGED_BY_CONTROLLER }, ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'old' }] } };
    const foreign: EndpointSlice = { ...ours, metadata: { name: 'web-manual', namespace: 'x', labels: { 'kubernetes.io/service-name': 'web', [MANAGED_BY_LABEL]: 'someone-else' } } };
    expect(planAllSlices([], pods, nodes, [ours, foreign])).to.deep.equal([{ kind: 'delete', namespace: 'x', name: 'web-1' }]);
    expect(planAllSlices([service], pods, nodes, [ours, foreign]).map((w) => w.kind).sort()).to.deep.equal(['create', 'delete']);
  });
});
