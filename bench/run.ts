// `make bench`: every benchmark of issue 7, several repetitions each, side by side in one run, and
// docs/benchmarks.md written from the figures of this run.
//   node dist/bench/run.js [--reps 3] [--sizes 1000,10000,50000] [--only route,datapath,convergence,footprint,policy,policy-datapath,hostile-policy,services,scale,bfd-soak]
//                          [--out docs/benchmarks.md] [--json FILE] [--prefix hb] [--quick] [--render FILE.json]
//                          [--update docs/benchmarks.md] [--services-lab NAME] [--bfd-soak-seconds 600]
// --update FILE replaces only the sections of the benchmarks run (with --only; those that have one of their own,
// e.g. hostile-policy) in an existing report, with their rows of the targets table, and leaves the rest as it was.
// --quick runs every benchmark at a tiny size (what the smoke test does) and writes nowhere unless --out is given;
// it leaves out bfd-soak unless --only names it: a soak of a few seconds says nothing about flaps. Scale runs at
// one rack of four nodes: it says nothing about scale, but it runs both iBGP shapes, the route cost and the
// reflector kill end to end (about 80 s).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { findProjectRoot } from '../src/bgp/gobgp-proto.js';
import { runConvergence, type ConvergenceResult } from './convergence.js';
import { runDatapath, type DatapathResult } from './datapath.js';
import { runFootprint, type FootprintResult } from './footprint.js';
import { runHostilePolicy, type HostilePolicyResult } from './hostile-policy.js';
import { runPolicyDatapath, type PolicyDatapathResult } from './policy-datapath.js';
import { topSelfTime, type ProfileEntry } from './lib/cpu-profile.js';
import { withLab } from './lib/lab-env.js';
import { machineInfo, type MachineInfo } from './lib/machine.js';
import { BenchError } from './lib/proc.js';
import { DUAL_HOMED, runBfdSoak, type BfdSoakOptions, type BfdSoakResult } from './bfd-soak.js';
import { renderReport, ROUTE_FLOOR_FACTOR, updateReport } from './report.js';
import { runRouteProgramming, type RouteBenchResult } from './route-programming.js';
import { runServices, type ServicesResult } from './services.js';
import { runScale, THREE_RACKS, type ScaleOptions, type ScaleResult } from './scale.js';
import { LAB_NAME_PATTERN } from '../src/lab/paths.js';

export const BENCHMARKS = ['route', 'datapath', 'convergence', 'footprint', 'policy', 'policy-datapath', 'hostile-policy', 'services', 'scale', 'bfd-soak'] as const;
/** What --quick leaves out unless --only names it (see above). */
const NOT_QUICK: readonly BenchmarkName[] = ['bfd-soak'];
export type BenchmarkName = (typeof BENCHMARKS)[number];

export interface BenchRunOptions {
  reps: number;
  sizes: number[];
  only: BenchmarkName[];
  /** Namespace/lab name prefix: `hb` for `make bench`, another one for the smoke test. */
  prefix: string;
  workDir: string;
  iperfSeconds: number;
  footprint: { nodes: number; pods: number; policies: number; windowSeconds: number; churnPerSecond: number };
  policyArgs: string[];
  /** Policies in the "with" state of the policy data-path benchmark, and its alternations. */
  policyDatapathPolicies: number;
  policyDatapathReps: number;
  /** Issue 14's hostile NetworkPolicies (`smoke`: tiny policies) on one node of a small synthetic cluster. */
  hostilePolicy: { size: 'issue' | 'smoke'; nodes: number; podsPerNode: number; backgroundPolicies: number };
  /** Issue 16's Service routes and LoadBalancer allocation: its lab's name (default PREFIX + svc), cycles and Services. */
  services: { lab: string; cycles: number; services: number; pollMs: number };
  /** Issue 17's scale lab: full mesh vs route reflectors (the lab is PREFIX + scale; quick: a shrunk topology). */
  scale: Omit<ScaleOptions, 'workDir' | 'log'>;
  /** Issue 17's BFD soak: dual-homed.yaml under full CPU load, state changes counted (the lab is PREFIX + bfd). */
  bfdSoak: Omit<BfdSoakOptions, 'workDir' | 'log'>;
  /** Profile the agent in an extra podroute-only pass at this N when it misses a route-programming target. */
  profileSize?: number;
  log: (m: string) => void;
}

