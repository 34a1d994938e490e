// How the NAT reconciler runs iptables/ipset: through a small runner, so the same applier drives the current
// network namespace (the agent) or another one (`ip netns exec`, the lab tests).
import { execa } from 'execa';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** The exit code; -1 when the process could not be started or was killed. */
  exitCode: number;
}

export interface RunOptions {
  /** Written to the command's stdin (restore input). */
  input?: string;
  signal?: AbortSignal;
}

/** Runs one command without a shell; never throws for a non-zero exit (callers decide what failure means). */
export type CommandRunner = (argv: readonly string[], options?: RunOptions) => Promise<CommandResult>;

export class CommandError extends Error {
  readonly code = 'NAT_COMMAND_FAILED';
  constructor(
    readonly argv: readonly string[],
    readonly result: CommandResult,
    /** The stdin the command was given (restore input), kept for the log. */
    readonly input?: string,
  ) {
    super(`${argv.join(' ')} exited ${result.exitCode}: ${result.stderr.trim() || result.stdout.trim()}`);
    this.name = 'CommandError';
  }
}

export function localRunner(): CommandRunner {
  return async (argv, options = {}) => {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('localRunner: empty argv');
    const result = await execa(file, args, {
      reject: false,
      input: options.input ?? '',
      ...(options.signal === undefined ? {} : { cancelSignal: options.signal }),
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
    });
    const exitCode = typeof result.exitCode === 'number' ? result.exitCode : -1;
    return { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? ''), exitCode };
  };
}

/** Runs every command inside the named network namespace (`ip netns exec NAME ...`). */
export function netnsRunner(netns: string, base: CommandRunner = localRunner()): CommandRunner {
  return (argv, options) => base(['ip', 'netns', 'exec', netns, ...argv], options);
}

/** Runs a command and throws CommandError on a non-zero exit. */
export async function runChecked(run: CommandRunner, argv: readonly string[], options?: RunOptions): Promise<string> {
  const result = await run(argv, options);
  if (result.exitCode !== 0) throw new CommandError(argv, result, options?.input);
  return result.stdout;
}
