// Leader election on a Lease: the decision alone (create, renew, follow, take an expired Lease), then agents against
// the lab API server, which refuses a stale resourceVersion as kube-apiserver does: exactly one leads, a crashed
// leader is replaced once its Lease expires, one that stops hands over at once.
import { expect } from 'chai';
import YAML from 'yaml';
import { KubeApi, parseKubeConfig } from '../../../src/kube/kube-api.js';
import { LabApiServer, renderKubeconfig } from '../../../src/lab/apiserver/index.js';
import { decideLease, LeaseElector, microTime } from '../../../src/services/lease-election.js';
import { pollUntil } from '../../poll.js';

describe('Lease election: the decision', () => {
  const now = new Date('2026-12-07T01:00:00.123Z');
  it('creates a missing Lease, renews its own, follows a live holder and takes an expired or released one', () => {
    expect(decideLease(undefined, 'a', now, 15, undefined)).to.deep.equal({
      kind: 'create',
      spec: { holderIdentity: 'a', leaseDurationSeconds: 15, acquireTime: '2026-12-07T01:00:00.123000Z', renewTime: '2026-12-07T01:00:00.123000Z', leaseTransitions: 0 },
    });
    const held = { holderIdentity: 'b', leaseDurationSeconds: 10, acquireTime: 'x', renewTime: 'y', leaseTransitions: 3 };
    expect(decideLease(held, 'b', now, 15, 9_000)).to.deep.include({ kind: 'renew' });
    expect(decideLease(held, 'b', now, 15, 9_000)).to.have.nested.property('spec.acquireTime', 'x');
    // The holder's own duration counts, on this agent's clock: unchanged for 9 s of 10 is alive, for 10 s expired.
    expect(decideLease(held, 'a', now, 15, 9_000)).to.deep.equal({ kind: 'follow', holder: 'b' });
    expect(decideLease(held, 'a', now, 15, undefined)).to.deep.equal({ kind: 'follow', holder: 'b' });
    expect(decideLease(held, 'a', now, 15, 10_000)).to.deep.include({ kind: 'acquire' });
    expect(decideLease(held, 'a', now, 15, 10_000)).to.have.nested.property('spec.leaseTransitions', 4);
    expect(decideLease({ ...held, holderIdentity: '' }, 'a', now, 15, 0)).to.deep.include({ kind: 'acquire' });
    expect(microTime(now)).to.equal('2026-12-07T01:00:00.123000Z');
  });
});

describe('Lease election: agents against the lab API server', function () {
  this.timeout(30_000);
  let server: LabApiServer;
  let api: KubeApi;
  before(async () => {
    server = new LabApiServer({});
    const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: 0 } });
    api = new KubeApi({ config: parseKubeConfig(YAML.parse(renderKubeconfig(`http://127.0.0.1:${tcpPort}`)), { source: 'lab', baseDir: '/' }) });
  });
  after(async () => {
    await server.close();
  });

  function agent(identity: string, name: string): { elector: LeaseElector; stop: AbortController; done: Promise<void>; changes: boolean[] } {
    const changes: boolean[] = [];
    const elector = new LeaseElector({ api, namespace: 'kube-system', name, identity, durationSeconds: 1, retryMs: 100, onLeading: (l) => changes.push(l) });
    const stop = new AbortController();
    return { elector, stop, done: elector.run(stop.signal), changes };
  }

  it('lets exactly one of three lead, and another take over when the leader stops (at once) or crashes (after expiry)', async () => {
    const agents = ['r1n1', 'r1n2', 'r2n1'].map((id) => agent(id, 'podroute-allocator'));
    const leaders = (): string[] => agents.filter((a) => !a.stop.signal.aborted && a.elector.isLeading()).map((_, i) => String(i));
    await pollUntil('one leader', () => leaders().length === 1, { timeoutMs: 5_000 });
    // Over several renewals nobody else ever leads.
    for (let i = 0; i < 10; i++) {
      expect(leaders(), 'leaders').to.have.length(1);
      await new Promise((r) => setTimeout(r, 100));
    }
    const first = agents.find((a) => a.elector.isLeading())!;
    const lease = (await api.read<{ spec: { holderIdentity: string; leaseTransitions: number } }>('/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/podroute-allocator')).spec;
    expect(lease.holderIdentity).to.equal(['r1n1', 'r1n2', 'r2n1'][agents.indexOf(first)]);
    // Stopping hands over: the Lease is released and another agent takes it well before it would expire.
    const stoppedAt = Date.now();
    first.stop.abort();
    await first.done;
    expect(first.changes).to.deep.equal([true, false]);
    await pollUntil('a new leader', () => agents.filter((a) => a !== first && a.elector.isLeading()).length === 1, { timeoutMs: 5_000, intervalMs: 20 });
    expect(Date.now() - stoppedAt, 'handed over before the 1 s expiry').to.be.lessThan(900);
    const second = agents.find((a) => a !== first && a.elector.isLeading())!;
    const after = (await api.read<{ spec: { holderIdentity: string; leaseTransitions: number } }>('/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/podroute-allocator')).spec;
    expect(after.leaseTransitions).to.equal(lease.leaseTransitions + 1);
    // A crash: the leader stops renewing without a word (its loop ends, nobody releases).
    const crashed = second;
    (crashed.elector as unknown as { tryOnce: () => Promise<void> }).tryOnce = () => new Promise(() => undefined);
    const crashAt = Date.now();
    await pollUntil('the last agent leads', () => agents.filter((a) => a !== first && a !== crashed && a.elector.isLeading()).length === 1, { timeoutMs: 5_000, intervalMs: 20 });
    expect(Date.now() - crashAt, 'not before the Lease expired on the follower\'s clock').to.be.at.least(900);
    for (const a of agents) a.stop.abort();
    await Promise.race([Promise.all(agents.filter((a) => a !== crashed).map((a) => a.done)), new Promise((r) => setTimeout(r, 3_000))]);
  });
});
