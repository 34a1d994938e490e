// The LoadBalancer allocator at work against the lab API server (which validates status writes, refuses a stale
// resourceVersion with 409 and serves Events as kube-apiserver does): addresses written into the Services' status,
// refusals as a False condition and one Warning Event, releases handed on, a leader change that moves nothing,
// and a conflicting write planned again. The pure part, planStatusWrites, is checked on its own first.
import { expect } from 'chai';
import YAML from 'yaml';
import { KubeApi, parseKubeConfig } from '../../../src/kube/kube-api.js';
import type { Service } from '../../../src/kube/wire.js';
import { renderKubeconfig } from '../../../src/lab/apiserver/index.js';
import { createLogger } from '../../../src/observe/log.js';
import { ALLOCATED_CONDITION, EXTERNAL_IPS_CONDITION, LoadBalancerAllocator, planStatusWrites, type AllocatorApi, type ServiceCondition } from '../../../src/services/allocator-loop.js';
import type { LoadBalancerPool } from '../../../src/services/allocator.js';
import { pollUntil } from '../../poll.js';
import { request, startServer, type Started } from '../lab/apiserver/helpers.js';

const POOLS: LoadBalancerPool[] = [{ name: 'lab', cidrs: ['192.0.2.0/30'], autoAssign: true }];
const SERVICES = '/api/v1/namespaces/default/services';
const logger = createLogger({ level: 'error' });

function lbService(name: string, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { type: 'LoadBalancer', selector: { app: name }, ports: [{ port: 80 }], ...spec } };
}

function condition(service: Service | undefined, type = ALLOCATED_CONDITION): ServiceCondition | undefined {
  return ((service?.status as { conditions?: ServiceCondition[] } | undefined)?.conditions ?? []).find((c) => c.type === type);
}

describe('LoadBalancer allocator: the status writes, planned', () => {
  const now = new Date('2026-12-07T03:00:00.456Z');
  const svc = (name: string, created: string, extra: Partial<Service> = {}): Service => ({
    metadata: { name, namespace: 'default', creationTimestamp: created, resourceVersion: '7', uid: `uid-${name}` },
    spec: { type: 'LoadBalancer', ...extra.spec },
    ...(extra.status === undefined ? {} : { status: extra.status }),
  });

  it('assigns with a True condition and an Event, refuses with a False condition and one Warning per new problem, and writes nothing when all is as planned', () => {
    const first = svc('a', '2026-12-07T01:00:00Z');
    const second = svc('b', '2026-12-07T01:00:01Z', { spec: { type: 'LoadBalancer', loadBalancerIP: '192.0.2.1' } });
    const plan = planStatusWrites([first, second], POOLS, undefined, now);
    // b's addresses do not change (none before, none after): its write leaves the ingress list alone.
    expect(plan.writes.map((w) => [w.name, w.resourceVersion, w.status.loadBalancer, w.events])).to.deep.equal([
      ['a', '7', { ingress: [{ ip: '192.0.2.1' }] }, [{ type: 'Normal', reason: 'IPAllocated', message: 'assigned 192.0.2.1' }]],
      ['b', '7', undefined, [{ type: 'Warning', reason: 'AddressInUse', message: '192.0.2.1 is already in use' }]],
    ]);
    expect(plan.writes[0]!.status.conditions).to.deep.equal([{ type: ALLOCATED_CONDITION, status: 'True', reason: 'Allocated', message: 'assigned 192.0.2.1', lastTransitionTime: '2026-12-07T03:00:00Z' }]);
    expect(plan.writes[1]!.status.conditions).to.deep.equal([{ type: ALLOCATED_CONDITION, status: 'False', reason: 'AddressInUse', message: '192.0.2.1 is already in use', lastTransitionTime: '2026-12-07T03:00:00Z' }]);
    expect(Object.fromEntries(plan.problemsByReason)).to.deep.equal({ AddressInUse: 1 });
    // Written as planned: the next pass writes nothing and posts nothing, later too (the condition is the memory).
    const written = [first, second].map((s, i) => ({ ...s, status: plan.writes[i]!.status } as Service));
    expect(planStatusWrites(written, POOLS, undefined, new Date('2026-12-07T04:00:00Z')).writes).to.deep.equal([]);
    // A second problem joins the first: only it is a new Event; the transition time stays (still False).
    const both = { ...written[1]!, metadata: { ...written[1]!.metadata, annotations: { 'podroute.io/load-balancer-ips': '192.0.2.1,2001:db8::1' } } } as Service;
    const again = planStatusWrites([written[0]!, both], POOLS, undefined, new Date('2026-12-07T04:00:00Z')).writes;
    expect(again).to.have.length(1);
    expect(again[0]!.events.map((e) => e.reason)).to.deep.equal(['InvalidAddressRequest']);
    expect(again[0]!.status.conditions![0]!.lastTransitionTime).to.equal('2026-12-07T03:00:00Z');
  });

  it('gives back a former LoadBalancer\'s pool address and removes the condition, keeping what is not ours', () => {
    const status = { loadBalancer: { ingress: [{ ip: '192.0.2.1' }, { ip: '198.51.100.7' }] }, conditions: [{ type: ALLOCATED_CONDITION, status: 'True', reason: 'Allocated', message: 'x', lastTransitionTime: '2026-12-07T01:00:00Z' }, { type: 'example.com/Other', status: 'True', reason: 'Fine', message: '', lastTransitionTime: '2026-12-07T01:00:00Z' }] };
    const former = svc('a', '2026-12-07T01:00:00Z', { spec: { type: 'ClusterIP' }, status });
    const [write] = planStatusWrites([former], POOLS, undefined, now).writes;
    expect(write!.status.loadBalancer?.ingress).to.deep.equal([{ ip: '198.51.100.7' }]);
    expect(write!.status.conditions!.map((c) => c.type)).to.deep.equal(['example.com/Other']);
    expect(write!.released).to.deep.equal(['192.0.2.1']);
  });

  it('reports an externalIPs entry outside the allowed ranges on its own condition, when ranges are configured', () => {
    const web = svc('web', '2026-12-07T01:00:00Z', { spec: { type: 'ClusterIP', externalIPs: ['203.0.113.5', '198.51.100.9'] } });
    const [write] = planStatusWrites([web], POOLS, ['203.0.113.0/24'], now).writes;
    expect(condition({ status: write!.status } as Service, EXTERNAL_IPS_CONDITION)).to.include({ status: 'False', reason: 'ExternalIPNotAllowed' });
    expect(write!.status, 'not a LoadBalancer of ours: its ingress list is not ours to write').to.have.all.keys('conditions');
    expect(write!.events).to.deep.equal([{ type: 'Warning', reason: 'ExternalIPNotAllowed', message: 'externalIPs entry "198.51.100.9" is outside services.externalIPRanges: not advertised' }]);
    expect(planStatusWrites([web], POOLS, undefined, now).writes).to.deep.equal([]);
  });
});

