// Hostile BGP peers against a real node (issue 6): gobgpd + `podroute agent` in a network namespace, fed by an
// in-process lab API server, and real gobgpd peers in a second namespace. A peer that floods more prefixes than
// its limit loses its session and floods nothing into the kernel, while the node's other sessions and routes
// stay as they were; under the limit everything is accepted; raising the limit brings the peer back. A peer with
// a different TCP MD5 password never gets a session and installs nothing; the right password works; the agent
// never writes the password anywhere it reports (log, /status, /metrics).
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import YAML from 'yaml';
import { startBenchApi, nodeObject, type BenchApi } from '../../../bench/lib/agent-host.js';
import { RawGobgp } from '../../../bench/lib/gobgp-raw.js';
import { Cleanup, addNetns, logTail, sleep, startDaemon, type Daemon } from '../../../bench/lib/proc.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import type { OriginatedPath, PeerSpec, PeerStatus } from '../../../src/bgp/types.js';
import type { AgentConfigInput } from '../../../src/config/agent-config.js';
import { renderKubeconfig } from '../../../src/lab/apiserver/index.js';
import { CLI_MAIN, gobgpdArgs } from '../../../src/lab/daemons.js';
import { recordHostilePeer } from './fault-results.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const RELAY_SCRIPT = path.join(here, '..', '..', '..', 'bench', 'api-relay.js');

const NS_PREFIX = testLabName('h23', 'hb');
const NODE_NS = `${NS_PREFIX}-node`;
const PEERS_NS = `${NS_PREFIX}-peers`;
const NODE_IP = '10.231.0.1';
const NODE_ASN = 64512;
const METRICS = '127.0.0.1:9476';
/** Another cluster's pod range, accepted from external peers (extraAcceptRanges): what the peers announce. */
const EXTRA_RANGE = '172.30.0.0/16';
const LIMIT = 50;
const PASSWORD = 'h23-Md5-s3cret-Zq9';
const WRONG_PASSWORD = 'h23-wrong-Pw-7x';

interface TestPeer {
  name: string;
  address: string;
  asn: number;
  client: GobgpClient;
  raw: RawGobgp;
  /** The peer's side of the session (towards the node). */
  spec: PeerSpec;
}

const GOOD = { address: '10.231.0.3', asn: 65003, routes: ['172.30.250.0/24', '172.30.251.0/24'] };
const FLOOD = { address: '10.231.0.2', asn: 65002 };
const MD5 = { address: '10.231.0.4', asn: 65004, routes: ['172.30.252.0/24'] };

