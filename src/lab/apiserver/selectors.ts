// Label and field selectors in the Kubernetes query-string syntax (`labelSelector=`, `fieldSelector=`).
// Pure parsing and matching; a bad selector is an ApiError('BadRequest') that names what is wrong.
import { ApiError } from './errors.js';

export type LabelOperator = 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';

export interface LabelRequirement {
  key: string;
  op: LabelOperator;
  values: string[];
}

const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Checks a label key ([prefix/]name); returns why it is invalid, or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)) {
      return `prefix part must be a lowercase RFC 1123 subdomain`;
    }
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    return `name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)`;
  }
  return undefined;
}

/** Checks a label value; returns why it is invalid, or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !LABEL_NAME.test(value)) {
    return `a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)`;
  }
  return undefined;
}

function badSelector(selector: string, why: string): ApiError {
  return new ApiError('BadRequest', `unable to parse requirement: invalid label selector "${selector}": ${why}`);
}

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

export function parseLabelSelector(selector: string): LabelRequirement[] {
  const trimmed = selector.trim();
  if (trimmed === '') return [];
  const reqs: LabelRequirement[] = [];
  for (const rawPart of splitTopLevel(trimmed)) {
    const part = rawPart.trim();
    if (part === '') throw badSelector(selector, 'empty requirement');
    let req: LabelRequirement;
    let m: RegExpExecArray | null;
    if ((m = /^!\s*([^\s=!<>(),]+)$/.exec(part)) !== null) {
      req = { key: m[1]!, op: '!exists', values: [] };
    } else if ((m = /^([^\s=!<>(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(part)) !== null) {
      const values = m[3]!.split(',').map((v) => v.trim());
      if (values.length === 1 && values[0] === '') {
        throw badSelector(selector, `for '${m[2]}' operator, values set can't be empty`);
      }
      req = { key: m[1]!, op: m[2] as 'in' | 'notin', values };
    } else if ((m = /^([^\s=!<>(),]+)\s*(==|=|!=|>|<)\s*([^\s=!<>(),]*)$/.exec(part)) !== null) {
      const opText = m[2]!;
      const op: LabelOperator = opText === '!=' ? '!=' : opText === '>' ? 'gt' : opText === '<' ? 'lt' : '=';
      req = { key: m[1]!, op, values: [m[3]!] };
      if ((op === 'gt' || op === 'lt') && !/^-?\d+$/.test(m[3]!)) {
        throw badSelector(selector, `for '${opText}' operator, the value must be an integer`);
      }
    } else if ((m = /^([^\s=!<>(),]+)$/.exec(part)) !== null) {
      req = { key: m[1]!, op: 'exists', values: [] };
    } else {
      throw badSelector(selector, `cannot parse "${part}"`);
    }
    const keyProblem = labelKeyProblem(req.key);
    if (keyProblem !== undefined) throw badSelector(selector, `key "${req.key}": ${keyProblem}`);
    if (req.op !== 'gt' && req.op !== 'lt') {
      for (const v of req.values) {
        const valueProblem = labelValueProblem(v);
        if (valueProblem !== undefined) throw badSelector(selector, `value "${v}": ${valueProblem}`);
      }
    }
    reqs.push(req);
  }
  return reqs;
}

export function matchesLabels(reqs: readonly LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const v = has ? l[r.key] : undefined;
    switch (r.op) {
      case 'exists':
        return has;
      case '!exists':
        return !has;
      case '=':
        return has && v === r.values[0];
      case '!=':
        return !has || v !== r.values[0];
      case 'in':
        return has && r.values.includes(v!);
      case 'notin':
        return !has || !r.values.includes(v!);
      case 'gt':
      case 'lt': {
        if (!has || !/^-?\d+$/.test(v!)) return false;
        const n = Number(v);
        const bound = Number(r.values[0]);
        return r.op === 'gt' ? n > bound : n < bound;
      }
    }
  });
}

export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

/** The field paths each kind supports in field selectors (besides metadata.name and metadata.namespace). */
const KIND_FIELDS: Record<string, readonly string[]> = {
  Pod: [
    'spec.nodeName',
    'spec.restartPolicy',
    'spec.schedulerName',
    'spec.serviceAccountName',
    'spec.hostNetwork',
    'status.phase',
    'status.podIP',
    'status.nominatedNodeName',
  ],
  Node: ['spec.unschedulable'],
  Namespace: ['status.phase'],
  Service: [],
  NetworkPolicy: [],
  Event: [
    'involvedObject.kind',
    'involvedObject.namespace',
    'involvedObject.name',
    'involvedObject.uid',
    'involvedObject.apiVersion',
    'involvedObject.resourceVersion',
    'involvedObject.fieldPath',
    'reason',
    'reportingComponent',
    'source',
    'type',
  ],
};

function unescapeFieldValue(v: string): string {
  return v.replace(/\\(.)/g, '$1');
}

/** Splits on separators not preceded by a backslash. */
function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[i + 1]!;
      i++;
    } else if (ch === sep) {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out;
}

export function parseFieldSelector(selector: string, kind: string): FieldRequirement[] {
  const trimmed = selector.trim();
  if (trimmed === '') return [];
  const supported = ['metadata.name', 'metadata.namespace', ...(KIND_FIELDS[kind] ?? [])];
  return splitUnescaped(trimmed, ',').map((part) => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)(.*)$/.exec(part);
    if (m === null) {
      throw new ApiError('BadRequest', `invalid field selector "${selector}": cannot parse "${part}"`);
    }
    const field = m[1]!;
    if (!supported.includes(field)) {
      throw new ApiError('BadRequest', `field label not supported: ${field}`);
    }
    return { field, op: m[2] === '!=' ? '!=' : '=', value: unescapeFieldValue(m[3]!.trim()) };
  });
}

/** The string value of a field path as field selectors see it ('' when missing). */
export function fieldValue(obj: Record<string, unknown>, field: string): string {
  if (field === 'source') {
    const src = (obj.source ?? {}) as Record<string, unknown>;
    return typeof obj.reportingComponent === 'string' && obj.reportingComponent !== ''
      ? obj.reportingComponent
      : typeof src.component === 'string'
        ? src.component
        : '';
  }
  let cur: unknown = obj;
  for (const part of field.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[part];
  }
  if (cur === undefined || cur === null) {
    // Booleans read as "false" when missing, like the real conversion functions.
    return field === 'spec.hostNetwork' || field === 'spec.unschedulable' ? 'false' : '';
  }
  return typeof cur === 'string' ? cur : typeof cur === 'number' || typeof cur === 'boolean' ? String(cur) : '';
}

export function matchesFields(reqs: readonly FieldRequirement[], obj: Record<string, unknown>): boolean {
  return reqs.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === '='));
}