describe('LoadBalancer allocator: against the lab API server', function () {
  this.timeout(30_000);
  let api: Started;
  let kube: KubeApi;
  const running: { allocator: LoadBalancerAllocator; done: Promise<void> }[] = [];
  /** Each agent's passes as its onPass heard them (true: succeeded). */
  const passes = new Map<string, boolean[]>();
  beforeEach(async () => {
    api = await startServer();
    kube = new KubeApi({ config: parseKubeConfig(YAML.parse(renderKubeconfig(api.url)), { source: 'lab', baseDir: '/' }) });
  });
  afterEach(async () => {
    for (const r of running.splice(0)) {
      r.allocator.stop();
      await r.done;
    }
    kube.close();
    await api.server.close();
  });

  const services = (): Service[] => api.server.list('Service') as Service[];
  const get = (name: string): Service => api.server.get('Service', 'default', name) as Service;
  const ingress = (name: string): string[] => (get(name).status?.loadBalancer?.ingress ?? []).map((e) => e.ip ?? '');
  const events = (name: string): string[] =>
    (api.server.list('Event', 'default') as { involvedObject: { name: string }; type: string; reason: string }[]).filter((e) => e.involvedObject.name === name).map((e) => `${e.type} ${e.reason}`).sort(); // listed by name: order is not time

  /** Events follow the status write they belong to: wait for them, then check nothing else came. */
  async function expectEvents(name: string, expected: string[]): Promise<void> {
    await pollUntil(`Events of ${name}: ${expected.join(', ')}`, () => events(name).length >= expected.length, { intervalMs: 20, timeoutMs: 5_000 });
    expect(events(name)).to.deep.equal(expected);
  }
  function allocator(identity: string, options: { api?: AllocatorApi; pools?: LoadBalancerPool[] } = {}): LoadBalancerAllocator {
    const outcomes: boolean[] = [];
    passes.set(identity, outcomes);
    const a = new LoadBalancerAllocator({
      api: options.api ?? kube, identity, pools: options.pools ?? POOLS, services, logger, leaseDurationSeconds: 1, leaseRetryMs: 100, resyncIntervalMs: 60_000, retryMinMs: 100,
      onPass: (outcome) => outcomes.push(outcome.ok),
    });
    running.push({ allocator: a, done: a.start(new AbortController().signal) });
    return a;
  }
  async function create(body: Record<string, unknown>, ...allocators: LoadBalancerAllocator[]): Promise<void> {
    expect((await request(api.url, 'POST', SERVICES, body)).status).to.equal(201);
    for (const a of allocators) a.trigger();
  }

  it('assigns, refuses a taken address with a False condition and one Warning Event, and hands a released address on', async () => {
    const a = allocator('r1n1');
    await pollUntil('leading', () => a.isLeading(), { timeoutMs: 5_000, intervalMs: 20 });
    await create(lbService('a-first'), a);
    await pollUntil('an address for a-first', () => ingress('a-first').length === 1, { intervalMs: 20 });
    expect(ingress('a-first')).to.deep.equal(['192.0.2.1']);
    expect(condition(get('a-first'))).to.include({ status: 'True', reason: 'Allocated' });
    await expectEvents('a-first', ['Normal IPAllocated']);

    await create(lbService('b-second', { loadBalancerIP: '192.0.2.1' }), a);
    await pollUntil('b-second refused', () => condition(get('b-second'))?.status === 'False', { intervalMs: 20 });
    expect(condition(get('b-second'))).to.include({ reason: 'AddressInUse', message: '192.0.2.1 is already in use' });
    expect(ingress('b-second')).to.deep.equal([]);
    await expectEvents('b-second', ['Warning AddressInUse']);
    // Passes that change nothing write nothing and post nothing.
    const writes = a.status().statusWrites;
    const before = a.status().loop.successes;
    a.trigger();
    await pollUntil('one more pass', () => a.status().loop.successes > before, { intervalMs: 20 });
    expect(a.status().statusWrites).to.equal(writes);
    await expectEvents('b-second', ['Warning AddressInUse']);
    expect(a.status()).to.deep.include({ leading: true, allocatedAddresses: 1, problems: { AddressInUse: 1 } });

    // a-first stops being a LoadBalancer: its address is released and goes to b-second, which asked for it.
    const first = get('a-first');
    expect((await request(api.url, 'PUT', `${SERVICES}/a-first`, { ...first, spec: { ...first.spec, type: 'ClusterIP' } })).status).to.equal(200);
    a.trigger();
    await pollUntil('b-second gets 192.0.2.1', () => ingress('b-second')[0] === '192.0.2.1', { intervalMs: 20 });
    expect(ingress('a-first')).to.deep.equal([]);
    expect(condition(get('a-first'))).to.equal(undefined);
    expect(condition(get('b-second'))).to.include({ status: 'True', reason: 'Allocated' });
    await expectEvents('b-second', ['Normal IPAllocated', 'Warning AddressInUse']);

    // The pool has two usable addresses: a third and a fourth Service exhaust it; deleting one serves the waiting one.
    await create(lbService('c-third'), a);
    await pollUntil('c-third gets 192.0.2.2', () => ingress('c-third')[0] === '192.0.2.2', { intervalMs: 20 });
    await create(lbService('d-fourth'), a);
    await pollUntil('d-fourth refused', () => condition(get('d-fourth'))?.reason === 'PoolExhausted', { intervalMs: 20 });
    await expectEvents('d-fourth', ['Warning PoolExhausted']);
    expect((await request(api.url, 'DELETE', `${SERVICES}/c-third`)).status).to.equal(200);
    a.trigger();
    await pollUntil('d-fourth gets 192.0.2.2', () => ingress('d-fourth')[0] === '192.0.2.2', { intervalMs: 20 });
    expect(condition(get('d-fourth'))).to.include({ status: 'True' });
    // The counts follow the write's answer, a moment after the status is stored.
    await pollUntil('four allocations counted', () => a.status().allocations === 4, { intervalMs: 20, timeoutMs: 5_000 });
    expect(a.status()).to.include({ allocations: 4, releases: 1, conflicts: 0 });
  });

  it('a second agent takes over when the leader stops: existing addresses stay as written, a new Service still gets one', async () => {
    const pools = [{ name: 'wide', cidrs: ['192.0.2.0/29'], autoAssign: true }];
    const first = allocator('r1n1', { pools });
    await pollUntil('r1n1 leads', () => first.isLeading(), { timeoutMs: 5_000, intervalMs: 20 });
    const second = allocator('r2n1', { pools });
    await create(lbService('a-one'), first, second);
    await create(lbService('b-two', { ipFamilyPolicy: 'SingleStack' }), first, second);
    await pollUntil('both assigned', () => ingress('a-one').length === 1 && ingress('b-two').length === 1, { intervalMs: 20 });
    expect(second.isLeading()).to.equal(false);
    expect(second.status().statusWrites, 'a follower writes nothing').to.equal(0);
    expect(passes.get('r2n1'), 'a follower\'s passes succeed (it is healthy)').to.include(true).and.not.include(false);
    const versions = ['a-one', 'b-two'].map((n) => get(n).metadata?.resourceVersion);

    running[0]!.allocator.stop();
    await running[0]!.done;
    await pollUntil('r2n1 leads', () => second.isLeading(), { timeoutMs: 5_000, intervalMs: 20 });
    second.trigger();
    await create(lbService('c-three'), second);
    await pollUntil('c-three assigned', () => ingress('c-three').length === 1, { intervalMs: 20 });
    expect(ingress('c-three')).to.deep.equal(['192.0.2.3']);
    expect(new Set([...ingress('a-one'), ...ingress('b-two'), ...ingress('c-three')]).size, 'three different addresses').to.equal(3);
    expect(['a-one', 'b-two'].map((n) => get(n).metadata?.resourceVersion), 'the new leader rewrote nothing it found').to.deep.equal(versions);
    await pollUntil('one write by the new leader', () => second.status().statusWrites === 1, { intervalMs: 20 });
  });

  /**
   * The API as it is, but for a concurrent writer that changes the Service (a label, as kubectl would) between the
   * allocator's read and each of its first `times` status writes. `patches` records how each write went.
   */
  function racingApi(times: number): { api: AllocatorApi; patches: string[] } {
    let left = times;
    const patches: string[] = [];
    const racing: AllocatorApi = {
      list: (p, o) => kube.list(p, o),
      read: (p, o) => kube.read(p, o),
      create: (p, b, o) => kube.create(p, b, o),
      patch: async <T>(p: string, body: unknown, o: Parameters<KubeApi['patch']>[2]): Promise<T> => {
        const status = p.endsWith('/status');
        if (status && left > 0) {
          left--;
          const current = get('web');
          api.server.update({ ...current, kind: 'Service', metadata: { ...current.metadata, labels: { touched: String(times - left) } } });
        }
        try {
          const result = await kube.patch<T>(p, body, o);
          if (status) patches.push('ok');
          return result;
        } catch (error) {
          if (status) patches.push(String((error as { status?: number }).status));
          throw error;
        }
      },
    };
    return { api: racing, patches };
  }

  it('a write planned from a Service that changed since is refused with 409 and planned again', async () => {
    const { api: racing, patches } = racingApi(1);
    const a = allocator('r1n1', { api: racing });
    await pollUntil('leading', () => a.isLeading(), { timeoutMs: 5_000, intervalMs: 20 });
    await create(lbService('web'), a);
    await pollUntil('web assigned', () => ingress('web').length === 1, { intervalMs: 20 });
    // Events are posted once the write has answered, and counted: after them, everything is in.
    await expectEvents('web', ['Normal IPAllocated']);
    expect(patches).to.deep.equal(['409', 'ok']);
    expect(get('web').metadata?.labels).to.deep.equal({ touched: '1' });
    expect(a.status()).to.include({ conflicts: 1, allocations: 1 });
    expect(a.status().loop.failures, 'one conflict is planned again at once, no failure').to.equal(0);
  });

  it('a Service changing under three plans in a row makes the pass fail and back off, then the write goes through', async () => {
    const { api: racing, patches } = racingApi(3);
    const a = allocator('r1n1', { api: racing });
    await pollUntil('leading', () => a.isLeading(), { timeoutMs: 5_000, intervalMs: 20 });
    await create(lbService('web'), a);
    await pollUntil('web assigned', () => ingress('web').length === 1, { intervalMs: 20 });
    await expectEvents('web', ['Normal IPAllocated']);
    expect(patches).to.deep.equal(['409', '409', '409', 'ok']);
    expect(a.status()).to.include({ conflicts: 3, allocations: 1 });
    // The events are posted inside the pass; the loop counts its success once the pass has returned.
    await pollUntil('the pass that wrote counted as a success', () => a.status().loop.consecutiveFailures === 0, { intervalMs: 10 });
    expect(a.status().loop).to.include({ failures: 1, consecutiveFailures: 0 });
  });
});
