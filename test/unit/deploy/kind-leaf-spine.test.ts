// containerlab/kind-leaf-spine against itself and against deploy/overlays/as-per-rack: the wiring, the FRR
// configs (ASNs, neighbors, listen ranges, passwords, prefix-lists) and the kind cluster agree with the peers,
// passwords and pod ranges the overlay gives the agents.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import ipaddr from 'ipaddr.js';
import { expect } from 'chai';
import YAML from 'yaml';
import { canonicalCIDR } from '../../../src/config/agent-config.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';
import { agentConfigOf, kustomize, readRepoFile, repoPath, type K8sObject } from './manifests.js';

const execFileAsync = promisify(execFile);
const LAB_DIR = 'containerlab/kind-leaf-spine';
const CLAB_FILE = `${LAB_DIR}/kind-leaf-spine.clab.yml`;
const RACK_LABEL = 'podroute.io/rack';
const ASN_ANNOTATION = 'podroute.io/asn';

interface ClabNode {
  kind: string;
  image?: string;
  binds?: string[];
  exec?: string[];
  'startup-config'?: string;
}
interface Clab {
  name: string;
  topology: { nodes: Record<string, ClabNode>; links: { endpoints: string[] }[] };
}

interface FrrConfig {
  hostname: string;
  asn: number;
  routerId: string;
  neighbors: Map<string, { remoteAs: string; password?: string; isGroup: boolean }>;
  listenRanges: { range: string; group: string }[];
  /** Configured neighbors by address: their peer-group. */
  groupMembers: Map<string, string>;
  /** `neighbor X timers connect N`: seconds between the dials of X. */
  connectTimers: Map<string, number>;
  prefixLists: Map<string, string[]>;
  networks: Map<string, string[]>;
  activated: Map<string, string[]>;
  routeMapsIn: Map<string, string[]>;
}

function parseFrr(text: string): FrrConfig {
  const config: FrrConfig = {
    hostname: '',
    asn: 0,
    routerId: '',
    neighbors: new Map(),
    listenRanges: [],
    groupMembers: new Map(),
    connectTimers: new Map(),
    prefixLists: new Map(),
    networks: new Map(),
    activated: new Map(),
    routeMapsIn: new Map(),
  };
  let family = '';
  const neighbor = (name: string) => {
    let n = config.neighbors.get(name);
    if (n === undefined) {
      n = { remoteAs: '', isGroup: false };
      config.neighbors.set(name, n);
    }
    return n;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^hostname (\S+)$/.exec(line))) config.hostname = m[1] ?? '';
    else if ((m = /^router bgp (\d+)$/.exec(line))) config.asn = Number(m[1]);
    else if ((m = /^bgp router-id (\S+)$/.exec(line))) config.routerId = m[1] ?? '';
    else if ((m = /^address-family (ipv4|ipv6) unicast$/.exec(line))) family = m[1] ?? '';
    else if (line === 'exit-address-family') family = '';
    else if ((m = /^neighbor (\S+) peer-group$/.exec(line))) neighbor(m[1] ?? '').isGroup = true;
    else if ((m = /^neighbor (\S+) peer-group (\S+)$/.exec(line))) config.groupMembers.set(ipaddr.parse(m[1] ?? '').toString(), m[2] ?? '');
    else if ((m = /^neighbor (\S+) timers connect (\d+)$/.exec(line))) config.connectTimers.set(m[1] ?? '', Number(m[2]));
    else if ((m = /^neighbor (\S+) remote-as (\S+)$/.exec(line))) neighbor(m[1] ?? '').remoteAs = m[2] ?? '';
    else if ((m = /^neighbor (\S+) password (\S+)$/.exec(line))) neighbor(m[1] ?? '').password = m[2];
    else if ((m = /^bgp listen range (\S+) peer-group (\S+)$/.exec(line))) config.listenRanges.push({ range: m[1] ?? '', group: m[2] ?? '' });
    else if ((m = /^ip(?:v6)? prefix-list (\S+) seq \d+ permit (\S+)/.exec(line))) config.prefixLists.set(m[1] ?? '', [...(config.prefixLists.get(m[1] ?? '') ?? []), m[2] ?? '']);
    else if ((m = /^network (\S+)$/.exec(line)) && family !== '') config.networks.set(family, [...(config.networks.get(family) ?? []), m[1] ?? '']);
    else if ((m = /^neighbor (\S+) activate$/.exec(line)) && family !== '') config.activated.set(family, [...(config.activated.get(family) ?? []), m[1] ?? '']);
    else if ((m = /^neighbor (\S+) route-map (\S+) in$/.exec(line)) && family !== '') config.routeMapsIn.set(`${family} ${m[1]}`, [m[2] ?? '']);
  }
  return config;
}

