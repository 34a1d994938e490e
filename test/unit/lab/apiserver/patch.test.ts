import { expect } from 'chai';
import { ApiError } from '../../../../src/lab/apiserver/errors.js';
import { jsonPatch, mergePatch, strategicMergePatch } from '../../../../src/lab/apiserver/patch.js';

describe('lab API patches', () => {
  const node = {
    metadata: { name: 'n1', labels: { a: '1', b: '2' }, finalizers: ['x'] },
    status: {
      conditions: [
        { type: 'Ready', status: 'False' },
        { type: 'MemoryPressure', status: 'False' },
      ],
      addresses: [{ type: 'InternalIP', address: '10.0.0.1' }],
    },
  };

  it('merge patch: objects merge, null deletes, lists replace', () => {
    expect(
      mergePatch(node, { metadata: { labels: { a: null, c: '3' } }, status: { conditions: [{ type: 'Ready', status: 'True' }] } }),
    ).to.deep.equal({
      metadata: { name: 'n1', labels: { b: '2', c: '3' }, finalizers: ['x'] },
      status: { conditions: [{ type: 'Ready', status: 'True' }], addresses: node.status.addresses },
    });
  });

  it('strategic merge patch merges lists by their merge keys and honours $patch directives', () => {
    const out = strategicMergePatch(node, {
      metadata: { labels: { b: null }, finalizers: ['y'] },
      status: {
        conditions: [{ type: 'Ready', status: 'True' }, { type: 'MemoryPressure', $patch: 'delete' }, { type: 'PIDPressure', status: 'False' }],
        '$setElementOrder/conditions': [{ type: 'Ready' }, { type: 'PIDPressure' }],
      },
    }) as typeof node;
    expect(out.metadata).to.deep.equal({ name: 'n1', labels: { a: '1' }, finalizers: ['x', 'y'] });
    expect(out.status.conditions).to.deep.equal([
      { type: 'Ready', status: 'True' },
      { type: 'PIDPressure', status: 'False' },
    ]);
    expect(out.status.addresses).to.deep.equal(node.status.addresses);
    expect((strategicMergePatch(node, { metadata: { labels: { $patch: 'replace', z: '9' } } }) as typeof node).metadata.labels).to.deep.equal({ z: '9' });
    expect((strategicMergePatch(node, { metadata: { '$deleteFromPrimitiveList/finalizers': ['x'] } }) as typeof node).metadata.finalizers).to.deep.equal([]);
    expect(() => strategicMergePatch(node, { status: { conditions: [{ status: 'True' }] } })).to.throw(/merge key "type"/);
  });

  it('JSON patch applies add/remove/replace/move/copy/test and fails cleanly', () => {
    const out = jsonPatch(node, [
      { op: 'add', path: '/metadata/labels/c', value: '3' },
      { op: 'remove', path: '/metadata/labels/a' },
      { op: 'replace', path: '/status/conditions/0/status', value: 'True' },
      { op: 'add', path: '/metadata/finalizers/-', value: 'y' },
      { op: 'copy', from: '/metadata/labels/b', path: '/metadata/labels/d' },
      { op: 'move', from: '/metadata/labels/c', path: '/metadata/labels/e~1f' },
      { op: 'test', path: '/metadata/name', value: 'n1' },
    ]) as typeof node;
    expect(out.metadata.labels).to.deep.equal({ b: '2', d: '2', 'e/f': '3' });
    expect(out.metadata.finalizers).to.deep.equal(['x', 'y']);
    expect(out.status.conditions[0]).to.deep.equal({ type: 'Ready', status: 'True' });
    expect(node.metadata.labels, 'the original is untouched').to.deep.equal({ a: '1', b: '2' });
    expect(() => jsonPatch(node, [{ op: 'test', path: '/metadata/name', value: 'other' }])).to.throw(ApiError).with.property('code', 'Invalid');
    expect(() => jsonPatch(node, [{ op: 'remove', path: '/metadata/nope' }])).to.throw(/does not exist/);
    expect(() => jsonPatch(node, { op: 'add' })).to.throw(ApiError).with.property('code', 'BadRequest');
  });
});
