// The masquerade reconciler: keeps podroute's nat chain, its POSTROUTING jump and its ipsets (masquerade-plan.ts)
// equal to the config, level-triggered. Any change only marks it dirty; a periodic resync re-reads the kernel and
// repairs drift (a deleted jump, a flushed chain, edited set contents). It writes only its own chain, through
// `iptables-restore --noflush`, and its own sets, through `ipset restore` + swap: other tools' rules are never read
// back and rewritten. The pass schedule is the shared ReconcileLoop's.
import type { Logger } from '../observe/log.js';
import { errorInfo, ReconcileLoop, type ReconcileStatus } from '../reconcile/loop.js';
import { CommandFailedError, type CommandRunner, localRunner } from '../host/command.js';
import { DEFAULT_IPTABLES_BACKEND, iptablesCommands, type IptablesBackend } from '../host/iptables-backend.js';
import { listSetsInput } from '../host/ipset-save.js';
import { IP_FAMILIES, type IpFamily } from '../routes/ip-prefix.js';
import {
  desiredMasqueradeFamily,
  isEmptyPlan,
  MASQ_CHAIN,
  type MasqueradeConfig,
  type MasqueradeFamilyPlan,
  type MasqueradePlanSummary,
  type MasqueradeSpec,
  normalizeMasqueradeConfig,
  type ObservedMasqueradeFamily,
  ownedSetNames,
  parseChainRuleHashes,
  observedMasqueradeSets,
  parsePostroutingFirst,
  parsePostroutingJumps,
  planMasqueradeFamily,
  renderIpsetRestore,
  renderIptablesRestore,
} from './masquerade-plan.js';


/**
 * Reads what podroute owns in the nat table and in ipset, for both families. The sets are read by name: a node's
 * `ipset save` also holds the policy sets (several MB of pod addresses on a big cluster), and parsing all of it
 * every resync was most of the idle agent's main-thread time. So the names are listed first (`ipset list -n`,
 * at once with `iptables-save -t nat` per family), then our present sets are listed in one `ipset restore` of
 * `list NAME -o save` lines: the same text `ipset save` prints for them.
 */
export async function observeMasquerade(
  runner: CommandRunner,
  backend: IptablesBackend,
  signal?: AbortSignal,
): Promise<Record<IpFamily, ObservedMasqueradeFamily>> {
  const opts = signal === undefined ? {} : { signal };
  const [names, ipv4, ipv6] = await Promise.all([
    runner.run(['ipset', 'list', '-n'], opts),
    runner.run([iptablesCommands(backend, 'ipv4').save, '-t', 'nat'], opts),
    runner.run([iptablesCommands(backend, 'ipv6').save, '-t', 'nat'], opts),
  ]);
  const input = listOwnedSetsInput(names);
  // A set destroyed by someone else between the two reads fails this read: the loop retries it.
  const sets = input === '' ? '' : await runner.run(['ipset', 'restore'], { ...opts, input });
  return parseObservedMasquerade({ sets, ipv4, ipv6 });
}

/** Pure: the `ipset restore` input that lists, in save form, those of our sets that `ipset list -n` printed. */
export function listOwnedSetsInput(setNames: string): string {
  const owned = new Set(IP_FAMILIES.flatMap((family) => ownedSetNames(family)));
  return listSetsInput(setNames.split('\n').map((name) => name.trim()).filter((name) => owned.has(name)));
}

/** Pure: our sets, chain and POSTROUTING jumps from `ipset save` and each family's `iptables-save -t nat`. */
export function parseObservedMasquerade(saved: { sets: string } & Record<IpFamily, string>): Record<IpFamily, ObservedMasqueradeFamily> {
  const observed = {} as Record<IpFamily, ObservedMasqueradeFamily>;
  for (const family of IP_FAMILIES) {
    const owned = ownedSetNames(family);
    const sets = observedMasqueradeSets(saved.sets, (name) => owned.includes(name));
    const nat = saved[family];
    // The save output names every chain of the table in a `:CHAIN POLICY [counters]` line: ours may be missing.
    const chainExists = nat.startsWith(`:${MASQ_CHAIN} `) || nat.includes(`\n:${MASQ_CHAIN} `);
    observed[family] = {
      sets,
      chainRuleHashes: chainExists ? parseChainRuleHashes(nat) : null,
      postroutingJumps: parsePostroutingJumps(nat),
      postroutingFirst: parsePostroutingFirst(nat),
    };
  }
  return observed;
}

