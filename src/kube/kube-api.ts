// The agent's access to the Kubernetes API: a kubeconfig (or in-cluster service account) loader and a small
// JSON-over-HTTPS client for the few calls podroute makes (paged lists, watches, patches, creates).
//
// Why not @kubernetes/client-node at runtime: importing it loads the whole generated API client, about 60 MB
// of the agent's resident memory for five calls. Its V1* types are still used everywhere (`import type`).
//
// Every call names its resource as a literal path template ('/api/v1/nodes/{name}/status'): the RBAC test
// (test/unit/deploy/rbac.test.ts) reads those calls from the sources to derive the permissions the agent needs.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import YAML from 'yaml';
import { familyOf } from '../routes/ip-prefix.js';

// ---- configuration ----------------------------------------------------------------------------------------

/** Where the API server is and how to authenticate to it: what loadKubeConfig returns. */
export interface KubeConnectionConfig {
  /** https://host:port (or http:// for a plain-HTTP test server), without a trailing slash. */
  server: string;
  /** PEM of the CAs that sign the server certificate; the system CAs when absent. */
  ca?: Buffer;
  /** PEM client certificate and key (both or neither). */
  clientCert?: Buffer;
  clientKey?: Buffer;
  insecureSkipTlsVerify: boolean;
  /** Name checked against the server certificate instead of the server URL's host. */
  tlsServerName?: string;
  /** A fixed bearer token. */
  token?: string;
  /** A bearer token re-read from this file now and then (service-account tokens rotate). */
  tokenFile?: string;
  /** Where this came from, for messages: the kubeconfig path or "in-cluster". */
  source: string;
}

export type KubeConfigErrorCode =
  /** The kubeconfig file cannot be read or is not YAML. */
  | 'KUBECONFIG_UNREADABLE'
  /** A field is missing or has the wrong type; `field` names it. */
  | 'KUBECONFIG_INVALID'
  /** A field asks for something this client does not do (exec or auth-provider plugins, basic auth, impersonation, proxies). */
  | 'KUBECONFIG_UNSUPPORTED'
  /** A file the kubeconfig points to (certificate, key, token file) cannot be read. */
  | 'KUBECONFIG_FILE_UNREADABLE'
  /** Not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset or the service-account files missing. */
  | 'IN_CLUSTER_UNAVAILABLE';

