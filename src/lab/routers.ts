// The lab's routers whichever routing stack runs them (a topology's `stack: frr | bird`): started, asked for their
// BGP neighbors and their table, reconfigured and restarted through the one module that knows that stack.
import { execa } from 'execa';
import { mkdir, writeFile } from 'node:fs/promises';
import { birdArgs, birdc, birdFiles, birdNeighbors, parseBirdProtocols, parseBirdRoutes, renderBirdConf } from './bird.js';
import { LabError } from './errors.js';
import { bgpSummary, frrDaemonArgs, frrFiles, nodeNeighborCommands, renderRouterConfig, startFrrDaemon, vtysh, writeRouterConfig, type BgpNeighborState, type FrrDaemon, type FrrFiles } from './frr.js';
import { labPaths } from './paths.js';
import { spawnDaemon } from './processes.js';
import type { LabStateRecorder } from './state.js';
import type { LabLayout, Topology, TopologyRouter } from './topology.js';
import { waitFor } from './wait.js';

/** One route of FRR's `show bgp <afi> unicast json`: the peers each valid path came from. */
export interface RibRoute {
  prefix: string;
  peers: string[];
}

export function parseRib(json: string): RibRoute[] {
  const parsed = JSON.parse(json) as { routes?: Record<string, { valid?: boolean; peerId?: string }[]> };
  return Object.entries(parsed.routes ?? {}).map(([prefix, paths]) => ({
    prefix,
    peers: paths.filter((p) => p.valid === true && typeof p.peerId === 'string').map((p) => p.peerId as string),
  }));
}

/** The lab processes of a router, in the order they stop (a restart starts them in the reverse order). */
export function routerProcessNames(router: Pick<TopologyRouter, 'name' | 'stack'>): string[] {
  return router.stack === 'bird' ? [`bird/${router.name}`] : [`bgpd/${router.name}`, `zebra/${router.name}`];
}

/** Where `lab status` points for talking to the router: FRR's vty directory or BIRD's control socket. */
export function routerControlPath(lab: string, router: Pick<TopologyRouter, 'name' | 'stack'>): string {
  const paths = labPaths(lab);
  return router.stack === 'bird' ? birdFiles(paths.birdDir(router.name)).socket : frrFiles(paths.frrDir(router.name)).runDir;
}

export async function startRouter(lab: string, topology: Topology, layout: LabLayout, router: TopologyRouter, recorder: LabStateRecorder): Promise<void> {
  const paths = labPaths(lab);
  const netns = paths.netns(router.name);
  if (router.stack === 'bird') {
    const files = birdFiles(paths.birdDir(router.name));
    await mkdir(files.dir, { recursive: true });
    await writeFile(files.config, renderBirdConf(topology, layout, router.name, files));
    spawnDaemon(paths, recorder, { name: `bird/${router.name}`, netns, command: 'bird', args: birdArgs(files).slice(1), markers: ['bird', files.config] });
    await waitBirdAnswers(router.name, files.socket, Date.now() + 30_000);
    return;
  }
  const files = frrFiles(paths.frrDir(router.name));
  const config = renderRouterConfig(topology, layout, router.name, files, { firstBoot: true });
  await writeRouterConfig(files, config);
  const pathspace = paths.frrPathspace(router.name);
  recorder.recordFrrPathspace(pathspace);
  // bfdd before bgpd: bgpd registers its BFD peers with it as the sessions come up.
  const daemons = config.bfdd === undefined ? (['zebra', 'bgpd'] as const) : (['zebra', 'bfdd', 'bgpd'] as const);
  for (const daemon of daemons) {
    const pid = await startFrrDaemon(netns, daemon, files, pathspace);
    const args = frrDaemonArgs(daemon, files, pathspace);
    recorder.recordProcess({
      name: `${daemon}/${router.name}`,
      pid,
      netns,
      cmdlineMarkers: [args[0] ?? daemon, pathspace],
      // labStart runs it in the foreground (no -d): the PID it spawns is then the daemon's own.
      argv: ['ip', 'netns', 'exec', netns, ...args.filter((a) => a !== '-d')],
    });
  }
  // bgpd reads its file once its loop runs, before it answers a vty: from then on the file may hold what a
  // restart needs (the update-delay the first boot goes without).
  await waitVtyAnswers(files, 'bgpd', router.name, Date.now() + 30_000);
  await writeFile(files.bgpdConf, renderRouterConfig(topology, layout, router.name, files).bgpd);
}

