// The policy planner: desired rulesets (from the compiler) + what the kernel has (our chains, our jumps, our sets)
// -> the exact inputs for `ipset restore` and `iptables-restore --noflush`. Pure; the applier only runs them.
//
// Every rule we write carries a comment "prpol:<hash of the rule>"; a chain is rewritten only when its list of
// hashes differs from the kernel's. Chain lines in a --noflush restore flush just that chain, so one transaction
// per family replaces exactly the changed chains and then deletes the stale ones (if that is refused because
// someone else still references a stale chain, the applier falls back to the update alone and a separate cleanup);
// stale sets go after that.
import { ipsetFamily } from '../host/ipset-save.js';
import { familyOf, type IpFamily } from '../routes/ip-prefix.js';
import { CHAIN_PREFIX, isolatedSetName, JUMP_COMMENT, NOMATCH, SET_PREFIX, type BuiltinJump, type CompiledPolicies, type FamilyRuleset, type IpSetSpec, type Rule } from './compile.js';
import { atOnce } from './slices.js';

export const RULE_HASH_PREFIX = 'prpol:';
const TEMP_SUFFIX = '-T';

export interface ObservedJump {
  chain: string;
  target: string;
  /** 1-based place of the rule in its built-in chain. */
  position: number;
}

export interface ObservedFamily {
  /** Our chains (name has our prefix) -> the hash of each rule, '' for a rule without our hash comment. */
  chains: Map<string, string[]>;
  /** Our jump rules found in built-in chains (by comment), duplicates included. */
  jumps: ObservedJump[];
}

export interface ObservedSet {
  name: string;
  type: string;
  family: IpFamily;
  /** Normalized entries (see normalizeSetMember). */
  members: string[];
}

export interface ObservedPolicyState {
  v4: ObservedFamily;
  v6: ObservedFamily;
  /** Our sets (name has our prefix), both families. */
  sets: Map<string, ObservedSet>;
}

export interface PolicyPlan {
  /** `ipset restore` input creating new sets and swapping in new contents; '' when nothing changes. */
  ipsetRestore: string;
  /** Per family, `ipset restore` input taking pods out of its isolated sets (see SetPlan.isolationReleases). */
  isolationReleases: Record<IpFamily, string>;
  /** `iptables-restore --noflush` input per family; '' when nothing changes. */
  iptablesRestore: Record<IpFamily, string>;
  /** Second transaction per family: flush and delete our chains nobody should reference any more. */
  iptablesCleanup: Record<IpFamily, string>;
  /**
   * The main transaction and the cleanup as one (the stale chains deleted after the rules that referred to them
   * were rewritten): one restore process instead of two. If something outside our chains still jumps to a stale
   * chain the kernel refuses it; then main and cleanup go in separately, so the update is not held up.
   */
  iptablesCombined: Record<IpFamily, string>;
  /** Our sets to destroy once the cleanup is in. */
  destroySets: string[];
  /** jumpsAdded counts jumps inserted, moved back to the top included. */
  summary: { changedChains: number; deletedChains: number; changedSets: number; deletedSets: number; jumpsAdded: number };
}

export function emptyObservedState(): ObservedPolicyState {
  return { v4: { chains: new Map(), jumps: [] }, v6: { chains: new Map(), jumps: [] }, sets: new Map() };
}

/**
 * A rule's identity in its chain: 64 bits of two 32-bit multiplicative string hashes of its words. It only has to
 * tell a rule from the rule that was at its place before (not resist an adversary), and a full sync hashes
 * thousands, where a SHA-256 per rule cost several times more. The chain is not part of it, so the hashes of a
 * rules array that several chains share (a rule chain in both families) hold for each of them.
 */