export class KubeConfigError extends Error {
  constructor(
    readonly code: KubeConfigErrorCode,
    /** The kubeconfig field (or environment variable, or file) at fault. */
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubeConfigError';
  }
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** user fields this client cannot honour; each one is a clear error rather than unauthenticated requests. */
const UNSUPPORTED_USER_FIELDS = ['exec', 'auth-provider', 'username', 'password', 'as', 'as-uid', 'as-groups', 'as-user-extra'];
const UNSUPPORTED_CLUSTER_FIELDS = ['proxy-url'];

/**
 * Loads a kubeconfig file (its current-context), or the in-cluster service account when no file is given.
 * Throws KubeConfigError naming the field at fault.
 */
export function loadKubeConfig(file: string | undefined): KubeConnectionConfig {
  return file === undefined ? loadInClusterConfig() : loadKubeConfigFile(file);
}

export function loadKubeConfigFile(file: string): KubeConnectionConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new KubeConfigError('KUBECONFIG_UNREADABLE', file, `cannot read kubeconfig ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new KubeConfigError('KUBECONFIG_UNREADABLE', file, `kubeconfig ${file} is not YAML: ${(err as Error).message}`);
  }
  return parseKubeConfig(doc, { source: file, baseDir: path.dirname(path.resolve(file)) });
}

type Fields = Record<string, unknown>;
const isFields = (v: unknown): v is Fields => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Pure but for reading the files the kubeconfig names (relative paths are relative to baseDir). */
export function parseKubeConfig(doc: unknown, where: { source: string; baseDir: string }): KubeConnectionConfig {
  const bad = (field: string, what: string): KubeConfigError => new KubeConfigError('KUBECONFIG_INVALID', field, `kubeconfig ${where.source}: ${field} ${what}`);
  if (!isFields(doc)) throw bad('(document)', 'is not a mapping');
  const currentContext = doc['current-context'];
  if (typeof currentContext !== 'string' || currentContext === '') throw bad('current-context', 'is not set');
  const named = (list: string, name: string, inner: string): Fields => {
    const entries = doc[list];
    if (entries !== undefined && !Array.isArray(entries)) throw bad(list, 'is not a list');
    const entry = (entries ?? []).find((e: unknown) => isFields(e) && e.name === name) as Fields | undefined;
    if (entry === undefined) throw bad(`${list}[${name}]`, 'is missing');
    const value = entry[inner] ?? {};
    if (!isFields(value)) throw bad(`${list}[${name}].${inner}`, 'is not a mapping');
    return value;
  };
  const context = named('contexts', currentContext, 'context');
  if (typeof context.cluster !== 'string') throw bad(`contexts[${currentContext}].context.cluster`, 'is not set');
  const clusterField = `clusters[${context.cluster}].cluster`;
  const cluster = named('clusters', context.cluster, 'cluster');
  const user = typeof context.user === 'string' ? named('users', context.user, 'user') : {};
  const userField = `users[${String(context.user)}].user`;

  for (const f of UNSUPPORTED_CLUSTER_FIELDS) {
    if (cluster[f] !== undefined) throw new KubeConfigError('KUBECONFIG_UNSUPPORTED', `${clusterField}.${f}`, `kubeconfig ${where.source}: ${clusterField}.${f} is not supported by podroute`);
  }
  for (const f of UNSUPPORTED_USER_FIELDS) {
    if (user[f] !== undefined) {
      throw new KubeConfigError(
        'KUBECONFIG_UNSUPPORTED',
        `${userField}.${f}`,
        `kubeconfig ${where.source}: ${userField}.${f} is not supported by podroute (use a client certificate, token or tokenFile)`,
      );
    }
  }
  const str = (from: Fields, field: string, name: string): string | undefined => {
    const v = from[name];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw bad(`${field}.${name}`, 'is not a string');
    return v;
  };
  /** `<name>-data` (base64) or `<name>` (a file). */
  const pem = (from: Fields, field: string, name: string): Buffer | undefined => {
    const data = str(from, field, `${name}-data`);
    if (data !== undefined) return Buffer.from(data, 'base64');
    const file = str(from, field, name);
    return file === undefined ? undefined : readConfigFile(path.resolve(where.baseDir, file), `${field}.${name}`);
  };

  const server = str(cluster, clusterField, 'server');
  if (server === undefined) throw bad(`${clusterField}.server`, 'is not set');
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw bad(`${clusterField}.server`, `"${server}" is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad(`${clusterField}.server`, `"${server}" is not http(s)://`);
  const insecure = cluster['insecure-skip-tls-verify'];
  if (insecure !== undefined && typeof insecure !== 'boolean') throw bad(`${clusterField}.insecure-skip-tls-verify`, 'is not a boolean');

  const config: KubeConnectionConfig = { server: server.replace(/\/+$/, ''), insecureSkipTlsVerify: insecure === true, source: where.source };
  const ca = pem(cluster, clusterField, 'certificate-authority');
  if (ca !== undefined) config.ca = ca;
  const tlsServerName = str(cluster, clusterField, 'tls-server-name');
  if (tlsServerName !== undefined) config.tlsServerName = tlsServerName;
  const cert = pem(user, userField, 'client-certificate');
  const key = pem(user, userField, 'client-key');
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert === undefined ? 'client-certificate' : 'client-key';
    throw bad(`${userField}.${missing}`, `is not set (${missing === 'client-key' ? 'client-certificate' : 'client-key'} is)`);
  }
  if (cert !== undefined && key !== undefined) {
    config.clientCert = cert;
    config.clientKey = key;
  }
  const token = str(user, userField, 'token');
  const tokenFile = str(user, userField, 'tokenFile');
  if (token !== undefined) config.token = token;
  else if (tokenFile !== undefined) {
    config.tokenFile = path.resolve(where.baseDir, tokenFile);
    readConfigFile(config.tokenFile, `${userField}.tokenFile`);
  }
  return config;
}

