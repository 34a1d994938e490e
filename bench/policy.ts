// Policy benchmark: one node with 1,000 local pods in 50 namespaces and 500 policies of mixed shapes.
// Measures, inside private network namespaces: compile time, full sync (read + compile + plan + apply into an empty
// kernel), the floor (the same final ruleset loaded by raw `ipset restore` + `iptables-restore` into a fresh
// namespace), alternated over a few rounds, and the latency of a single pod label change until its rules are in
// the kernel: by the incremental compiler and, side by side, by a from-scratch compile of the whole snapshot.
//   node dist/bench/policy.js [--prefix hb --pods 1000 --namespaces 50 --policies 500 --changes 100 --rounds 3]   (root)
// Prints one JSON object on stdout.
import { execa } from 'execa';
import type { Namespace, NetworkPolicy, Pod } from '../src/kube/wire.js';
import { netnsRunner } from '../src/host/command.js';
import { IptablesPolicyApplier } from '../src/policy/apply.js';
import { compilePolicies } from '../test/unit/policy/scratch-compile.js';
import { PolicyCompiler } from '../src/policy/incremental.js';
import { emptyObservedState, observedAfter, planPolicyChanges, planRuleChanges, planSetChanges } from '../src/policy/plan.js';
import type { PolicyNode } from '../src/policy/types.js';
import { percentile } from './lib/stats.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const PODS = arg('pods', 1000);
const NAMESPACES = arg('namespaces', 50);
const POLICIES = arg('policies', 500);
const CHANGES = arg('changes', 100);
/** Pause between single label changes (outside the timing). */
const CHANGE_GAP_MS = 50;
/** Full sync and floor, each this many times, alternating. */
const ROUNDS = arg('rounds', 3);
/**
 * The namespaces carry the run's prefix and this process's pid: a second run (make bench next to the smoke test)
 * must never recreate the namespace this run is writing into, or this run's remembered state goes stale.
 */
const PREFIX = (() => {
  const i = process.argv.indexOf('--prefix');
  return i > 0 ? (process.argv[i + 1] ?? 'hpb') : 'hpb';
})();
const NETNS = [`${PREFIX}pol-a-${process.pid}`, `${PREFIX}pol-b-${process.pid}`];

/** Namespaces of earlier runs with this prefix whose process is gone (a crash): removed, others left alone. */
async function removeLeftovers(): Promise<void> {
  const list = await execa('ip', ['netns', 'list'], { reject: false });
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}pol-[ab]-(\\d+)$`).exec(name);
    if (m === null) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      alive = false;
    }
    if (!alive) await execa('ip', ['netns', 'delete', name], { reject: false });
  }
}

const node: PolicyNode = { name: 'n1', addresses: ['192.168.0.1', 'fd00::1'], podCIDRs: ['10.64.0.0/16', 'fd10::/56'] };

function world(): { pods: Pod[]; namespaces: Namespace[]; policies: NetworkPolicy[] } {
  const namespaces: Namespace[] = Array.from({ length: NAMESPACES }, (_, i) => ({
    metadata: { name: `ns${i}`, labels: { team: `t${i % 10}`, env: i % 3 === 0 ? 'prod' : 'dev' } },
  }));
  const pods: Pod[] = Array.from({ length: PODS }, (_, i) => ({
    metadata: { namespace: `ns${i % NAMESPACES}`, name: `pod${i}`, labels: { app: `app${i % 20}`, tier: ['web', 'api', 'db'][i % 3] ?? 'web' } },
    spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ containerPort: 8080 + (i % 3), name: 'http' }, { containerPort: 53, protocol: 'UDP', name: 'dns' }] }] },
    status: { phase: 'Running', podIPs: [{ ip: `10.64.${i >> 8}.${i & 255}` }, { ip: `fd10::${i.toString(16)}` }] },
  }));
  const policies: NetworkPolicy[] = Array.from({ length: POLICIES }, (_, i) => {
    const ns = `ns${i % NAMESPACES}`;
    const shape = i % 5;
    const spec: NetworkPolicy['spec'] =
      shape === 0
        ? { podSelector: {}, policyTypes: ['Ingress'] }
        : shape === 1
          ? { podSelector: { matchLabels: { app: `app${i % 20}` } }, ingress: [{ from: [{ podSelector: { matchLabels: { tier: 'web' } } }], ports: [{ port: 'http' }] }] }
          : shape === 2
            ? {
                podSelector: { matchLabels: { tier: 'db' } },
                ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${i % 10}` } }, podSelector: { matchLabels: { tier: 'api' } } }], ports: [{ port: 5432 }] }],
              }
            : shape === 3
              ? {
                  podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['api', 'web'] }] },
                  policyTypes: ['Egress'],
                  egress: [
                    { to: [{ namespaceSelector: { matchLabels: { env: 'prod' } } }], ports: [{ port: 8080, endPort: 8090 }] },
                    { ports: [{ port: 'dns', protocol: 'UDP' }] },
                    { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '192.168.0.0/16'] } }], ports: [{ port: 443 }] },
                  ],
                }
              : { podSelector: { matchLabels: { app: `app${(i + 7) % 20}` } }, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] } }] }] };
    return { metadata: { namespace: ns, name: `pol${i}` }, spec };
  });
  return { pods, namespaces, policies };
}

