// LoadBalancer IP allocation, planned from Services as the API holds them: addresses, requests, families, conflicts
// between Services, pools that select, and the fixed point (a status written as planned plans no further change).
import { expect } from 'chai';
import fc from 'fast-check';
import type { Service } from '../../../src/kube/wire.js';
import { LOAD_BALANCER_CLASS, planAllocations, REQUESTED_IPS_ANNOTATION, type LoadBalancerPool } from '../../../src/services/allocator.js';
import { parseIpAddress, parseIpPrefix, prefixContainsAddress } from '../../../src/routes/ip-prefix.js';

interface ServiceOptions {
  ns?: string;
  created?: string;
  type?: string;
  class?: string;
  families?: string[];
  policy?: string;
  loadBalancerIP?: string;
  requested?: string;
  labels?: Record<string, string>;
  status?: string[];
}

function service(name: string, o: ServiceOptions = {}): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      namespace: o.ns ?? 'default',
      name,
      creationTimestamp: o.created ?? '2026-12-01T00:00:00Z',
      ...(o.labels === undefined ? {} : { labels: o.labels }),
      ...(o.requested === undefined ? {} : { annotations: { [REQUESTED_IPS_ANNOTATION]: o.requested } }),
    },
    spec: {
      type: o.type ?? 'LoadBalancer',
      ...(o.class === undefined ? {} : { loadBalancerClass: o.class }),
      ipFamilies: o.families ?? ['IPv4'],
      ipFamilyPolicy: o.policy ?? 'SingleStack',
      ...(o.loadBalancerIP === undefined ? {} : { loadBalancerIP: o.loadBalancerIP }),
      ports: [{ port: 80, protocol: 'TCP' }],
    },
    ...(o.status === undefined ? {} : { status: { loadBalancer: { ingress: o.status.map((ip) => ({ ip, ipMode: 'VIP' })) } } }),
  };
}

const V4: LoadBalancerPool = { name: 'v4', cidrs: ['192.0.2.0/29'], autoAssign: true };
const V6: LoadBalancerPool = { name: 'v6', cidrs: ['2001:db8:5::/125'], autoAssign: true };

/** The Services with the plan's status changes written, as the allocator's writes would leave them. */
function written(services: Service[], plan: ReturnType<typeof planAllocations>): Service[] {
  return services.map((s) => {
    const change = plan.changes.find((c) => c.namespace === s.metadata?.namespace && c.name === s.metadata?.name);
    return change === undefined ? s : { ...s, status: { loadBalancer: { ingress: change.ips.map((ip) => ({ ip, ipMode: 'VIP' })) } } };
  });
}

