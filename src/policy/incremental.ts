// The incremental policy compiler: keeps the previous snapshot's compiled state and updates only what the changed
// objects can affect, so one pod label change costs milliseconds, not a full compile. Pure (no I/O); a property
// test holds it equal to the tests' from-scratch compiler (test/unit/policy/scratch-compile.ts).
// Changes are found by identity (a changed object is a new object, as informers hand them out; objects are never
// edited in place), policies then by content, namespaces by labels. Sets and chains that did not change keep their
// objects, so the planner's per-object hash memory stays valid; what does not depend on the family (selection, rule
// chains) is worked out once for both. The compile is a generator that pauses after each unit of work:
// compileYielding() gives the event loop back between slices, so a cold compile does not stall watches and BGP.
import { selectorMatches } from '../kube/label-selector.js';
import type { NetworkPolicy, Pod } from '../kube/wire.js';
import {
  baseChains,
  CHAINS,
  bucketChainName,
  builtinJumps,
  DEFAULT_ALLOW_MARK,
  DIRECTIONS,
  dispatchBucket,
  dispatchRule,
  familyCIDRs,
  fixedMembers,
  isLive,
  knownSetName,
  localSetName,
  makeSetSpec,
  namedPortEntries,
  namespaceLabelsOf,
  peerIncludes,
  isolatedSetName,
  namespaceChainName,
  namespaceChainRules,
  podIp,
  podKey,
  policyContent,
  policyKey,
  policySelects,
  preparePolicyInSteps,
  compileRuleChainsInSteps,
  ruleChainTables,
  selectionSetDef,
  validateBridge,
  validateMark,
  validateNode,
  type CompileInput,
  type CompileOptions,
  type CompiledPolicies,
  type Direction,
  type FamilyRuleset,
  type IpSetSpec,
  type NamespacePolicy,
  type PodBridge,
  type PolicyProblem,
  type PreparedPolicy,
  type Rule,
  type RuleChainDef,
  type SetDef,
} from './compile.js';
import { addressBits, type IpFamily } from '../routes/ip-prefix.js';
import { atOnce, inSlices, SLICE_MS } from './slices.js';
import type { PolicyNode } from './types.js';

interface PodEntry {
  pod: Pod;
  key: string;
  namespace: string;
  labels: Record<string, string>;
  /** Not terminated and not host-network: the pod can be a peer. */
  live: boolean;
  /** Live and bound to this node. */
  local: boolean;
  ip: Record<IpFamily, string | undefined>;
  /** The compile that last found this entry's object among the pods handed in (see PolicyCompiler.round). */
  seen: number;
}

interface PolicyEntry {
  /** policyContent() of what was compiled, computed when first needed (when another object comes for the key). */
  content: string | null;
  prepared: PreparedPolicy;
  /** The object (and its spec object) the content was read from. */
  source: NetworkPolicy;
  spec: NetworkPolicy['spec'];
  /** Its rule chains, compiled for both families when first used in a direction. */
  ruleChains: Partial<Record<Direction, Record<IpFamily, RuleChainDef>>>;
}

interface SetEntry {
  def: SetDef;
  refs: number;
  /** Entries per pod key (peer and named-port sets); a fixed set's entries follow from its def. */
  members: Map<string, readonly string[]>;
}

