// Property: the incremental PolicyCompiler, fed a random sequence of snapshots that each differ from the previous by
// a few changes (pod labels, IPs, ports, phase, pods added or removed, namespace labels, policies added, edited or
// removed), produces after every step exactly what a from-scratch compilePolicies() produces for that snapshot.
import { expect } from 'chai';
import fc from 'fast-check';
import { CHAINS, namespaceChainName, podIp, type CompiledPolicies, type PodBridge } from '../../../src/policy/compile.js';
import { compilePolicies } from './scratch-compile.js';
import { PolicyCompiler, sortedInSteps } from '../../../src/policy/incremental.js';
import { emptyObservedState, observedAfter, planPolicyChanges, planRuleChangesInSteps, planSetChanges, planSetChangesInSteps } from '../../../src/policy/plan.js';
import { atOnce } from '../../../src/policy/slices.js';
import { applyChange, changeArb, initialArb, makePod, node, type Snapshot } from './changes.js';
import { namespace, policy } from './world.js';

/** Chains and sets compared by name (their order in the maps carries no meaning), rules in order. */
function comparable(c: CompiledPolicies): unknown {
  const family = (f: CompiledPolicies['v4']): unknown => ({
    chains: [...f.chains].map(([name, rules]) => [name, rules.map((r) => [...r])]).sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
    sets: [...f.sets].sort(([a], [b]) => (a < b ? -1 : 1)),
    jumps: f.jumps,
  });
  return { v4: family(c.v4), v6: family(c.v6), problems: c.problems };
}

/** The pod bridge as the agent would bind it for a snapshot: each local pod with an address has a veth. */
/** Awaits `work`, counting the event-loop turns other work got meanwhile. */
async function countingTurns<T>(work: Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let counting = true;
  const count = (): void => {
    if (!counting) return;
    turns++;
    setImmediate(count);
  };
  setImmediate(count);
  try {
    return { value: await work, turns };
  } finally {
    counting = false;
  }
}

function bridgeOf(snapshot: Snapshot): PodBridge {
  const bindings = snapshot.pods
    .filter((p) => p.spec?.nodeName === node.name)
    .map((p, i) => ({ interface: `veth${i.toString(16).padStart(8, '0')}`, addresses: [podIp(p, 'ipv4'), podIp(p, 'ipv6')].filter((a): a is string => a !== undefined) }))
    .filter((b) => b.addresses.length > 0);
  return { name: 'podroute0', bindings };
}

/** A plan's restore inputs as sorted lines: the order of chains within a transaction carries no meaning. */
function planLines(plan: ReturnType<typeof planPolicyChanges>): unknown {
  const lines = (text: string): string[] => text.split('\n').sort();
  return {
    ipset: lines(plan.ipsetRestore),
    v4: lines(plan.iptablesRestore.ipv4),
    v6: lines(plan.iptablesRestore.ipv6),
    cleanup: [lines(plan.iptablesCleanup.ipv4), lines(plan.iptablesCleanup.ipv6)],
    destroy: plan.destroySets,
    summary: plan.summary,
  };
}

