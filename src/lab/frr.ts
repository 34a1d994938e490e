// FRR routers of the lab: configuration generated from the topology (pure, unit-tested) and the thin part that
// starts zebra + bgpd inside a router's namespace and reads their state through vtysh.
import { execa } from 'execa';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { familyOf, IP_FAMILIES } from '../routes/ip-prefix.js';
import type { FabricSession, LabLayout, Topology, TopologyRouter } from './topology.js';

export const FRR_BIN_DIR = '/usr/lib/frr';
/** Group that may use the vty sockets; `-g root` fails because root is not in frrvty. */
export const FRR_GROUP = 'frrvty';
export const NODES_PEER_GROUP = 'NODES';
export const MAXIMUM_PATHS = 8;
/**
 * How often a ToR dials a node it has no session with. A ToR dials its nodes as well as listening for them:
 * gobgpd 3.10 makes its own first connect only after a random 5-10 s (whatever connect_retry says), and waits
 * 5 s idle after every reset, but it accepts an incoming session at once.
 */
export const NODE_CONNECT_RETRY_SECONDS = 1;
/**
 * After a restart, a router sends nothing (and so no End-of-RIB) until every configured peer has sent its own
 * End-of-RIB, or this long: its peers keep its routes as stale meanwhile instead of sweeping them because the
 * nodes have not reconnected yet.
 */
export const UPDATE_DELAY_SECONDS = 30;

export class FrrError extends Error {
  readonly code = 'FRR_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'FrrError';
  }
}

export interface RouterConfig {
  zebra: string;
  bgpd: string;
  /** A ToR of a topology with cluster.bfd: bfdd runs too. */
  bfdd?: string;
}

/** bfdd's profile for the node sessions (bgpd's `neighbor NODES bfd profile NODES` refers to it). */
export function renderBfddConf(router: TopologyRouter, timers: { minTxMs: number; minRxMs: number; multiplier: number }, files: FrrFiles): string {
  return [
    'frr version 8.4',
    `hostname ${router.name}`,
    `log file ${files.bfddLog}`,
    '!',
    'bfd',
    ` profile ${NODES_PEER_GROUP}`,
    `  transmit-interval ${timers.minTxMs}`,
    `  receive-interval ${timers.minRxMs}`,
    `  detect-multiplier ${timers.multiplier}`,
    ' !',
    '!',
    '',
  ].join('\n');
}

/** Files of one router: configs, logs, and the run dir holding the vty sockets, zserv socket and PID files. */
export interface FrrFiles {
  dir: string;
  runDir: string;
  zebraConf: string;
  bgpdConf: string;
  bfddConf: string;
  zservSocket: string;
  zebraLog: string;
  bgpdLog: string;
  bfddLog: string;
  pidFile: (daemon: FrrDaemon) => string;
}

export type FrrDaemon = 'zebra' | 'bgpd' | 'bfdd';

export function frrFiles(dir: string): FrrFiles {
  const runDir = path.join(dir, 'run');
  return {
    dir,
    runDir,
    zebraConf: path.join(dir, 'zebra.conf'),
    bgpdConf: path.join(dir, 'bgpd.conf'),
    bfddConf: path.join(dir, 'bfdd.conf'),
    zservSocket: path.join(runDir, 'zserv.api'),
    zebraLog: path.join(dir, 'zebra.log'),
    bgpdLog: path.join(dir, 'bgpd.log'),
    bfddLog: path.join(dir, 'bfdd.log'),
    pidFile: (daemon) => path.join(runDir, `${daemon}.pid`),
  };
}

export function renderZebraConf(router: TopologyRouter, files: FrrFiles): string {
  return [
    'frr version 8.4',
    'frr defaults datacenter',
    `hostname ${router.name}`,
    `log file ${files.zebraLog}`,
    // FRR 8.4 can lose an ECMP leg after a link flap when zebra keeps nexthop groups in the kernel.
    'no zebra nexthop kernel enable',
    '!',
    '',
  ].join('\n');
}

