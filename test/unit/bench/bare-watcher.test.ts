// The bare watcher's count (bench/bare-watcher.ts, the floor of the route-programming benchmark) against
// WatchEvent messages encoded by protobufjs from GoBGP's own protos, and its hand-encoded request.
import { expect } from 'chai';
import { countPaths, WATCH_REQUEST } from '../../../bench/bare-watcher.js';
import { gobgpMethods } from '../../../src/bgp/gobgp-proto.js';
import { v4Path } from '../bgp/gobgp-wire.test.js';

const methods = gobgpMethods();
const encodeWatch = (msg: object): Buffer => methods.WatchEvent!.responseSerialize(msg);

describe('bench: the bare watcher', () => {
  it('asks for what the agent asks for: peer events and best paths with the initial table', () => {
    expect(methods.WatchEvent!.requestDeserialize(WATCH_REQUEST)).to.deep.equal({ peer: {}, table: { filters: [{ type: 'BEST', init: true }] } });
  });

  it('counts each prefix once, takes withdrawals off, and ignores peer events', () => {
    const held = new Set<string>();
    countPaths(held, encodeWatch({ table: { paths: [v4Path('10.128.0.1', 32, '10.99.0.1'), v4Path('10.128.0.2', 32, '10.99.0.1'), v4Path('10.128.0.1', 32, '10.99.0.2')] } }));
    expect(held.size).to.equal(2);
    countPaths(held, encodeWatch({ peer: { type: 'STATE', peer: { conf: { neighbor_address: '10.99.0.1' } } } }));
    expect(held.size).to.equal(2);
    countPaths(held, encodeWatch({ table: { paths: [{ ...v4Path('10.128.0.1', 32, '10.99.0.1'), is_withdraw: true }, v4Path('10.128.1.0', 24, '10.99.0.1')] } }));
    expect(held.size).to.equal(2);
    countPaths(held, encodeWatch({ table: { paths: [{ ...v4Path('10.128.0.2', 32, '10.99.0.1'), is_withdraw: true }, { ...v4Path('10.128.1.0', 24, '10.99.0.1'), is_withdraw: true }] } }));
    expect(held.size).to.equal(0);
  });
});
