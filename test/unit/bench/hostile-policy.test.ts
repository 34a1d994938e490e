import { expect } from 'chai';
import YAML from 'yaml';
import { POLICY_LIMITS } from '../../../src/policy/compile.js';
import {
  daemonSetMemoryLimitMiB,
  HOSTILE_CASES,
  hostileManifest,
  kernelPolicyView,
  renderHostilePolicy,
  sampleValue,
  type HostileCaseRun,
  type HostilePolicyResult,
} from '../../../bench/hostile-policy.js';

const SAVE_WRITTEN = [
  '*filter',
  ':PRPOL-IB-05 - [0:0]',
  ':PRPOL-I-abc - [0:0]',
  ':PRPOL-R-def - [0:0]',
  '-A PRPOL-IB-05 -d 10.0.0.5/32 -j PRPOL-I-abc',
  '-A PRPOL-I-abc -j MARK --set-xmark 0x0/0x100000',
  '-A PRPOL-I-abc -j PRPOL-R-def',
  '-A PRPOL-I-abc -m mark ! --mark 0x100000/0x100000 -j DROP',
  '-A PRPOL-R-def -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x100000/0x100000',
  'COMMIT',
].join('\n');

const SAVE_ISOLATE = [
  '*filter',
  ':PRPOL-IB-05 - [0:0]',
  ':PRPOL-I-abc - [0:0]',
  '-A PRPOL-IB-05 -d fd00:10::5/128 -j PRPOL-I-abc',
  '-A PRPOL-I-abc -j MARK --set-xmark 0x0/0x100000',
  '-A PRPOL-I-abc -m mark ! --mark 0x100000/0x100000 -j DROP',
  'COMMIT',
].join('\n');

function run(over: Partial<HostileCaseRun> = {}): HostileCaseRun {
  return {
    applyMs: 100, enforced: 'as-written', invalidGauge: 0, rssPeakMiB: 90, treeRssPeakMiB: 100, lagMaxMs: 20, cpuMs: 50,
    rules: 100, chains: 20, sets: 5, setEntries: 30, pidSame: true, routes: 2, routeFirstMs: 20, routeMaxMs: 30, ...over,
  };
}

function result(over: Partial<HostilePolicyResult> = {}): HostilePolicyResult {
  return {
    size: 'issue',
    cluster: { nodes: 50, pods: 1000, localPods: 20, selectedPods: 10, backgroundPolicies: 50 },
    nodeOptions: ['--max-old-space-size=384'],
    memoryLimitMiB: 512,
    policyLimits: { rulesPerDirection: 2000, ipBlockEntries: 20000 },
    idleRssMiB: 80,
    idle: { lagMaxMs: [12], routeMs: [10] },
    agentAlive: true,
    outOfMemory: false,
    cases: HOSTILE_CASES.map((id) => ({
      id,
      label: id,
      wireBytes: 1000,
      runs: [id === 'over-cap' ? run({ enforced: 'isolate', invalidGauge: 1, eventMs: 300 }) : run()],
      failures: [],
    })),
    failures: [],
    agentLog: 'agent.log',
    ...over,
  };
}

