import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { costModel, extrapolate, fitLine, injectedPrefix, renderScale, scaleTopologyText, THREE_RACKS, type NodeSample, type ScaleResult } from '../../../bench/scale.js';
import { updateReport } from '../../../bench/report.js';
import { parseArgs } from '../../../bench/run.js';
import { summarize } from '../../../bench/lib/stats.js';
import { topologySubset, type TopologyDocument } from '../../../bench/lib/topology-subset.js';
import { parseTopology, planLayout } from '../../../src/lab/topology.js';

/** A node whose costs follow base + sessions × perSession + paths × perRoute exactly. */
function node(name: string, role: NodeSample['role'], sessions: number, paths: number): NodeSample {
  const rss = 130 + sessions * 0.25 + (paths * 2) / 1024; // MiB: 256 KiB a session, 2 KiB a path
  const cpu = 2500 + sessions * 40 + paths * 0.1; // ms: 40 ms a session, 100 µs a path
  return {
    node: name,
    rack: 'tor1',
    role,
    peers: sessions,
    sessions,
    ibgpSessions: sessions - 2,
    receivedPaths: paths,
    acceptedPaths: paths,
    kernelRoutes: 34,
    routedMs: 3000,
    startCpuMs: { gobgpd: 200, agent: cpu - 200 },
    idleCpuPercent: { gobgpd: 0.1, agent: 1.9 + sessions * 0.01 },
    rssMiB: { gobgpd: 20, agent: rss - 20 },
  };
}

function result(over: Partial<ScaleResult> = {}): ScaleResult {
  const s = (v: number): ReturnType<typeof summarize> => summarize([v]);
  return {
    topology: 'topologies/three-racks.yaml',
    racks: 3,
    nodes: 18,
    nodesPerAs: 6,
    families: 2,
    modes: [
      { mode: 'mesh', agentMesh: 'same-asn', nodes: [node('r1n1', 'mesh', 7, 44), node('r1n3', 'mesh', 7, 44)], routers: [{ name: 'tor1', routedMs: 2000 }], spawnMs: 80, allRoutedMs: 9000, allSessionsMs: 9500, idleWindowMs: 15000 },
      {
        mode: 'route-reflector',
        agentMesh: 'route-reflector',
        nodes: [node('r1n1', 'reflector', 7, 54), node('r1n3', 'client', 4, 54)],
        routers: [{ name: 'tor1', routedMs: 2000 }],
        spawnMs: 80,
        allRoutedMs: 7000,
        allSessionsMs: 7600,
        idleWindowMs: 15000,
      },
    ],
    routeCost: { routes: 2000, mode: 'mesh', arrivedMs: 1500, gobgpdKiB: s(0.5), agentKiB: s(1.5), gobgpdCpuUs: s(30), agentCpuUs: s(70) },
    fault: {
      reflector: 'r1n1',
      downMs: 10000,
      recoveredMs: 16000,
      flows: [{ name: 'x/a@r1n3 → x/b@r1n4', sent: 300, lost: 0, breaches: 0, longestGapMs: 60, lostMs: 0, errors: {} }],
    },
    failures: [],
    ...over,
  };
}

