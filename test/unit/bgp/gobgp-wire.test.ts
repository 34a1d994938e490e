// The hand-written decoder against messages encoded by protobufjs from GoBGP's own protos.
import { expect } from 'chai';
import { gobgpMethods } from '../../../src/bgp/gobgp-proto.js';
import { WireDecodeError, decodeListPathResponse, decodeWatchEvent } from '../../../src/bgp/gobgp-wire.js';

const T = 'type.googleapis.com/apipb.';
const methods = gobgpMethods();
const encodeWatch = (msg: object): Buffer => methods.WatchEvent!.responseSerialize(msg);
const encodeList = (msg: object): Buffer => methods.ListPath!.responseSerialize(msg);

export function v4Path(prefix: string, len: number, nextHop: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    nlri: { '@type': T + 'IPAddressPrefix', prefix, prefix_len: len },
    pattrs: [
      { '@type': T + 'OriginAttribute', origin: 2 },
      { '@type': T + 'AsPathAttribute', segments: [{ type: 'AS_SEQUENCE', numbers: [65001, 4200000000] }, { type: 'AS_SET', numbers: [7] }] },
      { '@type': T + 'NextHopAttribute', next_hop: nextHop },
      { '@type': T + 'MultiExitDiscAttribute', med: 50 },
      { '@type': T + 'LocalPrefAttribute', local_pref: 200 },
      { '@type': T + 'CommunitiesAttribute', communities: [1, 2] },
    ],
    family: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' },
    neighbor_ip: '10.0.0.2',
    source_asn: 65001,
    age: { seconds: 1700000000, nanos: 5 },
    identifier: 300,
    ...extra,
  };
}

describe('gobgp-wire decoder', () => {
  it('decodes an IPv4 path with every attribute podroute uses, skipping others', () => {
    const buf = encodeWatch({ table: { paths: [v4Path('10.244.2.0', 24, '10.0.0.2')] } });
    expect(decodeWatchEvent(buf)).to.deep.equal({
      kind: 'table',
      paths: [
        {
          prefix: '10.244.2.0/24',
          family: 'ipv4',
          nextHop: '10.0.0.2',
          neighborIp: '10.0.0.2',
          asPath: [65001, 4200000000, 7],
          origin: 'incomplete',
          med: 50,
          localPref: 200,
          communities: ['0:1', '0:2'],
          isWithdraw: false,
        },
      ],
    });
  });

  it('takes the IPv6 next hop from MP_REACH_NLRI, the uuid (a two-byte tag) and local paths (<nil>)', () => {
    const path = {
      nlri: { '@type': T + 'IPAddressPrefix', prefix: 'fd00:244:0:2::', prefix_len: 64 },
      pattrs: [
        { '@type': T + 'OriginAttribute', origin: 0 },
        {
          '@type': T + 'MpReachNLRIAttribute',
          family: { afi: 'AFI_IP6', safi: 'SAFI_UNICAST' },
          next_hops: ['fd00:1::2', 'fe80::1'],
          nlris: [{ '@type': T + 'IPAddressPrefix', prefix: 'fd00:244:0:2::', prefix_len: 64 }],
        },
      ],
      family: { afi: 'AFI_IP6', safi: 'SAFI_UNICAST' },
      neighbor_ip: '<nil>',
      uuid: Buffer.from('00112233445566778899aabbccddeeff', 'hex'),
      is_withdraw: true,
    };
    const [p] = decodeListPathResponse(encodeList({ destination: { prefix: 'fd00:244:0:2::/64', paths: [path] } }));
    expect(p).to.deep.equal({
      prefix: 'fd00:244:0:2::/64',
      family: 'ipv6',
      nextHop: 'fd00:1::2',
      asPath: [],
      origin: 'igp',
      isWithdraw: true,
      uuid: '00112233445566778899aabbccddeeff',
    });
  });

  it('keeps next hops and neighbors right while more distinct ones come than it remembers, and same-length ones apart', () => {
    // 40 peers (the decoder remembers 16 texts), every address as long as the next: only bytes tell them apart.
    const peers = Array.from({ length: 40 }, (_, i) => `10.0.${10 + i}.${100 + i}`);
    for (const round of [0, 1]) {
      peers.forEach((peer, i) => {
        const nextHop = `10.1.${10 + i}.${100 + i}`;
        const buf = encodeWatch({ table: { paths: [v4Path(`10.244.${i}.0`, 24, nextHop, { neighbor_ip: peer })] } });
        const ev = decodeWatchEvent(buf);
        expect(ev?.kind === 'table' && ev.paths[0], `round ${round}, peer ${i}`).to.deep.include({ nextHop, neighborIp: peer, prefix: `10.244.${i}.0/24` });
      });
    }
  });

  it('skips paths of other families', () => {
    const evpn = { nlri: { '@type': T + 'EVPNInclusiveMulticastEthernetTagRoute', ethernet_tag: 1, ip_address: '1.1.1.1' }, family: { afi: 'AFI_L2VPN', safi: 'SAFI_EVPN' } };
    const mcast = v4Path('10.0.0.0', 8, '10.0.0.2', { family: { afi: 'AFI_IP', safi: 'SAFI_MULTICAST' } });
    const ev = decodeWatchEvent(encodeWatch({ table: { paths: [evpn, mcast, v4Path('10.1.0.0', 16, '10.0.0.3')] } }));
    expect(ev?.kind === 'table' && ev.paths.map((p) => p.prefix)).to.deep.equal(['10.1.0.0/16']);
  });

  it('decodes peer events from conf and state', () => {
    const buf = encodeWatch({
      peer: {
        type: 'STATE',
        peer: {
          conf: { neighbor_address: '10.0.0.9', peer_asn: 65009 },
          state: { neighbor_address: '10.0.0.9', peer_asn: 65009, session_state: 'ESTABLISHED', admin_state: 'UP' },
        },
      },
    });
    expect(decodeWatchEvent(buf)).to.deep.equal({ kind: 'peer', type: 'STATE', address: '10.0.0.9', asn: 65009, state: 'ESTABLISHED', adminDown: false });
  });

  it('reports truncated input as a WireDecodeError', () => {
    const buf = encodeWatch({ table: { paths: [v4Path('10.244.2.0', 24, '10.0.0.2')] } });
    expect(() => decodeWatchEvent(buf.subarray(0, buf.length - 7))).to.throw(WireDecodeError);
  });
});
