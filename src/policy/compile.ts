// The NetworkPolicy compiler: (pods, namespaces, policies, node) -> the filter-table chains and ipsets that
// enforce them for the node's own pods, one ruleset per IP family. Pure: no I/O, deterministic output.
//
// Shape of the result (per family; names carry the PRPOL prefix, sets PRPOL4-/PRPOL6-):
//   FORWARD --(jump, inserted first)--> PRPOL-FORWARD
//     not from/to a local pod (set PRPOLn-LOCAL)   -> RETURN   (routed traffic is none of our business)
//     IPv6 neighbor solicitation/advertisement     -> ACCEPT   (IPv6's ARP; INPUT: RETURN)
//     ESTABLISHED,RELATED                          -> ACCEPT   (replies of allowed connections)
//     -> PRPOL-EGRESS  : -s <pod IP> -> PRPOL-E-<pod>  for each egress-isolated local pod
//     -> PRPOL-INGRESS : -d <pod IP> -> PRPOL-I-<pod>  for each ingress-isolated local pod
//   INPUT --> PRPOL-INPUT: a local pod talking to its own node: egress only.
//   Traffic the node itself originates goes through OUTPUT, which has no policy: "from its own node" is allowed.
// A pod chain clears the allow mark, calls the rule chain (PRPOL-R-) of every policy that selects it, drops what no
// rule marked, and clears the mark again (so egress and then ingress can both be checked in one FORWARD pass).
// Peers are matched by sets, one per distinct peer meaning (shared between policies); named ports by hash:ip,port
// sets of (pod IP, protocol:port) for every pod that has the name, so one rule chain serves all selected pods.
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type {
  V1LabelSelector,
  V1NetworkPolicy,
  V1NetworkPolicyPeer,
  V1NetworkPolicyPort,
  V1Pod,
} from '@kubernetes/client-node';
import { canonicalCidr, familyOfAddress, formatPrefix, parsePrefix, prefixContains, subtractPrefixes } from './cidr.js';
import type { ClusterState, IpFamily, PolicyNode, Protocol } from './types.js';
import { PROTOCOLS } from './types.js';

export const CHAIN_PREFIX = 'PRPOL-';
export const SET_PREFIX = 'PRPOL';
export const CHAINS = {
  forward: 'PRPOL-FORWARD',
  input: 'PRPOL-INPUT',
  egress: 'PRPOL-EGRESS',
  ingress: 'PRPOL-INGRESS',
} as const;
/** The comment that marks our jump rules in the built-in chains. */
export const JUMP_COMMENT = 'podroute policy';
export const DEFAULT_ALLOW_MARK = 0x40000;
/**
 * IPv6 neighbor discovery, accepted before any policy. It is IPv6's ARP (which iptables never sees for IPv4), but
 * it is ICMPv6 and conntrack does not track it: without this a policy-isolated pod's neighbor solicitations and
 * advertisements are dropped, so it cannot resolve its gateway or same-node pods and nobody can resolve it, and even
 * allowed IPv6 traffic stops once the neighbor cache entries expire.
 */
export const NDP_ICMPV6_TYPES = ['neighbour-solicitation', 'neighbour-advertisement'] as const;

export type IpSetType = 'hash:ip' | 'hash:net' | 'hash:ip,port';
export type Rule = readonly string[];

export interface IpSetSpec {
  name: string;
  type: IpSetType;
  family: IpFamily;
  /** Sorted, deduplicated entries in `ipset add` syntax. */
  members: string[];
}

export interface BuiltinJump {
  /** The built-in chain of the filter table the jump sits in. */
  chain: 'FORWARD' | 'INPUT';
  target: string;
  comment: string;
}

export interface FamilyRuleset {
  family: IpFamily;
  /** Chain name -> rules, each the argument list after `-A CHAIN`. */
  chains: Map<string, Rule[]>;
  sets: Map<string, IpSetSpec>;
  jumps: BuiltinJump[];
}

