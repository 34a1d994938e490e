// Follows the pods' MTU across node re-plans: the links are read again each time (a fabric MTU may change under a
// running node), the choice is made by choosePodMtu, and a change is reported once (log and Event) and shown as a
// metric. The conflist writer gets the number; new pods get it, running pods keep theirs.
import { KernelReadSchedule, linksAndAddressesMark, type KernelChanges } from '../host/kernel-monitor.js';
import type { Logger } from '../observe/log.js';
import { describeError } from '../kube/cluster-watch.js';
import { choosePodMtu, readLinkMtus, type LinkMtu, type PodMtuChoice } from './pod-mtu.js';

/** What the pods get now: undefined mtu is the bridge plugin's default. */
export interface PodMtuStatus {
  mtu: number | undefined;
  source: PodMtuChoice['source'];
}

export interface PodMtuReport {
  level: 'info' | 'warn';
  message: string;
  /** Posted as a Normal Event on the Node (a change, not the first choice). */
  event?: { reason: 'PodrouteMtuChanged'; message: string };
}

/** Where the MTU came from, in words. */
function sourceText(choice: PodMtuChoice): string {
  if (choice.source === 'interface') return `the MTU of ${choice.interfaces.join(', ')}`;
  return choice.source === 'config' ? 'cni.mtu' : "the bridge plugin's default";
}

/** What to say about a choice given the previous one (undefined: none made yet); nothing when the MTU is unchanged. */
export function reportPodMtu(previous: PodMtuStatus | undefined, choice: PodMtuChoice): PodMtuReport | undefined {
  const mtu = choice.source === 'none' ? undefined : choice.mtu;
  if (previous === undefined) return { level: 'info', message: `pod MTU chosen: ${mtu ?? 'default'} (${sourceText(choice)})` };
  if (previous.mtu === mtu) return undefined;
  const message = `pod MTU changed from ${previous.mtu ?? 'default'} to ${mtu ?? 'default'} (${sourceText(choice)}): new pods get it, running pods keep theirs until they restart`;
  return { level: 'warn', message, event: { reason: 'PodrouteMtuChanged', message } };
}

export interface PodMtuTrackerOptions {
  /** cni.mtu: when set, the links are never read. */
  configured: number | undefined;
  logger: Logger;
  postEvent: (reason: string, message: string) => void;
  /** Default: `ip -j address show` in this namespace. */
  readLinks?: (signal: AbortSignal) => Promise<LinkMtu[]>;
  /**
   * Link and address notifications (the agent's KernelChangeMonitor): the links are read again only when one came
   * since the last read, and every LINKS_READ_EVERY choices regardless. Without it every choice reads them.
   */
  kernelChanges?: KernelChanges;
}

/** With notifications, a choice reads the links anyway this often (a notification the kernel dropped). */
const LINKS_READ_EVERY = 10;

export class PodMtuTracker {
  private current: PodMtuStatus | undefined;
  private readonly readLinks: (signal: AbortSignal) => Promise<LinkMtu[]>;
  private links: LinkMtu[] | undefined;
  private readonly linksSchedule = new KernelReadSchedule(LINKS_READ_EVERY);

  constructor(private readonly options: PodMtuTrackerOptions) {
    this.readLinks = options.readLinks ?? readLinkMtus;
  }

  /** The last choice (for metrics); undefined before the first. */
  status(): PodMtuStatus | undefined {
    return this.current;
  }

  /**
   * Chooses for the node's InternalIPs. The warnings (no link holds the InternalIP, an MTU too small for IPv6) are
   * the caller's to report with its other configuration problems. Links that cannot be read keep the last choice.
   */
  async choose(internalIPs: readonly string[], signal: AbortSignal): Promise<{ mtu: number | undefined; warnings: string[] }> {
    const { configured, logger } = this.options;
    let links: LinkMtu[] = [];
    if (configured === undefined) {
      try {
        const changes = this.options.kernelChanges;
        if (this.links === undefined || this.linksSchedule.due(linksAndAddressesMark(changes))) {
          const mark = linksAndAddressesMark(changes); // before the read: a change during it is read next time
          this.links = await this.readLinks(signal);
          this.linksSchedule.read(mark);
        }
        links = this.links;
      } catch (err) {
        logger.warn('could not read the interfaces to choose the pod MTU; keeping the previous choice', { error: describeError(err) });
        return { mtu: this.current?.mtu, warnings: [] };
      }
    }
    const choice = choosePodMtu({ configured, internalIPs, links });
    const warnings = [...(choice.source === 'none' ? [choice.problem] : []), ...(choice.warning === undefined ? [] : [choice.warning])];
    const report = reportPodMtu(this.current, choice);
    if (report !== undefined) {
      logger[report.level](report.message);
      if (report.event !== undefined) this.options.postEvent(report.event.reason, report.event.message);
    }
    this.current = { mtu: choice.source === 'none' ? undefined : choice.mtu, source: choice.source };
    return { mtu: this.current.mtu, warnings };
  }
}