describe('bench/hostile-policy', () => {
  it('finds a pod\'s chain through its dispatch rule and tells a rule chain from "allow nothing"', () => {
    expect(kernelPolicyView(SAVE_WRITTEN, '10.0.0.5')).to.deep.equal({ podChain: 'PRPOL-I-abc', allows: true, rules: 5, chains: 3 });
    expect(kernelPolicyView(SAVE_ISOLATE, 'fd00:10::5')).to.include({ podChain: 'PRPOL-I-abc', allows: false });
    expect(kernelPolicyView(SAVE_WRITTEN, '10.0.0.6').podChain).to.equal(undefined);
  });

  it('writes the wire format (`from`), with the issue\'s sizes, and an over-cap policy over the cap however rules are counted', () => {
    const a = YAML.parse(hostileManifest('peers-ports', 'a', 'issue').yaml);
    expect(a.spec.ingress[0].from).to.have.length(300);
    expect(a.spec.ingress[0].ports).to.have.length(300);
    expect(a.spec.ingress[0]).to.not.have.property('_from');
    expect(YAML.parse(hostileManifest('peers-ports-large', 'b', 'issue').yaml).spec.ingress[0].from).to.have.length(600);
    const c = YAML.parse(hostileManifest('ipblock-excepts', 'c', 'issue').yaml);
    expect(c.spec.ingress[0].from.map((p: { ipBlock: { cidr: string; except: string[] } }) => [p.ipBlock.cidr, new Set(p.ipBlock.except).size])).to.deep.equal([['0.0.0.0/0', 2000], ['::/0', 2000]]);
    const d = YAML.parse(hostileManifest('over-cap', 'd', 'smoke').yaml);
    const peers = d.spec.ingress[0].from.length as number;
    const ports = d.spec.ingress[0].ports.length as number;
    expect(peers * ports).to.be.greaterThan(POLICY_LIMITS.rulesPerDirection);
    expect(peers + ports).to.be.greaterThan(POLICY_LIMITS.rulesPerDirection);
  });

  it('reads the DaemonSet\'s memory limit and unlabelled samples', () => {
    expect(daemonSetMemoryLimitMiB()).to.be.a('number').and.greaterThan(0);
    expect(sampleValue('# HELP x\nnodejs_eventloop_lag_max_seconds 0.25\npodroute_policy_invalid 1\n', 'nodejs_eventloop_lag_max_seconds')).to.equal(0.25);
    expect(sampleValue('podroute_policy_invalid 1\n', 'nodejs_eventloop_lag_max_seconds')).to.equal(undefined);
  });

  it('renders a row per policy and meets the targets when every figure is within them', () => {
    const { lines, targets } = renderHostilePolicy(result());
    const md = lines.join('\n');
    for (const id of HOSTILE_CASES) expect(md).to.include(`| ${id} |`);
    expect(md).to.include('isolate, allow nothing (Event 1/1 after 300 ms; `podroute_policy_invalid` 1)');
    expect(targets.map((t) => t.met)).to.deep.equal([true, true, true, true]);
  });

  it('misses the targets on a crash, an over-cap policy enforced as written, a slow route or a long block', () => {
    const r = result({ agentAlive: false });
    r.cases[1]!.runs[0] = run({ pidSame: false, routeMaxMs: 1500, lagMaxMs: 400 });
    r.cases[4]!.runs[0] = run();
    const { targets } = renderHostilePolicy(r);
    expect(targets.map((t) => t.met)).to.deep.equal([false, false, false, false]);
    expect(targets[1]!.measured).to.include('1.50 s at peers-ports');
  });
});

describe('bench report --update', () => {
  const machine = { date: '2026-01-02', gitCommit: 'abc', cpu: 'cpu', cores: 2, memoryGiB: 4, os: 'os', kernel: 'k', loadAtStart: [1, 1, 1], node: 'v20', versions: {} };
  const existing = [
    '# podroute benchmarks',
    '',
    "## Targets of issue 7 (and issue 4's NetworkPolicy targets)",
    '',
    '| target | this run | verdict |',
    '|---|---|---|',
    '| old target | 1 ms | **missed** |',
    '',
    '### Missed: reason and next step',
    '',
    '- **old target** (1 ms). Old reason.',
    '',
    '## 5. Footprint',
    '',
    'footprint text',
    '',
  ].join('\n');

  it('adds the hostile-policy section, its target rows and miss texts, keeps the rest, and is idempotent', async () => {
    const { updateReport } = await import('../../../bench/report.js');
    const r = result();
    r.cases[1]!.runs[0] = run({ lagMaxMs: 400 });
    const once = updateReport(existing, { machine, reps: 1, durationS: 60, loadAtEnd: [1, 1, 1], errors: {}, hostilePolicy: r }, ['hostile-policy']);
    expect(once).to.include('| old target | 1 ms | **missed** |');
    expect(once).to.include('- **old target** (1 ms). Old reason.');
    expect(once).to.include('footprint text');
    expect(once).to.include("issue 14's hostile policies");
    expect(once).to.include('## 6. NetworkPolicy: hostile policies\n\nMeasured apart from the rest of this report');
    expect(once).to.match(/\| hostile NetworkPolicies: the agent's event loop never blocked 50 ms or more while applying one \| 400 ms at peers-ports .*\| \*\*missed\*\* \|/);
    expect(once.indexOf('- **hostile NetworkPolicies: the agent\'s event loop')).to.be.greaterThan(once.indexOf('- **old target**'));
    expect(once.indexOf('- **hostile NetworkPolicies: the agent\'s event loop')).to.be.lessThan(once.indexOf('## 5. Footprint'));
    const twice = updateReport(once, { machine, reps: 1, durationS: 60, loadAtEnd: [1, 1, 1], errors: {}, hostilePolicy: r }, ['hostile-policy']);
    expect(twice).to.equal(once);
  });
});
