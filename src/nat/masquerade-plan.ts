// The masquerade planner: what podroute's nat chain and ipsets should be, read from the config, and the smallest
// set of iptables-restore / ipset restore lines that turns what the kernel has into that. Pure: no I/O here.
//
// What we own, per IP family (nothing else in the nat table is ever touched):
//   ipset podroute-cluster-v4|v6  hash:net  the cluster pod ranges (sources that may be masqueraded)
//   ipset podroute-nomasq-v4|v6   hash:net  destinations never masqueraded: cluster ranges, non-masquerade CIDRs,
//                                           node addresses
//   chain nat/PODROUTE-MASQ       not from a pod → RETURN; to a no-masquerade destination → RETURN; else MASQUERADE
//   one jump nat/POSTROUTING → PODROUTE-MASQ, found by its comment
// Two sets rather than one: a non-masquerade CIDR must not turn its sources into "pods" that get masqueraded.
import { createHash } from 'node:crypto';
import { ipsetFamily, parseIpsetSave } from '../host/ipset-save.js';
import { IP_FAMILIES, isIpv4Mapped, parseIpPrefix, type IpFamily } from '../routes/ip-prefix.js';

export const MASQ_CHAIN = 'PODROUTE-MASQ';
export const MASQ_JUMP_COMMENT = 'podroute: masquerade pod traffic leaving the cluster';
const RULE_COMMENT_PREFIX = 'podroute:';
const HASH_LENGTH = 16;
const TMP_SUFFIX = '-tmp';
const DEFAULT_MAXELEM = 65536;

export interface MasqueradeConfig {
  /** The cluster pod ranges (all nodes' podCIDRs fall inside them), IPv4 and/or IPv6. */
  clusterRanges: string[];
  /** Destinations that are never masqueraded besides the cluster ranges (e.g. the node network, a VPC). */
  nonMasqueradeCIDRs?: string[];
  /** The nodes' addresses (IPs or CIDRs): pod-to-node traffic is never masqueraded. */
  nodeAddresses?: string[];
  /** MASQUERADE --random-fully (fully random source ports, avoids SNAT port races). Default true. */
  randomFully?: boolean;
}

export class MasqueradeConfigError extends Error {
  readonly code = 'NAT_BAD_CONFIG';
  constructor(
    /** The offending field, e.g. `nonMasqueradeCIDRs[2]`. */
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'MasqueradeConfigError';
  }
}

/** One family's validated, canonical masquerade config. */
export interface MasqueradeFamilySpec {
  family: IpFamily;
  /** Canonical CIDRs, sorted, without duplicates. */
  clusterRanges: string[];
  /** Cluster ranges + non-masquerade CIDRs + node addresses, canonical, sorted, without duplicates. */
  noMasqueradeDestinations: string[];
  randomFully: boolean;
}

/** The config split by family; a family without cluster ranges is null: podroute owns nothing there. */
export type MasqueradeSpec = Record<IpFamily, MasqueradeFamilySpec | null>;

/**
 * Parses an IP or CIDR (a bare IP is a host route) into canonical `addr/len`, or null when invalid. IPv4-mapped IPv6
 * is refused: it names IPv4 hosts, which the IPv6 sets never see.
 */
export function parseCidrOrIp(text: string): { family: IpFamily; cidr: string; prefixLength: number } | null {
  if (typeof text !== 'string') return null;
  const trimmed = text.trim();
  const prefix = trimmed === 'default' ? undefined : parseIpPrefix(trimmed);
  if (prefix === undefined || isIpv4Mapped(prefix)) return null;
  return { family: prefix.family, cidr: prefix.text, prefixLength: prefix.length };
}

