import { expect } from 'chai';
import {
  allUp,
  countChanges,
  countLoggedChanges,
  parseBfdMetrics,
  parseBirdBfd,
  parseBirdBgpProtocols,
  parseFrrBfd,
  parseFrrBgpNeighbors,
  renderBfdSoak,
  SOURCES,
  type BfdSoakResult,
  type Snapshot,
  type Source,
  type SourceChanges,
} from '../../../bench/bfd-soak.js';
import { updateReport } from '../../../bench/report.js';

const METRICS = [
  '# HELP podroute_bfd_session_state BFD session state per peer: 1 for the current state (AdminDown, Down, Init, Up).',
  '# TYPE podroute_bfd_session_state gauge',
  'podroute_bfd_session_state{peer="10.10.1.0",state="AdminDown"} 0',
  'podroute_bfd_session_state{peer="10.10.1.0",state="Down"} 0',
  'podroute_bfd_session_state{peer="10.10.1.0",state="Init"} 0',
  'podroute_bfd_session_state{peer="10.10.1.0",state="Up"} 1',
  'podroute_bfd_session_state{peer="fd00:10:2::",state="Up"} 0',
  'podroute_bfd_session_state{peer="fd00:10:2::",state="Down"} 1',
  '# TYPE podroute_bfd_state_changes_total counter',
  'podroute_bfd_state_changes_total{peer="10.10.1.0"} 2',
  'podroute_bfd_state_changes_total{peer="fd00:10:2::"} 5',
  'podroute_bgp_peer_established{peer="10.10.1.0"} 1',
].join('\n');

const COMPANION_LOG = [
  '{"level":"info","timestamp":"2026-12-07T07:00:01.000Z","component":"bfd","msg":"BFD companion running"}',
  '{"level":"info","timestamp":"2026-12-07T07:00:02.100Z","component":"bfd","msg":"BFD session state changed","peer":"10.10.1.0","from":"Down","to":"Init","diag":0}',
  '{"level":"info","timestamp":"2026-12-07T07:00:02.300Z","component":"bfd","msg":"BFD session state changed","peer":"10.10.1.0","from":"Init","to":"Up","diag":0}',
  '{"level":"info","timestamp":"2026-12-07T07:00:02.400Z","component":"bfd","msg":"BFD session state changed","peer":"10.10.2.0","from":"Down","to":"Up","diag":0}',
].join('\n');

// FRR 8.4 bfdd: `show bfd peers counters json` and `show bfd peers json` (fields trimmed).
const FRR_COUNTERS = JSON.stringify([
  { multihop: false, peer: '10.10.1.1', local: '10.10.1.0', vrf: 'default', interface: 'to-r1n1', 'control-packet-input': 3000, 'control-packet-output': 3001, 'session-up': 1, 'session-down': 0, 'zebra-notifications': 2 },
  { multihop: false, peer: 'fd00:10:1::1', local: 'fd00:10:1::', vrf: 'default', interface: 'to-r1n1', 'session-up': 2, 'session-down': 1 },
]);
const FRR_PEERS = JSON.stringify([
  { multihop: false, peer: '10.10.1.1', local: '10.10.1.0', vrf: 'default', interface: 'to-r1n1', id: 1, 'remote-id': 7, status: 'up', uptime: 600 },
  { multihop: false, peer: 'fd00:10:1::1', local: 'fd00:10:1::', vrf: 'default', interface: 'to-r1n1', id: 2, 'remote-id': 8, status: 'down', downtime: 3 },
]);

const BIRD_BFD = [
  'BIRD 2.0.12 ready.',
  'bfd1:',
  'IP address                Interface  State      Since         Interval  Timeout',
  '10.10.2.1                 to-r1n1    Up         07:00:03.512    0.200    0.600',
  'fd00:10:2::1              to-r1n1    Init       07:05:41.007    1.000    0.000',
].join('\n');

const BIRD_PROTOCOLS = [
  'BIRD 2.0.12 ready.',
  'Name       Proto      Table      State  Since         Info',
  'device1    Device     ---        up     07:00:00.101  ',
  'kernel_ipv4 Kernel    master4    up     07:00:00.101  ',
  'fabric_10_255_1_2 BGP ---        up     07:00:04.220  Established   ',
  'node_10_10_2_1 BGP    ---        up     07:00:05.100  Established   ',
  'node_fd00_10_2__1 BGP ---        start  07:05:41.300  Active        Socket: Connection refused',
  'nodes_range_0 BGP     ---        start  07:00:00.101  Passive       ',
].join('\n');

