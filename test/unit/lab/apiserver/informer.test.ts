// The real @kubernetes/client-node informer against the lab API server.
import * as k8s from '@kubernetes/client-node';
import { expect } from 'chai';
import { renderKubeconfig } from '../../../../src/lab/apiserver/index.js';
import { pod, startServer, type Started } from './helpers.js';
import { pollUntil } from '../../../poll.js';

function clientFor(url: string): { kc: k8s.KubeConfig; core: k8s.CoreV1Api } {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(renderKubeconfig(url));
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api) };
}

function names(objs: readonly k8s.KubernetesObject[]): string[] {
  return objs.map((o) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`).sort();
}

describe('lab API server with the client-node informer', function () {
  let api: Started;
  let informer: (k8s.Informer<k8s.V1Pod> & k8s.ObjectCache<k8s.V1Pod>) | undefined;

  afterEach(async () => {
    await informer?.stop();
    informer = undefined;
    await api?.server.close();
  });

  it('delivers adds, updates and deletes', async () => {
    api = await startServer();
    const { kc, core } = clientFor(api.url);
    api.server.create(pod('before', 'default'));
    const seen: string[] = [];
    informer = k8s.makeInformer(kc, '/api/v1/pods', () => core.listPodForAllNamespaces());
    informer.on('add', (p) => seen.push(`add ${p.metadata!.name}`));
    informer.on('update', (p) => seen.push(`update ${p.metadata!.name} ${JSON.stringify(p.metadata!.labels ?? {})}`));
    informer.on('delete', (p) => seen.push(`delete ${p.metadata!.name}`));
    await informer.start();
    await pollUntil('initial list', () => seen.includes('add before'), { timeoutMs: 5000, intervalMs: 20 });

    await core.createNamespacedPod({ namespace: 'default', body: pod('p1', 'default') });
    await pollUntil('add p1', () => seen.includes('add p1'), { timeoutMs: 5000, intervalMs: 20 });
    await core.patchNamespacedPod(
      { name: 'p1', namespace: 'default', body: { metadata: { labels: { team: 'blue' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await pollUntil('update p1', () => seen.includes('update p1 {"team":"blue"}'), { timeoutMs: 5000, intervalMs: 20 });
    await core.deleteNamespacedPod({ name: 'before', namespace: 'default' });
    await pollUntil('delete before', () => seen.includes('delete before'), { timeoutMs: 5000, intervalMs: 20 });
    expect(names(informer.list())).to.deep.equal(['default/p1']);
    expect(informer.get('p1', 'default')?.metadata?.labels).to.deep.equal({ team: 'blue' });
  });

  it('relists after a 410 when the watch resumes from a resourceVersion older than the event window', async () => {
    api = await startServer({ eventWindow: 3 });
    const { kc, core } = clientFor(api.url);
    for (const n of ['p1', 'p2', 'p3']) api.server.create(pod(n, 'default'));
    const deleted: string[] = [];
    const errors: unknown[] = [];
    let lists = 0;
    informer = k8s.makeInformer(kc, '/api/v1/pods', () => {
      lists++;
      return core.listPodForAllNamespaces();
    });
    informer.on('delete', (p) => deleted.push(p.metadata!.name!));
    informer.on('error', (err) => errors.push(err));
    await informer.start();
    await pollUntil('initial list', () => informer!.list().length === 3, { timeoutMs: 5000, intervalMs: 20 });
    // Wait until the informer's watch is open (a change reaches it), then cut it and change more than the window.
    api.server.create(pod('p4', 'default'));
    await pollUntil('p4', () => informer!.get('p4', 'default') !== undefined, { timeoutMs: 5000, intervalMs: 20 });
    const rvBefore = (informer as unknown as k8s.ListWatch<k8s.V1Pod>).latestResourceVersion();
    api.server.endWatches();
    api.server.delete('pods', 'default', 'p1');
    for (const n of ['p5', 'p6', 'p7', 'p8', 'p9']) api.server.create(pod(n, 'default'));
    const p2 = api.server.get('Pod', 'default', 'p2');
    api.server.update({ ...p2, metadata: { ...p2.metadata, labels: { changed: 'yes' } } });

    await pollUntil('cache equals the server after the relist', () => {
      const want = names(api.server.list('Pod') as k8s.KubernetesObject[]);
      return JSON.stringify(names(informer!.list())) === JSON.stringify(want);
    }, { timeoutMs: 5000, intervalMs: 20 });
    expect(Number((informer as unknown as k8s.ListWatch<k8s.V1Pod>).latestResourceVersion())).to.be.greaterThan(Number(rvBefore));
    expect(lists, 'one initial list and one relist after the 410').to.equal(2);
    expect(deleted).to.deep.equal(['p1']);
    expect(informer.get('p2', 'default')?.metadata?.labels).to.deep.equal({ changed: 'yes' });
    expect(errors).to.deep.equal([]);
    // And the relisted informer keeps watching.
    api.server.create(pod('p10', 'default'));
    await pollUntil('p10 after relist', () => informer!.get('p10', 'default') !== undefined, { timeoutMs: 5000, intervalMs: 20 });
  });

  it('ListWatch with a field selector sees only the pods bound to its node', async () => {
    api = await startServer();
    const { kc, core } = clientFor(api.url);
    api.server.create(pod('on-n1', 'default', { nodeName: 'n1' }));
    api.server.create(pod('on-n2', 'default', { nodeName: 'n2' }));
    const seen: string[] = [];
    const lw = new k8s.ListWatch<k8s.V1Pod>(
      '/api/v1/pods',
      new k8s.Watch(kc),
      () => core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=n1' }),
      false,
      undefined,
      'spec.nodeName=n1',
    );
    informer = lw;
    lw.on('add', (p) => seen.push(`add ${p.metadata!.name}`));
    lw.on('delete', (p) => seen.push(`delete ${p.metadata!.name}`));
    await lw.start();
    await pollUntil('initial', () => seen.includes('add on-n1'), { timeoutMs: 5000, intervalMs: 20 });
    api.server.create(pod('late-n2', 'default', { nodeName: 'n2' }));
    api.server.create(pod('late-n1', 'default', { nodeName: 'n1' }));
    await pollUntil('late-n1', () => seen.includes('add late-n1'), { timeoutMs: 5000, intervalMs: 20 });
    api.server.delete('Pod', 'default', 'on-n1');
    await pollUntil('delete on-n1', () => seen.includes('delete on-n1'), { timeoutMs: 5000, intervalMs: 20 });
    expect(seen).to.deep.equal(['add on-n1', 'add late-n1', 'delete on-n1']);
    expect(names(lw.list())).to.deep.equal(['default/late-n1']);
  });

  it('an informer with a label selector sees objects enter and leave the selection', async () => {
    api = await startServer();
    const { kc, core } = clientFor(api.url);
    api.server.create(pod('a', 'default', { labels: { app: 'web' } }));
    api.server.create(pod('b', 'default', { labels: { app: 'db' } }));
    const seen: string[] = [];
    informer = k8s.makeInformer(
      kc,
      '/api/v1/pods',
      () => core.listPodForAllNamespaces({ labelSelector: 'app in (web)' }),
      'app in (web)',
    );
    informer.on('add', (p) => seen.push(`add ${p.metadata!.name}`));
    informer.on('delete', (p) => seen.push(`delete ${p.metadata!.name}`));
    await informer.start();
    await pollUntil('initial', () => seen.includes('add a'), { timeoutMs: 5000, intervalMs: 20 });
    const b = api.server.get('Pod', 'default', 'b');
    api.server.update({ ...b, metadata: { ...b.metadata, labels: { app: 'web' } } });
    await pollUntil('b enters', () => seen.includes('add b'), { timeoutMs: 5000, intervalMs: 20 });
    const a = api.server.get('Pod', 'default', 'a');
    api.server.update({ ...a, metadata: { ...a.metadata, labels: { app: 'db' } } });
    await pollUntil('a leaves', () => seen.includes('delete a'), { timeoutMs: 5000, intervalMs: 20 });
    expect(names(informer.list())).to.deep.equal(['default/b']);
  });
});
