// The lab API server's REST API from the host, over its unix socket.
import http from 'node:http';
import { LabError } from './errors.js';
import { labPaths } from './paths.js';

export interface ApiResponse {
  status: number;
  body: unknown;
}

export async function apiRequest(socketPath: string, method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  // Writes are decoded strictly, as kubectl asks by default: a field the API does not know is an error, not dropped.
  if (payload !== undefined && method !== 'DELETE' && !urlPath.includes('fieldValidation=')) {
    urlPath += `${urlPath.includes('?') ? '&' : '?'}fieldValidation=Strict`;
  }
  return await new Promise<ApiResponse>((resolve, reject) => {
    const req = http.request(
      {
        socketPath,
        method,
        path: urlPath,
        headers: { accept: 'application/json', ...(payload === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }) },
        timeout: 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            // not JSON: keep the text for the error message
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: timed out`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** Creates an object; an existing one is left as it is (a restarted API server keeps its store). */
export async function apiCreate(socketPath: string, collection: string, object: Record<string, unknown>): Promise<void> {
  const res = await apiRequest(socketPath, 'POST', collection, object);
  if (res.status === 201 || res.status === 200 || res.status === 409) return;
  throw new LabError('LAB_API_FAILED', `POST ${collection} answered ${res.status}: ${JSON.stringify(res.body)}`);
}

export interface PodView {
  namespace: string;
  name: string;
  node: string;
  phase: string;
  ips: string[];
}

export async function listPods(lab: string): Promise<PodView[]> {
  const res = await apiRequest(labPaths(lab).apiSocket, 'GET', '/api/v1/pods');
  if (res.status !== 200) throw new LabError('LAB_API_FAILED', `GET /api/v1/pods answered ${res.status}`);
  const items = ((res.body as { items?: unknown[] }).items ?? []) as {
    metadata?: { namespace?: string; name?: string };
    spec?: { nodeName?: string };
    status?: { phase?: string; podIPs?: { ip: string }[]; podIP?: string };
  }[];
  return items.map((p) => ({
    namespace: p.metadata?.namespace ?? '',
    name: p.metadata?.name ?? '',
    node: p.spec?.nodeName ?? '',
    phase: p.status?.phase ?? 'Pending',
    ips: p.status?.podIPs?.map((i) => i.ip) ?? (p.status?.podIP === undefined ? [] : [p.status.podIP]),
  }));
}
