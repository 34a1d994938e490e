// The thread that starts localRunner()'s commands. Starting a process is synchronous: libuv forks, then waits until
// the child has exec'd. In the agent that took 8-10 ms per command at ~190 MiB, and tens of milliseconds while
// the cores were busy, all of it holding the event loop (an apply starts four or five). Here only this thread
// waits; the agent's loop only posts a message. Large inputs go through an unlinked file; stdin may be held open
// until released.
//
// node:child_process rather than execa: loading execa 9 took this thread ~200 ms of CPU and 5 MiB, at every agent
// start, on the way to the first command (the pod MTU read the first BGP plan waits for), for the few options used
// here (docs/benchmarks.md, node join).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentPort } from 'node:worker_threads';

/** A command to start; `id` names it in every later message. */
export interface CommandRequest {
  kind: 'run';
  id: number;
  argv: readonly string[];
  input: string;
  /** Keep stdin open after the input until a `release` comes. */
  holdStdin: boolean;
  /** Send each stderr line as it comes (the caller settles on it). */
  watchStderr: boolean;
  /** Reply with the SHA-1 (hex) of stdout instead of stdout. */
  digest: boolean;
  /** The caller's signal was aborted before the call. */
  aborted: boolean;
}

export type CommandControl = { kind: 'release'; id: number } | { kind: 'abort'; id: number };

export type CommandReply =
  | { kind: 'stderr'; id: number; line: string }
  | { kind: 'done'; id: number; stdout: string }
  /** exitCode: only when the process ended by itself (not when it could not start or was aborted). */
  | { kind: 'failed'; id: number; exitCode?: number; stdout: string; stderr: string; message: string; errorCode?: string };

/** The most a command may print: `ip -j route` of a full table runs to tens of MB. */
const MAX_OUTPUT_BYTES = 1024 * 1024 * 1024;

/** What a pipe takes before its reader reads (Linux's default): a larger input goes through a file. */
const PIPE_BUFFER_BYTES = 65_536;

/** An aborted process that has not ended on SIGTERM gets SIGKILL after this long. */
const FORCE_KILL_AFTER_MS = 5_000;

/** A temporary file holding `text`, open for reading and already removed from its directory. */
function unlinkedFile(text: string): number {
  const dir = mkdtempSync(join(tmpdir(), 'podroute-input-'));
  try {
    const path = join(dir, 'input');
    writeFileSync(path, text);
    return openSync(path, 'r');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function start(request: CommandRequest, reply: (r: CommandReply) => void, running: Map<number, { abort: () => void; release: () => void }>): void {
  const { id, argv, input } = request;
  const [file = '', ...args] = argv;
  if (request.aborted) {
    reply({ kind: 'failed', id, stdout: '', stderr: '', message: `${file}: aborted before it started` });
    return;
  }
  // An input larger than a pipe takes goes in through an unlinked temporary file, so the process reads all of it
  // at its own pace. An input held open needs the pipe.
  let stdinFile: number | undefined;
  let child: ChildProcess;
  try {
    stdinFile = !request.holdStdin && input.length > PIPE_BUFFER_BYTES ? unlinkedFile(input) : undefined;
    child = spawn(file, args, { stdio: [stdinFile ?? 'pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  } catch (err) {
    reply({ kind: 'failed', id, stdout: '', stderr: '', message: err instanceof Error ? err.message : String(err), ...errorCodeOf(err) });
    return;
  } finally {
    // The child has its own descriptor once spawned.
    if (stdinFile !== undefined) closeSync(stdinFile);
  }

  // stdout as it came, decoded once at the end (a multi-byte character may span two reads).
  const stdout: Buffer[] = [];
  const digest = request.digest ? createHash('sha1') : undefined;
  let stdoutBytes = 0;
  let stderr = '';
  let pendingLine = '';
  let spawnError: Error | undefined;
  let ended: string | undefined; // why the process was ended from here: aborted, or too much output
  let killTimer: NodeJS.Timeout | undefined;
  const end = (why: string): void => {
    if (ended !== undefined || child.exitCode !== null || child.signalCode !== null) return;
    ended = why;
    child.kill('SIGTERM');
    // A process that ignores SIGTERM is not left behind.
    killTimer = setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_AFTER_MS);
  };
  running.set(id, { abort: () => end('aborted'), release: () => child.stdin?.end() });

  child.stdout?.on('data', (chunk: Buffer) => {
    stdoutBytes += chunk.length;
    if (stdoutBytes > MAX_OUTPUT_BYTES) return end(`printed more than ${MAX_OUTPUT_BYTES} bytes`);
    if (digest !== undefined) digest.update(chunk);
    else stdout.push(chunk);
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
    if (!request.watchStderr) return;
    // Each stderr line as it comes: the caller may settle on one while the process still runs.
    const lines = (pendingLine + chunk).split('\n');
    pendingLine = lines.pop() ?? '';
    for (const line of lines) reply({ kind: 'stderr', id, line });
  });
  if (child.stdin !== null) {
    // A process that ends early (a refused input) closes its end: the write's EPIPE is not the error to report.
    child.stdin.on('error', () => undefined);
    if (request.holdStdin) child.stdin.write(input);
    else child.stdin.end(input);
  }
  child.on('error', (err) => {
    // Could not start (ENOENT, EACCES): 'close' follows.
    spawnError = err;
  });
  child.on('close', (exitCode: number | null, signal: NodeJS.Signals | null) => {
    clearTimeout(killTimer);
    running.delete(id);
    if (request.watchStderr && pendingLine !== '') reply({ kind: 'stderr', id, line: pendingLine });
    const out = Buffer.concat(stdout).toString('utf8');
    if (spawnError === undefined && ended === undefined && exitCode === 0) {
      reply({ kind: 'done', id, stdout: digest !== undefined ? digest.digest('hex') : out });
      return;
    }
    const message = spawnError?.message ?? (ended !== undefined ? `${file}: ${ended}` : signal !== null ? `${file}: killed by ${signal}` : `${file}: exit code ${exitCode}`);
    reply({
      kind: 'failed',
      id,
      // Only a process that ended by itself has an exit code (an aborted one may still report one).
      ...(spawnError === undefined && ended === undefined && exitCode !== null ? { exitCode } : {}),
      stdout: out,
      stderr,
      message,
      ...errorCodeOf(spawnError),
    });
  });
}

function errorCodeOf(err: unknown): { errorCode?: string } {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? { errorCode: code } : {};
}

const port = parentPort;
if (port !== null) {
  const running = new Map<number, { abort: () => void; release: () => void }>();
  const reply = (r: CommandReply): void => port.postMessage(r);
  port.on('message', (m: CommandRequest | CommandControl) => {
    if (m.kind === 'run') start(m, reply, running);
    else if (m.kind === 'release') running.get(m.id)?.release();
    else running.get(m.id)?.abort();
  });
}