export interface PolicyRun {
  compileMs: number;
  fullSyncMs: number;
  floorMs: number;
  fullSyncOverFloor: number;
  labelChangeMs: { p50: number; p99: number; max: number };
  /** The same label changes compiled from scratch, alternating with the incremental ones (absent in older runs). */
  labelChangeScratchMs?: { p50: number; p99: number; max: number };
  labelChangeComputeMs?: { p50: number; p99: number };
  labelChangeScratchComputeMs?: { p50: number; p99: number };
  labelChanges?: number;
  /** The pause before each label change (absent: back to back). */
  labelChangeGapMs?: number;
  labelChangesThatWrote?: number;
  coldCompileMs?: number;
  /**
   * The full sync after its compile: plan and apply, the rules rendered (fullSyncRenderMs of it) while the sets
   * load (absent in older runs).
   */
  fullSyncRenderMs?: number;
  fullSyncApplyMs?: number;
  rounds?: number;
  /** One iptables-restore with nothing to change, at this table size (the per-family floor of any change). */
  emptyRestoreMs?: number;
  /** The smallest change that writes both families (empty chain created and deleted, both at once, raw processes). */
  smallCommitBothFamiliesMs?: number;
  /** Incremental label changes that wrote to the kernel. */
  labelChangeWritingMs?: { p50: number; p99: number; n: number };
  pods: number;
  policies: number;
  chains: number;
  rules: number;
  sets: number;
  setMembers: number;
}