const addressOf = (cidr: string): string => ipaddr.parse(cidr.split('/')[0] ?? '').toString();
const inside = (address: string, cidr: string): boolean => {
  const addr = ipaddr.parse(address);
  const [net, len] = ipaddr.parseCIDR(cidr);
  return addr.kind() === net.kind() && addr.match(net, len);
};
const sameAddress = (a: string, b: string): boolean => ipaddr.parse(a).toNormalizedString() === ipaddr.parse(b).toNormalizedString();

/** kind names node containers CLUSTER-control-plane, CLUSTER-worker, CLUSTER-worker2, ... */
function kindContainer(cluster: string, index: number): string {
  return index === 0 ? `${cluster}-control-plane` : index === 1 ? `${cluster}-worker` : `${cluster}-worker${index}`;
}

describe('deploy: containerlab/kind-leaf-spine', function () {
  this.timeout(60_000);
  const clab = YAML.parse(readRepoFile(CLAB_FILE)) as Clab;
  const nodes = clab.topology.nodes;
  const kindNodeName = Object.entries(nodes).find(([, n]) => n.kind === 'k8s-kind')?.[0] ?? '';
  const kindConfig = YAML.parse(readRepoFile(path.join(LAB_DIR, nodes[kindNodeName]?.['startup-config'] ?? 'missing'))) as {
    networking: { ipFamily: string; podSubnet: string; disableDefaultCNI: boolean };
    nodes: { role: string; labels?: Record<string, string> }[];
  };
  const routers = new Map(
    Object.entries(nodes)
      .filter(([, n]) => (n.image ?? '').includes('frr'))
      .map(([name, n]) => {
        const bind = (n.binds ?? []).find((b) => b.endsWith(':/etc/frr/frr.conf')) ?? '';
        return [name, { file: path.join(LAB_DIR, bind.split(':')[0] ?? ''), config: parseFrr(readRepoFile(path.join(LAB_DIR, bind.split(':')[0] ?? ''))) }];
      }),
  );

  // node -> interface -> addresses (CIDR), from the exec lines; bridge memberships; links.
  const addresses = new Map<string, Map<string, string[]>>();
  const bridgeOf = new Map<string, string>(); // "node:if" -> bridge
  for (const [name, node] of Object.entries(nodes)) {
    const perIf = new Map<string, string[]>();
    for (const line of node.exec ?? []) {
      let m: RegExpExecArray | null;
      if ((m = /^ip address add (\S+) dev (\S+)/.exec(line))) perIf.set(m[2] ?? '', [...(perIf.get(m[2] ?? '') ?? []), m[1] ?? '']);
      if ((m = /^ip link set (\S+) master (\S+)$/.exec(line))) bridgeOf.set(`${name}:${m[1]}`, m[2] ?? '');
    }
    addresses.set(name, perIf);
  }
  const peerOf = new Map<string, string>();
  for (const link of clab.topology.links) {
    const [a, b] = link.endpoints;
    peerOf.set(a ?? '', b ?? '');
    peerOf.set(b ?? '', a ?? '');
  }
  const kindNodes = kindConfig.nodes.map((n, i) => ({ container: kindContainer(kindNodeName, i), labels: n.labels ?? {} }));

  /** The addresses a node reaches directly: the far ends of its links (a bridge port's far end is the bridge). */
  function neighborAddresses(node: string): string[] {
    const out: string[] = [];
    for (const [end, far] of peerOf) {
      if (!end.startsWith(`${node}:`)) continue;
      const [farNode = '', farIf = ''] = far.split(':');
      const ifName = bridgeOf.get(far) ?? farIf;
      out.push(...(addresses.get(farNode)?.get(ifName) ?? []).map(addressOf));
    }
    return out;
  }

  it('is wired consistently: every endpoint is a node, every interface used in exec exists, files are there', () => {
    const seen = new Set<string>();
    for (const link of clab.topology.links) {
      expect(link.endpoints).to.have.length(2);
      for (const endpoint of link.endpoints) {
        const [node = '', ifName = ''] = endpoint.split(':');
        expect(nodes, endpoint).to.have.property(node);
        expect(ifName.length, `${endpoint}: interface name length`).to.be.within(1, 15);
        expect(seen.has(endpoint), `${endpoint} used once`).to.equal(false);
        seen.add(endpoint);
      }
    }
    for (const [name, node] of Object.entries(nodes)) {
      const created = new Set((node.exec ?? []).flatMap((l) => /^ip link add (\S+)/.exec(l)?.slice(1, 2) ?? []));
      for (const line of node.exec ?? []) {
        for (const m of line.matchAll(/(?:dev|link set) (\S+)/g)) {
          const ifName = m[1] ?? '';
          expect(seen.has(`${name}:${ifName}`) || created.has(ifName), `${name}: ${line}`).to.equal(true);
        }
        // Gateways are on the far end of one of the node's links.
        const via = /\bvia (\S+)/.exec(line)?.[1];
        if (via !== undefined) expect(neighborAddresses(name).some((a) => sameAddress(a, via)), `${name}: ${line}`).to.equal(true);
      }
      for (const bind of node.binds ?? []) expect(existsSync(repoPath(path.join(LAB_DIR, bind.split(':')[0] ?? ''))), bind).to.equal(true);
    }
    // The kind cluster's node containers are the ext-containers, named as kind names them.
    const ext = Object.entries(nodes).filter(([, n]) => n.kind === 'ext-container').map(([name]) => name);
    expect(ext.sort()).to.deep.equal(kindNodes.map((k) => k.container).sort());
    expect(kindConfig.networking.disableDefaultCNI, 'podroute is the CNI').to.equal(true);
  });

  it('the FRR configs are valid for FRR 8.4 (`vtysh -C`)', async () => {
    expect(routers.size).to.equal(4);
    for (const [name, { file }] of routers) {
      const result = await execFileAsync('vtysh', ['-C', '-f', repoPath(file)]).then(
        () => ({ ok: true, why: '' }),
        (err: { stderr?: string; stdout?: string }) => ({ ok: false, why: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
      );
      expect(result.ok, `${name}: ${result.why}`).to.equal(true);
    }
  });

  it('router-to-router sessions: each side names the other\'s address and ASN, per address family', () => {
    for (const [name, { config }] of routers) {
      for (const [addr, n] of config.neighbors) {
        if (n.isGroup) continue;
        // The neighbor's address is on the far end of one of this router's links, on a router with that ASN.
        const far = [...peerOf].find(([end, other]) => end.startsWith(`${name}:`) && (addresses.get(other.split(':')[0] ?? '')?.get(other.split(':')[1] ?? '') ?? []).some((c) => sameAddress(addressOf(c), addr)));
        expect(far, `${name}: neighbor ${addr} is on a link`).to.not.equal(undefined);
        const farRouter = routers.get(far?.[1].split(':')[0] ?? '');
        expect(farRouter, `${name}: neighbor ${addr} is a router`).to.not.equal(undefined);
        expect(n.remoteAs, `${name}: neighbor ${addr} remote-as`).to.equal(String(farRouter?.config.asn));
        expect(config.activated.get(familyOf(addr)) ?? [], `${name}: ${addr} activated in ${familyOf(addr)}`).to.include(addr);
        // ... and the far router names us back on our address of that link.
        const ours = (addresses.get(name)?.get(far?.[0].split(':')[1] ?? '') ?? []).map(addressOf).filter((a) => familyOf(a) === familyOf(addr));
        expect(ours.some((a) => farRouter?.config.neighbors.has(a)), `${far?.[1]} names ${name} back`).to.equal(true);
      }
    }
  });

  it('agrees with deploy/overlays/as-per-rack: ToR addresses, ASNs, passwords, rack labels, node ASNs, pod ranges', async () => {
    const objects = await kustomize('deploy/overlays/as-per-rack');
    const { effective } = await agentConfigOf(objects);
    const secret = objects.find((o) => o.kind === 'Secret') as (K8sObject & { data: Record<string, string> }) | undefined;
    const podRanges = effective.cluster.podRanges;

    // Pod ranges: kind's podSubnet, the overlay's cluster.podRanges and the ToRs' prefix-lists are one thing.
    expect(kindConfig.networking.podSubnet.split(',').map((r) => canonicalCIDR(r))).to.deep.equal(podRanges);
    expect(kindConfig.networking.ipFamily).to.equal('dual');

    const annotations = new Map<string, number>();
    for (const line of Object.values(nodes).flatMap((n) => n.exec ?? [])) {
      const m = new RegExp(`annotate --overwrite node (\\S+) ${ASN_ANNOTATION.replace('.', '\\.')}=(\\d+)$`).exec(line);
      if (m) annotations.set(m[1] ?? '', Number(m[2]));
    }
    expect([...annotations.keys()].sort(), 'every kind node gets its ASN').to.deep.equal(kindNodes.map((k) => k.container).sort());

    const tors = [...routers].filter(([, r]) => r.config.listenRanges.length > 0);
    expect(tors.length).to.equal(2);
    const rackAsns = new Set<number>();
    const coveredPeers = new Set<number>();
    for (const [torName, { config }] of tors) {
      // The rack LAN: the bridge the nodes' links are enslaved to, and its gateway addresses.
      const rackPorts = [...bridgeOf].filter(([end]) => end.startsWith(`${torName}:`));
      const bridges = new Set(rackPorts.map(([, bridge]) => bridge));
      expect(bridges.size, `${torName} has one rack bridge`).to.equal(1);
      const lan = addresses.get(torName)?.get([...bridges][0] ?? '') ?? [];
      const gateways = lan.map(addressOf);
      expect(config.listenRanges.map((l) => l.range).sort(), `${torName} listens on its rack LAN`).to.deep.equal(lan.map((c) => canonicalCIDR(c)).sort());
      const group = config.listenRanges[0]?.group ?? '';
      const nodesGroup = config.neighbors.get(group);
      expect(nodesGroup?.isGroup && nodesGroup.remoteAs, `${torName}: ${group} accepts any AS`).to.equal('external');
      for (const family of ['ipv4', 'ipv6']) {
        expect(config.activated.get(family) ?? [], `${torName}: ${group} in ${family}`).to.include(group);
        const routeMap = config.routeMapsIn.get(`${family} ${group}`)?.[0];
        expect(routeMap, `${torName}: inbound route-map for ${group} in ${family}`).to.be.a('string');
        const prefixList = readRepoFile(routers.get(torName)?.file ?? '').match(new RegExp(`route-map ${routeMap} permit \\d+\\n match ipv?6? ?address prefix-list (\\S+)`))?.[1];
        expect((config.prefixLists.get(prefixList ?? '') ?? []).sort(), `${torName}: ${routeMap} accepts the ${family} pod ranges`).to.deep.equal(
          podRanges.filter((r) => familyOf(r) === family).sort(),
        );
      }

      // The nodes on this rack LAN.
      const rackNodes = rackPorts.map(([end]) => peerOf.get(end)?.split(':') ?? []).map(([node = '', ifName = '']) => ({ node, ifName }));
      expect(rackNodes.length, `${torName} has nodes`).to.be.greaterThan(0);
      const racks = new Set<string>();
      const asns = new Set<number>();
      for (const { node, ifName } of rackNodes) {
        const kindNode = kindNodes.find((k) => k.container === node);
        expect(kindNode, `${node} is a kind node`).to.not.equal(undefined);
        const own = (addresses.get(node)?.get(ifName) ?? []).map(addressOf);
        for (const a of own) expect(config.listenRanges.some((l) => inside(a, l.range)), `${node} ${a} inside ${torName}'s listen ranges`).to.equal(true);
        // The ToR dials its known nodes (a listen range is passive, and gobgpd 3.10 dials only after 5-9 s): a
        // configured neighbor of the nodes' group for each address, redialled every second.
        for (const a of own) expect(config.groupMembers.get(a), `${node} ${a}: a neighbor ${torName} dials`).to.equal(group);
        expect(config.connectTimers.get(group), `${torName}: neighbor ${group} timers connect 1`).to.equal(1);
        // kubelet's node IP = the rack LAN addresses (the next hop of the node's podCIDRs), IPv4 first.
        const nodeIpLine = (nodes[node]?.exec ?? []).find((l) => l.includes('kubeadm-flags.env')) ?? '';
        const nodeIps = /--node-ip=([0-9a-f.:,]+)/.exec(nodeIpLine)?.[1]?.split(',') ?? [];
        expect(nodeIps.length, `${node} --node-ip`).to.equal(2);
        expect(nodeIps.every((ip, i) => sameAddress(ip, own[i] ?? '::'))).to.equal(true);
        racks.add(kindNode?.labels[RACK_LABEL] ?? '(none)');
        asns.add(annotations.get(node) ?? 0);
      }
      expect(racks.size, `${torName}: its nodes share one ${RACK_LABEL} label`).to.equal(1);
      expect(asns.size, `${torName}: its nodes share one ASN`).to.equal(1);
      const rackAsn = [...asns][0] ?? 0;
      expect(rackAsn, 'eBGP between the rack and its ToR').to.not.equal(config.asn);
      expect(rackAsns.has(rackAsn), 'one AS per rack').to.equal(false);
      rackAsns.add(rackAsn);

      // The overlay: the nodes with this rack label peer with exactly this ToR's gateways, ASN and password.
      const rack = [...racks][0] ?? '';
      const peers = effective.bgp.peers.map((p, i) => ({ ...p, i })).filter((p) => p.nodeSelector?.matchLabels?.[RACK_LABEL] === rack);
      expect(peers.map((p) => ipaddr.parse(p.address).toString()).sort(), `peers of ${rack}`).to.deep.equal([...gateways].sort());
      for (const p of peers) {
        coveredPeers.add(p.i);
        expect(p.asn, `peer ${p.address} ASN`).to.equal(config.asn);
        const key = path.basename(p.passwordFile ?? '');
        const password = Buffer.from(secret?.data[key] ?? '', 'base64').toString('utf8').trim();
        expect(password, `peer ${p.address} password (Secret key ${key})`).to.not.equal('');
        expect(password, `peer ${p.address}: ${torName}'s ${group} password`).to.equal(nodesGroup?.password);
      }
    }
    expect(coveredPeers.size, 'every overlay peer is a ToR of the lab').to.equal(effective.bgp.peers.length);
    for (const asn of rackAsns) for (const [, r] of routers) expect(asn).to.not.equal(r.config.asn);
  });

  it('the spines have one ASN, so a rack\'s routes never come back to it through the other spine', () => {
    const spines = [...routers].filter(([, r]) => r.config.listenRanges.length === 0);
    expect(spines.length).to.equal(2);
    expect(new Set(spines.map(([, r]) => r.config.asn)).size).to.equal(1);
    const ids = [...routers].map(([, r]) => r.config.routerId);
    expect(new Set(ids).size, 'router IDs are unique').to.equal(ids.length);
  });
});
