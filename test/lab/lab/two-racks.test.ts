// two-racks comes up in network namespaces with the real parts, converges, and `lab down` leaves nothing.
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { nodeProbeSocket } from '../../../src/lab/kubelet/kubelet.js';
import { bgpSummary, frrFiles } from '../../../src/lab/frr.js';
import { hostRoutes } from '../../../src/lab/netns.js';
import { labDown } from '../../../src/lab/down.js';
import { labExec } from '../../../src/lab/exec.js';
import { labStatus, type LabStatusReport } from '../../../src/lab/status.js';
import { labUp } from '../../../src/lab/up.js';
import { runMatrix } from '../../../src/lab/matrix.js';
import { labPaths } from '../../../src/lab/paths.js';
import { closeProbeConnections, parsePodReply, probe } from '../../../src/lab/probe.js';
import { readLabState } from '../../../src/lab/state.js';
import { cidrContainsAddress, cidrsOverlap, parseTopology, planLayout } from '../../../src/lab/topology.js';
import { leftovers, NOTHING, repoRoot, testLabName } from './leftovers.js';
import { pollUntil } from '../../poll.js';
import { addressBits, familyOf } from '../../../src/routes/ip-prefix.js';

const LAB = testLabName('h3t', 't');
const topologyFile = path.join(repoRoot(), 'topologies', 'two-racks.yaml');
const topology = parseTopology(readFileSync(topologyFile, 'utf8'));
const layout = planLayout(topology);

