// `ip monitor route` in a network namespace, framed by sentinels: a throw-away host route added and deleted by
// the test marks a point in the event stream. The monitor counts as started only once it has printed the first
// sentinel, and its window ends with another, so "no route changed meanwhile" is a statement about a stream
// that was provably listening the whole time, never about a sleep that was hopefully long enough.
import { execa, type ResultPromise } from 'execa';
import { pollUntil } from '../poll.js';

export interface RouteMonitorOptions {
  /** `ip -ts`: every line starts with `[time]`. */
  timestamps?: boolean;
  /** The device of the sentinel routes (up in every namespace the tests use). */
  device?: string;
  /**
   * Leave out the kernel's own routes (`proto kernel`: e.g. the local route of an IPv6 link-local address that
   * finishes duplicate address detection meanwhile), which no reconciler writes.
   */
  ignoreKernelRoutes?: boolean;
}

/** Sentinels are host routes in 10.99.99.0/24, which no lab, topology or test routes. */
const SENTINEL_NET = '10.99.99.';

/** A monitor line without its `[time]` prefix. */
function textOf(line: string): string {
  return line.replace(/^\[[^\]]*\]\s*/, '');
}

export class RouteMonitor {
  private output = '';
  private nextSentinel = 1;
  private constructor(
    private readonly netns: string,
    private readonly process: ResultPromise,
    private readonly options: RouteMonitorOptions,
  ) {
    process.stdout?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
  }

  /** Starts the monitor and returns once it has seen sentinel 10.99.99.1 (the start of `linesSinceStart`). */
  static async start(netns: string, options: RouteMonitorOptions = {}): Promise<RouteMonitor> {
    const args = ['-n', netns, ...(options.timestamps === true ? ['-ts'] : []), 'monitor', 'route'];
    const child = execa('ip', args, { reject: false, buffer: false, env: { LC_ALL: 'C' } });
    const monitor = new RouteMonitor(netns, child, options);
    try {
      await monitor.mark();
    } catch (error) {
      monitor.stop();
      throw error;
    }
    return monitor;
  }

  /**
   * Adds and deletes a host route to `address` (by default the next unused sentinel) and waits until the
   * monitor has printed both; returns the address.
   */
  async mark(address = `${SENTINEL_NET}${this.nextSentinel}`): Promise<string> {
    if (address === `${SENTINEL_NET}${this.nextSentinel}`) this.nextSentinel++;
    const route = [`${address}/32`, 'dev', this.options.device ?? 'lo', 'proto', 'static'];
    await execa('ip', ['-n', this.netns, 'route', 'add', ...route]);
    await execa('ip', ['-n', this.netns, 'route', 'del', ...route]);
    await pollUntil(`ip monitor in ${this.netns} to report the sentinel ${address}`, () => this.lines().some((l) => textOf(l).startsWith(`Deleted ${address} `)), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    return address;
  }

  /** Lines printed after the deletion of sentinel `from` and before the addition of sentinel `to`. */
  between(from: string, to: string): string[] {
    const lines = this.lines();
    const start = lines.findIndex((l) => textOf(l).startsWith(`Deleted ${from} `));
    const end = lines.findIndex((l) => textOf(l).startsWith(`${to} `));
    if (start < 0 || end < 0) throw new Error(`sentinels ${from}/${to} not both seen:\n${this.output}`);
    return lines.slice(start + 1, end).filter((l) => l.trim() !== '' && !(this.options.ignoreKernelRoutes === true && / proto kernel( |$)/.test(l)));
  }

  /** Ends the window with a new sentinel, stops the monitor and returns what it saw since it started. */
  async close(): Promise<string[]> {
    try {
      const end = await this.mark();
      return this.between(`${SENTINEL_NET}1`, end);
    } finally {
      this.stop();
    }
  }

  stop(): void {
    if (this.process.pid !== undefined) this.process.kill('SIGTERM');
  }

  private lines(): string[] {
    return this.output.split('\n');
  }
}
