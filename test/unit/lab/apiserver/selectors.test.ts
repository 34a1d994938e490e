import { expect } from 'chai';
import { ApiError } from '../../../../src/lab/apiserver/errors.js';
import {
  fieldValue,
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
} from '../../../../src/lab/apiserver/selectors.js';

function sel(s: string, labels: Record<string, string> | undefined): boolean {
  return matchesLabels(parseLabelSelector(s), labels);
}

describe('lab API label selectors', () => {
  const web = { app: 'web', tier: 'front', 'k8s.io/role': 'x' };

  it('supports =, ==, !=, in, notin, exists, !exists, gt, lt', () => {
    expect(sel('app=web', web)).to.equal(true);
    expect(sel('app==web', web)).to.equal(true);
    expect(sel('app=db', web)).to.equal(false);
    expect(sel('app!=db', web)).to.equal(true);
    expect(sel('missing!=x', web), '!= matches a missing label').to.equal(true);
    expect(sel('app in (db, web)', web)).to.equal(true);
    expect(sel('app in (db)', web)).to.equal(false);
    expect(sel('app notin (db)', web)).to.equal(true);
    expect(sel('missing notin (db)', web), 'notin matches a missing label').to.equal(true);
    expect(sel('missing in (db)', web)).to.equal(false);
    expect(sel('tier', web)).to.equal(true);
    expect(sel('!tier', web)).to.equal(false);
    expect(sel('!missing', web)).to.equal(true);
    expect(sel('k8s.io/role=x', web)).to.equal(true);
    expect(sel('n>3', { n: '5' })).to.equal(true);
    expect(sel('n<3', { n: '5' })).to.equal(false);
    expect(sel('', undefined), 'the empty selector matches everything').to.equal(true);
  });

  it('ANDs requirements, with commas inside sets kept together', () => {
    expect(sel('app in (db,web),tier=front', web)).to.equal(true);
    expect(sel('app in (db,web), tier=back', web)).to.equal(false);
    expect(parseLabelSelector('a in (x,y),!b,c')).to.deep.equal([
      { key: 'a', op: 'in', values: ['x', 'y'] },
      { key: 'b', op: '!exists', values: [] },
      { key: 'c', op: 'exists', values: [] },
    ]);
  });

  it('rejects malformed selectors with a BadRequest naming the problem', () => {
    for (const bad of ['a in ()', 'a=b=c', '-bad=x', 'a=(x)', 'a in (x', ',']) {
      expect(() => parseLabelSelector(bad), bad).to.throw(ApiError).with.property('code', 'BadRequest');
    }
    expect(sel('app=', { app: '' }), '`app=` selects the empty value').to.equal(true);
  });
});

describe('lab API field selectors', () => {
  const p = { metadata: { name: 'a', namespace: 'x' }, spec: { nodeName: 'n1' }, status: { phase: 'Running' } };

  it('matches metadata.name, metadata.namespace and spec.nodeName with = and !=', () => {
    expect(matchesFields(parseFieldSelector('spec.nodeName=n1', 'Pod'), p)).to.equal(true);
    expect(matchesFields(parseFieldSelector('spec.nodeName==n2', 'Pod'), p)).to.equal(false);
    expect(matchesFields(parseFieldSelector('spec.nodeName!=n2,metadata.namespace=x', 'Pod'), p)).to.equal(true);
    expect(matchesFields(parseFieldSelector('metadata.name=b', 'Pod'), p)).to.equal(false);
    expect(matchesFields(parseFieldSelector('spec.nodeName=', 'Pod'), { metadata: { name: 'u' }, spec: {} })).to.equal(true);
    expect(fieldValue({ spec: {} }, 'spec.hostNetwork')).to.equal('false');
  });

  it('rejects fields the kind does not support', () => {
    expect(() => parseFieldSelector('spec.nodeName=n1', 'Service')).to.throw(/field label not supported: spec.nodeName/);
    expect(() => parseFieldSelector('nonsense', 'Pod')).to.throw(ApiError);
  });
});
