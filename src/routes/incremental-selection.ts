// Route selection kept up to date prefix by prefix. The learned table tells which of its prefixes changed;
// selection of one prefix depends only on that prefix's paths and the selection context, so only changed
// prefixes are judged again, and everything is judged again when the context (nodes, ranges, connected
// networks, conflicts) changes. The result always equals selectRoutes() over the whole table (a property test
// holds the two equal over random change sequences). Pure: no I/O, no clock.
import type { LearnedPath } from '../bgp/types.js';
import { parseIpPrefix, type IpPrefix } from './ip-prefix.js';
import {
  AddressCache,
  compareRejected,
  compileSelectionContext,
  selectPrefix,
  sortRoutes,
  type CompiledContext,
  type DesiredRoute,
  type RejectedPath,
  type RouteSelection,
  type RouteSelectionContext,
} from './select-routes.js';

/**
 * The learned table as the selector reads it: paths by prefix, every path of an entry carrying that entry's
 * prefix (what the BGP reconciler's learned table holds).
 */
export type LearnedPathsByPrefix = ReadonlyMap<string, readonly LearnedPath[]>;

/** Route changes by canonical prefix: the new route, or undefined when the prefix has no route any more. */
export type RouteChanges = Map<string, DesiredRoute | undefined>;

export class IncrementalRouteSelector {
  private contextKey: string | undefined;
  private ctx: CompiledContext | undefined;
  /** Set when the context changed: the next update judges every prefix. */
  private judgeAll = true;
  private readonly addresses = new AddressCache();
  /** Table key → its parsed prefix (undefined: not a CIDR). Only keys currently in the table. */
  private readonly parsed = new Map<string, IpPrefix | undefined>();
  /** Canonical prefix → the table keys that parse to it (nearly always exactly one, the canonical text itself). */
  private readonly keysByPrefix = new Map<string, string[]>();
  private readonly selected = new Map<string, DesiredRoute>();
  /** Refused paths by canonical prefix (or by table key when the key is not a CIDR). */
  private readonly rejectedBy = new Map<string, RejectedPath[]>();
  private rejectedChanges = 0;

  /**
   * Sets the selection context; returns true when it differs from the last one (then the next update judges
   * every prefix again). Throws RouteInputError (naming the field) for a malformed context, keeping the old one.
   */
  setContext(context: RouteSelectionContext): boolean {
    const key = JSON.stringify(context);
    if (key === this.contextKey) return false;
    this.ctx = compileSelectionContext(context);
    this.contextKey = key;
    this.judgeAll = true;
    return true;
  }

  /**
   * Brings the selection up to date with `table`, judging again the prefixes in `changedKeys` (table keys that
   * were added, changed or removed since the last update), or every prefix for 'all' and after a context change.
   * Returns the routes that changed, by canonical prefix.
   */
  update(table: LearnedPathsByPrefix, changedKeys: Iterable<string> | 'all'): RouteChanges {
    const ctx = this.ctx;
    if (ctx === undefined) throw new Error('IncrementalRouteSelector.update: setContext first');
    let keys: Iterable<string> = changedKeys;
    if (changedKeys === 'all' || this.judgeAll) {
      // Every key of the table, and every key we know that has left it.
      const all = new Set<string>(table.keys());
      for (const key of this.parsed.keys()) all.add(key);
      keys = all;
      this.judgeAll = false;
    }
    const dirty = new Set<string>();
    for (const key of keys) {
      const paths = table.get(key);
      const known = this.parsed.has(key);
      if (paths === undefined) {
        if (known) this.forgetKey(key, dirty);
        continue;
      }
      let prefix = this.parsed.get(key);
      if (!known) {
        prefix = parseIpPrefix(key);
        this.parsed.set(key, prefix);
        if (prefix !== undefined) {
          const list = this.keysByPrefix.get(prefix.text);
          if (list === undefined) this.keysByPrefix.set(prefix.text, [key]);
          else list.push(key);
        }
      }
      if (prefix === undefined) {
        const rejected: RejectedPath[] = [];
        for (const path of paths) {
          if (path.isWithdraw || path.neighborIp === undefined) continue;
          rejected.push({ prefix: path.prefix, neighborIp: path.neighborIp, nextHop: path.nextHop, reason: 'invalid-prefix' });
        }
        this.setRejected(key, rejected);
      } else {
        dirty.add(prefix.text);
      }
    }

    const changes: RouteChanges = new Map();
    for (const canonical of dirty) {
      const route = this.judge(canonical, table, ctx);
      const before = this.selected.get(canonical);
      if (route === undefined) {
        if (before !== undefined) {
          this.selected.delete(canonical);
          changes.set(canonical, undefined);
        }
      } else if (before === undefined || !sameNextHops(before.nextHops, route.nextHops)) {
        this.selected.set(canonical, route);
        changes.set(canonical, route);
      }
    }
    return changes;
  }

