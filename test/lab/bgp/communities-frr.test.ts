// Communities at a real FRR ToR: our gobgpd (driven by BgpReconciler) in netns a, FRR zebra + bgpd in netns b with
// an inbound route-map that accepts only prefixes carrying a community (standard for pod CIDRs, large for Service
// addresses). The ToR must hold exactly the tagged prefixes, with the communities on them, and follow a change of
// the sets (the path is re-added in gobgpd, which replaces it: one path per prefix, no withdraw in between needed).
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BgpReconciler, type BgpDesiredState } from '../../../src/bgp/bgp-reconciler.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { frrFiles, startFrrDaemon, vtysh, type FrrFiles } from '../../../src/lab/frr.js';
import type { OriginatedPath } from '../../../src/bgp/types.js';
import { GobgpdFixture, createNetnsPair, type NetnsPair } from './gobgpd-fixture.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

const NAME = testLabName('h1cm', 'cm');
const OUR_ASN = 64512;
const TOR_ASN = 65100;
const POD4 = '10.244.1.0/24';
const POD6 = 'fd00:244:0:1::/64';
const SERVICE = '203.0.113.5/32';

interface TorRoute {
  communities: string[];
  largeCommunities: string[];
}

describe('communities at an FRR ToR whose route-map matches them', function () {
  this.timeout(120_000);
  let fx: GobgpdFixture;
  let net: NetnsPair;
  let files: FrrFiles;
  const frrPids: number[] = [];
  let client: GobgpClient;
  let reconciler: BgpReconciler;
  const stop = new AbortController();
  let running: Promise<void> | undefined;

  const desired = (pods: Partial<OriginatedPath>, service: Partial<OriginatedPath>): BgpDesiredState => ({
    global: { asn: OUR_ASN, routerId: net.v4.a, listenPort: 179 },
    peers: [
      { address: net.v4.b, asn: TOR_ASN, connectRetry: 1, holdTime: 9, keepaliveInterval: 3, families: ['ipv4'], description: 'tor:v4' },
      { address: net.v6.b, asn: TOR_ASN, connectRetry: 1, holdTime: 9, keepaliveInterval: 3, families: ['ipv6'], description: 'tor:v6' },
    ],
    advertise: [
      { prefix: POD4, nextHop: net.v4.a, ...pods },
      { prefix: POD6, nextHop: net.v6.a, ...pods },
    ],
    services: { paths: [{ prefix: SERVICE, nextHop: net.v4.a, ...service }], ranges: ['203.0.113.0/24'], peers: [net.v4.b] },
    importRules: { nodePeers: [], externalPeers: [net.v4.b, net.v6.b], acceptRanges: ['10.244.0.0/16'], ownPodCIDRs: [POD4, POD6] },
  });

  /** What the ToR holds, per prefix, with the communities FRR shows on the best path. */
  const torTable = async (): Promise<Record<string, TorRoute>> => {
    const out: Record<string, TorRoute> = {};
    for (const family of ['ipv4', 'ipv6']) {
      const table = JSON.parse(await vtysh(files, `show bgp ${family} unicast json`)) as { routes?: Record<string, unknown> };
      for (const prefix of Object.keys(table.routes ?? {})) {
        const detail = JSON.parse(await vtysh(files, `show bgp ${family} unicast ${prefix} json`)) as {
          paths?: { community?: { string?: string }; largeCommunity?: { string?: string } }[];
        };
        const best = detail.paths?.[0];
        const split = (s: string | undefined): string[] => (s === undefined || s === '' ? [] : s.split(' ').sort());
        out[prefix] = { communities: split(best?.community?.string), largeCommunities: split(best?.largeCommunity?.string) };
      }
    }
    return out;
  };

  before(async function () {
    fx = new GobgpdFixture(NAME);
    net = createNetnsPair(NAME, 223);
    files = frrFiles(path.join(fx.dir, 'tor'));
    mkdirSync(files.runDir, { recursive: true });
    writeFileSync(files.zebraConf, ['hostname tor', `log file ${files.zebraLog}`, ''].join('\n'));
    // The ToR's operator policy: pod CIDRs tagged 65000:100, Service addresses tagged with the large 65000:2:2,
    // nothing else (the route-map's implicit deny).
    writeFileSync(
      files.bgpdConf,
      [
        'frr defaults datacenter',
        'hostname tor',
        `log file ${files.bgpdLog}`,
        'bgp community-list standard PODS seq 5 permit 65000:100',
        'bgp large-community-list standard SERVICES seq 5 permit 65000:2:2',
        'route-map FROM-NODES permit 10',
        ' match community PODS',
        'route-map FROM-NODES permit 20',
        ' match large-community SERVICES',
        `router bgp ${TOR_ASN}`,
        ` bgp router-id ${net.v4.b}`,
        ' no bgp default ipv4-unicast',
        ' no bgp ebgp-requires-policy',
        ...[net.v4.a, net.v6.a].flatMap((n) => [` neighbor ${n} remote-as ${OUR_ASN}`, ` neighbor ${n} timers 3 9`, ` neighbor ${n} timers connect 1`]),
        ' address-family ipv4 unicast',
        `  neighbor ${net.v4.a} activate`,
        `  neighbor ${net.v4.a} route-map FROM-NODES in`,
        ' exit-address-family',
        ' address-family ipv6 unicast',
        `  neighbor ${net.v6.a} activate`,
        `  neighbor ${net.v6.a} route-map FROM-NODES in`,
        ' exit-address-family',
        '',
      ].join('\n'),
    );
    for (const daemon of ['zebra', 'bgpd'] as const) frrPids.push(await startFrrDaemon(net.b, daemon, files, `${NAME}-tor`));
    const ours = await fx.spawn('ours', net.a);
    client = new GobgpClient({ target: ours.target });
    reconciler = new BgpReconciler({ client, resyncIntervalMs: 2_000, retryBackoffMs: { initial: 200, max: 1_000 } });
  });

  after(async () => {
    stop.abort();
    await running?.catch(() => undefined);
    client?.close();
    for (const pid of frrPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await fx?.close();
    net?.close();
  });

  it('accepts exactly the tagged prefixes and shows their communities; a changed set moves them', async () => {
    // Pod CIDRs tagged for the ToR; the Service address carries only a standard community the ToR does not match.
    reconciler.setDesired(desired({ communities: ['65000:100', '65001:7'], largeCommunities: ['65000:1:2'], localPref: 300 }, { communities: ['65000:200'] }));
    running = reconciler.start(stop.signal);
    await pollUntil('both sessions established', () => reconciler.status().peers.established === 2, { timeoutMs: 60_000, intervalMs: 200 });
    await pollUntil('the ToR holds the pod CIDRs', async () => Object.keys(await torTable()).length === 2, { timeoutMs: 20_000 });
    const tagged = { communities: ['65000:100', '65001:7'], largeCommunities: ['65000:1:2'] };
    expect(await torTable()).to.deep.equal({ [POD4]: tagged, [POD6]: tagged });
    // The Service path was sent (the export policy lets it out) and refused by the route-map, not held back by us.
    const adjOut = [];
    for await (const p of client.listPaths({ family: 'ipv4', table: 'adj-out', neighbor: net.v4.b })) adjOut.push(p.prefix);
    expect(adjOut.sort()).to.deep.equal([POD4, SERVICE].sort());

    const ours = [];
    for await (const p of client.listPaths({ family: 'ipv4', table: 'global' })) if (p.prefix === POD4) ours.push(p);
    expect(ours.map((p) => p.localPref), 'gobgpd keeps our LOCAL_PREF (sent to iBGP peers only)').to.deep.equal([300]);

    // Swap: pods lose the ToR's community, the Service address gains the large one and no-export (gobgpd 3.10 sends
    // its own no-export paths to eBGP peers: the well-known name is for the ToR, which shows it by FRR's name).
    reconciler.setDesired(desired({ communities: ['65001:7'] }, { communities: ['65000:200', 'no-export'], largeCommunities: ['65000:2:2'] }));
    await pollUntil('the ToR holds only the Service address', async () => JSON.stringify(Object.keys(await torTable())) === JSON.stringify([SERVICE]), { timeoutMs: 20_000 });
    expect(await torTable()).to.deep.equal({ [SERVICE]: { communities: ['65000:200', 'no-export'], largeCommunities: ['65000:2:2'] } });
    // gobgpd replaced each path in place: one local path per prefix, with the new attributes (LOCAL_PREF gone too).
    const local = [];
    for (const family of ['ipv4', 'ipv6'] as const) {
      for await (const p of client.listPaths({ family, table: 'global' })) if (p.neighborIp === undefined) local.push(p);
    }
    expect(local.map((p) => [p.prefix, p.communities, p.largeCommunities, p.localPref]).sort()).to.deep.equal(
      [
        [POD4, ['65001:7'], undefined, undefined],
        [POD6, ['65001:7'], undefined, undefined],
        [SERVICE, ['65000:200', '65535:65281'], ['65000:2:2'], undefined],
      ].sort(),
    );
  });
});
