// The policy reconciler: owns the PRPOL- chains, the jumps to them and the PRPOL4-/PRPOL6- sets of its node.
// Level-triggered: setCluster() only records the newest snapshot and marks it dirty; the loop compiles the snapshot
// incrementally (the PolicyCompiler finds the changed pods by object identity, so snapshots must hand in a new object
// for a changed pod, as informer caches do, and never edit one in place), plans against what the kernel holds and
// applies the difference. Fail-closed: a failed apply leaves
// the previous rules in force and is retried with back-off; start-up never clears anything, so rules left by a
// previous agent keep enforcing until the new ones replace them chain by chain. The pass schedule is the shared
// ReconcileLoop's.
import { readFile } from 'node:fs/promises';
import type { CommandRunner } from '../host/command.js';
import type { Logger } from '../observe/log.js';
import { ReconcileLoop, type ReconcileStatus } from '../reconcile/loop.js';
import { IptablesPolicyApplier, parseObservedPolicy, policyKernelFingerprint, policySetNamesIn, PolicyApplyError, type ObservedPolicyText } from './apply.js';
import type { IptablesBackend } from '../host/iptables-backend.js';
import type { CompiledPolicies, PodBridge, PolicyProblem } from './compile.js';
import { PolicyCompiler } from './incremental.js';
import { observedAfter, planPolicyChanges, planRuleChangesInSteps, planSetChangesInSteps, type ObservedPolicyState } from './plan.js';
import { inSlices } from './slices.js';
import { CniResultCacheReader, planSourceBindings } from './source-binding.js';
import type { ClusterState, PolicyNode } from './types.js';

/**
 * A resync that finds nothing changed reads only a fingerprint of our rules and named sets; every this many-th
 * reads everything (see syncOnce).
 */
export const FULL_READ_EVERY = 10;

export interface PolicyReconcilerOptions {
  node: PolicyNode;
  logger: Logger;
  /** The node's pod bridge: same-node pod traffic is only filtered when bridge-nf-call-iptables is on. */
  bridgeName?: string;
  /**
   * Binds each local pod's veth to its addresses (from the CNI result cache under `cniCacheDir`, records of
   * `network`): what enters from a port of `bridgeName` from any other source is dropped, and so is everything
   * from a port not bound yet. Needs bridgeName.
   */
  sourceBinding?: { cniCacheDir: string; network: string };
  /** How commands reach the kernel; defaults to running them in the current network namespace. */
  runner?: CommandRunner;
  /** Which iptables the rules go to (see host/iptables-backend.ts); default nft. */
  iptablesBackend?: IptablesBackend;
  /** The packet-mark bit used inside our chains (default 0x40000). */
  allowMark?: number;
  /** Re-read the kernel and repair drift this often (default 60 s). */
  resyncIntervalMs?: number;
  /** Of the resyncs that find nothing changed, every this many-th reads everything (default FULL_READ_EVERY). */
  fullReadEvery?: number;
  /** Retry back-off after a failed apply: first delay and cap (defaults 250 ms, 30 s). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Called once for each policy that becomes invalid (or changes its problems): the agent posts an Event on it. */
  onInvalidPolicy?: (policy: string, problems: PolicyProblem[]) => void;
}

export interface PolicyStatus {
  /** Our chains and rules (both families) and sets, as last applied. */
  chains: number;
  rules: number;
  sets: number;
  /** The loop's passes: last attempt and success, last error, failures. */
  loop: ReconcileStatus;
  /** Invalid policies in the current snapshot (enforced as isolate-and-allow-nothing). */
  problems: PolicyProblem[];
  /** The snapshot generation last handed in, and the one whose rules are in the kernel. */
  generation: number;
  appliedGeneration: number;
  /** bridge-nf-call-iptables (and ip6tables) as read at start; null when unknown. */
  bridgeNetfilter: boolean | null;
  /** Resyncs that read the kernel as it was when last found in sync, with nothing new handed in: nothing compiled or planned. */
  unchangedResyncs: number;
  /** Compiles run: a sync with nothing handed in since the last one that went in plans with that one's rules. */
  compiles: number;
}

