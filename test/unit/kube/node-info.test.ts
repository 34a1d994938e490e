import { expect } from 'chai';
import type { Node } from '../../../src/kube/wire.js';
import { nodeInfoFromObject, parsePeersAnnotation } from '../../../src/kube/node-info.js';

function node(annotations: Record<string, string>, spec: Node['spec'] = { podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] }): Node {
  return {
    metadata: { name: 'worker-1', labels: { rack: 'r1' }, annotations },
    spec,
    status: { addresses: [{ type: 'InternalIP', address: '10.0.1.11' }, { type: 'Hostname', address: 'worker-1' }, { type: 'InternalIP', address: 'fd00:0:1::11' }] },
  };
}

describe('node info', () => {
  it('reads podCIDRs, InternalIPs, ASN, router ID and peers', () => {
    const info = nodeInfoFromObject(
      node({
        'podroute.io/asn': '64601',
        'podroute.io/router-id': '10.0.1.11',
        'podroute.io/peers': JSON.stringify([{ address: '10.0.1.1', asn: 65101, holdTime: 9 }]),
      }),
    );
    expect(info.podCIDRs).to.deep.equal(['10.244.1.0/24', 'fd00:10:244:1::/64']);
    expect(info.internalIPs).to.deep.equal(['10.0.1.11', 'fd00:0:1::11']);
    expect(info.asn).to.equal(64601);
    expect(info.routerId).to.equal('10.0.1.11');
    expect(info.annotationPeers).to.deep.equal([{ address: '10.0.1.1', asn: 65101, holdTime: 9 }]);
    expect(info.warnings).to.deep.equal([]);
  });

  it('refuses InternalIPs with a zone index or in a non-standard form, keeping the others', () => {
    const n: Node = {
      ...node({}),
      status: {
        addresses: [
        { type: 'InternalIP', address: 'fe80::1%eth0' },
        { type: 'InternalIP', address: '010.0.1.11' },
        { type: 'InternalIP', address: '10.0.1.11' },
          { type: 'InternalIP', address: 'FD00:0:1:0::11' },
        ],
      },
    };
    const info = nodeInfoFromObject(n);
    expect(info.internalIPs).to.deep.equal(['10.0.1.11', 'fd00:0:1::11']);
    expect(info.warnings.join('\n')).to.include('"fe80::1%eth0"');
    expect(info.warnings.join('\n')).to.include('"010.0.1.11"');
  });

  it('skips annotation peers whose address or local address carries a zone', () => {
    const { peers, problems } = parsePeersAnnotation(
      JSON.stringify([{ address: 'fe80::1%eth0', asn: 65101 }, { address: 'fd00::1', asn: 65101, localAddress: 'fd00::2%eth0' }, { address: 'fd00::1', asn: 65101 }]),
    );
    expect(peers).to.deep.equal([{ address: 'fd00::1', asn: 65101 }]);
    expect(problems).to.have.length(2);
    expect(problems[0]).to.match(/peers\[0\]: skipped: address: not an IP address/);
  });

  it('refuses annotations that validate as types but endanger the node', () => {
    const info = nodeInfoFromObject(
      node({
        'podroute.io/asn': '23456',
        'podroute.io/router-id': '127.0.0.1',
        'podroute.io/peers': JSON.stringify([
          { address: '0.0.0.0', asn: 65101 },
          { address: '127.0.0.1', asn: 65101 },
          { address: '224.0.0.5', asn: 65101 },
          { address: '10.0.1.1', asn: 23456 },
          { address: '10.0.1.1', asn: 65101, holdTime: 1 },
          { address: '10.0.1.1', asn: 65101, holdTime: 9, keepaliveInterval: 9 },
          { address: '10.0.1.1', asn: 65101, holdTime: 9, keepaliveInterval: 3 },
        ]),
      }),
    );
    expect(info.asn).to.equal(undefined);
    expect(info.routerId).to.equal(undefined);
    expect(info.annotationPeers).to.deep.equal([{ address: '10.0.1.1', asn: 65101, holdTime: 9, keepaliveInterval: 3 }]);
    const text = info.warnings.join('\n');
    expect(text).to.match(/podroute\.io\/asn: "23456" .*AS_TRANS/);
    expect(text).to.match(/podroute\.io\/router-id: "127\.0\.0\.1"/);
    for (let i = 0; i < 6; i++) expect(text).to.include(`podroute.io/peers[${i}]: skipped`);
    expect(text).to.match(/peers\[5\]: skipped: keepaliveInterval: must be less than the hold time/);
    for (const id of ['0.0.0.0', '255.255.255.255', '239.0.0.1']) expect(nodeInfoFromObject(node({ 'podroute.io/router-id': id })).routerId).to.equal(undefined);
  });

  it('falls back to spec.podCIDR and canonicalizes', () => {
    const info = nodeInfoFromObject(node({}, { podCIDR: '10.244.2.9/24' }));
    expect(info.podCIDRs).to.deep.equal(['10.244.2.0/24']);
  });

  it('ignores a podCIDR in a form only a loose parser reads (two-part or octal IPv4), with a warning naming it', () => {
    const info = nodeInfoFromObject(node({}, { podCIDRs: ['10.244/16', '010.244.3.0/24', 'fd00:10:244:1::/64'] }));
    expect(info.podCIDRs).to.deep.equal(['fd00:10:244:1::/64']);
    expect(info.warnings).to.deep.equal([
      'spec.podCIDRs: ignoring "10.244/16": not a CIDR',
      'spec.podCIDRs: ignoring "010.244.3.0/24": not a CIDR',
    ]);
  });

  it('turns bad annotations into warnings and keeps the rest', () => {
    const info = nodeInfoFromObject(
      node({
        'podroute.io/asn': '65536x',
        'podroute.io/router-id': 'fd00::1',
        'podroute.io/peers': JSON.stringify([
          { address: '10.0.1.1', asn: 65101 },
          { address: 'not-an-ip', asn: 65101 },
          { address: '10.0.1.2', asn: 65101, password: 'secret' },
          { address: '10.0.1.3', asn: 99999999999 },
        ]),
      }),
    );
    expect(info.asn).to.equal(undefined);
    expect(info.routerId).to.equal(undefined);
    expect(info.annotationPeers.map((p) => p.address)).to.deep.equal(['10.0.1.1']);
    expect(info.warnings).to.have.length(5);
    expect(info.warnings.join('\n')).to.match(/podroute\.io\/peers\[1\]: skipped: address: not an IP/);
    expect(info.warnings.join('\n')).to.match(/podroute\.io\/peers\[2\]: skipped: plain passwords are refused/);
    expect(info.warnings.join('\n')).not.to.include('secret');
  });

  it('reads a per-peer prefix limit and skips a peer whose limit is bad, naming the key', () => {
    const info = nodeInfoFromObject(
      node({
        'podroute.io/peers': JSON.stringify([
          { address: '10.0.1.1', asn: 65101, maxPrefixes: 200 },
          { address: '10.0.1.2', asn: 65101, maxPrefixes: -5 },
          { address: '10.0.1.3', asn: 65101, maxPrefixes: '100' },
          { address: '10.0.1.4', asn: 65101, maxPrefixes: 0 },
        ]),
      }),
    );
    expect(info.annotationPeers).to.deep.equal([
      { address: '10.0.1.1', asn: 65101, maxPrefixes: 200 },
      { address: '10.0.1.4', asn: 65101, maxPrefixes: 0 },
    ]);
    expect(info.warnings).to.have.length(2);
    expect(info.warnings[0]).to.match(/^annotation podroute\.io\/peers\[1\]: skipped: maxPrefixes: /);
    expect(info.warnings[1]).to.match(/^annotation podroute\.io\/peers\[2\]: skipped: maxPrefixes: Expected number/);
    expect(info.podCIDRs).to.deep.equal(['10.244.1.0/24', 'fd00:10:244:1::/64']);
  });

  it('rejects a peers annotation that is not a JSON list', () => {
    expect(parsePeersAnnotation('{"address":"10.0.0.1"}').problems[0]).to.match(/must be a JSON list/);
    expect(parsePeersAnnotation('[{').problems[0]).to.match(/not valid JSON/);
    expect(parsePeersAnnotation(undefined)).to.deep.equal({ peers: [], problems: [] });
  });
});