/** The pod's service account: KUBERNETES_SERVICE_HOST/PORT, and the token and CA mounted in the pod. */
export function loadInClusterConfig(options: { env?: NodeJS.ProcessEnv; serviceAccountDir?: string } = {}): KubeConnectionConfig {
  const env = options.env ?? process.env;
  const dir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  for (const [name, value] of [['KUBERNETES_SERVICE_HOST', host], ['KUBERNETES_SERVICE_PORT', port]] as const) {
    if (value === undefined || value === '') {
      throw new KubeConfigError('IN_CLUSTER_UNAVAILABLE', name, `no kubeconfig given and not in a cluster: ${name} is not set`);
    }
  }
  const tokenFile = path.join(dir, 'token');
  const caFile = path.join(dir, 'ca.crt');
  for (const file of [tokenFile, caFile]) {
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch (err) {
      throw new KubeConfigError('IN_CLUSTER_UNAVAILABLE', file, `no kubeconfig given and no service account: cannot read ${file}: ${(err as Error).message}`);
    }
  }
  const hostPart = familyOf(host!) === 'ipv6' ? `[${host}]` : host;
  return { server: `https://${hostPart}:${port}`, ca: fs.readFileSync(caFile), insecureSkipTlsVerify: false, tokenFile, source: 'in-cluster' };
}

function readConfigFile(file: string, field: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new KubeConfigError('KUBECONFIG_FILE_UNREADABLE', field, `cannot read ${file} (${field}): ${(err as Error).message}`);
  }
}

// ---- errors -----------------------------------------------------------------------------------------------

export type KubeApiErrorCode =
  /** The API server answered with an error status (`status` is the HTTP status, `reason` the Status reason). */
  | 'API_STATUS'
  /** 410 Gone: the resourceVersion (or list continue token) is too old; list again from scratch. */
  | 'RESOURCE_EXPIRED'
  /** No answer within the request's timeout. */
  | 'TIMEOUT'
  /** The caller's AbortSignal fired. */
  | 'ABORTED'
  /** Connecting or talking to the API server failed (refused, reset, TLS). */
  | 'CONNECTION'
  /** The answer is not the JSON expected. */
  | 'BAD_RESPONSE'
  /** A path template lacks a parameter. */
  | 'BAD_REQUEST'
  /** The kubeconfig's credential plugin (exec, auth-provider) failed: nothing was sent. */
  | 'CREDENTIALS';

export class KubeApiError extends Error {
  constructor(
    readonly code: KubeApiErrorCode,
    message: string,
    readonly details: { method?: string; path?: string; status?: number; reason?: string } = {},
  ) {
    super(message);
    this.name = 'KubeApiError';
  }

  get status(): number | undefined {
    return this.details.status;
  }
}

/** A Kubernetes Status (the body of error answers and of watch ERROR events). */
interface KubeStatus {
  kind?: string;
  code?: number;
  reason?: string;
  message?: string;
}

function statusError(method: string, apiPath: string, httpStatus: number, status: KubeStatus | undefined, bodyText = ''): KubeApiError {
  const code = httpStatus === 410 ? 'RESOURCE_EXPIRED' : 'API_STATUS';
  const why = status?.message ?? (bodyText.slice(0, 200) || http.STATUS_CODES[httpStatus] || 'error');
  return new KubeApiError(code, `${method} ${apiPath}: ${httpStatus} ${status?.reason ?? ''} ${why}`.replace(/\s+/g, ' ').trim(), {
    method,
    path: apiPath,
    status: httpStatus,
    ...(status?.reason === undefined ? {} : { reason: status.reason }),
  });
}

// ---- the client -------------------------------------------------------------------------------------------

export interface KubeList<T> {
  items: T[];
  metadata: { resourceVersion?: string; continue?: string };
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  object: T;
}

export type PathParams = Record<string, string>;

export interface CallOptions {
  /** Values for the {placeholders} of the path template. */
  params?: PathParams;
  signal?: AbortSignal;
  /** Default: the client's requestTimeoutMs. */
  timeoutMs?: number;
}

export interface ListOptions extends CallOptions {
  limit?: number;
  continue?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface WatchOptions extends CallOptions {
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  /** The server ends the watch after this long (a normal end: resume from the last resourceVersion). Default 300. */
  timeoutSeconds?: number;
}

export type PatchType = 'merge' | 'strategic-merge' | 'json';
const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  'strategic-merge': 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
};

