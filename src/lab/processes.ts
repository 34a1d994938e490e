// The lab's processes: each started detached with its PID recorded at once, recognised afterwards by its
// command line (PIDs get reused), and ended SIGTERM first, SIGKILL after a grace period.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../observe/log.js';
import { LabError } from './errors.js';
import type { LabPaths } from './paths.js';
import { readLabState, type LabStateRecorder, type ProcessRecord } from './state.js';
import { sleep } from './wait.js';

export interface SpawnSpec {
  name: string;
  netns?: string;
  /**
   * How to enter `netns`: `ip netns exec` also gives the process a private mount namespace (fine for daemons that
   * only need the network); `nsenter --net` keeps the host's, for processes that create namespaces the host must
   * see (the lab kubelet makes pod namespaces).
   */
  enter?: 'ip-netns-exec' | 'nsenter';
  command: string;
  args: string[];
  markers: string[];
}

function logFileName(name: string): string {
  return `${name.replace(/[^a-zA-Z0-9_.-]/g, '_')}.log`;
}

/** Starts a daemon detached (own session, stdio to its log file) and records its PID at once. */
export function spawnDaemon(paths: LabPaths, recorder: LabStateRecorder, spec: SpawnSpec): ProcessRecord {
  mkdirSync(paths.logDir, { recursive: true });
  const logFile = path.join(paths.logDir, logFileName(spec.name));
  const fd = openSync(logFile, 'a');
  const [command, args] =
    spec.netns === undefined
      ? [spec.command, spec.args]
      : spec.enter === 'nsenter'
        ? ['nsenter', [`--net=/run/netns/${spec.netns}`, '--', spec.command, ...spec.args]]
        : ['ip', ['netns', 'exec', spec.netns, spec.command, ...spec.args]];
  try {
    const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) throw new LabError('LAB_START_FAILED', `${spec.name}: could not start ${command}`);
    child.on('error', () => undefined);
    child.unref();
    const record: ProcessRecord = {
      name: spec.name,
      pid: child.pid,
      ...(spec.netns === undefined ? {} : { netns: spec.netns }),
      cmdlineMarkers: spec.markers,
      argv: [command, ...args],
    };
    recorder.recordProcess(record);
    return record;
  } finally {
    closeSync(fd);
  }
}

export function readCmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s) => s !== '');
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** True when /proc/PID/cmdline still belongs to the recorded process (PIDs get reused). */
export function cmdlineMatches(pid: number, markers: string[]): boolean {
  const args = readCmdline(pid);
  return args !== undefined && markers.every((m) => args.includes(m));
}

export function logTail(paths: LabPaths, name: string, lines = 15): string {
  try {
    return readFileSync(path.join(paths.logDir, logFileName(name)), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * SIGKILL for a process of a machine that goes away; one that ended since it was listed (a short-lived child of
 * the agent, such as a restore finishing) is no error.
 */
export function killGone(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export async function terminate(pids: Map<number, string>, graceMs: number, log?: Logger): Promise<void> {
  for (const [pid, what] of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      pids.delete(pid);
    }
    log?.debug('SIGTERM', { pid, what });
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && [...pids.keys()].some(processAlive)) await sleep(50);
  for (const [pid, what] of pids) {
    if (!processAlive(pid)) continue;
    log?.warn('process ignored SIGTERM; killing', { pid, what });
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const killDeadline = Date.now() + 5_000;
  while (Date.now() < killDeadline && [...pids.keys()].some(processAlive)) await sleep(50);
}

export function processRecordOf(lab: string, processName: string): ProcessRecord {
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  const record = state.processes.find((p) => p.name === processName);
  if (record === undefined) throw new LabError('LAB_BAD_TARGET', `lab ${lab} has no process named ${processName}`);
  return record;
}