interface LocalPodState {
  ip: string;
  bucket: number;
  namespace: string;
  /** Dispatched to its namespace's chain (the namespace has a policy of the direction). */
  dispatched: Record<Direction, boolean>;
  /** Selected by a policy of the direction (a member of the isolated set). */
  isolated: Record<Direction, boolean>;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameRules(a: readonly Rule[] | undefined, b: readonly Rule[]): boolean {
  return a !== undefined && a.length === b.length && a.every((r, i) => sameStrings(r, b[i] ?? []));
}

function byKey(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A pod's entries in a set it is not in: one shared array (a full compile tests hundreds of thousands of pairs). */
const NO_ENTRIES: readonly string[] = Object.freeze([]);

/** Entries sorted in one step at most; a larger set is sorted in runs of this size and merged in steps. */
const SORT_RUN = 4096;

/**
 * A set's entries sorted and deduplicated as makeSetSpec does, pausing between runs and during the merges: one
 * 30,000-entry named-port set sorted in one piece holds the event loop 16-60 ms.
 */
export function* sortedInSteps(entries: readonly string[]): Generator<void, string[]> {
  let runs: string[][] = [];
  for (let i = 0; i < entries.length; i += SORT_RUN) {
    runs.push(entries.slice(i, i + SORT_RUN).sort());
    yield;
  }
  while (runs.length > 1) {
    const merged: string[][] = [];
    for (let i = 0; i < runs.length; i += 2) {
      const a = runs[i] ?? [];
      const b = runs[i + 1];
      if (b === undefined) {
        merged.push(a);
        continue;
      }
      const out: string[] = [];
      let x = 0;
      let y = 0;
      while (x < a.length || y < b.length) {
        const next = y >= b.length || (x < a.length && (a[x] ?? '') <= (b[y] ?? '')) ? a[x++] : b[y++];
        if (next !== undefined && out[out.length - 1] !== next) out.push(next);
        if (((x + y) & (SORT_RUN - 1)) === 0) yield;
      }
      merged.push(out);
    }
    runs = merged;
  }
  const only = runs[0] ?? [];
  // A single run was not merged: drop its duplicates here.
  return only.filter((entry, i) => i === 0 || only[i - 1] !== entry);
}

class FamilyState {
  readonly chains = new Map<string, Rule[]>();
  readonly specs = new Map<string, IpSetSpec>();
  private readonly sets = new Map<string, SetEntry>();
  /** Per direction, namespace -> what its chain calls, by policy key (only namespaces with dispatched pods). */
  private readonly namespaceChains: Record<Direction, Map<string, Map<string, NamespacePolicy>>> = { ingress: new Map(), egress: new Map() };
  /** Per direction, namespace -> its dispatched local pods: its chain exists while there is one. */
  private readonly namespaceUse: Record<Direction, Map<string, Set<string>>> = { ingress: new Map(), egress: new Map() };
  /** Namespaces whose chains are to be worked out again at the end of this compile. */
  private readonly dirtyNamespaces = new Set<string>();
  /** Dispatched local pods (the first pod by key of each address). */
  private readonly local = new Map<string, LocalPodState>();
  /** Local live pods by address; more than one only when two pods claim one address. */
  private readonly owners = new Map<string, Set<string>>();
  /** Local pods selected by an isolating policy that have no address of this family yet. */
  private readonly pending = new Map<string, Record<Direction, boolean>>();
  private readonly buckets: Record<Direction, Map<number, Set<string>>> = { ingress: new Map(), egress: new Map() };
  private readonly dirtySets = new Set<string>();
  private readonly dirtyBuckets: Record<Direction, Set<number>> = { ingress: new Set(), egress: new Set() };
  private readonly isolatedChanged: Record<Direction, boolean> = { ingress: true, egress: true };
  private addressesChanged = true;

  constructor(
    readonly family: IpFamily,
    private readonly node: PolicyNode,
    private readonly ctx: CompilerContext,
  ) {}

  // ---- sets ----

  private *acquireSet(def: SetDef): Generator<void> {
    let entry = this.sets.get(def.name);
    if (entry === undefined) {
      entry = { def, refs: 0, members: new Map() };
      this.sets.set(def.name, entry);
      this.dirtySets.add(def.name);
      entry.refs++;
      yield* this.fillFromCandidates(entry);
      // A rule of 600 peers fills 600 sets of a namespace's pods each: a pause per set, not after all of them.
      yield;
      return;
    }
    entry.refs++;
  }

  /**
   * Fills a new set from the pods that can be in it: a peer set's namespaces only (its own, or those its namespace
   * selector takes), so a full compile tests each peer against a few namespaces' pods, not against every pod.
   */
  private *fillFromCandidates(entry: SetEntry): Generator<void> {
    const ctx = this.ctx;
    const def = entry.def;
    // A named-port set is tested against every pod of the cluster: tens of milliseconds at 30,000 pods.
    let tested = 0;
    if (def.kind === 'named') {
      for (const pod of ctx.pods.values()) {
        this.fill(entry, pod);
        if ((++tested & 1023) === 0) yield;
      }
      return;
    }
    if (def.kind !== 'peer') return;
    const selector = def.peer.namespaceSelector;
    for (const [namespace, keys] of ctx.byNamespace) {
      if (selector === undefined ? namespace !== def.namespace : !selectorMatches(selector, ctx.namespaceLabels(namespace))) continue;
      for (const key of keys) {
        this.fill(entry, ctx.pods.get(key), key);
        if ((++tested & 1023) === 0) yield;
      }
    }
  }

  private releaseSet(name: string): void {
    const entry = this.sets.get(name);
    if (entry === undefined) return;
    entry.refs--;
    if (entry.refs > 0) return;
    this.sets.delete(name);
    this.specs.delete(name);
    this.dirtySets.delete(name);
  }

  /** Sets the entries `pod` contributes to one set (none when it is gone, terminated or has no address). */
  private fill(entry: SetEntry, pod: PodEntry | undefined, key = pod?.key ?? ''): void {
    const def = entry.def;
    if (def.kind === 'fixed') return;
    const ip = pod?.live === true ? pod.ip[this.family] : undefined;
    let wanted: readonly string[] = NO_ENTRIES;
    if (pod !== undefined && ip !== undefined) {
      if (def.kind === 'peer') wanted = peerIncludes(def, pod.namespace, pod.labels, this.ctx.namespaceLabels) ? [ip] : NO_ENTRIES;
      else wanted = namedPortEntries(pod.pod, ip, def.port, def.protocol);
    }
    const had = entry.members.get(key);
    if (wanted.length === 0) {
      if (had !== undefined) {
        entry.members.delete(key);
        this.dirtySets.add(def.name);
      }
    } else if (had === undefined || !sameStrings(had, wanted)) {
      entry.members.set(key, wanted);
      this.dirtySets.add(def.name);
    }
  }

  /** A pod changed (or appeared, or went): its entries in every set in use. */
  podChanged(key: string, pod: PodEntry | undefined): void {
    for (const entry of this.sets.values()) this.fill(entry, pod, key);
  }

  /** A namespace's labels changed: namespace-selector peer sets, for that namespace's pods. */
  namespaceChanged(namespace: string): void {
    const pods = [...(this.ctx.byNamespace.get(namespace) ?? [])].map((k) => this.ctx.pods.get(k));
    for (const entry of this.sets.values()) {
      if (entry.def.kind !== 'peer' || entry.def.peer.namespaceSelector === undefined) continue;
      for (const pod of pods) if (pod !== undefined) this.fill(entry, pod);
    }
  }

  // ---- namespace chains ----

  /**
   * A namespace's chains again: while it has dispatched pods in a direction, its chain calls every policy of the
   * namespace of that type (`changed`: policies compiled anew in this compile). Sets are acquired before the
   * replaced ones are released, so a set kept across the change is not filled again.
   */
  private *namespaceChainsAgain(namespace: string, changed: ReadonlySet<string>): Generator<void> {
    for (const dir of DIRECTIONS) {
      const inUse = (this.namespaceUse[dir].get(namespace)?.size ?? 0) > 0;
      const wanted = inUse ? this.ctx.policiesOf(namespace).filter((p) => p[dir]) : [];
      const before = this.namespaceChains[dir].get(namespace) ?? new Map<string, NamespacePolicy>();
      const after = new Map<string, NamespacePolicy>();
      for (const p of wanted) {
        const kept = before.get(p.key);
        if (kept !== undefined && !changed.has(p.key)) {
          after.set(p.key, kept);
          continue;
        }
        const ruleChain = yield* this.ctx.ruleChain(p.key, dir, this.family);
        if (ruleChain === undefined) throw new Error(`incremental compiler: no policy ${p.key}`);
        const use: NamespacePolicy = { ruleChain, selection: selectionSetDef(p, this.family) };
        for (const set of ruleChain.sets) yield* this.acquireSet(set);
        if (ruleChain.rules !== null) yield* this.acquireSet(use.selection);
        after.set(p.key, use);
      }
      // A changed policy keeps its chain names: the old tables go before the new ones are set.
      for (const [key, use] of before) {
        if (after.get(key) === use) continue;
        for (const [chain] of ruleChainTables(use.ruleChain)) this.chains.delete(chain);
        use.ruleChain.sets.forEach((set) => this.releaseSet(set.name));
        if (use.ruleChain.rules !== null) this.releaseSet(use.selection.name);
      }
      for (const use of after.values()) for (const [chain, rules] of ruleChainTables(use.ruleChain)) this.chains.set(chain, rules);
      const chain = namespaceChainName(namespace, dir);
      if (after.size === 0) {
        this.namespaceChains[dir].delete(namespace);
        this.chains.delete(chain);
        continue;
      }
      this.namespaceChains[dir].set(namespace, after);
      const rules = namespaceChainRules([...after.values()], dir, this.ctx.mark);
      if (!sameRules(this.chains.get(chain), rules)) this.chains.set(chain, rules);
    }
  }

  /** Namespaces of pods whose dispatch changed (their chains come or go), then of changed policies. */
  *namespacesChanged(changedPolicies: ReadonlySet<string>): Generator<void> {
    for (const key of changedPolicies) this.dirtyNamespaces.add(key.slice(0, key.indexOf('/')));
    for (const namespace of this.dirtyNamespaces) {
      yield;
      yield* this.namespaceChainsAgain(namespace, changedPolicies);
    }
    this.dirtyNamespaces.clear();
  }

  // ---- local pods ----

  /** Records a local pod's address claim; returns the keys whose dispatch may have changed. */
  claim(key: string, before: string | undefined, after: string | undefined): string[] {
    if (before === after) return [];
    const touched: string[] = [];
    for (const [ip, add] of [
      [before, false],
      [after, true],
    ] as const) {
      if (ip === undefined) continue;
      let owners = this.owners.get(ip);
      if (owners === undefined) {
        owners = new Set();
        this.owners.set(ip, owners);
      }
      if (add) owners.add(key);
      else owners.delete(key);
      touched.push(...owners);
      if (owners.size === 0) this.owners.delete(ip);
    }
    this.addressesChanged = true;
    return touched;
  }

  /**
   * Re-judges one local pod: dispatch bucket, namespace chain use, isolated sets, pending guard. `selecting` is the
   * pod's selection (CompilerContext.selectionOf), the same for both families; `policyTypes` says which directions
   * its namespace has policies of.
   */
  judge(key: string, selecting: Record<Direction, string[]>, policyTypes: Record<Direction, boolean>): void {
    const pod = this.ctx.pods.get(key);
    const local = pod?.local === true ? pod : undefined;
    const ip = local?.ip[this.family];
    const owners = ip === undefined ? undefined : this.owners.get(ip);
    // The first claimant by key is dispatched (nearly always the only one).
    const dispatched = ip !== undefined && owners !== undefined && (owners.size === 1 ? owners.has(key) : [...owners].sort(byKey)[0] === key);
    // Pending: known, selected, no address yet.
    if (local !== undefined && ip === undefined && (selecting.ingress.length > 0 || selecting.egress.length > 0)) {
      this.pending.set(key, { ingress: selecting.ingress.length > 0, egress: selecting.egress.length > 0 });
    } else {
      this.pending.delete(key);
    }
    const old = this.local.get(key);
    const now: LocalPodState | undefined =
      dispatched && local !== undefined && ip !== undefined
        ? {
            ip,
            bucket: dispatchBucket(ip, this.family),
            namespace: local.namespace,
            dispatched: policyTypes,
            isolated: { ingress: selecting.ingress.length > 0, egress: selecting.egress.length > 0 },
          }
        : undefined;
    for (const dir of DIRECTIONS) {
      const wasIn = old?.dispatched[dir] === true;
      const isIn = now?.dispatched[dir] === true;
      const moved = old === undefined || now === undefined || old.bucket !== now.bucket || old.ip !== now.ip;
      if (wasIn && (!isIn || moved)) {
        this.buckets[dir].get(old.bucket)?.delete(key);
        this.dirtyBuckets[dir].add(old.bucket);
      }
      if (isIn && (!wasIn || moved)) {
        let members = this.buckets[dir].get(now.bucket);
        if (members === undefined) {
          members = new Set();
          this.buckets[dir].set(now.bucket, members);
        }
        members.add(key);
        this.dirtyBuckets[dir].add(now.bucket);
      }
      if (wasIn !== isIn) this.useNamespace(dir, (now ?? old)?.namespace ?? '', key, isIn);
      if ((old?.isolated[dir] === true) !== (now?.isolated[dir] === true) || (now?.isolated[dir] === true && moved)) this.isolatedChanged[dir] = true;
    }
    if (now === undefined) this.local.delete(key);
    else this.local.set(key, now);
  }

  private useNamespace(dir: Direction, namespace: string, key: string, inUse: boolean): void {
    let pods = this.namespaceUse[dir].get(namespace);
    if (pods === undefined) {
      pods = new Set();
      this.namespaceUse[dir].set(namespace, pods);
    }
    const wasUsed = pods.size > 0;
    if (inUse) pods.add(key);
    else pods.delete(key);
    if (pods.size === 0) this.namespaceUse[dir].delete(namespace);
    if (wasUsed !== pods.size > 0) this.dirtyNamespaces.add(namespace);
  }

  // ---- output ----

  private bucketRules(dir: Direction, bucket: number): Rule[] {
    const keys = [...(this.buckets[dir].get(bucket) ?? [])].sort(byKey);
    return keys.map((k) => {
      const s = this.local.get(k);
      if (s === undefined) throw new Error(`incremental compiler: bucket holds unknown pod ${k}`);
      return dispatchRule(dir, s.ip, this.family, namespaceChainName(s.namespace, dir));
    });
  }

  *finish(bridge: PodBridge | undefined): Generator<void, FamilyRuleset> {
    for (const dir of DIRECTIONS) {
      for (const bucket of this.dirtyBuckets[dir]) {
        yield;
        const name = bucketChainName(dir, bucket);
        const rules = this.bucketRules(dir, bucket);
        if (rules.length === 0) {
          this.buckets[dir].delete(bucket);
          this.chains.delete(name);
        } else if (!sameRules(this.chains.get(name), rules)) {
          this.chains.set(name, rules);
        }
      }
      this.dirtyBuckets[dir].clear();
    }
    const pending = { ingress: false, egress: false };
    for (const p of this.pending.values()) {
      pending.ingress ||= p.ingress;
      pending.egress ||= p.egress;
    }
    const cidrs = familyCIDRs(this.node, this.family);
    const occupied = (dir: Direction): number[] => [...this.buckets[dir].keys()].sort((a, b) => a - b);
    const base = { family: this.family, podCIDRs: cidrs, buckets: { ingress: occupied('ingress'), egress: occupied('egress') }, pending, ...(bridge === undefined ? {} : { bridge }) };
    const wanted = baseChains(base);
    for (const [name, rules] of wanted) {
      if (!sameRules(this.chains.get(name), rules)) this.chains.set(name, rules);
    }
    if (!wanted.has(CHAINS.source)) this.chains.delete(CHAINS.source);
    if (this.addressesChanged) {
      const host = `/${addressBits(this.family)}`;
      this.specs.set(localSetName(this.family), makeSetSpec(localSetName(this.family), 'hash:net', this.family, [...cidrs, ...[...this.owners.keys()].map((ip) => `${ip}${host}`)]));
      this.specs.set(knownSetName(this.family), makeSetSpec(knownSetName(this.family), 'hash:ip', this.family, this.owners.keys()));
      this.addressesChanged = false;
    }
    for (const dir of DIRECTIONS) {
      if (!this.isolatedChanged[dir]) continue;
      const isolated: string[] = [];
      for (const s of this.local.values()) if (s.isolated[dir]) isolated.push(s.ip);
      this.specs.set(isolatedSetName(this.family, dir), makeSetSpec(isolatedSetName(this.family, dir), 'hash:ip', this.family, isolated));
      this.isolatedChanged[dir] = false;
    }
    for (const name of this.dirtySets) {
      yield;
      const entry = this.sets.get(name);
      if (entry === undefined) continue;
      const members = entry.def.kind === 'fixed' ? fixedMembers(entry.def) : [...entry.members.values()].flat();
      const spec = members.length <= SORT_RUN ? makeSetSpec(name, entry.def.type, this.family, members) : { name, type: entry.def.type, family: this.family, members: yield* sortedInSteps(members) };
      this.specs.set(name, spec);
    }
    this.dirtySets.clear();
    return { family: this.family, chains: new Map(this.chains), sets: new Map(this.specs), jumps: builtinJumps() };
  }
}

/** What both families read: the current objects. */
class CompilerContext {
  readonly pods = new Map<string, PodEntry>();
  /** The same entries by their pod object: an unchanged pod is found without building its key. */
  readonly byObject = new Map<Pod, PodEntry>();
  readonly byNamespace = new Map<string, Set<string>>();
  readonly policies = new Map<string, PolicyEntry>();
  private readonly policiesByNamespace = new Map<string, PreparedPolicy[]>();
  namespaceLabels: (ns: string) => Record<string, string> = namespaceLabelsOf([]);

  constructor(readonly mark: number) {}

  /** The namespace's policies, in key order. */
  policiesOf(namespace: string): readonly PreparedPolicy[] {
    return this.policiesByNamespace.get(namespace) ?? [];
  }

  /** Which directions the namespace has policies of: its local pods are dispatched to its chain in those. */
  policyTypesOf(namespace: string): Record<Direction, boolean> {
    const types = { ingress: false, egress: false };
    for (const p of this.policiesOf(namespace)) {
      types.ingress ||= p.ingress;
      types.egress ||= p.egress;
    }
    return types;
  }

  /** A policy's rule chain in one family (undefined once the policy is gone). */
  *ruleChain(policy: string, dir: Direction, family: IpFamily): Generator<void, RuleChainDef | undefined> {
    const entry = this.policies.get(policy);
    if (entry === undefined) return undefined;
    const defs = (entry.ruleChains[dir] ??= yield* compileRuleChainsInSteps(entry.prepared, dir, this.mark));
    return defs[family];
  }

  /** The keys of the policies that select a pod and isolate it, per direction, in key order (none unless local). */
  selectionOf(key: string): Record<Direction, string[]> {
    const selecting: Record<Direction, string[]> = { ingress: [], egress: [] };
    const pod = this.pods.get(key);
    if (pod?.local !== true) return selecting;
    for (const p of this.policiesByNamespace.get(pod.namespace) ?? []) {
      if (!policySelects(p, pod.namespace, pod.labels)) continue;
      for (const dir of DIRECTIONS) if (p[dir]) selecting[dir].push(p.key);
    }
    return selecting;
  }

  indexPolicies(): void {
    this.policiesByNamespace.clear();
    for (const key of [...this.policies.keys()].sort(byKey)) {
      const p = this.policies.get(key)?.prepared;
      if (p === undefined) continue;
      const list = this.policiesByNamespace.get(p.namespace) ?? [];
      list.push(p);
      this.policiesByNamespace.set(p.namespace, list);
    }
  }

  setPod(key: string, entry: PodEntry | undefined): void {
    const old = this.pods.get(key);
    if (old !== undefined) {
      this.byNamespace.get(old.namespace)?.delete(key);
      this.byObject.delete(old.pod);
    }
    if (entry === undefined) {
      this.pods.delete(key);
      return;
    }
    this.pods.set(key, entry);
    this.byObject.set(entry.pod, entry);
    let keys = this.byNamespace.get(entry.namespace);
    if (keys === undefined) {
      keys = new Set();
      this.byNamespace.set(entry.namespace, keys);
    }
    keys.add(key);
  }
}

function podEntry(pod: Pod, key: string, node: string, seen: number): PodEntry {
  const live = isLive(pod) && pod.spec?.hostNetwork !== true;
  return {
    seen,
    pod,
    key,
    namespace: pod.metadata?.namespace ?? '',
    labels: pod.metadata?.labels ?? {},
    live,
    local: live && pod.spec?.nodeName === node,
    ip: { ipv4: live ? podIp(pod, 'ipv4') : undefined, ipv6: live ? podIp(pod, 'ipv6') : undefined },
  };
}

export interface CompileStats {
  /** What the last compile found changed. */
  pods: number;
  namespaces: number;
  policies: number;
  /** Whether it started over (first compile, other node or mark). */
  full: boolean;
}

/** How long compileYielding() holds the event loop at most before giving it back (plus one unit of work). */
export const COMPILE_SLICE_MS = SLICE_MS;

export class PolicyCompiler {
  private ctx = new CompilerContext(DEFAULT_ALLOW_MARK);
  private families: Record<IpFamily, FamilyState> | null = null;
  private identity = '';
  private namespaceText = new Map<string, string>();
  private problems: PolicyProblem[] = [];
  private stats: CompileStats = { pods: 0, namespaces: 0, policies: 0, full: true };
  /** Counts compiles: a pod entry not stamped with this compile's number was not handed in (PodEntry.seen). */
  private round = 0;

  /** What the last compile() found changed (for logs and benchmarks). */
  lastStats(): CompileStats {
    return { ...this.stats };
  }

  compile(input: CompileInput, options: CompileOptions = {}): CompiledPolicies {
    try {
      return atOnce(this.steps(input, options));
    } catch (err) {
      this.forgetAfterFailure();
      throw err;
    }
  }

  /**
   * compile(), giving the event loop back whenever it has held it for `sliceMs`: a cold compile of 30,000 pods and
   * 1,000 policies takes 300-500 ms. It always runs to its end (the state is consistent only between compiles).
   */
  async compileYielding(input: CompileInput, options: CompileOptions = {}, sliceMs = COMPILE_SLICE_MS): Promise<CompiledPolicies> {
    try {
      return await inSlices(this.steps(input, options), sliceMs);
    } catch (err) {
      this.forgetAfterFailure();
      throw err;
    }
  }

  /** A step that throws leaves the state half updated: the next compile is a full one. */
  private forgetAfterFailure(): void {
    this.families = null;
  }

  private *steps(input: CompileInput, options: CompileOptions): Generator<void, CompiledPolicies> {
    validateNode(input.node);
    validateBridge(input.bridge);
    const mark = options.allowMark ?? DEFAULT_ALLOW_MARK;
    validateMark(mark);
    const identity = JSON.stringify([input.node.name, input.node.podCIDRs, mark]);
    const full = this.families === null || identity !== this.identity;
    if (full) {
      this.ctx = new CompilerContext(mark);
      this.namespaceText = new Map();
      this.identity = identity;
      this.families = { ipv4: new FamilyState('ipv4', input.node, this.ctx), ipv6: new FamilyState('ipv6', input.node, this.ctx) };
    }
    const families = this.families;
    if (families === null) throw new Error('incremental compiler: no state');
    const both = [families.ipv4, families.ipv6];
    const ctx = this.ctx;
    const rejudge = new Set<string>();

    // Policies, by content. Prepared first: pods are judged against the new set of policies.
    const changedPolicies: string[] = [];
    const seenPolicies = new Set<string>();
    let seen = 0;
    for (const policy of input.policies) {
      // Most objects are unchanged and cost a comparison: pausing after each would cost more than comparing.
      if ((++seen & 255) === 0) yield;
      const key = policyKey(policy);
      seenPolicies.add(key);
      const known = ctx.policies.get(key);
      // The same object with the same spec object is the same policy: no need to serialize 500 specs per change.
      if (known !== undefined && known.source === policy && known.spec === policy.spec) continue;
      if (known !== undefined) {
        // Another object (or spec object) for this key: compare what it says with what we compiled.
        const content = policyContent(policy);
        known.content ??= policyContent(known.prepared.policy);
        if (known.content === content) {
          known.source = policy;
          known.spec = policy.spec;
          continue;
        }
      }
      // Our own shell around the spec object of this moment: replacing the caller's spec later cannot reach it.
      const own: NetworkPolicy = { metadata: { namespace: policy.metadata?.namespace ?? '', name: policy.metadata?.name ?? '' }, ...(policy.spec === undefined ? {} : { spec: policy.spec }) };
      ctx.policies.set(key, { content: null, prepared: yield* preparePolicyInSteps(own), source: policy, spec: policy.spec, ruleChains: {} });
      changedPolicies.push(key);
      yield;
    }
    for (const key of ctx.policies.keys()) {
      if (!seenPolicies.has(key)) {
        ctx.policies.delete(key);
        changedPolicies.push(key);
      }
    }
    if (changedPolicies.length > 0) {
      ctx.indexPolicies();
      const sorted = [...ctx.policies.keys()].sort(byKey);
      this.problems = sorted.flatMap((k) => ctx.policies.get(k)?.prepared.problems ?? []);
    }

    // Namespaces, by labels.
    const changedNamespaces: string[] = [];
    const nsText = new Map<string, string>();
    for (const ns of input.namespaces) nsText.set(ns.metadata?.name ?? '', JSON.stringify(ns.metadata?.labels ?? {}));
    for (const [name, text] of nsText) if (this.namespaceText.get(name) !== text) changedNamespaces.push(name);
    for (const name of this.namespaceText.keys()) if (!nsText.has(name)) changedNamespaces.push(name);
    this.namespaceText = nsText;
    if (changedNamespaces.length > 0 || full) ctx.namespaceLabels = namespaceLabelsOf(input.namespaces);

    // Pods, by identity: 30,000 unchanged pods cost a map lookup each, not a key string and a set entry each.
    const round = ++this.round;
    const changedPods: string[] = [];
    let stamped = 0;
    for (const pod of input.pods) {
      if ((++seen & 255) === 0) yield;
      const known = ctx.byObject.get(pod);
      if (known !== undefined) {
        if (known.seen !== round) stamped++;
        known.seen = round;
        continue;
      }
      const key = podKey(pod);
      changedPods.push(key);
      const before = ctx.pods.get(key);
      // A second object for a key already handed in this time replaces it (the later one wins) and counts once.
      if (before?.seen !== round) stamped++;
      const after = podEntry(pod, key, input.node.name, round);
      ctx.setPod(key, after);
      this.podChanged(key, before, after, rejudge);
      yield;
    }
    // Entries not handed in this time are deleted pods; when every entry was stamped there are none to look for.
    if (stamped < ctx.pods.size) {
      const gone: string[] = [];
      for (const entry of ctx.pods.values()) if (entry.seen !== round) gone.push(entry.key);
      for (const key of gone) {
        changedPods.push(key);
        const before = ctx.pods.get(key);
        ctx.setPod(key, undefined);
        this.podChanged(key, before, undefined, rejudge);
        yield;
      }
    }

    for (const name of changedNamespaces) {
      yield;
      for (const f of both) f.namespaceChanged(name);
    }
    for (const key of changedPolicies) {
      const namespace = key.slice(0, key.indexOf('/'));
      for (const podKeyText of ctx.byNamespace.get(namespace) ?? []) if (ctx.pods.get(podKeyText)?.local === true) rejudge.add(podKeyText);
    }
    let judged = 0;
    for (const key of rejudge) {
      if ((++judged & 63) === 0) yield;
      const selecting = ctx.selectionOf(key);
      const types = ctx.policyTypesOf(ctx.pods.get(key)?.namespace ?? '');
      for (const f of both) f.judge(key, selecting, types);
    }
    const changedPolicyKeys = new Set(changedPolicies);
    for (const f of both) yield* f.namespacesChanged(changedPolicyKeys);
    this.stats = { pods: changedPods.length, namespaces: changedNamespaces.length, policies: changedPolicies.length, full };
    const v4 = yield* families.ipv4.finish(input.bridge);
    const v6 = yield* families.ipv6.finish(input.bridge);
    return { v4, v6, problems: [...this.problems] };
  }

  private podChanged(key: string, before: PodEntry | undefined, after: PodEntry | undefined, rejudge: Set<string>): void {
    const families = this.families;
    if (families === null) return;
    for (const f of [families.ipv4, families.ipv6]) {
      f.podChanged(key, after);
      if (before?.local === true || after?.local === true) {
        rejudge.add(key);
        const was = before?.local === true ? before.ip[f.family] : undefined;
        const is = after?.local === true ? after.ip[f.family] : undefined;
        for (const other of f.claim(key, was, is)) rejudge.add(other);
      }
    }
  }
}