/**
 * bgpd for one router. Router-to-router sessions are numbered, one per address family (IPv4 routes over the IPv4
 * session, IPv6 routes over the IPv6 session), so every route carries a next hop of its own family that the
 * kernel can use. A ToR listens on its rack LAN (nodes dial it) and accepts from nodes only prefixes inside the
 * cluster pod ranges.
 */
/**
 * firstBoot: the configuration a router starts with when the lab comes up. It has no update-delay: no peer holds
 * stale routes of a router that never ran, and a ToR would otherwise hold back every route until its slowest node's
 * End-of-RIB. The file on disk (what a restart reads) keeps it.
 */
export function renderBgpdConf(topology: Topology, layout: LabLayout, routerName: string, files: FrrFiles, options: { firstBoot?: boolean } = {}): string {
  const router = topology.routers.find((r) => r.name === routerName);
  if (router === undefined) throw new FrrError(`no router named ${routerName}`);
  const sessions = layout.fabric.filter((s) => s.router === routerName);
  const rack = layout.racks.find((r) => r.tor === routerName);
  const externals = layout.externals.filter((e) => e.router === routerName);
  const v4 = (c: string): boolean => familyOf(c) === 'ipv4';
  const v6 = (c: string): boolean => familyOf(c) === 'ipv6';
  const podRanges4 = topology.cluster.podRanges.filter(v4);
  const podRanges6 = topology.cluster.podRanges.filter(v6);
  const announced4 = [...(rack?.subnets.filter(v4) ?? []), ...externals.flatMap((e) => e.networks.filter(v4))];
  const announced6 = [...(rack?.subnets.filter(v6) ?? []), ...externals.flatMap((e) => e.networks.filter(v6))];

  const lines: string[] = [
    'frr version 8.4',
    'frr defaults datacenter',
    `hostname ${router.name}`,
    `log file ${files.bgpdLog}`,
    '!',
  ];
  if (rack !== undefined) {
    // Only the cluster's pod ranges come in from nodes (a node announcing anything else is dropped), and Service
    // addresses: host routes inside the LoadBalancer pools and external-IP ranges, the ClusterIP ranges as
    // aggregates or host routes inside them.
    lines.push(...prefixList('CLUSTER-PODS-V4', 'ip', podRanges4, 32));
    lines.push(...prefixList('CLUSTER-PODS-V6', 'ipv6', podRanges6, 128));
    lines.push(...serviceHostRouteList('CLUSTER-SERVICES-V4', 'ip', serviceEntries(topology, v4), 32));
    lines.push(...serviceHostRouteList('CLUSTER-SERVICES-V6', 'ipv6', serviceEntries(topology, (c) => !v4(c)), 128));
    // On a routed rack the node's address on its port is the only next hop this ToR can reach it by, whatever the
    // node announces (a multi-homed node that announces one address on every session would be unreachable here).
    // The IPv6 rewrite assumes IPv6 routes arrive over the IPv6 session, as they do with both families present.
    const routed = rack.ports === 'routed';
    lines.push(
      `route-map ${NODES_PEER_GROUP}-IN-V4 permit 10`,
      ' match ip address prefix-list CLUSTER-PODS-V4',
      ...(routed ? [' set ip next-hop peer-address'] : []),
      '!',
      `route-map ${NODES_PEER_GROUP}-IN-V4 permit 20`,
      ' match ip address prefix-list CLUSTER-SERVICES-V4',
      ...(routed ? [' set ip next-hop peer-address'] : []),
      '!',
      `route-map ${NODES_PEER_GROUP}-IN-V6 permit 10`,
      ' match ipv6 address prefix-list CLUSTER-PODS-V6',
      ...(routed ? [' set ipv6 next-hop peer-address'] : []),
      '!',
      `route-map ${NODES_PEER_GROUP}-IN-V6 permit 20`,
      ' match ipv6 address prefix-list CLUSTER-SERVICES-V6',
      ...(routed ? [' set ipv6 next-hop peer-address'] : []),
      '!',
    );
  }
  lines.push(
    `router bgp ${router.asn}`,
    ` bgp router-id ${router.routerId}`,
    // Families are activated explicitly per neighbor below.
    ' no bgp default ipv4-unicast',
    ' no bgp ebgp-requires-policy',
    ' bgp bestpath as-path multipath-relax',
    // Like a datacenter ToR: a restarting router asks its peers to keep its routes (and helps them likewise), and
    // says its forwarding state survived (zebra -K keeps the kernel routes): without that flag a helper drops the
    // restarting router's routes as soon as the new session is up.
    ' bgp graceful-restart',
    ' bgp graceful-restart preserve-fw-state',
    ...(options.firstBoot === true ? [] : [` update-delay ${UPDATE_DELAY_SECONDS}`]),
  );
  // A routed rack has no connected route covering the whole rack subnet (only one /31, /127 per node port):
  // announce the subnet anyway, so traffic to any node address of the rack is drawn to this ToR.
  if (rack?.ports === 'routed') lines.push(' no bgp network import-check');
  for (const s of sessions) lines.push(...fabricNeighbor(s));
  if (rack !== undefined) {
    lines.push(
      ` neighbor ${NODES_PEER_GROUP} peer-group`,
      ` neighbor ${NODES_PEER_GROUP} remote-as external`,
      // The nodes are one hop away and the agent asks GTSM of such eBGP peers by default (ttlSecurity).
      ` neighbor ${NODES_PEER_GROUP} ttl-security hops 1`,
      ` neighbor ${NODES_PEER_GROUP} timers connect ${NODE_CONNECT_RETRY_SECONDS}`,
      ...(rack.password === undefined ? [] : [` neighbor ${NODES_PEER_GROUP} password ${rack.password}`]),
      // BFD with the nodes (bfdd, the profile in bfdd.conf): a silent node is dropped within the detection time.
      ...(topology.cluster.bfd === undefined ? [] : [` neighbor ${NODES_PEER_GROUP} bfd`, ` neighbor ${NODES_PEER_GROUP} bfd profile ${NODES_PEER_GROUP}`]),
    );
    // The nodes the topology knows are neighbors the ToR dials (and waits for after its restart); the listen range
    // still takes a node the ToR was not told about.
    for (const address of nodeNeighborAddresses(layout, routerName)) lines.push(...nodeNeighborCommands(address));
    for (const subnet of rack.subnets) lines.push(` bgp listen range ${subnet} peer-group ${NODES_PEER_GROUP}`);
  }
  for (const family of IP_FAMILIES) {
    const familySessions = sessions.filter((s) => s.family === family);
    const announced = family === 'ipv4' ? announced4 : announced6;
    const podRanges = family === 'ipv4' ? podRanges4 : podRanges6;
    const nodesTakeFamily = rack !== undefined && podRanges.length > 0;
    if (familySessions.length === 0 && announced.length === 0 && !nodesTakeFamily) continue;
    lines.push(' !', ` address-family ${family} unicast`);
    for (const network of announced) lines.push(`  network ${network}`);
    for (const s of familySessions) lines.push(`  neighbor ${s.peerAddress} activate`);
    if (rack !== undefined) {
      lines.push(`  neighbor ${NODES_PEER_GROUP} activate`);
      // IPv6 pod routes may arrive over an IPv4 session (a node's choice): the ToR still accepts them.
      lines.push(`  neighbor ${NODES_PEER_GROUP} route-map ${NODES_PEER_GROUP}-IN-${family === 'ipv4' ? 'V4' : 'V6'} in`);
    }
    lines.push(`  maximum-paths ${MAXIMUM_PATHS}`, `  maximum-paths ibgp ${MAXIMUM_PATHS}`, ' exit-address-family');
  }
  lines.push('!', '');
  return lines.join('\n');
}

