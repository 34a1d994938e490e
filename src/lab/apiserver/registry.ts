// REST semantics of the lab API server, independent of HTTP: create / get / list / update / patch / delete with
// the real API server's rules for names, namespaces, resourceVersion preconditions, status subresources,
// finalizers and cascading namespace deletion. Every successful write is one commit to the ObjectStore.
import { randomUUID, randomInt } from 'node:crypto';
import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { ApiError, alreadyExists, conflict, invalid, notFound } from './errors.js';
import { applyPatch, type PatchType } from './patch.js';
import { apiVersionOf, findKind, RESOURCE_KINDS, type ResourceKind } from './resources.js';
import {
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
  type FieldRequirement,
  type LabelRequirement,
} from './selectors.js';
import { objectKey, type KubeObject, type ObjectMeta, type ObjectStore } from './store.js';
import { applyDefaults, validateObject } from './validation.js';
import { fieldValidationOutcome, pruneToSchema, type FieldValidation } from './wire-schema.js';

const NAMESPACE = RESOURCE_KINDS.find((rk) => rk.kind === 'Namespace')!;
/** Namespaces every cluster has. */
export const BUILTIN_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
/** Service cluster IPs are allocated from 10.96.0.0/16 and fd00:10:96::/112 (the first few are left, as usual). */
const SERVICE_IP_RANGES = { IPv4: (n: number) => `10.96.${n >> 8}.${n & 255}`, IPv6: (n: number) => `fd00:10:96::${n.toString(16)}` } as const;

export interface WriteOptions {
  dryRun?: boolean;
  /**
   * 'rest' applies the real API server's subresource rules (the main resource ignores status, /status only
   * changes status, created Pods start Pending). 'seed' stores the object as given: for tests and seeding.
   */
  mode?: 'rest' | 'seed';
  subresource?: 'status';
  /** What to do with unknown and duplicate fields. Default: Strict in 'seed' mode, Warn (the server's) in 'rest'. */
  fieldValidation?: FieldValidation;
  /** Fields the request body held twice (found by the HTTP layer in the raw JSON). */
  duplicateFields?: string[];
  /** Receives the warnings of a Warn request (the HTTP layer sends them as Warning headers). */
  warnings?: string[];
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continueToken?: string;
  resourceVersion?: string;
  resourceVersionMatch?: string;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
  continueToken?: string;
  remainingItemCount?: number;
}

