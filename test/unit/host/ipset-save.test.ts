// The one reader of `ipset save` output: what both set owners (policy, masquerade) build their observed state from.
import { expect } from 'chai';
import { parseIpsetSave } from '../../../src/host/ipset-save.js';

const SAVED = [
  'create PRPOL6-B-1 hash:net family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1',
  'add PRPOL6-B-1 ::/1',
  'add PRPOL6-B-1 2001:db8::7 nomatch',
  'create KUBE-X hash:ip family inet hashsize 1024 maxelem 65536',
  'add KUBE-X 10.0.0.1',
  'create PODROUTE-C bitmap:port range 1-1024',
  '',
].join('\n');

describe('ipset save output', () => {
  it('reads every set with its type, family word and entries in order, a nomatch flag kept', () => {
    const sets = parseIpsetSave(SAVED);
    expect([...sets.keys()]).to.deep.equal(['PRPOL6-B-1', 'KUBE-X', 'PODROUTE-C']);
    expect(sets.get('PRPOL6-B-1')).to.deep.equal({ name: 'PRPOL6-B-1', type: 'hash:net', family: 'inet6', entries: ['::/1', '2001:db8::7 nomatch'] });
    expect(sets.get('KUBE-X')?.family).to.equal('inet');
    // A set type without a family word (bitmap:port) reads as inet: neither owner creates one.
    expect(sets.get('PODROUTE-C')).to.deep.equal({ name: 'PODROUTE-C', type: 'bitmap:port', family: 'inet', entries: [] });
  });

  it('keeps only the sets its owner names, and no entry of another set', () => {
    const sets = parseIpsetSave(SAVED, (name) => name.startsWith('PRPOL'));
    expect([...sets.keys()]).to.deep.equal(['PRPOL6-B-1']);
    expect(sets.get('PRPOL6-B-1')?.entries).to.have.length(2);
  });
});
