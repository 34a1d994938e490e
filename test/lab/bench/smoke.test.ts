// The benchmarks at a tiny size (what `node dist/bench/run.js --quick` runs): the same code paths as `make bench`,
// asserting that every benchmark produced sane numbers and left nothing behind. Not a timing test.
import { execa } from 'execa';
import { expect } from 'chai';
import { listLabs } from '../../../src/lab/down.js';
import { renderReport } from '../../../bench/report.js';
import { parseArgs, runBenchmarks, type BenchResults } from '../../../bench/run.js';
import type { Summary } from '../../../bench/lib/stats.js';
import type { ModeResult } from '../../../bench/scale.js';
import { JOINS_PER_REP } from '../../../bench/convergence.js';

// PODROUTE_TEST_LAB_PREFIX (engineers running lab tests side by side) replaces the hbs of the names.
const PREFIX = process.env.PODROUTE_TEST_LAB_PREFIX || 'hbs';

/** A figure of the one repetition --quick runs: `samples` values (the joins to a dialing ToR are taken more than once). */
function sane(s: Summary | undefined, what: string, samples = 1): void {
  expect(s, what).to.not.equal(undefined);
  expect(s!.n, `${what}: repetitions with a value`).to.equal(samples);
  expect(s!.median, what).to.be.a('number').and.satisfy((v: number) => Number.isFinite(v) && v >= 0, `${what} is a finite non-negative number`);
}