export class PolicyReconciler {
  private readonly opts: PolicyReconcilerOptions;
  private node: PolicyNode;
  private readonly applier: IptablesPolicyApplier;
  private readonly cniCache: CniResultCacheReader | undefined;
  private bindingProblems = '';
  /** Keeps the previous compile's state: a single pod change re-evaluates only what depends on that pod. */
  private readonly compiler = new PolicyCompiler();
  private readonly logger: Logger;
  private cluster: ClusterState | null = null;
  private generation = 0;
  private appliedGeneration = 0;
  private observed: ObservedPolicyState | null = null;
  private lastCompiled: CompiledPolicies | null = null;
  /** The pod bridge (bindings) lastCompiled was compiled with, as JSON. */
  private lastCompiledBridge = '';
  /**
   * The fingerprint (policyKernelFingerprint) of the last fresh kernel read that needed no change, over the sets the
   * rules were compiled with: a resync that reads the same with nothing handed in since has nothing to compile or
   * plan. Such a resync reads only the fingerprint (readKernelFingerprint), except every FULL_READ_EVERY-th.
   */
  private inSyncFingerprint: string | undefined;
  private inSyncSetNames: string[] = [];
  /** Resyncs since the last full read that were answered by the fingerprint alone. */
  private fingerprintOnlyResyncs = 0;
  private unchangedResyncs = 0;
  private compiles = 0;
  private problems: PolicyProblem[] = [];
  private bridgeNetfilter: boolean | null = null;
  private running = false;
  private readonly loop: ReconcileLoop;

  constructor(options: PolicyReconcilerOptions) {
    this.opts = options;
    this.node = options.node;
    this.logger = options.logger;
    this.applier = new IptablesPolicyApplier({
      ...(options.runner === undefined ? {} : { runner: options.runner }),
      ...(options.iptablesBackend === undefined ? {} : { backend: options.iptablesBackend }),
    });
    if (options.sourceBinding !== undefined && options.bridgeName === undefined) throw new Error('PolicyReconciler: sourceBinding needs bridgeName');
    this.cniCache = options.sourceBinding === undefined ? undefined : new CniResultCacheReader(options.sourceBinding.cniCacheDir);
    const retryInitialMs = options.retryInitialMs ?? 250;
    this.loop = new ReconcileLoop({
      name: 'policy',
      resyncIntervalMs: options.resyncIntervalMs ?? 60_000,
      backoff: { initialMs: retryInitialMs, maxMs: Math.max(retryInitialMs, options.retryMaxMs ?? 30_000) },
      // Nothing to do before the first setCluster(): it wakes the loop.
      startDirty: false,
      pass: ({ signal, resync }) => this.syncOnce(signal, resync),
      onFailure: (err, { consecutiveFailures }) => {
        this.logger.error('policy apply failed; previous rules stay in force', {
          error: err instanceof Error ? err.message : String(err),
          code: (err as { code?: string }).code,
          failures: consecutiveFailures,
          ...(err instanceof PolicyApplyError ? { step: err.step, input: err.input } : {}),
        });
      },
    });
  }

  /**
   * Hands in the newest snapshot, and the node's newest addresses and podCIDRs when they may have changed (a node
   * re-added with another podCIDR); returns its generation (see status().appliedGeneration).
   */
  setCluster(state: ClusterState, node?: PolicyNode): number {
    this.cluster = { pods: [...state.pods], namespaces: [...state.namespaces], policies: [...state.policies] };
    if (node !== undefined) this.node = node;
    this.generation++;
    this.loop.markDirty();
    return this.generation;
  }

  /** True once a sync has succeeded: the rules for a snapshot are in the kernel. */
  hasSynced(): boolean {
    return this.loop.hasSucceeded();
  }

  /**
   * Settles when the first sync succeeds (never, if none does). The agent writes the CNI conflist only then: pods
   * started before any rule is in would run unfiltered.
   */
  whenSynced(): Promise<void> {
    return this.loop.whenSucceeded();
  }

  status(): PolicyStatus {
    const families = this.lastCompiled === null ? [] : [this.lastCompiled.v4, this.lastCompiled.v6];
    return {
      chains: families.reduce((n, f) => n + f.chains.size, 0),
      rules: families.reduce((n, f) => n + [...f.chains.values()].reduce((m, r) => m + r.length, 0), 0),
      sets: families.reduce((n, f) => n + f.sets.size, 0),
      loop: this.loop.status(),
      problems: this.problems,
      generation: this.generation,
      appliedGeneration: this.appliedGeneration,
      bridgeNetfilter: this.bridgeNetfilter,
      unchangedResyncs: this.unchangedResyncs,
      compiles: this.compiles,
    };
  }

  /** Runs until `signal` aborts. Nothing is written before the first setCluster(). */
  async start(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error('PolicyReconciler.start: already running');
    this.running = true;
    try {
      await this.checkBridgeNetfilter();
      await this.loop.run(signal);
    } finally {
      this.applier.close();
      this.running = false;
    }
  }