export interface KubeApiOptions {
  config: KubeConnectionConfig;
  /** Per-request timeout (headers and body) of everything but watches. Default 30 s. */
  requestTimeoutMs?: number;
  /** How long a token read from a file is used before it is read again. Default 60 s. */
  tokenRefreshMs?: number;
  userAgent?: string;
  /**
   * Connection and credentials per request, replacing the config's (the CLI's kubeconfig through client-node: exec
   * and auth-provider plugins, proxies, impersonation). The agent never sets it.
   */
  requestOptions?: () => Promise<RequestOverrides>;
}

/** What requestOptions may set on a request: client-node's applyToHTTPSOptions fills exactly these. */
export interface RequestOverrides {
  agent?: http.Agent;
  headers?: http.OutgoingHttpHeaders;
  /** user:password (basic auth). */
  auth?: string;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const DEFAULT_TOKEN_REFRESH_MS = 60_000;
export const DEFAULT_WATCH_TIMEOUT_S = 300;
/** Beyond the server-side timeoutSeconds: a watch silent for this much longer is taken as dead. */
const WATCH_GRACE_MS = 30_000;

type Query = Record<string, string | number | boolean | undefined>;
const STRICT: Query = { fieldValidation: 'Strict' };

export class KubeApi {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly requestTimeoutMs: number;
  private readonly tokenRefreshMs: number;
  private token: { value: string | undefined; readAt: number };

  constructor(private readonly options: KubeApiOptions) {
    const config = options.config;
    this.base = new URL(config.server);
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.tokenRefreshMs = options.tokenRefreshMs ?? DEFAULT_TOKEN_REFRESH_MS;
    this.token = { value: config.token, readAt: 0 };
    if (this.base.protocol === 'https:') {
      this.transport = https;
      this.agent = new https.Agent({
        keepAlive: true,
        ...(config.ca === undefined ? {} : { ca: config.ca }),
        ...(config.clientCert === undefined ? {} : { cert: config.clientCert, key: config.clientKey }),
        rejectUnauthorized: !config.insecureSkipTlsVerify,
        ...(config.tlsServerName === undefined ? {} : { servername: config.tlsServerName }),
      });
    } else {
      this.transport = http;
      this.agent = new http.Agent({ keepAlive: true });
    }
  }

  /** GET one page of a collection. */
  async list<T>(pathTemplate: string, options: ListOptions = {}): Promise<KubeList<T>> {
    const query: Query = { limit: options.limit, continue: options.continue, labelSelector: options.labelSelector, fieldSelector: options.fieldSelector };
    const list = await this.json<KubeList<T>>('GET', pathTemplate, options, { query });
    if (!isFields(list) || !Array.isArray(list.items)) throw new KubeApiError('BAD_RESPONSE', `GET ${pathTemplate}: the answer is not a list`, { method: 'GET', path: pathTemplate });
    list.metadata ??= {};
    return list;
  }

  /** GET one object. */
  async read<T>(pathTemplate: string, options: CallOptions = {}): Promise<T> {
    return this.json<T>('GET', pathTemplate, options, {});
  }

  // Writes ask for strict field validation (kubectl's default): a field the API does not know is refused with
  // its name instead of being dropped, so what the agent writes is exactly what is stored.

  /** POST a new object to a collection. */
  async create<T>(pathTemplate: string, body: unknown, options: CallOptions = {}): Promise<T> {
    return this.json<T>('POST', pathTemplate, options, { body, contentType: 'application/json', query: STRICT });
  }

  /** PATCH an object (or its subresource, e.g. '/api/v1/nodes/{name}/status'). */
  async patch<T>(pathTemplate: string, body: unknown, options: CallOptions & { patchType: PatchType }): Promise<T> {
    return this.json<T>('PATCH', pathTemplate, options, { body, contentType: PATCH_CONTENT_TYPES[options.patchType], query: STRICT });
  }