export interface BenchResults {
  machine: MachineInfo;
  reps: number;
  durationS: number;
  loadAtEnd: number[];
  route?: RouteBenchResult;
  routeProfile?: { n: number; busyMs: number; top: ProfileEntry[] };
  datapath?: DatapathResult;
  convergence?: ConvergenceResult;
  footprint?: FootprintResult;
  policy?: PolicyRun[];
  policyDatapath?: PolicyDatapathResult;
  hostilePolicy?: HostilePolicyResult;
  services?: ServicesResult;
  scale?: ScaleResult;
  bfdSoak?: BfdSoakResult;
  errors: Partial<Record<BenchmarkName | 'profile', string>>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether podroute missed a route-programming target at some size (then the profile pass says why). */
function podrouteMissed(route: RouteBenchResult): number | undefined {
  for (const s of route.sizes) {
    const ours = s.program.podroute?.median;
    const floor = s.program.watcher?.median;
    const frr = s.program.frr?.median;
    if (ours === undefined || !Number.isFinite(ours)) return s.n;
    if ((floor !== undefined && ours > floor * ROUTE_FLOOR_FACTOR) || (frr !== undefined && ours > frr)) return s.n;
  }
  return undefined;
}

export async function runBenchmarks(o: BenchRunOptions): Promise<BenchResults> {
  const started = Date.now();
  const results: BenchResults = { machine: await machineInfo(), reps: o.reps, durationS: 0, loadAtEnd: [], errors: {} };
  await mkdir(o.workDir, { recursive: true });
  const want = (b: BenchmarkName): boolean => o.only.includes(b);

  if (want('route')) {
    o.log('== 1. route programming');
    try {
      results.route = await runRouteProgramming({ prefix: o.prefix, sizes: o.sizes, reps: o.reps, workDir: path.join(o.workDir, 'route'), decodeRoutes: Math.max(...o.sizes, 1000), log: o.log });
    } catch (err) {
      results.errors.route = describe(err);
    }
    const missedAt = results.route === undefined ? undefined : podrouteMissed(results.route);
    if (missedAt !== undefined && o.profileSize !== undefined) {
      const n = Math.min(missedAt, o.profileSize);
      o.log(`== 1b. profiling the agent at N=${n}`);
      const profDir = path.join(o.workDir, 'profile');
      try {
        await rm(profDir, { recursive: true, force: true });
        const pass = await runRouteProgramming({ prefix: o.prefix, sizes: [n], reps: 1, workDir: path.join(o.workDir, 'route-profile'), receivers: ['podroute'], agentNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`], log: o.log });
        // Only the install + withdraw cycle: the agent's start (its iptables and sysctl set-up) is not what is timed.
        const top = topSelfTime(profDir, 12, pass.sizes[0]?.podrouteCycleUs);
        if (top !== undefined) results.routeProfile = { n, ...top };
      } catch (err) {
        results.errors.profile = describe(err);
      }
    }
  }

  if (want('datapath') || want('convergence') || want('policy-datapath')) {
    const lab = `${o.prefix}lab`;
    try {
      await withLab(lab, o.log, async (status) => {
        if (want('datapath')) {
          o.log('== 3. data path');
          try {
            results.datapath = await runDatapath(status, { lab, prefix: o.prefix, reps: o.reps, seconds: o.iperfSeconds, pings: 50, log: o.log });
          } catch (err) {
            results.errors.datapath = describe(err);
          }
        }
        if (want('convergence')) {
          o.log('== 2. convergence');
          try {
            results.convergence = await runConvergence(status, { lab, reps: o.reps, workDir: path.join(o.workDir, 'convergence'), log: o.log });
          } catch (err) {
            results.errors.convergence = describe(err);
          }
        }
        // Last: it writes NetworkPolicies into the lab (and removes them again).
        if (want('policy-datapath')) {
          o.log('== 4b. NetworkPolicy packet path (0 vs many policies)');
          try {
            results.policyDatapath = await runPolicyDatapath(status, { lab, policies: o.policyDatapathPolicies, reps: o.policyDatapathReps, seconds: o.iperfSeconds, log: o.log });
          } catch (err) {
            results.errors['policy-datapath'] = describe(err);
          }
        }
      });
    } catch (err) {
      if (want('datapath')) results.errors.datapath ??= `lab: ${describe(err)}`;
      if (want('convergence')) results.errors.convergence ??= `lab: ${describe(err)}`;
      if (want('policy-datapath')) results.errors['policy-datapath'] ??= `lab: ${describe(err)}`;
    }
  }

  if (want('footprint')) {
    o.log('== 5. footprint');
    try {
      results.footprint = await runFootprint({ prefix: o.prefix, workDir: path.join(o.workDir, 'footprint'), ...o.footprint, log: o.log });
    } catch (err) {
      results.errors.footprint = describe(err);
    }
  }

  if (want('policy')) {
    o.log('== 4. NetworkPolicy (bench/policy)');
    const runs: PolicyRun[] = [];
    for (let rep = 0; rep < o.reps; rep++) {
      try {
        const r = await execa(process.execPath, [path.join(here, 'policy.js'), ...o.policyArgs], { timeout: 600_000 });
        runs.push(JSON.parse(r.stdout) as PolicyRun);
        o.log(`policy: repetition ${rep + 1}/${o.reps} done`);
      } catch (err) {
        // bench/policy prints its own one-line reason on stderr; keep that rather than execa's preamble.
        const reason = describe(err).split('\n').find((l) => l.startsWith('bench/policy:')) ?? describe(err);
        results.errors.policy = `repetition ${rep + 1} failed: ${reason.slice(0, 600)}`;
        break;
      }
    }
    if (runs.length > 0) results.policy = runs;
  }

  if (want('hostile-policy')) {
    o.log('== 6. NetworkPolicy: hostile policies');
    try {
      results.hostilePolicy = await runHostilePolicy({ prefix: o.prefix, workDir: path.join(o.workDir, 'hostile-policy'), reps: o.reps, ...o.hostilePolicy, log: o.log });
    } catch (err) {
      results.errors['hostile-policy'] = describe(err);
      o.log(`hostile-policy failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }

  if (want('services')) {
    o.log('== 7. Services: routes at the ToR and LoadBalancer allocation');
    try {
      results.services = await runServices({ ...o.services, workDir: path.join(o.workDir, 'services'), log: o.log });
    } catch (err) {
      results.errors.services = describe(err);
      o.log(`services failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }

  if (want('scale')) {
    o.log('== 8. Scale: full mesh and route reflectors');
    try {
      results.scale = await runScale({ ...o.scale, workDir: path.join(o.workDir, 'scale'), log: o.log });
      if (results.scale.failures.length > 0) results.errors.scale = results.scale.failures.join('; ');
    } catch (err) {
      results.errors.scale = describe(err);
      o.log(`scale failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }

  if (want('bfd-soak')) {
    o.log(`== 9. BFD under load: state changes over ${o.bfdSoak.durationS} s`);
    try {
      results.bfdSoak = await runBfdSoak({ ...o.bfdSoak, workDir: path.join(o.workDir, 'bfd-soak'), log: o.log });
    } catch (err) {
      results.errors['bfd-soak'] = describe(err);
      o.log(`bfd-soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }

  results.durationS = (Date.now() - started) / 1000;
  results.loadAtEnd = os.loadavg();
  return results;
}

// ---- command line ---------------------------------------------------------------------------------------

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

export function parseArgs(argv: string[]): { options: Omit<BenchRunOptions, 'log'>; out: string | undefined; json: string | undefined } {
  const quick = argv.includes('--quick');
  const root = findProjectRoot();
  const reps = Number(flag(argv, 'reps') ?? (quick ? 1 : 3));
  const sizes = (flag(argv, 'sizes') ?? (quick ? '200' : '1000,10000,50000')).split(',').map(Number);
  const only = (flag(argv, 'only') ?? BENCHMARKS.filter((b) => !quick || !NOT_QUICK.includes(b)).join(',')).split(',') as BenchmarkName[];
  const soakSeconds = Number(flag(argv, 'bfd-soak-seconds') ?? (quick ? 5 : 600));
  const bad = only.filter((b) => !(BENCHMARKS as readonly string[]).includes(b));
  if (!Number.isInteger(reps) || reps < 1) throw new BenchError('BENCH_BAD_OPTIONS', `--reps: expected a positive integer, got ${flag(argv, 'reps')}`);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 60_000)) throw new BenchError('BENCH_BAD_OPTIONS', `--sizes: expected numbers from 1 to 60000, got ${flag(argv, 'sizes')}`);
  if (!Number.isFinite(soakSeconds) || soakSeconds < 1) throw new BenchError('BENCH_BAD_OPTIONS', `--bfd-soak-seconds: expected a positive number, got ${flag(argv, 'bfd-soak-seconds')}`);
  if (bad.length > 0) throw new BenchError('BENCH_BAD_OPTIONS', `--only: unknown ${bad.join(', ')} (have ${BENCHMARKS.join(', ')})`);
  const prefix = flag(argv, 'prefix') ?? 'hb';
  if (!/^h[a-z0-9]{1,4}$/.test(prefix)) throw new BenchError('BENCH_BAD_OPTIONS', `--prefix: 2-5 lowercase characters starting with h, got ${prefix}`);
  const servicesLab = flag(argv, 'services-lab') ?? `${prefix}svc`;
  if (!LAB_NAME_PATTERN.test(servicesLab)) throw new BenchError('BENCH_BAD_OPTIONS', `--services-lab: a lab name (${LAB_NAME_PATTERN.source}), got ${servicesLab}`);
  return {
    options: {
      reps,
      sizes,
      only,
      prefix,
      workDir: flag(argv, 'work-dir') ?? path.join(os.tmpdir(), `podroute-bench-${prefix}`),
      iperfSeconds: quick ? 1 : 3,
      footprint: quick ? { nodes: 20, pods: 200, policies: 20, windowSeconds: 2, churnPerSecond: 10 } : { nodes: 1000, pods: 30_000, policies: 1000, windowSeconds: 20, churnPerSecond: 20 },
      // The prefix names bench/policy's namespaces: runs with different prefixes never share a kernel ruleset.
      policyDatapathPolicies: quick ? 20 : 500,
      policyDatapathReps: quick ? 1 : Math.max(5, reps),
      hostilePolicy: quick ? { size: 'smoke', nodes: 3, podsPerNode: 6, backgroundPolicies: 3 } : { size: 'issue', nodes: 50, podsPerNode: 20, backgroundPolicies: 50 },
      services: { lab: servicesLab, cycles: quick ? 3 : 30, services: quick ? 10 : 100, pollMs: 5 },
      // Quick: one rack of four nodes, the smallest where the shapes differ: two reflectors and two clients (a
      // client has 2 iBGP sessions, a mesh node 3), and a route between the clients' pods that only reflection
      // carries. Its floor is a lab up and two restarts of every node's gobgpd and agent (their BGP connect
      // back-off included): tens of seconds, not a few.
      scale: {
        lab: `${prefix}scale`,
        topologyFile: THREE_RACKS,
        ...(quick ? { shrink: { racks: 1, nodesPerRack: 4 } } : {}),
        settleMs: quick ? 1000 : 5000,
        idleMs: quick ? 2000 : 15_000,
        injectRoutes: quick ? 50 : 2000,
        faultDownMs: quick ? 2000 : 10_000,
        // Converging takes about 15 s at quick size and 35 s at full size on two cores: a shape that hangs fails
        // well before make test's budget runs out.
        convergeTimeoutMs: quick ? 120_000 : 300_000,
        probeRatePerSecond: quick ? 10 : 20,
      },
      // One busy loop per core for the whole window; a pod comes or goes every 5 s (1 s at quick size).
      bfdSoak: {
        lab: `${prefix}bfd`,
        topologyFile: DUAL_HOMED,
        durationS: soakSeconds,
        sampleS: quick ? 1 : 10,
        busyWorkers: os.cpus().length,
        churnIntervalMs: quick ? 1000 : 5000,
        settleMs: quick ? 1000 : 5000,
      },
      policyArgs: ['--prefix', prefix, ...(quick ? ['--pods', '50', '--namespaces', '5', '--policies', '20', '--changes', '3', '--rounds', '1'] : [])],
      ...(quick ? {} : { profileSize: 10_000 }),
    },
    out: flag(argv, 'out') ?? (quick ? undefined : path.join(root, 'docs', 'benchmarks.md')),
    json: flag(argv, 'json'),
  };
}

async function main(): Promise<void> {
  const { options, out, json } = parseArgs(process.argv.slice(2));
  const log = (m: string): void => void process.stderr.write(`${new Date().toISOString()} ${m}\n`);
  // --render FILE: the report of an earlier run's saved results (--json), without measuring again.
  const saved = flag(process.argv.slice(2), 'render');
  const results = saved === undefined ? await runBenchmarks({ ...options, log }) : (JSON.parse(await readFile(saved, 'utf8')) as BenchResults);
  if (json !== undefined) await writeFile(json, JSON.stringify(results, null, 2) + '\n');
  const update = flag(process.argv.slice(2), 'update');
  if (update !== undefined) {
    // A failed benchmark keeps the section it has: an error is no reason to drop the figures of an earlier run.
    const failed = options.only.filter((b) => results.errors[b] !== undefined);
    if (failed.length > 0) throw new BenchError('BENCH_SETUP_FAILED', `--update: not updating ${update}: ${failed.map((b) => `${b}: ${results.errors[b]}`).join('; ')}`);
    await writeFile(update, updateReport(await readFile(update, 'utf8'), results, options.only));
    log(`updated ${update} (${results.durationS.toFixed(0)} s)`);
    return;
  }
  const report = renderReport(results);
  if (out !== undefined) {
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, report);
    log(`wrote ${out} (${results.durationS.toFixed(0)} s)`);
  } else {
    process.stdout.write(report);
  }
  if (Object.keys(results.errors).length > 0) log(`benchmarks with errors: ${Object.keys(results.errors).join(', ')} (see the report)`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