export interface PolicyProblem {
  /** namespace/name of the policy. */
  policy: string;
  /** Path of the offending field, e.g. spec.ingress[0].ports[1].endPort. */
  field: string;
  message: string;
}

export interface CompiledPolicies {
  v4: FamilyRuleset;
  v6: FamilyRuleset;
  /** Invalid policies: each still isolates the pods it selects but allows nothing (fail closed). */
  problems: PolicyProblem[];
}

export interface CompileInput extends ClusterState {
  node: PolicyNode;
}

export interface CompileOptions {
  /** The packet-mark bit that means "a rule allowed this"; must be a single bit no other component uses. */
  allowMark?: number;
}

export class PolicyCompileError extends Error {
  readonly code = 'POLICY_COMPILE_INVALID_INPUT';
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'PolicyCompileError';
    this.field = field;
  }
}

const METADATA_NAME_LABEL = 'kubernetes.io/metadata.name';
const SELECTOR_OPERATORS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);

export function shortHash(text: string, length = 12): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

// ---------- objects ----------

function podKey(pod: V1Pod): string {
  return `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
}

function policyKey(policy: V1NetworkPolicy): string {
  return `${policy.metadata?.namespace ?? ''}/${policy.metadata?.name ?? ''}`;
}

/** Terminated pods keep their IPs in status, but those IPs may already belong to new pods. */
function isLive(pod: V1Pod): boolean {
  return pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';
}

function podIp(pod: V1Pod, family: IpFamily): string | undefined {
  const ips = [...(pod.status?.podIPs ?? []).map((p) => p.ip), pod.status?.podIP];
  for (const ip of ips) {
    if (typeof ip !== 'string' || ip === '') continue;
    try {
      if (familyOfAddress(ip) === family) return ipaddr.parse(ip).toString();
    } catch {
      // A malformed status address is skipped; the pod is then simply not matched by that address.
    }
  }
  return undefined;
}

function selectorMatches(selector: V1LabelSelector, labels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const expr of selector.matchExpressions ?? []) {
    const present = Object.prototype.hasOwnProperty.call(labels, expr.key);
    const values = expr.values ?? [];
    if (expr.operator === 'In' && !(present && values.includes(labels[expr.key] ?? ''))) return false;
    if (expr.operator === 'NotIn' && present && values.includes(labels[expr.key] ?? '')) return false;
    if (expr.operator === 'Exists' && !present) return false;
    if (expr.operator === 'DoesNotExist' && present) return false;
  }
  return true;
}

/** A deterministic text for a selector's meaning: equal selectors share one set. */
function canonicalSelector(selector: V1LabelSelector): string {
  const labels = Object.entries(selector.matchLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const exprs = (selector.matchExpressions ?? [])
    .map((e) => `${e.key} ${e.operator} ${[...(e.values ?? [])].sort().join(',')}`)
    .sort();
  return JSON.stringify({ labels, exprs });
}

// ---------- validation ----------

function validateSelector(selector: V1LabelSelector | undefined, field: string, out: (f: string, m: string) => void): void {
  if (selector === undefined) return;
  (selector.matchExpressions ?? []).forEach((expr, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    if (typeof expr.key !== 'string' || expr.key === '') out(`${f}.key`, 'must be a non-empty label key');
    if (!SELECTOR_OPERATORS.has(expr.operator)) out(`${f}.operator`, `unknown operator ${JSON.stringify(expr.operator)}`);
    const n = (expr.values ?? []).length;
    if ((expr.operator === 'In' || expr.operator === 'NotIn') && n === 0) out(`${f}.values`, `${expr.operator} needs values`);
    if ((expr.operator === 'Exists' || expr.operator === 'DoesNotExist') && n > 0) {
      out(`${f}.values`, `${expr.operator} takes no values`);
    }
  });
}

function validatePeer(peer: V1NetworkPolicyPeer, field: string, out: (f: string, m: string) => void): void {
  const hasSelector = peer.podSelector !== undefined || peer.namespaceSelector !== undefined;
  if (peer.ipBlock !== undefined) {
    if (hasSelector) out(field, 'ipBlock cannot be combined with podSelector or namespaceSelector');
    let cidr;
    try {
      cidr = parsePrefix(peer.ipBlock.cidr);
    } catch {
      out(`${field}.ipBlock.cidr`, `not a CIDR: ${JSON.stringify(peer.ipBlock.cidr)}`);
      return;
    }
    (peer.ipBlock.except ?? []).forEach((text, i) => {
      const f = `${field}.ipBlock.except[${i}]`;
      try {
        const except = parsePrefix(text);
        if (!prefixContains(cidr, except) || except.length === cidr.length) {
          out(f, `${text} is not strictly inside ${peer.ipBlock?.cidr}`);
        }
      } catch {
        out(f, `not a CIDR: ${JSON.stringify(text)}`);
      }
    });
    return;
  }
  if (!hasSelector) out(field, 'a peer needs podSelector, namespaceSelector or ipBlock');
  validateSelector(peer.podSelector, `${field}.podSelector`, out);
  validateSelector(peer.namespaceSelector, `${field}.namespaceSelector`, out);
}

function validPortNumber(n: unknown): boolean {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function validatePort(port: V1NetworkPolicyPort, field: string, out: (f: string, m: string) => void): void {
  if (port.protocol !== undefined && !(PROTOCOLS as readonly string[]).includes(port.protocol)) {
    out(`${field}.protocol`, `must be TCP, UDP or SCTP, not ${JSON.stringify(port.protocol)}`);
  }
  if (port.port === undefined) {
    if (port.endPort !== undefined) out(`${field}.endPort`, 'endPort needs port');
    return;
  }
  if (typeof port.port === 'string') {
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(port.port) || !/[a-z]/.test(port.port) || port.port.length > 15) {
      out(`${field}.port`, `not a port number or port name: ${JSON.stringify(port.port)}`);
    }
    if (port.endPort !== undefined) out(`${field}.endPort`, 'endPort needs a numeric port');
    return;
  }
  if (!validPortNumber(port.port)) out(`${field}.port`, `must be 1..65535, not ${JSON.stringify(port.port)}`);
  if (port.endPort !== undefined && (!validPortNumber(port.endPort) || port.endPort < port.port)) {
    out(`${field}.endPort`, `must be a port number >= port, not ${JSON.stringify(port.endPort)}`);
  }
}

/** The API server's checks that matter for compiling; a policy failing them is enforced as "isolate, allow nothing". */
export function validatePolicy(policy: V1NetworkPolicy): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const key = policyKey(policy);
  const out = (field: string, message: string): void => {
    problems.push({ policy: key, field, message });
  };
  if (!policy.metadata?.namespace) out('metadata.namespace', 'is required');
  validateSelector(policy.spec?.podSelector, 'spec.podSelector', out);
  (policy.spec?.policyTypes ?? []).forEach((t, i) => {
    if (t !== 'Ingress' && t !== 'Egress') out(`spec.policyTypes[${i}]`, `must be Ingress or Egress, not ${JSON.stringify(t)}`);
  });
  (policy.spec?.ingress ?? []).forEach((rule, i) => {
    (rule._from ?? []).forEach((peer, j) => validatePeer(peer, `spec.ingress[${i}].from[${j}]`, out));
    (rule.ports ?? []).forEach((port, j) => validatePort(port, `spec.ingress[${i}].ports[${j}]`, out));
  });
  (policy.spec?.egress ?? []).forEach((rule, i) => {
    (rule.to ?? []).forEach((peer, j) => validatePeer(peer, `spec.egress[${i}].to[${j}]`, out));
    (rule.ports ?? []).forEach((port, j) => validatePort(port, `spec.egress[${i}].ports[${j}]`, out));
  });
  return problems;
}

// ---------- compilation ----------

type Direction = 'ingress' | 'egress';

interface PreparedPolicy {
  policy: V1NetworkPolicy;
  key: string;
  /** The policy content (see policyContent): the memo key of everything compiled from it. */
  content: string;
  namespace: string;
  ingress: boolean;
  egress: boolean;
  valid: boolean;
  /** An invalid podSelector selects the whole namespace: we cannot tell which pods it meant, so isolate all. */
  selectAll: boolean;
}

function preparePolicy(policy: V1NetworkPolicy, content: string, problems: PolicyProblem[]): PreparedPolicy {
  const own = validatePolicy(policy);
  problems.push(...own);
  const types = policy.spec?.policyTypes;
  const explicit = types !== undefined && types.length > 0;
  return {
    policy,
    key: policyKey(policy),
    content,
    namespace: policy.metadata?.namespace ?? '',
    ingress: explicit ? types.includes('Ingress') : true,
    egress: explicit ? types.includes('Egress') : (policy.spec?.egress ?? []).length > 0,
    valid: own.length === 0,
    selectAll: own.some((p) => p.field.startsWith('spec.podSelector')),
  };
}

function selectsPod(p: PreparedPolicy, pod: V1Pod): boolean {
  if (pod.metadata?.namespace !== p.namespace) return false;
  return p.selectAll || selectorMatches(p.policy.spec?.podSelector ?? {}, pod.metadata?.labels ?? {});
}

/** A set a rule chain's rules reference: replayed when the chain comes from the memo, so the set still exists. */
type SetRequest =
  | { kind: 'fixed'; name: string; type: IpSetType; members: string[] }
  | { kind: 'peer'; peer: V1NetworkPolicyPeer; namespace: string }
  | { kind: 'named'; name: string; protocol: Protocol };

interface RuleChainResult {
  name: string;
  /** null when the policy allows nothing in this direction (then no chain exists). */
  rules: Rule[] | null;
  sets: SetRequest[];
}

/**
 * What one compile keeps for the next, each entry keyed by everything its value depends on, so a hit is always
 * what a fresh compile would produce. A compile reads the previous memo and writes the entries it used into a new
 * one: entries of deleted pods and policies drop out after one compile.
 */
interface CompileMemo {
  /** Policy content -> its prepared form and problems. */
  policies: Map<string, { prepared: PreparedPolicy; problems: PolicyProblem[] }>;
  /** family, mark, policy content, direction -> its rule chain and the sets it references. */
  ruleChains: Map<string, RuleChainResult>;
  /** family, mark, pod chain name, rule chain names -> the pod chain's rules. */
  podChains: Map<string, Rule[]>;
  /** Dispatch rule text -> the rule (stable objects let the planner reuse its rule hashes). */
  rules: Map<string, Rule>;
  /** family and raw address -> normalized address, or null when it is not one of that family. */
  addresses: Map<string, string | null>;
  /** Hashed text -> shortHash, for chain and set names. */
  hashes: Map<string, string>;
  /** Set name -> the members it was built from (unsorted, as collected) and the set: unchanged input, same set. */
  sets: Map<string, { input: string[]; type: IpSetType; spec: IpSetSpec }>;
}

function emptyMemo(): CompileMemo {
  return { policies: new Map(), ruleChains: new Map(), podChains: new Map(), rules: new Map(), addresses: new Map(), hashes: new Map(), sets: new Map() };
}

/** Memo lookup that carries a hit (or a freshly computed value) from the previous memo into the next. */
function carry<V>(prev: Map<string, V>, next: Map<string, V>, key: string, make: () => V): V {
  const known = next.get(key);
  if (known !== undefined || next.has(key)) return known as V;
  const value = prev.has(key) ? (prev.get(key) as V) : make();
  next.set(key, value);
  return value;
}

/** The content of a policy that compiling depends on (its namespace, name and spec). */
function policyContent(policy: V1NetworkPolicy): string {
  return JSON.stringify([policy.metadata?.namespace, policy.metadata?.name, policy.spec]);
}

interface LivePod {
  pod: V1Pod;
  namespace: string;
  labels: Record<string, string>;
  ip: string | undefined;
}

class FamilyCompiler {
  readonly chains = new Map<string, Rule[]>();
  readonly sets = new Map<string, IpSetSpec>();
  private readonly markArg: string;
  private readonly clearArg: string;

  private readonly live: LivePod[];
  /** Set requests of the rule chain being compiled (null outside one). */
  private recording: SetRequest[] | null = null;
  /** This compile's rule chain of each prepared policy, per direction. */
  private readonly ruleChainsDone = { ingress: new Map<PreparedPolicy, string | null>(), egress: new Map<PreparedPolicy, string | null>() };

  constructor(
    private readonly family: IpFamily,
    private readonly input: CompileInput,
    private readonly policies: PreparedPolicy[],
    private readonly namespaceLabels: Map<string, Record<string, string>>,
    private readonly mark: number,
    private readonly prev: CompileMemo,
    private readonly next: CompileMemo,
  ) {
    this.markArg = `0x${mark.toString(16)}/0x${mark.toString(16)}`;
    this.clearArg = `0x0/0x${mark.toString(16)}`;
    this.live = input.pods
      .filter((p) => isLive(p) && p.spec?.hostNetwork !== true)
      .map((pod) => ({ pod, namespace: pod.metadata?.namespace ?? '', labels: pod.metadata?.labels ?? {}, ip: this.podIp(pod) }));
  }

  private hash(text: string, length = 12): string {
    return carry(this.prev.hashes, this.next.hashes, `${length} ${text}`, () => shortHash(text, length));
  }

  private podIp(pod: V1Pod): string | undefined {
    const ips = [...(pod.status?.podIPs ?? []).map((p) => p.ip), pod.status?.podIP];
    for (const ip of ips) {
      if (typeof ip !== 'string' || ip === '') continue;
      const normalized = carry(this.prev.addresses, this.next.addresses, `${this.family} ${ip}`, () => podIp({ status: { podIP: ip } }, this.family) ?? null);
      if (normalized !== null) return normalized;
    }
    return undefined;
  }

  private setName(kind: string, meaning: string): string {
    return `${SET_PREFIX}${this.family}-${kind}-${this.hash(meaning, 14)}`;
  }

  private addSet(name: string, type: IpSetType, members: string[]): string {
    if (!this.sets.has(name)) {
      const known = this.prev.sets.get(name) ?? this.next.sets.get(name);
      const same = known !== undefined && known.type === type && known.input.length === members.length && known.input.every((m, i) => m === members[i]);
      const spec = same ? known.spec : { name, type, family: this.family, members: [...new Set(members)].sort() };
      this.next.sets.set(name, { input: members, type, spec });
      this.sets.set(name, spec);
    }
    return name;
  }

  /** The set of pod IPs a selector peer means, seen from a policy in `namespace`. */
  private peerSet(peer: V1NetworkPolicyPeer, namespace: string): string {
    this.recording?.push({ kind: 'peer', peer, namespace });
    const meaning = JSON.stringify({
      namespace: peer.namespaceSelector === undefined ? namespace : null,
      namespaceSelector: peer.namespaceSelector === undefined ? null : canonicalSelector(peer.namespaceSelector),
      podSelector: peer.podSelector === undefined ? null : canonicalSelector(peer.podSelector),
    });
    const name = this.setName('P', meaning);
    if (this.sets.has(name)) return name;
    const members: string[] = [];
    const namespaceMatches = new Map<string, boolean>();
    for (const { namespace: ns, labels, ip } of this.live) {
      if (ip === undefined) continue;
      if (peer.namespaceSelector === undefined) {
        if (ns !== namespace) continue;
      } else {
        let matches = namespaceMatches.get(ns);
        if (matches === undefined) {
          matches = selectorMatches(peer.namespaceSelector, this.namespaceLabels.get(ns) ?? { [METADATA_NAME_LABEL]: ns });
          namespaceMatches.set(ns, matches);
        }
        if (!matches) continue;
      }
      if (peer.podSelector !== undefined && !selectorMatches(peer.podSelector, labels)) continue;
      members.push(ip);
    }
    return this.addSet(name, 'hash:ip', members);
  }

  /** Match arguments for a peer, or null when the peer can match nothing in this family. */
  private peerMatch(peer: V1NetworkPolicyPeer, namespace: string, dir: Direction): string[] | null {
    const side = dir === 'ingress' ? 'src' : 'dst';
    if (peer.ipBlock !== undefined) {
      const cidr = parsePrefix(peer.ipBlock.cidr);
      if (cidr.family !== this.family) return null;
      const excepts = (peer.ipBlock.except ?? []).map(parsePrefix);
      if (excepts.length === 0) return [dir === 'ingress' ? '-s' : '-d', formatPrefix(cidr)];
      const meaning = JSON.stringify({ cidr: formatPrefix(cidr), except: excepts.map(formatPrefix).sort() });
      const members = subtractPrefixes(cidr, excepts).map(formatPrefix);
      const name = this.setName('B', meaning);
      this.recording?.push({ kind: 'fixed', name, type: 'hash:net', members });
      return ['-m', 'set', '--match-set', this.addSet(name, 'hash:net', members), side];
    }
    return ['-m', 'set', '--match-set', this.peerSet(peer, namespace), side];
  }

  private namedPortSet(name: string, protocol: Protocol): string {
    this.recording?.push({ kind: 'named', name, protocol });
    const setName = this.setName('N', JSON.stringify({ name, protocol }));
    if (this.sets.has(setName)) return setName;
    const members: string[] = [];
    for (const { pod, ip } of this.live) {
      if (ip === undefined) continue;
      for (const container of [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])]) {
        for (const port of container.ports ?? []) {
          if (port.name === name && (port.protocol ?? 'TCP') === protocol && validPortNumber(port.containerPort)) {
            members.push(`${ip},${protocol.toLowerCase()}:${port.containerPort}`);
          }
        }
      }
    }
    return this.addSet(setName, 'hash:ip,port', members);
  }

  private portMatch(port: V1NetworkPolicyPort): string[] {
    const protocol = (port.protocol ?? 'TCP') as Protocol;
    const p = protocol.toLowerCase();
    if (port.port === undefined) return ['-p', p];
    if (typeof port.port === 'string') {
      return ['-p', p, '-m', 'set', '--match-set', this.namedPortSet(port.port, protocol), 'dst,dst'];
    }
    const range = port.endPort === undefined || port.endPort === port.port ? `${port.port}` : `${port.port}:${port.endPort}`;
    return ['-p', p, '-m', p, '--dport', range];
  }

  /** The rules of one policy in one direction: each allowed (peer, port) combination sets the allow mark. */
  private policyRules(p: PreparedPolicy, dir: Direction): Rule[] {
    if (!p.valid) return [];
    const rules: Rule[] = [];
    const seen = new Set<string>();
    const specRules = dir === 'ingress' ? (p.policy.spec?.ingress ?? []) : (p.policy.spec?.egress ?? []);
    for (const rule of specRules) {
      const peers = dir === 'ingress' ? ('_from' in rule ? rule._from : undefined) : 'to' in rule ? rule.to : undefined;
      const peerMatches: string[][] =
        peers === undefined || peers.length === 0
          ? [[]]
          : peers.map((peer) => this.peerMatch(peer, p.namespace, dir)).filter((m): m is string[] => m !== null);
      const portMatches: string[][] =
        rule.ports === undefined || rule.ports.length === 0 ? [[]] : rule.ports.map((port) => this.portMatch(port));
      for (const peer of peerMatches) {
        for (const port of portMatches) {
          const r = [...peer, ...port, '-j', 'MARK', '--set-xmark', this.markArg];
          const text = r.join(' ');
          if (!seen.has(text)) {
            seen.add(text);
            rules.push(r);
          }
        }
      }
    }
    return rules;
  }

  private ruleChain(p: PreparedPolicy, dir: Direction): string | null {
    const done = this.ruleChainsDone[dir];
    const known = done.get(p);
    if (known !== undefined) return known;
    const chain = this.memoRuleChain(p, dir);
    done.set(p, chain);
    return chain;
  }

  private memoRuleChain(p: PreparedPolicy, dir: Direction): string | null {
    const name = `${CHAIN_PREFIX}R-${this.hash(`${p.key}/${dir}`)}`;
    if (this.chains.has(name)) return name;
    const key = `${this.family} ${this.mark} ${dir} ${p.content}`;
    const done = this.next.ruleChains.get(key);
    if (done !== undefined && done.rules === null) return null;
    let result = this.prev.ruleChains.get(key) ?? done;
    if (result === undefined) {
      this.recording = [];
      try {
        const rules = this.policyRules(p, dir);
        result = { name, rules: rules.length === 0 ? null : rules, sets: this.recording };
      } finally {
        this.recording = null;
      }
    } else {
      for (const request of result.sets) {
        if (request.kind === 'fixed') this.addSet(request.name, request.type, request.members);
        else if (request.kind === 'peer') this.peerSet(request.peer, request.namespace);
        else this.namedPortSet(request.name, request.protocol);
      }
    }
    this.next.ruleChains.set(key, result);
    if (result.rules === null) return null;
    this.chains.set(result.name, result.rules);
    return result.name;
  }

  private podChain(pod: V1Pod, dir: Direction, selecting: PreparedPolicy[]): string {
    const name = `${CHAIN_PREFIX}${dir === 'ingress' ? 'I' : 'E'}-${this.hash(podKey(pod))}`;
    const targets: string[] = [];
    for (const p of selecting) {
      const chain = this.ruleChain(p, dir);
      if (chain !== null) targets.push(chain);
    }
    const rules = carry(this.prev.podChains, this.next.podChains, `${this.mark} ${name} ${targets.join(' ')}`, () => [
      ['-j', 'MARK', '--set-xmark', this.clearArg],
      ...targets.map((chain) => ['-j', chain]),
      ['-m', 'mark', '!', '--mark', this.markArg, '-j', 'DROP'],
      ['-j', 'MARK', '--set-xmark', this.clearArg],
    ]);
    this.chains.set(name, rules);
    return name;
  }

  private dispatchRule(rule: string[]): Rule {
    return carry(this.prev.rules, this.next.rules, rule.join(' '), () => rule);
  }

  compile(): FamilyRuleset {
    const local = `${SET_PREFIX}${this.family}-LOCAL`;
    const localMembers = this.input.node.podCIDRs
      .map((c) => parsePrefix(c))
      .filter((c) => c.family === this.family)
      .map(formatPrefix);
    const egressDispatch: Rule[] = [];
    const ingressDispatch: Rule[] = [];
    const host = this.family === 4 ? '/32' : '/128';
    const localPods = this.live
      .filter(({ pod }) => pod.spec?.nodeName === this.input.node.name)
      .map((l) => ({ ...l, key: podKey(l.pod) }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const byNamespace = new Map<string, PreparedPolicy[]>();
    for (const p of this.policies) byNamespace.set(p.namespace, [...(byNamespace.get(p.namespace) ?? []), p]);
    const dispatched = new Set<string>();
    for (const { pod, ip, namespace } of localPods) {
      if (ip === undefined || dispatched.has(ip)) continue;
      dispatched.add(ip);
      localMembers.push(`${ip}${host}`);
      const selecting = (byNamespace.get(namespace) ?? []).filter((p) => selectsPod(p, pod));
      const ingress = selecting.filter((p) => p.ingress);
      const egress = selecting.filter((p) => p.egress);
      if (egress.length > 0) egressDispatch.push(this.dispatchRule(['-s', `${ip}${host}`, '-j', this.podChain(pod, 'egress', egress)]));
      if (ingress.length > 0) ingressDispatch.push(this.dispatchRule(['-d', `${ip}${host}`, '-j', this.podChain(pod, 'ingress', ingress)]));
    }
    this.addSet(local, 'hash:net', localMembers);
    this.chains.set(CHAINS.egress, egressDispatch);
    this.chains.set(CHAINS.ingress, ingressDispatch);
    const ndp = (verdict: 'ACCEPT' | 'RETURN'): Rule[] =>
      this.family === 6 ? NDP_ICMPV6_TYPES.map((t) => ['-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', t, '-j', verdict]) : [];
    this.chains.set(CHAINS.forward, [
      ['-m', 'set', '!', '--match-set', local, 'src', '-m', 'set', '!', '--match-set', local, 'dst', '-j', 'RETURN'],
      ...ndp('ACCEPT'),
      ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
      ['-j', CHAINS.egress],
      ['-j', CHAINS.ingress],
    ]);
    this.chains.set(CHAINS.input, [
      ['-m', 'set', '!', '--match-set', local, 'src', '-j', 'RETURN'],
      // The host firewall decides about the node's own traffic; we only withhold what egress policy forbids.
      ...ndp('RETURN'),
      ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'RETURN'],
      ['-j', CHAINS.egress],
    ]);
    return {
      family: this.family,
      chains: this.chains,
      sets: this.sets,
      jumps: [
        { chain: 'FORWARD', target: CHAINS.forward, comment: JUMP_COMMENT },
        { chain: 'INPUT', target: CHAINS.input, comment: JUMP_COMMENT },
      ],
    };
  }
}

function validateNode(node: PolicyNode): void {
  if (typeof node?.name !== 'string' || node.name === '') throw new PolicyCompileError('node.name', 'is required');
  (node.podCIDRs ?? []).forEach((cidr, i) => {
    try {
      canonicalCidr(cidr);
    } catch {
      throw new PolicyCompileError(`node.podCIDRs[${i}]`, `not a CIDR: ${JSON.stringify(cidr)}`);
    }
  });
}

/**
 * A compiler that remembers its previous compile: a snapshot that differs in one pod's labels reuses every rule
 * chain, pod chain and hash that did not change and recomputes only the sets and chains that did. The result is
 * always equal to compilePolicies() of the same input (a property test checks this over random change sequences).
 */
export class PolicyCompiler {
  private memo: CompileMemo = emptyMemo();

  compile(input: CompileInput, options: CompileOptions = {}): CompiledPolicies {
    validateNode(input.node);
    const mark = options.allowMark ?? DEFAULT_ALLOW_MARK;
    if (!Number.isInteger(mark) || mark <= 0 || mark > 0xffffffff || (mark & (mark - 1)) !== 0) {
      throw new PolicyCompileError('allowMark', `must be a single bit, not ${mark}`);
    }
    const prev = this.memo;
    const next = emptyMemo();
    const problems: PolicyProblem[] = [];
    const policies = [...input.policies]
      .map((policy) => ({ policy, key: policyKey(policy) }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map(({ policy }) => {
        const content = policyContent(policy);
        const prepared = carry(prev.policies, next.policies, content, () => {
          const own: PolicyProblem[] = [];
          return { prepared: preparePolicy(policy, content, own), problems: own };
        });
        problems.push(...prepared.problems);
        return prepared.prepared;
      });
    const namespaceLabels = new Map<string, Record<string, string>>();
    for (const ns of input.namespaces) {
      const name = ns.metadata?.name ?? '';
      namespaceLabels.set(name, { ...(ns.metadata?.labels ?? {}), [METADATA_NAME_LABEL]: name });
    }
    const result = {
      v4: new FamilyCompiler(4, input, policies, namespaceLabels, mark, prev, next).compile(),
      v6: new FamilyCompiler(6, input, policies, namespaceLabels, mark, prev, next).compile(),
      problems,
    };
    this.memo = next;
    return result;
  }
}

export function compilePolicies(input: CompileInput, options: CompileOptions = {}): CompiledPolicies {
  return new PolicyCompiler().compile(input, options);
}
