// The policy reconciler against a real kernel where its view can be wrong or incomplete:
// - its memory of the kernel is stale (our chains were removed behind its back, as when two runs shared one
//   namespace): the next change must still go in at once, not fail against a chain that is gone;
// - a pod selected by a policy is known before its IP is (the IP is not in the pod's status yet): its traffic must
//   not pass unfiltered in that window.
import { wireObject } from '../../wire.js';
import { expect } from 'chai';
import { execa } from 'execa';
import { Writable } from 'node:stream';
import type { NetworkPolicy } from '../../../src/kube/wire.js';
import { closeProbeConnections, probeMany, type ProbeJob } from '../../../src/lab/probe.js';
import { netnsRunner } from '../../../src/host/command.js';
import { PolicyReconciler } from '../../../src/policy/policy-reconciler.js';
import type { ClusterState } from '../../../src/policy/types.js';
import { IP_FAMILIES, ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { createLogger } from '../../../src/observe/log.js';
import { testLabName } from '../lab/leftovers.js';
import { buildPolicyLab, type LabPod, type PolicyLab } from './policy-lab.js';
import { pollUntil } from '../../poll.js';

const PREFIX = testLabName('h22gap', 'gap');

function policy(ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy {
  return wireObject('NetworkPolicy', 'v1', { metadata: { namespace: ns, name }, spec });
}

async function waitApplied(r: PolicyReconciler, generation: number, ms = 20_000): Promise<void> {
  await pollUntil(`generation ${generation} applied`, () => {
    if (r.status().appliedGeneration < generation) throw new Error(JSON.stringify(r.status()));
    return true;
  }, { timeoutMs: ms, intervalMs: 20 });
}

describe('policy reconciler: stale memory and pods without an IP yet (real iptables/ipset)', function () {
  this.timeout(180_000);
  let lab: PolicyLab;
  const running: AbortController[] = [];
  const errors: string[] = [];
  const logger = createLogger({
    level: 'error',
    component: 'policy-test',
    stream: new Writable({
      write(chunk: Buffer, _enc, cb) {
        errors.push(chunk.toString());
        cb();
      },
    }),
  });

  before(async () => {
    await execa('bash', ['-c', `for n in $(ip netns list | awk '{print $1}' | grep '^${PREFIX}-'); do ip netns delete $n; done`]);
    lab = await buildPolicyLab(PREFIX);
  });

  after(async () => {
    for (const c of running) c.abort();
    closeProbeConnections();
    await lab?.teardown();
  });

  function start(): { reconciler: PolicyReconciler; stop: () => Promise<void> } {
    const controller = new AbortController();
    running.push(controller);
    const reconciler = new PolicyReconciler({ node: lab.node, logger, runner: netnsRunner(lab.nodeNetns), resyncIntervalMs: 600_000, retryInitialMs: 2_000 });
    const done = reconciler.start(controller.signal);
    return { reconciler, stop: async () => { controller.abort(); await done; } };
  }

  const pod = (ns: string, name: string): LabPod => {
    const p = lab.pods.find((x) => x.ns === ns && x.name === name);
    if (p === undefined) throw new Error(`no lab pod ${ns}/${name}`);
    return p;
  };

  async function reach(from: LabPod | 'node', to: LabPod, family: IpFamily = 'ipv4'): Promise<boolean> {
    const job: ProbeJob = { from: from === 'node' ? lab.nodeControl : from.control, target: family === 'ipv4' ? to.v4 : to.v6, port: 80, protocol: 'tcp', timeoutMs: 700 };
    const [r] = await probeMany([job]);
    return r?.ok === true;
  }

  it('a change goes in at once when our chains were removed behind the reconciler\'s back', async () => {
    errors.length = 0;
    const { reconciler, stop } = start();
    try {
      const denyX: ClusterState = { pods: lab.podObjects(), namespaces: lab.namespaces, policies: [policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] })] };
      await waitApplied(reconciler, reconciler.setCluster(denyX));
      expect(await reach(pod('y', 'a'), pod('x', 'a'))).to.equal(false);
      // Someone empties the filter table (our jumps and chains); our sets stay.
      for (const cmd of ['iptables', 'ip6tables']) {
        await execa('ip', ['netns', 'exec', lab.nodeNetns, cmd, '-F']);
        await execa('ip', ['netns', 'exec', lab.nodeNetns, cmd, '-X']);
      }
      // The next change rewrites the dispatch chain, which jumps to namespace chains the reconciler believes are there.
      const denyXY: ClusterState = { ...denyX, policies: [...denyX.policies, policy('y', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] })] };
      await waitApplied(reconciler, reconciler.setCluster(denyXY));
      expect(errors.filter((e) => e.includes('policy apply failed')), 'no refused apply').to.deep.equal([]);
      expect(reconciler.status().loop.lastError).to.equal(undefined);
      expect(await reach(pod('x', 'b'), pod('x', 'a'))).to.equal(false);
      expect(await reach(pod('x', 'a'), pod('y', 'a'))).to.equal(false);
      expect(await reach('node', pod('x', 'a'))).to.equal(true);
    } finally {
      await stop();
    }
  });

  it('a selected pod whose address is not in its status yet is isolated; unselected pods keep working', async () => {
    const { reconciler, stop } = start();
    try {
      const policies = [policy('x', 'isolate-a', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Ingress', 'Egress'] })];
      // x/a's sandbox is up with its addresses (the lab pod), but the API does not show them yet.
      const withoutAddress = lab.podObjects().map((p) =>
        p.metadata?.namespace === 'x' && p.metadata.name === 'a' ? { ...p, status: { phase: 'Pending' } } : p,
      );
      await waitApplied(reconciler, reconciler.setCluster({ pods: withoutAddress, namespaces: lab.namespaces, policies }));
      for (const family of IP_FAMILIES) {
        expect(await reach(pod('y', 'a'), pod('x', 'a'), family), `y/a -> x/a v${ipVersion(family)} (ingress, address unknown)`).to.equal(false);
        expect(await reach(pod('x', 'a'), pod('y', 'a'), family), `x/a -> y/a v${ipVersion(family)} (egress, address unknown)`).to.equal(false);
        expect(await reach(pod('y', 'a'), pod('x', 'b'), family), `y/a -> x/b v${ipVersion(family)} (not selected, known)`).to.equal(true);
        expect(await reach(pod('x', 'b'), pod('y', 'a'), family), `x/b -> y/a v${ipVersion(family)} (not selected, known)`).to.equal(true);
        expect(await reach('node', pod('x', 'a'), family), `node -> x/a v${ipVersion(family)} (own node)`).to.equal(true);
      }
      // The address arrives: the pod's own chains take over and the guard is lifted.
      await waitApplied(reconciler, reconciler.setCluster({ pods: lab.podObjects(), namespaces: lab.namespaces, policies }));
      for (const family of IP_FAMILIES) {
        expect(await reach(pod('y', 'a'), pod('x', 'a'), family)).to.equal(false);
        expect(await reach(pod('x', 'a'), pod('y', 'a'), family)).to.equal(false);
        expect(await reach(pod('y', 'a'), pod('x', 'b'), family)).to.equal(true);
      }
      const saved = (await execa('ip', ['netns', 'exec', lab.nodeNetns, 'iptables-save', '-t', 'filter'])).stdout;
      expect(saved).to.not.match(/--match-set PRPOL4-KNOWN dst/);
      // No policy selects a pod any more: nothing is isolated; an address no known pod owns is still reached (the
      // replies belong to the connection) but never sends a new connection itself.
      await waitApplied(reconciler, reconciler.setCluster({ pods: withoutAddress, namespaces: lab.namespaces, policies: [] }));
      expect(await reach(pod('y', 'a'), pod('x', 'a'))).to.equal(true);
      expect(await reach(pod('x', 'a'), pod('y', 'a'))).to.equal(false);
    } finally {
      await stop();
    }
  });
});