export function ruleHash(rule: Rule): string {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let w = 0; w < rule.length; w++) {
    const text = rule[w] as string;
    if (w > 0) {
      a = Math.imul(a ^ 32, 0x01000193);
      b = Math.imul(b ^ 32, 0x5bd1e995);
      b ^= b >>> 15;
    }
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  a = Math.imul(a ^ (a >>> 13), 0xc2b2ae35);
  a ^= a >>> 16;
  b = Math.imul(b ^ (b >>> 16), 0x85ebca6b);
  b ^= b >>> 13;
  return (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
}

export class PolicyPlanError extends Error {
  readonly code = 'UNSAFE_RESTORE_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'PolicyPlanError';
  }
}

/** Quotes an argument for iptables-restore / ipset restore lines when it needs it. */
function quote(arg: string): string {
  if (/^[A-Za-z0-9_.:/,!=+@%-]+$/.test(arg)) return arg;
  return `"${safeWord(arg).replace(/(["\\])/g, '\\$1')}"`;
}

/**
 * Neither restore format can escape a control character (a newline starts a new command): such a word would let
 * whoever chose it write rules of their own. The compiler never produces one; refusing here keeps it so.
 */
function safeWord(word: string): string {
  if (hasControlCharacter(word)) throw new PolicyPlanError(`refusing restore input with a control character: ${JSON.stringify(word)}`);
  return word;
}

/** A rule as it follows `-A CHAIN` in a restore line; the comment goes before the target (all after -j is its options). */
function renderRuleTail(rule: Rule, hash: string): string {
  const j = rule.indexOf('-j');
  const targetAt = j < 0 ? rule.length : j;
  let line = '';
  for (let i = 0; i < targetAt; i++) line += ` ${quote(rule[i] as string)}`;
  line += ` -m comment --comment ${quote(`${RULE_HASH_PREFIX}${hash}`)}`;
  for (let i = targetAt; i < rule.length; i++) line += ` ${quote(rule[i] as string)}`;
  return line;
}

export function renderRule(chain: string, rule: Rule, hash = ruleHash(rule)): string {
  return `-A ${quote(chain)}${renderRuleTail(rule, hash)}`;
}

export function renderJump(jump: BuiltinJump, op: '-I' | '-D'): string {
  const position = op === '-I' ? ['1'] : [];
  return [op, jump.chain, ...position, '-m', 'comment', '--comment', jump.comment, '-j', jump.target].map(quote).join(' ');
}

// A chain's hashes, remembered per (immutable) rules array: an unchanged chain costs one lookup, and the array
// observedAfter() keeps is the same one, so comparing it with the kernel's memory is an identity check.
const chainHashMemo = new WeakMap<readonly Rule[], string[]>();

function chainHashes(rules: readonly Rule[]): string[] {
  let hashes = chainHashMemo.get(rules);
  if (hashes === undefined) {
    hashes = rules.map(ruleHash);
    chainHashMemo.set(rules, hashes);
  }
  return hashes;
}

function sameList(a: string[] | undefined, b: string[]): boolean {
  return a === b || (a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]));
}

// A set's normalized, sorted members, remembered per (immutable) set object; observedAfter() hands the same array
// back as the observed members, so an unchanged set compares by identity.
const wantMemo = new WeakMap<IpSetSpec, string[]>();
const sortedMemo = new WeakMap<string[], string[]>();

function wantedMembers(spec: IpSetSpec): string[] {
  let want = wantMemo.get(spec);
  if (want === undefined) {
    want = spec.members.map((m) => normalizeSetMember(spec.type, m)).sort();
    wantMemo.set(spec, want);
    sortedMemo.set(want, want);
  }
  return want;
}

function sortedMembers(members: string[]): string[] {
  let sorted = sortedMemo.get(members);
  if (sorted === undefined) {
    sorted = [...members].sort();
    sortedMemo.set(members, sorted);
  }
  return sorted;
}

/**
 * Rule tails as rendered in one plan: the compiler shares one array for a rule that many chains hold (every
 * namespace chain's mark and drop rules), and that is rendered once.
 */
type RenderedTails = Map<Rule, string>;

