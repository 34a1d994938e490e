import { expect } from 'chai';
import type { DatapathResult, PathKind } from '../../../bench/datapath.js';
import type { FootprintResult } from '../../../bench/footprint.js';
import { renderReport, updateReport } from '../../../bench/report.js';
import type { BenchResults } from '../../../bench/run.js';
import { summarize, type Summary } from '../../../bench/lib/stats.js';

const machine = { date: '2026-01-01', gitCommit: 'abc', cpu: 'cpu', cores: 2, memoryGiB: 4, os: 'os', kernel: 'k', loadAtStart: [1, 1, 1], node: 'v20', versions: {} };
const base = (): BenchResults => ({ machine, reps: 3, durationS: 60, loadAtEnd: [1, 1, 1], errors: {} });
const all = (v: number): Partial<Record<PathKind, Summary>> =>
  Object.fromEntries((['node', 'pod-routed', 'vxlan', 'pod-routed-no-brnf', 'node-to-pod', 'pod-to-node'] as PathKind[]).map((k) => [k, summarize([v])]));

function datapath(podGbps: number, podCost: number): DatapathResult {
  const tput = { ...all(10), 'pod-routed': summarize([podGbps - 1, podGbps, podGbps + 1]), vxlan: summarize([2]) };
  return {
    runs: 7,
    from: { node: 'a', pod: 'x/a' },
    to: { node: 'b', pod: 'x/b' },
    throughputGbps: tput,
    retransmits: all(0),
    rttMs: all(0.1),
    pairedRatio: { ...all(1), 'pod-routed': summarize([podGbps / 10 - 0.3, podGbps / 10, podGbps / 10 + 0.3]) },
    cpuSecondsPerGB: all(0.5),
    pairedCostRatio: { ...all(1), 'pod-routed': summarize([podCost - 0.1, podCost, podCost + 0.1]), 'node-to-pod': summarize([1.1]), 'pod-to-node': summarize([1.12]) },
    mtu: { node: 1500, 'pod-routed': 1500, vxlan: 1450 },
    failures: [],
  };
}

describe('bench report', () => {
  it('renders the data path with rounds, split paths, per-round and CPU columns, and the run\'s CPU ratio in the miss text', () => {
    const md = renderReport({ ...base(), datapath: datapath(6, 1.25) });
    expect(md).to.include('in 7 rounds, every path once per round with the order rotated');
    expect(md).to.include('split: node → pod');
    expect(md).to.include('CPU per GB vs node-to-node, per round');
    expect(md).to.include('pod-to-pod costs 1.25x of node-to-node per byte');
    expect(md).to.include('about 0.80x (1/1.25) is the ceiling');
    expect(md).to.include('split about evenly between the sending and receiving ends');
  });

  it('shows no miss text for a data path target that is met', () => {
    const md = renderReport({ ...base(), datapath: datapath(10, 1.0) });
    expect(md).to.match(/routed pod-to-pod at least 0.95x of node-to-node \| 1.00x.* \| met \|/);
    expect(md).not.to.include('is the ceiling');
  });

  it('renders results saved before the new fields without crashing', () => {
    const old = datapath(6, 1.2) as Partial<DatapathResult>;
    delete old.runs;
    delete old.pairedRatio;
    delete old.cpuSecondsPerGB;
    delete old.pairedCostRatio;
    const fp = {
      nodes: 1000, pods: 30000, policies: 1000, localPods: 30, seedMs: 1, startupMs: 1, settleMs: 1, settled: true,
      idle: { cpuPercent: 0.5, rssMiB: 100, gobgpdRssMiB: 20 }, churn: { cpuPercent: 5, rssMiBMax: 110, changes: 10 }, agentLog: '',
    } as unknown as FootprintResult;
    const conv = { node: 'n', podCIDRs: [], watchers: [], join: {}, gobgpdRestart: {}, linkDown: {}, perWatcher: {}, failures: [] };
    const md = renderReport({ ...base(), datapath: old as DatapathResult, footprint: fp, convergence: conv as unknown as BenchResults['convergence'] });
    expect(md).to.include('3 runs each');
    expect(md).to.include('earlier version of the convergence benchmark');
    expect(md).not.to.include('idle measuring window');
    expect(md).to.match(/agent under 150 MB RSS.*\| met \|/);
  });

  it('names the agent\'s V8 flags and the idle window, and the idle-CPU miss names the periodic work', () => {
    const fp = {
      nodes: 1000, pods: 30000, policies: 1000, localPods: 30, seedMs: 1, startupMs: 1, settleMs: 1, settled: true,
      idle: { cpuPercent: 5, rssMiB: 100, gobgpdRssMiB: 20 }, churn: { cpuPercent: 5, rssMiBMax: 110, changes: 10 }, agentLog: '',
      nodeOptions: ['--max-old-space-size=384'], idleWindow: { fromUs: 0, toUs: 65_000_000 },
    } as FootprintResult;
    const md = renderReport({ ...base(), footprint: fp });
    expect(md).to.include('`--max-old-space-size=384`');
    expect(md).to.include('| idle measuring window | 65.0 s |');
    expect(md).to.include('plans in full once to prove the fingerprint');
    expect(md).to.match(/agent idle CPU under 0\.5 % of a core \(issue 19\) \| 5\.0 % \| \*\*missed\*\* \|/);
    expect(md).not.to.include('no longer loads @kubernetes/client-node'); // RSS target met: no miss text
  });

  it('updates the footprint and convergence sections alone, with their targets', () => {
    const fp = {
      nodes: 1000, pods: 30000, policies: 1000, localPods: 30, seedMs: 1, startupMs: 1, settleMs: 1, settled: true,
      idle: { cpuPercent: 0.4, rssMiB: 100, gobgpdRssMiB: 20 }, churn: { cpuPercent: 5, rssMiBMax: 110, changes: 10 }, agentLog: '',
      nodeOptions: [], idleWindow: { fromUs: 0, toUs: 65_000_000 },
    } as FootprintResult;
    const existing = renderReport({ ...base(), footprint: { ...fp, idle: { ...fp.idle, cpuPercent: 3 } } });
    const updated = updateReport(existing, { ...base(), footprint: fp }, ['footprint']);
    expect(updated).to.include('| agent CPU, idle | 0.4 % |');
    expect(updated).to.match(/\| agent idle CPU under 0\.5 % of a core \(issue 19\) \| 0\.4 % \| met \|/);
    expect(updated.match(/agent idle CPU under 0\.5 % of a core \(issue 19\) \|/g), 'the row replaced, not added').to.have.length(1);
  });
});
