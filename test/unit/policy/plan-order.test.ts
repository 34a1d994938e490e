// The planner's restore inputs against a model of the kernel that enforces what iptables-restore and ipset enforce:
// a rule may only jump to a chain that exists at that line (built in, created earlier or declared earlier in the same
// batch) and only match a set that exists; a chain may only be deleted when no rule references it; a set may only be
// destroyed when no rule matches it; a batch is all or nothing. Over random change sequences (pods, labels,
// namespaces, policies), each step's plan is made from the planner's memory of the previous step and must go in,
// leaving the kernel exactly as the planner then remembers it.
import { expect } from 'chai';
import fc from 'fast-check';
import { type CompiledPolicies } from '../../../src/policy/compile.js';
import { compilePolicies } from './scratch-compile.js';
import { PolicyCompiler } from '../../../src/policy/incremental.js';
import { emptyObservedState, normalizeSetMember, observedAfter, planPolicyChanges, RULE_HASH_PREFIX, type ObservedPolicyState, type PolicyPlan } from '../../../src/policy/plan.js';
import { IP_FAMILIES, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { applyChange, changeArb, initialArb, node, type Snapshot } from './changes.js';

const TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'MARK', 'REJECT']);

interface ModelRule {
  line: string;
  hash: string;
  target: string | undefined;
  sets: string[];
}

class ModelRefusal extends Error {}

/** One family's filter table and the shared ipsets, with the kernel's refusals. */
class ModelKernel {
  tables: Record<IpFamily, Map<string, ModelRule[]>> = { ipv4: this.builtins(), ipv6: this.builtins() };
  sets = new Map<string, { type: string; members: Set<string> }>();

  private builtins(): Map<string, ModelRule[]> {
    return new Map([
      ['INPUT', []],
      ['FORWARD', []],
      ['OUTPUT', []],
    ]);
  }

