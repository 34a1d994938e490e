// Test helpers for the lab API server: a started server on loopback, JSON requests and a line-reading watch.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { LabApiServer, type LabApiServerOptions } from '../../../../src/lab/apiserver/index.js';

export interface Started {
  server: LabApiServer;
  url: string;
  port: number;
}

export async function startServer(options: LabApiServerOptions = {}, port = 0): Promise<Started> {
  const server = new LabApiServer({ namespaceFinalizeDelayMs: 50, ...options });
  const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port } });
  return { server, url: `http://127.0.0.1:${tcpPort}`, port: tcpPort! };
}

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'h2-apiserver-'));
}

export interface JsonResponse {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function request(
  base: string,
  method: string,
  urlPath: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<JsonResponse> {
  const res = await fetch(base + urlPath, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': contentType },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
}

export interface WatchEvent {
  type: string;
  object: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** An HTTP watch that collects events (tests poll them with pollUntil). Works over TCP or a unix socket. */
export class WatchStream {
  readonly events: WatchEvent[] = [];
  ended = false;
  private req: http.ClientRequest | undefined;

  static open(target: { url?: string; socketPath?: string }, urlPath: string): Promise<WatchStream> {
    const w = new WatchStream();
    return new Promise((resolve, reject) => {
      const opts: http.RequestOptions =
        target.socketPath !== undefined
          ? { socketPath: target.socketPath, path: urlPath }
          : { host: new URL(target.url!).hostname, port: new URL(target.url!).port, path: urlPath };
      const req = http.get(opts, (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`watch ${urlPath}: HTTP ${res.statusCode}`));
          res.resume();
          return;
        }
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            w.events.push(JSON.parse(buf.slice(0, nl)) as WatchEvent);
            buf = buf.slice(nl + 1);
          }
        });
        res.on('end', () => (w.ended = true));
        res.on('close', () => (w.ended = true));
        resolve(w);
      });
      req.on('error', (err) => (w.req === undefined ? reject(err) : undefined));
      w.req = req;
    });
  }

  /** Events as "TYPE name" strings, for compact assertions. */
  summary(): string[] {
    return this.events.map((e) => `${e.type} ${e.object?.metadata?.name ?? ''}`.trim());
  }

  close(): void {
    this.req?.destroy();
  }
}

export function pod(name: string, namespace: string, extra: { labels?: Record<string, string>; nodeName?: string } = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, ...(extra.labels ? { labels: extra.labels } : {}) },
    spec: {
      ...(extra.nodeName ? { nodeName: extra.nodeName } : {}),
      containers: [{ name: 'serve', image: 'podroute/lab-serve', ports: [{ name: 'serve-80-tcp', containerPort: 80 }] }],
    },
  };
}
