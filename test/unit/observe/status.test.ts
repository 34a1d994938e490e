import { expect } from 'chai';
import { countByNeighbor, peerReport, peerType, sortPeers } from '../../../src/observe/peers.js';
import { describeRole, formatDuration, renderStatusView, renderTable, type AgentStatusReport, type StatusView } from '../../../src/observe/status.js';

const now = Date.parse('2025-01-01T12:00:00Z');

describe('peer table', () => {
  it('classifies mesh nodes by their node: description, everything else external', () => {
    expect(peerType('node:worker-2')).to.equal('node');
    expect(peerType('config:bgp.peers[0]')).to.equal('external');
    expect(peerType('annotation:podroute.io/peers[1]')).to.equal('external');
    expect(peerType('')).to.equal('external');
  });

  it('computes uptime only for established sessions and sorts nodes first, addresses numerically', () => {
    const established = peerReport(
      { address: '10.0.0.10', asn: 64512, state: 'ESTABLISHED', description: 'node:n3', establishedSince: new Date(now - 3_723_000), received: 2, accepted: 2, advertised: 1 },
      now,
    );
    expect(established).to.deep.equal({
      address: '10.0.0.10',
      asn: 64512,
      type: 'node',
      description: 'node:n3',
      state: 'ESTABLISHED',
      adminState: 'UP',
      establishedSince: new Date(now - 3_723_000).toISOString(),
      uptimeSeconds: 3723,
      received: 2,
      accepted: 2,
      advertised: 1,
    });
    const active = peerReport({ address: '10.0.0.9', asn: 65100, state: 'ACTIVE', description: 'config:bgp.peers[0]', establishedSince: new Date(now), received: 0, accepted: 0, advertised: 0 }, now);
    expect(active).to.include({ uptimeSeconds: null, establishedSince: null, type: 'external' });
    const n2 = { ...established, address: '10.0.0.9' };
    const v6 = { ...established, address: 'fd00::2' };
    expect(sortPeers([active, v6, established, n2]).map((p) => `${p.type} ${p.address}`)).to.deep.equal([
      'node 10.0.0.9',
      'node 10.0.0.10',
      'node fd00::2',
      'external 10.0.0.9',
    ]);
  });
});

describe('accepted counts', () => {
  it('counts paths per neighbor and leaves our own (no neighbor) out', () => {
    const counts = countByNeighbor([
      [{ neighborIp: '10.0.0.2' }, { neighborIp: '10.0.0.3' }],
      [{ neighborIp: '10.0.0.2' }],
      [{ neighborIp: undefined }],
      [],
    ]);
    expect([...counts].sort()).to.deep.equal([
      ['10.0.0.2', 2],
      ['10.0.0.3', 1],
    ]);
  });
});

