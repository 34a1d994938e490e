// The thin applier between the route planner and the kernel: reads the main table with `ip -j`, applies a
// burst of changes as one batch of a long-lived `ip -force -batch -` process. It only ever writes routes of
// its own protocol number.
import { spawn, type ChildProcess } from 'node:child_process';
import { CommandFailedError, localRunner } from '../host/command.js';
import { KernelRouteError, RouteInputError, type FailedBatchLine } from './errors.js';
import { canonicalNextHops, canonicalPrefixText, familyOf, type IpFamily } from './ip-prefix.js';
import { defaultMetric, type KernelRoute, type RouteChange } from './plan-routes.js';

/**
 * Default routing protocol number of podroute's routes. Unused by iproute2's /etc/iproute2/rt_protos, by FRR's
 * rt_protos.d/frr.conf (186-197) and by the kernel's RTPROT_* list (0-4, 8-18, 42 babel, 99 openr, 186-192),
 * and unlike Calico's 80 it stays clear of the other route-programming agents that may share a node.
 */
export const DEFAULT_ROUTE_PROTOCOL = 44;

/** A main-table snapshot split by ownership. */
export interface RouteTableSnapshot {
  /** Routes carrying our protocol number (v4 and v6). */
  ours: KernelRoute[];
  /** Every other main-table route: never changed, only looked at for conflicts. */
  foreign: KernelRoute[];
}

export interface ApplyResult {
  /** Changes the kernel accepted (a delete of a route that was already gone counts as accepted). */
  applied: RouteChange[];
  failed: { change: RouteChange; error: string }[];
}

/** What the reconciler needs from a kernel; the real one is IpRouteTable. */
export interface RouteTable {
  read(signal?: AbortSignal): Promise<RouteTableSnapshot>;
  /** Applies the changes in one exchange; a refused change does not stop the others. */
  apply(changes: readonly RouteChange[], signal?: AbortSignal): Promise<ApplyResult>;
  /** Releases what the table keeps open between calls (a helper process); the next call opens it again. */
  close?(): void;
}

export interface IpRouteTableOptions {
  protocol: number;
  /** Run in this named network namespace (`ip -n`): for tests and the lab; the agent uses its own netns. */
  netns?: string;
  /** The `ip` binary; `ip` from PATH when omitted. */
  ipCommand?: string;
}

export function validateProtocol(protocol: unknown, field = 'protocol'): number {
  // 0 is "unspec" (a wildcard in filters), 1-4 are the kernel's own (redirect, kernel, boot, static).
  if (typeof protocol !== 'number' || !Number.isInteger(protocol) || protocol < 5 || protocol > 255) {
    throw new RouteInputError(field, protocol, 'a routing protocol number from 5 to 255 is required');
  }
  return protocol;
}

interface IpJsonNextHop {
  gateway?: string;
  via?: { host?: string };
}

interface IpJsonRoute extends IpJsonNextHop {
  dst?: string;
  protocol?: string | number;
  metric?: number;
  type?: string;
  table?: string;
  nexthops?: IpJsonNextHop[];
}

/**
 * Parses `ip -N -j [-6] route show table main` output (protocol and type as numbers). Entries that are not
 * routes of the main table with a parseable destination are skipped.
 */
export function parseIpRouteJson(output: string, family: IpFamily): KernelRoute[] {
  const trimmed = output.trim();
  if (trimmed === '') return [];
  const entries: unknown = JSON.parse(trimmed);
  if (!Array.isArray(entries)) throw new Error('ip -j route: expected a JSON array');
  const routes: KernelRoute[] = [];
  for (const entry of entries as IpJsonRoute[]) {
    if (typeof entry !== 'object' || entry === null || typeof entry.dst !== 'string') continue;
    if (entry.table !== undefined && entry.table !== 'main' && entry.table !== '254') continue;
    const prefix = canonicalPrefixText(entry.dst, family);
    if (prefix === undefined) continue;
    const protocol = Number(entry.protocol ?? 0);
    const hops: string[] = [];
    for (const hop of entry.nexthops ?? [entry]) {
      const gateway = hop.gateway ?? hop.via?.host;
      if (gateway !== undefined) hops.push(gateway);
    }
    const nextHops = hops.length === 0 ? hops : canonicalNextHops(hops);
    if (nextHops === undefined || !Number.isInteger(protocol)) continue;
    const route: KernelRoute = { prefix, nextHops, protocol };
    if (typeof entry.metric === 'number' && entry.metric !== defaultMetric(family)) route.metric = entry.metric;
    if (entry.type !== undefined && entry.type !== 'unicast' && entry.type !== '1') route.type = String(entry.type);
    routes.push(route);
  }
  return routes;
}

/**
 * The `ip -batch` lines for the changes (conflicts render nothing and get no line). A replace of one of our
 * routes is `route replace` (the kernel key is ours); a new prefix is `route add`, so a foreign route that
 * appeared since the last read makes it fail (EEXIST) instead of being overwritten.
 */