const FRR_NEIGHBORS = JSON.stringify({
  '10.10.1.1': { remoteAs: 64601, bgpState: 'Established', connectionsEstablished: 1, connectionsDropped: 0 },
  '10.255.1.0': { remoteAs: 65000, bgpState: 'Established', connectionsEstablished: 2, connectionsDropped: 1 },
  'fd00:10:1::1': { remoteAs: 64601, bgpState: 'Active', connectionsEstablished: 1, connectionsDropped: 1 },
});

function snapshot(over: Partial<Snapshot> = {}): Snapshot {
  return {
    'companion-log': { 'r1n1 10.10.1.0': { count: 2 } },
    'agent-metric': { 'r1n1 10.10.1.0': { up: true, count: 2 } },
    'frr-bfd': { 'tor1 10.10.1.1%to-r1n1': { up: true, count: 1 } },
    'bird-bfd': { 'tor2 10.10.2.1%to-r1n1': { up: true, since: '07:00:03.512' } },
    'frr-bgp': { 'tor1 10.10.1.1': { up: true, count: 1 } },
    'bird-bgp': { 'tor2 node_10_10_2_1': { up: true, since: '07:00:05.100' } },
    ...over,
  };
}

const none = (sessions = 8): SourceChanges => ({ sessions, changes: 0, changed: [], downAtEnd: [] });

function result(over: Partial<BfdSoakResult> = {}): BfdSoakResult {
  return {
    topology: 'topologies/dual-homed.yaml',
    timers: { minTxMs: 200, minRxMs: 200, multiplier: 3 },
    durationS: 600,
    busyWorkers: 2,
    churnIntervalMs: 5000,
    churnOps: 239,
    churnErrors: 0,
    cores: 2,
    load1: { mean: 4.2, min: 2.1, max: 5.3, samples: 60 },
    loadAtEnd: [4.8, 4.1, 3.0],
    machineBusyPercent: 99.6,
    processes: [
      { name: 'bfd/r1n1', cpuPercent: 1.9 },
      { name: 'busy loop 1', cpuPercent: 71.5 },
    ],
    bySource: Object.fromEntries(SOURCES.map((s) => [s, none(s.endsWith('bgp') ? 10 : 16)])) as Record<Source, SourceChanges>,
    events: [],
    ...over,
  };
}

describe('bench/bfd-soak: reading the sources', () => {
  it("reads each peer's state changes and Up state from the agent's /metrics", () => {
    expect(parseBfdMetrics(METRICS)).to.deep.equal({ '10.10.1.0': { up: true, count: 2 }, 'fd00:10:2::': { up: false, count: 5 } });
  });

  it("counts the companion's 'BFD session state changed' lines per peer", () => {
    expect(countLoggedChanges(COMPANION_LOG)).to.deep.equal({ '10.10.1.0': { count: 2 }, '10.10.2.0': { count: 1 } });
    expect(countLoggedChanges('')).to.deep.equal({});
  });

  it("adds FRR bfdd's session-up and session-down per peer and takes the status from the peers list", () => {
    expect(parseFrrBfd(FRR_COUNTERS, FRR_PEERS)).to.deep.equal({
      '10.10.1.1%to-r1n1': { count: 1, up: true },
      'fd00:10:1::1%to-r1n1': { count: 3, up: false },
    });
  });

  it("reads BIRD's BFD sessions with their state and Since", () => {
    expect(parseBirdBfd(BIRD_BFD)).to.deep.equal({
      '10.10.2.1%to-r1n1': { up: true, since: '07:00:03.512' },
      'fd00:10:2::1%to-r1n1': { up: false, since: '07:05:41.007' },
    });
    // A Since printed with its date stays one value.
    expect(parseBirdBfd('10.10.2.1   to-r1n1   Up   2026-12-06 23:59:59   0.200   0.600')).to.deep.equal({ '10.10.2.1%to-r1n1': { up: true, since: '2026-12-06 23:59:59' } });
  });

  it("reads FRR's connections established and dropped per neighbor", () => {
    expect(parseFrrBgpNeighbors(FRR_NEIGHBORS)).to.deep.equal({
      '10.10.1.1': { up: true, count: 1 },
      '10.255.1.0': { up: true, count: 3 },
      'fd00:10:1::1': { up: false, count: 2 },
    });
  });

  it("reads BIRD's BGP protocols (only BGP, not the neighbor range's listener), Established and up or not, with Since", () => {
    expect(parseBirdBgpProtocols(BIRD_PROTOCOLS)).to.deep.equal({
      fabric_10_255_1_2: { up: true, since: '07:00:04.220' },
      node_10_10_2_1: { up: true, since: '07:00:05.100' },
      node_fd00_10_2__1: { up: false, since: '07:05:41.300' },
    });
  });
});

