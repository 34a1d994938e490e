// Policy benchmark: one node with 1,000 local pods in 50 namespaces and 500 policies of mixed shapes.
// Measures, inside a private network namespace: compile time, full sync (compile + plan + apply into an empty
// kernel), the floor (the same final ruleset loaded by raw `ipset restore` + `iptables-restore` into a fresh
// namespace), and the latency of a single pod label change until its rules are in the kernel.
//   node dist/bench/policy.js [--prefix hb --pods 1000 --namespaces 50 --policies 500 --changes 30]   (root)
// Prints one JSON object on stdout.
import { execa } from 'execa';
import type { V1Namespace, V1NetworkPolicy, V1Pod } from '@kubernetes/client-node';
import { IptablesPolicyApplier, netnsRunner } from '../src/policy/apply.js';
import { compilePolicies, PolicyCompiler } from '../src/policy/compile.js';
import { emptyObservedState, observedAfter, planPolicyChanges } from '../src/policy/plan.js';
import type { PolicyNode } from '../src/policy/types.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const PODS = arg('pods', 1000);
const NAMESPACES = arg('namespaces', 50);
const POLICIES = arg('policies', 500);
const CHANGES = arg('changes', 30);
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

function world(): { pods: V1Pod[]; namespaces: V1Namespace[]; policies: V1NetworkPolicy[] } {
  const namespaces: V1Namespace[] = Array.from({ length: NAMESPACES }, (_, i) => ({
    metadata: { name: `ns${i}`, labels: { team: `t${i % 10}`, env: i % 3 === 0 ? 'prod' : 'dev' } },
  }));
  const pods: V1Pod[] = Array.from({ length: PODS }, (_, i) => ({
    metadata: { namespace: `ns${i % NAMESPACES}`, name: `pod${i}`, labels: { app: `app${i % 20}`, tier: ['web', 'api', 'db'][i % 3] ?? 'web' } },
    spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ containerPort: 8080 + (i % 3), name: 'http' }, { containerPort: 53, protocol: 'UDP', name: 'dns' }] }] },
    status: { phase: 'Running', podIPs: [{ ip: `10.64.${i >> 8}.${i & 255}` }, { ip: `fd10::${i.toString(16)}` }] },
  }));
  const policies: V1NetworkPolicy[] = Array.from({ length: POLICIES }, (_, i) => {
    const ns = `ns${i % NAMESPACES}`;
    const shape = i % 5;
    const spec: V1NetworkPolicy['spec'] =
      shape === 0
        ? { podSelector: {}, policyTypes: ['Ingress'] }
        : shape === 1
          ? { podSelector: { matchLabels: { app: `app${i % 20}` } }, ingress: [{ _from: [{ podSelector: { matchLabels: { tier: 'web' } } }], ports: [{ port: 'http' }] }] }
          : shape === 2
            ? {
                podSelector: { matchLabels: { tier: 'db' } },
                ingress: [{ _from: [{ namespaceSelector: { matchLabels: { team: `t${i % 10}` } }, podSelector: { matchLabels: { tier: 'api' } } }], ports: [{ port: 5432 }] }],
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
              : { podSelector: { matchLabels: { app: `app${(i + 7) % 20}` } }, ingress: [{ _from: [{ namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] } }] }] };
    return { metadata: { namespace: ns, name: `pol${i}` }, spec };
  });
  return { pods, namespaces, policies };
}

function ms(from: bigint): number {
  return Number(process.hrtime.bigint() - from) / 1e6;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function main(): Promise<void> {
  await removeLeftovers();
  for (const ns of NETNS) await execa('ip', ['netns', 'add', ns]);
  try {
    const w = world();
    let t = process.hrtime.bigint();
    const compiled = compilePolicies({ ...w, node });
    const compileMs = ms(t);
    const applier = new IptablesPolicyApplier({ runner: netnsRunner(NETNS[0] ?? '') });

    // The reconciler's compiler: cold here (full sync), then incremental for the label changes.
    const compiler = new PolicyCompiler();
    t = process.hrtime.bigint();
    const fresh = compiler.compile({ ...w, node });
    const plan = planPolicyChanges(fresh, await applier.readObserved());
    await applier.apply(plan);
    const fullSyncMs = ms(t);

    // The floor: the same final ruleset, raw, into an empty namespace.
    const floorRunner = netnsRunner(NETNS[1] ?? '');
    t = process.hrtime.bigint();
    await floorRunner.run(['ipset', 'restore'], { input: plan.ipsetRestore });
    await floorRunner.run(['iptables-restore', '--noflush'], { input: plan.iptablesRestore[4] });
    await floorRunner.run(['ip6tables-restore', '--noflush'], { input: plan.iptablesRestore[6] });
    const floorMs = ms(t);

    // Single label changes: one pod moves between app labels, compile (incremental) + plan + apply against the known state.
    let observed = observedAfter(fresh);
    const latencies: number[] = [];
    const computeLatencies: number[] = [];
    for (let k = 0; k < CHANGES; k++) {
      const index = (k * 37) % PODS;
      const pods = w.pods.map((p, i) => (i === index ? { ...p, metadata: { ...p.metadata, labels: { ...p.metadata?.labels, app: `app${(k + 3) % 20}` } } } : p));
      w.pods = pods;
      t = process.hrtime.bigint();
      const next = compiler.compile({ ...w, node });
      const changePlan = planPolicyChanges(next, observed);
      computeLatencies.push(ms(t));
      await applier.apply(changePlan);
      latencies.push(ms(t));
      observed = observedAfter(next);
    }
    const rules = [...compiled.v4.chains.values(), ...compiled.v6.chains.values()].reduce((n, r) => n + r.length, 0);
    const result = {
      pods: PODS,
      namespaces: NAMESPACES,
      policies: POLICIES,
      chains: compiled.v4.chains.size + compiled.v6.chains.size,
      rules,
      sets: compiled.v4.sets.size + compiled.v6.sets.size,
      setMembers: [...compiled.v4.sets.values(), ...compiled.v6.sets.values()].reduce((n, s) => n + s.members.length, 0),
      compileMs: Math.round(compileMs),
      fullSyncMs: Math.round(fullSyncMs),
      floorMs: Math.round(floorMs),
      fullSyncOverFloor: Math.round((fullSyncMs / floorMs) * 100) / 100,
      labelChangeComputeMs: { p50: Math.round(percentile(computeLatencies, 50) * 10) / 10, p99: Math.round(percentile(computeLatencies, 99) * 10) / 10 },
      labelChangeMs: { p50: Math.round(percentile(latencies, 50)), p99: Math.round(percentile(latencies, 99)), max: Math.round(Math.max(...latencies)) },
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
