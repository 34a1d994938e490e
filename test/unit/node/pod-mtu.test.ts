// The pods' MTU: configured, or the MTU of the link holding the node's InternalIP, read from `ip -j address show`.
import { expect } from 'chai';
import { choosePodMtu, parseLinkMtus } from '../../../src/node/pod-mtu.js';

// Trimmed from `ip -j address show` on a lab node (iproute2 6.x): loopback, a 9000 fabric link, a 1400 uplink, the pod bridge.
const IP_JSON = JSON.stringify([
  { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP', 'LOWER_UP'], mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }, { family: 'inet6', local: '::1', prefixlen: 128 }] },
  {
    ifindex: 2,
    ifname: 'eth0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 9000,
    addr_info: [
      { family: 'inet', local: '10.0.1.11', prefixlen: 24, scope: 'global' },
      { family: 'inet6', local: 'fd00:0:1:0:0:0:0:11', prefixlen: 64, scope: 'global' },
      { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
    ],
  },
  { ifindex: 3, ifname: 'eth1', flags: ['UP', 'LOWER_UP'], mtu: 1400, addr_info: [{ family: 'inet6', local: 'fd00:9::11', prefixlen: 64, scope: 'global' }] },
  { ifindex: 4, ifname: 'podroute0', flags: ['UP'], mtu: 1500, addr_info: [{ family: 'inet', local: '10.244.1.1', prefixlen: 24 }] },
  { ifindex: 5, ifname: 'dummy-no-mtu' },
]);

describe('pod MTU', () => {
  const links = parseLinkMtus(IP_JSON);

  it('reads each link with its MTU and canonical addresses, skipping entries without an MTU', () => {
    expect(links.map((l) => l.ifname)).to.deep.equal(['lo', 'eth0', 'eth1', 'podroute0']);
    expect(links[0]).to.include({ ifname: 'lo', mtu: 65536, loopback: true });
    expect(links[1]).to.deep.equal({ ifname: 'eth0', mtu: 9000, addresses: ['10.0.1.11', 'fd00:0:1::11', 'fe80::1'] });
  });

  it('takes the MTU of the link holding the InternalIP (v4 or v6 alone)', () => {
    expect(choosePodMtu({ internalIPs: ['10.0.1.11'], links })).to.deep.equal({ source: 'interface', mtu: 9000, interfaces: ['eth0'] });
    expect(choosePodMtu({ internalIPs: ['fd00:0:1::11'], links })).to.deep.equal({ source: 'interface', mtu: 9000, interfaces: ['eth0'] });
    expect(choosePodMtu({ internalIPs: ['fd00:9::11'], links })).to.deep.equal({ source: 'interface', mtu: 1400, interfaces: ['eth1'] });
  });

  it('with the InternalIPs on links of different MTUs, the smaller: a pod has one MTU for both families', () => {
    expect(choosePodMtu({ internalIPs: ['10.0.1.11', 'fd00:9::11'], links })).to.deep.equal({ source: 'interface', mtu: 1400, interfaces: ['eth0', 'eth1'] });
  });

  it('cni.mtu wins over the interface', () => {
    expect(choosePodMtu({ configured: 1450, internalIPs: ['10.0.1.11'], links })).to.deep.equal({ source: 'config', mtu: 1450 });
  });

  it('reports a node whose InternalIP no link holds, and leaves the MTU to the plugin', () => {
    const choice = choosePodMtu({ internalIPs: ['10.9.9.9'], links });
    expect(choice.source).to.equal('none');
    expect(choice).to.have.property('problem').that.matches(/no interface holds the node's InternalIP \(10\.9\.9\.9\).*set cni\.mtu/);
  });

  it('does not take a loopback\'s MTU (an InternalIP on lo, as in some routed designs): the plugin default, with a warning', () => {
    const choice = choosePodMtu({ internalIPs: ['127.0.0.1'], links });
    expect(choice.source).to.equal('none');
    expect(choice).to.have.property('problem').that.matches(/on a loopback interface \(lo\).*set cni\.mtu/);
  });

  it('never goes above what the CNI bridge plugin takes, and warns below the IPv6 minimum on an IPv6 node', () => {
    expect(choosePodMtu({ internalIPs: ['10.0.1.11'], links: [{ ifname: 'big0', mtu: 65536, addresses: ['10.0.1.11'] }] })).to.include({ mtu: 65535 });
    const small = [{ ifname: 'eth0', mtu: 1200, addresses: ['10.0.1.11', 'fd00::11'] }];
    expect(choosePodMtu({ internalIPs: ['10.0.1.11'], links: small })).to.deep.equal({ source: 'interface', mtu: 1200, interfaces: ['eth0'] });
    expect(choosePodMtu({ internalIPs: ['10.0.1.11', 'fd00::11'], links: small })).to.have.property('warning').that.matches(/below IPv6's minimum of 1280/);
  });
});