/** The addresses of the ToR's nodes on its rack (every family, every uplink of a multi-homed node). */
export function nodeNeighborAddresses(layout: LabLayout, routerName: string, nodeName?: string): string[] {
  return layout.nodes
    .filter((n) => nodeName === undefined || n.name === nodeName)
    .flatMap((n) => n.uplinks.filter((u) => u.tor === routerName).flatMap((u) => u.addresses.map((a) => a.address)));
}

/** The `router bgp` lines that make `address` a node neighbor (all else comes from the peer group). */
export function nodeNeighborCommands(address: string): string[] {
  return [` neighbor ${address} peer-group ${NODES_PEER_GROUP}`];
}

function fabricNeighbor(s: FabricSession): string[] {
  return [` neighbor ${s.peerAddress} remote-as ${s.peerAsn}`, ` neighbor ${s.peerAddress} description ${s.peer}`];
}

function prefixList(name: string, kind: 'ip' | 'ipv6', ranges: string[], maxLength: number): string[] {
  // An empty prefix-list would deny everything, which is the right answer for a family without pod ranges.
  const lines = ranges.map((range, i) => `${kind} prefix-list ${name} seq ${(i + 1) * 5} permit ${range} le ${maxLength}`);
  if (ranges.length === 0) lines.push(`${kind} prefix-list ${name} seq 5 deny any`);
  return [...lines, '!'];
}

