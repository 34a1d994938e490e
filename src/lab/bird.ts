// BIRD 2 routers of the lab, the second routing stack a topology may give a router (`stack: bird`): configuration
// generated from the topology (pure, unit-tested) with the behaviour of the FRR one (frr.ts) that the lab relies
// on, and the thin part that runs one bird per router in its namespace and reads its state through birdc.
import { execa } from 'execa';
import path from 'node:path';
import { familyOf, IP_FAMILIES, type IpFamily } from '../routes/ip-prefix.js';
import { MAXIMUM_PATHS, NODE_CONNECT_RETRY_SECONDS, nodeNeighborAddresses, type BgpNeighborState } from './frr.js';
import type { FabricSession, LabLayout, Topology } from './topology.js';

/** Name prefix of the protocols a ToR makes for nodes it does not know (BIRD numbers them: node1, node2, ...). */
export const DYNAMIC_NODE_NAME = 'dyn';
/** The listening protocols of the rack's neighbor ranges (one per subnet): listeners, never sessions themselves. */
export const NODE_RANGE_PROTOCOL = 'nodes_range_';

export class BirdError extends Error {
  readonly code = 'BIRD_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'BirdError';
  }
}

/** Files of one BIRD router: its configuration, log and control socket (birdc talks to it; nothing listens on TCP). */
export interface BirdFiles {
  dir: string;
  config: string;
  socket: string;
  log: string;
}

export function birdFiles(dir: string): BirdFiles {
  return { dir, config: path.join(dir, 'bird.conf'), socket: path.join(dir, 'bird.ctl'), log: path.join(dir, 'bird.log') };
}

/**
 * How long a restarted BIRD stays in graceful-restart recovery (`bird -R`): it keeps its kernel routes as they are
 * and sends its peers nothing, End-of-RIB included, so they keep its routes as stale, until every BGP protocol has
 * converged or this long. The listen ranges are protocols that never converge (no session of their own), so the
 * recovery always lasts this long: well past the node sessions' return (5-7 s after a kill, gobgpd idles 5 s after
 * a reset) and well short of the 120 s its peers keep its routes (its restart time).
 */
export const BIRD_RECOVERY_WAIT_SECONDS = 20;

/** bird's command-line flag for graceful-restart recovery after a restart or crash. */
export const BIRD_RECOVERY_FLAG = '-R';

/**
 * bird's argv (also what `lab down` expects in /proc/PID/cmdline). `-f` keeps it in the foreground, so the PID the
 * lab spawns is bird's own. `recovery` (-R) is a restart whose forwarding state survived (the kernel routes persist):
 * BIRD recovers gracefully (see renderBirdConf). A first start or a ToR that lost its links starts cold.
 */
export function birdArgs(files: BirdFiles, options: { recovery?: boolean } = {}): string[] {
  return ['bird', '-f', '-c', files.config, '-s', files.socket, ...(options.recovery === true ? [BIRD_RECOVERY_FLAG] : [])];
}

/** A protocol name for a peer address (BIRD names are identifiers). */
export function protocolName(kind: 'fabric' | 'node', address: string): string {
  return `${kind}_${address.replace(/[.:]/g, '_')}`;
}

/**
 * bird.conf for one router, with what the FRR configuration does: numbered eBGP sessions to the other routers, one
 * per address family; on a ToR, the known nodes of its rack as neighbors it dials and a listen range for the rest
 * (dynamic BGP), GTSM (the agent asks it of one-hop eBGP peers), only pod and Service prefixes accepted from nodes,
 * next hop rewritten to the node's port address on a routed rack; graceful restart everywhere; ECMP into the
 * kernel (merge paths); the rack subnets and external networks announced; the rack's TCP MD5 password on every
 * node session (static and dynamic alike).
 * A restart in recovery (birdArgs) keeps forwarding: the kernel routes persist over bird's death, and the kernel
 * protocol takes part in the recovery, so it leaves them alone until the recovery ends; without that it would
 * delete every route of the previous run at its first scan, before the sessions are back (BIRD's user's guide,
 * "Graceful restart" and the kernel protocol's `graceful restart` option; measured in the dual-homed lab: all pod
 * routes at the BIRD ToR deleted 1 s after the start and about 3 s of probes lost over it, with -R or without).
 */
