// Faults a test injects into a running lab: a daemon stopped with any signal and started again with the command
// line it was recorded with, and a ToR's routing stack restarted as on a real router.
import { BIRD_RECOVERY_FLAG } from './bird.js';
import { LabError } from './errors.js';
import { labPaths } from './paths.js';
import { cmdlineMatches, processAlive, processRecordOf, spawnDaemon } from './processes.js';
import { routerProcessNames, waitRouterAnswers } from './routers.js';
import { LabStateRecorder, readLabState } from './state.js';
import { parseTopology, type TopologyRouter } from './topology.js';
import { sleep } from './wait.js';

/** Stops a daemon of the lab (e.g. `agent/r1n1`, `gobgpd/r1n1`) with the given signal and waits until it is gone. */
export async function labStop(lab: string, processName: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const record = processRecordOf(lab, processName);
  if (!processAlive(record.pid) || !cmdlineMatches(record.pid, record.cmdlineMarkers)) return;
  process.kill(record.pid, signal);
  const deadline = Date.now() + 15_000;
  while (processAlive(record.pid)) {
    if (Date.now() > deadline) throw new LabError('LAB_START_FAILED', `${processName} (pid ${record.pid}) did not stop on ${signal}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts a stopped daemon of the lab again with the command line it was first started with (and `extraArgs` for
 * this start only); returns its PID.
 */
export function labStart(lab: string, processName: string, options: { extraArgs?: readonly string[] } = {}): number {
  const record = processRecordOf(lab, processName);
  if (processAlive(record.pid) && cmdlineMatches(record.pid, record.cmdlineMarkers)) {
    throw new LabError('LAB_BAD_TARGET', `${processName} is running (pid ${record.pid})`);
  }
  const [command, ...args] = record.argv ?? [];
  if (command === undefined) throw new LabError('LAB_START_FAILED', `${processName}: its command line was not recorded`);
  // The recorded command line already enters the namespace (`ip netns exec` / `nsenter`): run it as it was.
  const recorder = new LabStateRecorder(readLabState(lab)!);
  const started = spawnDaemon(labPaths(lab), recorder, { name: record.name, command, args: [...args, ...(options.extraArgs ?? [])], markers: record.cmdlineMarkers });
  recorder.recordProcess({ ...started, argv: record.argv, ...(record.netns === undefined ? {} : { netns: record.netns }) });
  return started.pid;
}

export async function labRestart(lab: string, processName: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
  await labStop(lab, processName, signal);
  return labStart(lab, processName);
}

/** The router of a running lab as its topology declares it (its stack included). */
function labRouter(lab: string, router: string): TopologyRouter {
  const state = readLabState(lab);
  const found = state === undefined ? undefined : parseTopology(state.topologyText).routers.find((r) => r.name === router);
  if (found === undefined) throw new LabError('LAB_BAD_TARGET', `no router named ${router} in lab ${lab}`);
  return found;
}

/** Stops a router's routing stack (FRR: bgpd, then zebra; BIRD: bird) with the given signal. */
export async function labRouterStop(lab: string, router: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  const names = routerProcessNames(labRouter(lab, router));
  for (const name of names) processRecordOf(lab, name); // all exist before anything stops
  for (const name of names) await labStop(lab, name, signal);
}

/**
 * Starts a stopped router's routing stack again: FRR's zebra first and bgpd once zebra answers (zebra -K kept the
 * kernel routes meanwhile); BIRD in graceful-restart recovery (bird -R: its kernel routes persisted), or cold with
 * `coldStart`, for a ToR that lost its forwarding state (its links went down with it). FRR has one way to start.
 */
export async function labRouterStart(lab: string, router: string, options: { coldStart?: boolean } = {}): Promise<void> {
  const found = labRouter(lab, router);
  const [first, ...rest] = routerProcessNames(found).reverse();
  if (first === undefined) return;
  labStart(lab, first, { extraArgs: found.stack === 'bird' && options.coldStart !== true ? [BIRD_RECOVERY_FLAG] : [] });
  await waitRouterAnswers(lab, found, Date.now() + 30_000);
  for (const name of rest) labStart(lab, name);
}

/**
 * A router's routing stack restarts as on a real ToR: stopped (SIGKILL by default) and started again, forwarding
 * going on meanwhile from the kernel routes it left. Returns the time the router was without its daemons (ms).
 */
export async function labRouterRestart(lab: string, router: string, options: { signal?: NodeJS.Signals; downMs?: number } = {}): Promise<number> {
  const stoppedAt = performance.now();
  await labRouterStop(lab, router, options.signal ?? 'SIGKILL');
  if (options.downMs !== undefined) await sleep(options.downMs);
  await labRouterStart(lab, router);
  return Math.round(performance.now() - stoppedAt);
}
