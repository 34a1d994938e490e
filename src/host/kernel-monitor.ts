// Tells the readers of the kernel's links, addresses and routes whether anything changed since they last read,
// so that a periodic resync of an unchanged kernel need not read it again. One long-lived `ip -o monitor label link
// address route` (the kernel's netlink notifications) counts the changes of each kind; it never says what changed:
// a reader that sees a change reads the kernel, as it always did. Whatever the monitor cannot vouch for counts as a
// change: before it runs (and shortly after it started, while it may not have subscribed yet), after it stopped or
// restarted, and after it reported lost notifications (netlink's ENOBUFS on its stderr). Readers keep a slow
// periodic read as well (KernelReadSchedule) in case the kernel drops a notification without saying so.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../observe/log.js';

export type KernelObjectKind = 'link' | 'address' | 'route';

/** Where the monitor stood when a reader read: compare it with a later mark (see changedSince). */
export interface KernelMark {
  /** Which run of the monitor process (a restarted monitor may have missed changes in between). */
  run: number;
  /** Changes of the kind counted in that run. */
  changes: number;
}

/** What a reader needs of the monitor; a reader without one reads the kernel at every resync. */
export interface KernelChanges {
  /** The current mark of `kind`; undefined while the monitor cannot vouch for the changes (not running yet). */
  mark(kind: KernelObjectKind): KernelMark | undefined;
  /** Calls the listener on every change of `kind` (at most once per output chunk); returns the unsubscribe function. */
  onChange(kind: KernelObjectKind, listener: () => void): () => void;
}

/** Pure: whether the kernel may differ from what a reader read at `before` (undefined: unknown, so yes). */
export function changedSince(before: KernelMark | undefined, now: KernelMark | undefined): boolean {
  return before === undefined || now === undefined || before.run !== now.run || before.changes !== now.changes;
}

/** One mark for links and addresses together (what connected networks and link MTUs are read from). */
export function linksAndAddressesMark(changes: KernelChanges | undefined): KernelMark | undefined {
  const link = changes?.mark('link');
  const address = changes?.mark('address');
  if (link === undefined || address === undefined || link.run !== address.run) return undefined;
  return { run: link.run, changes: link.changes + address.changes };
}

/**
 * When a resync reads the kernel: always when it may have changed since the last read, and at least every
 * `readEvery`-th resync regardless (a notification the kernel dropped silently is repaired then). Pure state
 * machine: the reader calls due() at each resync and read() when it read.
 */
export class KernelReadSchedule {
  private lastRead: KernelMark | undefined;
  private skipped = 0;

  constructor(private readonly readEvery: number) {
    if (!(Number.isInteger(readEvery) && readEvery >= 1)) throw new Error(`KernelReadSchedule: readEvery must be a positive integer, got ${readEvery}`);
  }

  /** Whether this resync must read; a false answer counts as a skipped resync. */
  due(now: KernelMark | undefined): boolean {
    if (changedSince(this.lastRead, now) || this.skipped + 1 >= this.readEvery) return true;
    this.skipped++;
    return false;
  }

  /** Records a read that began at `mark` (taken before the read: a change during it is seen next time). */
  read(mark: KernelMark | undefined): void {
    this.lastRead = mark;
    this.skipped = 0;
  }

  /** Forgets the last read (a failed apply: the next resync reads). */
  forget(): void {
    this.lastRead = undefined;
  }
}

export interface KernelChangeMonitorOptions {
  logger: Logger;
  /** Watch this named network namespace (`ip -n`) instead of the current one (tests, lab). */
  netns?: string;
  /** The `ip` binary; `ip` from PATH when omitted. */
  ipCommand?: string;
  /** How long after the start the monitor is trusted to be subscribed (default 500 ms). */
  settleMs?: number;
  /** Delay before a monitor that ended is started again (default 5 s). */
  restartDelayMs?: number;
}

const LABELS: Record<string, KernelObjectKind> = { '[LINK]': 'link', '[ADDR]': 'address', '[ROUTE]': 'route' };
const KINDS: KernelObjectKind[] = ['link', 'address', 'route'];

export class KernelChangeMonitor implements KernelChanges {
  private readonly options: KernelChangeMonitorOptions;
  private process: ChildProcess | undefined;
  private run = 0;
  private trusted = false;
  private readonly changes: Record<KernelObjectKind, number> = { link: 0, address: 0, route: 0 };
  private readonly listeners: Record<KernelObjectKind, Set<() => void>> = { link: new Set(), address: new Set(), route: new Set() };
  private timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(options: KernelChangeMonitorOptions) {
    this.options = options;
  }

  mark(kind: KernelObjectKind): KernelMark | undefined {
    return this.trusted ? { run: this.run, changes: this.changes[kind] } : undefined;
  }

  onChange(kind: KernelObjectKind, listener: () => void): () => void {
    this.listeners[kind].add(listener);
    return () => this.listeners[kind].delete(listener);
  }

  /** Starts the monitor (and restarts it whenever it ends) until the signal aborts. */
  start(signal: AbortSignal): void {
    if (signal.aborted) return;
    signal.addEventListener('abort', () => this.stop(), { once: true });
    this.spawnMonitor();
  }

  private stop(): void {
    this.stopped = true;
    this.trusted = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.process?.kill();
    this.process = undefined;
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  private spawnMonitor(): void {
    if (this.stopped) return;
    const { netns, ipCommand = 'ip', logger } = this.options;
    const run = ++this.run;
    this.trusted = false;
    const argv = [...(netns === undefined ? [] : ['-n', netns]), '-o', 'monitor', 'label', 'link', 'address', 'route'];
    const child = spawn(ipCommand, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    this.process = child;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const seen = new Set<KernelObjectKind>();
      for (const [label, kind] of Object.entries(LABELS)) if (chunk.includes(label)) seen.add(kind);
      this.changed(seen);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      // Lost notifications (netlink ENOBUFS) or anything else unexpected: every kind may have changed.
      logger.warn('kernel change monitor reported a problem; every reader reads the kernel again', { stderr: chunk.trim().slice(0, 200) });
      this.changed(new Set(KINDS));
    });
    child.on('error', (err) => logger.warn('kernel change monitor could not run; resyncs read the kernel every time', { error: err.message }));
    child.on('close', () => {
      if (this.process !== child) return;
      this.process = undefined;
      this.trusted = false;
      this.changed(new Set(KINDS));
      if (this.stopped) return;
      logger.warn('kernel change monitor ended; starting it again', { restartInMs: this.options.restartDelayMs ?? 5_000 });
      this.later(this.options.restartDelayMs ?? 5_000, () => this.spawnMonitor());
    });
    this.later(this.options.settleMs ?? 500, () => {
      if (this.run === run && this.process === child) this.trusted = true;
    });
  }

  private changed(kinds: ReadonlySet<KernelObjectKind>): void {
    for (const kind of kinds) {
      this.changes[kind]++;
      for (const l of this.listeners[kind]) {
        try {
          l();
        } catch (err) {
          this.options.logger.error('kernel change listener failed', { error: err instanceof Error ? err.message : String(err) });
        }
      }
    }
  }
}