export function renderBirdConf(topology: Topology, layout: LabLayout, routerName: string, files: BirdFiles): string {
  const router = topology.routers.find((r) => r.name === routerName);
  if (router === undefined) throw new BirdError(`no router named ${routerName}`);
  const sessions = layout.fabric.filter((s) => s.router === routerName);
  const rack = layout.racks.find((r) => r.tor === routerName);
  const externals = layout.externals.filter((e) => e.router === routerName);
  const ofFamily = (family: IpFamily) => (c: string): boolean => familyOf(c) === family;
  const announced = (family: IpFamily): string[] => [...(rack?.subnets ?? []), ...externals.flatMap((e) => e.networks)].filter(ofFamily(family));

  const lines: string[] = [
    `# ${router.name}: generated by podroute lab from the topology`,
    `router id ${router.routerId};`,
    `log "${files.log}" all;`,
    `graceful restart wait ${BIRD_RECOVERY_WAIT_SECONDS};`,
    '',
    // Interfaces and their state: the next hops of directly connected peers are resolved through it.
    'protocol device { scan time 10; }',
    '',
  ];
  for (const family of IP_FAMILIES) {
    const channel = family === 'ipv4' ? 'ipv4' : 'ipv6';
    lines.push(
      `protocol kernel kernel_${channel} {`,
      // Only BGP routes: the announced subnets are placeholders for BGP (the kernel has the connected routes).
      `  ${channel} { import none; export where source = RTS_BGP; };`,
      // Equal BGP paths become one multipath route (FRR's maximum-paths).
      `  merge paths on limit ${MAXIMUM_PATHS};`,
      // Routes survive bird's death: forwarding goes on while it is down, and a restart in recovery leaves them
      // as they are until the recovery ends (then it replaces what changed).
      '  persist;',
      '  graceful restart on;',
      '}',
    );
    const networks = announced(family);
    if (networks.length > 0) {
      // A routed rack has no connected route covering its whole subnet: announced anyway, as `network` with
      // `no bgp network import-check` in FRR, so traffic to any node address of the rack is drawn to this ToR.
      lines.push(`protocol static announce_${channel} {`, `  ${channel};`, ...networks.map((n) => `  route ${n} unreachable;`), '}');
    }
  }
  // BFD with the nodes of the rack (cluster.bfd), as an FRR ToR runs bfdd for its NODES peer group: a silent node is
  // dropped within the detection time. The fabric sessions keep to their hold timers, as in FRR.
  const bfd = rack === undefined ? undefined : topology.cluster.bfd;
  if (bfd !== undefined) {
    lines.push(
      'protocol bfd {',
      `  interface "*" { min rx interval ${bfd.minRxMs} ms; min tx interval ${bfd.minTxMs} ms; multiplier ${bfd.multiplier}; };`,
      '}',
    );
  }
  lines.push('');
  lines.push(
    'template bgp fabric {',
    `  local as ${router.asn};`,
    '  graceful restart on;',
    // BIRD waits 5 s after its start before it dials (connect delay time): a restarted ToR's sessions, and the
    // recovery that waits for them, come back that much later.
    `  connect delay time ${NODE_CONNECT_RETRY_SECONDS};`,
    `  connect retry time ${NODE_CONNECT_RETRY_SECONDS};`,
    '}',
  );
  for (const s of sessions) lines.push(...fabricProtocol(s));
  if (rack !== undefined) {
    lines.push('', ...nodeFilters(topology, rack.ports === 'routed'), ...nodeTemplate(router.asn, rack.password, bfd !== undefined));
    // The nodes the topology knows are neighbors the ToR dials (and waits for after its restart); the range still
    // takes a node the ToR was not told about.
    for (const address of nodeNeighborAddresses(layout, routerName)) lines.push(...nodeProtocolLines(address));
    rack.subnets.forEach((subnet, i) => {
      lines.push(
        `protocol bgp ${NODE_RANGE_PROTOCOL}${i} from nodes {`,
        `  neighbor range ${subnet} external;`,
        `  dynamic name "${DYNAMIC_NODE_NAME}";`,
        '}',
      );
    });
  }
  lines.push('');
  return lines.join('\n');
}

