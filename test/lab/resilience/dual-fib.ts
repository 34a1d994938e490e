// Kernel FIB reads for the dual-homed resilience test: what a namespace would really forward with (`ip -j route`),
// not what a routing daemon believes.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { execa } from 'execa';
import { familyOf } from '../../../src/routes/ip-prefix.js';

const run = promisify(execFile);

export interface FibNextHop {
  gateway?: string;
  dev?: string;
  /** Kernel flags such as dead, linkdown, onlink. */
  flags: string[];
}

export interface FibRoute {
  prefix: string;
  protocol?: string;
  nextHops: FibNextHop[];
}

interface IpRouteJson {
  dst?: string;
  protocol?: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
  nexthops?: { gateway?: string; dev?: string; flags?: string[] }[];
}

/** Parses `ip -j route show PREFIX` (the route whose destination is exactly that prefix, if any). */
export function parseFibRoute(json: string, prefix: string): FibRoute | undefined {
  const routes = JSON.parse(json.trim() === '' ? '[]' : json) as IpRouteJson[];
  const route = routes.find((r) => r.dst === prefix) ?? (routes.length === 1 ? routes[0] : undefined);
  if (route === undefined) return undefined;
  const hops = route.nexthops ?? [{ gateway: route.gateway, dev: route.dev, flags: route.flags }];
  return {
    prefix,
    ...(route.protocol === undefined ? {} : { protocol: route.protocol }),
    nextHops: hops.map((h) => ({ ...(h.gateway === undefined ? {} : { gateway: h.gateway }), ...(h.dev === undefined ? {} : { dev: h.dev }), flags: h.flags ?? [] })),
  };
}

export async function fibRoute(netns: string, prefix: string): Promise<FibRoute | undefined> {
  const family = familyOf(prefix) === 'ipv6' ? '-6' : '-4';
  const { stdout } = await run('ip', ['-n', netns, '-j', family, 'route', 'show', 'exact', prefix]);
  return parseFibRoute(stdout, prefix);
}

/** The next hops a packet may really take: dead or carrier-less legs left out (the lab ignores linkdown routes). */
export function usableHops(route: FibRoute | undefined): FibNextHop[] {
  return (route?.nextHops ?? []).filter((h) => !h.flags.includes('dead') && !h.flags.includes('linkdown'));
}

/** `dev gateway` of the usable legs, sorted: a compact, comparable picture of a route. */
export function legs(route: FibRoute | undefined): string[] {
  return usableHops(route)
    .map((h) => `${h.dev ?? '?'} ${h.gateway ?? ''}`.trim())
    .sort();
}

/** Sets links of a namespace up or down in one `ip -batch` (all of them at once, as when a switch loses power). */
export async function setLinks(netns: string, links: string[], state: 'up' | 'down'): Promise<void> {
  if (links.length === 0) return;
  await execa('ip', ['-n', netns, '-batch', '-'], { input: links.map((l) => `link set ${l} ${state}`).join('\n') + '\n' });
}

/** Every interface of a namespace but its loopback. */
export async function interfacesOf(netns: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-n', netns, '-j', 'link', 'show']);
  return (JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n !== 'lo');
}
