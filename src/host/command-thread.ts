// The thread that starts localRunner()'s commands. Starting a process is synchronous: libuv forks, then waits until
// the child has exec'd. In the agent that took 8-10 ms per command at ~190 MiB, and tens of milliseconds while
// the cores were busy, all of it holding the event loop (an apply starts four or five). Here only this thread
// waits; the agent's loop only posts a message. Everything else is as localRunner() always ran commands: execa,
// the same options, large inputs through an unlinked file, stdin held open until released.
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { execa } from 'execa';

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

/** The most a command may print (execa's default is 100 MB). */
const MAX_OUTPUT_BYTES = 1024 * 1024 * 1024;

/** What a pipe takes before its reader reads (Linux's default): a larger input goes through a file. */
const PIPE_BUFFER_BYTES = 65_536;

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

function start(request: CommandRequest, reply: (r: CommandReply) => void, running: Map<number, { abort: AbortController; release: () => void }>): void {
  const { id, argv, input } = request;
  const abort = new AbortController();
  if (request.aborted) abort.abort();
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  running.set(id, { abort, release });
  const failed = (err: unknown): void => {
    const { exitCode, stdout, stderr, isCanceled, code } = err as { exitCode?: unknown; stdout?: unknown; stderr?: unknown; isCanceled?: unknown; code?: unknown };
    reply({
      kind: 'failed',
      id,
      // A process killed on abort may still report a code: it did not end by itself.
      ...(typeof exitCode === 'number' && isCanceled !== true ? { exitCode } : {}),
      stdout: typeof stdout === 'string' ? stdout : '',
      stderr: typeof stderr === 'string' ? stderr : '',
      message: err instanceof Error ? err.message : String(err),
      ...(typeof code === 'string' ? { errorCode: code } : {}),
    });
  };
  const [file = '', ...args] = argv;
  // Each stderr line as it comes (execa keeps buffering it for the result).
  const watch = function* (line: unknown): Generator<unknown> {
    reply({ kind: 'stderr', id, line: String(line) });
    yield line;
  };
  // An input larger than a pipe takes goes in through an unlinked temporary file, so the process reads all of it
  // at its own pace. An input held open needs the pipe.
  let stdinFile: number | undefined;
  try {
    stdinFile = !request.holdStdin && input.length > PIPE_BUFFER_BYTES ? unlinkedFile(input) : undefined;
    const subprocess = execa(file, args, {
      // execa hands a descriptor number to spawn() as it is; its types only list 3-9.
      ...(stdinFile !== undefined ? { stdin: stdinFile as 3 } : request.holdStdin ? {} : { input }),
      cancelSignal: abort.signal,
      ...(request.watchStderr ? { stderr: watch } : {}),
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
      // Outputs are read whole: `ip -j route` of a full table runs to tens of MB.
      maxBuffer: MAX_OUTPUT_BYTES,
      // A digest is taken of the bytes: no string is made of them.
      ...(request.digest ? { encoding: 'buffer' as const } : {}),
    });
    if (request.holdStdin) {
      // A process that ends early (a refused input) closes its end: the write's EPIPE is not the error to report.
      subprocess.stdin.on('error', () => undefined);
      subprocess.stdin.write(input);
      void released.then(() => subprocess.stdin.end());
    }
    subprocess.then(
      (result) => reply({ kind: 'done', id, stdout: request.digest ? createHash('sha1').update(result.stdout).digest('hex') : String(result.stdout) }),
      (err: unknown) => failed(err),
    ).finally(() => running.delete(id));
  } catch (err) {
    running.delete(id);
    failed(err);
  } finally {
    // The child has its own descriptor once spawned (execa spawns before returning).
    if (stdinFile !== undefined) closeSync(stdinFile);
  }
}

const port = parentPort;
if (port !== null) {
  const running = new Map<number, { abort: AbortController; release: () => void }>();
  const reply = (r: CommandReply): void => port.postMessage(r);
  port.on('message', (m: CommandRequest | CommandControl) => {
    if (m.kind === 'run') start(m, reply, running);
    else if (m.kind === 'release') running.get(m.id)?.release();
    else running.get(m.id)?.abort.abort();
  });
}