  private async syncOnce(signal: AbortSignal, resync: boolean): Promise<{ skipped: boolean }> {
    const cluster = this.cluster;
    if (cluster === null) return { skipped: true };
    if (resync) this.observed = null;
    const generation = this.generation;
    // After a failure or at resync the kernel is re-read: our memory of it may be wrong. The save commands run
    // while the compiler works.
    const fromMemory = this.observed !== null;
    const lastCompiled = this.lastCompiled;
    // A resync with nothing handed in since the kernel was last found in sync: if the kernel reads as it did then,
    // the compile and plan would come out empty. Drift anywhere we look changes the fingerprint and takes the full
    // way below. Most such resyncs read the fingerprint alone; every FULL_READ_EVERY-th reads everything, which
    // also finds a set of ours the rules do not name (left by someone else: it opens nothing, it is only removed).
    const mayBeUnchanged = !fromMemory && lastCompiled !== null && generation === this.appliedGeneration && this.inSyncFingerprint !== undefined;
    const fingerprintOnly = mayBeUnchanged && this.fingerprintOnlyResyncs < (this.opts.fullReadEvery ?? FULL_READ_EVERY) - 1;
    // A set of ours gone missing fails this read: that is drift, and the full way repairs it.
    const checking = fingerprintOnly ? this.applier.readKernelFingerprint(this.inSyncSetNames, signal).catch(() => undefined) : undefined;
    let reading = fromMemory || fingerprintOnly ? undefined : this.applier.readObservedText(signal);
    reading?.catch(() => undefined); // awaited below; only a compile error could leave it unawaited
    // At resync the binding records are read again too.
    if (!fromMemory) this.cniCache?.forget();
    try {
      const bridge = await this.podBridge(cluster);
      const bridgeText = JSON.stringify(bridge ?? null);
      if (mayBeUnchanged && lastCompiled !== null && bridgeText === this.lastCompiledBridge) {
        let seen: string | undefined;
        if (checking !== undefined) seen = await checking;
        else {
          const text = await (reading as Promise<ObservedPolicyText>);
          // A full read also sees a set of ours the fingerprint does not name: then the full way removes it.
          const onlyNamed = policySetNamesIn(text.sets).join('\n') === this.inSyncSetNames.join('\n');
          seen = onlyNamed ? policyKernelFingerprint(text, this.inSyncSetNames) : undefined;
        }
        if (seen === this.inSyncFingerprint) {
          this.observed = observedAfter(lastCompiled);
          this.unchangedResyncs++;
          this.fingerprintOnlyResyncs = checking === undefined ? 0 : this.fingerprintOnlyResyncs + 1;
          return { skipped: false };
        }
      }
      if (fingerprintOnly) {
        reading = this.applier.readObservedText(signal);
        reading.catch(() => undefined);
      }
      // Nothing handed in since the last compile that went in (same snapshot, node and bindings): compiling again
      // would give the same rules (a proof resync after a write, a full read): ~200 ms and its garbage at 30,000 pods.
      const sameInput = lastCompiled !== null && generation === this.appliedGeneration && bridgeText === this.lastCompiledBridge;
      const compiled = sameInput
        ? lastCompiled
        : await this.compiler.compileYielding(
            { ...cluster, node: this.node, ...(bridge === undefined ? {} : { bridge }) },
            this.opts.allowMark === undefined ? {} : { allowMark: this.opts.allowMark },
          );
      if (!sameInput) this.compiles++;
      this.reportProblems(compiled.problems);
      const freshText: ObservedPolicyText | undefined = reading === undefined ? undefined : await reading;
      const observed = (this.observed ??= parseObservedPolicy(freshText as ObservedPolicyText));
      // The sets are planned first and go in while the rules are rendered, both in slices.
      const sets = await inSlices(planSetChangesInSteps(compiled, observed));
      let plan;
      let result;
      let refused = false;
      try {
        ({ plan, ...result } = await this.applier.applyRendering(sets, () => inSlices(planRuleChangesInSteps(compiled, observed, sets)), signal));
      } catch (err) {
        // A plan made from memory names only the chains that changed; if something removed our chains behind our
        // back (another program, a second run in the same namespace), the kernel refuses it. The refusal proves the
        // memory wrong: re-read and plan against what is really there, at once. A refusal of a plan made from a
        // fresh read is a real failure and goes to the back-off.
        if (!fromMemory || signal.aborted || !(err instanceof PolicyApplyError)) throw err;
        this.logger.warn('policy apply refused; re-reading the kernel and planning again', { step: err.step, error: err.message });
        this.observed = await this.applier.readObserved(signal);
        plan = planPolicyChanges(compiled, this.observed);
        result = await this.applier.apply(plan, signal);
        refused = true;
      }
      this.observed = result.warnings.length === 0 ? observedAfter(compiled) : null;
      for (const w of result.warnings) this.logger.warn('policy cleanup incomplete, will retry', { warning: w });
      this.lastCompiled = compiled;
      this.lastCompiledBridge = bridgeText;
      this.appliedGeneration = generation;
      const s = plan.summary;
      const changed = s.changedChains + s.deletedChains + s.changedSets + s.deletedSets + s.jumpsAdded > 0;
      if (changed) this.logger.info('policy rules applied', { generation, ...s });
      // Only a fresh read that needed nothing proves the kernel equal to the rules: its fingerprint is the one
      // later resyncs compare with. After a write the next resync plans in full (and fingerprints) first.
      if (changed || refused || result.warnings.length > 0) this.inSyncFingerprint = undefined;
      else if (freshText !== undefined) {
        this.inSyncSetNames = [...compiled.v4.sets.keys(), ...compiled.v6.sets.keys()].sort();
        this.inSyncFingerprint = policyKernelFingerprint(freshText, this.inSyncSetNames);
        this.fingerprintOnlyResyncs = 0;
      }
      return { skipped: false };
    } catch (err) {
      // After a failure the kernel is re-read: our memory of it may be wrong.
      this.observed = null;
      this.inSyncFingerprint = undefined;
      throw err;
    }
  }

