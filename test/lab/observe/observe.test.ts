// The observe endpoints and `podroute status` against a real gobgpd driven by the real BgpReconciler: "our"
// gobgpd in netns h9ob-a peers with a second node's gobgpd in h9ob-b (Established) and with a ToR address
// nobody answers on (stays Active). Checks the peer table, metrics and readiness, and that killing our
// gobgpd flips /readyz and the peer metric, and that they recover when it comes back.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { BgpReconciler, type BgpDesiredState } from '../../../src/bgp/bgp-reconciler.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { AgentObserver } from '../../../src/observe/agent-observer.js';
import { createLogger } from '../../../src/observe/log.js';
import type { AgentStatusReport, StatusView } from '../../../src/observe/status.js';
import { GobgpdFixture, createNetnsPair, type GobgpdProcess, type NetnsPair } from '../bgp/gobgpd-fixture.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const statusModule = path.resolve(here, '../../../src/cli/status.js');

/** Runs the real `status` command in a fresh node process (optionally inside a netns); stdout and exit code. */
async function podrouteStatus(args: string[], netns?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = `import { statusCommand } from ${JSON.stringify(statusModule)};
await statusCommand().parseAsync(process.argv.slice(1), { from: 'user' });`;
  const argv = ['--input-type=module', '-e', script, '--', ...args];
  const [cmd, full] = netns === undefined ? [process.execPath, argv] : ['ip', ['netns', 'exec', netns, process.execPath, ...argv]];
  try {
    const { stdout, stderr } = await run(cmd, full, { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`);
  return { status: res.status, body: await res.text() };
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('observe endpoints and podroute status against real gobgpd', function () {
  this.timeout(180_000);
  let fx: GobgpdFixture;
  let net: NetnsPair;
  let ours: GobgpdProcess;
  let client: GobgpClient;
  let node2: GobgpClient;
  let reconciler: BgpReconciler;
  let observer: AgentObserver;
  let port: number;
  const stop = new AbortController();
  let running: Promise<void> | undefined;
  const A = '10.229.0.1';
  const NODE2 = '10.229.0.2';
  const TOR = '10.229.0.3';
  const node2Series = `{peer="${NODE2}",asn="64512",type="node"}`;
  const torSeries = `{peer="${TOR}",asn="65100",type="external"}`;

  const desired: BgpDesiredState = {
    global: { asn: 64512, routerId: A, listenPort: 179 },
    peers: [
      { address: NODE2, asn: 64512, connectRetry: 1, description: 'node:n2', families: ['ipv4'] },
      { address: TOR, asn: 65100, connectRetry: 1, description: 'config:bgp.peers[0]', families: ['ipv4'] },
    ],
    advertise: [{ prefix: '10.244.1.0/24', nextHop: A }],
    importRules: {
      nodePeers: [{ address: NODE2, prefixes: ['10.244.2.0/24'] }],
      externalPeers: [TOR],
      acceptRanges: ['10.244.0.0/16'],
      ownPodCIDRs: ['10.244.1.0/24'],
    },
  };

  before(async () => {
    fx = new GobgpdFixture(testLabName('h9ob', 'ob'));
    net = createNetnsPair(testLabName('h9ob', 'ob'), 229);
    ours = await fx.spawn('ours', net.a);
    const n2 = await fx.spawn('node2', net.b);
    client = new GobgpClient({ target: ours.target, reconnectBackoffMs: { initial: 100, max: 500 } });
    node2 = new GobgpClient({ target: n2.target });
    await node2.startBgp({ asn: 64512, routerId: NODE2, listenPort: 179, listenAddresses: [NODE2] });
    await node2.addPeer({ address: A, asn: 64512, connectRetry: 1, families: ['ipv4'] });
    // Its own podCIDR (accepted by our import policy) and another node's (a hijack: received, not accepted).
    await node2.addPath({ prefix: '10.244.2.0/24', nextHop: NODE2 });
    await node2.addPath({ prefix: '10.244.3.0/24', nextHop: NODE2 });
    reconciler = new BgpReconciler({ client, resyncIntervalMs: 2_000, retryBackoffMs: { initial: 200, max: 1_000 } });
    observer = new AgentObserver({
      address: '127.0.0.1:0',
      nodeName: 'n1',
      logger: createLogger({ level: 'error' }),
      gobgp: client,
      bgp: () => reconciler,
      resyncMs: { bgp: 2_000 },
    });
    await observer.start();
    port = observer.address()!.port;
    reconciler.setDesired(desired);
    running = reconciler.start(stop.signal);
  });

  after(async () => {
    stop.abort();
    await running?.catch(() => undefined);
    await observer?.close();
    for (const c of [client, node2]) c?.close();
    await fx?.close();
    net?.close();
  });

  it('/status shows the node peer Established with its counts and the ToR peer not established', async () => {
    const report = await pollUntil(
      'node2 established with its prefixes counted',
      async () => {
        const r = JSON.parse((await get(port, '/status')).body) as AgentStatusReport;
        const p = r.peers.find((x) => x.address === NODE2);
        return p?.state === 'ESTABLISHED' && p.received === 2 && p.advertised === 1 ? r : undefined;
      }, { timeoutMs: 60_000, intervalMs: 200 });
    expect(report.gobgpd).to.deep.equal({ target: ours.target, reachable: true, error: null });
    const [n2, tor] = report.peers;
    expect(n2).to.include({ address: NODE2, asn: 64512, type: 'node', description: 'node:n2', state: 'ESTABLISHED', received: 2, accepted: 1, advertised: 1 });
    expect(n2!.uptimeSeconds).to.be.a('number').and.at.least(0);
    expect(Date.parse(n2!.establishedSince!)).to.be.at.most(Date.now());
    expect(tor).to.include({ address: TOR, asn: 65100, type: 'external', description: 'config:bgp.peers[0]', received: 0, accepted: 0, advertised: 0 });
    expect(tor!.state).to.not.equal('ESTABLISHED');
    expect(tor!.uptimeSeconds).to.equal(null);
    expect(report.bgp).to.include({ originated: 1, tableSynced: true });
    expect(report.reconcilers.map((l) => [l.name, l.state])).to.deep.equal([['bgp', 'ok']]);
  });

  it('/readyz is 200 and /metrics has the per-peer gauges', async () => {
    await pollUntil('ready', async () => (await get(port, '/readyz')).status === 200, { intervalMs: 200 });
    const metrics = (await get(port, '/metrics')).body;
    expect(sample(metrics, `podroute_bgp_peer_established${node2Series}`)).to.equal(1);
    expect(sample(metrics, `podroute_bgp_peer_established${torSeries}`)).to.equal(0);
    expect(sample(metrics, `podroute_bgp_peer_prefixes_received${node2Series}`)).to.equal(2);
    expect(sample(metrics, `podroute_bgp_peer_prefixes_accepted${node2Series}`)).to.equal(1);
    expect(sample(metrics, `podroute_bgp_peer_prefixes_advertised${node2Series}`)).to.equal(1);
    expect(sample(metrics, 'podroute_gobgpd_up')).to.equal(1);
    expect(sample(metrics, 'podroute_bgp_learned_prefixes')).to.equal(1);
    expect(sample(metrics, 'podroute_gobgpd_reconnects_total')).to.equal(0);
  });

  it('podroute status prints the peer table from the agent, as a table and as JSON', async () => {
    const table = await podrouteStatus(['--address', `127.0.0.1:${port}`]);
    expect(table.code).to.equal(0);
    expect(table.stdout).to.include('podroute 0.1.0 on node n1: healthy, ready');
    expect(table.stdout).to.match(new RegExp(`^${NODE2.replace(/\./g, '\\.')} +64512 +node +ESTABLISHED +\\S+ +2 +1 +1 +node:n2$`, 'm'));
    expect(table.stdout).to.match(new RegExp(`^${TOR.replace(/\./g, '\\.')} +65100 +external +(IDLE|ACTIVE|CONNECT|OPENSENT) +- +0 +0 +0 +config:bgp\\.peers\\[0\\]$`, 'm'));
    const json = await podrouteStatus(['--address', `127.0.0.1:${port}`, '-o', 'json']);
    expect(json.code).to.equal(0);
    const view = JSON.parse(json.stdout) as StatusView;
    expect(view.source).to.equal('agent');
    expect(view.report!.node).to.equal('n1');
    expect(view.peers.map((p) => [p.address, p.state === 'ESTABLISHED'])).to.deep.equal([
      [NODE2, true],
      [TOR, false],
    ]);
    // With the agent's config file, the address and the gobgpd target come from it.
    const config = path.join(fx.dir, 'agent.yaml');
    writeFileSync(config, `cluster: { podRanges: [10.244.0.0/16] }\nmetrics: { address: "127.0.0.1:${port}" }\ngobgp: { target: "${ours.target}" }\n`);
    const fromConfig = await podrouteStatus(['-c', config, '-o', 'json']);
    expect(fromConfig.code).to.equal(0);
    expect((JSON.parse(fromConfig.stdout) as StatusView).agent.address).to.equal(`127.0.0.1:${port}`);
    // metrics.address '' (no endpoints): straight to gobgpd, found through the config too.
    writeFileSync(config, `cluster: { podRanges: [10.244.0.0/16] }\nmetrics: { address: "" }\ngobgp: { target: "${ours.target}" }\n`);
    const direct = JSON.parse((await podrouteStatus(['-c', config, '-o', 'json'])).stdout) as StatusView;
    expect(direct.source).to.equal('gobgpd');
    expect(direct.gobgpd).to.deep.equal({ target: ours.target, reachable: true, error: null });
    expect(direct.peers.find((p) => p.address === NODE2)!.state).to.equal('ESTABLISHED');
  });

  it('podroute status inside the node netns falls back to gobgpd when no agent answers there', async () => {
    // Nothing listens on 127.0.0.1:9476 inside h9ob-a; gobgpd's unix socket is reachable from any netns.
    const r = await podrouteStatus(['--gobgp-target', ours.target, '-o', 'json'], net.a);
    expect(r.code).to.equal(1);
    const view = JSON.parse(r.stdout) as StatusView;
    expect(view.source).to.equal('gobgpd');
    expect(view.agent.reachable).to.equal(false);
    expect(view.agent.address).to.equal('127.0.0.1:9476');
    expect(view.report).to.equal(null);
    expect(view.gobgpd.reachable).to.equal(true);
    expect(view.peers.find((p) => p.address === NODE2)).to.include({ state: 'ESTABLISHED', type: 'node', received: 2, accepted: 1, advertised: 1 });
    const text = await podrouteStatus(['--gobgp-target', ours.target], net.a);
    expect(text.code).to.equal(1);
    expect(text.stdout).to.include('podroute agent not answering at 127.0.0.1:9476');
    expect(text.stdout).to.match(new RegExp(`^${NODE2.replace(/\./g, '\\.')} +64512 +node +ESTABLISHED`, 'm'));
  });

  it('killing gobgpd flips /readyz to 503 and the peer metric to 0; both recover when it is back', async () => {
    await ours.kill();
    const notReady = await pollUntil(
      'readyz 503',
      async () => {
        const a = await get(port, '/readyz');
        return a.status === 503 ? (JSON.parse(a.body) as { reasons: string[] }) : undefined;
      });
    expect(notReady.reasons.some((r) => r.startsWith(`gobgpd not reachable at ${ours.target}`))).to.equal(true, notReady.reasons.join('; '));
    const down = (await get(port, '/metrics')).body;
    expect(sample(down, `podroute_bgp_peer_established${node2Series}`)).to.equal(0);
    expect(sample(down, `podroute_bgp_peer_prefixes_received${node2Series}`)).to.equal(0);
    expect(sample(down, 'podroute_gobgpd_up')).to.equal(0);
    const status = JSON.parse((await get(port, '/status')).body) as AgentStatusReport;
    expect(status.gobgpd.reachable).to.equal(false);
    expect(status.peers.find((p) => p.address === NODE2)!.state).to.equal('UNKNOWN');
    // The CLI says so too (the agent answers; gobgpd does not).
    const cli = await podrouteStatus(['--address', `127.0.0.1:${port}`]);
    expect(cli.stdout).to.include('NOT READY').and.include(`gobgpd ${ours.target}: NOT REACHABLE`);

    await ours.start();
    await pollUntil(
      'node2 established again in the metrics',
      async () => sample((await get(port, '/metrics')).body, `podroute_bgp_peer_established${node2Series}`) === 1, { timeoutMs: 90_000, intervalMs: 200 });
    await pollUntil('ready again', async () => (await get(port, '/readyz')).status === 200, { intervalMs: 200 });
    const up = (await get(port, '/metrics')).body;
    expect(sample(up, 'podroute_gobgpd_up')).to.equal(1);
    expect(sample(up, 'podroute_gobgpd_reconnects_total')).to.equal(1);
  });
});
