import { expect } from 'chai';
import { RouteInputError } from '../../../src/routes/errors.js';
import { IpRouteTable, parseBatchErrors, parseIpRouteJson, renderBatch } from '../../../src/routes/kernel-routes.js';
import type { RouteChange } from '../../../src/routes/plan-routes.js';

// Captured from `ip -N -j [-6] route show table main` (iproute2 6.1, kernel 6.18) in a test namespace.
const V4_DUMP = JSON.stringify([
  { dst: '10.1.0.0/24', protocol: '44', flags: [], nexthops: [{ gateway: '10.250.0.3', dev: 'h5v0', weight: 1, flags: [] }, { gateway: '10.250.0.2', dev: 'h5v0', weight: 1, flags: [] }] },
  { dst: '10.1.2.0/24', gateway: '10.250.0.2', dev: 'h5v0', protocol: '12', flags: [] },
  { dst: '10.1.3.0/24', gateway: '10.250.0.2', dev: 'h5v0', protocol: '44', metric: 50, flags: [] },
  { dst: '10.1.4.5', gateway: '10.250.0.3', dev: 'h5v0', protocol: '44', flags: [] },
  { type: '6', dst: '10.1.5.0/24', protocol: '44', flags: [] },
  { dst: '10.1.6.0/24', via: { family: 'inet6', host: 'fd00:250::2' }, dev: 'h5v0', protocol: '44', flags: [] },
  { dst: 'default', gateway: '10.250.0.254', dev: 'h5v0', protocol: '4', flags: [] },
  { dst: '10.250.0.0/24', dev: 'h5v0', protocol: '2', scope: '253', prefsrc: '10.250.0.1', flags: [] },
]);
const V6_DUMP = JSON.stringify([
  { dst: 'fd00:250::/64', dev: 'h5v0', protocol: '2', metric: 256, flags: [], pref: 'medium' },
  { dst: 'fd10::/64', protocol: '44', metric: 1024, flags: [], pref: 'medium', nexthops: [{ gateway: 'fd00:250::2', dev: 'h5v0', weight: 1, flags: [] }, { gateway: 'fd00:250::3', dev: 'h5v0', weight: 1, flags: [] }] },
  { dst: 'fd10:0:0:1::/64', gateway: 'fd00:250::2', dev: 'h5v0', protocol: '44', metric: 1024, flags: [], pref: 'medium' },
]);

describe('routes/kernel-routes (pure parts)', () => {
  it('parses single-path, multipath, host, blackhole, via-inet6 and default routes', () => {
    expect(parseIpRouteJson(V4_DUMP, 'ipv4')).to.deep.equal([
      { prefix: '10.1.0.0/24', nextHops: ['10.250.0.2', '10.250.0.3'], protocol: 44 },
      { prefix: '10.1.2.0/24', nextHops: ['10.250.0.2'], protocol: 12 },
      { prefix: '10.1.3.0/24', nextHops: ['10.250.0.2'], protocol: 44, metric: 50 },
      { prefix: '10.1.4.5/32', nextHops: ['10.250.0.3'], protocol: 44 },
      { prefix: '10.1.5.0/24', nextHops: [], protocol: 44, type: '6' },
      { prefix: '10.1.6.0/24', nextHops: ['fd00:250::2'], protocol: 44 },
      { prefix: '0.0.0.0/0', nextHops: ['10.250.0.254'], protocol: 4 },
      { prefix: '10.250.0.0/24', nextHops: [], protocol: 2 },
    ]);
  });

  it('parses IPv6 routes and drops the default metric so it compares equal to what we install', () => {
    expect(parseIpRouteJson(V6_DUMP, 'ipv6')).to.deep.equal([
      { prefix: 'fd00:250::/64', nextHops: [], protocol: 2, metric: 256 },
      { prefix: 'fd10::/64', nextHops: ['fd00:250::2', 'fd00:250::3'], protocol: 44 },
      { prefix: 'fd10:0:0:1::/64', nextHops: ['fd00:250::2'], protocol: 44 },
    ]);
    expect(parseIpRouteJson('', 'ipv6')).to.deep.equal([]);
    expect(() => parseIpRouteJson('{"not":"a list"}', 'ipv4')).to.throw(/JSON array/);
  });

  it('renders one batch: add for new prefixes, replace for ours, ECMP as nexthop lists, deletes with their metric', () => {
    const changes: RouteChange[] = [
      { kind: 'delete', route: { prefix: '10.1.9.0/24', nextHops: ['10.250.0.2'], protocol: 44 } },
      { kind: 'delete', route: { prefix: '10.1.3.0/24', nextHops: ['10.250.0.2'], protocol: 44, metric: 50 } },
      { kind: 'delete', route: { prefix: 'fd10:0:0:1::/64', nextHops: ['fd00:250::2'], protocol: 44 } },
      { kind: 'replace', route: { prefix: '10.1.0.0/24', nextHops: ['10.250.0.2', '10.250.0.3'] } },
      { kind: 'replace', route: { prefix: 'fd10::/64', nextHops: ['fd00:250::2'] }, previous: { prefix: 'fd10::/64', nextHops: [], protocol: 44 } },
      { kind: 'conflict', route: { prefix: '10.1.2.0/24', nextHops: ['10.250.0.2'] }, foreign: [] },
    ];
    const batch = renderBatch(changes, 44);
    expect(batch.lines).to.deep.equal([
      'route del 10.1.9.0/24 proto 44 metric 0',
      'route del 10.1.3.0/24 proto 44 metric 50',
      'route del fd10:0:0:1::/64 proto 44 metric 1024',
      'route add 10.1.0.0/24 proto 44 nexthop via 10.250.0.2 nexthop via 10.250.0.3',
      'route replace fd10::/64 proto 44 via fd00:250::2',
    ]);
    expect(batch.changes).to.deep.equal(changes.slice(0, 5));
  });

  it('attributes `ip -batch -force` errors to their lines', () => {
    const stderr = 'RTNETLINK answers: File exists\nCommand failed -:1\nError: Nexthop has invalid gateway.\nCommand failed -:3\n';
    expect(parseBatchErrors(stderr, ['a', 'b', 'c'])).to.deep.equal([
      { line: 1, command: 'a', error: 'RTNETLINK answers: File exists' },
      { line: 3, command: 'c', error: 'Error: Nexthop has invalid gateway.' },
    ]);
  });

  it('refuses a protocol number that is not ours to take', () => {
    for (const protocol of [0, 2, 4, 256, 1.5]) {
      expect(() => new IpRouteTable({ protocol }), String(protocol)).to.throw(RouteInputError).with.property('field', 'options.protocol');
    }
  });
});
