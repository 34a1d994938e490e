// Lab truth tables: the two-racks lab comes up once with every node running `podroute agent`; for each upstream
// netpol e2e / cyclonus case (truth/*.yaml) the policies, labels and pods are changed with kubectl, and the
// whole matrix (every pod and every node to every pod on ports 80/81 and to the external host on 80, TCP and UDP,
// IPv4 and IPv6) is probed until it
// agrees with the oracle on the API server's objects, or the step's deadline passes and the test fails with the
// difference. Same-node and cross-node (and cross-rack) pairs are in every matrix.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Pod } from '../../../src/kube/wire.js';
import { parseTopology } from '../../../src/lab/topology.js';
import { familyOf, ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { repoRoot, testLabName } from '../lab/leftovers.js';
import { loadTruthCases, renderManifest, type TruthCommand, type TruthContext } from './truth-cases.js';
import { TruthLab, type SettleReport } from './truth-lab.js';

const LAB = process.env.POLICY_TRUTH_LAB ?? testLabName('h12tt', 'tt');
/** How long one step may take until every node's agent enforces it (they react in well under a second). */
const STEP_DEADLINE_MS = 30_000;
const topologyFile = path.join(repoRoot(), 'topologies', 'two-racks.yaml');
const topology = parseTopology(readFileSync(topologyFile, 'utf8'));

function contextOf(pods: readonly Pod[]): TruthContext {
  return {
    ip(id: string, family: IpFamily): string {
      const pod = pods.find((p) => `${p.metadata?.namespace}/${p.metadata?.name}` === id);
      const ip = (pod?.status?.podIPs ?? []).map((p) => p.ip).find((a) => a !== undefined && familyOf(a) === family);
      if (ip === undefined) throw new Error(`no IPv${ipVersion(family)} address of pod ${id}`);
      return ip;
    },
  };
}

async function perform(truth: TruthLab, command: TruthCommand, ctx: TruthContext): Promise<void> {
  if ('waitForPod' in command) await truth.waitForPod(command.waitForPod);
  else await truth.kubectl(command.kubectl, command.stdin === undefined ? undefined : renderManifest(command.stdin, ctx));
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
    await truth.reset();
    const cluster = await truth.cluster();
    expect(cluster.policies).to.have.length(0);
    const report = await truth.settle('no policies', STEP_DEADLINE_MS);
    expect(report.allowedCells).to.equal(report.cells);
    // 9 pods and 4 nodes, to 9 pods x 2 families x 2 protocols x 2 ports and to ext1 x 2 families x 80/TCP+UDP.
    expect(report.cells).to.equal(13 * (9 * 8 + 4));
    console.log(`      no policies: ${describeSettle(report)}`);
  });

  it('every pod is shown READY by kubectl, as a kubelet reports its containers', async () => {
    const out = await truth.kubectl(['get', 'pods', '-A', '--no-headers']);
    const ready = out.trim().split('\n').map((line) => line.trim().split(/\s+/).slice(0, 4));
    expect(ready).to.have.length(topology.kubernetes.pods.length);
    for (const [ns, name, readyColumn, status] of ready) expect(`${ns}/${name} ${readyColumn} ${status}`).to.equal(`${ns}/${name} 1/1 Running`);
  });

  it('kubectl refuses a NetworkPolicy with an unknown field (strict field validation), and nothing is stored', async () => {
    await truth.reset();
    const manifest = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: typo, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n  - _from: [{podSelector: {}}]\n';
    const err = await truth.kubectl(['apply', '-f', '-'], manifest).then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).to.match(/strict decoding error: unknown field "spec\.ingress\[0\]\._from"/);
    expect((await truth.cluster()).policies).to.have.length(0);
  });

  for (const c of loadTruthCases()) {
    it(`${c.name} (${c.file})`, async () => {
      await truth.reset();
      let previous = verdicts(truth.expected(await truth.cluster()));
      const ctx = contextOf((await truth.cluster()).pods);
      for (const step of c.steps) {
        for (const command of step.run) await perform(truth, command, ctx);
        const now = verdicts(truth.expected(await truth.cluster()));
        // A step that does not change what the oracle expects could pass without the agents doing anything.
        expect(now, `step "${step.name}" must change the expected matrix`).to.not.equal(previous);
        previous = now;
        const report = await truth.settle(`${c.name} / ${step.name}`, STEP_DEADLINE_MS);
        console.log(`      ${step.name}: ${describeSettle(report)}`);
      }
    });
  }

  it('once a case is undone everything is allowed again', async () => {
    // A policy of its own to undo, enforced first: the test does not rely on a case having run before it.
    await truth.reset();
    await truth.kubectl(['apply', '-f', '-'], 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n');
    const denied = await truth.settle('deny-all in x', STEP_DEADLINE_MS);
    expect(denied.allowedCells).to.be.lessThan(denied.cells);
    await truth.reset();
    const report = await truth.settle('reset', STEP_DEADLINE_MS);
    expect(report.allowedCells).to.equal(report.cells);
  });
});