describe('bench/bfd-soak: counting between two snapshots', () => {
  it('counts nothing when nothing changed, and sees every session Up', () => {
    const changes = countChanges(snapshot(), snapshot());
    for (const s of SOURCES) expect(changes[s], s).to.deep.equal({ sessions: 1, changes: 0, changed: [], downAtEnd: [] });
    expect(allUp(snapshot())).to.equal(true);
  });

  it('counts a grown counter by its difference, a moved Since as one, and a session that appeared or went away as one', () => {
    const after = snapshot({
      'agent-metric': { 'r1n1 10.10.1.0': { up: true, count: 4 } },
      'bird-bfd': { 'tor2 10.10.2.1%to-r1n1': { up: true, since: '07:06:00.000' } },
      'frr-bgp': { 'tor1 10.10.1.1': { up: false, count: 2 } },
      'bird-bgp': { 'tor2 dyn1': { up: true, since: '07:06:01.000' } },
    });
    const changes = countChanges(snapshot(), after);
    expect(changes['agent-metric']).to.deep.equal({ sessions: 1, changes: 2, changed: ['r1n1 10.10.1.0: +2'], downAtEnd: [] });
    expect(changes['bird-bfd']).to.deep.equal({ sessions: 1, changes: 1, changed: ['tor2 10.10.2.1%to-r1n1: since 07:00:03.512 → 07:06:00.000'], downAtEnd: [] });
    expect(changes['frr-bgp']).to.deep.equal({ sessions: 1, changes: 1, changed: ['tor1 10.10.1.1: +1'], downAtEnd: ['tor1 10.10.1.1'] });
    expect(changes['bird-bgp'].changes).to.equal(2);
    expect(changes['bird-bgp'].changed).to.deep.equal(['tor2 dyn1: appeared', 'tor2 node_10_10_2_1: went away']);
    expect(changes['companion-log'].changes).to.equal(0);
    expect(allUp(after)).to.equal(false);
  });

  it("does not count BIRD's Since drifting by a millisecond between reads, nor a few ms; a later Since counts", () => {
    const at = (since: string) => snapshot({ 'bird-bfd': { 'tor2 10.10.2.1%to-r1n1': { up: true, since } } });
    // As the soak of eebead2 read it: 11:31:41.183 before the window, 11:31:41.184 after, no state change anywhere.
    expect(countChanges(at('11:31:41.183'), at('11:31:41.184'))['bird-bfd'].changes).to.equal(0);
    expect(countChanges(at('11:31:41.183'), at('11:31:41.193'))['bird-bfd'].changes).to.equal(0);
    expect(countChanges(at('11:31:41.183'), at('11:31:41.194'))['bird-bfd'].changes).to.equal(1);
    expect(countChanges(at('11:31:41.183'), at('11:36:02.500'))['bird-bfd'].changed).to.deep.equal(['tor2 10.10.2.1%to-r1n1: since 11:31:41.183 → 11:36:02.500']);
    expect(countChanges(at('2026-12-06 23:59:59.999'), at('2026-12-07 00:00:00.001'))['bird-bfd'].changes).to.equal(0);
    // Not comparable as times: any change counts.
    expect(countChanges(at('11:31:41.183'), at('2026-12-07 11:31:41.183'))['bird-bfd'].changes).to.equal(1);
    expect(countChanges(at('yesterday'), at('today'))['bird-bfd'].changes).to.equal(1);
  });

  it('is not all Up while a source has no session yet', () => {
    expect(allUp(snapshot({ 'bird-bfd': {} }))).to.equal(false);
  });
});

