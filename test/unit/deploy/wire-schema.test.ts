// Every object `kubectl kustomize` renders from deploy/ (the base and each overlay) decodes against the Kubernetes
// schema as kube-apiserver decodes a `kubectl apply` (fieldValidation=Strict, kubectl's default): no unknown
// field, no value of the wrong JSON type. The lab API server does not serve DaemonSets, RBAC, ConfigMaps or
// Secrets, so `kubectl apply --dry-run=server` against it is not possible; this runs the decoder it runs on every
// write (src/lab/apiserver/wire-schema.ts: client-node's models of the OpenAPI v1.34 document) on each object, and
// the lab's Pod validation on the DaemonSet's pod template.
import { expect } from 'chai';
import { ApiError } from '../../../src/lab/apiserver/errors.js';
import { findKind } from '../../../src/lab/apiserver/resources.js';
import { validateObject } from '../../../src/lab/apiserver/validation.js';
import { fieldValidationOutcome, hasWireSchema, pruneToSchema } from '../../../src/lab/apiserver/wire-schema.js';
import { KUSTOMIZATIONS, kustomize, type K8sObject } from './manifests.js';

/** What kube-apiserver would answer a strict create of the object: undefined when accepted, else its message. */
function strictDecodeProblem(object: K8sObject): string | undefined {
  const copy = structuredClone(object) as unknown as Record<string, unknown>;
  const version = object.apiVersion.split('/').pop()!;
  try {
    const findings = pruneToSchema(object.kind, version, copy);
    fieldValidationOutcome(object.kind, version, 'Strict', { unknown: findings.unknown, duplicate: [] });
    return undefined;
  } catch (err) {
    if (err instanceof ApiError) return err.message;
    throw err;
  }
}

describe('deploy: rendered manifests against the Kubernetes schema (strict decoding)', function () {
  this.timeout(60_000);

  for (const dir of KUSTOMIZATIONS) {
    it(`${dir}: every object decodes strictly; the DaemonSet's pod template passes the lab's Pod validation`, async () => {
      const objects = await kustomize(dir);
      expect(objects.length).to.be.greaterThan(0);
      for (const o of objects) {
        expect(hasWireSchema(o.kind), `${o.kind}: a kind without a schema would pass unchecked`).to.equal(true);
        expect(strictDecodeProblem(o), `${o.kind} ${o.metadata.name}`).to.equal(undefined);
      }
      const ds = objects.find((o) => o.kind === 'DaemonSet')!;
      const template = (ds.spec as { template: { metadata: Record<string, unknown>; spec: unknown } }).template;
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { ...template.metadata, name: 'podroute-node', namespace: ds.metadata.namespace }, spec: template.spec };
      expect(validateObject(findKind('Pod')!, pod)).to.deep.equal([]);
    });
  }

  it('the check can fail: a misspelt field deep in the pod template and a wrong JSON type are refused as kube-apiserver refuses them', async () => {
    const ds = structuredClone((await kustomize('deploy/base')).find((o) => o.kind === 'DaemonSet')!);
    const spec = ds.spec as { template: { spec: { containers: Record<string, unknown>[] } } };
    spec.template.spec.containers[0]!.volumeMount = [];
    expect(strictDecodeProblem(ds)).to.equal('DaemonSet in version "v1" cannot be handled as a DaemonSet: strict decoding error: unknown field "spec.template.spec.containers[0].volumeMount"');
    delete spec.template.spec.containers[0]!.volumeMount;
    spec.template.spec.containers[0]!.readinessProbe = { periodSeconds: '5' };
    expect(strictDecodeProblem(ds)).to.match(/cannot unmarshal string into Go struct field Probe\.spec\.template\.spec\.containers\.readinessProbe\.periodSeconds of type int32/);
  });
});
