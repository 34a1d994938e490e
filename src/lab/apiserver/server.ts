// The lab Kubernetes API server: HTTP (TCP and/or a unix socket) in front of the Registry and ObjectStore.
// A lab fixture, not a product API: no authentication unless given tokens, no TLS, one process, state in memory (optionally
// persisted to a file so a restarted server keeps the cluster).
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import YAML from 'yaml';
import type { Logger } from '../../observe/log.js';
import { apiGroup, apiGroupList, apiResourceList, apiVersions, SERVER_VERSION } from './discovery.js';
import { ApiError } from './errors.js';
import { openApiV3Document, openApiV3Index } from './openapi.js';
import { patchTypeOf } from './patch.js';
import {
  BUILTIN_NAMESPACES,
  matchesSelectors,
  parseRv,
  parseSelectors,
  Registry,
  type ListOptions,
  type Selectors,
  type WriteOptions,
} from './registry.js';
import { apiVersionOf, findByPlural, type ResourceKind } from './resources.js';
import { ObjectStore, PersistentSnapshot, readSnapshotFile, type ChangeRecord, type KubeObject } from './store.js';
import { renderTable, type IncludeObject } from './table.js';
import { duplicateFields, parseFieldValidation } from './wire-schema.js';

export interface LabApiServerOptions {
  /** Persist objects and the resourceVersion counter here (atomic, debounced) and load them at start. */
  storePath?: string;
  /** How many change events watches can resume from; older resourceVersions get 410 Gone. Default 10000. */
  eventWindow?: number;
  logger?: Logger;
  /** How often watches with allowWatchBookmarks get a BOOKMARK. Default 10 s. */
  bookmarkIntervalMs?: number;
  /** Delay before a change is written to storePath. Default 100 ms. */
  persistDebounceMs?: number;
  /** How long a deleted Namespace stays Terminating before its contents and itself are removed. Default 1 s. */
  namespaceFinalizeDelayMs?: number;
  /**
   * Bearer tokens accepted, as kube-apiserver's --token-auth-file with --anonymous-auth=false: a request without
   * one of them is refused 401 Unauthorized. Unset: no authentication (the lab's default).
   */
  tokens?: readonly string[];
}

export interface ListenOptions {
  tcp?: { host: string; port: number };
  socketPath?: string;
}

const MAX_BODY_BYTES = 3 * 1024 * 1024;
const DEFAULT_WATCH_TIMEOUT_S = 1800;

export class LabApiServerError extends Error {
  readonly code: 'ALREADY_STARTED' | 'NOTHING_TO_LISTEN_ON' | 'SOCKET_IN_USE';
  constructor(code: LabApiServerError['code'], message: string) {
    super(message);
    this.name = 'LabApiServerError';
    this.code = code;
  }
}

interface Route {
  rk: ResourceKind;
  namespace: string | undefined;
  name: string | undefined;
  subresource: 'status' | undefined;
  watchPath: boolean;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, warnings: string[] = []): void {
  const text = JSON.stringify(body);
  const headers: http.OutgoingHttpHeaders = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) };
  // RFC 7234 warn-code 299, as kube-apiserver sends them (kubectl prints "Warning: <text>").
  if (warnings.length > 0) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  res.writeHead(status, headers);
  res.end(text);
}

/** A write's options from its query: dry run, subresource, and fieldValidation with the body's duplicate fields. */
function writeOptions(q: URLSearchParams, body: RequestBody, dryRun: boolean, subresource?: 'status'): WriteOptions & { warnings: string[] } {
  return {
    dryRun,
    ...(subresource === undefined ? {} : { subresource }),
    fieldValidation: parseFieldValidation(q.get('fieldValidation')),
    duplicateFields: body.json ? duplicateFields(body.text) : [],
    warnings: [],
  };
}

function stripKind(o: KubeObject): KubeObject {
  const { kind: _k, apiVersion: _a, ...rest } = o;
  return rest;
}

/** Which Table form the client asked for, if any (kubectl get: Accept: application/json;as=Table;v=v1;g=meta.k8s.io). */
function tableRequested(req: http.IncomingMessage, query: URLSearchParams): IncludeObject | undefined {
  const accept = req.headers.accept ?? '';
  const wantsTable = accept.split(',').some((part) => /;\s*as=Table/.test(part) && /g=meta\.k8s\.io/.test(part));
  if (!wantsTable) return undefined;
  const inc = query.get('includeObject');
  return inc === 'None' || inc === 'Object' ? inc : 'Metadata';
}

