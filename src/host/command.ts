// Running ip/iptables/ipset, in the current network namespace (the agent, in its node's) or in another one (the
// lab, tests, benches): one contract for every owner of host resources. A runner throws CommandFailedError when
// a command fails; a caller that accepts some failures (a missing chain) catches it and reads its stderr or exit
// code.
import { SHARE_ENV, Worker } from 'node:worker_threads';
import type { CommandControl, CommandReply, CommandRequest } from './command-thread.js';

export interface RunOptions {
  /** Written to the command's stdin (restore input). */
  input?: string;
  signal?: AbortSignal;
  /**
   * Looked at with the stderr seen so far, each time it grows: true settles the call as a success, an Error as that
   * failure, both without waiting for the process to end; undefined waits for more (or for the end).
   */
  settle?: (stderr: string) => true | Error | undefined;
  /** Keeps stdin open after the input until this settles: the process may wait there, holding what it holds. */
  stdinUntil?: Promise<unknown>;
  /**
   * Returns the SHA-1 (hex) of the output instead of the output: a large output that is only compared with an
   * earlier one is hashed where it is read, never copied between threads or decoded into a string.
   */
  digest?: boolean;
}

/** Runs one command without a shell and returns its stdout; throws CommandFailedError otherwise. */
export interface CommandRunner {
  run(argv: readonly string[], options?: RunOptions): Promise<string>;
  /**
   * The argv that runs `argv` where this runner runs its commands, for a process the caller keeps running itself
   * (see IpsetSession). Absent: the caller has only run() (a runner that records or stands in for commands).
   */
  argvFor?(argv: readonly string[]): string[];
}

export class CommandFailedError extends Error {
  readonly code = 'COMMAND_FAILED';
  readonly argv: readonly string[];
  /** Undefined when the process did not end by itself: not started, aborted, or judged failed by `settle`. */
  readonly exitCode: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
  /** The stdin the command was given (restore input), kept for the log. */
  readonly input: string | undefined;
  constructor(details: { argv: readonly string[]; exitCode?: number | undefined; stdout?: string; stderr?: string; input?: string | undefined; cause?: unknown }) {
    const { argv, exitCode, stdout = '', stderr = '', input, cause } = details;
    const said = stderr.trim() || stdout.trim();
    const why = exitCode !== undefined ? `exited ${exitCode}: ${said}` : `failed: ${said || (cause instanceof Error ? cause.message : String(cause))}`;
    super(`${argv.join(' ')} ${why}`, cause === undefined ? undefined : { cause });
    this.name = 'CommandFailedError';
    this.argv = argv;
    this.exitCode = exitCode;
    this.stdout = stdout;
    this.stderr = stderr;
    this.input = input;
  }
}

/**
 * Runs commands in the current network namespace. The processes are started from a thread of their own (see
 * command-thread.ts): starting one holds the thread that starts it for milliseconds, and the event loop is not that
 * thread.
 */
export function localRunner(): CommandRunner {
  return { run: (argv, options = {}) => commandThread.run(argv, options), argvFor: (argv) => [...argv] };
}

interface PendingCommand {
  stderr: (line: string) => void;
  end: (reply: Extract<CommandReply, { kind: 'done' | 'failed' }>) => void;
}

/** The process's one command thread, started with its first command; it keeps the process alive only while a command runs. */
class CommandThread {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, PendingCommand>();

  run(argv: readonly string[], options: RunOptions): Promise<string> {
    if (argv[0] === undefined) return Promise.reject(new CommandFailedError({ argv, stderr: 'empty command' }));
    const worker = this.started();
    const id = this.nextId++;
    const settle = options.settle;
    const signal = options.signal;
    let settled: ((verdict: true | Error, stderr: string) => void) | undefined;
    let seen = '';
    const failed = (details: { exitCode?: number | undefined; stdout?: string; stderr: string; cause: unknown }): CommandFailedError =>
      new CommandFailedError({ argv, input: options.input, ...details });
    const onAbort = (): void => worker.postMessage({ kind: 'abort', id } satisfies CommandControl);
    const ended = new Promise<string>((resolve, reject) => {
      this.pending.set(id, {
        stderr: (line) => {
          seen += `${line}\n`;
          const verdict = settle?.(seen);
          if (verdict !== undefined) settled?.(verdict, seen);
        },
        end: (reply) => {
          signal?.removeEventListener('abort', onAbort);
          if (reply.kind === 'done') {
            resolve(reply.stdout);
            return;
          }
          const cause = Object.assign(new Error(reply.message), reply.errorCode === undefined ? {} : { code: reply.errorCode });
          reject(failed({ exitCode: reply.exitCode, stdout: reply.stdout, stderr: reply.stderr, cause }));
        },
      });
    });
    if (this.pending.size === 1) worker.ref();
    signal?.addEventListener('abort', onAbort, { once: true });
    const request: CommandRequest = {
      kind: 'run',
      id,
      argv,
      input: options.input ?? '',
      holdStdin: options.stdinUntil !== undefined,
      watchStderr: settle !== undefined,
      digest: options.digest === true,
      aborted: signal?.aborted === true,
    };
    worker.postMessage(request);
    if (options.stdinUntil !== undefined) void options.stdinUntil.finally(() => worker.postMessage({ kind: 'release', id } satisfies CommandControl));
    if (settle === undefined) return ended;
    ended.catch(() => undefined); // once settled early, the process's own end is of no interest
    return new Promise<string>((resolve, reject) => {
      settled = (verdict, stderr) => (verdict === true ? resolve('') : reject(failed({ stderr, cause: verdict })));
      ended.then(resolve, (err: CommandFailedError) => (settle(err.stderr) === true ? resolve('') : reject(err)));
    });
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    // SHARE_ENV: the commands see this thread's environment, later changes included.
    const worker = new Worker(new URL('./command-thread.js', import.meta.url), { env: SHARE_ENV });
    worker.unref();
    worker.on('message', (reply: CommandReply) => {
      const call = this.pending.get(reply.id);
      if (call === undefined) return;
      if (reply.kind === 'stderr') {
        call.stderr(reply.line);
        return;
      }
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      call.end(reply);
    });
    // The thread never throws by design; should it end anyway, its commands fail and the next call starts another.
    const lost = (err: unknown): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      const calls = [...this.pending.values()];
      this.pending.clear();
      const message = `command thread ended: ${err instanceof Error ? err.message : String(err)}`;
      for (const call of calls) call.end({ kind: 'failed', id: 0, stdout: '', stderr: '', message });
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`exit code ${code}`)));
    this.worker = worker;
    return worker;
  }
}

const commandThread = new CommandThread();

/** Runs every command inside the named network namespace (`ip netns exec NAME ...`). */
export function netnsRunner(netns: string, base: CommandRunner = localRunner()): CommandRunner {
  const wrapped = (argv: readonly string[]): string[] => ['ip', 'netns', 'exec', netns, ...argv];
  const argvFor = base.argvFor?.bind(base);
  return { run: (argv, options) => base.run(wrapped(argv), options), ...(argvFor === undefined ? {} : { argvFor: (argv: readonly string[]) => argvFor(wrapped(argv)) }) };
}