/** Waits until a router's first process answers (zebra for FRR, bird itself), so the next one can start. */
export async function waitRouterAnswers(lab: string, router: Pick<TopologyRouter, 'name' | 'stack'>, deadline: number): Promise<void> {
  const paths = labPaths(lab);
  if (router.stack === 'bird') return waitBirdAnswers(router.name, birdFiles(paths.birdDir(router.name)).socket, deadline);
  await waitVtyAnswers(frrFiles(paths.frrDir(router.name)), 'zebra', router.name, deadline);
}

async function waitBirdAnswers(name: string, socket: string, deadline: number): Promise<void> {
  await waitFor(`bird of ${name} answers`, deadline, undefined, async () => {
    const result = await execa('birdc', ['-s', socket, 'show status'], { reject: false, timeout: 5_000 });
    return result.exitCode === 0 && /Daemon is up and running/.test(result.stdout) ? undefined : `birdc exit ${result.exitCode}: ${result.stdout.split('\n').at(-1) ?? ''}`;
  });
}

/** The router's BGP neighbors (fabric and nodes, dynamic ones included) with their session state. */
export async function routerNeighbors(lab: string, router: Pick<TopologyRouter, 'name' | 'stack'>, signal?: AbortSignal): Promise<BgpNeighborState[]> {
  const paths = labPaths(lab);
  if (router.stack === 'bird') return birdNeighbors(birdFiles(paths.birdDir(router.name)), signal);
  return bgpSummary(frrFiles(paths.frrDir(router.name)), signal);
}

/** The router's BGP table of one family: each prefix with the addresses of the peers its valid paths came from. */
export async function routerRib(lab: string, router: Pick<TopologyRouter, 'name' | 'stack'>, family: 'ipv4' | 'ipv6', signal?: AbortSignal): Promise<RibRoute[]> {
  const paths = labPaths(lab);
  if (router.stack !== 'bird') return parseRib(await vtysh(frrFiles(paths.frrDir(router.name)), `show bgp ${family} unicast json`, signal));
  const files = birdFiles(paths.birdDir(router.name));
  const addressOf = new Map(parseBirdProtocols(await birdc(files, 'show protocols all', signal)).map((p) => [p.name, p.address]));
  const table = family === 'ipv4' ? 'master4' : 'master6';
  return parseBirdRoutes(await birdc(files, `show route table ${table}`, signal))
    .map((r) => ({ prefix: r.prefix, peers: r.protocols.flatMap((p) => addressOf.get(p) ?? []) }))
    .filter((r) => r.peers.length > 0);
}

/**
 * Adds or removes node neighbors of a running ToR: its configuration file is rewritten from `topology` (so a
 * restart neither forgets a node nor waits for one that is gone) and the running router follows it.
 */
export async function updateTorNeighbors(lab: string, topology: Topology, layout: LabLayout, tor: TopologyRouter, addresses: string[], op: 'add' | 'remove'): Promise<void> {
  const paths = labPaths(lab);
  if (tor.stack === 'bird') {
    const files = birdFiles(paths.birdDir(tor.name));
    await writeFile(files.config, renderBirdConf(topology, layout, tor.name, files));
    // bird adds and removes the protocols that changed and leaves the other sessions alone.
    const out = await birdc(files, 'configure');
    if (!/Reconfigured|Reconfiguration in progress/.test(out)) throw new LabError('LAB_START_FAILED', `bird of ${tor.name} refused its new configuration: ${out}`);
    return;
  }
  const files = frrFiles(paths.frrDir(tor.name));
  await writeFile(files.bgpdConf, renderRouterConfig(topology, layout, tor.name, files).bgpd);
  const commands = addresses.flatMap((a) => (op === 'add' ? nodeNeighborCommands(a).map((c) => c.trim()) : [`no neighbor ${a}`]));
  if (commands.length === 0) return;
  await vtysh(files, ['configure terminal', `router bgp ${tor.asn}`, ...commands, 'end'].join('\n'));
}

async function waitVtyAnswers(files: FrrFiles, daemon: FrrDaemon, router: string, deadline: number): Promise<void> {
  await waitFor(`${daemon} of ${router} answers`, deadline, undefined, async () => {
    const result = await execa('vtysh', ['--vty_socket', files.runDir, '-d', daemon, '-c', 'show version'], { reject: false, timeout: 5_000 });
    return result.exitCode === 0 ? undefined : `vtysh exit ${result.exitCode}`;
  });
}