/** The Service ranges of one family: pools and external-IP ranges take host routes only, ClusterIP ranges also the aggregate. */
function serviceEntries(topology: Topology, ofFamily: (cidr: string) => boolean): { range: string; aggregate: boolean }[] {
  const { loadBalancerPools, externalIPRanges, clusterIPRanges } = topology.services;
  return [
    ...[...loadBalancerPools.flatMap((p) => p.cidrs), ...externalIPRanges].filter(ofFamily).map((range) => ({ range, aggregate: false })),
    ...clusterIPRanges.filter(ofFamily).map((range) => ({ range, aggregate: true })),
  ];
}

function serviceHostRouteList(name: string, kind: 'ip' | 'ipv6', entries: { range: string; aggregate: boolean }[], hostLength: number): string[] {
  const lines: string[] = [];
  for (const { range, aggregate } of entries) {
    if (aggregate) lines.push(`${kind} prefix-list ${name} seq ${(lines.length + 1) * 5} permit ${range}`);
    // FRR refuses `ge` equal to the length: a one-address range is its own host route.
    const hostRoutes = Number(range.split('/')[1]) === hostLength ? '' : ` ge ${hostLength}`;
    if (!aggregate || hostRoutes !== '') lines.push(`${kind} prefix-list ${name} seq ${(lines.length + 1) * 5} permit ${range}${hostRoutes}`);
  }
  if (lines.length === 0) lines.push(`${kind} prefix-list ${name} seq 5 deny any`);
  return [...lines, '!'];
}

export function renderRouterConfig(topology: Topology, layout: LabLayout, routerName: string, files: FrrFiles, options: { firstBoot?: boolean } = {}): RouterConfig {
  const router = topology.routers.find((r) => r.name === routerName);
  if (router === undefined) throw new FrrError(`no router named ${routerName}`);
  const bfdd = topology.cluster.bfd === undefined || router.role !== 'tor' ? undefined : renderBfddConf(router, topology.cluster.bfd, files);
  return { zebra: renderZebraConf(router, files), bgpd: renderBgpdConf(topology, layout, routerName, files, options), ...(bfdd === undefined ? {} : { bfdd }) };
}

// ---- thin part: daemons and vtysh ----------------------------------------------------------------------------

export async function writeRouterConfig(files: FrrFiles, config: RouterConfig): Promise<void> {
  await mkdir(files.runDir, { recursive: true });
  await writeFile(files.zebraConf, config.zebra);
  await writeFile(files.bgpdConf, config.bgpd);
  if (config.bfdd !== undefined) await writeFile(files.bfddConf, config.bfdd);
}

/** The daemon's argv (also what `lab down` expects to find in /proc/PID/cmdline). */
export function frrDaemonArgs(daemon: FrrDaemon, files: FrrFiles, pathspace: string): string[] {
  return [
    path.join(FRR_BIN_DIR, daemon),
    '-d',
    '-f',
    { zebra: files.zebraConf, bgpd: files.bgpdConf, bfdd: files.bfddConf }[daemon],
    '-i',
    files.pidFile(daemon),
    '-N',
    pathspace,
    '--vty_socket',
    files.runDir,
    '-z',
    files.zservSocket,
    '-u',
    'root',
    '-g',
    FRR_GROUP,
    // No vty on TCP: everything goes through the unix sockets in runDir.
    '-P',
    '0',
    // zebra keeps the routes of its previous run in the kernel while bgpd relearns them (graceful restart).
    ...(daemon === 'zebra' ? ['-K', String(FRR_GRACEFUL_RESTART_SECONDS)] : []),
  ];
}