async function restore(
  runner: CommandRunner,
  argv: string[],
  input: string,
  logger: Logger,
  family: IpFamily,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await runner.run(argv, { input, ...(signal === undefined ? {} : { signal }) });
  } catch (error) {
    // The exact input: the one thing needed to see why the kernel refused it.
    const { exitCode = -1, stderr = '' } = error instanceof CommandFailedError ? error : {};
    logger.error(`${argv[0]} failed`, { family, argv, exitCode, stderr: stderr.trim(), input });
    throw error;
  }
}

/** Applies one family's plan in the order the kernel needs: rules stop referencing a set before it is destroyed. */
export async function applyMasqueradePlan(
  runner: CommandRunner,
  backend: IptablesBackend,
  plan: MasqueradeFamilyPlan,
  logger: Logger,
  signal?: AbortSignal,
): Promise<void> {
  const iptablesRestore = [iptablesCommands(backend, plan.family).restore, '--noflush', '-w'];
  if (plan.unreferenceChain) {
    logger.warn('an ipset of ours has the wrong type: recreating it (masquerade paused meanwhile)', {
      family: plan.family,
      sets: plan.summary.setsRecreated,
    });
    await restore(runner, iptablesRestore, renderIptablesRestore([`:${MASQ_CHAIN} - [0:0]`]), logger, plan.family, signal);
  }
  if (plan.ipsetRestore.length > 0) {
    await restore(runner, ['ipset', 'restore'], renderIpsetRestore(plan.ipsetRestore), logger, plan.family, signal);
  }
  if (plan.iptablesRestore.length > 0) {
    await restore(runner, iptablesRestore, renderIptablesRestore(plan.iptablesRestore), logger, plan.family, signal);
  }
  if (plan.destroySetsAfter.length > 0) {
    const input = renderIpsetRestore(plan.destroySetsAfter.map((name) => `destroy ${name}`));
    await restore(runner, ['ipset', 'restore'], input, logger, plan.family, signal);
  }
}

export interface MasqueradeSyncResult {
  /** Whether anything was written. */
  changed: boolean;
  families: Record<IpFamily, MasqueradePlanSummary>;
}

export interface MasqueradeStatus {
  started: boolean;
  /** The last sync succeeded and the desired state has not changed since. */
  inSync: boolean;
  /** Which families are masqueraded (have cluster ranges). */
  families: Record<IpFamily, boolean>;
  /** The loop's passes (sync() on demand included): last attempt and success, last error, failures. */
  loop: ReconcileStatus;
  /** What the last successful sync that wrote something wrote. */
  lastChanges?: MasqueradeSyncResult;
}

export interface MasqueradeReconcilerOptions extends MasqueradeConfig {
  logger: Logger;
  /** Runs iptables/ipset; default: in the current network namespace. */
  runner?: CommandRunner;
  /** Which iptables the chain goes to (see host/iptables-backend.ts); default nft. */
  iptablesBackend?: IptablesBackend;
  /** Re-read the kernel and repair drift this often. Default 60 s. */
  resyncIntervalMs?: number;
  /** Retry after a failed sync, doubling from min to max. Default 1 s to 30 s. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

export class MasqueradeReconciler {
  private readonly logger: Logger;
  private readonly runner: CommandRunner;
  private readonly backend: IptablesBackend;
  private readonly loop: ReconcileLoop;
  private spec: MasqueradeSpec;
  /** The desired state changed since the sync in progress began. */
  private dirty = true;
  private removed = false;
  private readonly state: Omit<MasqueradeStatus, 'loop'>;

