// The agent's Kubernetes API client: kubeconfig and in-cluster loading, TLS with client certificates (a real
// node:https server with certificates openssl makes here), and lists, watches, patches and creates against the
// lab API server.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { Node } from '../../../src/kube/wire.js';
import { expect } from 'chai';
import YAML from 'yaml';
import { findProjectRoot } from '../../../src/bgp/gobgp-proto.js';
import { LabApiServer, renderKubeconfig } from '../../../src/lab/apiserver/index.js';
import {
  KubeApi,
  KubeApiError,
  KubeConfigError,
  expandPath,
  loadInClusterConfig,
  loadKubeConfig,
  loadKubeConfigFile,
  parseKubeConfig,
  type KubeConnectionConfig,
  type WatchEvent,
} from '../../../src/kube/kube-api.js';

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

const kubeconfig = (cluster: Record<string, unknown>, user: Record<string, unknown> = {}): unknown => ({
  apiVersion: 'v1',
  kind: 'Config',
  clusters: [{ name: 'c', cluster }],
  users: [{ name: 'u', user }],
  contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }, { name: 'other', context: { cluster: 'missing', user: 'u' } }],
  'current-context': 'ctx',
});

describe('kube-api: kubeconfig', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h26-kc-'));
    fs.writeFileSync(path.join(dir, 'ca.pem'), 'CA PEM');
    fs.writeFileSync(path.join(dir, 'token'), 'tok-from-file\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads the current context: server, CA and client certificate as data or files (relative to the kubeconfig), token', () => {
    const file = path.join(dir, 'config');
    fs.writeFileSync(
      file,
      YAML.stringify(
        kubeconfig(
          { server: 'https://10.0.0.1:6443/', 'certificate-authority': 'ca.pem', 'tls-server-name': 'kubernetes.default.svc' },
          { 'client-certificate-data': Buffer.from('CERT').toString('base64'), 'client-key-data': Buffer.from('KEY').toString('base64'), token: 'abc' },
        ),
      ),
    );
    const config = loadKubeConfig(file);
    expect(config).to.deep.include({ server: 'https://10.0.0.1:6443', insecureSkipTlsVerify: false, tlsServerName: 'kubernetes.default.svc', token: 'abc', source: file });
    expect(config.ca?.toString()).to.equal('CA PEM');
    expect(config.clientCert?.toString()).to.equal('CERT');
    expect(config.clientKey?.toString()).to.equal('KEY');
  });

  it('reads tokenFile (resolved against the kubeconfig directory) and insecure-skip-tls-verify; the lab kubeconfig loads', () => {
    const config = parseKubeConfig(kubeconfig({ server: 'https://h:1', 'insecure-skip-tls-verify': true }, { tokenFile: 'token' }), { source: 'x', baseDir: dir });
    expect(config).to.deep.include({ insecureSkipTlsVerify: true, tokenFile: path.join(dir, 'token') });
    expect(config.token).to.equal(undefined);
    const lab = parseKubeConfig(YAML.parse(renderKubeconfig('http://127.0.0.1:8080')), { source: 'lab', baseDir: dir });
    expect(lab).to.deep.include({ server: 'http://127.0.0.1:8080', insecureSkipTlsVerify: true });
  });

  it('refuses what it cannot honour with a stable code naming the field', () => {
    const where = { source: 'kc', baseDir: dir };
    const cases: [unknown, string, string][] = [
      [kubeconfig({ server: 'https://h:1' }, { exec: { command: 'aws' } }), 'KUBECONFIG_UNSUPPORTED', 'users[u].user.exec'],
      [kubeconfig({ server: 'https://h:1' }, { 'auth-provider': { name: 'gcp' } }), 'KUBECONFIG_UNSUPPORTED', 'users[u].user.auth-provider'],
      [kubeconfig({ server: 'https://h:1' }, { username: 'a', password: 'b' }), 'KUBECONFIG_UNSUPPORTED', 'users[u].user.username'],
      [kubeconfig({ server: 'https://h:1', 'proxy-url': 'http://p' }), 'KUBECONFIG_UNSUPPORTED', 'clusters[c].cluster.proxy-url'],
      [kubeconfig({ server: 'https://h:1' }, { 'client-certificate-data': 'Q0VSVA==' }), 'KUBECONFIG_INVALID', 'users[u].user.client-key'],
      [kubeconfig({}), 'KUBECONFIG_INVALID', 'clusters[c].cluster.server'],
      [kubeconfig({ server: 'ftp://h' }), 'KUBECONFIG_INVALID', 'clusters[c].cluster.server'],
      [kubeconfig({ server: 'https://h:1', 'insecure-skip-tls-verify': 'yes' }), 'KUBECONFIG_INVALID', 'clusters[c].cluster.insecure-skip-tls-verify'],
      [kubeconfig({ server: 'https://h:1', 'certificate-authority': 'nope.pem' }), 'KUBECONFIG_FILE_UNREADABLE', 'clusters[c].cluster.certificate-authority'],
      [{ ...(kubeconfig({ server: 'https://h:1' }) as object), 'current-context': undefined }, 'KUBECONFIG_INVALID', 'current-context'],
      [{ ...(kubeconfig({ server: 'https://h:1' }) as object), 'current-context': 'other' }, 'KUBECONFIG_INVALID', 'clusters[missing]'],
      [{ ...(kubeconfig({ server: 'https://h:1' }) as object), 'current-context': 'nowhere' }, 'KUBECONFIG_INVALID', 'contexts[nowhere]'],
    ];
    for (const [doc, code, field] of cases) {
      const err = thrown(() => parseKubeConfig(doc, where));
      expect(err, field).to.be.instanceOf(KubeConfigError);
      expect(err, field).to.include({ code, field });
      expect((err as Error).message, field).to.include(field);
    }
    expect(thrown(() => loadKubeConfigFile(path.join(dir, 'absent')))).to.include({ code: 'KUBECONFIG_UNREADABLE' });
  });

  it('in-cluster: the service host and port, the mounted CA and token file; not in a cluster is a clear error', () => {
    const sa = path.join(dir, 'sa');
    fs.mkdirSync(sa, { recursive: true });
    fs.writeFileSync(path.join(sa, 'token'), 't1');
    fs.writeFileSync(path.join(sa, 'ca.crt'), 'SA CA');
    const config = loadInClusterConfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: sa });
    expect(config).to.deep.include({ server: 'https://[fd00::1]:443', tokenFile: path.join(sa, 'token'), source: 'in-cluster', insecureSkipTlsVerify: false });
    expect(config.ca?.toString()).to.equal('SA CA');
    expect(thrown(() => loadInClusterConfig({ env: {}, serviceAccountDir: sa }))).to.include({ code: 'IN_CLUSTER_UNAVAILABLE', field: 'KUBERNETES_SERVICE_HOST' });
    const noToken = thrown(() => loadInClusterConfig({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: path.join(dir, 'none') }));
    expect(noToken).to.include({ code: 'IN_CLUSTER_UNAVAILABLE', field: path.join(dir, 'none', 'token') });
  });

  it('path templates take their parameters, escaped; a missing one is an error', () => {
    expect(expandPath('/api/v1/namespaces/{namespace}/events', { namespace: 'default' })).to.equal('/api/v1/namespaces/default/events');
    expect(expandPath('/api/v1/nodes/{name}/status', { name: 'a/b' })).to.equal('/api/v1/nodes/a%2Fb/status');
    expect(thrown(() => expandPath('/api/v1/nodes/{name}', {}))).to.include({ code: 'BAD_REQUEST' });
  });
});

