import { expect } from 'chai';
import type { Node } from '../../../src/kube/wire.js';
import { sameNodeStateInputs, type NodeStateInputs } from '../../../src/agent/node-state-inputs.js';

const node = (name: string): Node => ({ metadata: { name }, spec: { podCIDRs: ['10.244.1.0/24'] } });

describe('the periodic node-state re-plan skips when its inputs did not change', () => {
  const a = node('a');
  const b = node('b');
  const inputs = (over: Partial<NodeStateInputs> = {}): NodeStateInputs => ({
    nodes: [a, b],
    secrets: new Map([['tor.pw', 's3cret']]),
    secretProblems: new Map(),
    podMtu: 1500,
    podMtuWarnings: [],
    ...over,
  });

  it('skips a re-plan of the same Node objects, password files and MTU (a fresh array of the same objects included)', () => {
    expect(sameNodeStateInputs(inputs(), inputs())).to.equal(true);
  });

  it('plans the first time', () => {
    expect(sameNodeStateInputs(undefined, inputs())).to.equal(false);
  });

  it('plans again when a Node object was replaced, even by an equal one (a watch event), added or removed', () => {
    expect(sameNodeStateInputs(inputs(), inputs({ nodes: [a, node('b')] }))).to.equal(false);
    expect(sameNodeStateInputs(inputs(), inputs({ nodes: [a] }))).to.equal(false);
    expect(sameNodeStateInputs(inputs(), inputs({ nodes: [a, b, node('c')] }))).to.equal(false);
  });

  it('plans again when a mounted password file changed, appeared, vanished or became unreadable', () => {
    expect(sameNodeStateInputs(inputs(), inputs({ secrets: new Map([['tor.pw', 'rotated']]) }))).to.equal(false);
    expect(sameNodeStateInputs(inputs(), inputs({ secrets: new Map([['tor.pw', 's3cret'], ['mesh.pw', 'x']]) }))).to.equal(false);
    expect(sameNodeStateInputs(inputs(), inputs({ secrets: new Map(), secretProblems: new Map([['tor.pw', 'tor.pw: empty']]) }))).to.equal(false);
  });

  it('plans again when the links give the pods another MTU, or another warning', () => {
    expect(sameNodeStateInputs(inputs(), inputs({ podMtu: 9000 }))).to.equal(false);
    expect(sameNodeStateInputs(inputs(), inputs({ podMtu: undefined }))).to.equal(false);
    expect(sameNodeStateInputs(inputs(), inputs({ podMtuWarnings: ['no link holds 10.0.0.1'] }))).to.equal(false);
  });
});