/** How long a restarting lab router's forwarding state is kept (zebra -K; FRR's default restart time). */
export const FRR_GRACEFUL_RESTART_SECONDS = 120;

/** Starts one daemon in the router's namespace; `-d` returns once it is ready. Returns its PID. */
export async function startFrrDaemon(netns: string, daemon: FrrDaemon, files: FrrFiles, pathspace: string): Promise<number> {
  const args = frrDaemonArgs(daemon, files, pathspace);
  const result = await execa('ip', ['netns', 'exec', netns, ...args], { reject: false, timeout: 30_000 });
  if (result.exitCode !== 0) {
    throw new FrrError(`${daemon} in ${netns} failed to start (exit ${result.exitCode}): ${result.stderr || result.stdout}`);
  }
  const pid = Number((await readFile(files.pidFile(daemon), 'utf8')).trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new FrrError(`${daemon} in ${netns}: no PID in ${files.pidFile(daemon)}`);
  return pid;
}

export async function vtysh(files: FrrFiles, command: string, signal?: AbortSignal): Promise<string> {
  const result = await execa('vtysh', ['--vty_socket', files.runDir, '-c', command], {
    reject: false,
    timeout: 15_000,
    ...(signal === undefined ? {} : { cancelSignal: signal }),
  });
  if (result.exitCode !== 0) throw new FrrError(`vtysh "${command}" failed (exit ${result.exitCode}): ${result.stderr || result.stdout}`);
  return result.stdout;
}

export interface BgpNeighborState {
  family: 'ipv4' | 'ipv6';
  address: string;
  state: string;
  remoteAs?: number;
  prefixesReceived?: number;
}

/** Neighbors from `show bgp summary json` (all families, dynamic neighbors included). */
export function parseBgpSummary(json: string): BgpNeighborState[] {
  const parsed = JSON.parse(json) as Record<string, unknown>;
  const out: BgpNeighborState[] = [];
  for (const [key, family] of [
    ['ipv4Unicast', 'ipv4'],
    ['ipv6Unicast', 'ipv6'],
  ] as const) {
    const table = parsed[key] as { peers?: Record<string, Record<string, unknown>> } | undefined;
    for (const [address, peer] of Object.entries(table?.peers ?? {})) {
      out.push({
        family,
        address,
        state: typeof peer.state === 'string' ? peer.state : 'Unknown',
        ...(typeof peer.remoteAs === 'number' ? { remoteAs: peer.remoteAs } : {}),
        ...(typeof peer.pfxRcd === 'number' ? { prefixesReceived: peer.pfxRcd } : {}),
      });
    }
  }
  return out;
}

export async function bgpSummary(files: FrrFiles, signal?: AbortSignal): Promise<BgpNeighborState[]> {
  return parseBgpSummary(await vtysh(files, 'show bgp summary json', signal));
}

/** The fabric sessions of `router` that are not Established yet (by family and peer address). */
export function pendingFabricSessions(router: string, layout: LabLayout, neighbors: BgpNeighborState[]): FabricSession[] {
  return layout.fabric.filter(
    (s) => s.router === router && !neighbors.some((n) => n.family === s.family && n.address === s.peerAddress && n.state === 'Established'),
  );
}

/**
 * One integrated frr.conf (zebra + bgpd) for FRR running as a container (containerlab): the same routing
 * configuration, logging to the container's /var/log/frr.
 */
export function renderIntegratedConfig(topology: Topology, layout: LabLayout, routerName: string): string {
  const bgpd = renderBgpdConf(topology, layout, routerName, frrFiles('/var/log/frr')).split('\n');
  const headerEnd = bgpd.indexOf('!');
  const header = bgpd.slice(0, headerEnd).map((l) => (l.startsWith('log file') ? 'log file /var/log/frr/frr.log' : l));
  return [...header, 'no zebra nexthop kernel enable', ...bgpd.slice(headerEnd)].join('\n');
}
