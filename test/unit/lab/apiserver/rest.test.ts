// The lab API server's REST semantics over HTTP, checked against what the real API server does.
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { LabApiServer } from '../../../../src/lab/apiserver/index.js';
import { pod, request, startServer, tempDir, WatchStream, type Started } from './helpers.js';
import { pollUntil } from '../../../poll.js';

const PODS = '/api/v1/namespaces/default/pods';
const NODES = '/api/v1/nodes';
const NETPOLS = '/apis/networking.k8s.io/v1/namespaces/default/networkpolicies';

describe('lab API server REST', () => {
  let api: Started;
  const watches: WatchStream[] = [];
  beforeEach(async () => {
    api = await startServer({ bookmarkIntervalMs: 100 });
  });
  afterEach(async () => {
    for (const w of watches.splice(0)) w.close();
    await api.server.close();
  });
  const call = (method: string, p: string, body?: unknown, ct?: string) => request(api.url, method, p, body, ct);
  const watch = async (p: string): Promise<WatchStream> => {
    const w = await WatchStream.open({ url: api.url }, p);
    watches.push(w);
    return w;
  };

  it('serves discovery and version', async () => {
    expect((await call('GET', '/api')).body.versions).to.deep.equal(['v1']);
    const core = (await call('GET', '/api/v1')).body;
    const names = core.resources.map((r: { name: string }) => r.name);
    expect(names).to.include.members(['namespaces', 'nodes', 'nodes/status', 'pods', 'pods/status', 'services', 'events']);
    const groups = (await call('GET', '/apis')).body.groups.map((g: { name: string }) => g.name);
    expect(groups).to.have.members(['networking.k8s.io', 'discovery.k8s.io', 'coordination.k8s.io']);
    const np = (await call('GET', '/apis/networking.k8s.io/v1')).body.resources[0];
    expect(np).to.include({ name: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true });
    expect((await call('GET', '/version')).body.minor).to.equal('32');
    expect((await call('GET', '/api/v1/widgets')).status).to.equal(404);
  });

  it('creates with server-set metadata, generateName, namespace defaulting and a Pending pod status', async () => {
    const res = await call('POST', PODS, { ...pod('', 'default'), metadata: { generateName: 'web-' }, status: { phase: 'Running' } });
    expect(res.status).to.equal(201);
    const m = res.body.metadata;
    expect(m.name).to.match(/^web-[a-z0-9]{5}$/);
    expect(m.namespace).to.equal('default');
    expect(m.uid).to.match(/^[0-9a-f-]{36}$/);
    expect(m.creationTimestamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Number(m.resourceVersion)).to.be.greaterThan(0);
    expect(res.body.status.phase, 'REST create resets pod status').to.equal('Pending');
    expect(res.body.spec.containers[0].ports[0].protocol, 'defaulted').to.equal('TCP');

    const dup = await call('POST', PODS, { ...pod(m.name, 'default') });
    expect(dup.status).to.equal(409);
    expect(dup.body).to.include({ kind: 'Status', reason: 'AlreadyExists', code: 409 });
    expect((await call('POST', '/api/v1/namespaces/nope/pods', pod('a', 'nope'))).body).to.include({ reason: 'NotFound', code: 404 });
    expect((await call('POST', PODS, pod('a', 'kube-system'))).status, 'namespace mismatch').to.equal(400);
    expect((await call('POST', PODS, '{"kind": "Pod", ')).body).to.include({ reason: 'BadRequest', code: 400 });

    const invalid = await call('POST', PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 0 }] }] } });
    expect(invalid.status).to.equal(422);
    expect(invalid.body.reason).to.equal('Invalid');
    expect(invalid.body.message).to.contain('spec.containers[0].ports[0].containerPort');
    expect(invalid.body.details.causes[0].field).to.equal('spec.containers[0].ports[0].containerPort');
  });

  it('update: stale resourceVersion conflicts, the main resource ignores status, /status changes only status', async () => {
    const created = (await call('POST', NODES, { kind: 'Node', apiVersion: 'v1', metadata: { name: 'n1' }, spec: { podCIDR: '10.244.1.0/24' }, status: { capacity: { pods: '110' } } })).body;
    expect(created.spec.podCIDRs, 'podCIDRs defaulted from podCIDR').to.deep.equal(['10.244.1.0/24']);
    const rv1 = created.metadata.resourceVersion;
    const labelled = await call('PUT', `${NODES}/n1`, { ...created, metadata: { ...created.metadata, labels: { rack: 'r1' } }, status: { capacity: { pods: '1' } } });
    expect(labelled.status).to.equal(200);
    expect(labelled.body.metadata.labels).to.deep.equal({ rack: 'r1' });
    expect(labelled.body.status.capacity.pods, 'status is not written through the main resource').to.equal('110');
    expect(Number(labelled.body.metadata.resourceVersion)).to.be.greaterThan(Number(rv1));

    const stale = await call('PUT', `${NODES}/n1`, { ...created, metadata: { ...created.metadata, resourceVersion: rv1 } });
    expect(stale.status).to.equal(409);
    expect(stale.body.reason).to.equal('Conflict');
    expect(stale.body.message).to.contain('the object has been modified');

    const st = await call('PUT', `${NODES}/n1/status`, { ...labelled.body, metadata: { ...labelled.body.metadata, labels: {} }, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
    expect(st.status).to.equal(200);
    expect(st.body.status.conditions).to.deep.equal([{ type: 'Ready', status: 'True' }]);
    expect(st.body.metadata.labels, '/status does not change labels').to.deep.equal({ rack: 'r1' });

    const cidr = await call('PUT', `${NODES}/n1`, { ...st.body, spec: { podCIDR: '10.244.9.0/24' }, metadata: { ...st.body.metadata, resourceVersion: undefined } });
    expect(cidr.status).to.equal(422);
    expect(cidr.body.message).to.contain('spec.podCIDRs');
  });

  it('patch: merge, strategic (node conditions via /status) and JSON patch; a resourceVersion in the patch is a precondition', async () => {
    const n = (await call('POST', NODES, { kind: 'Node', apiVersion: 'v1', metadata: { name: 'n1', labels: { a: '1' } } })).body;
    const merged = await call('PATCH', `${NODES}/n1`, { metadata: { labels: { a: null, b: '2' } } }, 'application/merge-patch+json');
    expect(merged.body.metadata.labels).to.deep.equal({ b: '2' });
    const s1 = await call('PATCH', `${NODES}/n1/status`, { status: { conditions: [{ type: 'Ready', status: 'False' }, { type: 'DiskPressure', status: 'False' }] } }, 'application/strategic-merge-patch+json');
    const s2 = await call('PATCH', `${NODES}/n1/status`, { status: { conditions: [{ type: 'Ready', status: 'True' }] } }, 'application/strategic-merge-patch+json');
    expect(s1.status).to.equal(200);
    expect(s2.body.status.conditions).to.deep.equal([{ type: 'Ready', status: 'True' }, { type: 'DiskPressure', status: 'False' }]);
    const jp = await call('PATCH', `${NODES}/n1`, [{ op: 'add', path: '/metadata/annotations', value: { x: 'y' } }], 'application/json-patch+json');
    expect(jp.body.metadata.annotations).to.deep.equal({ x: 'y' });

    const stale = await call('PATCH', `${NODES}/n1`, { metadata: { resourceVersion: n.metadata.resourceVersion, labels: { c: '3' } } }, 'application/merge-patch+json');
    expect(stale.status).to.equal(409);
    const rv = jp.body.metadata.resourceVersion;
    const noop = await call('PATCH', `${NODES}/n1`, { metadata: { labels: { b: '2' } } }, 'application/merge-patch+json');
    expect(noop.body.metadata.resourceVersion, 'a no-op patch writes nothing').to.equal(rv);
    expect((await call('PATCH', `${NODES}/n1`, { a: 1 }, 'text/plain')).status).to.equal(415);
    expect((await call('PATCH', `${NODES}/nope`, { a: 1 }, 'application/merge-patch+json')).status).to.equal(404);
    expect((await call('PATCH', `${NODES}/n1`, { metadata: { labels: { 'bad key!': 'x' } } }, 'application/merge-patch+json')).status).to.equal(422);
  });

  it('delete: a Pod answers with the object, a NetworkPolicy with a Status; preconditions conflict', async () => {
    const p = (await call('POST', PODS, pod('a', 'default'))).body;
    const badPre = await call('DELETE', `${PODS}/a`, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { uid: 'other' } });
    expect(badPre.status).to.equal(409);
    const del = await call('DELETE', `${PODS}/a`);
    expect(del.status).to.equal(200);
    expect(del.body).to.include({ kind: 'Pod' });
    expect(del.body.metadata.uid).to.equal(p.metadata.uid);
    expect((await call('GET', `${PODS}/a`)).status).to.equal(404);
    expect((await call('DELETE', `${PODS}/a`)).body).to.include({ reason: 'NotFound', code: 404 });

    await call('POST', NETPOLS, { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np' }, spec: { podSelector: {} } });
    const np = await call('DELETE', `${NETPOLS}/np`);
    expect(np.body).to.include({ kind: 'Status', status: 'Success' });
  });

  it('deleting a Namespace makes it Terminating, then removes its objects and itself', async () => {
    await call('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
    await call('POST', '/api/v1/namespaces/x/pods', pod('a', 'x'));
    await call('POST', '/api/v1/namespaces/x/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 80 }] } });
    const del = await call('DELETE', '/api/v1/namespaces/x');
    expect(del.body.status.phase).to.equal('Terminating');
    expect((await call('POST', '/api/v1/namespaces/x/pods', pod('b', 'x'))).status, 'no new content while terminating').to.equal(403);
    await pollUntil('namespace gone', async () => (await call('GET', '/api/v1/namespaces/x')).status === 404, { timeoutMs: 5000, intervalMs: 20 });
    expect((await call('GET', '/api/v1/namespaces/x/pods')).body.items).to.deep.equal([]);
    expect((await call('GET', '/api/v1/namespaces/x/services/s')).status).to.equal(404);
  });

  it('lists across namespaces with selectors, and pages with limit/continue on a consistent snapshot', async () => {
    await call('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
    for (const n of ['a', 'b', 'c']) await call('POST', PODS, pod(n, 'default', { labels: { app: n === 'c' ? 'db' : 'web' } }));
    await call('POST', '/api/v1/namespaces/x/pods', pod('d', 'x', { labels: { app: 'web' } }));
    const all = (await call('GET', '/api/v1/pods')).body;
    expect(all.kind).to.equal('PodList');
    expect(all.items.map((p: { metadata: { name: string } }) => p.metadata.name)).to.deep.equal(['a', 'b', 'c', 'd']);
    expect(all.items[0].kind, 'list items carry no kind').to.equal(undefined);
    const web = (await call('GET', '/api/v1/pods?labelSelector=app%3Dweb,app!%3Ddb')).body.items.map((p: { metadata: { name: string } }) => p.metadata.name);
    expect(web).to.deep.equal(['a', 'b', 'd']);
    expect((await call('GET', '/api/v1/pods?labelSelector=a%20in%20(')).status).to.equal(400);
    expect((await call('GET', '/api/v1/pods?fieldSelector=spec.bogus%3D1')).status).to.equal(400);

    const page1 = (await call('GET', '/api/v1/pods?limit=2')).body;
    expect(page1.items.map((p: { metadata: { name: string } }) => p.metadata.name)).to.deep.equal(['a', 'b']);
    expect(page1.metadata.remainingItemCount).to.equal(2);
    await call('DELETE', `${PODS}/c`);
    await call('POST', PODS, pod('bb', 'default'));
    const page2 = (await call('GET', `/api/v1/pods?limit=2&continue=${page1.metadata.continue}`)).body;
    expect(page2.items.map((p: { metadata: { name: string } }) => p.metadata.name), 'the snapshot of the first page').to.deep.equal(['c', 'd']);
    expect(page2.metadata.resourceVersion).to.equal(page1.metadata.resourceVersion);
    expect(page2.metadata.continue).to.equal(undefined);

    const exact = await call('GET', `/api/v1/pods?resourceVersion=${page1.metadata.resourceVersion}&resourceVersionMatch=Exact`);
    expect(exact.body.items).to.have.length(4);
  });

  it('watch: replays from a resourceVersion, sends initial state without one, bookmarks, and times out', async () => {
    const a = (await call('POST', PODS, pod('a', 'default'))).body;
    await call('POST', PODS, pod('b', 'default'));
    const fromA = await watch(`${PODS}?watch=1&resourceVersion=${a.metadata.resourceVersion}&allowWatchBookmarks=true`);
    const fresh = await watch(`/api/v1/pods?watch=true&timeoutSeconds=1`);
    await call('DELETE', `${PODS}/a`);
    await pollUntil('events', () => fromA.summary().includes('DELETED a') && fresh.summary().includes('DELETED a'), { timeoutMs: 5000, intervalMs: 20 });
    expect(fromA.summary().filter((s) => s !== 'BOOKMARK')).to.deep.equal(['ADDED b', 'DELETED a']);
    expect(fresh.summary()).to.deep.equal(['ADDED a', 'ADDED b', 'DELETED a']);
    const del = fromA.events.find((e) => e.type === 'DELETED')!;
    expect(del.object.kind).to.equal('Pod');
    expect(Number(del.object.metadata.resourceVersion), 'a DELETED event carries the deletion resourceVersion').to.equal(Number(api.server.resourceVersion));
    await pollUntil('a bookmark', () => fromA.events.some((e) => e.type === 'BOOKMARK'), { timeoutMs: 5000, intervalMs: 20 });
    const bm = fromA.events.find((e) => e.type === 'BOOKMARK')!;
    expect(bm.object).to.deep.include({ kind: 'Pod', apiVersion: 'v1' });
    expect(bm.object.metadata.resourceVersion).to.equal(api.server.resourceVersion);
    await pollUntil('timeoutSeconds ends the watch', () => fresh.ended, { timeoutMs: 5000, intervalMs: 20 });
  });

  it('watch: a resourceVersion older than the event window gets a 410 ERROR event', async () => {
    await api.server.close();
    api = await startServer({ eventWindow: 2 });
    const first = (await call('POST', PODS, pod('a', 'default'))).body.metadata.resourceVersion;
    for (const n of ['b', 'c', 'd']) await call('POST', PODS, pod(n, 'default'));
    const w = await watch(`${PODS}?watch=1&resourceVersion=${first}`);
    await pollUntil('watch ends', () => w.ended, { timeoutMs: 5000, intervalMs: 20 });
    expect(w.events).to.have.length(1);
    expect(w.events[0]!.type).to.equal('ERROR');
    expect(w.events[0]!.object).to.include({ kind: 'Status', code: 410, reason: 'Expired' });
    const list = await call('GET', `/api/v1/pods?resourceVersion=${first}&resourceVersionMatch=Exact`);
    expect(list.status).to.equal(410);
  });

  it('watch with selectors: objects entering or leaving the selection are ADDED / DELETED', async () => {
    const byLabel = await watch(`/api/v1/pods?watch=1&labelSelector=${encodeURIComponent('app in (web),!canary')}`);
    const byNode = await watch(`/api/v1/watch/pods?fieldSelector=spec.nodeName%3Dn1`);
    const one = await watch(`/api/v1/watch/namespaces/default/pods/b`);
    await call('POST', PODS, pod('a', 'default', { labels: { app: 'web' }, nodeName: 'n1' }));
    await call('POST', PODS, pod('b', 'default', { labels: { app: 'db' }, nodeName: 'n2' }));
    await call('PATCH', `${PODS}/b`, { metadata: { labels: { app: 'web' } } }, 'application/merge-patch+json');
    await call('PATCH', `${PODS}/a`, { metadata: { labels: { canary: 'yes' } } }, 'application/merge-patch+json');
    await call('DELETE', `${PODS}/a`);
    await call('DELETE', `${PODS}/b`);
    await pollUntil('label watch', () => byLabel.summary().length === 4, { timeoutMs: 5000, intervalMs: 20 });
    expect(byLabel.summary()).to.deep.equal(['ADDED a', 'ADDED b', 'DELETED a', 'DELETED b']);
    await pollUntil('node watch', () => byNode.summary().length === 3, { timeoutMs: 5000, intervalMs: 20 });
    expect(byNode.summary()).to.deep.equal(['ADDED a', 'MODIFIED a', 'DELETED a']);
    await pollUntil('single-object watch', () => one.summary().length === 3, { timeoutMs: 5000, intervalMs: 20 });
    expect(one.summary()).to.deep.equal(['ADDED b', 'MODIFIED b', 'DELETED b']);
  });

  it('serves kubectl-style Tables when asked', async () => {
    await call('POST', PODS, pod('a', 'default', { nodeName: 'n1' }));
    const res = await fetch(`${api.url}/api/v1/pods`, {
      headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' },
    });
    const table = (await res.json()) as { kind: string; columnDefinitions: { name: string }[]; rows: { cells: unknown[]; object: { kind: string } }[] };
    expect(table.kind).to.equal('Table');
    expect(table.columnDefinitions.map((c) => c.name).slice(0, 4)).to.deep.equal(['Name', 'Ready', 'Status', 'Restarts']);
    expect(table.rows[0]!.cells.slice(0, 3)).to.deep.equal(['a', '0/1', 'Pending']);
    expect(table.rows[0]!.object.kind).to.equal('PartialObjectMetadata');
  });

  it('serves TCP and a unix socket at once, and the in-process API sees the same objects', async () => {
    await api.server.close();
    const dir = tempDir();
    const socketPath = path.join(dir, 'api.sock');
    const server = new LabApiServer({});
    try {
      const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: 0 }, socketPath });
      api = { server, url: `http://127.0.0.1:${tcpPort}`, port: tcpPort! };
      const w = await WatchStream.open({ socketPath }, `${PODS}?watch=1&resourceVersion=${server.resourceVersion}`);
      watches.push(w);
      server.create(pod('seeded', 'default'));
      await call('POST', PODS, pod('posted', 'default'));
      await pollUntil('events over the socket', () => w.summary().length === 2, { timeoutMs: 5000, intervalMs: 20 });
      expect(w.summary()).to.deep.equal(['ADDED seeded', 'ADDED posted']);
      expect(server.list('pods').map((p) => p.metadata?.name)).to.deep.equal(['posted', 'seeded']);
      expect(server.get('Pod', 'default', 'posted').kind).to.equal('Pod');
    } finally {
      await server.close();
    }
    expect(fs.existsSync(socketPath), 'close() removes the socket').to.equal(false);
    fs.rmSync(dir, { recursive: true, force: true });
    api = await startServer();
  });
});