export interface DeleteOptions {
  dryRun?: boolean;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface Selectors {
  labels: LabelRequirement[];
  fields: FieldRequirement[];
}

export function parseSelectors(rk: ResourceKind, labelSelector?: string, fieldSelector?: string): Selectors {
  return {
    labels: parseLabelSelector(labelSelector ?? ''),
    fields: parseFieldSelector(fieldSelector ?? '', rk.kind),
  };
}

export function matchesSelectors(sel: Selectors, obj: KubeObject): boolean {
  return matchesLabels(sel.labels, obj.metadata?.labels) && matchesFields(sel.fields, obj);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Kubernetes timestamps have second precision: 2024-05-01T12:00:00Z. */
export function kubeNow(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const NAME_SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function withKind(rk: ResourceKind, obj: KubeObject): KubeObject {
  return { ...obj, apiVersion: apiVersionOf(rk), kind: rk.kind };
}

function encodeContinue(rv: number, after: string): string {
  return Buffer.from(JSON.stringify({ v: 1, rv, after })).toString('base64url');
}

function decodeContinue(token: string): { rv: number; after: string } {
  try {
    const d = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { v?: number; rv?: number; after?: string };
    if (d.v === 1 && Number.isInteger(d.rv) && typeof d.after === 'string') return { rv: d.rv!, after: d.after };
  } catch {
    // fall through
  }
  throw new ApiError('BadRequest', 'continue key is not valid: the continue token is malformed');
}

/** Parses a resourceVersion query parameter; '' and undefined mean "not given". */
export function parseRv(rv: string | undefined, what = 'resourceVersion'): number | undefined {
  if (rv === undefined || rv === '') return undefined;
  if (!/^\d+$/.test(rv)) throw new ApiError('BadRequest', `invalid ${what} "${rv}": must be a non-negative integer`);
  return Number(rv);
}

export class Registry {
  /**
   * @param onNamespaceTerminating called when a Namespace enters Terminating; the owner later calls
   *   finalizeNamespace() (the real namespace controller also empties a namespace asynchronously, so a
   *   `kubectl delete -f` that lists a namespace before its contents still finds the contents).
   */
  constructor(
    private readonly store: ObjectStore,
    private readonly onNamespaceTerminating: (name: string) => void = (name) => this.finalizeNamespace(name),
  ) {}

  /** Namespaces in Terminating state (to finish after a restart). */
  terminatingNamespaces(): string[] {
    return this.store
      .list('Namespace')
      .filter((o) => o.metadata?.deletionTimestamp !== undefined)
      .map((o) => o.metadata!.name!);
  }

  /** Deletes a Terminating namespace's contents, then the namespace. */
  finalizeNamespace(name: string): void {
    const ns = this.store.get('Namespace', objectKey(undefined, name));
    if (ns === undefined || ns.metadata?.deletionTimestamp === undefined) return;
    this.deleteNamespaceContents(name);
    this.commitDelete(NAMESPACE, ns);
  }

  kind(kindOrPlural: string): ResourceKind {
    const rk = findKind(kindOrPlural);
    if (rk === undefined) throw new ApiError('NotFound', `the server doesn't have a resource type "${kindOrPlural}"`);
    return rk;
  }

  /** Creates the built-in namespaces that are missing (called on a fresh store). */
  ensureBuiltinNamespaces(): void {
    for (const name of BUILTIN_NAMESPACES) {
      if (this.store.get('Namespace', objectKey(undefined, name)) === undefined) {
        this.create(NAMESPACE, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
      }
    }
  }

  get(rk: ResourceKind, namespace: string | undefined, name: string): KubeObject {
    const ns = rk.namespaced ? namespace ?? 'default' : undefined;
    const obj = this.store.get(rk.kind, objectKey(ns, name));
    if (obj === undefined) throw notFound(rk.plural, rk.group, name);
    return withKind(rk, obj);
  }

  list(rk: ResourceKind, namespace: string | undefined, opts: ListOptions = {}): ListResult {
    const sel = parseSelectors(rk, opts.labelSelector, opts.fieldSelector);
    if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 0)) {
      throw new ApiError('BadRequest', `invalid limit ${opts.limit}: must be a non-negative integer`);
    }
    const current = this.store.resourceVersion;
    let atRv = current;
    let after: string | undefined;
    if (opts.continueToken !== undefined && opts.continueToken !== '') {
      const c = decodeContinue(opts.continueToken);
      if (c.rv < this.store.oldestResumable) {
        throw new ApiError(
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      atRv = c.rv;
      after = c.after;
    } else {
      const rv = parseRv(opts.resourceVersion);
      const match = opts.resourceVersionMatch ?? '';
      if (match !== '' && match !== 'Exact' && match !== 'NotOlderThan') {
        throw new ApiError('BadRequest', `invalid resourceVersionMatch "${match}": must be Exact or NotOlderThan`);
      }
      if (match !== '' && rv === undefined) {
        throw new ApiError('BadRequest', 'resourceVersionMatch is forbidden unless resourceVersion is provided');
      }
      if (rv !== undefined && rv > current) {
        throw new ApiError('Timeout', `Too large resource version: ${rv}, current: ${current}`, {
          causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
        });
      }
      if (match === 'Exact' && rv !== undefined) atRv = rv;
    }
    const all = atRv === current ? this.store.list(rk.kind) : this.store.listAt(rk.kind, atRv);
    let items = all.filter(
      (o) => (namespace === undefined || o.metadata?.namespace === namespace) && matchesSelectors(sel, o),
    );
    if (after !== undefined) {
      const a = after;
      items = items.filter((o) => objectKey(o.metadata?.namespace, o.metadata?.name ?? '') > a);
    }
    const result: ListResult = { items, resourceVersion: String(atRv) };
    if (opts.limit !== undefined && opts.limit > 0 && items.length > opts.limit) {
      const page = items.slice(0, opts.limit);
      const last = page[page.length - 1]!;
      result.items = page;
      result.continueToken = encodeContinue(atRv, objectKey(last.metadata?.namespace, last.metadata?.name ?? ''));
      result.remainingItemCount = items.length - opts.limit;
    }
    return result;
  }

  create(rk: ResourceKind, urlNamespace: string | undefined, body: unknown, opts: WriteOptions = {}): KubeObject {
    const obj = this.decode(rk, body, opts);
    const meta = obj.metadata!;
    if (rk.namespaced) {
      if (urlNamespace !== undefined && meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== urlNamespace) {
        throw new ApiError('BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = urlNamespace ?? (meta.namespace || 'default');
    } else {
      delete meta.namespace;
    }
    if ((meta.name === undefined || meta.name === '') && typeof meta.generateName === 'string' && meta.generateName !== '') {
      meta.name = this.generateName(rk, meta.namespace, meta.generateName);
    }
    for (const f of ['uid', 'resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'managedFields']) {
      delete meta[f];
    }
    meta.uid = randomUUID();
    meta.creationTimestamp = kubeNow();
    if (rk.kind === 'NetworkPolicy') meta.generation = 1;
    else delete meta.generation;
    if ((opts.mode ?? 'rest') === 'rest') this.resetStatusForCreate(rk, obj);
    applyDefaults(rk, obj);
    this.validate(rk, obj);
    if (rk.namespaced) this.requireNamespace(meta.namespace!);
    const key = objectKey(meta.namespace, meta.name!);
    if (this.store.get(rk.kind, key) !== undefined) throw alreadyExists(rk.plural, rk.group, meta.name!);
    if (rk.kind === 'Service') this.allocateClusterIp(obj);
    if (opts.dryRun === true) return withKind(rk, obj);
    meta.resourceVersion = String(this.store.nextRv());
    this.store.commit(rk.kind, 'ADDED', obj);
    return withKind(rk, obj);
  }

  update(rk: ResourceKind, urlNamespace: string | undefined, name: string, body: unknown, opts: WriteOptions = {}): KubeObject {
    const existing = this.current(rk, urlNamespace, name);
    const obj = this.decode(rk, body, opts);
    return this.write(rk, existing, obj, opts);
  }

  patch(
    rk: ResourceKind,
    urlNamespace: string | undefined,
    name: string,
    type: PatchType,
    patchBody: unknown,
    opts: WriteOptions = {},
  ): KubeObject {
    if (type === 'apply') {
      throw new ApiError('UnsupportedMediaType', 'the lab API server does not implement server-side apply (application/apply-patch)');
    }
    const existing = this.current(rk, urlNamespace, name);
    const patched = applyPatch(type, withKind(rk, structuredClone(existing)), patchBody);
    if (!isObj(patched)) throw new ApiError('BadRequest', 'the patch did not produce an object');
    return this.write(rk, existing, this.decode(rk, patched, opts), opts);
  }

  delete(rk: ResourceKind, urlNamespace: string | undefined, name: string, opts: DeleteOptions = {}): KubeObject {
    const existing = this.current(rk, urlNamespace, name);
    const pre = opts.preconditions ?? {};
    if (pre.uid !== undefined && pre.uid !== existing.metadata?.uid) {
      throw conflict(rk.plural, rk.group, name,
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${existing.metadata?.uid}`);
    }
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== existing.metadata?.resourceVersion) {
      throw conflict(rk.plural, rk.group, name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${existing.metadata?.resourceVersion}`);
    }
    if (opts.dryRun === true) return withKind(rk, existing);
    const finalizers = existing.metadata?.finalizers ?? [];
    if (finalizers.length > 0 && rk.kind !== 'Namespace') {
      // Deletion waits for the finalizers' owners to remove them (see write()).
      if (existing.metadata?.deletionTimestamp !== undefined) return withKind(rk, existing);
      const marked = structuredClone(existing);
      marked.metadata!.deletionTimestamp = kubeNow();
      marked.metadata!.deletionGracePeriodSeconds = 0;
      marked.metadata!.resourceVersion = String(this.store.nextRv());
      this.store.commit(rk.kind, 'MODIFIED', marked);
      return withKind(rk, marked);
    }
    if (rk.kind === 'Namespace') {
      if (existing.metadata?.deletionTimestamp !== undefined) return withKind(rk, existing);
      const terminating = structuredClone(existing);
      terminating.metadata!.deletionTimestamp = kubeNow();
      terminating.status = { ...(isObj(terminating.status) ? terminating.status : {}), phase: 'Terminating' };
      terminating.metadata!.resourceVersion = String(this.store.nextRv());
      this.store.commit(rk.kind, 'MODIFIED', terminating);
      this.onNamespaceTerminating(name);
      return withKind(rk, terminating);
    }
    return withKind(rk, this.commitDelete(rk, existing));
  }

  deleteCollection(rk: ResourceKind, namespace: string | undefined, opts: ListOptions & { dryRun?: boolean }): KubeObject[] {
    const { items } = this.list(rk, namespace, { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector });
    return items.map((o) =>
      this.delete(rk, o.metadata?.namespace, o.metadata!.name!, { dryRun: opts.dryRun === true }),
    );
  }

  // ---- internals ----

  private current(rk: ResourceKind, urlNamespace: string | undefined, name: string): KubeObject {
    const ns = rk.namespaced ? urlNamespace ?? 'default' : undefined;
    const existing = this.store.get(rk.kind, objectKey(ns, name));
    if (existing === undefined) throw notFound(rk.plural, rk.group, name);
    return existing;
  }

  /**
   * Checks the body is an object of this kind and returns a private copy with metadata present, decoded against
   * the API's schema: unknown fields are refused (Strict) or dropped (Warn, Ignore), never stored.
   */
  private decode(rk: ResourceKind, body: unknown, opts: WriteOptions): KubeObject {
    if (!isObj(body)) throw new ApiError('BadRequest', `the request body must be a JSON object (a ${rk.kind})`);
    const obj = structuredClone(body) as KubeObject;
    const apiVersion = apiVersionOf(rk);
    if (obj.apiVersion !== undefined && obj.apiVersion !== apiVersion) {
      throw new ApiError('BadRequest', `the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersion})`);
    }
    if (obj.kind !== undefined && obj.kind !== rk.kind) {
      throw new ApiError('BadRequest', `the kind in the data (${String(obj.kind)}) does not match the expected kind (${rk.kind})`);
    }
    const findings = pruneToSchema(rk.kind, rk.version, obj);
    const mode = opts.fieldValidation ?? ((opts.mode ?? 'rest') === 'seed' ? 'Strict' : 'Warn');
    const warnings = fieldValidationOutcome(rk.kind, rk.version, mode, { unknown: findings.unknown, duplicate: opts.duplicateFields ?? [] });
    opts.warnings?.push(...warnings);
    obj.apiVersion = apiVersion;
    obj.kind = rk.kind;
    if (obj.metadata === undefined || obj.metadata === null) obj.metadata = {};
    if (!isObj(obj.metadata)) throw invalid(rk.kind, rk.group, '', [{ reason: 'FieldValueTypeInvalid', message: 'must be an object', field: 'metadata' }]);
    return obj;
  }

  private validate(rk: ResourceKind, obj: KubeObject): void {
    const causes = validateObject(rk, obj);
    if (causes.length > 0) throw invalid(rk.kind, rk.group, String(obj.metadata?.name ?? ''), causes);
  }

  private requireNamespace(ns: string): void {
    const obj = this.store.get('Namespace', objectKey(undefined, ns));
    if (obj === undefined) throw notFound('namespaces', '', ns);
    if (obj.metadata?.deletionTimestamp !== undefined) {
      throw new ApiError('Forbidden', `unable to create new content in namespace ${ns} because it is being terminated`);
    }
  }

  private generateName(rk: ResourceKind, ns: string | undefined, prefix: string): string {
    const base = prefix.slice(0, 58);
    for (let i = 0; i < 16; i++) {
      let suffix = '';
      for (let j = 0; j < 5; j++) suffix += NAME_SUFFIX_ALPHABET[randomInt(NAME_SUFFIX_ALPHABET.length)]!;
      if (this.store.get(rk.kind, objectKey(ns, base + suffix)) === undefined) return base + suffix;
    }
    throw alreadyExists(rk.plural, rk.group, `${base}*`);
  }

  private resetStatusForCreate(rk: ResourceKind, obj: KubeObject): void {
    switch (rk.kind) {
      case 'Pod':
        obj.status = { phase: 'Pending', qosClass: 'BestEffort' };
        break;
      case 'Service':
        obj.status = { loadBalancer: {} };
        break;
      case 'Namespace':
        obj.status = { phase: 'Active' };
        break;
    }
  }

  /**
   * The cluster IPs of a new Service, as kube-apiserver allocates them in a dual-stack cluster whose primary family
   * is IPv4: SingleStack takes the first requested family (IPv4 by default), PreferDualStack and RequireDualStack
   * take both, the requested order first.
   */
  private allocateClusterIp(obj: KubeObject): void {
    const spec = obj.spec as Record<string, unknown>;
    if (spec.type === 'ExternalName' || spec.clusterIP === 'None') {
      if (spec.clusterIP === 'None') spec.clusterIPs = ['None'];
      return;
    }
    const policy = (spec.ipFamilyPolicy as string | undefined) ?? 'SingleStack';
    const requested = Array.isArray(spec.ipFamilies) ? (spec.ipFamilies as ('IPv4' | 'IPv6')[]) : [];
    const given = typeof spec.clusterIP === 'string' && spec.clusterIP !== '' ? spec.clusterIP : undefined;
    const first = requested[0] ?? (given !== undefined && net.isIP(given) === 6 ? 'IPv6' : 'IPv4');
    const families: ('IPv4' | 'IPv6')[] = policy === 'SingleStack' ? [first] : [first, first === 'IPv4' ? 'IPv6' : 'IPv4'];
    const used = new Set(this.store.list('Service').flatMap((s) => ((s.spec as Record<string, unknown>).clusterIPs as string[] | undefined) ?? []));
    if (given !== undefined && used.has(given)) {
      throw invalid('Service', '', String(obj.metadata?.name), [
        { reason: 'FieldValueInvalid', message: `Invalid value: "${given}": provided IP is already allocated`, field: 'spec.clusterIP' },
      ]);
    }
    const ips = families.map((family, i) => {
      if (i === 0 && given !== undefined) return given;
      for (let n = 10; n < 65534; n++) {
        const ip = SERVICE_IP_RANGES[family](n);
        if (!used.has(ip)) return ip;
      }
      throw new ApiError('InternalError', `the lab's ${family} service range is full`);
    });
    spec.clusterIP = ips[0];
    spec.clusterIPs = ips;
    spec.ipFamilies = families;
    spec.ipFamilyPolicy = policy;
  }

  /** The shared tail of update and patch: preconditions, subresource rules, defaults, validation, commit. */
  private write(rk: ResourceKind, existing: KubeObject, obj: KubeObject, opts: WriteOptions): KubeObject {
    const oldMeta = existing.metadata!;
    const meta = obj.metadata!;
    const name = oldMeta.name!;
    if (meta.name !== undefined && meta.name !== name) {
      throw new ApiError('BadRequest', `the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`);
    }
    if (rk.namespaced && meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== oldMeta.namespace) {
      throw new ApiError('BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    }
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== '' && meta.resourceVersion !== oldMeta.resourceVersion) {
      throw conflict(rk.plural, rk.group, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== oldMeta.uid) {
      throw conflict(rk.plural, rk.group, name, `Precondition failed: UID in precondition: ${String(meta.uid)}, UID in object meta: ${oldMeta.uid}`);
    }
    let next: KubeObject;
    const mode = opts.mode ?? 'rest';
    if (mode === 'rest' && opts.subresource === 'status') {
      // Status writes change status only (the real ResetObjectMetaForStatus plus the spec reset).
      next = structuredClone(existing);
      if (obj.status === undefined) delete next.status;
      else next.status = obj.status;
      applyDefaults(rk, next);
    } else {
      next = obj;
      const m = next.metadata!;
      m.name = name;
      if (rk.namespaced) m.namespace = oldMeta.namespace;
      else delete m.namespace;
      m.uid = oldMeta.uid;
      m.creationTimestamp = oldMeta.creationTimestamp;
      if (oldMeta.deletionTimestamp !== undefined) {
        m.deletionTimestamp = oldMeta.deletionTimestamp;
        m.deletionGracePeriodSeconds = oldMeta.deletionGracePeriodSeconds;
      } else {
        delete m.deletionTimestamp;
        delete m.deletionGracePeriodSeconds;
      }
      if (oldMeta.generation !== undefined) m.generation = oldMeta.generation;
      else delete m.generation;
      if (mode === 'rest' && rk.hasStatus) {
        if (existing.status === undefined) delete next.status;
        else next.status = existing.status;
      }
      applyDefaults(rk, next);
      if (mode === 'rest') this.checkImmutable(rk, existing, next);
      if (rk.kind === 'Service') {
        const spec = next.spec as Record<string, unknown> | undefined;
        const oldSpec = existing.spec as Record<string, unknown>;
        if (spec !== undefined && (spec.clusterIP === undefined || spec.clusterIP === '')) {
          spec.clusterIP = oldSpec.clusterIP;
          spec.clusterIPs = oldSpec.clusterIPs;
          spec.ipFamilies ??= oldSpec.ipFamilies;
          spec.ipFamilyPolicy ??= oldSpec.ipFamilyPolicy;
        }
        // What only a LoadBalancer (or a NodePort) has is wiped when the type changes, as kube-apiserver does.
        if (spec !== undefined && spec.type !== 'LoadBalancer') {
          delete spec.loadBalancerClass;
          delete spec.allocateLoadBalancerNodePorts;
          if (spec.type !== 'NodePort') delete spec.externalTrafficPolicy;
        }
      }
      if (m.generation !== undefined && !isDeepStrictEqual(next.spec, existing.spec)) m.generation += 1;
    }
    next.metadata!.resourceVersion = oldMeta.resourceVersion;
    this.validate(rk, next);
    if (isDeepStrictEqual(next, existing)) return withKind(rk, existing);
    if (opts.dryRun === true) return withKind(rk, next);
    if (next.metadata!.deletionTimestamp !== undefined && (next.metadata!.finalizers ?? []).length === 0) {
      return withKind(rk, this.commitDelete(rk, next));
    }
    next.metadata!.resourceVersion = String(this.store.nextRv());
    this.store.commit(rk.kind, 'MODIFIED', next);
    return withKind(rk, next);
  }

  private checkImmutable(rk: ResourceKind, existing: KubeObject, next: KubeObject): void {
    const forbid = (field: string, message: string): never => {
      throw invalid(rk.kind, rk.group, String(existing.metadata?.name), [{ reason: 'FieldValueForbidden', message: `Forbidden: ${message}`, field }]);
    };
    if (rk.kind === 'Pod') {
      // Pod specs are immutable except container images and a few scheduling fields.
      const strip = (spec: unknown): unknown => {
        if (!isObj(spec)) return spec;
        const s = structuredClone(spec);
        delete s.activeDeadlineSeconds;
        delete s.tolerations;
        delete s.terminationGracePeriodSeconds;
        for (const list of [s.containers, s.initContainers]) {
          if (Array.isArray(list)) for (const c of list) if (isObj(c)) delete c.image;
        }
        return s;
      };
      if (!isDeepStrictEqual(strip(existing.spec), strip(next.spec))) {
        forbid('spec', 'pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds`');
      }
    }
    if (rk.kind === 'Service') {
      const before = existing.spec as Record<string, unknown> | undefined;
      const after = next.spec as Record<string, unknown> | undefined;
      if (before?.type === 'LoadBalancer' && after?.type === 'LoadBalancer' && before.loadBalancerClass !== after.loadBalancerClass) {
        throw invalid(rk.kind, rk.group, String(existing.metadata?.name), [
          { reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(after.loadBalancerClass ?? null)}: may not change once set`, field: 'spec.loadBalancerClass' },
        ]);
      }
    }
    if (rk.kind === 'EndpointSlice' && existing.addressType !== next.addressType) {
      throw invalid(rk.kind, rk.group, String(existing.metadata?.name), [
        { reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(next.addressType)}: field is immutable`, field: 'addressType' },
      ]);
    }
    if (rk.kind === 'Node') {
      const oldCidrs = ((existing.spec as Record<string, unknown> | undefined)?.podCIDRs ?? []) as string[];
      const newCidrs = ((next.spec as Record<string, unknown> | undefined)?.podCIDRs ?? []) as string[];
      if (oldCidrs.length > 0 && !isDeepStrictEqual(oldCidrs, newCidrs)) {
        forbid('spec.podCIDRs', 'node updates may not change podCIDR except from "" to valid');
      }
    }
  }

  private commitDelete(rk: ResourceKind, obj: KubeObject): KubeObject {
    const gone = structuredClone(obj);
    gone.metadata!.resourceVersion = String(this.store.nextRv());
    this.store.commit(rk.kind, 'DELETED', gone);
    return gone;
  }

  private deleteNamespaceContents(ns: string): void {
    for (const rk of RESOURCE_KINDS) {
      if (!rk.namespaced) continue;
      for (const o of this.store.list(rk.kind)) {
        if (o.metadata?.namespace === ns) this.commitDelete(rk, o);
      }
    }
  }
}

export type { ObjectMeta };
