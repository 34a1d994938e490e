import { expect } from 'chai';
import { renderServices, type Percentiles, type ServicesResult } from '../../../bench/services.js';
import { updateReport } from '../../../bench/report.js';
import { percentile } from '../../../bench/lib/stats.js';

const p = (p50: number, p99: number, max = p99, n = 30): Percentiles => ({ p50, p99, max, n });

function result(over: Partial<ServicesResult> = {}): ServicesResult {
  return {
    lab: { routers: ['spine1', 'tor1'], nodes: ['r1n1', 'r1n2'], tor: 'tor1', node: 'r1n1', pool: ['203.0.113.0/25', '2001:db8:200::/120'] },
    cycles: 30,
    pollMs: 5,
    pollCostMs: p(0.1, 0.4, 2, 200),
    advertise: { v4: p(250, 400), v6: p(240, 390) },
    withdraw: { v4: p(200, 300), v6: p(210, 320) },
    advertiseAtNode: { v4: p(50, 100), v6: p(50, 90) },
    withdrawAtNode: { v4: p(40, 80), v6: p(45, 250) },
    nodePollCostMs: p(1, 3, 4, 50),
    podToReady: p(450, 600),
    allocation: { services: 100, fromApply: p(800, 1500, 1600, 100), fromCreate: p(300, 900, 1000, 100), totalMs: 1600, kubectlMs: 500, failedPasses: {} },
    ...over,
  };
}

describe('bench/services report section', () => {
  it('nearest-rank percentiles ignore missing values', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).to.equal(50);
    expect(percentile(values, 99)).to.equal(99);
    expect(percentile([NaN, 3, 1, 2], 50)).to.equal(2);
    expect(percentile([], 50)).to.be.NaN;
  });

  it('shows both families side by side and the allocation, and meets the 1 s targets on the worse family', () => {
    const { lines, targets } = renderServices(result());
    const md = lines.join('\n');
    expect(md).to.include('| endpoint ready → advertised | IPv4 | 50 ms / 100 ms / 100 ms | 250 ms / 400 ms / 400 ms | 30 |');
    expect(md).to.include('| last endpoint gone → withdrawn | IPv6 | 45 ms / 250 ms / 250 ms | 210 ms / 320 ms / 320 ms | 30 |');
    expect(md).to.include("| **all 100 addressed, from the apply's start** | 1.60 s |");
    expect(md).to.include("tor1's kernel FIB");
    expect(md).to.include('Allocator passes that failed and backed off meanwhile (the agents\' logs): none.');
    const failed = result();
    failed.allocation.failedPasses = { ALLOCATOR_CONFLICT: 2 };
    expect(renderServices(failed).lines.join('\n')).to.include('(the agents\' logs): 2 × `ALLOCATOR_CONFLICT`.');
    expect(targets.map((t) => [t.measured, t.met])).to.deep.equal([
      ['p99 400 ms (IPv4)', true],
      ['p99 320 ms (IPv6)', true],
    ]);
  });

  it('misses a target when one family is over 1 s at p99, and has no verdict without figures', () => {
    const slow = renderServices(result({ withdraw: { v4: p(200, 300), v6: p(900, 1200) } })).targets;
    expect(slow.map((t) => [t.measured, t.met])).to.deep.equal([
      ['p99 400 ms (IPv4)', true],
      ['p99 1.20 s (IPv6)', false],
    ]);
    // The node's part of the withdrawal (250 ms) is under half of 1.2 s: the tail is after the node.
    expect(slow[1]!.miss).to.include('of which 250 ms until the node').and.include('most of the tail is after the node');
    const agentSlow = renderServices(result({ withdraw: { v4: p(200, 300), v6: p(900, 1200) }, withdrawAtNode: { v4: p(40, 80), v6: p(800, 1100) } })).targets;
    expect(agentSlow[1]!.miss).to.include("most of the tail is the agent's");
    const none = renderServices(result({ advertise: { v4: p(NaN, NaN, NaN, 0), v6: p(NaN, NaN, NaN, 0) } })).targets;
    expect(none[0]!.met).to.equal(undefined);
  });

  it('--update adds section 7 and its target rows, keeps the rest, and is idempotent', () => {
    const machine = { date: '2026-01-02', gitCommit: 'abc', cpu: 'cpu', cores: 2, memoryGiB: 4, os: 'os', kernel: 'k', loadAtStart: [1, 1, 1], node: 'v20', versions: {} };
    const existing = ['# podroute benchmarks', '', "## Targets of issue 7 (and issue 4's NetworkPolicy targets)", '', '| target | this run | verdict |', '|---|---|---|', '| old target | 1 ms | met |', '', '## 6. NetworkPolicy: hostile policies', '', 'hostile text', ''].join('\n');
    const r = { machine, reps: 1, durationS: 90, loadAtEnd: [1, 1, 1], errors: {}, services: result() };
    const once = updateReport(existing, r, ['services']);
    expect(once).to.include('hostile text');
    expect(once).to.include('| old target | 1 ms | met |');
    expect(once).to.include("issue 16's Service routes");
    expect(once).to.include('## 7. Services: routes at the ToR and LoadBalancer allocation\n\nMeasured apart from the rest of this report (`node dist/bench/run.js --only services --update`)');
    expect(once).to.match(/\| Service route at the ToR within 1 s of the first local endpoint ready \(issue 16\), p99 of both families \| p99 400 ms \(IPv4\) \| met \|/);
    expect(once.indexOf('## 7.')).to.be.greaterThan(once.indexOf('hostile text'));
    expect(updateReport(once, r, ['services'])).to.equal(once);
  });
});
