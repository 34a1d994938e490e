// The route selection loop: learned table -> incremental selection -> route reconciler. A level-triggered
// ReconcileLoop: a change of the learned table only records the prefixes it touched and marks the loop dirty;
// a pass re-judges those prefixes (all of them when the selection context changes) and hands the route
// reconciler the routes that changed. Passes are paced, so a flapping peer cannot become a kernel churn storm.
import type { LearnedTableListener, LearnedTableView } from '../bgp/learned-table.js';
import { KernelReadSchedule, linksAndAddressesMark, type KernelChanges } from '../host/kernel-monitor.js';
import type { Logger } from '../observe/log.js';
import { errorInfo, PassPacer, ReconcileLoop, type PassListener, type PassOutcome, type PassPacerOptions } from '../reconcile/loop.js';
import { onLinkNetworks, readConnectedNetworks } from './connected-networks.js';
import { IncrementalRouteSelector } from './incremental-selection.js';
import type { DesiredRoute, RejectedPath, RouteSelectionContext } from './select-routes.js';

/**
 * Connected networks change rarely (an address added by hand, a link renumbered, a carrier lost): re-read them this
 * often, or, with link and address notifications, when one came (at once) and every CONNECTED_READ_EVERY passes.
 */
export const CONNECTED_REFRESH_MS = 10_000;
const CONNECTED_READ_EVERY = 30;
/**
 * Pacing of the route passes (each one may write to the kernel): a change after a quiet spell goes at once; a
 * burst is taken in passes at least 25 ms apart; prefixes flapping from pass to pass stretch that up to 2 s until
 * the flapping stops (see PassPacer). Exported for the churn test's bound.
 */
export const ROUTE_PASS_PACING: PassPacerOptions = { minIntervalMs: 25, maxIntervalMs: 2_000, quietResetMs: 4_000 };
/** Refused paths reported one by one per pass at most (a hostile peer may send thousands); the rest are counted. */
const REPORTED_REJECTIONS_PER_PASS = 20;

/** What the node's desired state says about selection; the loop adds the on-link networks it reads itself. */
export interface RouteSelectionInput extends Omit<RouteSelectionContext, 'onLinkNetworks' | 'excludedCIDRs'> {
  /** podCIDRs claimed by more than one node: routes inside them are never installed from anyone. */
  conflictedCIDRs: string[];
}

/** The learned table as the loop reads it (the BGP reconciler's LearnedTable). */
export interface LearnedPathSource {
  view(): LearnedTableView;
  onChange(listener: LearnedTableListener): () => void;
}

/** The route reconciler as the loop drives it. */
export interface DesiredRouteSink {
  setDesired(routes: readonly DesiredRoute[]): void;
  updateDesired(changes: Iterable<[string, DesiredRoute | undefined]>): void;
}

export interface RouteSelectionLoopOptions {
  learned: LearnedPathSource;
  routes: DesiredRouteSink;
  logger: Logger;
  /** A refused path worth a Kubernetes Event (already logged). */
  reportRejection?: (message: string) => void;
  /** Runs at the end of every pass that handed routes on (a failure fails the pass). */
  afterPass?: (signal: AbortSignal) => Promise<void>;
  /** Retry delay after a failed pass. */
  retry: { initialMs: number; maxMs: number };
  onPass?: PassListener;
  /** The node's connected networks (default: read from the kernel of the current namespace). */
  readConnectedNetworks?: (signal: AbortSignal) => Promise<string[]>;
  /** Link and address notifications (the agent's KernelChangeMonitor): see CONNECTED_REFRESH_MS. */
  kernelChanges?: KernelChanges;
}

export class RouteSelectionLoop {
  private readonly options: RouteSelectionLoopOptions;
  private readonly logger: Logger;
  private readonly loop: ReconcileLoop;
  private readonly selector = new IncrementalRouteSelector();
  private input: RouteSelectionInput | undefined;
  /** Learned-table prefixes changed since the last pass; `allPrefixesChanged` asks for every one. */
  private changedPrefixes = new Set<string>();
  private allPrefixesChanged = true;
  private wholeSetGiven = false;
  private connectedNetworks: string[] = [];
  private connectedReadAt = 0;
  private readonly connectedSchedule = new KernelReadSchedule(CONNECTED_READ_EVERY);
  /** Reads of the connected networks (for tests). */
  connectedReads = 0;
  private reportedRejections = new Set<string>();