export function renderBatch(changes: readonly RouteChange[], protocol: number): { lines: string[]; changes: RouteChange[] } {
  const lines: string[] = [];
  const rendered: RouteChange[] = [];
  for (const change of changes) {
    if (change.kind === 'conflict') continue;
    if (change.kind === 'delete') {
      const { prefix, metric } = change.route;
      // An explicit metric: it is part of the kernel's key (metric 0 matches any metric for IPv4).
      lines.push(`route del ${prefix} proto ${protocol} metric ${metric ?? defaultMetric(familyOf(prefix))}`);
    } else {
      const { prefix, nextHops } = change.route;
      const verb = change.previous === undefined ? 'add' : 'replace';
      const via = nextHops.length === 1 ? `via ${nextHops[0]}` : nextHops.map((hop) => `nexthop via ${hop}`).join(' ');
      lines.push(`route ${verb} ${prefix} proto ${protocol} ${via}`);
    }
    rendered.push(change);
  }
  return { lines, changes: rendered };
}

/** Reads `ip -batch -force` stderr: each refused line is reported as "Command failed -:N" after its error. */
export function parseBatchErrors(stderr: string, lines: readonly string[]): FailedBatchLine[] {
  const failed: FailedBatchLine[] = [];
  let message: string[] = [];
  for (const text of stderr.split('\n')) {
    const marker = /^Command failed (?:-|\S+):(\d+)\s*$/.exec(text);
    if (marker === null) {
      if (text.trim() !== '') message.push(text.trim());
      continue;
    }
    const line = Number(marker[1]);
    failed.push({ line, command: lines[line - 1] ?? '', error: message.join('; ') || 'unknown error' });
    message = [];
  }
  return failed;
}

const GONE = /No such process|No such file or directory/;
const FAILED_MARKER = /^Command failed (?:-|\S+):(\d+)\s*$/;
/**
 * Ends every batch: it always fails (no interface name can be this long) without touching anything, and the
 * "Command failed -:N" that follows tells that every line before it has been carried out.
 */
const BATCH_SENTINEL = 'link show dev podroute-batch-end';

interface PendingBatch {
  /** Cumulative line numbers (since the process started) of the batch's first line and of its sentinel. */
  first: number;
  sentinel: number;
  lines: readonly string[];
  failed: FailedBatchLine[];
  resolve: (failed: FailedBatchLine[]) => void;
  reject: (error: Error) => void;
}

/**
 * One `ip -force -batch -` process kept running between batches: spawning a process from an agent with a big
 * heap costs more than programming a few hundred routes, and a burst is applied as many batches. Lines are
 * written to its stdin; its stderr reports each refused line ("Command failed -:N", N counted since the process
 * started). A batch is complete when the sentinel after it is reported. A process that dies is started again by
 * the next batch; the batch it was carrying fails as a whole (nothing is known about what it did).
 */