  /** The pod bridge with the current bindings, read at every sync (the cache reader reads only new records). */
  private async podBridge(cluster: ClusterState): Promise<PodBridge | undefined> {
    const binding = this.opts.sourceBinding;
    const name = this.opts.bridgeName;
    if (this.cniCache === undefined || binding === undefined || name === undefined) return undefined;
    const { bindings, problems } = planSourceBindings(await this.cniCache.read(), binding.network, name);
    // Pods with addresses here but no record at all: most likely the runtime keeps its cache elsewhere.
    const addressed = cluster.pods.some((p) => p.spec?.nodeName === this.node.name && p.spec.hostNetwork !== true && (p.status?.podIPs ?? []).length > 0);
    if (bindings.length === 0 && addressed) {
      problems.push({ containerId: '', message: `no CNI result records of network ${binding.network} under ${this.cniCache.dir}: no pod of this node can send (is cni.cacheDir the runtime's?)` });
    }
    const text = JSON.stringify(problems);
    if (text !== this.bindingProblems && problems.length > 0) {
      for (const p of problems) this.logger.warn('pod not bound to its veth: its traffic is dropped', { ...p });
    }
    this.bindingProblems = text;
    return { name, bindings };
  }

  private reportProblems(problems: PolicyProblem[]): void {
    const byPolicy = (list: PolicyProblem[]): Map<string, string> => {
      const out = new Map<string, PolicyProblem[]>();
      for (const p of list) out.set(p.policy, [...(out.get(p.policy) ?? []), p]);
      return new Map([...out].map(([k, v]) => [k, JSON.stringify(v)]));
    };
    const before = byPolicy(this.problems);
    for (const [policy, text] of byPolicy(problems)) {
      if (before.get(policy) === text) continue;
      const list = JSON.parse(text) as PolicyProblem[];
      for (const p of list) this.logger.warn('invalid NetworkPolicy: it isolates its pods but allows nothing', { ...p });
      this.opts.onInvalidPolicy?.(policy, list);
    }
    this.problems = problems;
  }

  private async checkBridgeNetfilter(): Promise<void> {
    if (this.opts.bridgeName === undefined) return;
    try {
      const read = async (file: string): Promise<string> =>
        this.opts.runner !== undefined ? this.opts.runner.run(['cat', file]) : readFile(file, 'utf8');
      const v4 = (await read('/proc/sys/net/bridge/bridge-nf-call-iptables')).trim();
      const v6 = (await read('/proc/sys/net/bridge/bridge-nf-call-ip6tables')).trim();
      this.bridgeNetfilter = v4 === '1' && v6 === '1';
    } catch {
      this.bridgeNetfilter = false;
    }
    if (!this.bridgeNetfilter) {
      this.logger.warn('bridge netfilter is off: traffic between pods on the same node bypasses policy', {
        bridge: this.opts.bridgeName,
      });
    }
  }
}
