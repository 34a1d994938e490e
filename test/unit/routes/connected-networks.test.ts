import { expect } from 'chai';
import { onLinkNetworks, parseConnectedNetworks } from '../../../src/routes/connected-networks.js';

describe('connected networks', () => {
  const link = (ifname: string, flags: string[], addrs: [string, string, number, string][]) => ({
    ifname,
    flags,
    addr_info: addrs.map(([family, local, prefixlen, scope]) => ({ family, local, prefixlen, scope })),
  });

  it('takes global subnets of links that have carrier, canonical and sorted', () => {
    const json = JSON.stringify([
      link('lo', ['LOOPBACK', 'UP', 'LOWER_UP'], [['inet', '127.0.0.1', 8, 'host'], ['inet', '10.96.0.10', 32, 'global']]),
      link('eth0', ['BROADCAST', 'UP', 'LOWER_UP'], [['inet', '10.10.1.11', 24, 'global'], ['inet6', 'fd00:10:1::b', 64, 'global'], ['inet6', 'fe80::1', 64, 'link']]),
      link('eth1', ['BROADCAST', 'UP', 'LOWER_UP'], [['inet', '10.10.2.5', 31, 'global']]),
    ]);
    expect(parseConnectedNetworks(json)).to.deep.equal(['10.10.1.0/24', '10.10.2.4/31', 'fd00:10:1::/64']);
  });

  it('leaves out links without carrier or set down (their next hops are not reachable)', () => {
    const json = JSON.stringify([
      link('eth0', ['BROADCAST', 'UP', 'LOWER_UP'], [['inet', '10.10.1.11', 24, 'global']]),
      link('eth1', ['NO-CARRIER', 'BROADCAST', 'UP'], [['inet', '10.10.2.5', 31, 'global']]),
      link('eth2', ['BROADCAST'], [['inet', '10.10.3.5', 31, 'global']]),
    ]);
    expect(parseConnectedNetworks(json)).to.deep.equal(['10.10.1.0/24']);
  });

  it('the pod bridge is not on-link for learned routes: own podCIDRs are no next-hop networks', () => {
    const connected = ['10.10.1.0/24', '10.244.1.0/24', '10.244.1.0/25', '10.244.0.0/16', 'fd00:10:1::/64', 'fd00:244:1::/64'];
    // A wider network that merely covers a podCIDR stays (a node's own subnet may); the selector refuses next hops
    // inside the podCIDRs whatever the networks.
    expect(onLinkNetworks(connected, ['10.244.1.0/24', 'fd00:244:1::/64'])).to.deep.equal(['10.10.1.0/24', '10.244.0.0/16', 'fd00:10:1::/64']);
  });
});
