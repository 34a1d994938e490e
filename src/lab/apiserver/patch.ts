// The three Kubernetes patch types, applied to plain JSON objects: JSON merge patch (RFC 7386), strategic merge
// patch (merge lists by their Kubernetes merge keys) and JSON patch (RFC 6902). Pure functions.
import { isDeepStrictEqual } from 'node:util';
import { ApiError } from './errors.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** RFC 7386: objects merge recursively, null deletes, everything else (arrays too) replaces. */
export function mergePatch(original: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const result: JsonObject = isObject(original) ? structuredClone(original) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else result[k] = mergePatch(result[k], v) as Json;
  }
  return result;
}

/**
 * Merge keys of the lists that Kubernetes merges instead of replacing, by field path (list indices dropped).
 * '' marks a list of primitives merged as a set. Lists not named here are replaced, as for atomic lists.
 */
const MERGE_KEYS: Record<string, string> = {
  'metadata.finalizers': '',
  'metadata.ownerReferences': 'uid',
  'spec.containers': 'name',
  'spec.initContainers': 'name',
  'spec.ephemeralContainers': 'name',
  'spec.containers.ports': 'containerPort',
  'spec.initContainers.ports': 'containerPort',
  'spec.containers.env': 'name',
  'spec.initContainers.env': 'name',
  'spec.containers.volumeMounts': 'mountPath',
  'spec.initContainers.volumeMounts': 'mountPath',
  'spec.volumes': 'name',
  'spec.imagePullSecrets': 'name',
  'spec.hostAliases': 'ip',
  'spec.podCIDRs': '',
  'spec.ports': 'port',
  'status.conditions': 'type',
  'status.podIPs': 'ip',
  'status.hostIPs': 'ip',
  'status.containerStatuses': 'name',
  'status.initContainerStatuses': 'name',
  'status.addresses': 'type',
};

const DIRECTIVE = '$patch';

function badSmp(message: string): ApiError {
  return new ApiError('BadRequest', `invalid strategic merge patch: ${message}`);
}

/** Strategic merge patch with the list merge keys above and the $patch / $deleteFromPrimitiveList directives. */
export function strategicMergePatch(original: unknown, patch: unknown, path = ''): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const directive = patch[DIRECTIVE];
  if (directive === 'replace') {
    const rest = { ...patch };
    delete rest[DIRECTIVE];
    return structuredClone(rest);
  }
  if (directive === 'delete') return undefined;
  if (directive !== undefined) throw badSmp(`unknown $patch directive ${JSON.stringify(directive)} at ${path || '.'}`);
  const result: JsonObject = isObject(original) ? structuredClone(original) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$setElementOrder/') || k === '$retainKeys') continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length);
      if (!Array.isArray(v)) throw badSmp(`${k} must be a list`);
      const cur = result[field];
      if (Array.isArray(cur)) result[field] = cur.filter((x) => !v.some((d) => isDeepStrictEqual(d, x)));
      continue;
    }
    const childPath = path === '' ? k : `${path}.${k}`;
    if (v === null) {
      delete result[k];
    } else if (Array.isArray(v)) {
      const key = MERGE_KEYS[childPath];
      const cur = result[k];
      if (key === undefined || !Array.isArray(cur)) {
        result[k] = structuredClone(v.filter((e) => !(isObject(e) && e[DIRECTIVE] === 'delete')));
      } else if (key === '') {
        const merged = [...cur];
        for (const e of v) if (!merged.some((x) => isDeepStrictEqual(x, e))) merged.push(structuredClone(e));
        result[k] = merged;
      } else {
        result[k] = mergeListByKey(cur, v, key, childPath);
      }
    } else if (isObject(v)) {
      const merged = strategicMergePatch(result[k], v, childPath);
      if (merged === undefined) delete result[k];
      else result[k] = merged as Json;
    } else {
      result[k] = v;
    }
  }
  return result;
}

function mergeListByKey(cur: Json[], patch: Json[], key: string, path: string): Json[] {
  const out = structuredClone(cur);
  for (const e of patch) {
    if (!isObject(e) || !(key in e)) throw badSmp(`an element of ${path} lacks its merge key "${key}"`);
    const at = out.findIndex((x) => isObject(x) && isDeepStrictEqual(x[key], e[key]));
    if (e[DIRECTIVE] === 'delete') {
      if (at >= 0) out.splice(at, 1);
    } else if (at >= 0) {
      out[at] = strategicMergePatch(out[at], e, path) as Json;
    } else {
      out.push(strategicMergePatch(undefined, e, path) as Json);
    }
  }
  return out;
}

