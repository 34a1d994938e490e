// The agent's HTTP endpoints: /metrics (Prometheus), /healthz (liveness), /readyz (readiness), /status (JSON).
// It binds exactly the configured host:port: the address is never widened to all interfaces on its own.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Logger } from './log.js';
import type { HealthReport, ReadinessReport } from './health.js';
import { errorMessage } from './health.js';

export class ObserveServerError extends Error {
  constructor(
    readonly code: 'INVALID_ADDRESS' | 'BIND_FAILED' | 'ALREADY_STARTED',
    message: string,
  ) {
    super(message);
    this.name = 'ObserveServerError';
  }
}

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Parses `host:port` or `[v6]:port` (metrics.address). The host must be an IP address or `localhost`: a
 * missing host would make Node listen on every interface, which is never what an operator meant.
 * Port 0 asks the kernel for a free port (tests).
 */
export function parseListenAddress(text: string): ListenAddress {
  const bad = (why: string): ObserveServerError =>
    new ObserveServerError('INVALID_ADDRESS', `metrics.address ${JSON.stringify(text)}: ${why} (expected host:port or [v6]:port)`);
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (m === null) throw bad('not host:port');
  const host = m[1]!;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw bad('port out of range');
  if (host !== 'localhost' && !ipaddr.isValid(host)) throw bad('host is not an IP address');
  if (text.startsWith('[') && host !== 'localhost' && ipaddr.parse(host).kind() !== 'ipv6') throw bad('brackets are for IPv6 only');
  return { host, port };
}

/** What the endpoints answer with; each is called per request. */
export interface ObserveHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  health(): HealthReport;
  readiness(): Promise<ReadinessReport>;
  status(): Promise<unknown>;
}

export interface ObserveServerOptions {
  /** metrics.address: host:port. */
  address: string;
  handlers: ObserveHandlers;
  logger?: Logger;
}

export class ObserveServer {
  private readonly listen: ListenAddress;
  private server: Server | undefined;

  /** Validates the address at once (ObserveServerError INVALID_ADDRESS); nothing is bound before start(). */
  constructor(private readonly options: ObserveServerOptions) {
    this.listen = parseListenAddress(options.address);
  }

  /** Binds host:port; rejects with ObserveServerError BIND_FAILED (address in use, not local...). */
  async start(): Promise<void> {
    if (this.server !== undefined) throw new ObserveServerError('ALREADY_STARTED', 'ObserveServer.start() called twice');
    const server = createServer((req, res) => void this.handle(req, res));
    // Probes and scrapes are short; a stuck client must not hold a socket for ever.
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.server = undefined;
        reject(new ObserveServerError('BIND_FAILED', `cannot listen on ${this.options.address}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' ')));
      };
      server.once('error', onError);
      server.listen({ host: this.listen.host, port: this.listen.port, exclusive: true }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.options.logger?.warn('metrics server error', { error: errorMessage(err) }));
        resolve();
      });
    });
    const bound = this.address();
    this.options.logger?.info('serving /metrics, /healthz, /readyz and /status', { address: `${bound.host}:${bound.port}` });
  }

  /** The bound address (the real port when 0 was configured). */
  address(): ListenAddress {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (a === undefined || a === null) return this.listen;
    return { host: a.address, port: a.port };
  }

  /** Stops listening and closes every connection; resolves when the socket is closed. */
  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        return sendJson(res, 405, { error: `method ${req.method ?? ''} not allowed` });
      }
      switch (path) {
        case '/metrics': {
          const { contentType, body } = await this.options.handlers.metrics();
          res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : body);
          return;
        }
        case '/healthz': {
          const report = this.options.handlers.health();
          return sendJson(res, report.healthy ? 200 : 503, { status: report.healthy ? 'ok' : 'unhealthy', ...report });
        }
        case '/readyz': {
          const report = await this.options.handlers.readiness();
          return sendJson(res, report.ready ? 200 : 503, { status: report.ready ? 'ready' : 'not ready', ...report });
        }
        case '/status':
          return sendJson(res, 200, await this.options.handlers.status());
        default:
          return sendJson(res, 404, { error: `no such endpoint ${path ?? ''}; try /metrics, /healthz, /readyz or /status` });
      }
    } catch (err) {
      this.options.logger?.warn('metrics endpoint failed', { path, error: errorMessage(err) });
      if (!res.headersSent) sendJson(res, 500, { error: errorMessage(err) });
      else res.destroy();
    }
  }
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(code, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}