function checkAcceptable(req: http.IncomingMessage): void {
  const accept = req.headers.accept;
  if (accept === undefined || accept === '') return;
  const ok = accept
    .split(',')
    .some((p) => /^\s*(application\/json|application\/\*|\*\/\*)/.test(p));
  if (!ok) throw new ApiError('NotAcceptable', `only application/json is served, not ${accept}`);
}

export class LabApiServer {
  private readonly store: ObjectStore;
  private readonly registry: Registry;
  private readonly persistence: PersistentSnapshot | undefined;
  private readonly logger: Logger | undefined;
  private readonly bookmarkIntervalMs: number;
  private readonly servers: http.Server[] = [];
  /** Open watch streams and how to end each one. */
  private readonly watches = new Map<http.ServerResponse, () => void>();
  private socketPath: string | undefined;
  private serverAddress = '127.0.0.1:0';
  private started = false;
  private readonly tokens: ReadonlySet<string> | undefined;

  constructor(options: LabApiServerOptions = {}) {
    this.logger = options.logger;
    this.bookmarkIntervalMs = options.bookmarkIntervalMs ?? 10_000;
    this.tokens = options.tokens === undefined ? undefined : new Set(options.tokens);
    const storePath = options.storePath;
    this.persistence =
      storePath === undefined
        ? undefined
        : new PersistentSnapshot(storePath, () => this.store.toSnapshot(), options.persistDebounceMs ?? 100, (err) =>
            this.logger?.error('lab API server could not write its store', { storePath, error: err.message }),
          );
    this.store = new ObjectStore({
      eventWindow: options.eventWindow ?? 10_000,
      onCommit: () => this.persistence?.markDirty(),
    });
    const finalizeDelay = options.namespaceFinalizeDelayMs ?? 1000;
    this.registry = new Registry(this.store, (name) => this.scheduleNamespaceFinalize(name, finalizeDelay));
    const snap = storePath === undefined ? undefined : readSnapshotFile(storePath);
    if (snap !== undefined) this.store.loadSnapshot(snap);
    else this.registry.ensureBuiltinNamespaces();
    for (const ns of this.registry.terminatingNamespaces()) this.scheduleNamespaceFinalize(ns, finalizeDelay);
  }

  private readonly finalizeTimers = new Set<NodeJS.Timeout>();

  private scheduleNamespaceFinalize(name: string, delayMs: number): void {
    const t = setTimeout(() => {
      this.finalizeTimers.delete(t);
      this.registry.finalizeNamespace(name);
    }, delayMs);
    this.finalizeTimers.add(t);
  }

  // ---- in-process API (seeding and tests). Objects are stored as given, status included. ----

  /** Creates an object; `obj.kind` picks the resource, a namespaced object without namespace goes to 'default'. */
  create(obj: KubeObject): KubeObject {
    const rk = this.registry.kind(String(obj.kind ?? ''));
    return this.registry.create(rk, undefined, obj, { mode: 'seed' });
  }

  /** Replaces an object (spec and status); a metadata.resourceVersion in `obj` must match (else Conflict). */
  update(obj: KubeObject): KubeObject {
    const rk = this.registry.kind(String(obj.kind ?? ''));
    return this.registry.update(rk, obj.metadata?.namespace, String(obj.metadata?.name ?? ''), obj, { mode: 'seed' });
  }

  /** `kind` is a Kind ('Pod') or plural ('pods'); `namespace` is ignored for cluster-scoped kinds. */
  get(kind: string, namespace: string | undefined, name: string): KubeObject {
    return this.registry.get(this.registry.kind(kind), namespace, name);
  }

  /** All objects of a kind (optionally of one namespace), with kind and apiVersion set. */
  list(kind: string, namespace?: string): KubeObject[] {
    const rk = this.registry.kind(kind);
    return this.registry.list(rk, namespace).items.map((o) => ({ ...o, apiVersion: apiVersionOf(rk), kind: rk.kind }));
  }

