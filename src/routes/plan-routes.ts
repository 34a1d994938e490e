// The route planner: desired routes vs the kernel's routes of our protocol -> the changes to make. Pure.
// Ownership: only routes of our protocol number are ever replaced or deleted. A prefix that has a route of
// another protocol (a foreign route) and none of ours is a conflict: we step aside and report it.
import { compareSortKeys, familyOf, ipSortKey, type IpFamily } from './ip-prefix.js';
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

function groupByPrefix(routes: readonly KernelRoute[]): Map<string, KernelRoute[]> {
  const byPrefix = new Map<string, KernelRoute[]>();
  for (const route of routes) {
    const list = byPrefix.get(route.prefix);
    if (list === undefined) byPrefix.set(route.prefix, [route]);
    else list.push(route);
  }
  return byPrefix;
}

/** Whether the route sits at the kernel key we install at (the family's default metric). */
export function hasDefaultKey(route: KernelRoute): boolean {
  return (route.metric ?? defaultMetric(familyOf(route.prefix))) === defaultMetric(familyOf(route.prefix));
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
 * Every input is canonical (prefixes and sorted next hops as ip-prefix.ts prints them, one desired route per
 * prefix): the route reconciler canonicalises the desired routes and kernel-routes.ts the kernel's, so nothing
 * is parsed here again.
 * Order: deletions first (they free kernel keys), then replacements, then conflicts; each sorted by prefix.
 * O(n log n) in the number of routes.
 */
export function planRoutes(
  desired: readonly DesiredRoute[],
  observed: readonly KernelRoute[],
  foreign: readonly KernelRoute[] = [],
): RouteChange[] {
  const want = new Map<string, DesiredRoute>();
  for (const route of desired) want.set(route.prefix, route);
  const ours = groupByPrefix(observed);
  const theirs = groupByPrefix(foreign);
  const deletes: KernelRoute[] = [];
  const replaces: { prefix: string; change: RouteChange }[] = [];
  const conflicts: { prefix: string; change: RouteChange }[] = [];

  // forEach, not for-of over entries: no [key, value] pair per route (a 50k-route burst is planned in passes).
  ours.forEach((routes, key) => {
    const target = want.get(key);
    // We keep at most one route per prefix, with the default metric and as a unicast route; anything else of
    // ours for the prefix (a stale metric, a blackhole someone made with our number) goes.
    let keeper: KernelRoute | undefined;
    for (const route of routes) {
      if (target !== undefined && keeper === undefined && hasDefaultKey(route)) keeper = route;
      else deletes.push(route);
    }
    if (target === undefined || keeper === undefined) return; // a missing keeper is planned below as new
    const unchanged = keeper.type === undefined && sameNextHops(keeper.nextHops, target.nextHops);
    if (!unchanged) replaces.push({ prefix: key, change: { kind: 'replace', route: target, previous: keeper } });
  });

  want.forEach((target, key) => {
    const existing = ours.get(key);
    if (existing !== undefined && existing.some(hasDefaultKey)) return; // handled above
    const blocking = theirs.get(key);
    if (blocking !== undefined) {
      conflicts.push({ prefix: key, change: { kind: 'conflict', route: target, foreign: blocking } });
    } else {
      replaces.push({ prefix: key, change: { kind: 'replace', route: target } });
    }
  });

  // Higher metrics first: for IPv4 a delete with metric 0 matches any metric, so it must come last.
  const metricOf = (d: KernelRoute): number => d.metric ?? defaultMetric(familyOf(d.prefix));
  const byPrefix = (c: { prefix: string }) => c.prefix;
  return [
    ...sortByPrefix(deletes, byPrefix, (a, b) => metricOf(b) - metricOf(a)).map((d): RouteChange => ({ kind: 'delete', route: d })),
    ...sortByPrefix(replaces, byPrefix).map((r) => r.change),
    ...sortByPrefix(conflicts, byPrefix).map((c) => c.change),
  ];
}