function sortedUnique(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

/** Validates the config (errors name the bad field) and splits it by family. */
export function normalizeMasqueradeConfig(config: MasqueradeConfig): MasqueradeSpec {
  if (config === null || typeof config !== 'object') {
    throw new MasqueradeConfigError('masquerade', 'must be an object');
  }
  const perFamily: Record<IpFamily, { cluster: string[]; noMasq: string[] }> = {
    ipv4: { cluster: [], noMasq: [] },
    ipv6: { cluster: [], noMasq: [] },
  };
  const list = (field: keyof MasqueradeConfig, required: boolean): unknown[] => {
    const value = config[field];
    if (value === undefined && !required) return [];
    if (!Array.isArray(value)) throw new MasqueradeConfigError(field, 'must be a list of CIDRs');
    return value;
  };

  list('clusterRanges', true).forEach((item, i) => {
    const field = `clusterRanges[${i}]`;
    const parsed = typeof item === 'string' && item.includes('/') ? parseCidrOrIp(item) : null;
    if (parsed === null) throw new MasqueradeConfigError(field, `${JSON.stringify(item)} is not a CIDR`);
    if (parsed.prefixLength === 0) {
      throw new MasqueradeConfigError(field, `${String(item)} covers every address; a cluster range cannot`);
    }
    perFamily[parsed.family].cluster.push(parsed.cidr);
  });
  for (const field of ['nonMasqueradeCIDRs', 'nodeAddresses'] as const) {
    list(field, false).forEach((item, i) => {
      const parsed = typeof item === 'string' ? parseCidrOrIp(item) : null;
      if (parsed === null) {
        throw new MasqueradeConfigError(`${field}[${i}]`, `${JSON.stringify(item)} is not an IP address or CIDR`);
      }
      // hash:net cannot hold a /0: "never masquerade anything" becomes its two halves.
      if (parsed.prefixLength === 0) {
        const halves = parsed.family === 'ipv4' ? ['0.0.0.0/1', '128.0.0.0/1'] : ['::/1', '8000::/1'];
        perFamily[parsed.family].noMasq.push(...halves);
      } else {
        perFamily[parsed.family].noMasq.push(parsed.cidr);
      }
    });
  }
  if (config.randomFully !== undefined && typeof config.randomFully !== 'boolean') {
    throw new MasqueradeConfigError('randomFully', 'must be true or false');
  }

  const spec = { ipv4: null, ipv6: null } as MasqueradeSpec;
  for (const family of IP_FAMILIES) {
    const { cluster, noMasq } = perFamily[family];
    if (cluster.length === 0) continue;
    spec[family] = {
      family,
      clusterRanges: sortedUnique(cluster),
      noMasqueradeDestinations: sortedUnique([...cluster, ...noMasq]),
      randomFully: config.randomFully ?? true,
    };
  }
  return spec;
}

export function setNames(family: IpFamily): { cluster: string; noMasquerade: string } {
  const suffix = family === 'ipv4' ? 'v4' : 'v6';
  return { cluster: `podroute-cluster-${suffix}`, noMasquerade: `podroute-nomasq-${suffix}` };
}

export function tempSetName(name: string): string {
  return name + TMP_SUFFIX;
}

/** Every ipset name podroute's masquerade may own in a family (the temp sets of an interrupted swap too). */
export function ownedSetNames(family: IpFamily): string[] {
  const { cluster, noMasquerade } = setNames(family);
  return [cluster, noMasquerade, tempSetName(cluster), tempSetName(noMasquerade)];
}

export interface DesiredSet {
  name: string;
  family: IpFamily;
  entries: string[];
}

export interface DesiredRule {
  hash: string;
  /** The full restore line, `-A PODROUTE-MASQ -m comment --comment "podroute:HASH ..." ...`. */
  line: string;
}

export interface DesiredMasqueradeFamily {
  family: IpFamily;
  sets: DesiredSet[];
  rules: DesiredRule[];
}

/** A rule's hash covers the chain, the previous rule's hash and the rule itself: any change changes it. */
export function ruleHash(chain: string, previousHash: string, body: string): string {
  return createHash('sha256')
    .update(`${chain}\n${previousHash}\n${body}`)
    .digest('base64url')
    .slice(0, HASH_LENGTH);
}

export function desiredMasqueradeFamily(spec: MasqueradeFamilySpec): DesiredMasqueradeFamily {
  const names = setNames(spec.family);
  const bodies: Array<{ description: string; match: string }> = [
    { description: 'not from a pod: no NAT', match: `-m set ! --match-set ${names.cluster} src -j RETURN` },
    {
      description: 'to the cluster, a node or a non-masquerade range: no NAT',
      match: `-m set --match-set ${names.noMasquerade} dst -j RETURN`,
    },
    {
      description: 'pod traffic leaving the cluster: SNAT to the node',
      match: `-j MASQUERADE${spec.randomFully ? ' --random-fully' : ''}`,
    },
  ];
  let previous = '';
  const rules = bodies.map(({ description, match }) => {
    const hash = ruleHash(MASQ_CHAIN, previous, `${description}\n${match}`);
    previous = hash;
    return { hash, line: `-A ${MASQ_CHAIN} -m comment --comment "${RULE_COMMENT_PREFIX}${hash} ${description}" ${match}` };
  });
  return {
    family: spec.family,
    sets: [
      { name: names.cluster, family: spec.family, entries: spec.clusterRanges },
      { name: names.noMasquerade, family: spec.family, entries: spec.noMasqueradeDestinations },
    ],
    rules,
  };
}

/** The canonical jump, exactly as `iptables -S POSTROUTING` prints it. */
export function jumpRuleSpec(): string {
  return `-m comment --comment "${MASQ_JUMP_COMMENT}" -j ${MASQ_CHAIN}`;
}

// ---- observation (parsers of what iptables -S / ipset list -o save print) ----

export interface ObservedSet {
  name: string;
  type: string;
  /** ipset's family word: inet or inet6. */
  family: string;
  /** Canonical CIDRs, sorted. */
  entries: string[];
}

export interface ObservedMasqueradeFamily {
  /** Our sets that exist (by name), the temp sets included. */
  sets: Map<string, ObservedSet>;
  /** Our chain's rules as hashes in order (null for a rule without our hash comment); null: no chain. */
  chainRuleHashes: Array<string | null> | null;
  /** The POSTROUTING rules that jump to our chain, as `iptables -S POSTROUTING` prints them. */
  postroutingJumps: string[];
  /** POSTROUTING's first rule as printed (null: the chain is empty). */
  postroutingFirst: string | null;
}

/** Sets in `ipset list -o save` output (one or more), entries as canonical CIDRs, sorted. */
export function observedMasqueradeSets(text: string, ours?: (name: string) => boolean): Map<string, ObservedSet> {
  const sets = new Map<string, ObservedSet>();
  for (const set of parseIpsetSave(text, ours).values()) {
    // An entry we cannot read (another set type's syntax) still makes the set differ from what we want.
    const entries = set.entries.map((entry) => parseCidrOrIp(entry)?.cidr ?? entry).sort();
    sets.set(set.name, { name: set.name, type: set.type, family: set.family, entries });
  }
  return sets;
}

const HASH_COMMENT = new RegExp(`--comment "?${RULE_COMMENT_PREFIX}([A-Za-z0-9_-]{${HASH_LENGTH}})[ "]`);

/** Parses `iptables -t nat -S PODROUTE-MASQ` output into the rules' hashes, in order. */
export function parseChainRuleHashes(text: string, chain: string = MASQ_CHAIN): Array<string | null> {
  const hashes: Array<string | null> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`-A ${chain} `)) continue;
    hashes.push(HASH_COMMENT.exec(line)?.[1] ?? null);
  }
  return hashes;
}