describe('LoadBalancer allocation plan', () => {
  it('hands out the lowest usable address of the first pool, never an IPv4 pool\'s network or broadcast address', () => {
    const services = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n, i) => service(n, { created: `2026-12-01T00:00:0${i}Z` }));
    const plan = planAllocations(services, [V4]);
    expect([...plan.allocations.values()].flat()).to.deep.equal(['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5', '192.0.2.6']);
    expect(plan.problems).to.deep.equal([{ service: 'default/g', reason: 'PoolExhausted', message: 'every IPv4 address of v4 is in use' }]);
    expect(plan.changes.map((c) => c.name)).to.deep.equal(['a', 'b', 'c', 'd', 'e', 'f']);
  });

  it('follows ipFamilies and ipFamilyPolicy: dual-stack in family order, PreferDualStack takes what exists, RequireDualStack both or nothing', () => {
    const dual = service('dual', { families: ['IPv6', 'IPv4'], policy: 'RequireDualStack' });
    const prefer = service('prefer', { families: ['IPv4', 'IPv6'], policy: 'PreferDualStack', created: '2026-12-02T00:00:00Z' });
    const both = planAllocations([dual, prefer], [V4, V6]);
    expect(both.allocations.get('default/dual')).to.deep.equal(['2001:db8:5::1', '192.0.2.1']);
    expect(both.allocations.get('default/prefer')).to.deep.equal(['192.0.2.2', '2001:db8:5::2']);
    const v4only = planAllocations([dual, prefer], [V4]);
    expect(v4only.allocations.get('default/dual')).to.deep.equal([]);
    expect(v4only.allocations.get('default/prefer')).to.deep.equal(['192.0.2.1']);
    expect(v4only.problems.map((p) => `${p.service} ${p.reason}`)).to.deep.equal(['default/dual NoPool']);
  });

  it('honours a request exactly or not at all, and a bad request changes nothing', () => {
    const holder = service('holder', { status: ['192.0.2.5'], created: '2026-12-05T00:00:00Z' });
    const wants = service('wants', { loadBalancerIP: '192.0.2.3' });
    const taken = service('taken', { loadBalancerIP: '192.0.2.5' });
    const outside = service('outside', { loadBalancerIP: '198.51.100.7', status: ['192.0.2.4'] });
    const garbage = service('garbage', { requested: 'not-an-ip', status: ['192.0.2.6'] });
    const dual = service('dual', { families: ['IPv4', 'IPv6'], policy: 'RequireDualStack', requested: '2001:db8:5::7, 192.0.2.2' });
    const plan = planAllocations([holder, wants, taken, outside, garbage, dual], [V4, V6]);
    expect(plan.allocations.get('default/wants')).to.deep.equal(['192.0.2.3']);
    // The younger holder keeps its address: a request never takes an address from its holder.
    expect(plan.allocations.get('default/holder')).to.deep.equal(['192.0.2.5']);
    expect(plan.allocations.get('default/taken')).to.deep.equal([]);
    // A request outside the pools releases nothing it has no right to keep: the old address was not requested.
    expect(plan.allocations.get('default/outside')).to.deep.equal([]);
    expect(plan.allocations.get('default/garbage')).to.deep.equal(['192.0.2.6']);
    expect(plan.allocations.get('default/dual')).to.deep.equal(['192.0.2.2', '2001:db8:5::7']);
    expect(plan.problems.map((p) => `${p.service} ${p.reason}`).sort()).to.deep.equal([
      'default/garbage InvalidAddressRequest',
      'default/outside AddressNotInPool',
      'default/taken AddressInUse',
    ]);
  });

  it('keeps the older Service\'s address when two statuses claim one, and moves the younger', () => {
    const older = service('older', { created: '2026-12-01T00:00:00Z', status: ['192.0.2.1'] });
    const younger = service('younger', { created: '2026-12-02T00:00:00Z', status: ['192.0.2.1'] });
    const plan = planAllocations([younger, older], [V4]);
    expect(plan.allocations.get('default/older')).to.deep.equal(['192.0.2.1']);
    expect(plan.allocations.get('default/younger')).to.deep.equal(['192.0.2.2']);
    expect(plan.changes).to.deep.equal([{ namespace: 'default', name: 'younger', ips: ['192.0.2.2'] }]);
    expect(plan.problems.map((p) => p.reason)).to.deep.equal(['AddressInUse']);
  });

  it('gives back the pool addresses of a Service that is no longer a LoadBalancer, and leaves another class alone', () => {
    const was = service('was', { type: 'ClusterIP', status: ['192.0.2.1', '203.0.113.1'] });
    const foreign = service('foreign', { class: 'example.com/other', status: ['192.0.2.2'] });
    const ours = service('ours', { class: LOAD_BALANCER_CLASS });
    const plan = planAllocations([was, foreign, ours], [V4]);
    expect(plan.changes).to.deep.include({ namespace: 'default', name: 'was', ips: ['203.0.113.1'] });
    expect(plan.changes.find((c) => c.name === 'foreign')).to.equal(undefined);
    // The other class's address is not handed out again.
    expect(plan.allocations.get('default/ours')).to.deep.equal(['192.0.2.1']);
    expect(plan.allocations.has('default/foreign')).to.equal(false);
  });

  it('assigns from a pool only to the Services it selects, and never automatically from a request-only pool', () => {
    const pools: LoadBalancerPool[] = [
      { name: 'team-a', cidrs: ['198.51.100.0/30'], autoAssign: true, namespaces: ['a'] },
      { name: 'web', cidrs: ['203.0.113.0/30'], autoAssign: true, serviceSelector: { matchLabels: { tier: 'web' } } },
      { name: 'reserved', cidrs: ['192.0.2.0/30'], autoAssign: false },
    ];
    const plan = planAllocations(
      [service('x', { ns: 'a' }), service('y', { ns: 'b', labels: { tier: 'web' } }), service('z', { ns: 'b' }), service('r', { ns: 'b', loadBalancerIP: '192.0.2.2' })],
      pools,
    );
    expect(plan.allocations.get('a/x')).to.deep.equal(['198.51.100.1']);
    expect(plan.allocations.get('b/y')).to.deep.equal(['203.0.113.1']);
    expect(plan.allocations.get('b/z')).to.deep.equal([]);
    expect(plan.allocations.get('b/r')).to.deep.equal(['192.0.2.2']);
    expect(plan.problems.map((p) => `${p.service} ${p.reason}`)).to.deep.equal(['b/z NoPool']);
  });

  it('property: no address twice, every address in a pool serving its Service, a fixed point once written, old allocations stable', () => {
    const pools: LoadBalancerPool[] = [
      { name: 'small4', cidrs: ['192.0.2.0/30'], autoAssign: true, namespaces: ['a'] },
      { name: 'big4', cidrs: ['198.51.100.0/28'], autoAssign: true },
      { name: 'v6', cidrs: ['2001:db8:5::/124'], autoAssign: true },
      { name: 'reserved', cidrs: ['203.0.113.0/30'], autoAssign: false },
    ];
    const addressArb = fc.constantFrom('192.0.2.1', '192.0.2.2', '198.51.100.1', '198.51.100.9', '2001:db8:5::1', '2001:db8:5::3', '203.0.113.1', '203.0.113.9', '10.0.0.1', 'bogus');
    const serviceArb = fc.record({
      ns: fc.constantFrom('a', 'b'),
      day: fc.integer({ min: 1, max: 9 }),
      type: fc.constantFrom('LoadBalancer', 'LoadBalancer', 'LoadBalancer', 'ClusterIP'),
      class: fc.constantFrom(undefined, undefined, LOAD_BALANCER_CLASS, 'example.com/other'),
      families: fc.constantFrom<string[]>(['IPv4'], ['IPv6'], ['IPv4', 'IPv6'], ['IPv6', 'IPv4']),
      policy: fc.constantFrom('SingleStack', 'PreferDualStack', 'RequireDualStack'),
      request: fc.option(fc.array(addressArb, { maxLength: 2 }), { nil: undefined }),
      status: fc.array(addressArb, { maxLength: 2 }),
    });
    fc.assert(
      fc.property(fc.array(serviceArb, { maxLength: 14 }), serviceArb, (specs, extra) => {
        const build = (s: typeof extra, i: number): Service =>
          service(`s${i}`, {
            ns: s.ns,
            created: `2026-12-0${s.day}T00:00:00Z`,
            type: s.type,
            families: s.families,
            policy: s.policy,
            status: s.status,
            ...(s.class === undefined ? {} : { class: s.class }),
            ...(s.request === undefined ? {} : { requested: s.request.join(',') }),
          });
        const services = specs.map(build);
        const plan = planAllocations(services, pools);
        const foreign = services
          .filter((s) => s.spec?.type === 'LoadBalancer' && s.spec.loadBalancerClass !== undefined && s.spec.loadBalancerClass !== LOAD_BALANCER_CLASS)
          .flatMap((s) => (s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip));
        const all = [...plan.allocations.values()].flat();
        expect(new Set(all).size, 'no address twice').to.equal(all.length);
        for (const change of plan.changes) {
          const before = services.find((s) => s.metadata?.name === change.name)?.status?.loadBalancer?.ingress?.map((i) => i.ip) ?? [];
          for (const ip of change.ips) if (!before.includes(ip)) expect(foreign, `${ip} newly handed out though another class holds it`).not.to.include(ip);
        }
        for (const [key, ips] of plan.allocations) {
          const svc = services.find((s) => `${s.metadata?.namespace}/${s.metadata?.name}` === key)!;
          for (const ip of ips) {
            const address = parseIpAddress(ip)!;
            const serving = pools.filter((p) => (p.namespaces === undefined || p.namespaces.includes(svc.metadata?.namespace ?? '')) && p.cidrs.some((c) => prefixContainsAddress(parseIpPrefix(c)!, address)));
            expect(serving, `${ip} of ${key} lies in a pool serving it`).to.have.length.greaterThan(0);
          }
        }
        // Written as planned, the same Services plan nothing more and keep their addresses.
        const after = written(services, plan);
        const again = planAllocations(after, pools);
        expect(again.changes, 'a fixed point once written').to.deep.equal([]);
        expect(again.allocations).to.deep.equal(plan.allocations);
        // A new Service, younger than all, takes nothing any existing Service holds.
        const newcomer = { ...build(extra, 99), metadata: { ...build(extra, 99).metadata, creationTimestamp: '2026-12-31T00:00:00Z' } };
        const grown = planAllocations([...after, newcomer], pools);
        for (const [key, ips] of plan.allocations) expect(grown.allocations.get(key), `${key} after a newcomer`).to.deep.equal(ips);
      }),
      { numRuns: 300 },
    );
  });
});
