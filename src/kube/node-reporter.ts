// What the agent tells Kubernetes about its node: the NetworkUnavailable condition once routes are programmed,
// and Events for things an operator must see (bad annotations, rejected routes, peers going down).
import type { KubeEvent } from './wire.js';
import type { Logger } from '../observe/log.js';
import { describeError } from './cluster-watch.js';
import { KubeApi, type KubeConnectionConfig } from './kube-api.js';

export const CONDITION_REASON = 'PodrouteRoutesProgrammed';
/** The same message is posted again only after this long (an Event storm helps nobody). */
const EVENT_REPEAT_MS = 10 * 60_000;

export interface NodeReporterOptions {
  kubeConfig: KubeConnectionConfig;
  nodeName: string;
  logger: Logger;
  /** Namespace Events about the Node go to (cluster-scoped objects' events live in "default"). */
  eventNamespace?: string;
}

/** The object an Event is about (its involvedObject). */
export interface EventSubject {
  kind: string;
  apiVersion: string;
  name: string;
  namespace?: string;
}

export class NodeReporter {
  private readonly api: KubeApi;
  private readonly lastPosted = new Map<string, number>();
  private conditionSet = false;

  constructor(private readonly options: NodeReporterOptions) {
    this.api = new KubeApi({ config: options.kubeConfig });
  }

  /** Sets NetworkUnavailable=False (once per process; the condition outlives agent restarts anyway). */
  async markNetworkAvailable(signal?: AbortSignal): Promise<void> {
    if (this.conditionSet) return;
    const now = new Date().toISOString();
    const body = {
      status: {
        conditions: [
          { type: 'NetworkUnavailable', status: 'False', reason: CONDITION_REASON, message: 'podroute programmed the routes of this node', lastTransitionTime: now, lastHeartbeatTime: now },
        ],
      },
    };
    // Strategic merge: conditions merge by type, so the kubelet's own conditions stay as they are.
    await this.api.patch('/api/v1/nodes/{name}/status', body, { params: { name: this.options.nodeName }, patchType: 'strategic-merge', ...(signal === undefined ? {} : { signal }) });
    this.conditionSet = true;
    this.options.logger.info('node condition NetworkUnavailable=False set', { node: this.options.nodeName });
  }

  /**
   * Posts an Event on the Node, or on `about` (e.g. a NetworkPolicy, so that `kubectl describe` shows it there);
   * failures are logged, never thrown (Events are best effort).
   */
  async event(type: 'Normal' | 'Warning', reason: string, message: string, about?: EventSubject): Promise<void> {
    const key = `${about?.kind ?? 'Node'}/${about?.namespace ?? ''}/${about?.name ?? ''}/${type}/${reason}/${message}`;
    const last = this.lastPosted.get(key);
    if (last !== undefined && Date.now() - last < EVENT_REPEAT_MS) return;
    this.lastPosted.set(key, Date.now());
    const namespace = about?.namespace ?? this.options.eventNamespace ?? 'default';
    const now = new Date().toISOString();
    // Timestamps as the API's strings (the generated client would have serialized Dates the same way).
    const body: Omit<KubeEvent, 'firstTimestamp' | 'lastTimestamp'> & { firstTimestamp: string; lastTimestamp: string } = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${this.options.nodeName}.podroute.`, namespace },
      involvedObject: about ?? { kind: 'Node', name: this.options.nodeName, apiVersion: 'v1' },
      type,
      reason,
      message,
      source: { component: 'podroute', host: this.options.nodeName },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      reportingComponent: 'podroute',
      reportingInstance: this.options.nodeName,
    };
    try {
      await this.api.create('/api/v1/namespaces/{namespace}/events', body, { params: { namespace } });
    } catch (err) {
      this.options.logger.warn('could not post a Kubernetes Event', { reason, error: describeError(err) });
    }
  }

  /** Closes idle connections to the API server. */
  close(): void {
    this.api.close();
  }
}