interface JsonPatchOp {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new ApiError('BadRequest', `invalid JSON pointer "${pointer}"`);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function patchFailed(message: string): ApiError {
  return new ApiError('Invalid', `the server rejected our request due to an error in our request: ${message}`);
}

/** Resolves the parent container of a pointer; throws when a step is missing. */
function parentOf(doc: Json, tokens: string[], pointer: string): { parent: Json; last: string } {
  let cur: Json = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) {
      const i = Number(t);
      if (!/^\d+$/.test(t) || i >= cur.length) throw patchFailed(`path ${pointer} does not exist`);
      cur = cur[i]!;
    } else if (isObject(cur)) {
      if (!(t in cur)) throw patchFailed(`path ${pointer} does not exist`);
      cur = cur[t]!;
    } else {
      throw patchFailed(`path ${pointer} does not exist`);
    }
  }
  return { parent: cur, last: tokens[tokens.length - 1]! };
}

function getAt(doc: Json, pointer: string): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return doc;
  const { parent, last } = parentOf(doc, tokens, pointer);
  if (Array.isArray(parent) && /^\d+$/.test(last) && Number(last) < parent.length) return parent[Number(last)]!;
  if (isObject(parent) && last in parent) return parent[last]!;
  throw patchFailed(`path ${pointer} does not exist`);
}

function removeAt(doc: Json, pointer: string): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) throw patchFailed('cannot remove the whole document');
  const { parent, last } = parentOf(doc, tokens, pointer);
  if (Array.isArray(parent) && /^\d+$/.test(last) && Number(last) < parent.length) {
    return parent.splice(Number(last), 1)[0]!;
  }
  if (isObject(parent) && last in parent) {
    const v = parent[last]!;
    delete parent[last];
    return v;
  }
  throw patchFailed(`path ${pointer} does not exist`);
}

function addAt(doc: Json, pointer: string, value: Json, replace: boolean): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return value;
  const { parent, last } = parentOf(doc, tokens, pointer);
  if (Array.isArray(parent)) {
    if (last === '-' && !replace) {
      parent.push(value);
      return doc;
    }
    const i = Number(last);
    if (!/^\d+$/.test(last) || i > parent.length || (replace && i >= parent.length)) {
      throw patchFailed(`path ${pointer} does not exist`);
    }
    if (replace) parent[i] = value;
    else parent.splice(i, 0, value);
  } else if (isObject(parent)) {
    if (replace && !(last in parent)) throw patchFailed(`path ${pointer} does not exist`);
    parent[last] = value;
  } else {
    throw patchFailed(`path ${pointer} does not exist`);
  }
  return doc;
}

/** RFC 6902 JSON patch: add, remove, replace, move, copy, test. */
export function jsonPatch(original: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new ApiError('BadRequest', 'a JSON patch must be a list of operations');
  let doc = structuredClone(original) as Json;
  ops.forEach((raw: unknown, i) => {
    if (!isObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') {
      throw new ApiError('BadRequest', `JSON patch operation ${i} needs string "op" and "path"`);
    }
    const op = raw as unknown as JsonPatchOp;
    switch (op.op) {
      case 'add':
      case 'replace':
        if (!('value' in op)) throw new ApiError('BadRequest', `JSON patch operation ${i} (${op.op}) lacks "value"`);
        doc = addAt(doc, op.path, structuredClone(op.value) as Json, op.op === 'replace');
        break;
      case 'remove':
        removeAt(doc, op.path);
        break;
      case 'move':
      case 'copy': {
        if (typeof op.from !== 'string') throw new ApiError('BadRequest', `JSON patch operation ${i} lacks "from"`);
        const v = op.op === 'move' ? removeAt(doc, op.from) : structuredClone(getAt(doc, op.from));
        doc = addAt(doc, op.path, v, false);
        break;
      }
      case 'test':
        if (!isDeepStrictEqual(getAt(doc, op.path), op.value)) {
          throw patchFailed(`testing value ${op.path} failed`);
        }
        break;
      default:
        throw new ApiError('BadRequest', `JSON patch operation ${i} has unknown op "${op.op}"`);
    }
  });
  return doc;
}

export type PatchType = 'json' | 'merge' | 'strategic' | 'apply';

export function patchTypeOf(contentType: string | undefined): PatchType | undefined {
  const ct = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  switch (ct) {
    case 'application/json-patch+json':
      return 'json';
    case 'application/merge-patch+json':
      return 'merge';
    case 'application/strategic-merge-patch+json':
      return 'strategic';
    case 'application/apply-patch+yaml':
    case 'application/apply-patch+cbor':
      return 'apply';
    default:
      return undefined;
  }
}

export function applyPatch(type: Exclude<PatchType, 'apply'>, original: unknown, patch: unknown): unknown {
  switch (type) {
    case 'json':
      return jsonPatch(original, patch);
    case 'merge':
      if (!isObject(patch)) throw new ApiError('BadRequest', 'a merge patch must be a JSON object');
      return mergePatch(original, patch);
    case 'strategic':
      if (!isObject(patch)) throw new ApiError('BadRequest', 'a strategic merge patch must be a JSON object');
      return strategicMergePatch(original, patch);
  }
}