/** POSTROUTING's first rule in `iptables -t nat -S POSTROUTING` output, null when it has none. */
export function parsePostroutingFirst(text: string): string | null {
  return text.split('\n').map((line) => line.trim()).find((line) => line.startsWith('-A POSTROUTING ')) ?? null;
}

/** The POSTROUTING rules (from `iptables -t nat -S POSTROUTING`) that jump or go to our chain. */
export function parsePostroutingJumps(text: string, chain: string = MASQ_CHAIN): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.startsWith('-A POSTROUTING ') && new RegExp(`\\s-[jg] ${chain}(\\s|$)`).test(line));
}

// ---- the plan ----

export interface MasqueradeFamilyPlan {
  family: IpFamily;
  /** Flush our chain before the ipset step: a set of ours has the wrong type and must be destroyed. */
  unreferenceChain: boolean;
  /** `ipset restore` lines (empty: no set changes). */
  ipsetRestore: string[];
  /** Lines between `*nat` and `COMMIT` for `iptables-restore --noflush` (empty: nothing to write). */
  iptablesRestore: string[];
  /** Sets to destroy after the iptables step (their rules are gone by then). */
  destroySetsAfter: string[];
  summary: MasqueradePlanSummary;
}

export interface MasqueradePlanSummary {
  setsWritten: string[];
  setsRecreated: string[];
  setsDestroyed: string[];
  chainWritten: boolean;
  chainDeleted: boolean;
  jumpInserted: boolean;
  jumpsDeleted: number;
}

export function isEmptyPlan(plan: MasqueradeFamilyPlan): boolean {
  return (
    !plan.unreferenceChain &&
    plan.ipsetRestore.length === 0 &&
    plan.iptablesRestore.length === 0 &&
    plan.destroySetsAfter.length === 0
  );
}

function sameEntries(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((entry, i) => entry === b[i]);
}

function createLine(set: DesiredSet, name: string = set.name): string {
  const maxelem = Math.max(DEFAULT_MAXELEM, set.entries.length);
  return `create ${name} hash:net family ${ipsetFamily(set.family)} hashsize 1024 maxelem ${maxelem}`;
}

function deleteLine(observedRule: string): string {
  return observedRule.replace(/^-A /, '-D ');
}

