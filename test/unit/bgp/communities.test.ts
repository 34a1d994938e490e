// Communities: parsing as operators write them, and the path attributes podroute gives AddPath, decoded back by the
// hand-written decoder of gobgpd's wire format (the same bytes gobgpd's ListPath answers carry).
import { expect } from 'chai';
import { parseCommunity, parseCommunityList, WELL_KNOWN_COMMUNITIES } from '../../../src/bgp/communities.js';
import { GobgpError, normalizePathAttributes, originatedPathToApi } from '../../../src/bgp/gobgp-codec.js';
import { gobgpMethods } from '../../../src/bgp/gobgp-proto.js';
import { decodeListPathResponse } from '../../../src/bgp/gobgp-wire.js';
import type { OriginatedPath } from '../../../src/bgp/types.js';

const methods = gobgpMethods();

/** AddPath's path, serialized by protobufjs from GoBGP's protos, as ListPath would carry it, and decoded back. */
function roundTrip(path: OriginatedPath): ReturnType<typeof decodeListPathResponse>[number] | undefined {
  const api = originatedPathToApi(path).path;
  const bytes = methods.ListPath!.responseSerialize({ destination: { prefix: path.prefix, paths: [api] } });
  return decodeListPathResponse(bytes)[0];
}

describe('communities', () => {
  it('reads standard, large and well-known communities, with the values of RFC 1997, 3765 and 7999', () => {
    expect(parseCommunity('65000:100')).to.deep.equal({ kind: 'standard', value: 65000 * 65536 + 100 });
    expect(parseCommunity(' 0:0 ')).to.deep.equal({ kind: 'standard', value: 0 });
    expect(parseCommunity('4200000000:1:4294967295')).to.deep.equal({ kind: 'large', value: { globalAdmin: 4200000000, localData1: 1, localData2: 4294967295 } });
    expect(parseCommunity('no-export')).to.deep.equal({ kind: 'standard', value: 0xffffff01 });
    expect(parseCommunity('NO-ADVERTISE')).to.deep.equal({ kind: 'standard', value: 0xffffff02 });
    expect(parseCommunity('no-peer')).to.deep.equal({ kind: 'standard', value: 0xffffff04 });
    expect(parseCommunity('blackhole')).to.deep.equal({ kind: 'standard', value: 65535 * 65536 + 666 });
    expect(Object.keys(WELL_KNOWN_COMMUNITIES).sort()).to.deep.equal(['blackhole', 'no-advertise', 'no-export', 'no-peer']);
  });

  it('refuses what is none of them, saying which form was meant', () => {
    for (const [text, why] of [
      ['65536:1', /two numbers 0\.\.65535/],
      ['1:-1', /two numbers/],
      ['65000', /"ASN:value", "ASN:value:value" \(large\) or one of no-export/],
      ['a:b', /two numbers/],
      ['1:2:4294967296', /three numbers 0\.\.4294967295/],
      ['1:2:3:4', /is not a community/],
      ['', /is not a community/],
      ['local-AS', /one of no-export, no-advertise, no-peer, blackhole/],
      ['1.5:2', /two numbers/],
    ] as const) {
      const parsed = parseCommunity(text);
      expect(parsed, text).to.have.property('problem').that.matches(why);
    }
  });

  it('sorts a mixed list into canonical standard and large communities, without duplicates, naming bad entries by index', () => {
    const list = parseCommunityList(['65000:100', 'no-export', '65000:1:2', '65000:100', '65535:65281', '1:2:3', 'bad']);
    expect(list.communities).to.deep.equal(['65000:100', '65535:65281']);
    expect(list.largeCommunities).to.deep.equal(['1:2:3', '65000:1:2']);
    expect(list.problems.map((p) => p.index)).to.deep.equal([6]);
  });
});

describe('path attributes on AddPath', () => {
  it('round-trips communities, large communities and LOCAL_PREF through the wire decoder, v4 and v6', () => {
    const v4 = roundTrip({ prefix: '10.244.1.0/24', nextHop: '10.0.0.1', communities: ['65000:100', 'no-export'], largeCommunities: ['65000:1:2', '4200000000:7:8'], localPref: 250 });
    expect(v4).to.include({ prefix: '10.244.1.0/24', nextHop: '10.0.0.1', localPref: 250 });
    expect(v4?.communities).to.deep.equal(['65000:100', '65535:65281']);
    expect(v4?.largeCommunities).to.deep.equal(['65000:1:2', '4200000000:7:8']);
    const v6 = roundTrip({ prefix: 'fd00:244:0:1::/64', nextHop: 'fd00:1::11', communities: ['blackhole'] });
    expect(v6).to.include({ prefix: 'fd00:244:0:1::/64', nextHop: 'fd00:1::11' });
    expect(v6?.communities).to.deep.equal(['65535:666']);
    expect(v6).not.to.have.property('largeCommunities');
    expect(v6).not.to.have.property('localPref');
  });

  it('adds no attribute for empty lists and no local preference (gobgpd then reports none)', () => {
    const api = originatedPathToApi({ prefix: '10.244.1.0/24', nextHop: '10.0.0.1', communities: [], largeCommunities: [] }).path;
    const types = (api.pattrs as { '@type': string }[]).map((a) => a['@type'].replace(/.*\./, ''));
    expect(types).to.deep.equal(['OriginAttribute', 'NextHopAttribute']);
    const decoded = roundTrip({ prefix: '10.244.1.0/24', nextHop: '10.0.0.1' });
    expect(decoded).not.to.have.any.keys('communities', 'largeCommunities', 'localPref');
  });

  it('normalizes attributes and refuses bad ones naming the field', () => {
    expect(normalizePathAttributes('advertise[0]', { communities: ['no-export', '1:1', '1:1'], largeCommunities: [], localPref: 0 })).to.deep.equal({ communities: ['1:1', '65535:65281'], localPref: 0 });
    const refused = (attrs: object): string => {
      try {
        normalizePathAttributes('advertise[0]', attrs);
      } catch (err) {
        expect(err).to.be.instanceOf(GobgpError);
        return (err as Error).message;
      }
      throw new Error('expected a refusal');
    };
    expect(refused({ communities: ['1:1', '70000:1'] })).to.match(/^advertise\[0\]\.communities\[1\]: "70000:1" is not a community/);
    expect(refused({ communities: ['1:2:3'] })).to.match(/^advertise\[0\]\.communities: 1:2:3 is not a standard community/);
    expect(refused({ largeCommunities: ['no-export'] })).to.match(/^advertise\[0\]\.largeCommunities: 65535:65281 is not a large community/);
    expect(refused({ localPref: -1 })).to.match(/^advertise\[0\]\.localPref: must be an integer/);
    expect(refused({ localPref: 2 ** 32 })).to.match(/^advertise\[0\]\.localPref/);
    expect(() => originatedPathToApi({ prefix: '10.244.1.0/24', nextHop: '10.0.0.1', communities: ['x'] })).to.throw(/path\.communities\[0\]/);
  });
});