describe('lab: two-racks in network namespaces', function () {
  this.timeout(240_000);
  let status: LabStatusReport;
  let recordedPids: number[] = [];
  let hostLinksBefore: string[] = [];
  const hostLinks = (): string[] =>
    (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname).sort();

  before(async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    hostLinksBefore = hostLinks();
    status = await labUp({ topologyFile, name: LAB, timeoutMs: 180_000 });
    recordedPids = (readLabState(LAB)?.processes ?? []).map((p) => p.pid);
  });

  after(async () => {
    closeProbeConnections();
    if (readLabState(LAB) !== undefined) await labDown(LAB);
  });

  it('comes up: one namespace per router, node and external host, and the host namespace has no lab link', () => {
    expect(status.phase).to.equal('up');
    const state = readLabState(LAB);
    expect(state?.netns.sort()).to.deep.equal(layout.members.map((m) => labPaths(LAB).netns(m.name)).sort());
    // The host namespace has exactly the links it had before (the lab creates its veths inside its namespaces).
    expect(hostLinks()).to.deep.equal(hostLinksBefore);
  });

  it('every router-to-router BGP session is Established, both families (vtysh json)', async () => {
    for (const router of topology.routers) {
      const neighbors = await bgpSummary(frrFiles(labPaths(LAB).frrDir(router.name)));
      const fabric = layout.fabric.filter((s) => s.router === router.name);
      expect(fabric.length).to.be.greaterThan(0);
      for (const s of fabric) {
        const n = neighbors.find((x) => x.family === s.family && x.address === s.peerAddress);
        expect(n?.state, `${router.name} -> ${s.peer} ${s.family}`).to.equal('Established');
      }
    }
  });

  it('routes propagate with usable next hops: a node reaches the other rack and the external host, v4 and v6', async () => {
    const socket = nodeProbeSocket(LAB, 'r1n1');
    // The external host's server answers on 80; the other rack's node address is reachable (no listener: refused).
    for (const target of ['198.51.100.10', '2001:db8:100::10']) {
      const result = await probe(socket, { target, port: 80, protocol: 'tcp', timeoutMs: 3000 });
      expect(result.ok, `${target}: ${result.error}`).to.equal(true);
      expect(parsePodReply(result.reply ?? '')?.identity).to.equal('external/ext1');
    }
    for (const target of ['10.10.2.12', 'fd00:10:2::c']) {
      const result = await probe(socket, { target, port: 9, protocol: 'tcp', timeoutMs: 3000 });
      expect(result.error, target).to.equal('refused');
    }
  });

  it("every node's gobgpd answers the GoBGP client over its unix socket", async () => {
    for (const node of topology.nodes) {
      const client = new GobgpClient({ target: `unix://${labPaths(LAB).gobgpSocket(node.name)}` });
      client.start();
      try {
        const global = await client.getBgp();
        // Nobody started BGP yet (that is the agent's job): gobgpd answers with AS 0.
        expect(global.asn, node.name).to.be.a('number');
      } finally {
        client.close();
      }
    }
    expect(status.nodes.every((n) => n.gobgpd === 'answering')).to.equal(true);
  });

  it("pods run with IPs from their node's podCIDRs (both families) and answer on their ports from inside their node", async () => {
    const paths = labPaths(LAB);
    for (const want of topology.kubernetes.pods) {
      const pod = status.pods.find((p) => p.namespace === want.namespace && p.name === want.name);
      expect(pod?.phase, `${want.namespace}/${want.name}`).to.equal('Running');
      expect(pod?.netns).to.equal(paths.podNetns(want.namespace, want.name));
      const node = topology.nodes.find((n) => n.name === want.nodeName);
      expect(pod?.ips).to.have.length(2);
      for (const ip of pod?.ips ?? []) {
        expect(node?.podCIDRs.some((c) => cidrContainsAddress(c, ip)), `${ip} in ${node?.podCIDRs.join(',')}`).to.equal(true);
        for (const port of want.containerPorts) {
          const result = await probe(nodeProbeSocket(LAB, want.nodeName), {
            target: ip,
            port: port.containerPort,
            protocol: port.protocol === 'UDP' ? 'udp' : 'tcp',
            timeoutMs: 3000,
          });
          expect(result.ok, `${want.namespace}/${want.name} ${ip} ${port.containerPort}/${port.protocol}: ${result.error}`).to.equal(true);
          expect(parsePodReply(result.reply ?? '')?.identity).to.equal(`${want.namespace}/${want.name}`);
        }
      }
    }
  });

  it('status reports the API URL and kubeconfig, and the lab API server serves the Nodes with their addresses', async () => {
    const fresh = await labStatus(LAB);
    expect(fresh.apiUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(readFileSync(fresh.kubeconfig, 'utf8')).to.include(fresh.apiUrl ?? 'missing');
    const res = await fetch(`${fresh.apiUrl}/api/v1/nodes/r2n1`);
    const node = (await res.json()) as { spec: { podCIDRs: string[] }; status: { addresses: { type: string; address: string }[] }; metadata: { annotations: Record<string, string> } };
    expect(node.spec.podCIDRs).to.deep.equal(['10.244.3.0/24', 'fd00:10:244:3::/64']);
    expect(node.status.addresses.filter((a) => a.type === 'InternalIP').map((a) => a.address)).to.deep.equal(['10.10.2.11', 'fd00:10:2::b']);
    expect(node.metadata.annotations['podroute.io/asn']).to.equal('64602');
  });

  it('exec runs a command in a router namespace (vtysh finds its router)', async () => {
    const quiet = { stdio: 'ignore' } as const;
    expect(await labExec(LAB, 'router/tor1', ['vtysh', '-c', 'show bgp summary json'], quiet)).to.equal(0);
    expect(await labExec(LAB, 'node/r1n1', ['ip', 'route', 'get', '10.10.2.11'], quiet)).to.equal(0);
    // A command that fails inside the namespace gives its exit code back.
    expect(await labExec(LAB, 'host/ext1', ['ip', 'link', 'show', 'nosuchlink0'], quiet)).not.to.equal(0);
  });

  it('the matrix probes every pod from every pod: pods on one node reach each other, nothing is answered by the wrong pod', async () => {
    const report = await runMatrix(LAB, { timeoutMs: 500 });
    // 9 pods x 9 pods x 2 families x 4 ports, plus 9 pods x the external host's 2 families x 2 ports.
    expect(report.probes).to.have.length(9 * 9 * 8 + 9 * 4);
    const sameNode = report.probes.filter((p) => {
      const from = topology.kubernetes.pods.find((x) => `${x.namespace}/${x.name}` === p.from);
      const to = topology.kubernetes.pods.find((x) => `${x.namespace}/${x.name}` === p.to);
      return from !== undefined && to !== undefined && from.nodeName === to.nodeName;
    });
    expect(sameNode.length).to.be.greaterThan(0);
    expect(sameNode.filter((p) => !p.ok).map((p) => `${p.from}->${p.to} ${p.target} ${p.port}/${p.protocol}: ${p.error}`)).to.deep.equal([]);
    expect(report.probes.filter((p) => p.error?.startsWith('answered by'))).to.deep.equal([]);
  });

  it("every node's podCIDRs, advertised by its agent to its ToR, reach the spine's kernel FIB, v4 and v6", async () => {
    const spineFib = (family: '-4' | '-6'): { dst: string; gateway?: string; nexthops?: unknown[] }[] =>
      JSON.parse(execFileSync('ip', ['-n', labPaths(LAB).netns('spine1'), '-j', family, 'route'], { encoding: 'utf8' })) as { dst: string }[];
    const wanted = topology.nodes.flatMap((n) => n.podCIDRs);
    await pollUntil('every podCIDR in the spine FIB', () => {
      const fib = [...spineFib('-4'), ...spineFib('-6')].map((r) => r.dst);
      return wanted.every((cidr) => fib.includes(cidr)) ? true : undefined;
    }, { timeoutMs: 60_000 });
    // Rack 1's podCIDRs go towards tor1 (10.255.1.1), rack 2's towards tor2.
    expect(spineFib('-4').find((r) => r.dst === '10.244.1.0/24')?.gateway).to.equal('10.255.1.1');
    expect(spineFib('-4').find((r) => r.dst === '10.244.3.0/24')?.gateway).to.equal('10.255.1.3');
  });

  it("no lab namespace routes towards the host's own networks", async () => {
    const host = await hostRoutes();
    expect(host.length).to.be.greaterThan(0);
    for (const member of layout.members) {
      const ns = labPaths(LAB).netns(member.name);
      for (const family of ['-4', '-6']) {
        const routes = JSON.parse(execFileSync('ip', ['-n', ns, '-j', family, 'route', 'show', 'table', 'all'], { encoding: 'utf8' })) as { dst: string; type?: string }[];
        for (const r of routes.filter((x) => x.dst !== 'default' && !x.dst.startsWith('fe80:') && (x.type === undefined || x.type === 'unicast'))) {
          const dst = r.dst.includes('/') ? r.dst : `${r.dst}/${addressBits(familyOf(r.dst))}`;
          for (const h of host) expect(cidrsOverlap(dst, h), `${ns}: ${dst} overlaps host route ${h}`).to.equal(false);
        }
      }
    }
    // Routers have no default route: traffic for anything outside the lab dies at the first router.
    for (const router of topology.routers) {
      const result = spawnSync('ip', ['-n', labPaths(LAB).netns(router.name), 'route', 'get', '8.8.8.8']);
      expect(result.status, router.name).not.to.equal(0);
    }
  });

  it('down leaves nothing: no namespace, process, /var/run/frr dir, file or mount', async () => {
    expect(leftovers(LAB, recordedPids).netns.length).to.be.greaterThan(0);
    await labDown(LAB);
    expect(leftovers(LAB, recordedPids)).to.deep.equal(NOTHING);
  });
});
