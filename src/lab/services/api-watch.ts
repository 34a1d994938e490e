// The lab's controller stand-ins read the lab API server over its unix socket: a LIST is the truth they reconcile
// against, a WATCH only says "something changed" (the one-slot dirty signal). Nothing of @kubernetes/client-node is
// loaded: these run for the whole life of a lab.
import http from 'node:http';
import { apiRequest } from '../api.js';
import { LabError } from '../errors.js';

export async function listItems<T>(socket: string, collection: string): Promise<{ items: T[]; resourceVersion: string }> {
  const res = await apiRequest(socket, 'GET', collection);
  if (res.status !== 200) throw new LabError('LAB_API_FAILED', `GET ${collection} answered ${res.status}: ${JSON.stringify(res.body)}`);
  const body = res.body as { items?: T[]; metadata?: { resourceVersion?: string } };
  return { items: body.items ?? [], resourceVersion: body.metadata?.resourceVersion ?? '' };
}

/**
 * Calls `onChange` for every event of a collection's watch, and once more whenever the watch is re-established
 * (after an error, an API server restart or a 410): the caller re-lists then, so nothing is missed.
 */
export function watchCollection(socket: string, collection: string, onChange: () => void, signal: AbortSignal, onError?: (err: Error) => void): void {
  let delay = 250;
  const once = async (): Promise<void> => {
    const { resourceVersion } = await listItems(socket, collection);
    onChange();
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        { socketPath: socket, method: 'GET', path: `${collection}?watch=1&resourceVersion=${encodeURIComponent(resourceVersion)}`, headers: { accept: 'application/json' } },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`watch ${collection} answered ${res.statusCode}`));
            return;
          }
          delay = 250;
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (chunk.includes('"ERROR"')) req.destroy();
            onChange();
          });
          res.on('end', resolve);
          res.on('error', reject);
        },
      );
      const abort = (): void => {
        req.destroy();
        resolve();
      };
      signal.addEventListener('abort', abort, { once: true });
      req.on('close', () => signal.removeEventListener('abort', abort));
      req.on('error', reject);
      req.end();
    });
  };
  const loop = async (): Promise<void> => {
    while (!signal.aborted) {
      try {
        await once();
      } catch (err) {
        onError?.(err instanceof Error ? err : new Error(String(err)));
      }
      if (signal.aborted) break;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  };
  void loop();
}