  private parseRule(words: string[]): ModelRule {
    const j = words.indexOf('-j');
    const hashAt = words.indexOf('--comment');
    const comment = hashAt >= 0 ? (words[hashAt + 1] ?? '').replace(/"/g, '') : '';
    const sets: string[] = [];
    words.forEach((w, i) => {
      if (w === '--match-set') sets.push(words[i + 1] ?? '');
    });
    return {
      line: words.slice(2).join(' '),
      hash: comment.startsWith(RULE_HASH_PREFIX) ? comment.slice(RULE_HASH_PREFIX.length) : '',
      target: j >= 0 ? words[j + 1] : undefined,
      sets,
    };
  }

  private references(table: Map<string, ModelRule[]>, chain: string): boolean {
    return [...table.values()].some((rules) => rules.some((r) => r.target === chain));
  }

  /** `iptables-restore --noflush`: all lines or none. */
  iptablesRestore(family: IpFamily, input: string): void {
    const table = new Map([...this.tables[family]].map(([k, v]) => [k, [...v]]));
    for (const raw of input.split('\n')) {
      const line = raw.trim();
      if (line === '' || line === '*filter' || line === 'COMMIT') continue;
      if (line.startsWith(':')) {
        table.set(line.slice(1).split(' ')[0] ?? '', []);
        continue;
      }
      const words = line.match(/"[^"]*"|\S+/g) ?? [];
      const [op, chain] = words;
      if (chain === undefined || !table.has(chain)) throw new ModelRefusal(`Chain '${chain}' does not exist (line: ${line})`);
      if (op === '-X') {
        if ((table.get(chain) ?? []).length > 0) throw new ModelRefusal(`deleting non-empty chain ${chain}`);
        if (this.references(table, chain)) throw new ModelRefusal(`deleting chain ${chain} that is still referenced`);
        table.delete(chain);
        continue;
      }
      const rule = this.parseRule(op === '-I' ? [op, chain, ...words.slice(3)] : words);
      if (rule.target !== undefined && !TARGETS.has(rule.target) && !table.has(rule.target)) {
        throw new ModelRefusal(`Chain '${rule.target}' does not exist (line: ${line})`);
      }
      for (const s of rule.sets) if (!this.sets.has(s)) throw new ModelRefusal(`Set ${s} doesn't exist`);
      const rules = table.get(chain) ?? [];
      if (op === '-A') rules.push(rule);
      else if (op === '-I') rules.unshift(rule);
      else if (op === '-D') {
        const at = rules.findIndex((r) => r.line === rule.line);
        if (at < 0) throw new ModelRefusal(`no such rule to delete: ${line}`);
        rules.splice(at, 1);
      } else throw new ModelRefusal(`unknown op ${op}`);
    }
    this.tables[family] = table;
  }

  ipsetRestore(input: string): void {
    const sets = new Map([...this.sets].map(([k, v]) => [k, { type: v.type, members: new Set(v.members) }]));
    for (const line of input.split('\n')) {
      const w = line.trim().split(/\s+/);
      const [op, name, arg] = w;
      if (op === undefined || op === '' || name === undefined) continue;
      if (op === 'create') {
        if (!sets.has(name)) sets.set(name, { type: arg ?? '', members: new Set() });
      } else if (op === 'flush' || op === 'add') {
        const set = sets.get(name);
        if (set === undefined) throw new ModelRefusal(`set ${name} does not exist`);
        // The kernel holds entries in one form (10.1.0.1/32 in a hash:net is 10.1.0.1).
        if (op === 'flush') set.members.clear();
        else set.members.add(normalizeSetMember(set.type, w[3] === 'nomatch' ? `${arg ?? ''} nomatch` : (arg ?? '')));
      } else if (op === 'del') {
        const set = sets.get(name);
        if (set === undefined) throw new ModelRefusal(`set ${name} does not exist`);
        // ipset names the entry alone on del: a flag is an unknown argument; the entry goes, flagged or not.
        if (w[3] === 'nomatch') throw new ModelRefusal(`del with a flag: ${line}`);
        const entry = normalizeSetMember(set.type, arg ?? '');
        set.members.delete(entry);
        set.members.delete(`${entry} nomatch`);
      } else if (op === 'swap') {
        const a = sets.get(name);
        const b = sets.get(arg ?? '');
        if (a === undefined || b === undefined || a.type !== b.type) throw new ModelRefusal(`cannot swap ${name} ${arg}`);
        sets.set(name, b);
        sets.set(arg ?? '', a);
      } else if (op === 'destroy') {
        this.assertUnreferenced(name);
        sets.delete(name);
      } else throw new ModelRefusal(`unknown ipset op ${op}`);
    }
    this.sets = sets;
  }

  destroy(name: string): void {
    this.assertUnreferenced(name);
    if (!this.sets.delete(name)) throw new ModelRefusal(`set ${name} does not exist`);
  }

  private assertUnreferenced(name: string): void {
    for (const table of Object.values(this.tables)) {
      for (const rules of table.values()) if (rules.some((r) => r.sets.includes(name))) throw new ModelRefusal(`set ${name} is in use`);
    }
  }

  /**
   * The applier's order: sets, then per family the update with the cleanup in one transaction (or, with `apart`,
   * the update and then the cleanup: the applier's fallback), then the isolated sets' releases, then set destruction.
   */
  apply(plan: PolicyPlan, apart = false): void {
    if (plan.ipsetRestore !== '') this.ipsetRestore(plan.ipsetRestore);
    for (const f of IP_FAMILIES) {
      if (!apart && plan.iptablesCombined[f] !== '') {
        this.iptablesRestore(f, plan.iptablesCombined[f]);
        continue;
      }
      if (plan.iptablesRestore[f] !== '') this.iptablesRestore(f, plan.iptablesRestore[f]);
      if (plan.iptablesCleanup[f] !== '') this.iptablesRestore(f, plan.iptablesCleanup[f]);
    }
    for (const f of IP_FAMILIES) if (plan.isolationReleases[f] !== '') this.ipsetRestore(plan.isolationReleases[f]);
    for (const s of plan.destroySets) this.destroy(s);
  }

  /** What readObserved() would find. */
  observed(): ObservedPolicyState {
    const state = emptyObservedState();
    for (const f of IP_FAMILIES) {
      const fam = f === 'ipv4' ? state.v4 : state.v6;
      for (const [chain, rules] of this.tables[f]) {
        if (chain.startsWith('PRPOL-')) fam.chains.set(chain, rules.map((r) => r.hash));
        else {
          rules.forEach((r, i) => {
            if (r.target?.startsWith('PRPOL-') === true) fam.jumps.push({ chain, target: r.target, position: i + 1 });
          });
        }
      }
    }
    for (const [name, s] of this.sets) {
      if (name.startsWith('PRPOL')) state.sets.set(name, { name, type: s.type, family: name.startsWith('PRPOL6') ? 'ipv6' : 'ipv4', members: [...s.members].map((m) => normalizeSetMember(s.type, m)) });
    }
    return state;
  }
}

/** Chains and jumps compared as the planner sees them; sets by sorted members. */
function normalized(o: ObservedPolicyState): unknown {
  const fam = (f: ObservedPolicyState['v4']): unknown => ({
    chains: [...f.chains].sort(([a], [b]) => (a < b ? -1 : 1)),
    jumps: [...f.jumps].sort((a, b) => (`${a.chain}${a.target}` < `${b.chain}${b.target}` ? -1 : 1)),
  });
  const sets = [...o.sets.values()].map((s) => [s.name, s.type, [...s.members].sort()]).sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1));
  return { v4: fam(o.v4), v6: fam(o.v6), sets };
}

