// Lab truth tables (issue 4): the two-racks lab comes up once with every node running `podroute agent`; for each
// upstream netpol e2e / cyclonus case the policies, labels and pods are changed through the lab API server, and the
// whole matrix (every pod and every node to every pod on ports 80/81 and to the external host on 80, TCP and UDP,
// IPv4 and IPv6) is probed until it
// agrees with the oracle on the API server's objects, or the step's deadline passes and the test fails with the
// difference. Same-node and cross-node (and cross-rack) pairs are in every matrix.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Pod } from '../../../src/kube/wire.js';
import { parseTopology } from '../../../src/lab/topology.js';
import type { IpFamily } from '../../../src/policy/types.js';
import { repoRoot } from '../lab/leftovers.js';
import { TRUTH_CASES, type TruthAction, type TruthContext } from './truth-cases.js';
import { TruthLab, type SettleReport } from './truth-lab.js';

const LAB = process.env.POLICY_TRUTH_LAB ?? 'h12tt';
/** How long one step may take until every node's agent enforces it (they react in well under a second). */
const STEP_DEADLINE_MS = 30_000;
const topologyFile = path.join(repoRoot(), 'topologies', 'two-racks.yaml');
const topology = parseTopology(readFileSync(topologyFile, 'utf8'));

function contextOf(pods: Pod[]): TruthContext {
  return {
    ip(id: string, family: IpFamily): string {
      const pod = pods.find((p) => `${p.metadata?.namespace}/${p.metadata?.name}` === id);
      const ip = (pod?.status?.podIPs ?? []).map((p) => p.ip).find((a) => (a?.includes(':') ? 6 : 4) === family);
      if (ip === undefined) throw new Error(`no IPv${family} address of pod ${id}`);
      return ip;
    },
  };
}

async function perform(truth: TruthLab, action: TruthAction, ctx: TruthContext): Promise<void> {
  if ('policy' in action) {
    await truth.applyPolicy(typeof action.policy === 'function' ? action.policy(ctx) : action.policy);
  } else if ('deletePolicy' in action) {
    const [ns, name] = action.deletePolicy.split('/') as [string, string];
    await truth.deletePolicy(ns, name);
  } else if ('labelPod' in action) {
    const [ns, name] = action.labelPod.split('/') as [string, string];
    await truth.labelPod(ns, name, action.labels);
  } else if ('labelNamespace' in action) {
    await truth.labelNamespace(action.labelNamespace, action.labels);
  } else {
    await truth.createPod(action.createPod);
  }
}

function verdicts(expected: ReturnType<TruthLab['expected']>): string {
  return [...expected.entries()].map(([k, v]) => `${k}=${v.allowed ? 1 : 0}`).sort().join(',');
}

function describeSettle(r: SettleReport): string {
  const suspects = r.conntrackSuspects > 0 ? `, ${r.conntrackSuspects} UDP pass(es) not repeated on re-probe` : '';
  const slow = r.slow > 0 ? `, ${r.slow} slow allowed probe(s)` : '';
  return `${r.rounds} round(s), ${(r.elapsedMs / 1000).toFixed(1)} s, ${r.allowedCells}/${r.cells} cells allowed${suspects}${slow}`;
}

describe('policy lab truth tables: two-racks, pods and nodes x pods, 80/81, TCP/UDP, IPv4/IPv6 vs the oracle', function () {
  this.timeout(180_000);
  const truth = new TruthLab({ lab: LAB, topologyFile, topology, probeTimeoutMs: 400, concurrency: 160 });
  const started = Date.now();

  before(async function () {
    this.timeout(300_000);
    await truth.start();
    await truth.learnNodeSources();
  });

  after(async function () {
    this.timeout(120_000);
    await truth.stop();
    console.log(`    (truth tables: ${((Date.now() - started) / 1000).toFixed(0)} s including lab up and down)`);
  });

  it('without policies every pod and every node reaches every pod on every port, with its own source address', async () => {
    const cluster = await truth.cluster();
    expect(cluster.policies).to.have.length(0);
    const report = await truth.settle('no policies', STEP_DEADLINE_MS);
    expect(report.allowedCells).to.equal(report.cells);
    // 9 pods and 4 nodes, to 9 pods x 2 families x 2 protocols x 2 ports and to ext1 x 2 families x 80/TCP+UDP.
    expect(report.cells).to.equal(13 * (9 * 8 + 4));
    console.log(`      no policies: ${describeSettle(report)}`);
  });

  for (const c of TRUTH_CASES) {
    it(c.name, async () => {
      await truth.reset();
      let previous = verdicts(truth.expected(await truth.cluster()));
      const ctx = contextOf((await truth.cluster()).pods);
      for (const step of c.steps) {
        for (const action of step.actions) await perform(truth, action, ctx);
        const now = verdicts(truth.expected(await truth.cluster()));
        // A step that does not change what the oracle expects could pass without the agents doing anything.
        expect(now, `step "${step.name}" must change the expected matrix`).to.not.equal(previous);
        previous = now;
        const report = await truth.settle(`${c.name} / ${step.name}`, STEP_DEADLINE_MS);
        console.log(`      ${step.name}: ${describeSettle(report)}`);
      }
    });
  }

  it('after the last case is undone everything is allowed again', async () => {
    await truth.reset();
    const report = await truth.settle('reset', STEP_DEADLINE_MS);
    expect(report.allowedCells).to.equal(report.cells);
  });
});
