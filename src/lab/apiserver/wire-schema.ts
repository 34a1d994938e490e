// Decoding a request body as kube-apiserver does: every field is checked against the real API's schema, unknown
// fields are refused (fieldValidation=Strict, kubectl's default), reported in a Warning header and dropped (Warn,
// the server's default) or silently dropped (Ignore), and a value of the wrong JSON type is refused as Go's JSON
// decoder refuses it. Nothing unknown is ever stored, so nothing unknown is ever listed or watched.
//
// The schema is the model definitions @kubernetes/client-node generates from the Kubernetes OpenAPI document
// (v1.34 for client-node 1.4): each model's attributeTypeMap names every field as it is on the wire (`baseName`,
// e.g. `from`, which the TypeScript models call `_from`) and its type. No field list is written by hand here.
import * as models from '@kubernetes/client-node/dist/gen/models/all.js';
import { ApiError } from './errors.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

interface Attribute {
  name: string;
  baseName: string;
  type: string;
  format: string;
}

interface Model {
  getAttributeTypeMap(): Attribute[];
}

const MODELS = models as unknown as Record<string, Model | undefined>;

/**
 * The model of each kind the lab serves (client-node's class names; Event is core/v1's), and of the kinds of
 * deploy/'s manifests, which the lab does not serve but checks the same way (test/unit/deploy/wire-schema.test.ts).
 */
const ROOT_MODEL: Record<string, string> = {
  Namespace: 'V1Namespace',
  Node: 'V1Node',
  Pod: 'V1Pod',
  Service: 'V1Service',
  Event: 'CoreV1Event',
  NetworkPolicy: 'V1NetworkPolicy',
  EndpointSlice: 'V1EndpointSlice',
  Lease: 'V1Lease',
  DaemonSet: 'V1DaemonSet',
  ServiceAccount: 'V1ServiceAccount',
  ConfigMap: 'V1ConfigMap',
  Secret: 'V1Secret',
  ClusterRole: 'V1ClusterRole',
  ClusterRoleBinding: 'V1ClusterRoleBinding',
  Role: 'V1Role',
  RoleBinding: 'V1RoleBinding',
};

/**
 * Resource-quantity maps (requests, limits, capacity...): client-node types their values as strings, but
 * resource.Quantity also decodes from a JSON number (`cpu: 1`), as kube-apiserver accepts.
 */
const QUANTITY_MAPS = new Set(['limits', 'requests', 'capacity', 'allocatable', 'hard', 'used', 'overhead', 'allocatedResources']);

const fieldsOf = new Map<string, Map<string, Attribute>>();

function fields(model: string): Map<string, Attribute> | undefined {
  let known = fieldsOf.get(model);
  if (known === undefined) {
    const cls = MODELS[model];
    if (cls === undefined || typeof cls.getAttributeTypeMap !== 'function') return undefined;
    known = new Map(cls.getAttributeTypeMap().map((a) => [a.baseName, a]));
    fieldsOf.set(model, known);
  }
  return known;
}

/** Whether the lab knows the schema of a kind. */
export function hasWireSchema(kind: string): boolean {
  const model = ROOT_MODEL[kind];
  return model !== undefined && fields(model) !== undefined;
}

/** What decoding found wrong with a body besides type errors (which throw at once). */
export interface WireFindings {
  /** Paths of unknown fields, e.g. spec.ingress[0]._from. They are removed from the object. */
  unknown: string[];
}

class TypeMismatch extends Error {
  constructor(
    readonly jsonType: string,
    readonly goField: string,
    readonly goType: string,
  ) {
    super(`json: cannot unmarshal ${jsonType} into Go struct field ${goField} of type ${goType}`);
  }
}

function jsonTypeOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  return typeof v === 'boolean' ? 'bool' : typeof v;
}

/** The Go type Kubernetes declares for a value of client-node type `type` (as Go's decode errors name it). */
function goTypeOf(type: string, format: string): string {
  if (type === 'number') return format === '' ? 'float64' : format;
  if (type === 'boolean') return 'bool';
  if (type === 'Date' || type === 'V1MicroTime') return 'v1.Time';
  if (type === 'IntOrString') return 'intstr.IntOrString';
  return type;
}

/** Go's struct name for a model (V1NetworkPolicyPort -> NetworkPolicyPort), as its decode errors print it. */
function goStruct(model: string): string {
  return model.replace(/^(Core)?V\d+((alpha|beta)\d+)?/, '');
}

const ARRAY = /^Array<(.+)>$/;
const MAP = /^\{ \[key: string\]: (.+); \}$/;

/**
 * Walks `value` (of type `type`) in place: removes unknown fields, recording their paths; throws TypeMismatch on
 * a value Go's decoder would refuse. `goPath` is the dotted path without indices, as Go's errors print it.
 */