  /**
   * Watches a collection, calling onEvent for each event, until the server ends the stream (resolves: resume
   * from the last resourceVersion seen) or something fails (rejects with KubeApiError; RESOURCE_EXPIRED means
   * list again). An ERROR event rejects with the Status it carries.
   */
  async watch<T>(pathTemplate: string, options: WatchOptions, onEvent: (event: WatchEvent<T>) => void): Promise<void> {
    const timeoutSeconds = options.timeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_S;
    const query: Query = {
      watch: 1,
      allowWatchBookmarks: options.allowWatchBookmarks === true ? true : undefined,
      resourceVersion: options.resourceVersion,
      timeoutSeconds,
    };
    const apiPath = expandPath(pathTemplate, options.params);
    const res = await this.send('GET', apiPath, { ...options, timeoutMs: options.timeoutMs ?? timeoutSeconds * 1000 + WATCH_GRACE_MS }, { query });
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      let failed = false;
      const fail = (err: unknown): void => {
        if (failed) return;
        failed = true;
        res.destroy();
        reject(err instanceof Error ? err : new Error(String(err)));
      };
      const line = (text: string): void => {
        if (text.trim() === '') return;
        let event: { type?: unknown; object?: unknown };
        try {
          event = JSON.parse(text) as typeof event;
        } catch {
          fail(new KubeApiError('BAD_RESPONSE', `watch ${apiPath}: a line is not JSON: ${text.slice(0, 100)}`, { method: 'GET', path: apiPath }));
          return;
        }
        if (event.type === 'ERROR') {
          const status = (isFields(event.object) ? event.object : {}) as KubeStatus;
          fail(statusError('watch', apiPath, status.code ?? 500, status));
          return;
        }
        if (event.type !== 'ADDED' && event.type !== 'MODIFIED' && event.type !== 'DELETED' && event.type !== 'BOOKMARK') {
          fail(new KubeApiError('BAD_RESPONSE', `watch ${apiPath}: unknown event type ${String(event.type)}`, { method: 'GET', path: apiPath }));
          return;
        }
        try {
          onEvent(event as WatchEvent<T>);
        } catch (err) {
          fail(err);
        }
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let start = 0;
        let nl: number;
        while (!failed && (nl = buffered.indexOf('\n', start)) >= 0) {
          line(buffered.slice(start, nl));
          start = nl + 1;
        }
        buffered = buffered.slice(start);
      });
      res.on('end', () => {
        if (!failed && buffered !== '') line(buffered);
        if (!failed) {
          failed = true;
          resolve();
        }
      });
      res.on('error', (err) => fail(this.transportError(err, 'GET', apiPath, options.signal)));
      // A stream destroyed under us (socket reset, abort) may close without 'end' or 'error'.
      res.on('close', () => fail(this.transportError(new Error('the watch stream was cut'), 'GET', apiPath, options.signal)));
    });
  }

  /** Closes idle keep-alive connections; requests in flight finish (abort them with their signals). */
  close(): void {
    this.agent.destroy();
  }

  private async json<T>(method: string, pathTemplate: string, options: CallOptions, request: { query?: Query; body?: unknown; contentType?: string }): Promise<T> {
    const apiPath = expandPath(pathTemplate, options.params);
    const res = await this.send(method, apiPath, options, request);
    const text = await this.readBody(res, method, apiPath, options.signal);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new KubeApiError('BAD_RESPONSE', `${method} ${apiPath}: the answer is not JSON: ${text.slice(0, 100)}`, { method, path: apiPath, status: res.statusCode });
    }
  }

  /** Sends a request; resolves with a 2xx response (body unread), rejects with KubeApiError otherwise. */
  private async send(method: string, apiPath: string, options: CallOptions, request: { query?: Query; body?: unknown; contentType?: string }): Promise<http.IncomingMessage> {
    let overrides: RequestOverrides = {};
    if (this.options.requestOptions !== undefined) {
      try {
        overrides = await this.options.requestOptions();
      } catch (err) {
        // A credential plugin that failed: say so rather than send the request without credentials.
        throw new KubeApiError('CREDENTIALS', `${method} ${apiPath}: no credentials from ${this.options.config.source}: ${err instanceof Error ? err.message.trim() : String(err)}`, { method, path: apiPath });
      }
    }
    const url = new URL(this.base.pathname.replace(/\/$/, '') + apiPath, this.base);
    for (const [k, v] of Object.entries(request.query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    const body = request.body === undefined ? undefined : JSON.stringify(request.body);
    const headers: http.OutgoingHttpHeaders = { Accept: 'application/json', 'User-Agent': this.options.userAgent ?? 'podroute' };
    if (body !== undefined) {
      headers['Content-Type'] = request.contentType ?? 'application/json';
      headers['Content-Length'] = Buffer.byteLength(body);
    }
    const token = this.currentToken();
    if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    Object.assign(headers, overrides.headers);

    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const scope = requestSignal(options.signal, timeoutMs);
    const { signal, timeout } = scope;
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        scope.dispose();
        reject(this.transportError(signal.reason, method, apiPath, options.signal));
        return;
      }
      const agent = overrides.agent ?? this.agent;
      const auth = overrides.auth === undefined ? {} : { auth: overrides.auth };
      const req = this.transport.request(url, { method, headers, agent, signal, ...auth }, (res) => {
        // The request's signal lives as long as its response: a watch or a body being read is aborted through it.
        res.once('close', scope.dispose);
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          resolve(res);
          return;
        }
        this.readBody(res, method, apiPath, options.signal).then(
          (text) => {
            let parsed: KubeStatus | undefined;
            try {
              parsed = JSON.parse(text) as KubeStatus;
            } catch {
              parsed = undefined;
            }
            reject(statusError(method, apiPath, status, isFields(parsed) ? parsed : undefined, text));
          },
          reject,
        );
      });
      req.on('error', (err) => {
        scope.dispose();
        reject(this.transportError(err, method, apiPath, options.signal, timeout));
      });
      req.end(body);
    });
  }

  private async readBody(res: http.IncomingMessage, method: string, apiPath: string, signal: AbortSignal | undefined): Promise<string> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of res) chunks.push(chunk as Buffer);
    } catch (err) {
      throw this.transportError(err, method, apiPath, signal);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  private transportError(err: unknown, method: string, apiPath: string, callerSignal: AbortSignal | undefined, timeout?: AbortSignal): KubeApiError {
    if (err instanceof KubeApiError) return err;
    const details = { method, path: apiPath };
    if (callerSignal?.aborted === true) return new KubeApiError('ABORTED', `${method} ${apiPath}: aborted`, details);
    const message = err instanceof Error ? err.message : String(err);
    const timedOut = timeout?.aborted === true || (err instanceof Error && (err.name === 'TimeoutError' || (err.cause as Error | undefined)?.name === 'TimeoutError'));
    if (timedOut) return new KubeApiError('TIMEOUT', `${method} ${apiPath}: no answer in time`, details);
    return new KubeApiError('CONNECTION', `${method} ${this.options.config.server}${apiPath}: ${message}`, details);
  }

  private currentToken(): string | undefined {
    const file = this.options.config.tokenFile;
    if (file === undefined || this.options.config.token !== undefined) return this.token.value;
    const now = Date.now();
    if (this.token.value === undefined || now - this.token.readAt >= this.tokenRefreshMs) {
      try {
        this.token = { value: fs.readFileSync(file, 'utf8').trim(), readAt: now };
      } catch {
        // Keep the last token: a rotation writes the file anew, a failed read now is not worth a failed request.
        this.token = { value: this.token.value, readAt: now };
      }
    }
    return this.token.value;
  }
}