class IpBatchSession {
  private child: ChildProcess | undefined;
  private linesWritten = 0;
  private stderrTail = '';
  private messages: string[] = [];
  private pending: PendingBatch | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly command: string,
    private readonly args: readonly string[],
  ) {}

  /** Starts the process now if none runs, so that the next batch does not wait for one to start. */
  prepare(): void {
    if (this.child === undefined) this.startProcess();
  }

  /** Runs the lines as one batch; resolves with the refused ones (1-based line numbers within `lines`). */
  run(lines: readonly string[], signal?: AbortSignal): Promise<FailedBatchLine[]> {
    const result = this.queue.then(() => this.runNow(lines, signal));
    this.queue = result.catch(() => undefined);
    return result;
  }

  close(): void {
    const child = this.child;
    this.child = undefined;
    if (child !== undefined) {
      child.stdin?.end();
      child.kill('SIGTERM');
    }
    this.fail(new KernelRouteError('ROUTES_BATCH_FAILED', `${this.describe()}: closed while a batch was running`));
  }

  private describe(): string {
    return `${this.command} ${this.args.join(' ')}`;
  }

  private runNow(lines: readonly string[], signal?: AbortSignal): Promise<FailedBatchLine[]> {
    if (signal?.aborted) return Promise.reject(new KernelRouteError('ROUTES_BATCH_FAILED', `${this.describe()}: aborted`));
    const child = this.child ?? this.startProcess();
    return new Promise<FailedBatchLine[]>((resolve, reject) => {
      const onAbort = (): void => {
        // Stop the process: what it did of the batch is unknown, the caller re-reads the kernel.
        if (this.child === child) this.child = undefined;
        child.kill('SIGKILL');
        this.fail(new KernelRouteError('ROUTES_BATCH_FAILED', `${this.describe()}: aborted`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => signal?.removeEventListener('abort', onAbort);
      this.pending = {
        first: this.linesWritten + 1,
        sentinel: this.linesWritten + lines.length + 1,
        lines,
        failed: [],
        resolve: (failed) => {
          done();
          resolve(failed);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
      this.linesWritten += lines.length + 1;
      child.stdin?.write(lines.join('\n') + '\n' + BATCH_SENTINEL + '\n');
    });
  }

  private startProcess(): ChildProcess {
    const child = spawn(this.command, this.args, { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    this.child = child;
    this.linesWritten = 0;
    this.stderrTail = '';
    this.messages = [];
    child.stdin?.on('error', () => undefined); // EPIPE when it died: reported by 'exit'
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (this.child === child) this.onStderr(chunk);
    });
    const ended = (why: string): void => {
      if (this.child === child) this.child = undefined;
      const said = [...this.messages, this.stderrTail.trim()].filter((m) => m !== '').join('; ');
      this.fail(new KernelRouteError('ROUTES_BATCH_FAILED', `${this.describe()} ${why}${said === '' ? '' : `: ${said}`}`));
    };
    child.on('error', (error) => ended(`could not run: ${error.message}`));
    child.on('exit', (code, signal) => ended(`exited ${code ?? signal ?? ''}`));
    return child;
  }

  private onStderr(chunk: string): void {
    const text = this.stderrTail + chunk;
    const lines = text.split('\n');
    this.stderrTail = lines.pop() ?? '';
    for (const line of lines) {
      const marker = FAILED_MARKER.exec(line);
      if (marker === null) {
        if (line.trim() !== '') this.messages.push(line.trim());
        continue;
      }
      const number = Number(marker[1]);
      const error = this.messages.join('; ') || 'unknown error';
      this.messages = [];
      const pending = this.pending;
      if (pending === undefined) continue;
      if (number === pending.sentinel) {
        this.pending = undefined;
        pending.resolve(pending.failed);
      } else if (number >= pending.first && number < pending.sentinel) {
        const index = number - pending.first;
        pending.failed.push({ line: index + 1, command: pending.lines[index] ?? '', error });
      }
    }
  }

  private fail(error: Error): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(error);
  }
}

export class IpRouteTable implements RouteTable {
  readonly protocol: number;
  private readonly netnsArgs: string[];
  private readonly ipCommand: string;
  private readonly batches: IpBatchSession;
  private readonly runner = localRunner();

  constructor(options: IpRouteTableOptions) {
    this.protocol = validateProtocol(options.protocol, 'options.protocol');
    this.netnsArgs = options.netns === undefined ? [] : ['-n', options.netns];
    this.ipCommand = options.ipCommand ?? 'ip';
    this.batches = new IpBatchSession(this.ipCommand, [...this.netnsArgs, '-force', '-batch', '-']);
  }

  /** Ends the `ip -batch` process kept between batches (the next apply starts one again). */
  close(): void {
    this.batches.close();
  }

  async read(signal?: AbortSignal): Promise<RouteTableSnapshot> {
    // A read comes before the writes it plans: the batch process starts meanwhile (a start is ~15 ms of a
    // 1,000-route burst: 40 vs 55 ms for the same batch on a running process).
    this.batches.prepare();
    const [v4, v6] = await Promise.all([this.readFamily('ipv4', signal), this.readFamily('ipv6', signal)]);
    const snapshot: RouteTableSnapshot = { ours: [], foreign: [] };
    for (const route of [...v4, ...v6]) (route.protocol === this.protocol ? snapshot.ours : snapshot.foreign).push(route);
    return snapshot;
  }

  private async readFamily(family: IpFamily, signal?: AbortSignal): Promise<KernelRoute[]> {
    const args = [...this.netnsArgs, '-N', '-j', ...(family === 'ipv6' ? ['-6'] : ['-4']), 'route', 'show', 'table', 'main'];
    let stdout: string;
    try {
      stdout = await this.runner.run([this.ipCommand, ...args], signal === undefined ? {} : { signal });
    } catch (error) {
      throw new KernelRouteError('ROUTES_KERNEL_READ_FAILED', error instanceof CommandFailedError ? error.message : String(error));
    }
    try {
      return parseIpRouteJson(stdout, family);
    } catch (error) {
      throw new KernelRouteError('ROUTES_KERNEL_READ_FAILED', `${this.ipCommand} ${args.join(' ')}: unreadable output: ${String(error)}`);
    }
  }

  async apply(changes: readonly RouteChange[], signal?: AbortSignal): Promise<ApplyResult> {
    const batch = renderBatch(changes, this.protocol);
    if (batch.lines.length === 0) return { applied: [], failed: [] };
    const failedLines = await this.batches.run(batch.lines, signal);
    if (failedLines.length === 0) return { applied: batch.changes, failed: [] };
    const failedByIndex = new Map<number, string>();
    for (const failure of failedLines) {
      const change = batch.changes[failure.line - 1];
      // Deleting a route that is already gone leaves the kernel as we want it.
      if (change !== undefined && !(change.kind === 'delete' && GONE.test(failure.error))) failedByIndex.set(failure.line - 1, failure.error);
    }
    const applied: RouteChange[] = [];
    const failed: ApplyResult['failed'] = [];
    batch.changes.forEach((change, i) => {
      const error = failedByIndex.get(i);
      if (error === undefined) applied.push(change);
      else failed.push({ change, error });
    });
    return { applied, failed };
  }
}