function renderChain(chain: string, rules: readonly Rule[], hashes: string[], tails: RenderedTails, out: string[]): void {
  const head = `-A ${quote(chain)}`;
  rules.forEach((rule, i) => {
    let tail = tails.get(rule);
    if (tail === undefined) {
      tail = renderRuleTail(rule, hashes[i] ?? ruleHash(rule));
      tails.set(rule, tail);
    }
    out.push(head + tail);
  });
}

function* planFamily(
  desired: FamilyRuleset,
  observed: ObservedFamily,
  tails: RenderedTails,
): Generator<void, { main: string; cleanup: string; combined: string; changed: number; deleted: number; jumps: number }> {
  const declare: string[] = [];
  const rules: string[] = [];
  let changed = 0;
  for (const [chain, chainRules] of desired.chains) {
    yield;
    const hashes = chainHashes(chainRules);
    if (sameList(observed.chains.get(chain), hashes)) continue;
    changed++;
    declare.push(`:${chain} - [0:0]`);
    renderChain(chain, chainRules, hashes, tails, rules);
  }
  const jumpLines: string[] = [];
  let jumpsAdded = 0;
  for (const jump of desired.jumps) {
    const found = observed.jumps.filter((j) => j.chain === jump.chain && j.target === jump.target);
    // Our jump must be the chain's only one and its first rule: a rule above it that accepts (kube-proxy's
    // KUBE-FORWARD accepts marked packets) lets traffic skip policy. Otherwise every copy is deleted (a delete by
    // spec takes the topmost) and one inserted at the top, in the same transaction.
    const kept = found.length === 1 && found[0]?.position === 1;
    if (!kept) {
      for (let i = 0; i < found.length; i++) jumpLines.push(renderJump(jump, '-D'));
      jumpLines.push(renderJump(jump, '-I'));
      jumpsAdded++;
    }
  }
  // Jumps of ours to chains we no longer want (e.g. from an older version) go before those chains do.
  const staleJumps = observed.jumps.filter((o) => !desired.jumps.some((d) => d.chain === o.chain && d.target === o.target));
  for (const o of staleJumps) {
    jumpLines.push(renderJump({ chain: o.chain as BuiltinJump['chain'], target: o.target, comment: JUMP_COMMENT }, '-D'));
  }
  const stale = [...observed.chains.keys()].filter((c) => c.startsWith(CHAIN_PREFIX) && !desired.chains.has(c)).sort();
  const main =
    declare.length + jumpLines.length === 0 ? '' : ['*filter', ...declare, ...rules, ...jumpLines, 'COMMIT', ''].join('\n');
  const staleLines = [...stale.map((c) => `:${c} - [0:0]`), ...stale.map((c) => `-X ${c}`)];
  const cleanup = stale.length === 0 ? '' : ['*filter', ...staleLines, 'COMMIT', ''].join('\n');
  // Both in one transaction: the stale chains go after every rule that referred to them was rewritten.
  const combined = main === '' ? cleanup : cleanup === '' ? main : ['*filter', ...declare, ...rules, ...jumpLines, ...staleLines, 'COMMIT', ''].join('\n');
  return { main, cleanup, combined, changed, deleted: stale.length, jumps: jumpsAdded };
}

/** The form `ipset save` prints an entry in (a host prefix as its address, then any flag), so entries compare as strings. */
export function normalizeSetMember(type: string, entry: string): string {
  if (type !== 'hash:net') return entry;
  const flag = entry.endsWith(NOMATCH) ? NOMATCH : '';
  const net = entry.slice(0, entry.length - flag.length);
  if (familyOf(net) === 'ipv4' && net.endsWith('/32')) return net.slice(0, -3) + flag;
  if (familyOf(net) === 'ipv6' && net.endsWith('/128')) return net.slice(0, -4) + flag;
  return entry;
}