/** The protocol that makes `address` a node neighbor of a ToR (all else comes from the `nodes` template). */
export function nodeProtocolLines(address: string): string[] {
  return [`protocol bgp ${protocolName('node', address)} from nodes { neighbor ${address} external; }`];
}

function fabricProtocol(s: FabricSession): string[] {
  const channel = s.family === 'ipv4' ? 'ipv4' : 'ipv6';
  return [
    `protocol bgp ${protocolName('fabric', s.peerAddress)} from fabric {`,
    `  description "${s.peer}";`,
    `  neighbor ${s.peerAddress} as ${s.peerAsn};`,
    `  ${channel} { import all; export all; };`,
    '}',
  ];
}

function nodeTemplate(asn: number, password: string | undefined, bfd: boolean): string[] {
  return [
    'template bgp nodes {',
    `  local as ${asn};`,
    ...(bfd ? ['  bfd on;'] : []),
    // TCP MD5, on the listening socket for the range as well (BIRD >= 2.0.12 does MD5 with dynamic BGP).
    ...(password === undefined ? [] : [`  password "${password}";`]),
    // GTSM: the nodes are one hop away (FRR: ttl-security hops 1).
    '  ttl security on;',
    '  graceful restart on;',
    `  connect delay time ${NODE_CONNECT_RETRY_SECONDS};`,
    `  connect retry time ${NODE_CONNECT_RETRY_SECONDS};`,
    // After an error (a BFD Down is one) BIRD waits 60 s before it connects again by default; FRR retries at its
    // connect timer. Like FRR: back within seconds of the repair.
    `  error wait time ${NODE_CONNECT_RETRY_SECONDS}, 10;`,
    // IPv6 pod routes may arrive over an IPv4 session (a node's choice): both families on every node session.
    '  ipv4 { import filter nodes_in_ipv4; export all; };',
    '  ipv6 { import filter nodes_in_ipv6; export all; };',
    '}',
  ];
}

/**
 * Only the cluster's pod ranges come in from nodes, and Service addresses: host routes inside the LoadBalancer
 * pools and external-IP ranges, the ClusterIP ranges as aggregates or host routes inside them (as frr.ts).
 * On a routed rack the node's address on its port is the only next hop this ToR can reach it by.
 */
function nodeFilters(topology: Topology, routed: boolean): string[] {
  const lines: string[] = [];
  for (const family of IP_FAMILIES) {
    const ofFamily = (c: string): boolean => familyOf(c) === family;
    const hostLength = family === 'ipv4' ? 32 : 128;
    const { loadBalancerPools, externalIPRanges, clusterIPRanges } = topology.services;
    const patterns = [
      ...topology.cluster.podRanges.filter(ofFamily).map((r) => `${r}{${prefixLength(r)},${hostLength}}`),
      ...[...loadBalancerPools.flatMap((p) => p.cidrs), ...externalIPRanges, ...clusterIPRanges].filter(ofFamily).map((r) => `${r}{${hostLength},${hostLength}}`),
      ...clusterIPRanges.filter(ofFamily),
    ];
    const unique = [...new Set(patterns)];
    const sameFamily = family === 'ipv4' ? 'from.is_v4' : '!from.is_v4';
    lines.push(`filter nodes_in_${family} {`);
    // An empty set is no set: a family without ranges accepts nothing (FRR: `deny any`).
    if (unique.length > 0) {
      lines.push(`  if net ~ [ ${unique.join(', ')} ] then {`);
      // Only over a session of the route's own family: an IPv6 route over an IPv4 session keeps its next hop.
      if (routed) lines.push(`    if ${sameFamily} then gw = from;`);
      lines.push('    accept;', '  }');
    }
    lines.push('  reject;', '}');
  }
  return lines;
}

function prefixLength(cidr: string): number {
  return Number(cidr.split('/')[1]);
}

// ---- thin part: birdc -----------------------------------------------------------------------------------------