  constructor(options: RouteSelectionLoopOptions) {
    this.options = options;
    this.logger = options.logger;
    this.loop = new ReconcileLoop({
      name: 'route-selection',
      resyncIntervalMs: CONNECTED_REFRESH_MS,
      backoff: options.retry,
      // Taken in passes, not per event: a burst lands in a few big batches, a flapping peer in few kernel writes.
      pacer: new PassPacer(ROUTE_PASS_PACING),
      pass: ({ signal }) => this.pass(signal),
      ...(options.onPass === undefined ? {} : { onPass: options.onPass }),
      onFailure: (err) => {
        this.allPrefixesChanged = true; // the changes this pass took are judged again with everything else
        this.logger.error('route selection failed; retrying', { error: errorInfo(err).message });
      },
    });
    // A link or address change is read at once (a lost carrier makes next hops behind it not on-link).
    options.kernelChanges?.onChange('link', () => this.loop.markDirty());
    options.kernelChanges?.onChange('address', () => this.loop.markDirty());
    options.learned.onChange((_table, changed) => {
      for (const prefix of changed) this.changedPrefixes.add(prefix);
      this.loop.markDirty();
    });
  }

  /**
   * The selection input of the node's desired state; the next pass uses it (a changed one re-judges every
   * prefix). It does not wake the loop: markDirty() does.
   */
  setInput(input: RouteSelectionInput): void {
    this.input = input;
  }

  /** Asks for a pass. */
  markDirty(): void {
    this.loop.markDirty();
  }

  run(signal: AbortSignal): Promise<void> {
    return this.loop.run(signal);
  }

  /**
   * Turns the learned table into routes. Waits for a complete table: a partial one would delete routes. The
   * first pass hands the route reconciler the whole selection; later ones only the routes that changed.
   */
  private async pass(signal: AbortSignal): Promise<PassOutcome> {
    const input = this.input;
    const table = this.options.learned.view();
    if (input === undefined || !table.synced) return { skipped: true };
    const changedKeys = this.allPrefixesChanged ? 'all' : this.changedPrefixes;
    this.changedPrefixes = new Set();
    this.allPrefixesChanged = false;
    const kernelChanges = this.options.kernelChanges;
    const due =
      kernelChanges === undefined ? Date.now() - this.connectedReadAt >= CONNECTED_REFRESH_MS : this.connectedSchedule.due(linksAndAddressesMark(kernelChanges));
    if (due) {
      const mark = linksAndAddressesMark(kernelChanges); // before the read: a change during it is read next time
      this.connectedNetworks = await (this.options.readConnectedNetworks ?? readConnectedNetworks)(signal);
      this.connectedSchedule.read(mark);
      this.connectedReadAt = Date.now();
      this.connectedReads++;
    }
    const { conflictedCIDRs, ...context } = input;
    // A changed context (nodes, ranges, connected networks, conflicts) re-judges every prefix.
    this.selector.setContext({ ...context, onLinkNetworks: onLinkNetworks(this.connectedNetworks, context.ownPodCIDRs), excludedCIDRs: conflictedCIDRs });
    const rejectedBefore = this.selector.rejectedVersion();
    const changes = this.selector.update(table.paths, changedKeys);
    if (this.selector.rejectedVersion() !== rejectedBefore) this.reportRejections(this.selector.rejected());
    if (!this.wholeSetGiven) {
      this.options.routes.setDesired([...this.selector.routes().values()]);
      this.wholeSetGiven = true;
    } else if (changes.size > 0) {
      this.options.routes.updateDesired(changes);
    }
    const changed = new Set(changes.keys());
    await this.options.afterPass?.(signal);
    return { changed };
  }

  private reportRejections(rejected: RejectedPath[]): void {
    const report = this.options.reportRejection;
    const current = new Set(rejected.map((r) => `${r.prefix} from ${r.neighborIp ?? 'local'} via ${r.nextHop}: ${r.reason}`));
    let unreported = 0;
    for (const line of current) {
      if (this.reportedRejections.has(line)) continue;
      if (unreported++ >= REPORTED_REJECTIONS_PER_PASS) continue;
      this.logger.warn('learned path not installed', { path: line });
      report?.(`learned path not installed: ${line}`);
    }
    if (unreported > REPORTED_REJECTIONS_PER_PASS) {
      const more = unreported - REPORTED_REJECTIONS_PER_PASS;
      this.logger.warn('more learned paths not installed', { count: more, total: current.size });
      report?.(`${more} more learned paths not installed (${current.size} refused in all)`);
    }
    this.reportedRejections = current;
  }
}