/** Entries to add and to delete, both lists sorted (a merge of two sorted lists). */
function setDelta(have: string[], want: string[]): { add: string[]; del: string[] } {
  const add: string[] = [];
  const del: string[] = [];
  let i = 0;
  let j = 0;
  while (i < have.length || j < want.length) {
    const h = have[i];
    const w = want[j];
    if (h !== undefined && (w === undefined || h < w)) {
      del.push(h);
      i++;
    } else if (w !== undefined && (h === undefined || w < h)) {
      add.push(w);
      j++;
    } else {
      i++;
      j++;
    }
  }
  return { add, del };
}

export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** What set entries look like (addresses, nets, "ip,proto:port", "nomatch"); anything else gets the full check. */
const SAFE_MEMBER = /^[0-9A-Za-z.:/, -]+$/;
/** Entry lists that passed the check: the compiler hands an unchanged set back with the same array (34,000 entries here). */
const checkedMembers = new WeakSet<readonly string[]>();

function setHeader(name: string, spec: IpSetSpec): string {
  const maxelem = Math.max(65536, 2 ** Math.ceil(Math.log2(spec.members.length * 2 + 1)));
  return `create ${name} ${spec.type} family ${ipsetFamily(spec.family)} maxelem ${maxelem}`;
}

/** The isolated sets of both families: a pod leaves one only once its family's rules are in (see SetPlan). */
const ISOLATED_SETS = new Set(['ipv4', 'ipv6'].flatMap((f) => (['ingress', 'egress'] as const).map((d) => isolatedSetName(f as IpFamily, d))));

function* planSets(
  desired: IpSetSpec[],
  observed: Map<string, ObservedSet>,
): Generator<void, { script: string; releases: Record<IpFamily, string>; changed: number }> {
  const lines: string[] = [];
  const releases: Record<IpFamily, string[]> = { ipv4: [], ipv6: [] };
  let changed = 0;
  for (const spec of desired) {
    yield;
    safeWord(spec.name);
    if (!checkedMembers.has(spec.members)) {
      for (const m of spec.members) if (!SAFE_MEMBER.test(m)) safeWord(m);
      checkedMembers.add(spec.members);
    }
    const want = wantedMembers(spec);
    const have = observed.get(spec.name);
    if (have !== undefined && have.type === spec.type && sameList(sortedMembers(have.members), want)) continue;
    changed++;
    if (have === undefined) {
      lines.push(`${setHeader(spec.name, spec)} -exist`, `flush ${spec.name}`);
      for (const m of spec.members) lines.push(`add ${spec.name} ${m}`);
      continue;
    }
    // A few entries in or out (a pod's label or address changed): add and delete just those; each entry changes
    // atomically, and the set is never empty or half-filled on the way. Larger changes fill a twin and swap it in.
    const delta = setDelta(sortedMembers(have.members), want);
    if (ISOLATED_SETS.has(spec.name)) {
      // Isolating more goes in with the other sets (it only ever allows less); isolating less waits for the rules.
      for (const m of delta.add) lines.push(`add ${spec.name} ${m} -exist`);
      for (const m of delta.del) releases[spec.family].push(`del ${spec.name} ${m} -exist`);
      continue;
    }
    if (delta.add.length + delta.del.length <= Math.max(8, want.length / 4)) {
      for (const m of delta.add) lines.push(`add ${spec.name} ${m} -exist`);
      // `ipset del` names the entry alone: it refuses the nomatch flag.
      for (const m of delta.del) lines.push(`del ${spec.name} ${m.endsWith(NOMATCH) ? m.slice(0, -NOMATCH.length) : m} -exist`);
      continue;
    }
    const temp = `${spec.name}${TEMP_SUFFIX}`;
    lines.push(`${setHeader(temp, spec)} -exist`, `flush ${temp}`);
    for (const m of spec.members) lines.push(`add ${temp} ${m}`);
    lines.push(`swap ${temp} ${spec.name}`, `destroy ${temp}`);
  }
  const script = (l: string[]): string => (l.length === 0 ? '' : l.join('\n') + '\n');
  return { script: script(lines), releases: { ipv4: script(releases.ipv4), ipv6: script(releases.ipv6) }, changed };
}