/**
 * One request's own signal: aborted by the caller's signal or after timeoutMs (then `timeout` is aborted too).
 * Not AbortSignal.any(): on Node 20 every composite leaves an entry on its long-lived source signal for good
 * (nodejs/node#55351), one per request here. dispose() drops the timer and the listener on the caller's signal.
 */
export function requestSignal(caller: AbortSignal | undefined, timeoutMs: number): { signal: AbortSignal; timeout: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const timeout = new AbortController();
  const onAbort = (): void => controller.abort(caller?.reason);
  const timer = setTimeout(() => {
    const reason = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    timeout.abort(reason);
    controller.abort(reason);
  }, timeoutMs);
  timer.unref();
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    clearTimeout(timer);
    caller?.removeEventListener('abort', onAbort);
  };
  if (caller?.aborted === true) controller.abort(caller.reason);
  else caller?.addEventListener('abort', onAbort, { once: true });
  return { signal: controller.signal, timeout: timeout.signal, dispose };
}

/** '/api/v1/namespaces/{namespace}/events' + { namespace: 'default' } → '/api/v1/namespaces/default/events'. */
export function expandPath(template: string, params: PathParams = {}): string {
  return template.replace(/\{([a-zA-Z]+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined || value === '') throw new KubeApiError('BAD_REQUEST', `${template}: no value for {${name}}`, { path: template });
    return encodeURIComponent(value);
  });
}