describe('kube-api: TLS and authentication against a node:https server', () => {
  let dir: string;
  let server: https.Server;
  let port: number;
  const seen: { authorization?: string; clientCN?: string }[] = [];
  const pem = (name: string): Buffer => fs.readFileSync(path.join(dir, name));

  before(async function () {
    this.timeout(60_000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h26-tls-'));
    const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=h26-test-ca');
    fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n');
    for (const [name, subject, ext] of [['server', '/CN=kube-apiserver', 'server.ext'], ['client', '/O=system:nodes/CN=system:node:n1', undefined]] as const) {
      openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
      openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', ...(ext ? ['-extfile', ext] : []));
    }
    // An API server stand-in: who the client is (certificate CN, bearer token), or 401 without either.
    server = https.createServer({ key: pem('server.key'), cert: pem('server.crt'), ca: pem('ca.crt'), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const socket = req.socket as TLSSocket;
      const clientCN = socket.authorized ? (socket.getPeerCertificate().subject?.CN as string | undefined) : undefined;
      const authorization = req.headers.authorization;
      seen.push({ ...(authorization === undefined ? {} : { authorization }), ...(clientCN === undefined ? {} : { clientCN }) });
      const ok = clientCN !== undefined || authorization !== undefined;
      const body = ok
        ? { kind: 'Node', apiVersion: 'v1', metadata: { name: clientCN ?? 'token-user' } }
        : { kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401, message: 'Unauthorized' };
      res.writeHead(ok ? 200 : 401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const cluster = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ server: `https://127.0.0.1:${port}`, 'certificate-authority': 'ca.crt', ...extra });
  const read = async (config: KubeConnectionConfig): Promise<Node> => {
    const api = new KubeApi({ config });
    try {
      return await api.read<Node>('/api/v1/nodes/{name}', { params: { name: 'n1' } });
    } finally {
      api.close();
    }
  };

  it('authenticates with a client certificate (files) and verifies the server against the CA', async () => {
    const config = parseKubeConfig(kubeconfig(cluster(), { 'client-certificate': 'client.crt', 'client-key': 'client.key' }), { source: 't', baseDir: dir });
    expect((await read(config)).metadata?.name).to.equal('system:node:n1');
  });

  it('without the CA the self-signed server is refused; insecure-skip-tls-verify accepts it', async () => {
    const user = { 'client-certificate-data': pem('client.crt').toString('base64'), 'client-key-data': pem('client.key').toString('base64') };
    const untrusted = parseKubeConfig(kubeconfig({ server: `https://127.0.0.1:${port}` }, user), { source: 't', baseDir: dir });
    const err = await rejection(read(untrusted));
    expect(err).to.be.instanceOf(KubeApiError);
    expect(err).to.include({ code: 'CONNECTION' });
    const insecure = parseKubeConfig(kubeconfig({ server: `https://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true }, user), { source: 't', baseDir: dir });
    expect((await read(insecure)).metadata?.name).to.equal('system:node:n1');
  });

  it('checks the certificate against tls-server-name when given', async () => {
    const wrong = parseKubeConfig(kubeconfig(cluster({ 'tls-server-name': 'wrong.example' }), { token: 't' }), { source: 't', baseDir: dir });
    expect(await rejection(read(wrong))).to.include({ code: 'CONNECTION' });
    const right = parseKubeConfig(kubeconfig(cluster({ 'tls-server-name': 'kubernetes.default.svc' }), { token: 't' }), { source: 't', baseDir: dir });
    expect((await read(right)).metadata?.name).to.equal('token-user');
  });

  it('no credentials: the 401 Status becomes API_STATUS with the HTTP status and reason', async () => {
    const err = await rejection(read(parseKubeConfig(kubeconfig(cluster()), { source: 't', baseDir: dir })));
    expect(err).to.be.instanceOf(KubeApiError);
    expect(err).to.include({ code: 'API_STATUS', status: 401 });
    expect((err as KubeApiError).details.reason).to.equal('Unauthorized');
  });

  it('in-cluster: sends the service-account token and reads it again once it rotates', async () => {
    const sa = path.join(dir, 'sa');
    fs.mkdirSync(sa, { recursive: true });
    fs.copyFileSync(path.join(dir, 'ca.crt'), path.join(sa, 'ca.crt'));
    fs.writeFileSync(path.join(sa, 'token'), 'first-token\n');
    const config = loadInClusterConfig({ env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) }, serviceAccountDir: sa });
    const api = new KubeApi({ config, tokenRefreshMs: 0 });
    try {
      seen.length = 0;
      await api.read('/api/v1/nodes/{name}', { params: { name: 'n1' } });
      fs.writeFileSync(path.join(sa, 'token'), 'second-token\n');
      await api.read('/api/v1/nodes/{name}', { params: { name: 'n1' } });
      expect(seen.map((s) => s.authorization)).to.deep.equal(['Bearer first-token', 'Bearer second-token']);
    } finally {
      api.close();
    }
  });
});

describe('kube-api: requests against the lab API server', () => {
  let server: LabApiServer;
  let api: KubeApi;
  let config: KubeConnectionConfig;

  before(async () => {
    server = new LabApiServer({ bookmarkIntervalMs: 50, eventWindow: 2 });
    const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: 0 } });
    config = parseKubeConfig(YAML.parse(renderKubeconfig(`http://127.0.0.1:${tcpPort}`)), { source: 'lab', baseDir: '/' });
    api = new KubeApi({ config });
    for (let i = 0; i < 5; i++) {
      server.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: `n${i}` }, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }] } });
    }
  });

  after(async () => {
    api.close();
    await server.close();
  });

  it('lists in pages with limit and continue, all pages at one resourceVersion', async () => {
    const names: string[] = [];
    const versions = new Set<string | undefined>();
    let next: string | undefined;
    let pages = 0;
    do {
      const page = await api.list<Node>('/api/v1/nodes', { limit: 2, ...(next === undefined ? {} : { continue: next }) });
      names.push(...page.items.map((n) => n.metadata?.name ?? ''));
      versions.add(page.metadata.resourceVersion);
      next = page.metadata.continue || undefined;
      pages++;
    } while (next !== undefined);
    expect(pages).to.equal(3);
    expect(names.sort()).to.deep.equal(['n0', 'n1', 'n2', 'n3', 'n4']);
    expect(versions.size).to.equal(1);
  });

  it('watches from a resourceVersion: changes, then bookmarks; the abort signal ends it as ABORTED', async () => {
    const { metadata } = await api.list<Node>('/api/v1/nodes', { limit: 1 });
    const events: WatchEvent<Node>[] = [];
    const controller = new AbortController();
    const watching = api.watch<Node>('/api/v1/nodes', { resourceVersion: metadata.resourceVersion!, allowWatchBookmarks: true, signal: controller.signal }, (e) => {
      events.push(e);
      if (e.type === 'BOOKMARK' && events.some((x) => x.type === 'ADDED')) controller.abort();
    });
    server.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n5' } });
    const err = await rejection(watching);
    expect(err).to.include({ code: 'ABORTED' });
    expect(events[0]).to.deep.include({ type: 'ADDED' });
    expect(events[0]?.object.metadata?.name).to.equal('n5');
    expect(events.at(-1)?.type).to.equal('BOOKMARK');
    expect(Number(events.at(-1)?.object.metadata?.resourceVersion)).to.be.at.least(Number(events[0]?.object.metadata?.resourceVersion));
  });

  it('a watch the server ends (timeoutSeconds) resolves; one from a too old resourceVersion is RESOURCE_EXPIRED (410)', async () => {
    const { metadata } = await api.list<Node>('/api/v1/nodes', { limit: 1 });
    await api.watch('/api/v1/nodes', { resourceVersion: metadata.resourceVersion!, timeoutSeconds: 0 }, () => undefined);
    for (let i = 0; i < 4; i++) server.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: `old${i}` } });
    const err = await rejection(api.watch('/api/v1/nodes', { resourceVersion: metadata.resourceVersion! }, () => undefined));
    expect(err).to.be.instanceOf(KubeApiError);
    expect(err).to.include({ code: 'RESOURCE_EXPIRED', status: 410 });
  });

  it('strategic-merge patches a node status: a condition merges by type; merge patch too; a missing node is 404', async () => {
    await api.patch('/api/v1/nodes/{name}/status', { status: { conditions: [{ type: 'NetworkUnavailable', status: 'False' }] } }, { params: { name: 'n1' }, patchType: 'strategic-merge' });
    const merged = await api.patch<Node>('/api/v1/nodes/{name}', { metadata: { labels: { zone: 'a' } } }, { params: { name: 'n1' }, patchType: 'merge' });
    expect(merged.metadata?.labels).to.deep.equal({ zone: 'a' });
    expect(merged.status?.conditions?.map((c) => c.type).sort()).to.deep.equal(['NetworkUnavailable', 'Ready']);
    const err = await rejection(api.patch('/api/v1/nodes/{name}/status', {}, { params: { name: 'absent' }, patchType: 'merge' }));
    expect(err).to.include({ code: 'API_STATUS', status: 404 });
    expect((err as KubeApiError).details.reason).to.equal('NotFound');
  });

  it('creates an object (POST) and reads it back', async () => {
    const created = await api.create<{ metadata: { name: string } }>('/api/v1/namespaces/{namespace}/events', {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: 'n1.', namespace: 'default' },
      involvedObject: { kind: 'Node', name: 'n1' },
      reason: 'Test',
      message: 'hello',
    }, { params: { namespace: 'default' } });
    expect(created.metadata.name).to.match(/^n1\./);
    const read = await api.read<{ message: string }>('/api/v1/namespaces/{namespace}/events/{name}', { params: { namespace: 'default', name: created.metadata.name } });
    expect(read.message).to.equal('hello');
  });

  it('a server that never answers is a TIMEOUT; a refused connection is CONNECTION', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as AddressInfo).port;
    const slow = new KubeApi({ config: { ...config, server: `http://127.0.0.1:${silentPort}` }, requestTimeoutMs: 300 });
    try {
      expect(await rejection(slow.list('/api/v1/nodes'))).to.include({ code: 'TIMEOUT' });
    } finally {
      slow.close();
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
    const refused = new KubeApi({ config: { ...config, server: `http://127.0.0.1:${silentPort}` } });
    expect(await rejection(refused.list('/api/v1/nodes'))).to.include({ code: 'CONNECTION' });
    refused.close();
  });
});