/** The sets part of a plan, which goes in first (the rules reference the sets). */
export interface SetPlan {
  ipsetRestore: string;
  /**
   * Per family, what takes pods out of its isolated sets: run once that family's rules are in. Taken out before, a
   * pod would be open under the family's previous rules, which a refused restore leaves in force.
   */
  isolationReleases: Record<IpFamily, string>;
  destroySets: string[];
  summary: { changedSets: number; deletedSets: number };
}

export function planSetChanges(desired: CompiledPolicies, observed: ObservedPolicyState): SetPlan {
  return atOnce(planSetChangesInSteps(desired, observed));
}

/** planSetChanges() as steps (see slices.ts): a policy with 600 peers writes 1,200 sets. */
export function* planSetChangesInSteps(desired: CompiledPolicies, observed: ObservedPolicyState): Generator<void, SetPlan> {
  const desiredSets = [...desired.v4.sets.values(), ...desired.v6.sets.values()];
  const sets = yield* planSets(desiredSets, observed.sets);
  const wanted = new Set(desiredSets.map((s) => s.name));
  const destroySets = [...observed.sets.keys()].filter((n) => n.startsWith(SET_PREFIX) && !wanted.has(n)).sort();
  return { ipsetRestore: sets.script, isolationReleases: sets.releases, destroySets, summary: { changedSets: sets.changed, deletedSets: destroySets.length } };
}

/** The whole plan given its sets part: the rules of both families, every changed rule rendered with its hash. */
export function planRuleChanges(desired: CompiledPolicies, observed: ObservedPolicyState, sets: SetPlan): PolicyPlan {
  return atOnce(planRuleChangesInSteps(desired, observed, sets));
}

/** planRuleChanges() as steps (see slices.ts), a chain each (hashed, and rendered if it changed). */
export function* planRuleChangesInSteps(desired: CompiledPolicies, observed: ObservedPolicyState, sets: SetPlan): Generator<void, PolicyPlan> {
  const tails: RenderedTails = new Map();
  const v4 = yield* planFamily(desired.v4, observed.v4, tails);
  const v6 = yield* planFamily(desired.v6, observed.v6, tails);
  return {
    ipsetRestore: sets.ipsetRestore,
    isolationReleases: sets.isolationReleases,
    iptablesRestore: { ipv4: v4.main, ipv6: v6.main },
    iptablesCleanup: { ipv4: v4.cleanup, ipv6: v6.cleanup },
    iptablesCombined: { ipv4: v4.combined, ipv6: v6.combined },
    destroySets: sets.destroySets,
    summary: {
      changedChains: v4.changed + v6.changed,
      deletedChains: v4.deleted + v6.deleted,
      changedSets: sets.summary.changedSets,
      deletedSets: sets.summary.deletedSets,
      jumpsAdded: v4.jumps + v6.jumps,
    },
  };
}

export function planPolicyChanges(desired: CompiledPolicies, observed: ObservedPolicyState): PolicyPlan {
  return planRuleChanges(desired, observed, planSetChanges(desired, observed));
}

/** What the kernel holds once a plan for `desired` went in completely: the planner's next `observed`. */
export function observedAfter(desired: CompiledPolicies): ObservedPolicyState {
  const family = (rs: FamilyRuleset): ObservedFamily => ({
    chains: new Map([...rs.chains].map(([name, rules]) => [name, chainHashes(rules)])),
    jumps: rs.jumps.map((j) => ({ chain: j.chain, target: j.target, position: 1 })),
  });
  const sets = new Map<string, ObservedSet>();
  for (const s of [...desired.v4.sets.values(), ...desired.v6.sets.values()]) {
    sets.set(s.name, { name: s.name, type: s.type, family: s.family, members: wantedMembers(s) });
  }
  return { v4: family(desired.v4), v6: family(desired.v6), sets };
}
