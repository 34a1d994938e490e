// `podroute lab endpointslice-controller`: the lab's stand-in for kube-controller-manager's EndpointSlice
// controller, a process of its own on the host (as the lab API server), restartable at any time: it owns the
// EndpointSlices labelled managed-by endpointslice-controller.k8s.io and nothing else. Level-triggered: any Pod,
// Service, Node or EndpointSlice event marks it dirty; each pass lists everything and writes the difference.
import { createLogger, type Logger } from '../../observe/log.js';
import { DirtySignal } from '../../reconcile/loop.js';
import { apiRequest } from '../api.js';
import { LabError } from '../errors.js';
import { labPaths } from '../paths.js';
import { listItems, watchCollection } from './api-watch.js';
import { SERVICE_NAME_LABEL, isManagedSlice, planServiceSlices, type EndpointSlice, type Node, type Pod, type Service, type SliceWrite } from './endpoint-slices.js';

export interface EndpointSliceControllerOptions {
  lab: string;
  logger?: Logger;
  signal: AbortSignal;
  /** Full pass even without events (repairs slices edited by hand). Default 10 s. */
  resyncMs?: number;
}

const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';

/** One pass over the whole cluster: the writes for every Service, and for the slices of Services that are gone. */
export function planAllSlices(services: readonly Service[], pods: readonly Pod[], nodes: readonly Node[], slices: readonly EndpointSlice[]): SliceWrite[] {
  const key = (namespace: string | undefined, name: string | undefined): string => `${namespace ?? 'default'}/${name ?? ''}`;
  const byService = new Map<string, EndpointSlice[]>();
  for (const s of slices.filter(isManagedSlice)) {
    const k = key(s.metadata.namespace, s.metadata.labels?.[SERVICE_NAME_LABEL]);
    byService.set(k, [...(byService.get(k) ?? []), s]);
  }
  const writes: SliceWrite[] = [];
  for (const svc of services) {
    const k = key(svc.metadata.namespace, svc.metadata.name);
    writes.push(...planServiceSlices(svc, pods, nodes, byService.get(k) ?? []));
    byService.delete(k);
  }
  for (const orphaned of byService.values()) writes.push(...planServiceSlices(undefined, pods, nodes, orphaned));
  return writes;
}

async function applyWrite(socket: string, write: SliceWrite): Promise<void> {
  const ns = write.kind === 'delete' ? write.namespace : (write.slice.metadata.namespace ?? 'default');
  const collection = `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`;
  const res =
    write.kind === 'create'
      ? await apiRequest(socket, 'POST', collection, write.slice)
      : write.kind === 'update'
        ? await apiRequest(socket, 'PUT', `${collection}/${write.slice.metadata.name ?? ''}`, write.slice)
        : await apiRequest(socket, 'DELETE', `${collection}/${write.name}`);
  // A delete of what is gone already is done; a conflict means our list was stale: the next pass re-lists.
  if (res.status >= 200 && res.status < 300) return;
  if (write.kind === 'delete' && res.status === 404) return;
  throw new LabError('LAB_API_FAILED', `${write.kind} EndpointSlice in ${ns} answered ${res.status}: ${JSON.stringify(res.body)}`);
}

export async function runEndpointSliceController(options: EndpointSliceControllerOptions): Promise<void> {
  const { signal } = options;
  const log = options.logger ?? createLogger({ component: 'lab-endpointslice-controller', format: 'text' });
  const socket = labPaths(options.lab).apiSocket;
  const dirty = new DirtySignal();
  dirty.set();
  for (const collection of ['/api/v1/pods', '/api/v1/services', '/api/v1/nodes', SLICES]) {
    watchCollection(socket, collection, () => dirty.set(), signal, (err) => log.debug('watch interrupted', { collection, error: err.message }));
  }
  log.info('lab EndpointSlice controller started', { lab: options.lab });
  while (!signal.aborted) {
    await dirty.wait(options.resyncMs ?? 10_000, signal);
    if (signal.aborted) break;
    try {
      const [services, pods, nodes, slices] = await Promise.all([
        listItems<Service>(socket, '/api/v1/services'),
        listItems<Pod>(socket, '/api/v1/pods'),
        listItems<Node>(socket, '/api/v1/nodes'),
        listItems<EndpointSlice>(socket, SLICES),
      ]);
      const writes = planAllSlices(services.items, pods.items, nodes.items, slices.items);
      for (const write of writes) {
        await applyWrite(socket, write);
        const what = write.kind === 'delete' ? `${write.namespace}/${write.name}` : `${write.slice.metadata.namespace ?? ''}/${write.slice.metadata.name ?? write.slice.metadata.generateName ?? ''}`;
        log.info(`EndpointSlice ${write.kind}`, { slice: what, ...(write.kind === 'delete' ? {} : { endpoints: (write.slice.endpoints ?? []).length }) });
      }
    } catch (err) {
      log.warn('pass failed; retrying', { error: err instanceof Error ? err.message : String(err) });
      setTimeout(() => dirty.set(), 1_000).unref();
    }
  }
  log.info('lab EndpointSlice controller stopped');
}
