// Hostile peer (issue 6): a real gobgpd peer of a real node agent announces and withdraws its prefixes in a
// tight loop. The agent's route passes are paced (ROUTE_PASS_PACING): however fast the peer flaps, the kernel
// sees at most one change per prefix per allowed pass, counted with `ip monitor route` in the node's
// namespace, and once the flapping stops the kernel holds exactly what the peer announces last.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { nodeObject, startAgentHost, startBenchApi } from '../../../bench/lib/agent-host.js';
import { Cleanup } from '../../../bench/lib/proc.js';
import { ROUTE_PASS_PACING } from '../../../src/routes/route-selection-loop.js';
import { maxFlappingPasses } from '../../../src/reconcile/loop.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { createNetnsPair, GobgpdFixture, type NetnsPair } from '../bgp/gobgpd-fixture.js';
import { recordHostilePeer } from './fault-results.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

const NODE_ASN = 64512;
const PEER_ASN = 65100;
const PREFIXES = Array.from({ length: 8 }, (_, i) => `10.200.${i}.0/24`);
const FLAP_MS = 8_000;
const PROTO = '44';
/** Namespace, veth and temp dir names. */
const NAME = testLabName('h21fl', 'fl');

/** The node's routes of our protocol for the flapping prefixes: prefix → gateway. */
async function installed(netns: string): Promise<Map<string, string>> {
  const out = await execa('ip', ['-n', netns, '-j', 'route', 'show', 'proto', PROTO], { env: { LC_ALL: 'C' } });
  const routes = JSON.parse(out.stdout || '[]') as { dst: string; gateway?: string }[];
  return new Map(routes.filter((r) => r.dst.startsWith('10.200.')).map((r) => [r.dst, r.gateway ?? '']));
}

describe('resilience: a peer flapping its routes rapidly', function () {
  this.timeout(240_000);
  const cleanup = new Cleanup();
  let net: NetnsPair;
  let peer: GobgpClient;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), `${NAME}-`));
    cleanup.add('work dir', () => rm(dir, { recursive: true, force: true }));
    net = createNetnsPair(NAME, 121);
    cleanup.add('namespaces', () => net.close());
    const fx = new GobgpdFixture(NAME);
    cleanup.add('peer gobgpd', () => fx.close());
    const peerProcess = await fx.spawn('peer', net.b);
    peer = new GobgpClient({ target: peerProcess.target });
    cleanup.add('peer client', () => peer.close());
    await peer.startBgp({ asn: PEER_ASN, routerId: net.v4.b, listenPort: 179, listenAddresses: [net.v4.b] });
    // GTSM as the agent asks of a one-hop eBGP peer by default.
    await peer.addPeer({ address: net.v4.a, asn: NODE_ASN, connectRetry: 1, ttlMin: 254 });

    const api = await startBenchApi(dir, cleanup);
    api.server.create(
      nodeObject({ name: 'flap-node', address: net.v4.a, podCIDRs: ['10.127.0.0/24'], asn: NODE_ASN, peers: [{ address: net.v4.b, asn: PEER_ASN, connectRetry: 1 }] }),
    );
    await startAgentHost(
      { netns: net.a, nodeName: 'flap-node', dir, api, cluster: { asn: NODE_ASN, podRanges: ['10.127.0.0/16'], extraAcceptRanges: ['10.200.0.0/16'] }, expectPeer: net.v4.b },
      cleanup,
    );
  });

  after(async () => {
    const problems = await cleanup.run();
    if (problems.length > 0) console.error(problems.join('\n'));
  });

  it('bounds the kernel route changes by the passes the pacing allows, and ends with exactly the last announcement', async () => {
    for (const prefix of PREFIXES) await peer.addPath({ prefix, nextHop: net.v4.b });
    await pollUntil('the peer routes in the node kernel', async () => (await installed(net.a)).size === PREFIXES.length, { timeoutMs: 120_000, intervalMs: 200 });

    let monitorOutput = '';
    const monitor: ResultPromise = execa('ip', ['-n', net.a, 'monitor', 'route'], { reject: false, buffer: false, env: { LC_ALL: 'C' } });
    monitor.stdout?.on('data', (chunk: Buffer) => {
      monitorOutput += chunk.toString();
    });
    try {
      // The monitor is up once it reports a route change of its own making.
      await execa('ip', ['-n', net.a, 'route', 'add', '10.201.0.1/32', 'dev', `${NAME}a`, 'proto', 'static']);
      await pollUntil('ip monitor to run', () => monitorOutput.includes('10.201.0.1'), { timeoutMs: 10_000, intervalMs: 20 });
      const marked = monitorOutput.length;

      const started = Date.now();
      let announcements = 0;
      while (Date.now() - started < FLAP_MS) {
        for (const prefix of PREFIXES) await peer.deletePathByPrefix({ prefix, nextHop: net.v4.b });
        for (const prefix of PREFIXES) await peer.addPath({ prefix, nextHop: net.v4.b });
        announcements += 2 * PREFIXES.length;
      }
      // The last word: the first half announced, the second half withdrawn.
      const last = PREFIXES.slice(PREFIXES.length / 2);
      for (const prefix of last) await peer.deletePathByPrefix({ prefix, nextHop: net.v4.b });
      const expected = PREFIXES.slice(0, PREFIXES.length / 2);
      await pollUntil(
        'the kernel to hold exactly the last announcement',
        async () => {
          const now = await installed(net.a);
          return now.size === expected.length && expected.every((p) => now.get(p) === net.v4.b);
        });
      const windowMs = Date.now() - started;

      const changes = monitorOutput
        .slice(marked)
        .split('\n')
        .filter((line) => /^(Deleted )?10\.200\.\d+\.0\/24 /.test(line));
      const passes = maxFlappingPasses(ROUTE_PASS_PACING, windowMs);
      const bound = passes * PREFIXES.length;
      console.log(`      ${announcements} path changes by the peer in ${FLAP_MS} ms; ${changes.length} kernel route changes in ${windowMs} ms (bound ${bound}: ${passes} passes x ${PREFIXES.length} prefixes)`);
      recordHostilePeer('flapping', {
        title: 'a peer flapping its routes rapidly',
        target: 'kernel route changes bounded by the paced route passes; the kernel ends with exactly the last announcement',
        passed: announcements > 3 * bound && changes.length <= bound,
        figures: { prefixes: PREFIXES.length, flapMs: FLAP_MS, peerPathChanges: announcements, kernelRouteChanges: changes.length, bound, windowMs },
      });
      // The peer churned far more than the bound allows: without pacing the kernel would have followed it.
      expect(announcements).to.be.greaterThan(3 * bound);
      expect(changes.length).to.be.at.most(bound);
    } finally {
      monitor.kill('SIGTERM');
      await monitor;
    }
  });
});