describe('kube-api: the agent modules do not load @kubernetes/client-node at runtime', () => {
  const root = findProjectRoot(import.meta.url);
  /** Runs `imports` in a fresh node with a resolve hook that fails any import resolving into client-node. */
  const importsInChild = (imports: string[]): { status: number | null; stderr: string } => {
    const hook = `export async function resolve(specifier, context, next) {
      const result = await next(specifier, context);
      if (result.url.includes('/node_modules/@kubernetes/client-node/')) throw new Error('CLIENT_NODE_LOADED ' + specifier + ' from ' + context.parentURL);
      return result;
    }`;
    const code = [
      "import { register } from 'node:module';",
      `register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));`,
      ...imports.map((i) => `await import(${JSON.stringify(i)});`),
    ].join('\n');
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    return { status: child.status, stderr: child.stderr };
  };

  it('importing the built cluster-watch.js and node-reporter.js loads no client-node module', function () {
    this.timeout(60_000);
    const built = (name: string): string => new URL(`../../../src/kube/${name}`, import.meta.url).href;
    expect(fileURLToPath(built('cluster-watch.js'))).to.satisfy((p: string) => fs.existsSync(p));
    const result = importsInChild([built('cluster-watch.js'), built('node-reporter.js')]);
    expect(result.stderr).to.not.include('CLIENT_NODE_LOADED');
    expect(result.status, result.stderr).to.equal(0);
  });

  it('the podroute binary up to the running agent loads no client-node module (the lab commands load theirs lazily)', function () {
    this.timeout(60_000);
    const built = (name: string): string => new URL(`../../../src/${name}`, import.meta.url).href;
    const result = importsInChild([built('cli/agent.js'), built('cli/lab.js'), built('cli/status.js'), built('agent/agent.js')]);
    expect(result.stderr).to.not.include('CLIENT_NODE_LOADED');
    expect(result.status, result.stderr).to.equal(0);
  });

  it('the check catches a runtime import of client-node (control)', function () {
    this.timeout(60_000);
    const result = importsInChild(['@kubernetes/client-node']);
    expect(result.status).to.not.equal(0);
    expect(result.stderr).to.include('CLIENT_NODE_LOADED');
  });
});
