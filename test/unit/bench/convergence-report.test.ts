// The join totals per topology mode (issue 19 part 4): which figure is each mode's total, what limits it, and the
// ≤ 2 s verdict on the recommended topology.
import { expect } from 'chai';
import { joinTotalsByMode, renderConvergence, type JoinFigures } from '../../../bench/convergence.js';
import { summarize } from '../../../bench/lib/stats.js';

const figures = (over: Partial<Record<keyof JoinFigures, number[]>>): JoinFigures => {
  const s = (k: keyof JoinFigures): ReturnType<typeof summarize> => summarize(over[k] ?? []);
  return {
    total: s('total'),
    agentStartup: s('agentStartup'),
    torTotal: s('torTotal'),
    bgpConnect: s('bgpConnect'),
    propagation: s('propagation'),
    torConnect: s('torConnect'),
    torPropagation: s('torPropagation'),
    meshConnect: s('meshConnect'),
    meshPropagation: s('meshPropagation'),
    ...(over.meshTotal === undefined ? {} : { meshTotal: s('meshTotal') }),
  };
};

const dials = figures({ total: [6500, 7400], torTotal: [1900, 2100, 1800], agentStartup: [1400], torConnect: [400], torPropagation: [150], meshConnect: [6000], meshTotal: [6500, 7400] });
const listens = figures({ total: [10_500], torTotal: [10_500], agentStartup: [1400], torConnect: [9000], torPropagation: [150], meshConnect: [3500], meshTotal: [5000] });

const rest = {
  node: 'r2n2',
  podCIDRs: [],
  watchers: [],
  gobgpdRestart: { readvertised: summarize([]), agentReconfigured: summarize([]), bgpConnect: summarize([]), fibOutageMs: summarize([]) },
  linkDown: { allWithdrawn: summarize([]), firstWithdrawn: summarize([]), nodesWithdrawn: summarize([]), routersWithdrawn: summarize([]), restored: summarize([]) },
  perWatcher: {},
  mechanisms: { join: '', joinPassive: '', linkDown: '', dualHomedLinkDown: '' },
  failures: [],
};

describe('convergence report: a new node end to end', () => {
  it('gives each topology mode its own total: ToR dialing, ToR listening, the gobgpd mesh, the lab as a whole', () => {
    const rows = joinTotalsByMode({ join: { ...dials, leave: summarize([]) }, joinPassive: listens });
    expect(rows.map((r) => r.total.median)).to.deep.equal([1900, 10_500, 6500, 6500]);
    expect(rows[0]?.limit).to.include('agent start-up 1.40 s').and.include('BGP connect 400 ms').and.include('propagation 150 ms');
    expect(rows[1]?.limit).to.include('BGP connect 9.00 s').and.include('5-9 s');
    expect(rows[2]?.mode).to.include('gobgpd');
    expect(rows[2]?.limit).to.include('BGP connect 6.00 s');
  });

  it('leaves the mesh row out for results without it (an older run) and says n/a for a mode not measured', () => {
    const old = figures({ total: [7400], torTotal: [2100] });
    const rows = joinTotalsByMode({ join: { ...old, leave: summarize([]) }, joinPassive: figures({}) });
    expect(rows.map((r) => r.mode.startsWith('iBGP'))).to.deep.equal([false, false, false]);
    const rendered = renderConvergence({ ...rest, join: { ...old, leave: summarize([]) }, joinPassive: figures({}) });
    expect(rendered.lines.join('\n')).to.match(/ToR that only listens[^|]*\| n\/a \|/);
  });

  it('meets the ≤ 2 s target on the median of the ToR-dialing total, and says over target per row', () => {
    const met = renderConvergence({ ...rest, join: { ...dials, leave: summarize([]) }, joinPassive: listens });
    const target = met.targets.find((t) => t.what.includes('new node routed everywhere'));
    expect(target?.met).to.equal(true);
    expect(met.lines.join('\n')).to.include('10.5 s (over target)');
    const slow = renderConvergence({ ...rest, join: { ...dials, torTotal: summarize([2500, 2600, 2400]), leave: summarize([]) }, joinPassive: listens });
    expect(slow.targets.find((t) => t.what.includes('new node routed everywhere'))?.met).to.equal(false);
  });
});
