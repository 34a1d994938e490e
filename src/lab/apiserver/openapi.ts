// A minimal OpenAPI v3 surface. kubectl's default `--validate=strict` needs OpenAPI: it first asks /openapi/v3
// whether the server supports server-side field validation (a `fieldValidation` query parameter on the PATCH
// operation of the object's group-version-kind). With that answered yes, kubectl skips client-side schema
// validation (which needs full schemas) and sends `?fieldValidation=Strict` instead. Without any OpenAPI,
// `kubectl create -f` fails with "failed to download openapi". No schemas are served: `kubectl explain` and
// client-side validation stay unavailable.
import { createHash } from 'node:crypto';
import { apiVersionOf, RESOURCE_KINDS, type ResourceKind } from './resources.js';

function gvPath(group: string, version: string): string {
  return group === '' ? `api/${version}` : `apis/${group}/${version}`;
}

const FIELD_VALIDATION_PARAM = {
  name: 'fieldValidation',
  in: 'query',
  description: 'Strict (refuse unknown and duplicate fields), Warn (drop them with a Warning header; the default) or Ignore (drop them).',
  schema: { type: 'string', uniqueItems: true },
};

function operationsFor(rk: ResourceKind): Record<string, unknown> {
  const prefix = `/${gvPath(rk.group, rk.version)}`;
  const base = rk.namespaced ? `${prefix}/namespaces/{namespace}/${rk.plural}` : `${prefix}/${rk.plural}`;
  const gvk = { group: rk.group, version: rk.version, kind: rk.kind };
  const op = (verb: string): Record<string, unknown> => ({
    operationId: `${verb}${rk.kind}`,
    parameters: [FIELD_VALIDATION_PARAM],
    responses: { '200': { description: 'OK' } },
    'x-kubernetes-action': verb,
    'x-kubernetes-group-version-kind': gvk,
  });
  const paths: Record<string, unknown> = {
    [base]: { post: op('post') },
    [`${base}/{name}`]: { put: op('put'), patch: op('patch') },
  };
  if (rk.hasStatus) paths[`${base}/{name}/status`] = { put: op('put'), patch: op('patch') };
  return paths;
}

/** The document for one group-version, or undefined if the lab does not serve it. */
export function openApiV3Document(group: string, version: string): Record<string, unknown> | undefined {
  const kinds = RESOURCE_KINDS.filter((rk) => rk.group === group && rk.version === version);
  if (kinds.length === 0) return undefined;
  const paths: Record<string, unknown> = {};
  for (const rk of kinds) Object.assign(paths, operationsFor(rk));
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes (podroute lab)', version: apiVersionOf(kinds[0]!) },
    paths,
    components: { schemas: {} },
  };
}

/** /openapi/v3: where each group-version's document is. */
export function openApiV3Index(): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  const seen = new Set<string>();
  for (const rk of RESOURCE_KINDS) {
    const p = gvPath(rk.group, rk.version);
    if (seen.has(p)) continue;
    seen.add(p);
    const doc = JSON.stringify(openApiV3Document(rk.group, rk.version));
    const hash = createHash('sha512').update(doc).digest('hex').slice(0, 32).toUpperCase();
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hash}` };
  }
  return { paths };
}