function walk(value: unknown, type: string, path: string, goPath: string, attr: Attribute | undefined, owner: string, out: WireFindings): void {
  if (value === null || value === undefined || type === 'any' || type === 'object') return;
  const mismatch = (goType: string): TypeMismatch => new TypeMismatch(jsonTypeOf(value), `${goStruct(owner)}.${goPath}`, goType);
  const arrayOf = ARRAY.exec(type);
  if (arrayOf !== null) {
    if (!Array.isArray(value)) throw mismatch(`[]${goStruct(arrayOf[1]!)}`);
    value.forEach((item, i) => walk(item, arrayOf[1]!, `${path}[${i}]`, goPath, attr, owner, out));
    return;
  }
  const mapOf = MAP.exec(type);
  if (mapOf !== null) {
    if (typeof value !== 'object' || Array.isArray(value)) throw mismatch(`map[string]${goStruct(mapOf[1]!)}`);
    const quantity = attr !== undefined && QUANTITY_MAPS.has(attr.baseName);
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (quantity && typeof v === 'number') continue;
      walk(v, mapOf[1]!, `${path}[${k}]`, goPath, attr, owner, out);
    }
    return;
  }
  switch (type) {
    case 'string':
    case 'Date':
    case 'V1MicroTime':
      if (typeof value !== 'string') throw mismatch(goTypeOf(type, attr?.format ?? ''));
      return;
    case 'number':
      if (typeof value !== 'number' || (attr?.format.startsWith('int') === true && !Number.isInteger(value))) {
        throw mismatch(goTypeOf(type, attr?.format ?? ''));
      }
      return;
    case 'boolean':
      if (typeof value !== 'boolean') throw mismatch('bool');
      return;
    case 'IntOrString':
      if (typeof value !== 'string' && !(typeof value === 'number' && Number.isInteger(value))) throw mismatch('intstr.IntOrString');
      return;
  }
  const known = fields(type);
  if (known === undefined) return;
  if (typeof value !== 'object' || Array.isArray(value)) throw mismatch(goStruct(type));
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const field = known.get(key);
    const childPath = path === '' ? key : `${path}.${key}`;
    if (field === undefined) {
      out.unknown.push(childPath);
      delete obj[key];
      continue;
    }
    walk(obj[key], field.type, childPath, goPath === '' ? key : `${goPath}.${key}`, field, type, out);
  }
}

/**
 * Checks an object of `kind` against the schema and removes its unknown fields (in place). Throws a 400 for a
 * value of the wrong type. Returns what was removed; the caller decides (by fieldValidation) what that means.
 */
export function pruneToSchema(kind: string, version: string, obj: Record<string, unknown>): WireFindings {
  const out: WireFindings = { unknown: [] };
  const model = ROOT_MODEL[kind];
  if (model === undefined) return out;
  try {
    walk(obj, model, '', '', undefined, model, out);
  } catch (err) {
    if (!(err instanceof TypeMismatch)) throw err;
    throw new ApiError('BadRequest', `${kind} in version "${version}" cannot be handled as a ${kind}: ${err.message}`);
  }
  return out;
}

/**
 * The paths of keys that appear twice in one JSON object of `text` (JSON.parse keeps the last silently; the
 * real server's strict decoder names them). Assumes `text` is valid JSON (parse it first).
 */
export function duplicateFields(text: string): string[] {
  const found: string[] = [];
  // One frame per open object or array: the object's keys so far, or the array's next index.
  const stack: { path: string; keys?: Set<string>; index?: number; key?: string }[] = [];
  const childPath = (): string => {
    const top = stack[stack.length - 1];
    if (top === undefined) return '';
    if (top.keys !== undefined) return top.path === '' ? top.key! : `${top.path}.${top.key!}`;
    return `${top.path}[${top.index!}]`;
  };
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      let s = '';
      while (text[j] !== '"') {
        if (text[j] === '\\') {
          s += text.slice(j, j + 2);
          j += 2;
        } else s += text[j++];
      }
      const top = stack[stack.length - 1];
      if (expectKey && top?.keys !== undefined) {
        const key = JSON.parse(`"${s}"`) as string;
        if (top.keys.has(key)) found.push(top.path === '' ? key : `${top.path}.${key}`);
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
      i = j;
    } else if (c === '{' || c === '[') {
      const path = childPath();
      stack.push(c === '{' ? { path, keys: new Set() } : { path, index: 0 });
      expectKey = c === '{';
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack[stack.length - 1];
      if (top?.keys !== undefined) expectKey = true;
      else if (top !== undefined) top.index! += 1;
    }
  }
  return found;
}

/**
 * Applies a request's fieldValidation to what decoding found: Strict refuses (400, the real message), Warn returns
 * the warnings to send, Ignore returns none. Unknown fields are already gone from the object in every case.
 */
export function fieldValidationOutcome(
  kind: string,
  version: string,
  mode: FieldValidation,
  findings: { unknown: string[]; duplicate: string[] },
): string[] {
  const problems = [...findings.unknown.map((p) => `unknown field "${p}"`), ...findings.duplicate.map((p) => `duplicate field "${p}"`)];
  if (problems.length === 0 || mode === 'Ignore') return [];
  if (mode === 'Strict') {
    throw new ApiError('BadRequest', `${kind} in version "${version}" cannot be handled as a ${kind}: strict decoding error: ${problems.join(', ')}`);
  }
  return problems;
}

/** The fieldValidation query parameter; absent means Warn, the server's default since Kubernetes 1.23. */
export function parseFieldValidation(value: string | null): FieldValidation {
  if (value === null || value === '') return 'Warn';
  if (value === 'Strict' || value === 'Warn' || value === 'Ignore') return value;
  throw new ApiError('BadRequest', `fieldValidation must be one of Strict, Warn or Ignore, not "${value}"`);
}
