// One interactive `ipset -` process kept running between writes: a pod label change is a few set entries, and
// starting a process for them cost more than the change (8-10 ms from the agent's heap, tens of ms on busy cores).
// Interactive ipset carries out each command as it reads it and goes on after a refused one, printing the error;
// `version` after a batch prints a line no error starts like, so everything printed before it is the batch's.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';

export class IpsetSessionError extends Error {
  readonly code = 'IPSET_SESSION_FAILED';
  /** ipset refused a line (else the process ended or was stopped: nothing was refused). */
  readonly refused: boolean;
  constructor(message: string, refused = false) {
    super(message);
    this.refused = refused;
    this.name = 'IpsetSessionError';
  }
}

/** What `version` prints ("ipset v7.17, protocol version: 7"); an error reads "ipset v7.17: ...". */
const VERSION_LINE = /^ipset v[\d.]+, protocol version: \d+$/;
const PROMPT = 'ipset> ';

/** A child's stdout: a pipe, a socket underneath (which can stop keeping the process alive). */
function pipeOf(child: ChildProcess): Socket | null {
  return child.stdout as Socket | null;
}

interface PendingBatch {
  errors: string[];
  resolve: () => void;
  reject: (error: Error) => void;
}

export class IpsetSession {
  private child: ChildProcess | undefined;
  private tail = '';
  private pending: PendingBatch | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /** `argv` runs `ipset -` where the sets are (e.g. through `ip netns exec NAME`), its stdout line-buffered (stdbuf -oL). */
  constructor(private readonly argv: readonly string[]) {}

  /**
   * Runs `ipset restore`-style lines (commands without the leading `ipset`), one batch at a time. Rejects when any
   * line was refused (the others were carried out: the caller re-reads the sets) or the process ended.
   */
  run(script: string, signal?: AbortSignal): Promise<void> {
    const result = this.queue.then(() => this.runNow(script, signal));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** The running process's id (none before the first batch and after it ended). */
  pid(): number | undefined {
    return this.child?.pid;
  }

  close(): void {
    const child = this.child;
    this.child = undefined;
    child?.stdin?.end();
    child?.kill('SIGTERM');
    this.fail(new IpsetSessionError('ipset session closed while a batch was running'));
  }

  private runNow(script: string, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.reject(new IpsetSessionError('aborted'));
    const child = this.child ?? this.startProcess();
    // Held open only while a batch runs: an idle session never keeps the process alive.
    pipeOf(child)?.ref();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        // What it did of the batch is unknown: stop it, the caller re-reads.
        if (this.child === child) this.child = undefined;
        child.kill('SIGKILL');
        this.fail(new IpsetSessionError('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        pipeOf(child)?.unref();
      };
      this.pending = {
        errors: [],
        resolve: () => {
          done();
          resolve();
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
      child.stdin?.write(`${script.endsWith('\n') || script === '' ? script : `${script}\n`}version\n`);
    });
  }

  private startProcess(): ChildProcess {
    // Errors go to stderr, `version` to stdout: one pipe for both keeps them in the order they were printed.
    const child = spawn('sh', ['-c', 'exec "$@" 2>&1', 'sh', ...this.argv], { stdio: ['pipe', 'pipe', 'ignore'], env: { ...process.env, LC_ALL: 'C' } });
    this.child = child;
    this.tail = '';
    child.unref();
    pipeOf(child)?.unref();
    (child.stdin as Socket | null)?.unref();
    child.stdin?.on('error', () => undefined); // EPIPE when it died: reported by 'exit'
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      if (this.child === child) this.onOutput(chunk);
    });
    const ended = (why: string): void => {
      if (this.child === child) this.child = undefined;
      this.fail(new IpsetSessionError(`${this.argv.join(' ')} ${why}`));
    };
    child.on('error', (error) => ended(`could not run: ${error.message}`));
    child.on('exit', (code, signal) => ended(`exited ${code ?? signal ?? ''}`));
    return child;
  }

  private onOutput(chunk: string): void {
    const lines = (this.tail + chunk).split('\n');
    this.tail = lines.pop() ?? '';
    for (const raw of lines) {
      let line = raw;
      while (line.startsWith(PROMPT)) line = line.slice(PROMPT.length);
      line = line.trim();
      const pending = this.pending;
      if (line === '' || pending === undefined) continue;
      if (!VERSION_LINE.test(line)) {
        pending.errors.push(line);
        continue;
      }
      this.pending = undefined;
      if (pending.errors.length === 0) pending.resolve();
      else pending.reject(new IpsetSessionError(`ipset refused: ${pending.errors.join('; ')}`, true));
    }
  }

  private fail(error: Error): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(error);
  }
}
