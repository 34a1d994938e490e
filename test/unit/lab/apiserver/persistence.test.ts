// A restarted lab API server keeps the cluster; clients resuming from before the restart relist when needed.
import * as k8s from '@kubernetes/client-node';
import { expect } from 'chai';
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LabApiServer, renderKubeconfig, StoreFileError } from '../../../../src/lab/apiserver/index.js';
import { pod, request, startServer, tempDir, WatchStream, type Started } from './helpers.js';
import { pollUntil } from '../../../poll.js';

const PODS = '/api/v1/namespaces/default/pods';

describe('lab API server persistence', () => {
  let dir: string;
  let storePath: string;
  const servers: LabApiServer[] = [];
  const watches: WatchStream[] = [];
  beforeEach(() => {
    dir = tempDir();
    storePath = path.join(dir, 'api-store.json');
  });
  afterEach(async () => {
    for (const w of watches.splice(0)) w.close();
    for (const s of servers.splice(0)) await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const start = async (opts: { eventWindow?: number } = {}, port = 0): Promise<Started> => {
    const s = await startServer({ storePath, persistDebounceMs: 10, ...opts }, port);
    servers.push(s.server);
    return s;
  };

  it('keeps objects and the resourceVersion counter across a restart; old watches get 410', async () => {
    const a = await start();
    await request(a.url, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
    const early = (await request(a.url, 'POST', PODS, pod('p1', 'default'))).body.metadata.resourceVersion as string;
    await request(a.url, 'POST', PODS, pod('p2', 'default'));
    await request(a.url, 'PATCH', `${PODS}/p2`, { metadata: { labels: { v: '2' } } }, 'application/merge-patch+json');
    await request(a.url, 'DELETE', `${PODS}/p1`);
    const rvAtStop = a.server.resourceVersion;
    const uid = a.server.get('Pod', 'default', 'p2').metadata?.uid;
    await a.server.close();
    servers.splice(0);
    expect(fs.existsSync(storePath)).to.equal(true);

    const b = await start();
    expect(b.server.resourceVersion).to.equal(rvAtStop);
    expect(b.server.list('Pod').map((p) => p.metadata?.name)).to.deep.equal(['p2']);
    expect(b.server.get('Pod', 'default', 'p2').metadata).to.include({ uid, resourceVersion: String(Number(rvAtStop) - 1) });
    expect(b.server.get('Pod', 'default', 'p2').metadata?.labels).to.deep.equal({ v: '2' });
    expect(b.server.list('Namespace').map((n) => n.metadata?.name)).to.include('x');

    const old = await WatchStream.open({ url: b.url }, `${PODS}?watch=1&resourceVersion=${early}`);
    watches.push(old);
    await pollUntil('the old watch ends', () => old.ended, { timeoutMs: 5000, intervalMs: 20 });
    expect(old.events.map((e) => [e.type, e.object.code])).to.deep.equal([['ERROR', 410]]);

    const current = await WatchStream.open({ url: b.url }, `${PODS}?watch=1&resourceVersion=${rvAtStop}`);
    watches.push(current);
    const p3 = (await request(b.url, 'POST', PODS, pod('p3', 'default'))).body;
    expect(Number(p3.metadata.resourceVersion)).to.equal(Number(rvAtStop) + 1);
    await pollUntil('the resumed watch sees p3', () => current.summary().includes('ADDED p3'), { timeoutMs: 5000, intervalMs: 20 });
  });

  it('a client-node informer relists after the API server restarts with changes beyond its event window', async () => {
    const a = await start();
    for (const n of ['p1', 'p2', 'p3']) a.server.create(pod(n, 'default'));
    const kc = new k8s.KubeConfig();
    kc.loadFromString(renderKubeconfig(a.url));
    const core = kc.makeApiClient(k8s.CoreV1Api);
    let lists = 0;
    const informer = k8s.makeInformer(kc, '/api/v1/pods', () => {
      lists++;
      return core.listPodForAllNamespaces();
    });
    let stopped = false;
    // The documented client-node pattern: an informer stops on errors (API server down) and is restarted.
    informer.on('error', () => {
      if (!stopped) setTimeout(() => void informer.start(), 50);
    });
    try {
      await informer.start();
      await pollUntil('initial list', () => informer.list().length === 3, { timeoutMs: 5000, intervalMs: 20 });
      await a.server.close();
      servers.splice(0);

      // The restarted server changes more than its (small) window before it listens again.
      const b = new LabApiServer({ storePath, eventWindow: 2 });
      servers.push(b);
      b.delete('Pod', 'default', 'p1');
      for (const n of ['p4', 'p5', 'p6']) b.create(pod(n, 'default'));
      await b.start({ tcp: { host: '127.0.0.1', port: a.port } });
      const want = b.list('Pod').map((p) => p.metadata?.name).join(',');
      await pollUntil('cache equals the restarted server', () => informer.list().map((p) => p.metadata?.name).sort().join(',') === want, { timeoutMs: 5000, intervalMs: 20 });
      expect(lists, 'relisted after the 410').to.equal(2);
      b.create(pod('p7', 'default'));
      await pollUntil('watching again', () => informer.get('p7', 'default') !== undefined, { timeoutMs: 5000, intervalMs: 20 });
    } finally {
      stopped = true;
      await informer.stop();
    }
  });

  it('refuses to start on an unreadable store instead of silently starting empty', () => {
    fs.writeFileSync(storePath, '{"format": "podroute-lab-apiserver/1", "resourceVersion": ');
    expect(() => new LabApiServer({ storePath })).to.throw(StoreFileError).with.property('code', 'STORE_FILE_INVALID');
  });
});

describe('runApiServerProcess', () => {
  it('serves on TCP and the unix socket, writes the kubeconfig, prints ready, and stops cleanly on SIGTERM', async () => {
    const dir = tempDir();
    const paths = {
      dir,
      apiSocket: path.join(dir, 'api.sock'),
      apiStore: path.join(dir, 'api-store.json'),
      kubeconfig: path.join(dir, 'kubeconfig'),
    };
    const moduleUrl = new URL('../../../../src/lab/apiserver/process.js', import.meta.url).href;
    const script = `import { runApiServerProcess } from ${JSON.stringify(moduleUrl)};
await runApiServerProcess({ lab: 'h2t', tcpPort: 0, paths: ${JSON.stringify(paths)} });`;
    const child = execa('node', ['--input-type=module', '-e', script], { reject: false, cwd: fileURLToPath(new URL('.', import.meta.url)) });
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await pollUntil('ready line', () => /^ready \d+\n/.test(out), { timeoutMs: 10_000, intervalMs: 20 });
      const port = Number(/^ready (\d+)/.exec(out)![1]);
      expect(fs.readFileSync(paths.kubeconfig, 'utf8')).to.contain(`server: http://127.0.0.1:${port}`);
      const created = await request(`http://127.0.0.1:${port}`, 'POST', PODS, pod('a', 'default'));
      expect(created.status).to.equal(201);
      const viaSocket = await WatchStream.open({ socketPath: paths.apiSocket }, '/api/v1/pods?watch=1');
      await pollUntil('the pod over the socket', () => viaSocket.summary().includes('ADDED a'), { timeoutMs: 5000, intervalMs: 20 });
      viaSocket.close();
      child.kill('SIGTERM');
      const result = await child;
      expect(result.exitCode, result.stderr).to.equal(0);
      expect(fs.existsSync(paths.apiSocket), 'socket removed').to.equal(false);
      expect(fs.readFileSync(paths.apiStore, 'utf8')).to.contain('"name":"a"');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
