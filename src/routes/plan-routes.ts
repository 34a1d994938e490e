// The route planner: desired routes vs the kernel's routes of our protocol -> the changes to make. Pure.
// Ownership: only routes of our protocol number are ever replaced or deleted. A prefix that has a route of
// another protocol (a foreign route) and none of ours is a conflict: we step aside and report it.
import { RouteInputError } from './errors.js';
import { canonicalNextHops, canonicalPrefixText, compareSortKeys, ipSortKey, type IpFamily } from './ip-prefix.js';
import type { DesiredRoute } from './select-routes.js';

/** A route as read from the kernel's main table. */
export interface KernelRoute {
  /** Canonical CIDR ("10.1.4.5/32" for a host route, "0.0.0.0/0" for default). */
  prefix: string;
  /** Canonical gateways, sorted; empty for a route without gateway (dev-only, blackhole, ...). */
  nextHops: string[];
  protocol: number;
  /** The kernel's metric; undefined = the family's default (0 for IPv4, 1024 for IPv6). */
  metric?: number;
  /** Route type when it is not unicast (kernel number or name, e.g. "6" = blackhole). */
  type?: string;
}

export type RouteChange =
  /** Install or change our route; `previous` is our route being replaced, absent when the prefix is new. */
  | { kind: 'replace'; route: DesiredRoute; previous?: KernelRoute }
  /** Remove one of our routes (exactly this one: its metric is part of the kernel's key). */
  | { kind: 'delete'; route: KernelRoute }
  /** Not applied: another protocol's route holds the prefix and is left alone. */
  | { kind: 'conflict'; route: DesiredRoute; foreign: KernelRoute[] };

/** The metric the kernel gives a route added without one: routes we install always carry it. */
export function defaultMetric(family: IpFamily): number {
  return family === 'ipv4' ? 0 : 1024;
}

interface Canonical<T> {
  /** Canonical prefix text: the identity of a route in every map here. */
  prefix: string;
  family: IpFamily;
  nextHops: string[];
  item: T;
}

function familyOf(canonicalPrefix: string): IpFamily {
  return canonicalPrefix.includes(':') ? 'ipv6' : 'ipv4';
}

function canonicalDesired(routes: readonly DesiredRoute[]): Map<string, Canonical<DesiredRoute>> {
  const byPrefix = new Map<string, Canonical<DesiredRoute>>();
  routes.forEach((route, i) => {
    const prefix = canonicalPrefixText(route.prefix);
    if (prefix === undefined) throw new RouteInputError(`desired[${i}].prefix`, route.prefix, 'not a CIDR');
    const nextHops = canonicalNextHops(route.nextHops);
    if (nextHops === undefined || nextHops.length === 0) {
      throw new RouteInputError(`desired[${i}].nextHops`, route.nextHops, 'not a non-empty list of IP addresses');
    }
    if (byPrefix.has(prefix)) throw new RouteInputError(`desired[${i}].prefix`, route.prefix, 'listed twice');
    // Reuse the caller's object when it already is canonical: 50k fresh objects per sync cost GC time.
    const item = prefix === route.prefix && sameNextHops(nextHops, route.nextHops) ? route : { prefix, nextHops };
    byPrefix.set(prefix, { prefix, family: familyOf(prefix), nextHops, item });
  });
  return byPrefix;
}

function groupKernel(routes: readonly KernelRoute[], what: string): Map<string, Canonical<KernelRoute>[]> {
  const byPrefix = new Map<string, Canonical<KernelRoute>[]>();
  routes.forEach((route, i) => {
    const prefix = canonicalPrefixText(route.prefix);
    if (prefix === undefined) throw new RouteInputError(`${what}[${i}].prefix`, route.prefix, 'not a CIDR');
    const nextHops = route.nextHops.length === 0 ? route.nextHops : canonicalNextHops(route.nextHops);
    if (nextHops === undefined) throw new RouteInputError(`${what}[${i}].nextHops`, route.nextHops, 'not IP addresses');
    const entry = { prefix, family: familyOf(prefix), nextHops, item: route };
    const list = byPrefix.get(prefix);
    if (list === undefined) byPrefix.set(prefix, [entry]);
    else list.push(entry);
  });
  return byPrefix;
}