/** Segments this namespace's kernel dropped for a wrong TCP MD5 signature (/proc/net/netstat, TcpExt). */
function md5Failures(netns: string): number {
  const lines = execFileSync('ip', ['netns', 'exec', netns, 'cat', '/proc/net/netstat'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('TcpExt:'));
  const [names, values] = lines.map((l) => l.trim().split(/\s+/));
  const at = names?.indexOf('TCPMD5Failure') ?? -1;
  if (at < 0 || values?.[at] === undefined) throw new Error(`no TCPMD5Failure counter in ${netns}'s /proc/net/netstat`);
  return Number(values[at]);
}

function floodPaths(from: number, count: number): OriginatedPath[] {
  return Array.from({ length: count }, (_, i) => {
    const n = from + i;
    return { prefix: `172.30.${Math.floor(n / 256)}.${n % 256}/32`, nextHop: FLOOD.address };
  });
}

/** The node's kernel routes with podroute's protocol number (44), both families. */
function kernelRoutes(): string[] {
  const out: string[] = [];
  for (const family of ['-4', '-6']) {
    const text = execFileSync('ip', ['-n', NODE_NS, family, '-j', 'route', 'show', 'proto', '44'], { encoding: 'utf8' });
    for (const r of JSON.parse(text === '' ? '[]' : text) as { dst: string }[]) out.push(r.dst.includes('/') ? r.dst : `${r.dst}/${family === '-4' ? 32 : 128}`);
  }
  return out.sort();
}

function curlInNode(urlPath: string): string {
  return execFileSync('ip', ['netns', 'exec', NODE_NS, 'curl', '-s', '--max-time', '5', `http://${METRICS}${urlPath}`], { encoding: 'utf8' });
}

/** Every object with an address and a state inside a JSON document (the peer rows of /status). */
function peerEntries(doc: unknown): { address: string; state: string }[] {
  if (Array.isArray(doc)) return doc.flatMap(peerEntries);
  if (typeof doc !== 'object' || doc === null) return [];
  const o = doc as Record<string, unknown>;
  const here = typeof o.address === 'string' && typeof o.state === 'string' ? [{ address: o.address, state: o.state }] : [];
  return [...here, ...Object.values(o).flatMap(peerEntries)];
}

describe('hostile BGP peers against a real node (gobgpd + podroute agent)', function () {
  this.timeout(300_000);
  const cleanup = new Cleanup();
  let dir: string;
  let api: BenchApi;
  let agentLog: string;
  let nodeGobgp: GobgpClient;
  let agent: Daemon;
  const peers = new Map<string, TestPeer>();

  const nodePeer = async (address: string): Promise<PeerStatus | undefined> => (await nodeGobgp.listPeers()).find((p) => p.address === address);
  const setAnnotationLimit = (maxPrefixes: number): void => {
    const node = api.server.get('Node', undefined, 'n1');
    const annotations = { ...(node.metadata as { annotations?: Record<string, string> }).annotations };
    annotations['podroute.io/peers'] = JSON.stringify([{ address: FLOOD.address, asn: FLOOD.asn, connectRetry: 1, maxPrefixes }]);
    api.server.update({ ...node, metadata: { ...(node.metadata as object), annotations } });
  };

  const eventFor = (reason: string, address: string): { type?: string; message?: string } | undefined =>
    api.server
      .list('Event', 'default')
      .map((e) => e as { reason?: string; type?: string; message?: string })
      .find((e) => e.reason === reason && String(e.message).includes(`BGP peer ${address} `));

  async function startPeer(name: string, address: string, asn: number, password?: string): Promise<TestPeer> {
    const socket = path.join(dir, `${name}.sock`);
    startDaemon({ name: `gobgpd/${name}`, netns: PEERS_NS, command: 'gobgpd', args: gobgpdArgs(socket), logFile: path.join(dir, `${name}.log`) }, cleanup);
    const client = new GobgpClient({ target: `unix://${socket}` });
    cleanup.add(`client ${name}`, () => client.close());
    await pollUntil(`gobgpd ${name} answers`, async () => (await client.getBgp()).asn === 0 || undefined, { timeoutMs: 20_000 });
    // No listener: these peers dial the node (several gobgpd share the namespace).
    await client.startBgp({ asn, routerId: address, listenPort: -1 });
    // ttlMin: GTSM, which the agent asks of one-hop eBGP peers by default.
    const spec: PeerSpec = { address: NODE_IP, asn: NODE_ASN, localAddress: address, connectRetry: 1, holdTime: 9, keepaliveInterval: 3, ttlMin: 254, ...(password === undefined ? {} : { password }) };
    await client.addPeer(spec);
    const raw = new RawGobgp(`unix://${socket}`);
    cleanup.add(`raw client ${name}`, () => raw.close());
    const peer = { name, address, asn, client, raw, spec };
    peers.set(name, peer);
    return peer;
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'h23-hostile-'));
    cleanup.add('temp dir', () => rm(dir, { recursive: true, force: true }));
    await addNetns(NODE_NS, cleanup);
    await addNetns(PEERS_NS, cleanup);
    execFileSync('ip', ['-n', NODE_NS, 'link', 'add', 'h23n', 'type', 'veth', 'peer', 'name', 'h23p', 'netns', PEERS_NS]);
    execFileSync('ip', ['-n', NODE_NS, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'h23n']);
    execFileSync('ip', ['-n', NODE_NS, 'link', 'set', 'h23n', 'up']);
    for (const a of [FLOOD.address, GOOD.address, MD5.address]) execFileSync('ip', ['-n', PEERS_NS, 'addr', 'add', `${a}/24`, 'dev', 'h23p']);
    execFileSync('ip', ['-n', PEERS_NS, 'link', 'set', 'h23p', 'up']);

    api = await startBenchApi(path.join(dir, 'api'), cleanup);
    api.server.create(nodeObject({ name: 'n1', address: NODE_IP, podCIDRs: ['10.244.1.0/24'] }));
    setAnnotationLimit(LIMIT);

    const nodeDir = path.join(dir, 'n1');
    await mkdir(path.join(nodeDir, 'cni'), { recursive: true });
    const passwordFile = path.join(nodeDir, 'md5-peer.password');
    await writeFile(passwordFile, `${PASSWORD}\n`);
    await chmod(passwordFile, 0o600);
    const socket = path.join(nodeDir, 'gobgp.sock');
    const relayLog = path.join(nodeDir, 'relay.log');
    const relay = startDaemon({ name: 'relay/n1', netns: NODE_NS, command: process.execPath, args: [RELAY_SCRIPT, '--socket', api.socket, '--port', '6443'], logFile: relayLog }, cleanup);
    startDaemon({ name: 'gobgpd/n1', netns: NODE_NS, command: 'gobgpd', args: gobgpdArgs(socket), logFile: path.join(nodeDir, 'gobgpd.log') }, cleanup);
    const kubeconfig = path.join(nodeDir, 'kubeconfig');
    await writeFile(kubeconfig, renderKubeconfig('http://127.0.0.1:6443', 'h23-n1'));
    const config: AgentConfigInput = {
      nodeName: 'n1',
      kubeconfig,
      gobgp: { target: `unix://${socket}` },
      cluster: { asn: NODE_ASN, podRanges: ['10.244.0.0/16'], extraAcceptRanges: [EXTRA_RANGE] },
      bgp: {
        mesh: 'off',
        connectRetry: 1,
        passwordDir: nodeDir,
        peers: [
          { address: GOOD.address, asn: GOOD.asn },
          { address: MD5.address, asn: MD5.asn, passwordFile },
        ],
      },
      cni: { confDir: path.join(nodeDir, 'cni'), ipamDataDir: path.join(nodeDir, 'ipam') },
      // Debug: the most the agent ever writes, so the password check below covers every log line it has.
      log: { level: 'debug', format: 'json' },
      metrics: { address: METRICS },
    };
    const configFile = path.join(nodeDir, 'agent.yaml');
    await writeFile(configFile, YAML.stringify(config));
    await pollUntil('api relay ready', () => (relay.exited ? Promise.reject(new Error(logTail(relayLog))) : /ready/.test(logTail(relayLog)) || undefined), { timeoutMs: 20_000, intervalMs: 50 });
    nodeGobgp = new GobgpClient({ target: `unix://${socket}` });
    cleanup.add('node gobgp client', () => nodeGobgp.close());
    agentLog = path.join(nodeDir, 'agent.log');
    agent = startDaemon({ name: 'agent/n1', netns: NODE_NS, command: process.execPath, args: [CLI_MAIN, 'agent', '--config', configFile], logFile: agentLog }, cleanup);

    const good = await startPeer('good', GOOD.address, GOOD.asn);
    await startPeer('flood', FLOOD.address, FLOOD.asn);
    await startPeer('md5', MD5.address, MD5.asn, WRONG_PASSWORD);
    for (const prefix of GOOD.routes) await good.client.addPath({ prefix, nextHop: GOOD.address });
    await pollUntil('the agent configures three peers and installs the good peer routes', async () => {
      if (agent.exited) throw new Error(`agent exited:\n${logTail(agentLog)}`);
      const listed = await nodeGobgp.listPeers();
      return listed.length === 3 && GOOD.routes.every((r) => kernelRoutes().includes(r)) ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 200 }).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\nagent log:\n${logTail(agentLog, 40)}`);
    });
  });

  after(async () => {
    const problems = await cleanup.run();
    expect(problems, problems.join('\n')).to.deep.equal([]);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.to.match(/h23-/);
  });

  it('gives the flooding peer the limit from its annotation, as a prefix limit on every family in gobgpd', async () => {
    const configs = await nodeGobgp.listPeerConfigs();
    const limits = Object.fromEntries(configs.map((c) => [c.spec.address, c.spec.maxPrefixes]));
    // The annotation's own limit for the flooding peer; the global default (bgp.maxPrefixes) for the others.
    expect(limits).to.deep.equal({ [FLOOD.address]: LIMIT, [GOOD.address]: 10_000, [MD5.address]: 10_000 });
  });

  it('under the limit: every prefix is accepted and installed', async () => {
    const flood = peers.get('flood')!;
    await pollUntil('flood peer Established', async () => ((await nodePeer(FLOOD.address))?.state === 'ESTABLISHED' ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
    await flood.raw.addPathStream(floodPaths(0, LIMIT - 10));
    const expected = [...GOOD.routes, ...floodPaths(0, LIMIT - 10).map((p) => p.prefix)].sort();
    await pollUntil(`${expected.length} routes in the kernel`, () => (JSON.stringify(kernelRoutes()) === JSON.stringify(expected) ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
    const status = await nodePeer(FLOOD.address);
    expect(status).to.deep.include({ state: 'ESTABLISHED', adminState: 'UP', received: LIMIT - 10 });
    // The agent has seen the session up (gobgpd's peer watch woke a read of its peers): a later drop is news to it.
    await pollUntil('a PodrouteBgpPeerUp Event for the flooding peer', () => eventFor('PodrouteBgpPeerUp', FLOOD.address) || undefined, { intervalMs: 500 });
  });

  it('over the limit: the session goes down and stays down, the kernel never holds more than the limit, nothing else moves', async () => {
    const flood = peers.get('flood')!;
    const goodBefore = await nodePeer(GOOD.address);
    expect(goodBefore?.state).to.equal('ESTABLISHED');
    const baseline = [...GOOD.routes];
    let most = 0;
    let goodMissing = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const routes = kernelRoutes();
        most = Math.max(most, routes.length);
        if (!baseline.every((r) => routes.includes(r))) goodMissing++;
        await sleep(20);
      }
    })();
    try {
      await flood.raw.addPathStream(floodPaths(LIMIT - 10, 2000));
      const down = await pollUntil('gobgpd shuts the flooding peer down at its prefix limit', async () => {
        const p = await nodePeer(FLOOD.address);
        return p?.adminState === 'PREFIX_LIMIT' ? p : undefined;
      }, { timeoutMs: 60_000 });
      expect(down.state).to.not.equal('ESTABLISHED');
      await pollUntil('only the good routes left in the kernel', () => (JSON.stringify(kernelRoutes()) === JSON.stringify(baseline) ? true : undefined), { timeoutMs: 60_000 });
      // gobgpd does not retry on its own: idle hold (5 s) and connect retry (1 s) pass several times over.
      for (let i = 0; i < 12; i++) {
        await sleep(1000);
        const p = await nodePeer(FLOOD.address);
        expect(p, `round ${i}`).to.deep.include({ adminState: 'PREFIX_LIMIT', received: 0 });
        expect(p?.state, `round ${i}`).to.not.equal('ESTABLISHED');
      }
    } finally {
      sampling = false;
      await sampler;
    }
    const goodAfter = await nodePeer(GOOD.address);
    recordHostilePeer('max-prefix', {
      title: 'a peer flooding prefixes past its max-prefix limit',
      target: 'session ended at the limit and kept down; the kernel never holds more than the limit; other peers untouched',
      passed: most <= baseline.length + LIMIT && goodMissing === 0 && goodAfter?.establishedSince?.getTime() === goodBefore?.establishedSince?.getTime(),
      figures: { limit: LIMIT, announced: LIMIT - 10 + 2000, mostPodrouteRoutesAtOnce: most, goodPeerRoutes: baseline.length, samplesWithoutGoodRoutes: goodMissing, goodSessionReset: goodAfter?.establishedSince?.getTime() !== goodBefore?.establishedSince?.getTime() },
    });
    expect(most, 'most proto-44 routes seen at once').to.be.at.most(baseline.length + LIMIT);
    expect(goodMissing, 'samples without the good peer routes').to.equal(0);
    expect(kernelRoutes()).to.deep.equal(baseline);
    expect(goodAfter?.state).to.equal('ESTABLISHED');
    expect(goodAfter?.establishedSince?.getTime(), 'the good session was not reset').to.equal(goodBefore?.establishedSince?.getTime());
    // The agent reports it: the peer is down in its /status and a Warning Event names it.
    const reported = peerEntries(JSON.parse(curlInNode('/status'))).filter((p) => p.address === FLOOD.address);
    expect(reported, 'the flooding peer in /status').to.have.length(1);
    expect(reported[0]!.state).to.not.equal('ESTABLISHED');
    const event = await pollUntil('a PodrouteBgpPeerDown Event for the flooding peer', () => eventFor('PodrouteBgpPeerDown', FLOOD.address), { intervalMs: 500 });
    expect(event.type).to.equal('Warning');
  });

  it('raising the limit in the annotation brings the peer back with every prefix (UpdatePeer re-creates it)', async () => {
    const total = LIMIT - 10 + 2000;
    setAnnotationLimit(5000);
    await pollUntil('flood peer Established again with every prefix', async () => {
      const p = await nodePeer(FLOOD.address);
      return p?.state === 'ESTABLISHED' && p.adminState === 'UP' && p.received === total ? true : undefined;
    }, { timeoutMs: 120_000, intervalMs: 500 });
    await pollUntil(`${total + GOOD.routes.length} routes in the kernel`, () => (kernelRoutes().length === total + GOOD.routes.length ? true : undefined), { timeoutMs: 60_000, intervalMs: 500 });
    expect(await readFile(agentLog, 'utf8')).to.include(`update-peer ${FLOOD.address} [maxPrefixes]`);
    // Back to the earlier limit: the peer is over it at once and shut down again; the kernel is cleaned.
    setAnnotationLimit(LIMIT);
    await pollUntil('shut down again at the old limit', async () => ((await nodePeer(FLOOD.address))?.adminState === 'PREFIX_LIMIT' ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
    await pollUntil('flood routes gone again', () => (JSON.stringify(kernelRoutes()) === JSON.stringify([...GOOD.routes].sort()) ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
  });

  it('a peer with a different TCP MD5 password never gets a session and installs nothing; the right password works', async () => {
    const md5 = peers.get('md5')!;
    for (const prefix of MD5.routes) await md5.client.addPath({ prefix, nextHop: MD5.address });
    const md5Config = (await nodeGobgp.listPeerConfigs()).find((c) => c.spec.address === MD5.address);
    expect(md5Config?.spec.password, 'the node side has the password from the file').to.equal(PASSWORD);
    // The peer dials every second (connect retry 1 s): watched until the node's kernel has refused REFUSED_DIALS
    // segments signed with the wrong key (TcpExt TCPMD5Failure of its namespace); none may get through.
    const REFUSED_DIALS = 3;
    const failuresBefore = md5Failures(NODE_NS);
    const refused = (): number => md5Failures(NODE_NS) - failuresBefore;
    const watchStart = Date.now();
    const states = new Set<string>();
    let received = 0;
    let installed = 0;
    for (let r = refused(); r < REFUSED_DIALS; r = refused()) {
      if (Date.now() - watchStart > 40_000) throw new Error(`${r} segments refused by the node's kernel for their MD5 signature after 40 s (expected ${REFUSED_DIALS})`);
      await sleep(500);
      const p = await nodePeer(MD5.address);
      states.add(p?.state ?? 'missing');
      received = Math.max(received, p?.received ?? 0);
      installed = Math.max(installed, kernelRoutes().filter((r) => MD5.routes.includes(r)).length);
    }
    const secondsWatched = Math.round((Date.now() - watchStart) / 100) / 10;
    const refusedByNode = refused();
    await md5.client.updatePeer({ ...md5.spec, password: PASSWORD });
    const fixed = Date.now();
    await pollUntil('MD5 peer Established with the right password', async () => ((await nodePeer(MD5.address))?.state === 'ESTABLISHED' ? true : undefined), { timeoutMs: 90_000, intervalMs: 500 });
    const wrongStates = [...states].sort();
    recordHostilePeer('md5', {
      title: 'a peer with the wrong TCP MD5 password',
      target: 'never Established, nothing received or installed; the right password works',
      passed: !states.has('ESTABLISHED') && received === 0 && installed === 0,
      figures: { secondsWatched, refusedByNode, statesSeen: wrongStates, mostReceived: received, mostInstalled: installed, secondsToEstablishedAfterFix: Math.round((Date.now() - fixed) / 100) / 10 },
    });
    expect(wrongStates.every((st) => ['IDLE', 'CONNECT', 'ACTIVE'].includes(st)), `states with the wrong password: ${wrongStates.join(', ')}`).to.equal(true);
    expect(received, 'paths received with the wrong password').to.equal(0);
    expect(installed, 'routes installed with the wrong password').to.equal(0);
    await pollUntil('MD5 peer route installed', () => (MD5.routes.every((r) => kernelRoutes().includes(r)) ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
  });

  it('the agent never writes the password: not in its log, /status or /metrics', async () => {
    const log = await readFile(agentLog, 'utf8');
    expect(log.length, 'the agent logged (debug level)').to.be.greaterThan(1000);
    expect(log).to.include(MD5.address);
    const outputs = { log, status: curlInNode('/status'), metrics: curlInNode('/metrics') };
    expect(outputs.status).to.include(MD5.address);
    for (const [where, text] of Object.entries(outputs)) {
      expect(text.includes(PASSWORD), `password in the agent's ${where}`).to.equal(false);
      expect(text.includes(WRONG_PASSWORD), `peer password in the agent's ${where}`).to.equal(false);
    }
  });
});