describe('benchmarks at smoke size (bench/run.ts --quick)', function () {
  this.timeout(900_000);
  let results: BenchResults;
  const logs: string[] = [];

  before(async () => {
    const { options } = parseArgs(['--quick', '--prefix', PREFIX]);
    results = await runBenchmarks({ ...options, log: (m) => logs.push(m) });
  });

  it('runs every benchmark without errors', () => {
    expect(results.errors, logs.join('\n')).to.deep.equal({});
  });

  it('route programming: every receiver installed and withdrew the 200 routes', () => {
    const size = results.route!.sizes[0]!;
    expect(size.n).to.equal(200);
    expect(size.failures).to.deep.equal([]);
    for (const kind of ['podroute', 'watcher', 'gobgpd', 'frr', 'bird'] as const) {
      sane(size.program[kind], `${kind} program`);
      sane(size.withdraw[kind], `${kind} withdraw`);
      sane(size.establish[kind], `${kind} establish`);
    }
    for (const s of [size.ipBatchAdd, size.ipBatchDel, size.reconcilerAdd, size.reconcilerDel]) sane(s, 'kernel step');
    expect(size.agentRssMiB).to.be.greaterThan(10);
    expect(results.route!.decode!.handWrittenUs.median).to.be.greaterThan(0);
  });

  it('data path: all three paths carried traffic', () => {
    const d = results.datapath!;
    expect(d.failures).to.deep.equal([]);
    for (const kind of ['pod-routed', 'node', 'vxlan'] as const) {
      sane(d.throughputGbps[kind], `${kind} throughput`);
      expect(d.throughputGbps[kind]!.median, `${kind} throughput`).to.be.greaterThan(0);
      sane(d.rttMs[kind], `${kind} rtt`);
    }
  });

  it('convergence: join, gobgpd restart and link down/up each measured', () => {
    const c = results.convergence!;
    sane(c.join.total, 'join', JOINS_PER_REP);
    sane(c.join.leave, 'leave', JOINS_PER_REP);
    sane(c.gobgpdRestart.readvertised, 'gobgpd restart');
    sane(c.linkDown.routersWithdrawn, 'link down (routers)');
    sane(c.linkDown.restored, 'link up');
  });

  it('footprint and policy produced their figures', () => {
    const f = results.footprint!;
    expect(f.startupMs).to.be.greaterThan(0);
    expect(f.idle.rssMiB).to.be.greaterThan(10);
    expect(f.churn.changes).to.be.greaterThan(0);
    expect(results.policy).to.have.length(1);
    expect(results.policy![0]!.fullSyncMs).to.be.greaterThan(0);
  });

  it('hostile policies: every policy measured side by side with the baseline, the agent kept its PID, the over-cap one isolates', () => {
    const h = results.hostilePolicy!;
    expect(h.failures, logs.join('\n')).to.deep.equal([]);
    expect(h.agentAlive).to.equal(true);
    expect(h.outOfMemory).to.equal(false);
    expect(h.cases.map((c) => c.id)).to.deep.equal(['baseline', 'peers-ports', 'peers-ports-large', 'ipblock-excepts', 'over-cap']);
    for (const c of h.cases) {
      expect(c.failures, c.id).to.deep.equal([]);
      expect(c.runs, c.id).to.have.length(1);
      const run = c.runs[0]!;
      expect(run.pidSame, c.id).to.equal(true);
      expect(run.applyMs, c.id).to.be.greaterThan(0);
      expect(run.rssPeakMiB, c.id).to.be.greaterThan(10);
      expect(run.lagMaxMs, c.id).to.be.a('number').and.satisfy(Number.isFinite);
      expect(run.routes, c.id).to.be.greaterThan(0);
      expect(run.routeMaxMs, c.id).to.be.a('number').and.satisfy(Number.isFinite);
      expect(run.rules, c.id).to.be.greaterThan(0);
    }
    const capped = h.cases.find((c) => c.id === 'over-cap')!.runs[0]!;
    expect(capped.enforced).to.equal('isolate');
    expect(capped.invalidGauge).to.be.at.least(1);
    expect(capped.eventMs, 'PodrouteInvalidNetworkPolicy Event').to.be.a('number');
    expect(h.cases.find((c) => c.id === 'baseline')!.runs[0]!.enforced).to.equal('as-written');
  });

  it('services: every cycle advertised and withdrew both families at the ToR, every Service got its addresses', () => {
    const s = results.services!;
    expect(s.cycles).to.equal(3);
    for (const f of ['v4', 'v6'] as const) {
      for (const [what, p] of [['advertise', s.advertise[f]], ['withdraw', s.withdraw[f]]] as const) {
        expect(p.n, `${what} ${f}`).to.equal(3);
        expect(p.p50, `${what} ${f}`).to.be.a('number').and.satisfy((v: number) => Number.isFinite(v) && v >= 0);
        expect(p.max, `${what} ${f}`).to.be.at.least(p.p50);
      }
    }
    expect(s.allocation.fromApply.n).to.equal(10);
    expect(s.allocation.totalMs).to.be.at.least(s.allocation.fromCreate.max);
  });

  it('scale: both iBGP shapes converged with the sessions each shape makes, the reflector kill lost no probe', () => {
    const s = results.scale!;
    expect(s.failures, logs.join('\n')).to.deep.equal([]);
    expect({ racks: s.racks, nodes: s.nodes, nodesPerAs: s.nodesPerAs, families: s.families }).to.deep.equal({ racks: 1, nodes: 4, nodesPerAs: 4, families: 2 });
    expect(s.modes.map((m) => `${m.mode}:${m.agentMesh}`)).to.deep.equal(['mesh:same-asn', 'route-reflector:route-reflector']);
    const [mesh, rr] = s.modes as [ModeResult, ModeResult];
    const shape = (m: ModeResult): Record<string, string> => Object.fromEntries(m.nodes.map((n) => [n.node, `${n.role} iBGP ${n.ibgpSessions}`]));
    // Full mesh of the rack: every node peers with the 3 others. Reflectors peer with every node, clients with the 2 reflectors.
    expect(shape(mesh)).to.deep.equal({ r1n1: 'mesh iBGP 3', r1n2: 'mesh iBGP 3', r1n3: 'mesh iBGP 3', r1n4: 'mesh iBGP 3' });
    expect(shape(rr)).to.deep.equal({ r1n1: 'reflector iBGP 3', r1n2: 'reflector iBGP 3', r1n3: 'client iBGP 2', r1n4: 'client iBGP 2' });
    for (const m of s.modes) {
      expect(m.allRoutedMs, `${m.mode}: every route in every kernel`).to.be.a('number').and.satisfy(Number.isFinite);
      expect(m.allSessionsMs, `${m.mode}: every session Established`).to.be.a('number').and.satisfy(Number.isFinite);
      expect(m.routers.map((r) => r.name).sort()).to.deep.equal(['spine1', 'tor1']);
      for (const r of m.routers) expect(r.routedMs, `${m.mode}: ${r.name} had every podCIDR`).to.be.at.most(m.allRoutedMs);
      for (const n of m.nodes) {
        const what = `${m.mode} ${n.node}`;
        // Every configured session Established; the ToR sessions (one per family) on top of the iBGP ones.
        expect(n.sessions, `${what}: sessions`).to.equal(n.peers);
        expect(n.sessions - n.ibgpSessions, `${what}: ToR sessions`).to.equal(2);
        // The other three nodes' podCIDRs, both families, in the kernel (the announced /32s are gone again).
        expect(n.kernelRoutes, `${what}: kernel routes`).to.equal(6);
        expect(n.routedMs, `${what}: own FIB complete`).to.be.at.most(m.allRoutedMs);
        expect(n.rssMiB.agent, `${what}: agent RSS`).to.be.greaterThan(10);
        expect(n.rssMiB.gobgpd, `${what}: gobgpd RSS`).to.be.greaterThan(1);
      }
    }
    expect(s.routeCost?.routes).to.equal(50);
    expect(s.routeCost?.arrivedMs).to.be.a('number').and.satisfy(Number.isFinite);
    const f = s.fault!;
    expect(f.reflector).to.equal('r1n1');
    expect(f.recoveredMs, "the killed reflector's sessions Established again").to.be.a('number');
    // Every pair of the three pods off the reflector, the clients' pair (a route only reflection carries) included.
    expect(f.flows.map((x) => x.name.replace(/x\/\w@/g, ''))).to.have.members(['r1n3 → r1n4', 'r1n3 → r1n2', 'r1n4 → r1n3', 'r1n4 → r1n2', 'r1n2 → r1n3', 'r1n2 → r1n4']);
    for (const x of f.flows) {
      expect(x.sent, x.name).to.be.greaterThan(0);
      expect(x.lost, `${x.name}: probes lost`).to.equal(0);
    }
  });

  it('renders a report with every section and the targets', () => {
    const md = renderReport(results);
    for (const heading of ['## Machine', '## Targets of issue 7', '## 1. Route programming', '## 2. Convergence', '## 3. Data path', '## 4. NetworkPolicy', '## 5. Footprint', '## 6. NetworkPolicy: hostile policies', '## 7. Services: routes at the ToR and LoadBalancer allocation', '## 8. Scale: full mesh and route reflectors', '### Extrapolation to 1,000 and 5,000 nodes']) {
      expect(md).to.include(heading);
    }
    expect(md).to.not.include('Not measured');
  });

  it('leaves no namespace, lab or process behind', async () => {
    const netns = (await execa('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
    expect(netns.filter((n) => n.startsWith(`${PREFIX}-`) || n.startsWith(`${PREFIX}lab-`) || n.startsWith(`${PREFIX}svc-`) || n.startsWith(`${PREFIX}scale-`))).to.deep.equal([]);
    expect(listLabs().filter((l) => l.startsWith(PREFIX))).to.deep.equal([]);
    const procs = (await execa('ps', ['-eo', 'args'])).stdout.split('\n');
    expect(procs.filter((p) => p.includes(`podroute-bench-${PREFIX}/`))).to.deep.equal([]);
  });
});
