// The HTTP endpoints on real sockets (loopback only), wired through AgentObserver with real, unstarted
// reconcilers and a real GobgpClient pointed at a socket where no gobgpd listens.
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { BgpReconciler } from '../../../src/bgp/bgp-reconciler.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { MasqueradeReconciler } from '../../../src/nat/masquerade.js';
import { AgentObserver } from '../../../src/observe/agent-observer.js';
import { createLogger } from '../../../src/observe/log.js';
import { ObserveServer, ObserveServerError, parseListenAddress, type ObserveHandlers } from '../../../src/observe/server.js';
import type { AgentStatusReport } from '../../../src/observe/status.js';
import { PolicyReconciler } from '../../../src/policy/policy-reconciler.js';
import { RouteReconciler } from '../../../src/routes/route-reconciler.js';
import { pollUntil } from '../../poll.js';

const logger = createLogger({ level: 'error' });

interface Answer {
  status: number;
  type: string;
  body: string;
}

function httpGet(host: string, port: number, urlPath: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: urlPath, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Whether a TCP connect to host:port succeeds. */
function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const staticHandlers: ObserveHandlers = {
  metrics: () => Promise.resolve({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: 'x 1\n' }),
  health: () => ({ healthy: true, stuck: [], loops: [] }),
  readiness: () => Promise.resolve({ ready: true, reasons: [], checks: [] }),
  status: () => Promise.resolve({ ok: true }),
};

describe('parseListenAddress', () => {
  it('accepts host:port and [v6]:port', () => {
    expect(parseListenAddress('127.0.0.1:9476')).to.deep.equal({ host: '127.0.0.1', port: 9476 });
    expect(parseListenAddress('[::1]:9476')).to.deep.equal({ host: '::1', port: 9476 });
    expect(parseListenAddress('0.0.0.0:9476')).to.deep.equal({ host: '0.0.0.0', port: 9476 });
    expect(parseListenAddress('localhost:1')).to.deep.equal({ host: 'localhost', port: 1 });
  });

  it('refuses anything that would bind somewhere else than written', () => {
    for (const bad of [':9476', '9476', '127.0.0.1', '::1:9476', 'example.com:80', '127.0.0.1:65536', '[127.0.0.1]:80', '127.0.0.1:-1', '']) {
      expect(() => parseListenAddress(bad), bad).to.throw(ObserveServerError, 'metrics.address').with.property('code', 'INVALID_ADDRESS');
    }
  });
});

describe('ObserveServer', () => {
  it('binds exactly the configured address and nothing else', async () => {
    const server = new ObserveServer({ address: '127.0.0.2:0', handlers: staticHandlers });
    await server.start();
    try {
      const { host, port } = server.address();
      expect(host).to.equal('127.0.0.2');
      expect((await httpGet('127.0.0.2', port, '/healthz')).status).to.equal(200);
      // Another loopback address of the same host: nobody listens there.
      expect(await canConnect('127.0.0.1', port)).to.equal(false);
    } finally {
      await server.close();
    }
  });

  it('binds IPv6 loopback when configured so', async () => {
    const server = new ObserveServer({ address: '[::1]:0', handlers: staticHandlers });
    await server.start();
    try {
      const { host, port } = server.address();
      expect(host).to.equal('::1');
      expect((await httpGet('::1', port, '/readyz')).status).to.equal(200);
      expect(await canConnect('127.0.0.1', port)).to.equal(false);
    } finally {
      await server.close();
    }
  });

  it('reports an address in use as BIND_FAILED naming the address', async () => {
    const first = new ObserveServer({ address: '127.0.0.1:0', handlers: staticHandlers });
    await first.start();
    try {
      const address = `127.0.0.1:${first.address().port}`;
      const second = new ObserveServer({ address, handlers: staticHandlers });
      const err = await second.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(ObserveServerError).with.property('code', 'BIND_FAILED');
      expect((err as Error).message).to.include(address).and.include('EADDRINUSE');
      await second.close();
    } finally {
      await first.close();
    }
  });

  it('close() ends open keep-alive connections and frees the port', async () => {
    const server = new ObserveServer({ address: '127.0.0.1:0', handlers: staticHandlers });
    await server.start();
    const { port } = server.address();
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise((r) => socket.once('connect', r));
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await new Promise((r) => socket.once('data', r));
    const closedByServer = new Promise((r) => socket.once('close', r));
    await server.close();
    await closedByServer;
    expect(await canConnect('127.0.0.1', port)).to.equal(false);
  });

  it('answers unknown paths with 404, other methods with 405, failing handlers with 500', async () => {
    const server = new ObserveServer({
      address: '127.0.0.1:0',
      handlers: { ...staticHandlers, status: () => Promise.reject(new Error('status broke')) },
    });
    await server.start();
    try {
      const { port } = server.address();
      expect((await httpGet('127.0.0.1', port, '/nope')).status).to.equal(404);
      expect((await httpGet('127.0.0.1', port, '/metrics', 'POST')).status).to.equal(405);
      const failed = await httpGet('127.0.0.1', port, '/status');
      expect(failed.status).to.equal(500);
      expect(JSON.parse(failed.body)).to.deep.equal({ error: 'status broke' });
      const head = await httpGet('127.0.0.1', port, '/metrics?x=1', 'HEAD');
      expect(head.status).to.equal(200);
      expect(head.body).to.equal('');
    } finally {
      await server.close();
    }
  });
});

describe('AgentObserver endpoints (no gobgpd running)', function () {
  this.timeout(20_000);
  let dir: string;
  let gobgp: GobgpClient;
  let observer: AgentObserver;
  let port: number;
  let bgp: BgpReconciler;
  let masquerade: MasqueradeReconciler | undefined;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'h9-observe-'));
    gobgp = new GobgpClient({ target: `unix://${dir}/gobgp.sock`, callTimeoutMs: 500 });
    bgp = new BgpReconciler({ client: gobgp });
    const routes = new RouteReconciler({ protocol: 44, logger });
    const policy = new PolicyReconciler({ node: { name: 'n1', addresses: ['10.0.0.1'], podCIDRs: ['10.244.1.0/24'] }, logger });
    observer = new AgentObserver({
      address: '127.0.0.1:0',
      nodeName: 'n1',
      logger,
      gobgp,
      bgp: () => bgp,
      routes: () => routes,
      policy: () => policy,
      masquerade: () => masquerade,
      processMetrics: false,
    });
    await observer.start();
    port = observer.address()!.port;
  });

  after(async () => {
    await observer?.close();
    gobgp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('/readyz is 503 with every reason: gobgpd unreachable, no first pass, no learned table', async () => {
    const a = await httpGet('127.0.0.1', port, '/readyz');
    expect(a.status).to.equal(503);
    expect(a.type).to.include('application/json');
    const body = JSON.parse(a.body) as { status: string; ready: boolean; reasons: string[] };
    expect(body.status).to.equal('not ready');
    expect(body.ready).to.equal(false);
    expect(body.reasons).to.include.members([
      'bgp: no successful pass yet',
      'routes: no successful pass yet',
      'masquerade: no successful pass yet',
      'policy: no successful pass yet',
      "bgp: gobgpd's table of learned paths not received completely yet",
    ]);
    const gobgpReason = body.reasons.find((r) => r.startsWith('gobgpd not reachable at'));
    expect(gobgpReason).to.include(`unix://${dir}/gobgp.sock`);
  });

  it('/healthz is 200 while loops are starting, 503 naming a loop that stopped passing', async () => {
    expect((await httpGet('127.0.0.1', port, '/healthz')).status).to.equal(200);
    const cluster = observer.loop('cluster', { resyncMs: 20 });
    cluster.heartbeat(3);
    const answer = await pollUntil('healthz turns red', async () => {
      const a = await httpGet('127.0.0.1', port, '/healthz');
      return a.status === 503 ? a : undefined;
    }, { timeoutMs: 10_000, intervalMs: 20 });
    const body = JSON.parse(answer.body) as { status: string; stuck: string[]; loops: { name: string; state: string }[] };
    expect(body.status).to.equal('unhealthy');
    expect(body.stuck).to.deep.equal(['cluster']);
    expect(body.loops.find((l) => l.name === 'cluster')!.state).to.equal('stuck');
    expect(body.loops.find((l) => l.name === 'bgp')!.state).to.equal('starting');
    // The metrics say the same.
    const metrics = (await httpGet('127.0.0.1', port, '/metrics')).body;
    expect(metrics).to.match(/^podroute_reconcile_stuck\{reconciler="cluster"\} 1$/m);
    expect(metrics).to.match(/^podroute_reconcile_stuck\{reconciler="bgp"\} 0$/m);
    expect(metrics).to.match(/^podroute_reconcile_duration_seconds_count\{reconciler="cluster"\} 1$/m);
  });

  it('/status has the documented shape, with gobgpd unreachable and the reconcilers not yet run', async () => {
    const a = await httpGet('127.0.0.1', port, '/status');
    expect(a.status).to.equal(200);
    const report = JSON.parse(a.body) as AgentStatusReport;
    expect(Object.keys(report).sort()).to.deep.equal(
      ['node', 'version', 'generatedAt', 'gobgpd', 'peers', 'bgp', 'routes', 'policy', 'masquerade', 'bfd', 'reconcilers', 'healthy', 'ready', 'notReadyReasons'].sort(),
    );
    expect(report.bfd, 'no BFD configured').to.equal(null);
    expect(report.node).to.equal('n1');
    expect(report.version).to.equal('0.1.0');
    expect(report.gobgpd.reachable).to.equal(false);
    expect(report.gobgpd.target).to.equal(`unix://${dir}/gobgp.sock`);
    expect(report.gobgpd.error).to.be.a('string').and.not.equal('');
    expect(report.peers).to.deep.equal([]);
    expect(report.bgp).to.deep.equal({ originated: 0, learnedPrefixes: 0, learnedPaths: 0, tableSynced: false });
    expect(report.routes).to.deep.equal({ installed: 0, added: 0, removed: 0, replaced: 0, conflicts: [], keptFromPreviousRun: 0, inSync: false });
    expect(report.policy).to.deep.equal({ chains: 0, sets: 0, rules: 0, invalidPolicies: 0 });
    // The masquerade reconciler is created later by the agent: until then it is absent, not an error.
    expect(report.masquerade).to.equal(null);
    expect(report.ready).to.equal(false);
    expect(report.notReadyReasons.length).to.be.greaterThan(3);
    expect(report.reconcilers.map((l) => l.name)).to.deep.equal(['bgp', 'routes', 'masquerade', 'policy', 'cluster']);
    expect(report.reconcilers[0]).to.have.all.keys('name', 'state', 'healthy', 'lastSuccessAt', 'ageSeconds', 'staleAfterSeconds', 'failures', 'lastError');
    expect(report.reconcilers[0]!.staleAfterSeconds).to.equal(180);
    expect(report.reconcilers[1]!.staleAfterSeconds).to.equal(90);

    masquerade = new MasqueradeReconciler({ clusterRanges: ['10.244.0.0/16'], logger });
    const later = JSON.parse((await httpGet('127.0.0.1', port, '/status')).body) as AgentStatusReport;
    expect(later.masquerade).to.deep.equal({ inSync: false, ipv4: true, ipv6: false });
  });

  it('/metrics is Prometheus text from its own registry: build info, gobgpd down, zero routes, policy gauges', async () => {
    const a = await httpGet('127.0.0.1', port, '/metrics');
    expect(a.status).to.equal(200);
    expect(a.type).to.equal('text/plain; version=0.0.4; charset=utf-8');
    expect(a.body).to.match(/^podroute_build_info\{version="0\.1\.0",node="n1",nodejs="v[\d.]+"\} 1$/m);
    expect(a.body).to.match(/^podroute_gobgpd_up 0$/m);
    expect(a.body).to.match(/^podroute_routes_installed 0$/m);
    expect(a.body).to.match(/^podroute_routes_added_total 0$/m);
    expect(a.body).to.match(/^podroute_policy_chains 0$/m);
    expect(a.body).to.match(/^podroute_reconcile_errors_total\{reconciler="bgp"\} 0$/m);
    expect(a.body).to.not.match(/^podroute_bgp_peer_established\{/m);
    // Not the process-global registry: nothing of prom-client's default collectors unless asked for.
    expect(a.body).to.not.include('process_cpu');
  });
});

describe('AgentObserver without endpoints', () => {
  it("measures the Node.js process (and its event loop, every 10 ms) only when there is a /metrics to read it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'h9-observe-'));
    const gobgp = new GobgpClient({ target: `unix://${dir}/gobgp.sock`, callTimeoutMs: 500 });
    const served = new AgentObserver({ address: '127.0.0.1:0', nodeName: 'n1', logger, gobgp });
    const unserved = new AgentObserver({ address: '', nodeName: 'n1', logger, gobgp });
    try {
      expect((await served.metrics.render()).body).to.match(/^nodejs_eventloop_lag_max_seconds /m);
      expect((await unserved.metrics.render()).body).to.not.match(/^nodejs_/m);
    } finally {
      await served.close();
      await unserved.close();
      gobgp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("metrics.address '' starts no server; reconcilers can push passes with durations through their handles", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'h9-observe-'));
    const gobgp = new GobgpClient({ target: `unix://${dir}/gobgp.sock`, callTimeoutMs: 500 });
    const routes = new RouteReconciler({ protocol: 44, logger });
    const observer = new AgentObserver({ address: '', nodeName: 'n1', logger, gobgp, routes: () => routes, processMetrics: false });
    try {
      await observer.start();
      expect(observer.address()).to.equal(undefined);
      const handle = observer.reconcilerHealth('routes');
      handle.heartbeat(250);
      handle.failure(new Error('ip -batch: RTNETLINK answers: Invalid argument'), 10);
      expect(() => observer.reconcilerHealth('bgp')).to.throw('no bgp reconciler');
      const text = (await observer.metrics.render()).body;
      expect(text).to.match(/^podroute_reconcile_duration_seconds_count\{reconciler="routes"\} 2$/m);
      expect(text).to.match(/^podroute_reconcile_errors_total\{reconciler="routes"\} 1$/m);
      const report = await observer.status();
      expect(report.reconcilers[0]).to.include({ name: 'routes', state: 'ok', failures: 1 });
      expect(report.reconcilers[0]!.lastError!.message).to.equal('ip -batch: RTNETLINK answers: Invalid argument');
      expect(report.bgp).to.equal(null);
      expect(report.policy).to.equal(null);
    } finally {
      await observer.close();
      gobgp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('AgentObserver reads every reconciler through one status type', () => {
  it('the loop status of each reconciler gives its report: last success, total failures, the error with its code', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rl-observe-'));
    const gobgp = new GobgpClient({ target: `unix://${dir}/gobgp.sock`, callTimeoutMs: 500 });
    const succeededAt = new Date(Date.now() - 5_000);
    const failedAt = new Date(Date.now() - 1_000);
    const failing = {
      lastAttemptAt: failedAt,
      lastSuccessAt: succeededAt,
      lastError: { code: 'POLICY_APPLY_FAILED', message: 'iptables-restore: line 3 failed' },
      consecutiveFailures: 2,
      successes: 4,
      failures: 7,
    };
    const healthy = { ...failing, lastAttemptAt: succeededAt, lastError: undefined, consecutiveFailures: 0, failures: 0 };
    const fake = <S>(status: S): { status(): S } => ({ status: () => status });
    const routes = fake({ loop: healthy, installed: 0, inSync: true, conflicts: [], keptFromStart: 0, counts: { added: 0, replaced: 0, removed: 0, conflicts: 0, failedChanges: 0, reads: 1, quietResyncs: 0 } });
    const policy = fake({ loop: failing, chains: 0, rules: 0, sets: 0, problems: [] });
    const observer = new AgentObserver({
      address: '',
      nodeName: 'n1',
      logger,
      gobgp,
      routes: () => routes,
      policy: () => policy as unknown as PolicyReconciler,
      masquerade: () => undefined,
      processMetrics: false,
    });
    try {
      const report = await observer.status();
      const byName = new Map(report.reconcilers.map((r) => [r.name, r]));
      expect(byName.get('routes')).to.include({ state: 'ok', failures: 0, lastSuccessAt: succeededAt.toISOString(), lastError: null });
      expect(byName.get('policy')).to.include({ state: 'ok', failures: 7, lastSuccessAt: succeededAt.toISOString() });
      expect(byName.get('policy')!.lastError).to.deep.equal({ message: 'POLICY_APPLY_FAILED: iptables-restore: line 3 failed', at: failedAt.toISOString() });
      // A reconciler that does not exist yet is starting, not failing.
      expect(byName.get('masquerade')).to.include({ state: 'starting', failures: 0, lastSuccessAt: null, lastError: null });
      const text = (await observer.metrics.render()).body;
      expect(text).to.match(/^podroute_reconcile_errors_total\{reconciler="policy"\} 7$/m);
    } finally {
      await observer.close();
      gobgp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