function ms(from: bigint): number {
  return Number(process.hrtime.bigint() - from) / 1e6;
}

function median(values: number[]): number {
  return percentile(values, 50);
}

const round1 = (v: number): number => Math.round(v * 10) / 10;

/** A fresh namespace for one measurement (removed again in main's finally). */
async function freshNetns(name: string): Promise<string> {
  await execa('ip', ['netns', 'delete', name], { reject: false });
  await execa('ip', ['netns', 'add', name]);
  return name;
}

async function main(): Promise<void> {
  await removeLeftovers();
  const [nsA, nsB] = NETNS as [string, string];
  try {
    const w = world();
    let t = process.hrtime.bigint();
    const compiled = compilePolicies({ ...w, node });
    const compileMs = ms(t);

    // Full sync (what an agent does on start: read the kernel, compile cold, plan, apply) and the floor (the same
    // final ruleset, raw, into an empty namespace), alternated in fresh namespaces, ROUNDS times each.
    const fullSyncs: number[] = [];
    const floors: number[] = [];
    const coldCompiles: number[] = [];
    const fullSyncRenders: number[] = [];
    const fullSyncApplies: number[] = [];
    let compiler = new PolicyCompiler();
    let fresh = compiled;
    let applier = new IptablesPolicyApplier({ runner: netnsRunner(nsA) });
    for (let round = 0; round < ROUNDS; round++) {
      const floorFirst = round % 2 === 1;
      const measureFloor = async (plan: ReturnType<typeof planPolicyChanges>): Promise<void> => {
        const floorRunner = netnsRunner(await freshNetns(nsB));
        const t0 = process.hrtime.bigint();
        // The sets first (the rules name them), then both families at once, as the applier does.
        await floorRunner.run(['ipset', 'restore'], { input: plan.ipsetRestore });
        await Promise.all([
          floorRunner.run(['iptables-restore', '--noflush'], { input: plan.iptablesRestore.ipv4 }),
          floorRunner.run(['ip6tables-restore', '--noflush'], { input: plan.iptablesRestore.ipv6 }),
        ]);
        floors.push(ms(t0));
      };
      const reference = planPolicyChanges(compiled, emptyObservedState());
      if (floorFirst) await measureFloor(reference);
      compiler = new PolicyCompiler();
      applier = new IptablesPolicyApplier({ runner: netnsRunner(await freshNetns(nsA)) });
      // As the reconciler does it: the kernel read runs while the compiler works.
      t = process.hrtime.bigint();
      const reading = applier.readObserved();
      const t1 = process.hrtime.bigint();
      fresh = compiler.compile({ ...w, node });
      coldCompiles.push(ms(t1));
      const observedEmpty = await reading;
      const t2 = process.hrtime.bigint();
      // The sets are planned first and go in while the rules are rendered.
      const cold = fresh;
      const sets = planSetChanges(cold, observedEmpty);
      await applier.applyRendering(sets, () => {
        const t3 = process.hrtime.bigint();
        const plan = planRuleChanges(cold, observedEmpty, sets);
        fullSyncRenders.push(ms(t3));
        return plan;
      });
      fullSyncApplies.push(ms(t2));
      fullSyncs.push(ms(t));
      if (!floorFirst) await measureFloor(reference);
    }

    // Single label changes: one pod moves between app labels; compile + plan + apply against the known state.
    // Alternately by the incremental compiler and by a from-scratch compile of the whole snapshot (the way before
    // the compiler was incremental), side by side on the same kernel.
    let observed = observedAfter(fresh);
    const modes = { incremental: { total: [] as number[], compute: [] as number[] }, scratch: { total: [] as number[], compute: [] as number[] } };
    let wrote = 0;
    const incWrote: boolean[] = [];
    for (let k = 0; k < CHANGES * 2; k++) {
      // Single changes, each into a settled kernel: the restores of the change before have ended (their processes
      // wait out an RCU grace period as they end, which would hold up a commit that follows within ~20 ms).
      await new Promise((resolve) => setTimeout(resolve, CHANGE_GAP_MS));
      const mode = k % 2 === 0 ? 'incremental' : 'scratch';
      const index = ((k >> 1) * 37 + (k & 1) * 500) % PODS;
      w.pods = w.pods.map((p, i) => (i === index ? { ...p, metadata: { ...p.metadata, labels: { ...p.metadata?.labels, app: `app${(k + 3) % 20}` } } } : p));
      t = process.hrtime.bigint();
      const next = mode === 'incremental' ? compiler.compile({ ...w, node }) : compilePolicies({ ...w, node });
      const changePlan = planPolicyChanges(next, observed);
      modes[mode].compute.push(ms(t));
      await applier.apply(changePlan);
      modes[mode].total.push(ms(t));
      const s = changePlan.summary;
      const didWrite = s.changedChains + s.changedSets + s.deletedChains > 0;
      if (didWrite) wrote++;
      if (mode === 'incremental') incWrote.push(didWrite);
      // The incremental compiler sees every snapshot (outside the timing when it was not the one measured).
      const final = mode === 'incremental' ? next : compiler.compile({ ...w, node });
      observed = observedAfter(final);
    }
    const inc = modes.incremental;
    const scr = modes.scratch;
    // What one restore process costs at this table size with nothing to change (it reads the whole table first):
    // the floor under any change that writes a chain, once per family.
    const emptyRestores: number[] = [];
    for (let i = 0; i < 10; i++) {
      t = process.hrtime.bigint();
      await netnsRunner(nsA).run(['iptables-restore', '--noflush', '-w', '5'], { input: '*filter\nCOMMIT\n' });
      emptyRestores.push(ms(t));
    }
    // The smallest change that writes both families (an empty chain created and deleted, both families at once, as
    // the applier writes them): what any label change that touches chains costs at least at this table size.
    const smallCommits: number[] = [];
    for (let i = 0; i < 10; i++) {
      t = process.hrtime.bigint();
      await Promise.all(
        ['iptables-restore', 'ip6tables-restore'].map((cmd) =>
          netnsRunner(nsA).run([cmd, '--noflush', '-w', '5'], { input: '*filter\n:PRPOL-BENCH - [0:0]\n-X PRPOL-BENCH\nCOMMIT\n' }),
        ),
      );
      smallCommits.push(ms(t));
    }
    const wroteLatencies = inc.total.filter((_, i) => incWrote[i] === true);
    const rules = [...compiled.v4.chains.values(), ...compiled.v6.chains.values()].reduce((n, r) => n + r.length, 0);
    const fullSyncMs = median(fullSyncs);
    const floorMs = median(floors);
    const result = {
      pods: PODS,
      namespaces: NAMESPACES,
      policies: POLICIES,
      chains: compiled.v4.chains.size + compiled.v6.chains.size,
      rules,
      sets: compiled.v4.sets.size + compiled.v6.sets.size,
      setMembers: [...compiled.v4.sets.values(), ...compiled.v6.sets.values()].reduce((n, s) => n + s.members.length, 0),
      compileMs: Math.round(compileMs),
      coldCompileMs: Math.round(median(coldCompiles)),
      rounds: ROUNDS,
      fullSyncMs: Math.round(fullSyncMs),
      floorMs: Math.round(floorMs),
      fullSyncOverFloor: Math.round((fullSyncMs / floorMs) * 100) / 100,
      fullSyncRuns: fullSyncs.map(Math.round),
      fullSyncRenderMs: Math.round(median(fullSyncRenders)),
      fullSyncApplyMs: Math.round(median(fullSyncApplies)),
      floorRuns: floors.map(Math.round),
      emptyRestoreMs: round1(median(emptyRestores)),
      smallCommitBothFamiliesMs: round1(median(smallCommits)),
      labelChangeWritingMs: { p50: Math.round(percentile(wroteLatencies, 50)), p99: Math.round(percentile(wroteLatencies, 99)), n: wroteLatencies.length },
      labelChanges: inc.total.length,
      labelChangeGapMs: CHANGE_GAP_MS,
      labelChangesThatWrote: wrote,
      labelChangeComputeMs: { p50: round1(percentile(inc.compute, 50)), p99: round1(percentile(inc.compute, 99)) },
      labelChangeMs: { p50: Math.round(percentile(inc.total, 50)), p99: Math.round(percentile(inc.total, 99)), max: Math.round(Math.max(...inc.total)) },
      labelChangeScratchComputeMs: { p50: round1(percentile(scr.compute, 50)), p99: round1(percentile(scr.compute, 99)) },
      labelChangeScratchMs: { p50: Math.round(percentile(scr.total, 50)), p99: Math.round(percentile(scr.total, 99)), max: Math.round(Math.max(...scr.total)) },
      emptyPlanCheck: planPolicyChanges(compiled, emptyObservedState()).summary,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    for (const ns of NETNS) await execa('ip', ['netns', 'delete', ns], { reject: false });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/policy: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