describe('bench/scale: topology, cost model and report section', () => {
  it('three-racks.yaml is a valid lab of three racks of six nodes, two reflectors per rack, probe pods on other nodes', () => {
    const text = readFileSync(THREE_RACKS, 'utf8');
    const t = parseTopology(text);
    const layout = planLayout(t);
    expect(layout.racks.map((r) => r.nodes.length)).to.deep.equal([6, 6, 6]);
    const reflectors = t.nodes.filter((n) => n.labels['podroute.io/route-reflector-cluster-id'] !== undefined);
    expect(reflectors.map((n) => n.name)).to.deep.equal(['r1n1', 'r1n2', 'r2n1', 'r2n2', 'r3n1', 'r3n2']);
    expect(new Set(reflectors.map((n) => n.asn)).size).to.equal(3);
    expect(t.kubernetes.pods.some((p) => p.nodeName === 'r1n1')).to.equal(false);
  });

  it('the smoke size keeps the first racks and nodes, their links and pods, and is still a valid lab', () => {
    const small = parseTopology(scaleTopologyText(readFileSync(THREE_RACKS, 'utf8'), { racks: 2, nodesPerRack: 3 }));
    expect(small.routers.map((r) => r.name)).to.deep.equal(['spine1', 'tor1', 'tor2']);
    expect(small.nodes.map((n) => n.name)).to.deep.equal(['r1n1', 'r1n2', 'r1n3', 'r2n1', 'r2n2', 'r2n3']);
    expect(small.links.some((l) => (l.type === 'p2p' ? l.b === 'tor3' : l.tor === 'tor3'))).to.equal(false);
    expect(small.kubernetes.pods.map((p) => p.name)).to.deep.equal(['a', 'c', 'd']);
  });

  it("--quick runs scale in one rack of four nodes: two reflectors, two clients with pods, the shapes' sessions differ", () => {
    const { options } = parseArgs(['--quick']);
    expect(options.only).to.include('scale');
    expect(options.only).to.not.include('bfd-soak');
    const t = parseTopology(scaleTopologyText(readFileSync(THREE_RACKS, 'utf8'), options.scale.shrink));
    const reflectors = t.nodes.filter((n) => n.labels['podroute.io/route-reflector-cluster-id'] !== undefined).map((n) => n.name);
    expect(reflectors).to.deep.equal(['r1n1', 'r1n2']);
    const clients = t.nodes.map((n) => n.name).filter((n) => !reflectors.includes(n));
    expect(clients).to.deep.equal(['r1n3', 'r1n4']);
    // A full mesh of the rack: 3 iBGP sessions per node; a client: one per reflector.
    expect(t.nodes.length - 1).to.not.equal(reflectors.length);
    // Pods on both clients: the reflector-kill probes include a route that only reflection carries.
    for (const c of clients) expect(t.kubernetes.pods.some((p) => p.nodeName === c), c).to.equal(true);
    expect(parseArgs([]).options.scale.shrink).to.equal(undefined);
  });

  it('a topology subset drops the external hosts of a dropped router and refuses an unknown ToR', () => {
    const doc: TopologyDocument = {
      routers: [{ name: 'spine1', role: 'spine' }, { name: 'tor1', role: 'tor' }, { name: 'tor2', role: 'tor' }],
      links: [{ type: 'p2p', a: 'spine1', b: 'tor2' }, { type: 'rack', tor: 'tor2' }, { type: 'rack', tor: 'tor1' }],
      nodes: [{ name: 'a', rack: 'tor1' }, { name: 'b', rack: ['tor1', 'tor2'] }],
      externalHosts: [{ router: 'tor2' }, { router: 'spine1' }],
    };
    const sub = topologySubset(doc, { tors: ['tor1'] });
    expect(sub.nodes.map((n) => n.name)).to.deep.equal(['a']);
    expect(sub.links).to.deep.equal([{ type: 'rack', tor: 'tor1' }]);
    expect(sub.externalHosts).to.deep.equal([{ router: 'spine1' }]);
    expect(doc.nodes).to.have.length(2);
    expect(() => topologySubset(doc, { tors: ['tor9'] })).to.throw('no router named tor9');
    expect(YAML.stringify(sub)).to.not.include('kubernetes');
  });

  it('announced prefixes are distinct /32s inside 198.18.0.0/15', () => {
    expect(injectedPrefix(0)).to.equal('198.18.0.0/32');
    expect(injectedPrefix(257)).to.equal('198.18.1.1/32');
    expect(injectedPrefix(65536)).to.equal('198.19.0.0/32');
  });

  it('fits a line, and refuses when x does not vary', () => {
    const line = fitLine([{ x: 1, y: 3 }, { x: 2, y: 5 }, { x: 4, y: 9 }]);
    expect(line!.a).to.be.closeTo(1, 1e-9);
    expect(line!.b).to.be.closeTo(2, 1e-9);
    expect(fitLine([{ x: 3, y: 1 }, { x: 3, y: 2 }])).to.equal(undefined);
  });

  it('recovers the per-session cost once the per-route share is taken off, and extrapolates with the stated formula', () => {
    const m = costModel(result())!;
    expect(m.perRoute.rssKiB).to.equal(2);
    expect(m.perRoute.cpuUs).to.equal(100);
    expect(m.perSession.rssKiB).to.be.closeTo(256, 1e-6);
    expect(m.perSession.startCpuMs).to.be.closeTo(40, 1e-6);
    expect(m.base.rssMiB).to.be.closeTo(130, 1e-6);
    const [mesh, reflector, client] = extrapolate(m, 1000, { reflectors: 2, families: 2, torSessions: 2 });
    expect(mesh).to.include({ shape: 'full mesh', sessions: 1001, clusterSessions: 499_500, paths: 1998, kernelRoutes: 1998 });
    expect(reflector).to.include({ shape: 'reflector', sessions: 1001, clusterSessions: 1997, paths: 1998 + 1996 });
    expect(client).to.include({ shape: 'client', sessions: 4, clusterSessions: 1997, paths: 3996, kernelRoutes: 1998 });
    expect(mesh!.rssMiB).to.be.closeTo(130 + (1001 * 256 + 1998 * 2) / 1024, 1e-6);
    expect(client!.startCpuS).to.be.closeTo((2500 + 4 * 40 + 3996 * 0.1) / 1000, 1e-6);
    // A negative fitted per-session cost is noise: it counts as 0.
    const noisy = { ...m, perSession: { rssKiB: -50, startCpuMs: -1, idleCpuPercent: -0.1 } };
    expect(extrapolate(noisy, 1000, { reflectors: 2, families: 2, torSessions: 2 })[0]!.rssMiB).to.be.closeTo(130 + (1998 * 2) / 1024, 1e-6);
  });

  it('renders both shapes, the fault with its target, the formula and the table for 1,000 and 5,000 nodes', () => {
    const { lines, targets } = renderScale(result());
    const md = lines.join('\n');
    expect(md).to.include('| mesh (`bgp.mesh: same-asn`) | mesh × 2 |');
    expect(md).to.include('| route-reflector (`bgp.mesh: route-reflector`) | reflector × 1 |');
    expect(md).to.include('cost = base + sessions × per-session + paths × per-route');
    expect(md).to.match(/\| 5,000 \| full mesh \| 5,001 \| 12,497,500 \|/);
    expect(md).to.match(/\| 1,000 \| client \| 4 \| 1,997 \|/);
    expect(targets).to.deep.equal([{ what: 'one route reflector killed (SIGKILL) while probes flow: 0 probes lost', measured: '0 of 300 lost', met: true, miss: targets[0]!.miss }]);
    const lost = renderScale(result({ fault: { ...result().fault!, flows: [{ ...result().fault!.flows[0]!, lost: 3 }] } })).targets[0]!;
    expect(lost.met).to.equal(false);
    const none = renderScale(result({ fault: undefined, routeCost: undefined }));
    expect(none.targets[0]!.met).to.equal(undefined);
    expect(none.lines.join('\n')).to.include('No extrapolation');
  });

  it('--update adds section 8 and its target row, keeps the rest, and is idempotent', () => {
    const machine = { date: '2026-01-02', gitCommit: 'abc', cpu: 'cpu', cores: 2, memoryGiB: 4, os: 'os', kernel: 'k', loadAtStart: [1, 1, 1], node: 'v20', versions: {} };
    const existing = ['# podroute benchmarks', '', "## Targets of issue 7 (and issue 4's NetworkPolicy targets)", '', '| target | this run | verdict |', '|---|---|---|', '| old target | 1 ms | met |', '', '## 7. Services: routes at the ToR and LoadBalancer allocation', '', 'services text', ''].join('\n');
    const r = { machine, reps: 1, durationS: 300, loadAtEnd: [1, 1, 1], errors: {}, scale: result() };
    const once = updateReport(existing, r, ['scale']);
    expect(once).to.include('services text');
    expect(once).to.include("issue 17's scale lab");
    expect(once).to.include('## 8. Scale: full mesh and route reflectors\n\nMeasured apart from the rest of this report (`node dist/bench/run.js --only scale --update`)');
    expect(once).to.include('| one route reflector killed (SIGKILL) while probes flow: 0 probes lost | 0 of 300 lost | met |');
    expect(once.indexOf('## 8.')).to.be.greaterThan(once.indexOf('services text'));
    expect(updateReport(once, r, ['scale'])).to.equal(once);
  });
});
