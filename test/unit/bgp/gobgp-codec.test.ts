import { expect } from 'chai';
import { applyPaths } from '../../../src/bgp/learned-table.js';
import {
  classifyGobgpMessage,
  normalizeDefinedSet,
  normalizePeerSpec,
  originatedPathToApi,
  peerSpecFromApi,
  peerStatusFromApi,
  peerToApi,
  GR_DEFERRAL_SECONDS,
  uuidFromHex,
} from '../../../src/bgp/gobgp-codec.js';
import type { LearnedPath } from '../../../src/bgp/types.js';

describe('gobgp-codec', () => {
  it('classifies gobgpd 3.10 error messages (all sent as gRPC UNKNOWN)', () => {
    expect(classifyGobgpMessage("can't overwrite the existing peer: 10.9.9.9")).to.equal('ALREADY_EXISTS');
    expect(classifyGobgpMessage("can't delete a peer configuration for 10.9.9.8")).to.equal('NOT_FOUND');
    expect(classifyGobgpMessage("neighbor that has 10.9.9.8 doesn't exist")).to.equal('NOT_FOUND');
    expect(classifyGobgpMessage("can't find a specified path")).to.equal('NOT_FOUND');
    expect(classifyGobgpMessage("can't delete. defined-set p4 is in use")).to.equal('IN_USE');
    expect(classifyGobgpMessage('statement s1 already defined')).to.equal('ALREADY_EXISTS');
    expect(classifyGobgpMessage('multiple families')).to.equal('INVALID');
  });

  it('round-trips a PeerSpec through the API form', () => {
    const spec = { address: '10.0.0.1', asn: 65001, port: 1179, password: 'x', ebgpMultihopTtl: 2, holdTime: 9, keepaliveInterval: 3, connectRetry: 1, gracefulRestart: { enabled: true, restartTime: 30 }, families: ['ipv6' as const, 'ipv4' as const], description: 'tor:t', maxPrefixes: 10 };
    const api = peerToApi(spec);
    expect(peerSpecFromApi(JSON.parse(JSON.stringify(api)))).to.deep.equal(normalizePeerSpec(spec));
    expect(normalizePeerSpec({ address: '10.0.0.1', asn: 1 })).to.deep.include({ port: 179, holdTime: 90, keepaliveInterval: 30, connectRetry: 120, families: ['ipv4', 'ipv6'] });
    expect(() => normalizePeerSpec({ address: '10.0.0.1', asn: 1, families: [] })).to.throw(/families/);
  });

  it('makes a peer our route-reflector client with a cluster ID and reads it back (a plain peer has none)', () => {
    const api = peerToApi({ address: '10.0.0.1', asn: 64512, routeReflectorClusterId: '10.0.0.254' }) as { route_reflector: unknown };
    expect(api.route_reflector).to.deep.equal({ route_reflector_client: true, route_reflector_cluster_id: '10.0.0.254' });
    expect(peerSpecFromApi(JSON.parse(JSON.stringify(api))).routeReflectorClusterId).to.equal('10.0.0.254');
    expect((peerToApi({ address: '10.0.0.1', asn: 64512 }) as { route_reflector: unknown }).route_reflector).to.deep.equal({ route_reflector_client: false, route_reflector_cluster_id: '' });
    // gobgpd reports a non-client with whatever cluster ID field it holds: that is no client.
    expect(peerSpecFromApi({ conf: { neighbor_address: '10.0.0.1', peer_asn: 1 }, route_reflector: { route_reflector_client: false, route_reflector_cluster_id: '10.0.0.2' } }).routeReflectorClusterId).to.equal('');
    expect(peerStatusFromApi({ conf: { neighbor_address: '10.0.0.1', peer_asn: 1 }, route_reflector: { route_reflector_client: true } }).routeReflectorClient).to.equal(true);
    expect(() => normalizePeerSpec({ address: '10.0.0.1', asn: 1, routeReflectorClusterId: '4294967295' })).to.throw(/routeReflectorClusterId/);
  });

  it('sets GTSM (ttl_security with the minimum TTL) and reads it back; never together with eBGP multihop', () => {
    const api = peerToApi({ address: '10.0.0.1', asn: 65001, ttlMin: 254 }) as { ttl_security: unknown; ebgp_multihop: unknown };
    expect(api.ttl_security).to.deep.equal({ enabled: true, ttl_min: 254 });
    expect(api.ebgp_multihop).to.deep.equal({ enabled: false, multihop_ttl: 0 });
    expect(peerSpecFromApi(JSON.parse(JSON.stringify(api))).ttlMin).to.equal(254);
    expect((peerToApi({ address: '10.0.0.1', asn: 65001 }) as { ttl_security: unknown }).ttl_security).to.deep.equal({ enabled: false, ttl_min: 0 });
    // gobgpd reports a disabled GTSM with whatever minimum it holds: that is off.
    expect(peerSpecFromApi({ conf: { neighbor_address: '10.0.0.1', peer_asn: 65001 }, ttl_security: { enabled: false, ttl_min: 7 } }).ttlMin).to.equal(0);
    expect(() => normalizePeerSpec({ address: '10.0.0.1', asn: 1, ttlMin: 254, ebgpMultihopTtl: 2 })).to.throw(/ttlMin.*ebgpMultihopTtl/);
    expect(() => normalizePeerSpec({ address: '10.0.0.1', asn: 1, ttlMin: 256 })).to.throw(/peer 10\.0\.0\.1\.ttlMin/);
  });

  it('puts the prefix limit on every family of the peer, and none when the limit is 0', () => {
    type Afi = { config: { family: unknown }; prefix_limits?: { family: unknown; max_prefixes: number } };
    const limited = peerToApi({ address: '10.0.0.1', asn: 65001, maxPrefixes: 250 }) as { afi_safis: Afi[] };
    expect(limited.afi_safis.map((a) => [a.config.family, a.prefix_limits])).to.deep.equal([
      [{ afi: 'AFI_IP', safi: 'SAFI_UNICAST' }, { family: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' }, max_prefixes: 250 }],
      [{ afi: 'AFI_IP6', safi: 'SAFI_UNICAST' }, { family: { afi: 'AFI_IP6', safi: 'SAFI_UNICAST' }, max_prefixes: 250 }],
    ]);
    const unlimited = peerToApi({ address: '10.0.0.1', asn: 65001, maxPrefixes: 0 }) as { afi_safis: Afi[] };
    expect(unlimited.afi_safis.every((a) => a.prefix_limits === undefined)).to.equal(true);
    // gobgpd reports a zero limit for a peer without one: equal to "no limit".
    const reported = { conf: { neighbor_address: '10.0.0.1', peer_asn: 65001 }, afi_safis: [{ config: { family: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' }, enabled: true }, prefix_limits: { max_prefixes: 0 } }] };
    expect(peerSpecFromApi(reported).maxPrefixes).to.equal(0);
    expect(() => normalizePeerSpec({ address: '10.0.0.1', asn: 1, maxPrefixes: 1.5 })).to.throw(/peer 10\.0\.0\.1\.maxPrefixes/);
  });

  it('offers graceful restart without the N-bit and without long-lived GR (a hold-timer expiry stays a failure for RFC 8538 peers)', () => {
    // With notification_enabled, an RFC 8538 peer (FRR) would keep our routes as stale after a hold-timer expiry
    // too, as gobgpd helpers already do: a silent failure would then be withdrawn only after holdTime + restartTime.
    const api = peerToApi({ address: '10.0.0.1', asn: 65001, gracefulRestart: { enabled: true, restartTime: 120 } }) as {
      graceful_restart: Record<string, unknown>;
      afi_safis: Record<string, unknown>[];
    };
    expect(api.graceful_restart).to.deep.equal({ enabled: true, restart_time: 120, deferral_time: GR_DEFERRAL_SECONDS, local_restarting: false });
    expect(api.afi_safis.every((a) => a.long_lived_graceful_restart === undefined)).to.equal(true);
  });

  it('claims a local restart only when asked and only for a graceful-restart peer, with a short explicit deferral time', () => {
    const gr = { address: '10.0.0.1', asn: 65001, gracefulRestart: { enabled: true, restartTime: 120 } };
    const restarting = peerToApi(gr, { localRestarting: true }) as { graceful_restart: Record<string, unknown> };
    expect(restarting.graceful_restart).to.deep.include({ local_restarting: true, deferral_time: GR_DEFERRAL_SECONDS });
    expect(GR_DEFERRAL_SECONDS).to.be.within(1, 30); // gobgpd's default (360 s) would hold our routes back for minutes
    // gobgpd holds updates back from a locally restarting peer even without the capability: never for a non-GR peer.
    const plain = peerToApi({ address: '10.0.0.1', asn: 65001 }, { localRestarting: true }) as { graceful_restart: Record<string, unknown> };
    expect(plain.graceful_restart).to.deep.equal({ enabled: false, restart_time: 0, deferral_time: 0, local_restarting: false });
  });

  it('reads a restarting peer back as the same spec: ListPeer echoes local_restarting and deferral_time, the planner must not see a diff', () => {
    const spec = { address: '10.0.0.1', asn: 65001, gracefulRestart: { enabled: true, restartTime: 120 } };
    const reported = JSON.parse(JSON.stringify(peerToApi(spec, { localRestarting: true }))) as { graceful_restart: Record<string, unknown> };
    // What gobgpd 3.10 reports while it is still syncing, and after (it clears local_restarting itself).
    reported.graceful_restart = { ...reported.graceful_restart, local_restarting: true, mode: 'RESTARTING' };
    expect(peerSpecFromApi(reported)).to.deep.equal(normalizePeerSpec(spec));
    reported.graceful_restart = { ...reported.graceful_restart, local_restarting: false };
    expect(peerSpecFromApi(reported)).to.deep.equal(normalizePeerSpec(spec));
  });

  it("reports gobgpd's administrative state: a peer shut down at its prefix limit shows PREFIX_LIMIT", () => {
    const peer = (state: Record<string, unknown>) => ({ conf: { neighbor_address: '10.0.0.1', peer_asn: 65001 }, state });
    expect(peerStatusFromApi(peer({ session_state: 'IDLE', admin_state: 'PFX_CT' }))).to.deep.include({ state: 'IDLE', adminState: 'PREFIX_LIMIT' });
    expect(peerStatusFromApi(peer({ session_state: 'IDLE', admin_state: 'DOWN' })).adminState).to.equal('DOWN');
    expect(peerStatusFromApi(peer({ session_state: 'ESTABLISHED', admin_state: 'UP' })).adminState).to.equal('UP');
    expect(peerStatusFromApi(peer({ session_state: 'ACTIVE' })).adminState).to.equal('UP');
  });

  it('builds v4 paths with NEXT_HOP and v6 paths with MP_REACH_NLRI', () => {
    expect(JSON.stringify(originatedPathToApi({ prefix: '10.244.1.0/24', nextHop: '10.0.0.1' }).path)).to.include('NextHopAttribute');
    const v6 = JSON.stringify(originatedPathToApi({ prefix: 'fd00::/64', nextHop: 'fd00:1::1' }).path);
    expect(v6).to.include('MpReachNLRIAttribute').and.include('fd00:1::1');
    expect(() => originatedPathToApi({ prefix: 'fd00::/64', nextHop: '10.0.0.1' })).to.throw(/path.nextHop/);
  });

  it('refuses an empty uuid (DeletePath without one deletes every local path)', () => {
    expect(() => uuidFromHex('uuid', '')).to.throw(/uuid/);
  });

  it('normalizes defined sets and refuses mixed families and bad lengths', () => {
    expect(normalizeDefinedSet({ kind: 'neighbor', name: 'n', neighbors: ['10.0.0.2', '10.0.0.1', '10.0.0.2'] }).neighbors).to.deep.equal(['10.0.0.1/32', '10.0.0.2/32']);
    expect(() => normalizeDefinedSet({ kind: 'prefix', name: 'p', prefixes: [{ prefix: '10.0.0.0/8', minLength: 8, maxLength: 32 }, { prefix: 'fd00::/8', minLength: 8, maxLength: 128 }] })).to.throw(/one address family/);
    expect(() => normalizeDefinedSet({ kind: 'prefix', name: 'p', prefixes: [{ prefix: '10.0.0.0/8', minLength: 4, maxLength: 32 }] })).to.throw(/prefixes\[0\]/);
  });
});

describe('applyPaths (learned table, replace per prefix)', () => {
  const p = (prefix: string, nh: string, over: Partial<LearnedPath> = {}): LearnedPath => ({ prefix, family: 'ipv4', nextHop: nh, neighborIp: nh, asPath: [65001], isWithdraw: false, ...over });
  it('replaces, shrinks and removes the ECMP set of a prefix, ignoring our own paths', () => {
    const t = new Map<string, LearnedPath[]>();
    expect([...applyPaths(t, { kind: 'paths', paths: [p('10.1.0.0/24', '10.0.0.2'), p('10.1.0.0/24', '10.0.0.3'), p('10.9.0.0/24', '10.0.0.1', { neighborIp: undefined })] })]).to.deep.equal(['10.1.0.0/24']);
    expect(t.get('10.1.0.0/24')!.map((x) => x.nextHop)).to.deep.equal(['10.0.0.2', '10.0.0.3']);
    expect(t.has('10.9.0.0/24')).to.equal(false);
    applyPaths(t, { kind: 'paths', paths: [p('10.1.0.0/24', '10.0.0.3')] });
    expect(t.get('10.1.0.0/24')!.map((x) => x.nextHop)).to.deep.equal(['10.0.0.3']);
    expect(applyPaths(t, { kind: 'paths', paths: [p('10.1.0.0/24', '10.0.0.3')] }).size).to.equal(0);
    applyPaths(t, { kind: 'paths', paths: [p('10.1.0.0/24', '10.0.0.3', { isWithdraw: true })] });
    expect(t.size).to.equal(0);
  });
});