describe('bench/bfd-soak report section', () => {
  it('shows the load, the sessions and changes per source, the CPU, and meets both targets with 0 changes', () => {
    const { lines, targets } = renderBfdSoak(result());
    const md = lines.join('\n');
    expect(md).to.include('**200 ms x 3**');
    expect(md).to.include('2 busy-loop processes (one per core of 2) run for **10 min**');
    expect(md).to.include('a pod comes or goes on the next node every 5 s (239 changes, 0 failed)');
    expect(md).to.include('| 1-minute load average through the window (mean / min / max) | 4.2 / 2.1 / 5.3 (60 samples) |');
    expect(md).to.include('| all 2 cores busy (/proc/stat, over the window) | 100 % |');
    expect(md).to.include("| nodes: the companions' logs ('BFD session state changed') | 16 | 0 | none |");
    expect(md).to.include('| BGP at the BIRD ToR: `show protocols` (Since) | 10 | 0 | none |');
    expect(md).to.include('| bfd/r1n1 | 1.9 % |');
    expect(targets.map((t) => [t.what, t.met])).to.deep.equal([
      ['BFD (200 ms x 3, both ToR stacks) on a loaded machine over 10 min: 0 state changes', true],
      ['BGP sessions over the same 10 min: 0 flaps', true],
    ]);
    expect(targets[0]!.measured).to.equal('0 (0 / 0 / 0 / 0 at companion-log / agent-metric / frr-bfd / bird-bfd; load 4.2 on 2 cores)');
  });

  it('misses the targets with a change or a session down at the end, and lists the events', () => {
    const bySource = result().bySource;
    bySource['bird-bfd'] = { sessions: 8, changes: 1, changed: ['tor2 10.10.2.1%to-r1n1: since a → b'], downAtEnd: [] };
    bySource['frr-bgp'] = { sessions: 10, changes: 0, changed: [], downAtEnd: ['tor1 10.10.1.1'] };
    const { lines, targets } = renderBfdSoak(result({ bySource, events: ['2026-12-07T07:06:00.000Z r1n1 ↔ 10.10.2.0: Up → Down (diag 1)'], durationS: 90 }));
    const md = lines.join('\n');
    expect(md).to.include('| BIRD ToR: `show bfd sessions` (Since) | 8 | **1** (tor2 10.10.2.1%to-r1n1: since a → b) | none |');
    expect(md).to.include('- 2026-12-07T07:06:00.000Z r1n1 ↔ 10.10.2.0: Up → Down (diag 1)');
    expect(md).to.include('run for **1.5 min**');
    expect(targets[0]!.met).to.equal(false);
    expect(targets[0]!.measured).to.include('1 (0 / 0 / 0 / 1 at');
    expect(targets[1]!.met).to.equal(false);
    expect(targets[1]!.measured).to.equal('0, not Established at the end: frr-bgp tor1 10.10.1.1');
  });

  it('--update adds section 9 and its target rows, keeps the rest, and is idempotent', () => {
    const machine = { date: '2026-01-02', gitCommit: 'abc', cpu: 'cpu', cores: 2, memoryGiB: 4, os: 'os', kernel: 'k', loadAtStart: [1, 1, 1], node: 'v20', versions: {} };
    const existing = ['# podroute benchmarks', '', "## Targets of issue 7 (and issue 4's NetworkPolicy targets)", '', '| target | this run | verdict |', '|---|---|---|', '| old target | 1 ms | met |', '', '## 8. Scale: full mesh and route reflectors', '', 'scale text', ''].join('\n');
    const r = { machine, reps: 1, durationS: 660, loadAtEnd: [1, 1, 1], errors: {}, bfdSoak: result() };
    const once = updateReport(existing, r, ['bfd-soak']);
    expect(once).to.include('scale text');
    expect(once).to.include("issue 17's scale lab and BFD soak");
    expect(once).to.include('## 9. BFD under load: state changes over a soak\n\nMeasured apart from the rest of this report (`node dist/bench/run.js --only bfd-soak --update`)');
    expect(once).to.include('| BGP sessions over the same 10 min: 0 flaps | 0 | met |');
    expect(once).to.include('| old target | 1 ms | met |');
    expect(once.indexOf('## 9.')).to.be.greaterThan(once.indexOf('scale text'));
    expect(updateReport(once, r, ['bfd-soak'])).to.equal(once);
  });
});