function hasDefaultKey(route: Canonical<KernelRoute>): boolean {
  return (route.item.metric ?? defaultMetric(route.family)) === defaultMetric(route.family);
}

function sameNextHops(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((hop, i) => hop === b[i]);
}

/** Sorts by prefix (IPv4 first, numeric order), then by `tie`; decorate-sort-undecorate so keys are built once. */
function sortByPrefix<T>(items: T[], prefixOf: (item: T) => string, tie: (a: T, b: T) => number = () => 0): T[] {
  const keyed = items.map((item) => ({ item, key: ipSortKey(prefixOf(item)) }));
  keyed.sort((a, b) => compareSortKeys(a.key, b.key) || tie(a.item, b.item));
  return keyed.map((k) => k.item);
}

/**
 * Plans the changes that make the kernel's routes of our protocol (`observed`) equal `desired`. `foreign` are
 * the other main-table routes (any other protocol); they are never changed and block new routes for their prefix.
 * Order: deletions first (they free kernel keys), then replacements, then conflicts; each sorted by prefix.
 * O(n log n) in the number of routes.
 */
export function planRoutes(
  desired: readonly DesiredRoute[],
  observed: readonly KernelRoute[],
  foreign: readonly KernelRoute[] = [],
): RouteChange[] {
  const want = canonicalDesired(desired);
  const ours = groupKernel(observed, 'observed');
  const theirs = groupKernel(foreign, 'foreign');
  const deletes: Canonical<KernelRoute>[] = [];
  const replaces: { prefix: string; change: RouteChange }[] = [];
  const conflicts: { prefix: string; change: RouteChange }[] = [];

  for (const [key, routes] of ours) {
    const target = want.get(key);
    // We keep at most one route per prefix, with the default metric and as a unicast route; anything else of
    // ours for the prefix (a stale metric, a blackhole someone made with our number) goes.
    let keeper: Canonical<KernelRoute> | undefined;
    for (const route of routes) {
      if (target !== undefined && keeper === undefined && hasDefaultKey(route)) keeper = route;
      else deletes.push(route);
    }
    if (target === undefined || keeper === undefined) continue; // a missing keeper is planned below as new
    const unchanged = keeper.item.type === undefined && sameNextHops(keeper.nextHops, target.nextHops);
    if (!unchanged) replaces.push({ prefix: key, change: { kind: 'replace', route: target.item, previous: keeper.item } });
  }

  for (const [key, target] of want) {
    const existing = ours.get(key);
    if (existing !== undefined && existing.some(hasDefaultKey)) continue; // handled above
    const blocking = theirs.get(key);
    if (blocking !== undefined) {
      conflicts.push({ prefix: key, change: { kind: 'conflict', route: target.item, foreign: blocking.map((b) => b.item) } });
    } else {
      replaces.push({ prefix: key, change: { kind: 'replace', route: target.item } });
    }
  }

  // Higher metrics first: for IPv4 a delete with metric 0 matches any metric, so it must come last.
  const metricOf = (d: Canonical<KernelRoute>): number => d.item.metric ?? defaultMetric(d.family);
  const byPrefix = (c: { prefix: string }) => c.prefix;
  return [
    ...sortByPrefix(deletes, byPrefix, (a, b) => metricOf(b) - metricOf(a)).map((d): RouteChange => ({ kind: 'delete', route: d.item })),
    ...sortByPrefix(replaces, byPrefix).map((r) => r.change),
    ...sortByPrefix(conflicts, byPrefix).map((c) => c.change),
  ];
}
