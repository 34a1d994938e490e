// What the agent tells Kubernetes about its node: the NetworkUnavailable condition once routes are programmed,
// and Events for things an operator must see (bad annotations, rejected routes, peers going down).
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../observe/log.js';
import { describeError } from './cluster-watch.js';

export const CONDITION_REASON = 'PodrouteRoutesProgrammed';
/** The same message is posted again only after this long (an Event storm helps nobody). */
const EVENT_REPEAT_MS = 10 * 60_000;

export interface NodeReporterOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  logger: Logger;
  /** Namespace Events about the Node go to (cluster-scoped objects' events live in "default"). */
  eventNamespace?: string;
}

export class NodeReporter {
  private readonly core: CoreV1Api;
  private readonly lastPosted = new Map<string, number>();
  private conditionSet = false;

  constructor(private readonly options: NodeReporterOptions) {
    this.core = options.kubeConfig.makeApiClient(CoreV1Api);
  }

  /** Sets NetworkUnavailable=False (once per process; the condition outlives agent restarts anyway). */
  async markNetworkAvailable(): Promise<void> {
    if (this.conditionSet) return;
    const now = new Date().toISOString();
    const body = {
      status: {
        conditions: [
          { type: 'NetworkUnavailable', status: 'False', reason: CONDITION_REASON, message: 'podroute programmed the routes of this node', lastTransitionTime: now, lastHeartbeatTime: now },
        ],
      },
    };
    await this.core.patchNodeStatus({ name: this.options.nodeName, body }, setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch));
    this.conditionSet = true;
    this.options.logger.info('node condition NetworkUnavailable=False set', { node: this.options.nodeName });
  }

  /** Posts an Event on the Node; failures are logged, never thrown (Events are best effort). */
  async event(type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const key = `${type}/${reason}/${message}`;
    const last = this.lastPosted.get(key);
    if (last !== undefined && Date.now() - last < EVENT_REPEAT_MS) return;
    this.lastPosted.set(key, Date.now());
    const namespace = this.options.eventNamespace ?? 'default';
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${this.options.nodeName}.podroute.`, namespace },
          involvedObject: { kind: 'Node', name: this.options.nodeName, apiVersion: 'v1' },
          type,
          reason,
          message,
          source: { component: 'podroute', host: this.options.nodeName },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          reportingComponent: 'podroute',
          reportingInstance: this.options.nodeName,
        },
      });
    } catch (err) {
      this.options.logger.warn('could not post a Kubernetes Event', { reason, error: describeError(err) });
    }
  }
}