  delete(kind: string, namespace: string | undefined, name: string): KubeObject {
    return this.registry.delete(this.registry.kind(kind), namespace, name);
  }

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.store.resourceVersion);
  }

  /** Namespaces a fresh store starts with. */
  static readonly builtinNamespaces: readonly string[] = BUILTIN_NAMESPACES;

  // ---- serving ----

  async start(listen: ListenOptions): Promise<{ tcpPort?: number }> {
    if (this.started) throw new LabApiServerError('ALREADY_STARTED', 'the lab API server is already started');
    if (listen.tcp === undefined && listen.socketPath === undefined) {
      throw new LabApiServerError('NOTHING_TO_LISTEN_ON', 'start() needs listen.tcp and/or listen.socketPath');
    }
    this.started = true;
    const result: { tcpPort?: number } = {};
    try {
      if (listen.tcp !== undefined) {
        const server = this.newServer();
        await listenOn(server, { host: listen.tcp.host, port: listen.tcp.port });
        const addr = server.address() as AddressInfo;
        result.tcpPort = addr.port;
        this.serverAddress = `${listen.tcp.host}:${addr.port}`;
      }
      if (listen.socketPath !== undefined) {
        await removeStaleSocket(listen.socketPath);
        const server = this.newServer();
        await listenOn(server, { path: listen.socketPath });
        this.socketPath = listen.socketPath;
      }
    } catch (err) {
      await this.close();
      throw err;
    }
    this.logger?.info('lab API server listening', { tcpPort: result.tcpPort, socketPath: listen.socketPath });
    return result;
  }

  /** Ends watches, stops listening, writes the store. */
  async close(): Promise<void> {
    // Pending namespace finalizations resume when a server loads the store again.
    for (const t of this.finalizeTimers) clearTimeout(t);
    this.finalizeTimers.clear();
    this.endWatches();
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    this.servers.length = 0;
    if (this.socketPath !== undefined) {
      await fs.promises.rm(this.socketPath, { force: true });
      this.socketPath = undefined;
    }
    await this.persistence?.flush();
    this.started = false;
  }

  /**
   * Ends every open watch stream now, as a restarting API server would; clients resume from their last
   * resourceVersion (or relist on 410). For fault-injection tests.
   */
  endWatches(): void {
    for (const stop of [...this.watches.values()]) stop();
  }

  private newServer(): http.Server {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(req, res, err));
    });
    server.keepAliveTimeout = 65_000;
    this.servers.push(server);
    return server;
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
    const apiErr =
      err instanceof ApiError ? err : new ApiError('InternalError', `internal error: ${(err as Error).message ?? String(err)}`);
    if (!(err instanceof ApiError)) {
      this.logger?.error('lab API server request failed', { method: req.method, url: req.url, error: (err as Error).stack });
    }
    this.logger?.debug('lab API request', { method: req.method, url: req.url, status: apiErr.httpStatus });
    if (res.headersSent) {
      res.end();
      return;
    }
    sendJson(res, apiErr.httpStatus, apiErr.toStatus());
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://lab');
    const segs = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
    const method = req.method ?? 'GET';
    if (this.tokens !== undefined) {
      const token = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
      // kube-apiserver's answer to missing or unknown credentials: no hint of which.
      if (token === undefined || !this.tokens.has(token)) throw new ApiError('Unauthorized', 'Unauthorized');
    }

    if (method === 'GET' && segs.length === 1 && ['healthz', 'livez', 'readyz'].includes(segs[0]!)) {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
      return;
    }
    if (method === 'GET' && url.pathname === '/version') return sendJson(res, 200, SERVER_VERSION);
    if (method === 'GET' && segs[0] === 'openapi' && segs[1] === 'v3') {
      if (segs.length === 2) return sendJson(res, 200, openApiV3Index());
      const isCore = segs[2] === 'api';
      const doc = isCore ? openApiV3Document('', segs[3] ?? '') : openApiV3Document(segs[3] ?? '', segs[4] ?? '');
      if (doc !== undefined && segs.length === (isCore ? 4 : 5)) return sendJson(res, 200, doc);
    }

    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === 'api') {
      if (segs.length === 1 && method === 'GET') return sendJson(res, 200, apiVersions(this.serverAddress));
      group = '';
      version = segs[1] ?? '';
      rest = segs.slice(2);
    } else if (segs[0] === 'apis') {
      if (segs.length === 1 && method === 'GET') return sendJson(res, 200, apiGroupList());
      group = segs[1] ?? '';
      if (segs.length === 2 && method === 'GET') {
        const g = apiGroup(group);
        if (g !== undefined) return sendJson(res, 200, g);
      }
      version = segs[2] ?? '';
      rest = segs.slice(3);
    } else {
      throw new ApiError('NotFound', 'the server could not find the requested resource');
    }
    if (rest.length === 0 && method === 'GET') {
      const list = apiResourceList(group, version);
      if (list !== undefined) return sendJson(res, 200, list);
    }
    const route = this.route(group, version, rest);
    await this.serveResource(req, res, method, route, url.searchParams);
    this.logger?.debug('lab API request', { method, url: req.url, status: res.statusCode });
  }

  private route(group: string, version: string, restIn: string[]): Route {
    let rest = restIn;
    const notFound = (): ApiError => new ApiError('NotFound', 'the server could not find the requested resource');
    let watchPath = false;
    if (rest[0] === 'watch') {
      watchPath = true;
      rest = rest.slice(1);
    }
    let namespace: string | undefined;
    let plural: string;
    let name: string | undefined;
    let sub: string | undefined;
    let extra: string[];
    const nsKind = rest.length >= 3 && rest[0] === 'namespaces' ? findByPlural(group, version, rest[2]!) : undefined;
    if (nsKind !== undefined && nsKind.namespaced) {
      namespace = rest[1];
      plural = rest[2]!;
      [name, sub, ...extra] = rest.slice(3);
    } else {
      [plural = '', name, sub, ...extra] = rest;
    }
    const rk = findByPlural(group, version, plural);
    if (rk === undefined || extra.length > 0) throw notFound();
    if (sub !== undefined && !(sub === 'status' && rk.hasStatus)) throw notFound();
    if (rk.namespaced && namespace === undefined && name !== undefined) throw notFound();
    return { rk, namespace, name, subresource: sub, watchPath };
  }

  private async serveResource(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    method: string,
    route: Route,
    q: URLSearchParams,
  ): Promise<void> {
    const { rk, namespace, name, subresource } = route;
    const dryRun = q.getAll('dryRun').includes('All');
    const isWatch = route.watchPath || q.get('watch') === 'true' || q.get('watch') === '1';
    const table = method === 'GET' ? tableRequested(req, q) : undefined;
    if (method === 'GET' || method === 'HEAD') checkAcceptable(req);

    if (name === undefined) {
      switch (method) {
        case 'GET':
          if (isWatch) return this.serveWatch(req, res, route, q, table);
          return this.serveList(res, route, q, table);
        case 'POST': {
          if (rk.namespaced && namespace === undefined) {
            throw new ApiError('MethodNotAllowed', `the server does not allow this method on the requested resource`);
          }
          const body = await readBody(req);
          const write = writeOptions(q, body, dryRun);
          const created = this.registry.create(rk, namespace, body.value, write);
          return sendJson(res, 201, created, write.warnings);
        }
        case 'DELETE': {
          const deleted = this.registry.deleteCollection(rk, namespace, {
            labelSelector: q.get('labelSelector') ?? undefined,
            fieldSelector: q.get('fieldSelector') ?? undefined,
            dryRun,
          });
          return sendJson(res, 200, {
            kind: rk.listKind,
            apiVersion: apiVersionOf(rk),
            metadata: { resourceVersion: String(this.store.resourceVersion) },
            items: deleted.map(stripKind),
          });
        }
        default:
          throw new ApiError('MethodNotAllowed', `the server does not allow this method on the requested resource`);
      }
    }
    if (isWatch) {
      // A watch on one object: the collection watch narrowed to its name.
      const narrowed = new URLSearchParams(q);
      const fs0 = narrowed.get('fieldSelector');
      narrowed.set('fieldSelector', [fs0, `metadata.name=${name}`].filter((s) => s !== null && s !== '').join(','));
      return this.serveWatch(req, res, { ...route, name: undefined }, narrowed, table);
    }
    switch (method) {
      case 'GET': {
        const obj = this.registry.get(rk, namespace, name);
        if (table !== undefined) {
          return sendJson(res, 200, renderTable(rk, [obj], { resourceVersion: String(obj.metadata?.resourceVersion ?? ''), includeObject: table }));
        }
        return sendJson(res, 200, obj);
      }
      case 'PUT': {
        const body = await readBody(req);
        const write = writeOptions(q, body, dryRun, subresource);
        const updated = this.registry.update(rk, namespace, name, body.value, write);
        return sendJson(res, 200, updated, write.warnings);
      }
      case 'PATCH': {
        const type = patchTypeOf(req.headers['content-type']);
        if (type === undefined) {
          throw new ApiError('UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`);
        }
        const body = await readBody(req, type === 'apply');
        const write = writeOptions(q, body, dryRun, subresource);
        const patched = this.registry.patch(rk, namespace, name, type, body.value, write);
        return sendJson(res, 200, patched, write.warnings);
      }
      case 'DELETE': {
        if (subresource !== undefined) throw new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
        const raw = (await readBody(req, false, true)).value;
        const opts = (raw ?? {}) as { preconditions?: { uid?: string; resourceVersion?: string }; dryRun?: string[] };
        const deleted = this.registry.delete(rk, namespace, name, {
          dryRun: dryRun || (Array.isArray(opts.dryRun) && opts.dryRun.includes('All')),
          preconditions: opts.preconditions,
        });
        // Like the real server: Pods and Services answer with the object, other kinds with a Status.
        if (rk.kind === 'Pod' || rk.kind === 'Service' || deleted.metadata?.deletionTimestamp !== undefined) {
          return sendJson(res, 200, deleted);
        }
        return sendJson(res, 200, {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Success',
          details: { name, group: rk.group, kind: rk.plural, uid: deleted.metadata?.uid },
        });
      }
      default:
        throw new ApiError('MethodNotAllowed', `the server does not allow this method on the requested resource`);
    }
  }

  private listOptions(q: URLSearchParams): ListOptions {
    const limitText = q.get('limit');
    let limit: number | undefined;
    if (limitText !== null && limitText !== '') {
      limit = Number(limitText);
      if (!Number.isInteger(limit) || limit < 0) throw new ApiError('BadRequest', `invalid limit "${limitText}"`);
    }
    return {
      labelSelector: q.get('labelSelector') ?? undefined,
      fieldSelector: q.get('fieldSelector') ?? undefined,
      limit,
      continueToken: q.get('continue') ?? undefined,
      resourceVersion: q.get('resourceVersion') ?? undefined,
      resourceVersionMatch: q.get('resourceVersionMatch') ?? undefined,
    };
  }

  private serveList(res: http.ServerResponse, route: Route, q: URLSearchParams, table: IncludeObject | undefined): void {
    const { rk, namespace } = route;
    const result = this.registry.list(rk, namespace, this.listOptions(q));
    if (table !== undefined) {
      const items = result.items.map((o) => ({ ...o, apiVersion: apiVersionOf(rk), kind: rk.kind }));
      return sendJson(res, 200, renderTable(rk, items, {
        resourceVersion: result.resourceVersion,
        continueToken: result.continueToken,
        includeObject: table,
      }));
    }
    sendJson(res, 200, {
      kind: rk.listKind,
      apiVersion: apiVersionOf(rk),
      metadata: {
        resourceVersion: result.resourceVersion,
        ...(result.continueToken === undefined ? {} : { continue: result.continueToken }),
        ...(result.remainingItemCount === undefined ? {} : { remainingItemCount: result.remainingItemCount }),
      },
      // Like the real server, list items carry no kind/apiVersion.
      items: result.items.map(stripKind),
    });
  }

  private serveWatch(
    _req: http.IncomingMessage,
    res: http.ServerResponse,
    route: Route,
    q: URLSearchParams,
    table: IncludeObject | undefined,
  ): void {
    const { rk, namespace } = route;
    // Everything that can fail with a plain HTTP error happens before the stream starts.
    const sel: Selectors = parseSelectors(rk, q.get('labelSelector') ?? undefined, q.get('fieldSelector') ?? undefined);
    const rvText = q.get('resourceVersion') ?? '';
    const rv = parseRv(rvText);
    const sendInitialParam = q.get('sendInitialEvents');
    const sendInitial = sendInitialParam === null ? rv === undefined || rv === 0 : sendInitialParam === 'true';
    const bookmarks = q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1';
    const timeoutText = q.get('timeoutSeconds');
    const timeoutS = timeoutText === null || timeoutText === '' ? DEFAULT_WATCH_TIMEOUT_S : Number(timeoutText);
    if (!Number.isFinite(timeoutS) || timeoutS < 0) throw new ApiError('BadRequest', `invalid timeoutSeconds "${timeoutText}"`);

    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const encode = (o: KubeObject): unknown =>
      table === undefined ? o : renderTable(rk, [o], { resourceVersion: String(o.metadata?.resourceVersion ?? ''), includeObject: table });
    const write = (type: string, object: unknown): void => {
      if (!res.writableEnded) res.write(JSON.stringify({ type, object }) + '\n');
    };
    const inScope = (o: KubeObject | undefined): boolean =>
      o !== undefined && (namespace === undefined || o.metadata?.namespace === namespace) && matchesSelectors(sel, o);
    const deliver = (rec: ChangeRecord): void => {
      if (rec.kind !== rk.kind) return;
      const was = rec.type !== 'ADDED' && inScope(rec.oldObject);
      const is = rec.type !== 'DELETED' && inScope(rec.object);
      const obj = { ...rec.object, apiVersion: apiVersionOf(rk), kind: rk.kind };
      // An object that starts or stops matching the selectors appears as ADDED / DELETED to this watch.
      if (rec.type === 'DELETED') {
        if (inScope(rec.oldObject)) write('DELETED', encode(obj));
      } else if (was && is) write('MODIFIED', encode(obj));
      else if (is) write('ADDED', encode(obj));
      else if (was) write('DELETED', encode(obj));
    };
    const bookmark = (annotations?: Record<string, string>): void => {
      write('BOOKMARK', {
        kind: rk.kind,
        apiVersion: apiVersionOf(rk),
        metadata: { resourceVersion: String(this.store.resourceVersion), ...(annotations ? { annotations } : {}) },
      });
    };

    let backlog: ChangeRecord[] = [];
    if (!sendInitial) {
      try {
        backlog = this.store.changesAfter(rv ?? this.store.resourceVersion);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        // Too old: the watch answers with an ERROR event carrying a 410 Status, then ends (clients relist).
        write('ERROR', err.toStatus());
        res.end();
        return;
      }
    }
    const timers: NodeJS.Timeout[] = [];
    let unsubscribe = (): void => undefined;
    const stop = (): void => {
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.watches.delete(res);
      if (!res.writableEnded) res.end();
    };
    this.watches.set(res, stop);
    unsubscribe = this.store.subscribe(deliver);
    if (sendInitial) {
      for (const o of this.store.list(rk.kind)) {
        if (inScope(o)) write('ADDED', encode({ ...o, apiVersion: apiVersionOf(rk), kind: rk.kind }));
      }
      if (bookmarks && sendInitialParam === 'true') bookmark({ 'k8s.io/initial-events-end': 'true' });
    } else {
      for (const rec of backlog) deliver(rec);
    }
    if (bookmarks) timers.push(setInterval(() => bookmark(), this.bookmarkIntervalMs));
    timers.push(
      setTimeout(() => {
        if (bookmarks) bookmark();
        stop();
      }, timeoutS * 1000),
    );
    res.on('close', stop);
  }
}