describe('PolicyCompiler (incremental)', () => {
  it('equals a from-scratch compile after every step of random change sequences', () => {
    fc.assert(
      fc.property(initialArb, fc.array(changeArb, { minLength: 1, maxLength: 15 }), fc.constantFrom(0x40000, 0x100), fc.boolean(), (initial, changes, allowMark, bridged) => {
        let snapshot: Snapshot = initial;
        const compiler = new PolicyCompiler();
        const bridge = (s: Snapshot): { bridge?: PodBridge } => (bridged ? { bridge: bridgeOf(s) } : {});
        let previous = compiler.compile({ ...snapshot, node, ...bridge(snapshot) }, { allowMark });
        for (const change of changes) {
          snapshot = applyChange(snapshot, change);
          const incremental = compiler.compile({ ...snapshot, node, ...bridge(snapshot) }, { allowMark });
          const scratch = compilePolicies({ ...snapshot, node, ...bridge(snapshot) }, { allowMark });
          expect(comparable(incremental)).to.deep.equal(comparable(scratch));
          // The planner, with its per-rule hash memory, plans the same against the previous state either way.
          const observed = observedAfter(previous);
          expect(planLines(planPolicyChanges(incremental, observed))).to.deep.equal(planLines(planPolicyChanges(scratch, observed)));
          previous = incremental;
        }
      }),
      { numRuns: 150 },
    );
  });

  it('compileYielding equals compile after every step, and other work runs between its slices', async () => {
    await fc.assert(
      fc.asyncProperty(initialArb, fc.array(changeArb, { minLength: 1, maxLength: 8 }), async (initial, changes) => {
        const yielding = new PolicyCompiler();
        const direct = new PolicyCompiler();
        let snapshot: Snapshot = initial;
        let turns = 0;
        for (const step of [undefined, ...changes]) {
          if (step !== undefined) snapshot = applyChange(snapshot, step);
          // Slices of 0 ms: a pause after every unit of work, and a count of the event-loop turns taken meanwhile.
          const { value: paused, turns: taken } = await countingTurns(yielding.compileYielding({ ...snapshot, node }, {}, 0));
          turns += taken;
          expect(comparable(paused)).to.deep.equal(comparable(direct.compile({ ...snapshot, node })));
        }
        // Every new pod is a unit of work: the first compile alone pauses once per pod.
        expect(turns, 'event-loop turns during the compiles').to.be.at.least(initial.pods.length);
      }),
      { numRuns: 40 },
    );
  });

  it('sorts a large set in steps exactly as one sort and deduplication would', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 3 }), { maxLength: 20_000 }), fc.integer({ min: 0, max: 3 }), (entries, copies) => {
        const input = [...entries, ...entries.slice(0, copies * 1000)];
        const steps = sortedInSteps(input);
        let step = steps.next();
        let pauses = 0;
        while (step.done !== true) {
          pauses++;
          step = steps.next();
        }
        expect(step.value).to.deep.equal([...new Set(input)].sort());
        expect(pauses, 'a pause per run at least').to.be.at.least(Math.floor(input.length / 4096));
      }),
      { numRuns: 30 },
    );
  });

  it('compiles and plans a policy of hundreds of peers and ports in small units (issue 14: the event loop is given back)', async () => {
    const peers = 300;
    const pods = Array.from({ length: 40 }, (_, i) => makePod(i, 'x', i < 4 ? { role: 'target' } : { app: `peer-${i}` }, i < 8, 0));
    const hostile = policy('x', 'hostile', {
      podSelector: { matchLabels: { role: 'target' } },
      ingress: [
        {
          from: Array.from({ length: peers }, (_, i) => ({ podSelector: { matchLabels: { app: `peer-${i}` } } })),
          ports: Array.from({ length: peers }, (_, i) => ({ protocol: 'TCP' as const, port: 1000 + i })),
        },
      ],
    });
    const input = { pods, namespaces: [namespace('x')], policies: [hostile], node };
    // Slices of 0 ms: a pause after every unit of work.
    const { value: compiled, turns } = await countingTurns(new PolicyCompiler().compileYielding(input, {}, 0));
    expect(comparable(compiled)).to.deep.equal(comparable(new PolicyCompiler().compile(input)));
    // In each family, each of the rule's peer sets is filled in a unit of its own and written out in another.
    expect(turns, 'event-loop turns during the compile').to.be.at.least(4 * peers);
    const stepsOf = (steps: Generator<void, unknown>): number => {
      let n = 0;
      while (steps.next().done !== true) n++;
      return n;
    };
    const observed = emptyObservedState();
    const sets = planSetChanges(compiled, observed);
    expect(stepsOf(planSetChangesInSteps(compiled, observed)), 'a pause per set planned').to.be.at.least(2 * peers);
    const chains = compiled.v4.chains.size + compiled.v6.chains.size;
    expect(stepsOf(planRuleChangesInSteps(compiled, observed, sets)), 'a pause per chain rendered').to.be.at.least(chains);
    const inSteps = atOnce(planRuleChangesInSteps(compiled, observed, sets));
    expect(planLines(inSteps)).to.deep.equal(planLines(planPolicyChanges(compiled, observed)));
  });

  it('compiles an ipBlock of thousands of excepts in small units too (issue 19: 2,000 IPv6 excepts blocked the loop 100 ms)', async () => {
    const excepts = 2000;
    const pods = Array.from({ length: 4 }, (_, i) => makePod(i, 'x', { role: 'target' }, true, 0));
    const hostile = policy('x', 'excepts', {
      podSelector: { matchLabels: { role: 'target' } },
      ingress: [
        {
          from: [
            { ipBlock: { cidr: '0.0.0.0/0', except: Array.from({ length: excepts }, (_, i) => `198.18.${i >> 8}.${i & 255}/32`) } },
            { ipBlock: { cidr: '::/0', except: Array.from({ length: excepts }, (_, i) => `2001:db8::${i.toString(16)}/128`) } },
          ],
        },
      ],
    });
    const input = { pods, namespaces: [namespace('x')], policies: [hostile], node };
    const { value: compiled, turns } = await countingTurns(new PolicyCompiler().compileYielding(input, {}, 0));
    expect(comparable(compiled)).to.deep.equal(comparable(new PolicyCompiler().compile(input)));
    // Validation and the rule's peers each parse every except: both pause within the lists, not only between peers.
    expect(turns, 'event-loop turns during the compile').to.be.at.least((2 * 2 * excepts) / 256);
  });

  it('recompiles only what one pod label change affects', () => {
    const pods = Array.from({ length: 6 }, (_, i) => makePod(i, 'x', { app: i % 2 === 0 ? 'a' : 'b' }, true, 0));
    const policies = [
      policy('x', 'to-a', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }] }] }),
      policy('x', 'to-b', { podSelector: { matchLabels: { app: 'b' } }, ingress: [{ ports: [{ port: 80 }] }] }),
    ];
    const compiler = new PolicyCompiler();
    const before = compiler.compile({ pods, namespaces: [namespace('x')], policies, node });
    const moved = pods.map((p, i) => (i === 0 ? { ...p, metadata: { ...p.metadata, labels: { app: 'b' } } } : p));
    const after = compiler.compile({ pods: moved, namespaces: [namespace('x')], policies, node });
    const plan = planPolicyChanges(after, observedAfter(before));
    // Pod 0 is now selected by to-b, no longer by to-a: {app: b} (to-b's selection, to-a's peer) gained it and
    // {app: a} (to-a's selection) lost it, in both families. No chain changes.
    expect(plan.summary.changedChains).to.equal(0);
    expect(plan.summary.changedSets).to.equal(4);
    expect(plan.iptablesRestore).to.deep.equal({ ipv4: '', ipv6: '' });
    // Every chain is reused as is (the same objects, so their hashes are too).
    const reusable = [...before.v4.chains.keys()].filter((name) => !(Object.values(CHAINS) as string[]).includes(name));
    const reused = reusable.filter((name) => after.v4.chains.get(name) === before.v4.chains.get(name));
    // 2 rule chains, the namespace's ingress chain, 6 dispatch buckets (one per pod address here).
    expect(reusable.length).to.equal(9);
    expect(reused.length).to.equal(reusable.length);
  });

  it('finds a deleted pod when another key is handed in twice in the same snapshot (the later object wins)', () => {
    const pods = Array.from({ length: 4 }, (_, i) => makePod(i, 'x', { app: 'a' }, true, 0));
    const policies = [policy('x', 'to-a', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ ports: [{ port: 80 }] }] })];
    const compiler = new PolicyCompiler();
    compiler.compile({ pods, namespaces: [namespace('x')], policies, node });
    // Pod 3 is gone; pod 0 comes twice, as its old object and then as a new one with other labels.
    const relabeled = { ...pods[0]!, metadata: { ...pods[0]!.metadata, labels: { app: 'b' } } };
    const snapshot = [pods[0]!, pods[1]!, pods[2]!, relabeled];
    const after = compiler.compile({ pods: snapshot, namespaces: [namespace('x')], policies, node });
    expect(comparable(after)).to.deep.equal(comparable(compilePolicies({ pods: [pods[1]!, pods[2]!, relabeled], namespaces: [namespace('x')], policies, node })));
  });

  it('shares one array for a rule that reads the same in several places (namespace chains, families), and renders it the same', () => {
    const pods = Array.from({ length: 4 }, (_, i) => makePod(i, 'x', { app: i % 2 === 0 ? 'a' : 'b' }, true, 0));
    const policies = [
      policy('x', 'to-a', { podSelector: { matchLabels: { app: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }] }] }),
      // IPv4-only peers: this rule chain marks nothing in IPv6, so the IPv6 namespace chain does not call it.
      policy('x', 'v4-only', { podSelector: { matchLabels: { app: 'b' } }, ingress: [{ from: [{ ipBlock: { cidr: '192.0.2.0/24' } }] }] }),
    ];
    const compiled = new PolicyCompiler().compile({ pods, namespaces: [namespace('x')], policies, node });
    const chain = namespaceChainName('x', 'ingress');
    const [v4, v6] = [compiled.v4.chains.get(chain) ?? [], compiled.v6.chains.get(chain) ?? []];
    // Clear the mark, a jump per policy with rules in the family, drop the unmarked, clear again.
    expect(v4).to.have.length(5);
    expect(v6).to.have.length(4);
    // The mark and drop rules are one array each (hashed once), in every namespace chain of both families.
    expect(v4[0]).to.equal(v6[0]);
    expect(v4.at(-2)).to.equal(v6.at(-2));
    // Rendered once, the shared chains read in each family's restore exactly as the from-scratch compile's do.
    const plan = planPolicyChanges(compiled, emptyObservedState());
    const scratch = planPolicyChanges(compilePolicies({ pods, namespaces: [namespace('x')], policies, node }), emptyObservedState());
    expect(planLines(plan)).to.deep.equal(planLines(scratch));
  });
});
