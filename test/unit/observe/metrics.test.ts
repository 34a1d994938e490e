import { expect } from 'chai';
import type { BgpReconcilerStatus } from '../../../src/bgp/bgp-reconciler.js';
import { HealthMonitor } from '../../../src/observe/health.js';
import { AgentMetrics } from '../../../src/observe/metrics.js';
import type { PodMtuStatus } from '../../../src/node/pod-mtu-tracker.js';
import type { PeerTableReport } from '../../../src/observe/peers.js';
import type { PolicyStatus } from '../../../src/policy/policy-reconciler.js';
import type { RouteReconcilerStatus } from '../../../src/routes/route-reconciler.js';
import type { LoadBalancerAllocatorStatus } from '../../../src/services/allocator-loop.js';

/** One sample line's value, e.g. value(text, 'podroute_routes_installed') or with its label set. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function routeStatus(installed: number, added: number, removed: number): RouteReconcilerStatus {
  return {
    installed,
    loop: { lastAttemptAt: new Date(), lastSuccessAt: new Date(), lastError: undefined, consecutiveFailures: 0, successes: 3, failures: 0 },
    inSync: true,
    conflicts: ['10.9.0.0/24'],
    keptFromStart: 2,
    counts: { added, replaced: 1, removed, conflicts: 1, failedChanges: 0, reads: 1, quietResyncs: 0 },
  };
}

describe('AgentMetrics', () => {
  it('reads the reconcilers at scrape time: routes, route changes, policy, learned table', async () => {
    let routes = routeStatus(3, 5, 2);
    const policy: PolicyStatus = {
      chains: 4,
      rules: 17,
      sets: 6,
      loop: { lastAttemptAt: new Date(), lastSuccessAt: new Date(), lastError: undefined, consecutiveFailures: 0, successes: 3, failures: 0 },
      problems: [],
      generation: 2,
      appliedGeneration: 2,
      bridgeNetfilter: true,
      unchangedResyncs: 0,
      compiles: 1,
    };
    const bgp = { advertised: 2, learnedPrefixes: 7 } as BgpReconcilerStatus;
    const m = new AgentMetrics({ nodeName: 'n1', version: '1.2.3', routes: () => routes, policy: () => policy, bgp: () => bgp, processMetrics: false });
    let text = (await m.render()).body;
    expect(value(text, 'podroute_routes_installed')).to.equal(3);
    expect(value(text, 'podroute_routes_kept_from_previous_run')).to.equal(2);
    expect(value(text, 'podroute_routes_added_total')).to.equal(5);
    expect(value(text, 'podroute_routes_removed_total')).to.equal(2);
    expect(value(text, 'podroute_routes_replaced_total')).to.equal(1);
    expect(value(text, 'podroute_routes_conflicts')).to.equal(1);
    expect(value(text, 'podroute_policy_chains')).to.equal(4);
    expect(value(text, 'podroute_policy_sets')).to.equal(6);
    expect(value(text, 'podroute_policy_rules')).to.equal(17);
    expect(value(text, 'podroute_bgp_originated_prefixes')).to.equal(2);
    expect(value(text, 'podroute_bgp_learned_prefixes')).to.equal(7);
    expect(value(text, 'podroute_build_info{version="1.2.3",node="n1",nodejs="' + process.version + '"}')).to.equal(1);
    expect(text).to.include('# TYPE podroute_routes_added_total counter');
    routes = routeStatus(4, 9, 5);
    text = (await m.render()).body;
    expect(value(text, 'podroute_routes_installed')).to.equal(4);
    expect(value(text, 'podroute_routes_added_total')).to.equal(9);
    expect(value(text, 'podroute_routes_removed_total')).to.equal(5);
  });

  it('peer gauges per peer with peer, asn and type labels; peers that went away disappear', async () => {
    let report: PeerTableReport = {
      target: 'unix:///x',
      reachable: true,
      error: null,
      peers: [
        { address: '10.0.0.2', asn: 64512, type: 'node', description: 'node:n2', state: 'ESTABLISHED', adminState: 'UP', establishedSince: null, uptimeSeconds: 5, received: 2, accepted: 1, advertised: 2 },
        { address: '10.0.0.9', asn: 65100, type: 'external', description: 'config:bgp.peers[0]', state: 'IDLE', adminState: 'PREFIX_LIMIT', establishedSince: null, uptimeSeconds: null, received: 0, accepted: 0, advertised: 0 },
      ],
    };
    let reads = 0;
    const m = new AgentMetrics({
      nodeName: 'n1',
      version: 'v',
      peers: () => {
        reads++;
        return Promise.resolve(report);
      },
      processMetrics: false,
    });
    let text = (await m.render()).body;
    expect(reads).to.equal(1); // one gobgpd read per scrape, shared by every peer gauge
    expect(value(text, 'podroute_bgp_peer_established{peer="10.0.0.2",asn="64512",type="node"}')).to.equal(1);
    expect(value(text, 'podroute_bgp_peer_established{peer="10.0.0.9",asn="65100",type="external"}')).to.equal(0);
    expect(value(text, 'podroute_bgp_peer_prefix_limit_exceeded{peer="10.0.0.2",asn="64512",type="node"}')).to.equal(0);
    expect(value(text, 'podroute_bgp_peer_prefix_limit_exceeded{peer="10.0.0.9",asn="65100",type="external"}')).to.equal(1);
    expect(value(text, 'podroute_bgp_peer_prefixes_received{peer="10.0.0.2",asn="64512",type="node"}')).to.equal(2);
    expect(value(text, 'podroute_bgp_peer_prefixes_accepted{peer="10.0.0.2",asn="64512",type="node"}')).to.equal(1);
    expect(value(text, 'podroute_bgp_peer_prefixes_advertised{peer="10.0.0.2",asn="64512",type="node"}')).to.equal(2);
    expect(value(text, 'podroute_gobgpd_up')).to.equal(1);
    report = { ...report, reachable: false, error: 'gone', peers: report.peers.slice(0, 1).map((p) => ({ ...p, state: 'UNKNOWN' })) };
    text = (await m.render()).body;
    expect(value(text, 'podroute_gobgpd_up')).to.equal(0);
    expect(value(text, 'podroute_bgp_peer_established{peer="10.0.0.2",asn="64512",type="node"}')).to.equal(0);
    expect(text).to.not.include('10.0.0.9');
  });

  it('reconcile errors, last success and durations come from the loops; watch and reconnect counters are pushed', async () => {
    const health = new HealthMonitor();
    let bgpFailures = 4;
    health.register('bgp', { staleAfterMs: 60_000, observe: () => ({ lastSuccessAt: new Date(1_700_000_000_000), failures: bgpFailures }) });
    const cluster = health.register('cluster', { staleAfterMs: 60_000 });
    const m = new AgentMetrics({ nodeName: 'n1', version: 'v', health, processMetrics: false });
    cluster.heartbeat(20);
    cluster.failure(new Error('x'), 3000);
    cluster.heartbeat(); // no duration: no histogram sample
    m.watchStat('nodes', 'event');
    m.watchStat('nodes', 'event');
    m.watchStat('pods', 'connect');
    m.watchStat('pods', 'error');
    m.gobgpReconnected();
    let text = (await m.render()).body;
    expect(value(text, 'podroute_reconcile_errors_total{reconciler="bgp"}')).to.equal(4);
    expect(value(text, 'podroute_reconcile_errors_total{reconciler="cluster"}')).to.equal(1);
    expect(value(text, 'podroute_reconcile_last_success_timestamp_seconds{reconciler="bgp"}')).to.equal(1_700_000_000);
    expect(value(text, 'podroute_reconcile_duration_seconds_count{reconciler="cluster"}')).to.equal(2);
    expect(value(text, 'podroute_reconcile_duration_seconds_sum{reconciler="cluster"}')).to.equal(3.02);
    expect(value(text, 'podroute_reconcile_duration_seconds_bucket{le="0.025",reconciler="cluster"}')).to.equal(1);
    expect(value(text, 'podroute_kube_watch_events_total{kind="nodes"}')).to.equal(2);
    expect(value(text, 'podroute_kube_watch_relists_total{kind="pods"}')).to.equal(1);
    expect(value(text, 'podroute_kube_watch_errors_total{kind="pods"}')).to.equal(1);
    expect(value(text, 'podroute_gobgpd_reconnects_total')).to.equal(1);
    bgpFailures = 5;
    text = (await m.render()).body;
    expect(value(text, 'podroute_reconcile_errors_total{reconciler="bgp"}')).to.equal(5);
    m.close();
  });

  it('the LoadBalancer allocator: leading, addresses, problems by reason and counters, read at scrape time', async () => {
    const loop = { lastAttemptAt: new Date(), lastSuccessAt: new Date(), lastError: undefined, consecutiveFailures: 0, successes: 3, failures: 0 };
    let status: LoadBalancerAllocatorStatus = { leading: true, allocatedAddresses: 4, problems: { AddressInUse: 1, PoolExhausted: 2 }, statusWrites: 7, allocations: 5, releases: 1, conflicts: 2, loop };
    const m = new AgentMetrics({ nodeName: 'n1', version: 'v', loadBalancerAllocator: () => status, processMetrics: false });
    let text = (await m.render()).body;
    expect(value(text, 'podroute_lb_allocator_leading')).to.equal(1);
    expect(value(text, 'podroute_lb_addresses_allocated')).to.equal(4);
    expect(value(text, 'podroute_lb_problems{reason="PoolExhausted"}')).to.equal(2);
    expect(value(text, 'podroute_lb_allocations_total')).to.equal(5);
    expect(value(text, 'podroute_lb_releases_total')).to.equal(1);
    expect(value(text, 'podroute_lb_status_conflicts_total')).to.equal(2);
    // A follower reports no allocation of its own: only its counters stay.
    status = { ...status, leading: false };
    text = (await m.render()).body;
    expect(value(text, 'podroute_lb_allocator_leading')).to.equal(0);
    expect(value(text, 'podroute_lb_addresses_allocated')).to.equal(0);
    expect(value(text, 'podroute_lb_problems{reason="PoolExhausted"}')).to.equal(undefined);
    expect(value(text, 'podroute_lb_allocations_total')).to.equal(5);
    m.close();
  });

  it('the pod MTU with where it came from (0: the bridge plugin\'s default), read at scrape time', async () => {
    let status: PodMtuStatus | undefined;
    const m = new AgentMetrics({ nodeName: 'n1', version: 'v', podMtu: () => status, processMetrics: false });
    expect((await m.render()).body).not.to.match(/^podroute_pod_mtu\{/m);
    status = { mtu: 9000, source: 'interface' };
    expect(value((await m.render()).body, 'podroute_pod_mtu{source="interface"}')).to.equal(9000);
    status = { mtu: undefined, source: 'none' };
    const text = (await m.render()).body;
    expect(value(text, 'podroute_pod_mtu{source="none"}')).to.equal(0);
    expect(value(text, 'podroute_pod_mtu{source="interface"}')).to.equal(undefined);
    m.close();
  });

  it('each instance has its own registry (two agents in one test process do not collide)', async () => {
    const a = new AgentMetrics({ nodeName: 'a', version: 'v', processMetrics: true });
    const b = new AgentMetrics({ nodeName: 'b', version: 'v', processMetrics: true });
    a.watchStat('nodes', 'event');
    const ta = (await a.render()).body;
    const tb = (await b.render()).body;
    expect(value(ta, 'podroute_kube_watch_events_total{kind="nodes"}')).to.equal(1);
    expect(value(tb, 'podroute_kube_watch_events_total{kind="nodes"}')).to.equal(undefined);
    expect(ta).to.include('process_cpu_user_seconds_total');
    expect(a.registry).to.not.equal(b.registry);
  });
});
