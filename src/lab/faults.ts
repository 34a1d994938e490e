// Faults a test injects into a running lab: a daemon stopped with any signal and started again with the command
// line it was recorded with, and a ToR's routing stack restarted as on a real router.
import { execa } from 'execa';
import { LabError } from './errors.js';
import { frrFiles } from './frr.js';
import { labPaths } from './paths.js';
import { cmdlineMatches, processAlive, processRecordOf, spawnDaemon } from './processes.js';
import { LabStateRecorder, readLabState } from './state.js';
import { sleep, waitFor } from './wait.js';

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

/** Starts a stopped daemon of the lab again with the command line it was first started with; returns its PID. */
export function labStart(lab: string, processName: string): number {
  const record = processRecordOf(lab, processName);
  if (processAlive(record.pid) && cmdlineMatches(record.pid, record.cmdlineMarkers)) {
    throw new LabError('LAB_BAD_TARGET', `${processName} is running (pid ${record.pid})`);
  }
  const [command, ...args] = record.argv ?? [];
  if (command === undefined) throw new LabError('LAB_START_FAILED', `${processName}: its command line was not recorded`);
  // The recorded command line already enters the namespace (`ip netns exec` / `nsenter`): run it as it was.
  const recorder = new LabStateRecorder(readLabState(lab)!);
  const started = spawnDaemon(labPaths(lab), recorder, { name: record.name, command, args, markers: record.cmdlineMarkers });
  recorder.recordProcess({ ...started, ...(record.netns === undefined ? {} : { netns: record.netns }) });
  return started.pid;
}

export async function labRestart(lab: string, processName: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
  await labStop(lab, processName, signal);
  return labStart(lab, processName);
}

/**
 * A router's routing stack restarts as on a real ToR: bgpd and zebra stopped (bgpd first) and started again,
 * zebra first and bgpd once zebra answers. zebra -K keeps the kernel routes meanwhile, so forwarding goes on.
 * Returns the time the router was without its daemons (ms).
 */
export async function labRouterRestart(lab: string, router: string, options: { signal?: NodeJS.Signals; downMs?: number } = {}): Promise<number> {
  const daemons = ['bgpd', 'zebra'] as const;
  for (const daemon of daemons) processRecordOf(lab, `${daemon}/${router}`); // both exist before anything stops
  const stoppedAt = performance.now();
  for (const daemon of daemons) await labStop(lab, `${daemon}/${router}`, options.signal ?? 'SIGKILL');
  if (options.downMs !== undefined) await sleep(options.downMs);
  labStart(lab, `zebra/${router}`);
  const files = frrFiles(labPaths(lab).frrDir(router));
  await waitFor(`zebra of ${router} answers`, Date.now() + 30_000, undefined, async () => {
    const result = await execa('vtysh', ['--vty_socket', files.runDir, '-d', 'zebra', '-c', 'show version'], { reject: false, timeout: 5_000 });
    return result.exitCode === 0 ? undefined : `vtysh exit ${result.exitCode}`;
  });
  labStart(lab, `bgpd/${router}`);
  return Math.round(performance.now() - stoppedAt);
}
