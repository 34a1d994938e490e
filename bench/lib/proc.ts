// Processes and network namespaces of the benchmarks. Every namespace and process a benchmark makes is
// registered with a Cleanup so it is gone afterwards, also when the benchmark fails half-way.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { execa } from 'execa';

export class BenchError extends Error {
  constructor(
    readonly code: 'BENCH_TIMEOUT' | 'BENCH_PROCESS_EXITED' | 'BENCH_SETUP_FAILED' | 'BENCH_BAD_OPTIONS',
    message: string,
  ) {
    super(message);
    this.name = 'BenchError';
  }
}

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Polls `check` every `intervalMs` until it returns a value other than undefined; fails after `timeoutMs`. */
export async function pollUntil<T>(what: string, timeoutMs: number, intervalMs: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) throw new BenchError('BENCH_TIMEOUT', `${what}: not reached within ${timeoutMs} ms${lastError === '' ? '' : ` (last error: ${lastError})`}`);
    await sleep(intervalMs);
  }
}

/** Undo actions run in reverse order of registration; each failure is kept, none stops the others. */
export class Cleanup {
  private readonly actions: { what: string; run: () => Promise<void> | void }[] = [];

  add(what: string, run: () => Promise<void> | void): void {
    this.actions.push({ what, run });
  }

  async run(): Promise<string[]> {
    const problems: string[] = [];
    while (this.actions.length > 0) {
      const action = this.actions.pop()!;
      try {
        await action.run();
      } catch (err) {
        problems.push(`${action.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return problems;
  }
}

export async function ip(args: string[], input?: string): Promise<string> {
  const result = await execa('ip', args, input === undefined ? {} : { input });
  return result.stdout;
}

export async function ipBatch(netns: string, lines: string[]): Promise<void> {
  await execa('ip', ['-n', netns, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

/** Creates a network namespace with loopback up; a leftover of a crashed run with the same name is removed first. */
export async function addNetns(name: string, cleanup: Cleanup): Promise<void> {
  await execa('ip', ['netns', 'delete', name], { reject: false });
  await execa('ip', ['netns', 'add', name]);
  cleanup.add(`netns ${name}`, async () => {
    await killNetnsProcesses(name);
    await execa('ip', ['netns', 'delete', name]);
  });
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Ends whatever still runs inside a namespace of ours (by PID, SIGKILL: the benchmark is over). */
export async function killNetnsProcesses(name: string): Promise<void> {
  const result = await execa('ip', ['netns', 'pids', name], { reject: false });
  for (const pid of result.stdout.split(/\s+/).filter((s) => s !== '').map(Number)) {
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export async function setSysctl(netns: string, key: string, value: string): Promise<void> {
  await execa('ip', ['netns', 'exec', netns, 'sysctl', '-qw', `${key}=${value}`]);
}

export interface DaemonOptions {
  name: string;
  netns?: string;
  command: string;
  args: string[];
  /** Where stdout and stderr go (appended). */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** SIGTERM-to-SIGKILL grace of stop() (default 3 s). */
  graceMs?: number;
}

export interface Daemon {
  name: string;
  /** PID of the daemon itself (`ip netns exec` execs into it, so it is the PID of the spawned child). */
  pid: number;
  child: ChildProcess;
  exited: boolean;
  /** Sends SIGTERM, waits up to graceMs, then SIGKILL; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts a daemon (inside `netns` when given) and registers its stop with `cleanup`. */
export function startDaemon(options: DaemonOptions, cleanup: Cleanup): Daemon {
  const fd = openSync(options.logFile, 'a');
  const [command, args] = options.netns === undefined ? [options.command, options.args] : ['ip', ['netns', 'exec', options.netns, options.command, ...options.args]];
  let child: ChildProcess;
  try {
    child = spawn(command, args, { stdio: ['ignore', fd, fd], env: options.env ?? process.env });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new BenchError('BENCH_SETUP_FAILED', `${options.name}: could not start ${options.command}`);
  const daemon: Daemon = {
    name: options.name,
    pid: child.pid,
    child,
    exited: false,
    stop: async (graceMs = options.graceMs ?? 3000) => {
      if (daemon.exited) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await gone;
      clearTimeout(timer);
    },
  };
  child.on('error', () => undefined);
  child.on('exit', () => {
    daemon.exited = true;
  });
  cleanup.add(`process ${options.name} (${child.pid})`, () => daemon.stop());
  return daemon;
}

export function logTail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** User + system CPU time of a process in milliseconds, from /proc/PID/stat (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command: state is [0], utime [11], stime [12].
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resident set size in MiB, from /proc/PID/status. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return match === null ? NaN : Number(match[1]) / 1024;
}