describe('status rendering', () => {
  it('formats durations compactly', () => {
    expect(formatDuration(0)).to.equal('0s');
    expect(formatDuration(59.9)).to.equal('59s');
    expect(formatDuration(247)).to.equal('4m07s');
    expect(formatDuration(3723)).to.equal('1h02m');
    expect(formatDuration(3 * 86400 + 4 * 3600 + 5)).to.equal('3d4h');
  });

  it('aligns table columns', () => {
    expect(renderTable(['A', 'BBB'], [['xxxx', 'y'], ['z', '']])).to.equal('A     BBB\nxxxx  y\nz');
  });

  const report: AgentStatusReport = {
    node: 'n1',
    version: '0.1.0',
    generatedAt: new Date(now).toISOString(),
    gobgpd: { target: 'unix:///run/podroute/gobgp.sock', reachable: true, error: null },
    peers: [
      { address: '10.0.1.12', asn: 64601, type: 'node', description: 'node:n2', state: 'ESTABLISHED', adminState: 'UP', establishedSince: null, uptimeSeconds: 3723, received: 2, accepted: 2, advertised: 2 },
      { address: '10.0.0.1', asn: 65000, type: 'external', description: 'config:bgp.peers[0]', state: 'IDLE', adminState: 'PREFIX_LIMIT', establishedSince: null, uptimeSeconds: null, received: 0, accepted: 0, advertised: 0 },
    ],
    bgp: { originated: 2, learnedPrefixes: 2, learnedPaths: 2, tableSynced: true },
    routes: { installed: 2, added: 3, removed: 1, replaced: 0, conflicts: ['10.9.0.0/24'], keptFromPreviousRun: 1, inSync: true },
    policy: { chains: 4, sets: 3, rules: 12, invalidPolicies: 1 },
    masquerade: { inSync: true, ipv4: true, ipv6: true },
    reconcilers: [
      { name: 'bgp', state: 'ok', healthy: true, lastSuccessAt: null, ageSeconds: 12, staleAfterSeconds: 180, failures: 0, lastError: null },
      { name: 'policy', state: 'stuck', healthy: false, lastSuccessAt: null, ageSeconds: 400, staleAfterSeconds: 180, failures: 7, lastError: { message: 'iptables-restore\nfailed', at: null } },
    ],
    healthy: false,
    ready: false,
    notReadyReasons: ['external peer down is not a reason; this is a test reason'],
  };

  it('renders the agent view: header, peers, routes, policy, reconcilers', () => {
    const view: StatusView = { source: 'agent', agent: { address: '127.0.0.1:9476', reachable: true, error: null }, report, gobgpd: report.gobgpd, peers: report.peers };
    const text = renderStatusView(view);
    expect(text).to.include('podroute 0.1.0 on node n1: UNHEALTHY, NOT READY');
    expect(text).to.include('  not ready: external peer down is not a reason; this is a test reason');
    expect(text).to.include('gobgpd unix:///run/podroute/gobgp.sock: reachable');
    expect(text).to.match(/^PEER +ASN +TYPE +STATE +UPTIME +RECEIVED +ACCEPTED +ADVERTISED +DESCRIPTION$/m);
    expect(text).to.match(/^10\.0\.1\.12 +64601 +node +ESTABLISHED +1h02m +2 +2 +2 +node:n2$/m);
    expect(text).to.match(/^10\.0\.0\.1 +65000 +external +IDLE \(PREFIX_LIMIT\) +- +0 +0 +0 +config:bgp\.peers\[0\]$/m);
    expect(text).to.include('Routes installed by podroute: 2 (added 3, removed 1, replaced 0)');
    expect(text).to.include('held by other protocols, left alone: 10.9.0.0/24');
    expect(text).to.include('kept from the previous run until the BGP peers are back: 1');
    expect(text).to.include('NetworkPolicy: 4 chains, 3 sets, 12 rules, 1 invalid policies');
    expect(text).to.include('Masquerade: IPv4 + IPv6');
    expect(text).to.match(/^policy +stuck +6m40s ago +7 +iptables-restore failed$/m);
  });

  it('shows the node\'s iBGP role and marks the peers it reflects to', () => {
    const reflecting = { ...report, bgp: { ...report.bgp!, role: describeRole({ kind: 'reflector', clusterId: '10.0.0.1' }) }, peers: report.peers.map((p) => (p.type === 'node' ? { ...p, routeReflectorClient: true } : p)) };
    const text = renderStatusView({ source: 'agent', agent: { address: '127.0.0.1:9476', reachable: true, error: null }, report: reflecting, gobgpd: report.gobgpd, peers: reflecting.peers });
    expect(text).to.include('iBGP role: reflector (cluster 10.0.0.1)');
    expect(text).to.match(/^10\.0\.1\.12 +64601 +node \(rr-client\) +ESTABLISHED/m);
    expect(text).to.match(/^10\.0\.0\.1 +65000 +external +IDLE/m);
    expect(describeRole({ kind: 'client' })).to.equal('client');
    // Without a role (an agent that has no desired state yet) there is no role line.
    expect(renderStatusView({ source: 'agent', agent: { address: '127.0.0.1:9476', reachable: true, error: null }, report, gobgpd: report.gobgpd, peers: report.peers })).not.to.include('iBGP role');
  });

  it('renders the gobgpd-only view when the agent does not answer', () => {
    const view: StatusView = {
      source: 'gobgpd',
      agent: { address: '127.0.0.1:9476', reachable: false, error: 'connect ECONNREFUSED 127.0.0.1:9476' },
      report: null,
      gobgpd: { target: 'unix:///x.sock', reachable: true, error: null },
      peers: report.peers,
    };
    const text = renderStatusView(view);
    expect(text).to.include('podroute agent not answering at 127.0.0.1:9476: connect ECONNREFUSED 127.0.0.1:9476');
    expect(text).to.include('Showing gobgpd directly (peer table only).');
    expect(text).to.match(/^10\.0\.1\.12 +64601 +node +ESTABLISHED/m);
    expect(text).to.not.include('Routes installed');
  });

  it('says so when there are no peers and gobgpd is not reachable either', () => {
    const text = renderStatusView({
      source: 'gobgpd',
      agent: { address: '127.0.0.1:9476', reachable: false, error: 'timeout' },
      report: null,
      gobgpd: { target: 'unix:///x.sock', reachable: false, error: 'UNAVAILABLE: No connection established' },
      peers: [],
    });
    expect(text).to.include('gobgpd unix:///x.sock: NOT REACHABLE (UNAVAILABLE: No connection established)');
    expect(text).to.include('No BGP peers.');
  });
});
