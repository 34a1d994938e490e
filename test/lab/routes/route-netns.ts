// A network namespace for the route tests: two veth pairs whose near ends carry the on-link networks the
// desired routes' next hops live in (this kernel has no dummy interfaces), v4 and v6.
import { execa } from 'execa';
import { testLabName } from '../lab/leftovers.js';

export async function ip(...args: string[]): Promise<string> {
  const result = await execa('ip', args, { env: { LC_ALL: 'C' } });
  return result.stdout;
}

export interface RouteNetns {
  name: string;
  destroy(): Promise<void>;
}

/** Route test namespaces are named `${ROUTE_NETNS_PREFIX}-...`. */
export const ROUTE_NETNS_PREFIX = testLabName('h21rt', 'rt');

export async function createRouteNetns(name: string): Promise<RouteNetns> {
  if (!name.startsWith(`${ROUTE_NETNS_PREFIX}-`)) throw new Error(`route test namespaces carry the ${ROUTE_NETNS_PREFIX}- prefix (got ${name})`);
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