  constructor(options: MasqueradeReconcilerOptions) {
    this.logger = options.logger;
    this.runner = options.runner ?? localRunner();
    this.backend = options.iptablesBackend ?? DEFAULT_IPTABLES_BACKEND;
    const retryMinMs = options.retryMinMs ?? 1_000;
    this.loop = new ReconcileLoop({
      name: 'masquerade',
      resyncIntervalMs: options.resyncIntervalMs ?? 60_000,
      backoff: { initialMs: retryMinMs, maxMs: Math.max(retryMinMs, options.retryMaxMs ?? 30_000) },
      defaultErrorCode: 'NAT_ERROR',
      pass: async ({ signal }) => {
        if (this.removed) return { skipped: true };
        await this.syncOnce(this.spec, signal);
      },
      onFailure: (error, { retryInMs }) => this.logger.error('masquerade sync failed; retrying', { ...errorInfo(error, 'NAT_ERROR'), retryMs: Math.round(retryInMs) }),
    });
    this.spec = normalizeMasqueradeConfig(options);
    this.state = { started: false, inSync: false, families: this.familiesOf(this.spec) };
  }

  /** Replaces the desired config (validated first: a bad one throws MasqueradeConfigError and changes nothing). */
  setDesired(config: MasqueradeConfig): void {
    const spec = normalizeMasqueradeConfig(config);
    // Callers may pass the same config on every Node event: an unchanged one costs nothing.
    if (JSON.stringify(spec) === JSON.stringify(this.spec)) return;
    this.spec = spec;
    this.state.families = this.familiesOf(this.spec);
    this.dirty = true;
    this.state.inSync = false;
    this.loop.markDirty();
  }

  /** Runs the reconcile loop until `signal` aborts or remove() is called; failures are retried with back-off. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.state.started) throw new Error('MasqueradeReconciler.start: already started');
    this.state.started = true;
    await this.loop.run(signal);
  }

  /** Settles when the first sync succeeds (never, if none does). */
  whenSynced(): Promise<void> {
    return this.loop.whenSucceeded();
  }

  /** One reconcile now: observe, plan, apply. Serialized with the loop's syncs. */
  sync(signal?: AbortSignal): Promise<MasqueradeSyncResult> {
    return this.loop.passNow(() => this.syncOnce(this.spec, signal));
  }

  /** Removes everything podroute's masquerade owns (both families) and stops the loop from writing again. */
  remove(signal?: AbortSignal): Promise<MasqueradeSyncResult> {
    this.removed = true;
    this.loop.stop();
    return this.loop.exclusive(() => this.syncOnce({ ipv4: null, ipv6: null }, signal));
  }

  status(): MasqueradeStatus {
    return { ...structuredClone(this.state), loop: this.loop.status() };
  }

  private familiesOf(spec: MasqueradeSpec): Record<IpFamily, boolean> {
    return { ipv4: spec.ipv4 !== null, ipv6: spec.ipv6 !== null };
  }

  private async syncOnce(spec: MasqueradeSpec, signal?: AbortSignal): Promise<MasqueradeSyncResult> {
    const specUsed = this.spec;
    this.dirty = false;
    try {
      const observed = await observeMasquerade(this.runner, this.backend, signal);
      const families = {} as Record<IpFamily, MasqueradePlanSummary>;
      let changed = false;
      const errors: unknown[] = [];
      for (const family of IP_FAMILIES) {
        const familySpec = spec[family];
        const desired = familySpec === null ? null : desiredMasqueradeFamily(familySpec);
        const plan = planMasqueradeFamily(family, desired, observed[family]);
        families[family] = plan.summary;
        if (isEmptyPlan(plan)) continue;
        changed = true;
        this.logger.info('masquerade: applying changes', { family, ...plan.summary });
        // One family failing does not keep the other from converging.
        try {
          await applyMasqueradePlan(this.runner, this.backend, plan, this.logger, signal);
        } catch (error) {
          errors.push(error);
        }
      }
      if (errors.length > 0) throw errors[0];
      const result = { changed, families };
      if (changed) this.state.lastChanges = result;
      this.state.inSync = !this.dirty && specUsed === this.spec;
      return result;
    } catch (error) {
      this.dirty = true;
      this.state.inSync = false;
      throw error;
    }
  }
}
