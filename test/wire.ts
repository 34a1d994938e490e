// Test fixtures are Kubernetes objects as they are on the wire: each one built by a fixture helper is passed
// through JSON and checked against the Kubernetes schema the lab API server decodes with, so a fixture can never
// carry a field that no API server would store (as client-node's `_from` once did, everywhere at once).
import { pruneToSchema } from '../src/lab/apiserver/wire-schema.js';

export class FixtureShapeError extends Error {
  constructor(kind: string, fields: string[]) {
    super(`${kind} fixture has fields the Kubernetes API does not know: ${fields.join(', ')}`);
    this.name = 'FixtureShapeError';
  }
}

/** Keys starting with `_` anywhere in `value` (client-node model names, never wire names). */
export function underscoreKeys(value: unknown, path = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => underscoreKeys(v, `${path}[${i}]`));
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([k, v]) => {
    const here = path === '' ? k : `${path}.${k}`;
    return [...(k.startsWith('_') ? [here] : []), ...underscoreKeys(v, here)];
  });
}

/** Returns `obj` as it would round-trip through an API server; throws if any field is unknown to the schema. */
export function wireObject<T extends object>(kind: string, version: string, obj: T): T {
  const copy = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
  const unknown = [...new Set([...pruneToSchema(kind, version, copy).unknown, ...underscoreKeys(obj)])];
  if (unknown.length > 0) throw new FixtureShapeError(kind, unknown);
  return obj;
}