/**
 * desired null: the family is not (or no longer) masqueraded; remove what we own there.
 * Plans only differences: an unchanged world gives an empty plan.
 */
export function planMasqueradeFamily(
  family: IpFamily,
  desired: DesiredMasqueradeFamily | null,
  observed: ObservedMasqueradeFamily,
): MasqueradeFamilyPlan {
  const summary: MasqueradePlanSummary = {
    setsWritten: [],
    setsRecreated: [],
    setsDestroyed: [],
    chainWritten: false,
    chainDeleted: false,
    jumpInserted: false,
    jumpsDeleted: 0,
  };
  const plan: MasqueradeFamilyPlan = {
    family,
    unreferenceChain: false,
    ipsetRestore: [],
    iptablesRestore: [],
    destroySetsAfter: [],
    summary,
  };

  if (desired === null) {
    for (const jump of observed.postroutingJumps) plan.iptablesRestore.push(deleteLine(jump));
    summary.jumpsDeleted = observed.postroutingJumps.length;
    if (observed.chainRuleHashes !== null) {
      plan.iptablesRestore.push(`-F ${MASQ_CHAIN}`, `-X ${MASQ_CHAIN}`);
      summary.chainDeleted = true;
    }
    for (const name of ownedSetNames(family)) {
      if (observed.sets.has(name)) plan.destroySetsAfter.push(name);
    }
    summary.setsDestroyed = [...plan.destroySetsAfter];
    return plan;
  }

  // Sets: create what is missing, swap in new contents atomically, recreate a set of the wrong type.
  for (const set of desired.sets) {
    const tmp = tempSetName(set.name);
    if (observed.sets.has(tmp)) {
      plan.ipsetRestore.push(`destroy ${tmp}`); // left over by an interrupted swap
      summary.setsDestroyed.push(tmp);
    }
    const current = observed.sets.get(set.name);
    const adds = (name: string) => set.entries.map((entry) => `add ${name} ${entry}`);
    if (current === undefined) {
      plan.ipsetRestore.push(createLine(set), ...adds(set.name));
      summary.setsWritten.push(set.name);
    } else if (current.type !== 'hash:net' || current.family !== ipsetFamily(set.family)) {
      plan.unreferenceChain = observed.chainRuleHashes !== null && observed.chainRuleHashes.length > 0;
      plan.ipsetRestore.push(`destroy ${set.name}`, createLine(set), ...adds(set.name));
      summary.setsRecreated.push(set.name);
      summary.setsWritten.push(set.name);
    } else if (!sameEntries(current.entries, set.entries)) {
      plan.ipsetRestore.push(createLine(set, tmp), ...adds(tmp), `swap ${tmp} ${set.name}`, `destroy ${tmp}`);
      summary.setsWritten.push(set.name);
    }
  }

  // Our chain: rewritten whole when any hash differs (it is three rules), else left alone.
  const wantHashes = desired.rules.map((rule) => rule.hash);
  const haveHashes = observed.chainRuleHashes;
  const chainInSync =
    haveHashes !== null && haveHashes.length === wantHashes.length && haveHashes.every((h, i) => h === wantHashes[i]);
  if (!chainInSync || plan.unreferenceChain) {
    plan.iptablesRestore.push(`:${MASQ_CHAIN} - [0:0]`, ...desired.rules.map((rule) => rule.line));
    summary.chainWritten = true;
  }

  // The jump: exactly one canonical rule, POSTROUTING's first (a rule above it that accepts or masquerades would
  // decide for pod traffic before us); anything else jumping to our chain goes. Unless the canonical jump is
  // first and alone, every copy is deleted (a delete by spec takes the topmost) and one inserted at the top, in
  // the same transaction.
  const canonical = `-A POSTROUTING ${jumpRuleSpec()}`;
  const keep = observed.postroutingFirst === canonical && observed.postroutingJumps.filter((j) => j === canonical).length === 1;
  let keptCanonical = false;
  for (const jump of observed.postroutingJumps) {
    if (jump === canonical && keep) {
      keptCanonical = true;
      continue;
    }
    plan.iptablesRestore.push(deleteLine(jump));
    summary.jumpsDeleted++;
  }
  if (!keptCanonical) {
    plan.iptablesRestore.push(`-I POSTROUTING 1 ${jumpRuleSpec()}`);
    summary.jumpInserted = true;
  }
  return plan;
}

/** The whole `iptables-restore --noflush` input for a plan's iptables lines. */
export function renderIptablesRestore(lines: readonly string[]): string {
  return ['*nat', ...lines, 'COMMIT', ''].join('\n');
}

export function renderIpsetRestore(lines: readonly string[]): string {
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