function runSequence(initial: Snapshot, changes: Parameters<typeof applyChange>[1][], compile: (s: Snapshot) => CompiledPolicies, apart = false): void {
  const kernel = new ModelKernel();
  let snapshot = initial;
  let memory = emptyObservedState();
  for (const change of [null, ...changes]) {
    if (change !== null) snapshot = applyChange(snapshot, change);
    const desired = compile(snapshot);
    const plan = planPolicyChanges(desired, memory);
    try {
      kernel.apply(plan, apart);
    } catch (err) {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\nafter change ${JSON.stringify(change)}`);
    }
    memory = observedAfter(desired);
    expect(normalized(kernel.observed())).to.deep.equal(normalized(memory));
  }
}

describe('policy plan ordering against a model kernel', () => {
  it('every step of random change sequences goes in and leaves the kernel as the planner remembers it', () => {
    fc.assert(
      fc.property(initialArb, fc.array(changeArb, { minLength: 1, maxLength: 12 }), (initial, changes) => {
        const compiler = new PolicyCompiler();
        runSequence(initial, changes, (s) => compiler.compile({ ...s, node }));
      }),
      { numRuns: 150 },
    );
  });

  it('the same with from-scratch compiles, and with update and cleanup applied apart (the fallback)', () => {
    fc.assert(
      fc.property(initialArb, fc.array(changeArb, { minLength: 1, maxLength: 12 }), fc.boolean(), (initial, changes, apart) => {
        runSequence(initial, changes, (s) => compilePolicies({ ...s, node }), apart);
      }),
      { numRuns: 100 },
    );
  });

  it('the model refuses a batch that jumps to a chain its memory wrongly believes is in the kernel', () => {
    // The bench failure: the kernel was emptied behind the planner's back (a second run recreated its namespace).
    const s: Snapshot = { pods: [], namespaces: [], policies: [] };
    const compiler = new PolicyCompiler();
    const kernel = new ModelKernel();
    const first = compiler.compile({ ...s, node });
    kernel.apply(planPolicyChanges(first, emptyObservedState()));
    const wiped = new ModelKernel();
    wiped.sets = kernel.sets;
    const memory = observedAfter(first);
    // Make the dispatch chain change while the chains it jumps to stay: only a memory-based plan leaves them undeclared.
    memory.v4.chains.set('PRPOL-FORWARD', ['']);
    expect(() => wiped.apply(planPolicyChanges(first, memory))).to.throw(ModelRefusal, /does not exist/);
  });
});