  /** The selected routes by canonical prefix (a live view: read it, do not keep it across updates). */
  routes(): ReadonlyMap<string, DesiredRoute> {
    return this.selected;
  }

  /** Increases whenever the set of refused paths may have changed (report them again only then). */
  rejectedVersion(): number {
    return this.rejectedChanges;
  }

  /** Refused paths, sorted as selectRoutes sorts them. */
  rejected(): RejectedPath[] {
    const all: RejectedPath[] = [];
    for (const list of this.rejectedBy.values()) all.push(...list);
    const parsed = new Map<string, IpPrefix | undefined>();
    for (const r of all) if (!parsed.has(r.prefix)) parsed.set(r.prefix, parseIpPrefix(r.prefix));
    return all.sort((a, b) => compareRejected(a, b, parsed));
  }

  /** The whole current selection, as selectRoutes returns it (sorted). */
  selection(): RouteSelection {
    return { routes: sortRoutes([...this.selected.values()]), rejected: this.rejected() };
  }

  private forgetKey(key: string, dirty: Set<string>): void {
    const prefix = this.parsed.get(key);
    this.parsed.delete(key);
    if (prefix === undefined) {
      this.setRejected(key, []);
      return;
    }
    const list = this.keysByPrefix.get(prefix.text);
    if (list !== undefined && list.length === 1 && list[0] === key) this.keysByPrefix.delete(prefix.text);
    else if (list !== undefined) {
      const rest = list.filter((k) => k !== key);
      if (rest.length === 0) this.keysByPrefix.delete(prefix.text);
      else this.keysByPrefix.set(prefix.text, rest);
    }
    dirty.add(prefix.text);
  }

  /** Judges one canonical prefix over the paths of every table key that parses to it. */
  private judge(canonical: string, table: LearnedPathsByPrefix, ctx: CompiledContext): DesiredRoute | undefined {
    const keys = this.keysByPrefix.get(canonical);
    const rejected: RejectedPath[] = [];
    let route: DesiredRoute | undefined;
    if (keys !== undefined) {
      const prefix = this.parsed.get(keys[0] as string) as IpPrefix;
      const group: LearnedPath[] = [];
      for (const key of keys) {
        const paths = table.get(key) ?? [];
        for (const path of paths) if (!path.isWithdraw && path.neighborIp !== undefined) group.push(path);
      }
      if (group.length > 0) route = selectPrefix(prefix, group, ctx, this.addresses, rejected);
    }
    this.setRejected(canonical, rejected);
    return route;
  }

  private setRejected(key: string, rejected: RejectedPath[]): void {
    const before = this.rejectedBy.get(key);
    if (rejected.length === 0) {
      if (before === undefined) return;
      this.rejectedBy.delete(key);
    } else {
      if (before !== undefined && sameRejections(before, rejected)) return;
      this.rejectedBy.set(key, rejected);
    }
    this.rejectedChanges++;
  }
}

function sameNextHops(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((hop, i) => hop === b[i]);
}

function sameRejections(a: readonly RejectedPath[], b: readonly RejectedPath[]): boolean {
  return (
    a.length === b.length &&
    a.every((r, i) => {
      const s = b[i] as RejectedPath;
      return r.prefix === s.prefix && r.neighborIp === s.neighborIp && r.nextHop === s.nextHop && r.reason === s.reason;
    })
  );
}