async function listenOn(server: http.Server, options: { host?: string; port?: number; path?: string }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** A socket file left by a crashed server is removed; one that still answers is in use and left alone. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fs.promises.lstat(socketPath);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new LabApiServerError('SOCKET_IN_USE', `${socketPath} exists and is not a socket`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const req = http.get({ socketPath, path: '/healthz', timeout: 1000 }, (r) => {
      r.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
  if (alive) throw new LabApiServerError('SOCKET_IN_USE', `another server is listening on ${socketPath}`);
  await fs.promises.rm(socketPath, { force: true });
}

interface RequestBody {
  value: unknown;
  text: string;
  /** The body was JSON (duplicate keys can then be found in its text). */
  json: boolean;
}

async function readBody(req: http.IncomingMessage, yamlAllowed = false, emptyAllowed = false): Promise<RequestBody> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > MAX_BODY_BYTES) throw new ApiError('BadRequest', `the request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(b);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') {
    if (emptyAllowed) return { value: undefined, text, json: false };
    throw new ApiError('BadRequest', 'the request body is empty');
  }
  const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct === 'application/vnd.kubernetes.protobuf') {
    throw new ApiError('UnsupportedMediaType', 'the lab API server accepts JSON only, not protobuf');
  }
  try {
    if (yamlAllowed || ct === 'application/yaml') return { value: YAML.parse(text) as unknown, text, json: false };
    return { value: JSON.parse(text) as unknown, text, json: true };
  } catch (err) {
    throw new ApiError('BadRequest', `the request body is not valid ${ct === 'application/yaml' ? 'YAML' : 'JSON'}: ${(err as Error).message}`);
  }
}
