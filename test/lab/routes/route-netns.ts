// A network namespace for the route tests: two veth pairs whose near ends carry the on-link networks the
// desired routes' next hops live in (this kernel has no dummy interfaces), v4 and v6.
import { execa, type ResultPromise } from 'execa';
import { pollUntil } from '../../poll.js';

export async function ip(...args: string[]): Promise<string> {
  const result = await execa('ip', args, { env: { LC_ALL: 'C' } });
  return result.stdout;
}

export interface RouteNetns {
  name: string;
  destroy(): Promise<void>;
}

export async function createRouteNetns(name: string): Promise<RouteNetns> {
  if (!/^h\d+rt-/.test(name)) throw new Error(`route test namespaces carry an hNNrt- prefix (got ${name})`);
  await execa('ip', ['netns', 'del', name], { reject: false }); // left over from a crashed run
  await ip('netns', 'add', name);
  const destroy = async (): Promise<void> => {
    await execa('ip', ['netns', 'del', name], { reject: false });
  };
  try {
    const batch = [
      'link set lo up',
      'link add h5v0 type veth peer name h5v1',
      'link add h5w0 type veth peer name h5w1',
      'link set h5v0 up',
      'link set h5v1 up',
      'link set h5w0 up',
      'link set h5w1 up',
      'addr add 10.250.0.1/24 dev h5v0',
      'addr add fd00:250::1/64 dev h5v0 nodad',
      'addr add 10.251.0.1/24 dev h5w0',
      'addr add fd00:251::1/64 dev h5w0 nodad',
    ];
    await execa('ip', ['-n', name, '-batch', '-'], { input: batch.join('\n') + '\n' });
  } catch (error) {
    await destroy();
    throw error;
  }
  return { name, destroy };
}

interface RawRoute {
  dst: string;
  protocol: string;
  gateway?: string;
  metric?: number;
  type?: string;
  nexthops?: { gateway: string }[];
}

/** The namespace's main-table routes as `ip -N -j` prints them, both families, keyed "dst proto". */
export async function mainRoutes(netns: string): Promise<Map<string, RawRoute>> {
  const out = new Map<string, RawRoute>();
  for (const family of ['-4', '-6']) {
    const routes = JSON.parse((await ip('-n', netns, '-N', '-j', family, 'route', 'show', 'table', 'main')) || '[]') as RawRoute[];
    for (const route of routes) out.set(`${route.dst} ${route.protocol}`, route);
  }
  return out;
}

/** Gateways of a route as the kernel lists them, sorted (string order: fine for the tests' addresses). */
export function gatewaysOf(route: RawRoute | undefined): string[] | undefined {
  if (route === undefined) return undefined;
  return (route.nexthops?.map((n) => n.gateway) ?? (route.gateway === undefined ? [] : [route.gateway])).sort();
}

/**
 * `ip monitor route` in the namespace, with sentinels: a throw-away route added and deleted by the test marks a
 * point in the event stream, so "nothing happened between A and B" needs no sleeping.
 */
export class RouteMonitor {
  private output = '';
  private constructor(
    private readonly netns: string,
    private readonly process: ResultPromise,
  ) {
    process.stdout?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
  }

  static async start(netns: string): Promise<RouteMonitor> {
    const child = execa('ip', ['-n', netns, 'monitor', 'route'], { reject: false, buffer: false, env: { LC_ALL: 'C' } });
    const monitor = new RouteMonitor(netns, child);
    try {
      await monitor.mark('10.99.99.1');
    } catch (error) {
      monitor.stop();
      throw error;
    }
    return monitor;
  }

  /** Adds and deletes a host route to `address` and waits until the monitor has printed both. */
  async mark(address: string): Promise<void> {
    await ip('-n', this.netns, 'route', 'add', `${address}/32`, 'dev', 'h5v0', 'proto', 'static');
    await ip('-n', this.netns, 'route', 'del', `${address}/32`, 'dev', 'h5v0', 'proto', 'static');
    await pollUntil(`ip monitor to report the sentinel ${address}`, () => this.output.includes(`Deleted ${address} `), { timeoutMs: 10_000, intervalMs: 50 });
  }

  /**
   * Lines printed after the deletion of sentinel `from` and before the addition of sentinel `to`, leaving out the
   * kernel's own routes (`proto kernel`: e.g. the local route of an IPv6 link-local address that finishes duplicate
   * address detection meanwhile), which no reconciler writes.
   */
  between(from: string, to: string): string[] {
    const lines = this.output.split('\n');
    const start = lines.findIndex((l) => l.startsWith(`Deleted ${from} `));
    const end = lines.findIndex((l) => l.startsWith(`${to} `));
    if (start < 0 || end < 0) throw new Error(`sentinels ${from}/${to} not both seen:\n${this.output}`);
    return lines.slice(start + 1, end).filter((l) => l.trim() !== '' && !/ proto kernel( |$)/.test(l));
  }

  stop(): void {
    if (this.process.pid !== undefined) this.process.kill('SIGTERM');
  }
}
