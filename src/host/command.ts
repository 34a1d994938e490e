// Running ip/iptables/ipset, in the current network namespace (the agent, in its node's) or in another one (the
// lab, tests, benches): one contract for every owner of host resources. A runner throws CommandFailedError when
// a command fails; a caller that accepts some failures (a missing chain) catches it and reads its stderr or exit
// code.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

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
}

/** Runs one command without a shell and returns its stdout; throws CommandFailedError otherwise. */
export interface CommandRunner {
  run(argv: readonly string[], options?: RunOptions): Promise<string>;
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

/** Runs commands in the current network namespace. */
export function localRunner(): CommandRunner {
  return {
    async run(argv, options = {}) {
      const [file, ...args] = argv;
      if (file === undefined) throw new CommandFailedError({ argv, stderr: 'empty command' });
      const settle = options.settle;
      let settled: ((verdict: true | Error, stderr: string) => void) | undefined;
      let seen = '';
      // Each stderr line as it comes (execa keeps buffering it for the result).
      const watch = function* (line: unknown): Generator<unknown> {
        seen += `${String(line)}\n`;
        const verdict = settle?.(seen);
        if (verdict !== undefined) settled?.(verdict, seen);
        yield line;
      };
      // An input larger than a pipe takes goes in through an unlinked temporary file, so the process reads all of it
      // while this thread is busy (a full sync renders its rules while ~300 KB of sets load); through a pipe the rest
      // would wait for the event loop. An input held open (stdinUntil) needs the pipe.
      const input = options.input ?? '';
      const stdinFile = options.stdinUntil === undefined && input.length > PIPE_BUFFER_BYTES ? unlinkedFile(input) : undefined;
      const subprocess = execa(file, args, {
        // execa hands a descriptor number to spawn() as it is; its types only list 3-9.
        ...(stdinFile !== undefined ? { stdin: stdinFile as 3 } : options.stdinUntil === undefined ? { input } : {}),
        ...(options.signal === undefined ? {} : { cancelSignal: options.signal }),
        ...(settle === undefined ? {} : { stderr: watch }),
        stripFinalNewline: false,
        env: { LC_ALL: 'C' },
        // Outputs are read whole: `ip -j route` of a full table runs to tens of MB.
        maxBuffer: MAX_OUTPUT_BYTES,
      });
      if (options.stdinUntil !== undefined) {
        // A process that ends early (a refused input) closes its end: the write's EPIPE is not the error to report.
        subprocess.stdin.on('error', () => undefined);
        subprocess.stdin.write(input);
        void options.stdinUntil.finally(() => subprocess.stdin.end());
      }
      // The child has its own descriptor once spawned (execa spawns before returning).
      if (stdinFile !== undefined) closeSync(stdinFile);
      const failed = (details: { exitCode?: number | undefined; stdout?: string; stderr: string; cause: unknown }): CommandFailedError =>
        new CommandFailedError({ argv, input: options.input, ...details });
      const ended = subprocess.then(
        (result) => String(result.stdout),
        (err: unknown) => {
          const { exitCode, stdout, stderr, isCanceled } = err as { exitCode?: unknown; stdout?: unknown; stderr?: unknown; isCanceled?: unknown };
          throw failed({
            // A process killed on abort may still report a code: it did not end by itself.
            exitCode: typeof exitCode === 'number' && isCanceled !== true ? exitCode : undefined,
            stdout: typeof stdout === 'string' ? stdout : '',
            stderr: typeof stderr === 'string' ? stderr : '',
            cause: err,
          });
        },
      );
      if (settle === undefined) return ended;
      ended.catch(() => undefined); // once settled early, the process's own end is of no interest
      return new Promise<string>((resolve, reject) => {
        settled = (verdict, stderr) => (verdict === true ? resolve('') : reject(failed({ stderr, cause: verdict })));
        ended.then(resolve, (err: CommandFailedError) => (settle(err.stderr) === true ? resolve('') : reject(err)));
      });
    },
  };
}

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

/** Runs every command inside the named network namespace (`ip netns exec NAME ...`). */
export function netnsRunner(netns: string, base: CommandRunner = localRunner()): CommandRunner {
  return { run: (argv, options) => base.run(['ip', 'netns', 'exec', netns, ...argv], options) };
}