export async function birdc(files: BirdFiles, command: string, signal?: AbortSignal): Promise<string> {
  const result = await execa('birdc', ['-s', files.socket, command], {
    reject: false,
    timeout: 15_000,
    ...(signal === undefined ? {} : { cancelSignal: signal }),
  });
  // birdc exits 0 even on a refused command; its errors are lines that start with a code of the 8xxx/9xxx range.
  if (result.exitCode !== 0 || /^(8|9)\d{3}[ -]/m.test(result.stdout)) {
    throw new BirdError(`birdc "${command}" failed (exit ${result.exitCode}): ${result.stderr || result.stdout}`);
  }
  return result.stdout;
}

/** One BGP protocol of `show protocols all`: its name, neighbor, state and imported route count. */
export interface BirdBgpProtocol {
  name: string;
  address: string;
  remoteAs?: number;
  state: string;
  imported: number;
}

/** The BGP protocols of `birdc show protocols all` (the dynamic ones included, the templates' ranges left out). */
export function parseBirdProtocols(text: string): BirdBgpProtocol[] {
  const out: BirdBgpProtocol[] = [];
  let current: (BirdBgpProtocol & { bgp: boolean }) | undefined;
  const flush = (): void => {
    if (current?.bgp === true && current.address !== '' && !current.address.includes('/')) {
      const { bgp: _bgp, ...protocol } = current;
      out.push(protocol);
    }
  };
  for (const line of text.split('\n')) {
    const header = /^(\S+)\s+(\S+)\s+\S+\s+\S+\s+\S+/.exec(line);
    if (header !== null && !line.startsWith(' ') && header[1] !== 'Name' && header[1] !== 'BIRD') {
      flush();
      current = { name: header[1] ?? '', address: '', state: 'Unknown', imported: 0, bgp: header[2] === 'BGP' };
      continue;
    }
    if (current === undefined) continue;
    const field = /^\s+([A-Za-z ]+):\s+(.*)$/.exec(line);
    if (field === null) continue;
    const [, key, value = ''] = field;
    if (key === 'BGP state') current.state = value.trim();
    else if (key === 'Neighbor address') current.address = value.trim().split(/\s/)[0] ?? '';
    else if (key === 'Neighbor range') current.address = value.trim();
    else if (key === 'Neighbor AS') current.remoteAs = Number(value.trim());
    else if (key === 'Routes') current.imported += Number(/(\d+) imported/.exec(value)?.[1] ?? 0);
  }
  flush();
  return out;
}

/**
 * The neighbors in the shape FRR's summary gives (frr.ts parseBgpSummary): BIRD has one session per neighbor for
 * all its families, reported under the family of the neighbor's address.
 */
export function birdNeighborStates(protocols: BirdBgpProtocol[]): BgpNeighborState[] {
  return protocols.map((p) => ({
    family: familyOf(p.address),
    address: p.address,
    state: p.state,
    ...(p.remoteAs === undefined ? {} : { remoteAs: p.remoteAs }),
    prefixesReceived: p.imported,
  }));
}

export async function birdNeighbors(files: BirdFiles, signal?: AbortSignal): Promise<BgpNeighborState[]> {
  return birdNeighborStates(parseBirdProtocols(await birdc(files, 'show protocols all', signal)));
}

/** One prefix of `birdc show route`: the protocols each of its routes came from (best first). */
export interface BirdRibRoute {
  prefix: string;
  protocols: string[];
}

/** `birdc show route` (every route of every prefix, one line each; continuation lines start with a blank). */
export function parseBirdRoutes(text: string): BirdRibRoute[] {
  const out: BirdRibRoute[] = [];
  let current: BirdRibRoute | undefined;
  for (const line of text.split('\n')) {
    const route = /^(\S+)?\s+\S+\s+\[(\S+?)\s/.exec(line);
    if (route === null || line.startsWith('\t') || /^\s+via\b/.test(line)) continue;
    const [, prefix, protocol = ''] = route;
    if (prefix !== undefined && prefix.includes('/')) {
      current = { prefix, protocols: [] };
      out.push(current);
    }
    current?.protocols.push(protocol);
  }
  return out;
}
