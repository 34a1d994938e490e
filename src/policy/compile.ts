// The NetworkPolicy compiler: (pods, namespaces, policies, node, pod bridge) -> the filter-table chains and ipsets
// that enforce them for the node's own pods, one ruleset per IP family. Pure: no I/O, deterministic output.
//
// Shape of the result (per family; names carry the PRPOL prefix, sets PRPOL4-/PRPOL6-):
//   FORWARD --(jump, inserted first)--> PRPOL-FORWARD
//     in from a port of the pod bridge             -> PRPOL-SOURCE: from that port's own pod address(es) -> RETURN
//                                                     (IPv6: from fe80::/10 and :: only NDP, RS, MLD), else DROP
//     not from/to a local pod (set PRPOLn-LOCAL)   -> RETURN   (routed traffic is none of our business)
//     IPv6 neighbor solicitation/advertisement     -> ACCEPT   (IPv6's ARP; INPUT: RETURN)
//     ESTABLISHED,RELATED                          -> ACCEPT   (replies of allowed connections)
//     from a podCIDR address of no known pod       -> DROP     (always: nobody owns it, no policy speaks for it)
//     to a podCIDR address of no known pod         -> DROP     (only while a selected local pod has no IP yet)
//     -> PRPOL-EGRESS  : not from a pod of set PRPOLn-ISOLATED-E -> RETURN (no policy isolates it for egress)
//                        -s <low 6 bits> -> PRPOL-EB-<bucket> : -s <pod IP> -> PRPOL-NE-<namespace of the pod>
//     -> PRPOL-INGRESS : not to a pod of set PRPOLn-ISOLATED-I  -> RETURN
//                        -d <low 6 bits> -> PRPOL-IB-<bucket> : -d <pod IP> -> PRPOL-NI-<namespace of the pod>
//   INPUT --> PRPOL-INPUT: a local pod talking to its own node: the source binding, then egress only.
//   Traffic the node itself originates goes through OUTPUT, which has no policy: "from its own node" is allowed.
// The source binding (PRPOL-SOURCE) comes before conntrack and every policy: a pod sends only from the addresses
// its CNI result gave its veth, the way Calico binds each workload interface. A bridge port with no binding (a pod
// the agent has not bound yet, e.g. one started while the agent was down: the rules stay in the kernel) sends
// nothing until it is bound.
// A namespace chain clears the allow mark, calls the rule chain (PRPOL-R-) of every policy of the namespace whose
// selection set (the peer set of its podSelector) holds the pod, drops what no rule marked, and clears the mark
// again (so egress and then ingress can both be checked in one FORWARD pass). Which pods a policy selects and which
// pods are isolated are set members, never rules: a pod label change is an `ipset restore` of a few lines, no
// iptables write. A local pod is dispatched (its bucket rule) while its namespace has a policy of the direction.
// Peers are matched by sets, one per distinct peer meaning (shared between policies); named ports by hash:ip,port
// sets of (pod IP, protocol:port) for every pod that has the name, so one rule chain serves all selected pods.
// A policy rule with several peers and several port matches jumps from each port match to its peer chain
// (PRPOL-RP-), which marks on any peer: rules grow with peers plus ports, not peers times ports.
import { hash } from 'node:crypto';
import { isIPv4, isIPv6, SocketAddress } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Pod } from '../kube/wire.js';
import { selectorMatches } from '../kube/label-selector.js';
import { addressBits, canonicalAddressText, familyOf, ipVersion, prefixContains, prefixHalves, requireIpCidr, type IpFamily, type IpPrefix } from '../routes/ip-prefix.js';
import { atOnce } from './slices.js';
import type { ClusterState, PolicyNode, Protocol } from './types.js';
import { PROTOCOLS } from './types.js';

export const CHAIN_PREFIX = 'PRPOL-';
export const SET_PREFIX = 'PRPOL';
export const CHAINS = {
  forward: 'PRPOL-FORWARD',
  input: 'PRPOL-INPUT',
  egress: 'PRPOL-EGRESS',
  ingress: 'PRPOL-INGRESS',
  source: 'PRPOL-SOURCE',
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
  /** The node's pod bridge and which source addresses each of its ports may send from; none: no source check. */
  bridge?: PodBridge;
}

/** The addresses one pod's host-side veth (a port of the pod bridge) is bound to. */
export interface SourceBinding {
  /** The host-side interface name, a port of the pod bridge. */
  interface: string;
  /** The pod's own addresses (canonical, no prefix length), both families. */
  addresses: string[];
}

export interface PodBridge {
  /** The bridge every local pod's veth is a port of. */
  name: string;
  bindings: SourceBinding[];
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

export const METADATA_NAME_LABEL = 'kubernetes.io/metadata.name';
const SELECTOR_OPERATORS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);

export function shortHash(text: string, length = 12): string {
  return hash('sha256', text, 'hex').slice(0, length);
}

// ---------- objects ----------

export function podKey(pod: Pod): string {
  return `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
}

export function policyKey(policy: NetworkPolicy): string {
  return `${policy.metadata?.namespace ?? ''}/${policy.metadata?.name ?? ''}`;
}

/** Terminated pods keep their IPs in status, but those IPs may already belong to new pods. */
export function isLive(pod: Pod): boolean {
  return pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';
}

export function podIp(pod: Pod, family: IpFamily): string | undefined {
  const ips = [...(pod.status?.podIPs ?? []).map((p) => p.ip), pod.status?.podIP];
  for (const ip of ips) {
    if (typeof ip !== 'string' || ip === '') continue;
    try {
      if (familyOf(ip) === family) return canonicalAddress(ip);
    } catch {
      // A malformed status address is skipped; the pod is then simply not matched by that address.
    }
  }
  return undefined;
}

/**
 * An address in the form ipaddr.js prints it (RFC 5952 for IPv6). Addresses already in that form, as the API
 * hands them out, are checked natively and returned as they are: ipaddr.js parses an IPv6 address in ~10 µs, which
 * a full sync pays for every pod.
 */
function canonicalAddress(ip: string): string {
  // Dotted decimal without leading zeros, the only IPv4 form isIPv4 takes, is how ipaddr.js prints it.
  if (isIPv4(ip)) return ip;
  // glibc's inet_ntop prints RFC 5952 too, but for the dotted forms; other spellings take the slow path.
  if (/^[0-9a-f:]+$/.test(ip) && isIPv6(ip) && new SocketAddress({ address: ip, family: 'ipv6' }).address === ip) return ip;
  // The one address validator of the agent: a zone index ("fe80::1%eth0") or an odd IPv4 form is no pod address.
  const canonical = canonicalAddressText(ip);
  if (canonical === undefined) throw new PolicyCompileError('status.podIPs', `not an IP address: ${JSON.stringify(ip)}`);
  return canonical;
}

/** A deterministic text for a selector's meaning: equal selectors share one set. */
function canonicalSelector(selector: LabelSelector): string {
  const labels = Object.entries(selector.matchLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const exprs = (selector.matchExpressions ?? [])
    .map((e) => `${e.key} ${e.operator} ${[...(e.values ?? [])].sort().join(',')}`)
    .sort();
  return JSON.stringify({ labels, exprs });
}

// ---------- validation ----------

/**
 * The fields of each part of a NetworkPolicy this compiler understands (networking.k8s.io/v1). A field outside
 * them comes from an API newer than the agent, or from something that is not the API server: what it would
 * narrow or widen is unknown, so the policy isolates its pods and allows nothing (fail closed).
 */
const KNOWN_FIELDS = {
  spec: new Set(['podSelector', 'policyTypes', 'ingress', 'egress']),
  ingress: new Set(['from', 'ports']),
  egress: new Set(['to', 'ports']),
  peer: new Set(['podSelector', 'namespaceSelector', 'ipBlock']),
  ipBlock: new Set(['cidr', 'except']),
  port: new Set(['protocol', 'port', 'endPort']),
  selector: new Set(['matchLabels', 'matchExpressions']),
  requirement: new Set(['key', 'operator', 'values']),
} as const;

function checkFields(value: unknown, known: ReadonlySet<string>, field: string, out: (f: string, m: string) => void): void {
  if (typeof value !== 'object' || value === null) return;
  for (const key of Object.keys(value)) {
    if (!known.has(key)) out(`${field}.${key}`, 'unknown field: the policy is enforced as "allow nothing" until the agent understands it');
  }
}

function validateSelector(selector: LabelSelector | undefined, field: string, out: (f: string, m: string) => void): void {
  if (selector === undefined) return;
  checkFields(selector, KNOWN_FIELDS.selector, field, out);
  (selector.matchExpressions ?? []).forEach((expr, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    checkFields(expr, KNOWN_FIELDS.requirement, f, out);
    if (typeof expr.key !== 'string' || expr.key === '') out(`${f}.key`, 'must be a non-empty label key');
    if (!SELECTOR_OPERATORS.has(expr.operator)) out(`${f}.operator`, `unknown operator ${JSON.stringify(expr.operator)}`);
    const n = (expr.values ?? []).length;
    if ((expr.operator === 'In' || expr.operator === 'NotIn') && n === 0) out(`${f}.values`, `${expr.operator} needs values`);
    if ((expr.operator === 'Exists' || expr.operator === 'DoesNotExist') && n > 0) {
      out(`${f}.values`, `${expr.operator} takes no values`);
    }
  });
}

/** Pauses every EXCEPTS_PER_STEP excepts of an ipBlock: 2,000 IPv6 excepts took ~60 ms of parsing in one piece. */
function* validatePeer(peer: NetworkPolicyPeer, field: string, out: (f: string, m: string) => void): Generator<void, void> {
  checkFields(peer, KNOWN_FIELDS.peer, field, out);
  const hasSelector = peer.podSelector !== undefined || peer.namespaceSelector !== undefined;
  if (peer.ipBlock !== undefined) {
    checkFields(peer.ipBlock, KNOWN_FIELDS.ipBlock, `${field}.ipBlock`, out);
    if (hasSelector) out(field, 'ipBlock cannot be combined with podSelector or namespaceSelector');
    let cidr;
    try {
      cidr = requireIpCidr(peer.ipBlock.cidr);
    } catch {
      out(`${field}.ipBlock.cidr`, `not a CIDR: ${JSON.stringify(peer.ipBlock.cidr)}`);
      return;
    }
    for (const [i, text] of (peer.ipBlock.except ?? []).entries()) {
      const f = `${field}.ipBlock.except[${i}]`;
      try {
        const except = requireIpCidr(text);
        if (!prefixContains(cidr, except) || except.length === cidr.length) {
          out(f, `${text} is not strictly inside ${peer.ipBlock?.cidr}`);
        }
      } catch {
        out(f, `not a CIDR: ${JSON.stringify(text)}`);
      }
      if ((i + 1) % EXCEPTS_PER_STEP === 0) yield;
    }
    return;
  }
  if (!hasSelector) out(field, 'a peer needs podSelector, namespaceSelector or ipBlock');
  validateSelector(peer.podSelector, `${field}.podSelector`, out);
  validateSelector(peer.namespaceSelector, `${field}.namespaceSelector`, out);
}

function validPortNumber(n: unknown): boolean {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function validatePort(port: NetworkPolicyPort, field: string, out: (f: string, m: string) => void): void {
  checkFields(port, KNOWN_FIELDS.port, field, out);
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

/**
 * The most iptables rules one policy may compile to per direction, and the most ipset entries its ipBlocks may
 * need. Past either, the policy isolates its pods and allows nothing: one hostile policy must not cost every node
 * seconds of CPU and hundreds of MB. A rule compiles to at most its peers plus its port entries (see
 * compileRuleChains), so 600 peers x 600 ports is 1,200 rules; legitimate policies are orders of magnitude below.
 */
export const POLICY_LIMITS = { rulesPerDirection: 2_000, ipBlockEntries: 20_000 } as const;

/**
 * Rules a direction's rule list compiles to at most: per rule, peers times port entries while either is at most
 * one, else peers plus port entries (a peer chain); an empty list counts as one.
 */
function ruleCount(rules: readonly { from?: unknown[]; to?: unknown[]; ports?: unknown[] }[] | undefined): number {
  let n = 0;
  for (const rule of rules ?? []) {
    const peers = Math.max(1, (rule.from ?? rule.to ?? []).length);
    const ports = Math.max(1, (rule.ports ?? []).length);
    n += peers === 1 || ports === 1 ? peers * ports : peers + ports;
  }
  return n;
}

/** The set entries of an ipBlock at most: its CIDR (two halves for a /0) and one `nomatch` entry per except. */
function ipBlockEntryBound(except: readonly string[] | undefined): number {
  return 2 + (except ?? []).length;
}

/** Reports each limit the policy is over; returns whether it is over any. */
function checkLimits(policy: NetworkPolicy, out: (f: string, m: string) => void): boolean {
  let over = false;
  for (const dir of ['ingress', 'egress'] as const) {
    const rules = ruleCount(policy.spec?.[dir]);
    if (rules > POLICY_LIMITS.rulesPerDirection) {
      over = true;
      out(`spec.${dir}`, `compiles to ${rules} rules (peers and ports of its rules), more than the ${POLICY_LIMITS.rulesPerDirection} a policy may have`);
    }
  }
  let entries = 0;
  for (const rule of [...(policy.spec?.ingress ?? []).map((r) => r.from), ...(policy.spec?.egress ?? []).map((r) => r.to)]) {
    for (const peer of rule ?? []) if (peer.ipBlock !== undefined) entries += ipBlockEntryBound(peer.ipBlock.except);
  }
  if (entries > POLICY_LIMITS.ipBlockEntries) {
    over = true;
    out('spec', `its ipBlocks need up to ${entries} set entries, more than the ${POLICY_LIMITS.ipBlockEntries} a policy may have`);
  }
  return over;
}

/** Peers or ports validated, peers of a rule worked out or rules of a family made between two pauses of the steps below. */
const PEERS_PER_STEP = 64;
/** ipBlock excepts parsed between two pauses (an except is a CIDR to parse, a peer may have thousands). */
const EXCEPTS_PER_STEP = 256;

/** The API server's checks that matter for compiling; a policy failing them is enforced as "isolate, allow nothing". */
export function validatePolicy(policy: NetworkPolicy): PolicyProblem[] {
  return atOnce(validatePolicyInSteps(policy));
}

/** validatePolicy() as steps (see slices.ts), pausing every PEERS_PER_STEP peers or ports. */
function* validatePolicyInSteps(policy: NetworkPolicy): Generator<void, PolicyProblem[]> {
  const problems: PolicyProblem[] = [];
  const key = policyKey(policy);
  const out = (field: string, message: string): void => {
    problems.push({ policy: key, field, message });
  };
  if (!policy.metadata?.namespace) out('metadata.namespace', 'is required');
  checkFields(policy.spec, KNOWN_FIELDS.spec, 'spec', out);
  // Past the limits the policy allows nothing anyway: validating thousands of peers one by one would be the cost
  // the limits are there to avoid.
  if (checkLimits(policy, out)) return problems;
  validateSelector(policy.spec?.podSelector, 'spec.podSelector', out);
  (policy.spec?.policyTypes ?? []).forEach((t, i) => {
    if (t !== 'Ingress' && t !== 'Egress') out(`spec.policyTypes[${i}]`, `must be Ingress or Egress, not ${JSON.stringify(t)}`);
  });
  for (const dir of ['ingress', 'egress'] as const) {
    const peersField = dir === 'ingress' ? 'from' : 'to';
    for (const [i, rule] of (policy.spec?.[dir] ?? []).entries()) {
      checkFields(rule, KNOWN_FIELDS[dir], `spec.${dir}[${i}]`, out);
      const peers = dir === 'ingress' ? ('from' in rule ? rule.from : undefined) : 'to' in rule ? rule.to : undefined;
      for (const [j, peer] of (peers ?? []).entries()) {
        yield* validatePeer(peer, `spec.${dir}[${i}].${peersField}[${j}]`, out);
        if ((j + 1) % PEERS_PER_STEP === 0) yield;
      }
      for (const [j, port] of (rule.ports ?? []).entries()) {
        validatePort(port, `spec.${dir}[${i}].ports[${j}]`, out);
        if ((j + 1) % PEERS_PER_STEP === 0) yield;
      }
    }
  }
  return problems;
}

// ---------- compilation: pure building blocks (of the incremental PolicyCompiler and the tests' from-scratch one) ----------

export type Direction = 'ingress' | 'egress';
export const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];

export interface PreparedPolicy {
  policy: NetworkPolicy;
  key: string;
  namespace: string;
  ingress: boolean;
  egress: boolean;
  valid: boolean;
  /** An invalid podSelector selects the whole namespace: we cannot tell which pods it meant, so isolate all. */
  selectAll: boolean;
  problems: PolicyProblem[];
}

export function preparePolicy(policy: NetworkPolicy): PreparedPolicy {
  return atOnce(preparePolicyInSteps(policy));
}

/** preparePolicy() as steps (see slices.ts): validating 600 peers and 600 ports took 20-40 ms in one piece, cold. */
export function* preparePolicyInSteps(policy: NetworkPolicy): Generator<void, PreparedPolicy> {
  const problems = yield* validatePolicyInSteps(policy);
  const types = policy.spec?.policyTypes;
  const explicit = types !== undefined && types.length > 0;
  return {
    policy,
    key: policyKey(policy),
    namespace: policy.metadata?.namespace ?? '',
    ingress: explicit ? types.includes('Ingress') : true,
    egress: explicit ? types.includes('Egress') : (policy.spec?.egress ?? []).length > 0,
    valid: problems.length === 0,
    selectAll: problems.some((p) => p.field.startsWith('spec.podSelector')),
    problems,
  };
}

/** The content of a policy that compiling depends on (its namespace, name and spec). */
export function policyContent(policy: NetworkPolicy): string {
  return JSON.stringify([policy.metadata?.namespace, policy.metadata?.name, policy.spec]);
}

export function policySelects(p: PreparedPolicy, namespace: string, labels: Record<string, string>): boolean {
  if (namespace !== p.namespace) return false;
  return p.selectAll || selectorMatches(p.policy.spec?.podSelector ?? {}, labels);
}

/** A set a rule chain references, by meaning; its members come from the pods (peer, named) or the policy (fixed). */
export type SetDef =
  | { kind: 'fixed'; name: string; type: 'hash:net'; cidrs: IpPrefix[]; except: IpPrefix[] }
  | { kind: 'peer'; name: string; type: 'hash:ip'; peer: NetworkPolicyPeer; namespace: string }
  | { kind: 'named'; name: string; type: 'hash:ip,port'; port: string; protocol: Protocol };

export interface RuleChainDef {
  name: string;
  /** null when the policy allows nothing in this direction (then no chain exists). */
  rules: Rule[] | null;
  /** The chains the rules jump to that mark on any of a policy rule's peers, by name. */
  peerChains: ReadonlyMap<string, Rule[]>;
  /** The target words of a namespace chain's rule that calls this chain (one array, shared by both families). */
  jump: Rule;
  /** Every set the rules need (and a named-port set of a rule whose peers all fall in the other family). */
  sets: SetDef[];
}

export function markArgs(mark: number): { set: string; clear: string } {
  return { set: `0x${mark.toString(16)}/0x${mark.toString(16)}`, clear: `0x0/0x${mark.toString(16)}` };
}

export function ruleChainName(policyKeyText: string, dir: Direction): string {
  return `${CHAIN_PREFIX}R-${shortHash(`${policyKeyText}/${dir}`)}`;
}

/** A peer or port of a policy rule, worked out once for both families. */
interface RulePart {
  /** The family it applies to (an ipBlock's); null: both. */
  family: IpFamily | null;
  /** The set it matches, by kind and hash of its meaning; named per family. */
  set?: { kind: 'B' | 'P' | 'N'; hash: string; def: (name: string) => SetDef };
  /** Its match arguments, given the set's name in the family at hand. */
  words: (set: string) => string[];
}

/** The hash naming a selector peer's set: by what it means, so equal peers share one set. */
function peerSetHash(peer: NetworkPolicyPeer, namespace: string): string {
  const meaning = JSON.stringify({
    namespace: peer.namespaceSelector === undefined ? namespace : null,
    namespaceSelector: peer.namespaceSelector === undefined ? null : canonicalSelector(peer.namespaceSelector),
    podSelector: peer.podSelector === undefined ? null : canonicalSelector(peer.podSelector),
  });
  return shortHash(meaning, 14);
}

export function peerSetName(family: IpFamily, peer: NetworkPolicyPeer, namespace: string): string {
  return `${SET_PREFIX}${ipVersion(family)}-P-${peerSetHash(peer, namespace)}`;
}

/** The most port slots one multiport match takes (a range takes two), the kernel's XT_MULTI_PORTS. */
export const MULTIPORT_SLOTS = 15;

/** A peer chain's name: one per policy rule that has several peers and several port matches. */
export function peerChainName(policyKeyText: string, dir: Direction, rule: number): string {
  return `${CHAIN_PREFIX}RP-${shortHash(`${policyKeyText}/${dir}/${rule}`)}`;
}

/**
 * The port matches of one policy rule: the numeric ports of a protocol as one `--dport` or multiport matches of at
 * most 15 slots, a protocol without a port as `-p`, a named port as its hash:ip,port set.
 */
function portParts(ports: readonly NetworkPolicyPort[]): RulePart[] {
  const parts: RulePart[] = [];
  const numeric = new Map<string, Set<string>>();
  for (const port of ports) {
    const protocol = (port.protocol ?? 'TCP') as Protocol;
    const proto = protocol.toLowerCase();
    if (port.port === undefined) {
      parts.push({ family: null, words: () => ['-p', proto] });
    } else if (typeof port.port === 'string') {
      const portName = port.port;
      const def = (set: string): SetDef => ({ kind: 'named', name: set, type: 'hash:ip,port', port: portName, protocol });
      const hashed = shortHash(JSON.stringify({ name: portName, protocol }), 14);
      parts.push({ family: null, set: { kind: 'N', hash: hashed, def }, words: (set) => ['-p', proto, '-m', 'set', '--match-set', set, 'dst,dst'] });
    } else {
      const range = port.endPort === undefined || port.endPort === port.port ? `${port.port}` : `${port.port}:${port.endPort}`;
      let ranges = numeric.get(proto);
      if (ranges === undefined) {
        ranges = new Set();
        numeric.set(proto, ranges);
      }
      ranges.add(range);
    }
  }
  for (const [proto, ranges] of numeric) {
    if (ranges.size === 1) {
      const words = ['-p', proto, '-m', proto, '--dport', [...ranges][0] ?? ''];
      parts.push({ family: null, words: () => words });
      continue;
    }
    let chunk: string[] = [];
    let slots = 0;
    const flush = (): void => {
      const words = ['-p', proto, '-m', 'multiport', '--dports', chunk.join(',')];
      parts.push({ family: null, words: () => words });
      chunk = [];
      slots = 0;
    };
    for (const range of ranges) {
      const cost = range.includes(':') ? 2 : 1;
      if (slots + cost > MULTIPORT_SLOTS) flush();
      chunk.push(range);
      slots += cost;
    }
    flush();
  }
  return parts;
}

/**
 * The rule chain of one policy in one direction, for both families: whatever a rule allows sets the mark. Rules
 * grow with peers plus ports, never peers times ports: a rule with several peers and several port matches jumps
 * from each port match to a peer chain that marks on any peer; several plain ipBlocks of a family are one hash:net
 * set. What the peers and ports mean (and the hashes naming their sets) is worked out once; a family then takes the
 * ipBlocks of its own family and its own set names.
 */
export function compileRuleChains(p: PreparedPolicy, dir: Direction, mark: number): Record<IpFamily, RuleChainDef> {
  return atOnce(compileRuleChainsInSteps(p, dir, mark));
}

/**
 * compileRuleChains() as steps (see slices.ts), pausing every PEERS_PER_STEP peers: a rule of 600 peers and 600
 * ports took 5-18 ms of CPU in one piece.
 */
export function* compileRuleChainsInSteps(p: PreparedPolicy, dir: Direction, mark: number): Generator<void, Record<IpFamily, RuleChainDef>> {
  const name = ruleChainName(p.key, dir);
  const jump: Rule = ['-j', name];
  const none = (): RuleChainDef => ({ name, rules: null, peerChains: new Map(), jump, sets: [] });
  if (!p.valid) return { ipv4: none(), ipv6: none() };
  const markRule = ['-j', 'MARK', '--set-xmark', markArgs(mark).set];
  const side = dir === 'ingress' ? 'src' : 'dst';
  const address = dir === 'ingress' ? '-s' : '-d';
  const setMatch = (set: string): string[] => ['-m', 'set', '--match-set', set, side];
  const fixedPart = (cidrs: IpPrefix[], excepts: IpPrefix[]): RulePart => {
    const meaning = JSON.stringify({ cidr: cidrs.map((c) => c.text).sort(), except: excepts.map((e) => e.text).sort() });
    const def = (set: string): SetDef => ({ kind: 'fixed', name: set, type: 'hash:net', cidrs, except: excepts });
    return { family: cidrs[0]?.family ?? null, set: { kind: 'B', hash: shortHash(meaning, 14), def }, words: setMatch };
  };
  const selectorPart = (peer: NetworkPolicyPeer): RulePart => {
    const def = (set: string): SetDef => ({ kind: 'peer', name: set, type: 'hash:ip', peer, namespace: p.namespace });
    return { family: null, set: { kind: 'P', hash: peerSetHash(peer, p.namespace), def }, words: setMatch };
  };
  /** A rule's peers: one part per selector peer and per ipBlock with excepts; its plain ipBlocks of a family, one. */
  const peerParts = function* (peers: readonly NetworkPolicyPeer[]): Generator<void, RulePart[]> {
    const parts: RulePart[] = [];
    const plain: Record<IpFamily, IpPrefix[]> = { ipv4: [], ipv6: [] };
    let seen = 0;
    for (const peer of peers) {
      if (++seen % PEERS_PER_STEP === 0) yield;
      if (peer.ipBlock === undefined) {
        parts.push(selectorPart(peer));
        continue;
      }
      const cidr = requireIpCidr(peer.ipBlock.cidr);
      const excepts: IpPrefix[] = [];
      for (const text of peer.ipBlock.except ?? []) {
        excepts.push(requireIpCidr(text));
        if (excepts.length % EXCEPTS_PER_STEP === 0) yield;
      }
      if (excepts.length === 0) plain[cidr.family].push(cidr);
      else parts.push(fixedPart([cidr], excepts));
    }
    for (const cidrs of [plain.ipv4, plain.ipv6]) {
      const only = cidrs.length === 1 ? cidrs[0] : undefined;
      if (only !== undefined) {
        const words = [address, only.text];
        parts.unshift({ family: only.family, words: () => words });
      } else if (cidrs.length > 1) {
        parts.unshift(fixedPart(cidrs, []));
      }
    }
    return parts;
  };
  const specRules = dir === 'ingress' ? (p.policy.spec?.ingress ?? []) : (p.policy.spec?.egress ?? []);
  const parts: { peers: RulePart[] | null; ports: RulePart[] | null }[] = [];
  for (const rule of specRules) {
    const peers = dir === 'ingress' ? ('from' in rule ? rule.from : undefined) : 'to' in rule ? rule.to : undefined;
    parts.push({
      peers: peers === undefined || peers.length === 0 ? null : yield* peerParts(peers),
      ports: rule.ports === undefined || rule.ports.length === 0 ? null : portParts(rule.ports),
    });
    yield;
  }
  const forFamily = function* (family: IpFamily): Generator<void, RuleChainDef> {
    const sets = new Map<string, SetDef>();
    const words = (part: RulePart): string[] => {
      if (part.set === undefined) return part.words('');
      const set = `${SET_PREFIX}${ipVersion(family)}-${part.set.kind}-${part.set.hash}`;
      if (!sets.has(set)) sets.set(set, part.set.def(set));
      return part.words(set);
    };
    const rules: Rule[] = [];
    const peerChains = new Map<string, Rule[]>();
    const seen = new Set<string>();
    const add = (chain: Rule[], r: Rule): void => {
      const text = `${chain === rules ? '' : 'peer '}${r.join(' ')}`;
      if (!seen.has(text)) {
        seen.add(text);
        chain.push(r);
      }
    };
    for (const [index, rule] of parts.entries()) {
      const peerMatches: string[][] = [];
      for (const part of rule.peers ?? []) {
        if (part.family !== null && part.family !== family) continue;
        peerMatches.push(words(part));
        if (peerMatches.length % PEERS_PER_STEP === 0) yield;
      }
      if (rule.peers === null) peerMatches.push([]);
      // Ports after peers: a named-port set is needed even when all the rule's peers are of the other family.
      const portMatches = rule.ports === null ? [[]] : rule.ports.map(words);
      if (peerMatches.length > 1 && portMatches.length > 1) {
        const peerChain = peerChainName(p.key, dir, index);
        const chain = peerMatches.map((peer) => [...peer, ...markRule]);
        peerChains.set(peerChain, chain);
        for (const port of portMatches) add(rules, [...port, '-j', peerChain]);
        yield;
        continue;
      }
      for (const peer of peerMatches) for (const port of portMatches) add(rules, [...peer, ...port, ...markRule]);
      yield;
    }
    return { name, rules: rules.length === 0 ? null : rules, peerChains, jump, sets: [...sets.values()] };
  };
  const v4 = yield* forFamily('ipv4');
  const v6 = yield* forFamily('ipv6');
  return { ipv4: v4, ipv6: v6 };
}

/** Every chain of a rule chain definition: the rule chain and its peer chains (none when it allows nothing). */
export function ruleChainTables(def: RuleChainDef): [string, Rule[]][] {
  return def.rules === null ? [] : [[def.name, def.rules], ...def.peerChains];
}

/** The flag of a hash:net entry that takes its addresses out of a wider entry (the most specific entry decides). */
export const NOMATCH = ' nomatch';

/**
 * An ipBlock set's entries: its CIDR (or the CIDRs of a rule's plain ipBlocks), and each except as a `nomatch`
 * entry, so a policy's entries grow with its
 * excepts (2,000 /128 excepts in ::/0 are 2,002 entries, not the ~250,000 prefixes of the subtraction). hash:net
 * takes no /0: such a CIDR is its two halves.
 */
export function fixedMembers(def: Extract<SetDef, { kind: 'fixed' }>): string[] {
  const cidrs = def.cidrs.flatMap((c) => (c.length === 0 ? prefixHalves(c) : [c]));
  const excepts = [...new Set(def.except.map((e) => e.text))].map((e) => `${e}${NOMATCH}`);
  return [...cidrs.map((c) => c.text), ...excepts];
}

/** Whether a peer set (a selector peer of a policy in `namespace`) holds a pod of `podNamespace` with `labels`. */
export function peerIncludes(
  def: Extract<SetDef, { kind: 'peer' }>,
  podNamespace: string,
  labels: Record<string, string>,
  namespaceLabels: (ns: string) => Record<string, string>,
): boolean {
  const peer = def.peer;
  if (peer.namespaceSelector === undefined) {
    if (podNamespace !== def.namespace) return false;
  } else if (!selectorMatches(peer.namespaceSelector, namespaceLabels(podNamespace))) {
    return false;
  }
  return peer.podSelector === undefined || selectorMatches(peer.podSelector, labels);
}

/** The (pod IP, protocol:port) entries a pod contributes to a named-port set. */
export function namedPortEntries(pod: Pod, ip: string, portName: string, protocol: Protocol): string[] {
  const out: string[] = [];
  for (const container of [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])]) {
    for (const port of container.ports ?? []) {
      if (port.name === portName && (port.protocol ?? 'TCP') === protocol && validPortNumber(port.containerPort)) {
        out.push(`${ip},${protocol.toLowerCase()}:${port.containerPort}`);
      }
    }
  }
  return out;
}

/** A namespace's chain per direction, named by a hash of the namespace. */
export function namespaceChainName(namespace: string, dir: Direction): string {
  return `${CHAIN_PREFIX}${dir === 'ingress' ? 'NI' : 'NE'}-${shortHash(namespace)}`;
}

/** The set of local pods isolated in a direction (selected by a policy of that type): the others pass untouched. */
export function isolatedSetName(family: IpFamily, dir: Direction): string {
  return `${SET_PREFIX}${ipVersion(family)}-ISOLATED-${dir === 'ingress' ? 'I' : 'E'}`;
}

/**
 * The set of the pods a policy selects: the peer set of its podSelector in its namespace (shared with any policy
 * rule of that namespace naming the same selector). It holds the namespace's pods of every node; a namespace
 * chain asks it only about the node's own pods of that namespace. An invalid podSelector selects the whole
 * namespace (see PreparedPolicy.selectAll).
 */
export function selectionSetDef(p: PreparedPolicy, family: IpFamily): SetDef {
  const peer: NetworkPolicyPeer = { podSelector: p.selectAll ? {} : (p.policy.spec?.podSelector ?? {}) };
  return { kind: 'peer', name: peerSetName(family, peer, p.namespace), type: 'hash:ip', peer, namespace: p.namespace };
}

/** What a namespace chain calls for one policy: its rule chain, and the set of the pods it selects. */
export interface NamespacePolicy {
  ruleChain: RuleChainDef;
  selection: SetDef;
}

/** The rules around a namespace chain's jumps, per mark (a single bit, so at most 32 of them). */
const namespaceChainFrames = new Map<number, { clear: Rule; drop: Rule }>();

/**
 * A namespace chain, reached only by the node's pods of that namespace that are isolated in the direction: clear
 * the mark, let the rule chain of every policy of the namespace that has rules and selects the pod (by its
 * selection set) mark, drop what none marked, clear again. Its content depends on the namespace's policies alone,
 * not on pod labels: a label change only changes set members.
 */
export function namespaceChainRules(policies: readonly NamespacePolicy[], dir: Direction, mark: number): Rule[] {
  let frame = namespaceChainFrames.get(mark);
  if (frame === undefined) {
    const m = markArgs(mark);
    frame = { clear: ['-j', 'MARK', '--set-xmark', m.clear], drop: ['-m', 'mark', '!', '--mark', m.set, '-j', 'DROP'] };
    namespaceChainFrames.set(mark, frame);
  }
  const side = dir === 'ingress' ? 'dst' : 'src';
  const rules: Rule[] = [frame.clear];
  for (const p of policies) {
    if (p.ruleChain.rules !== null) rules.push(['-m', 'set', '--match-set', p.selection.name, side, ...p.ruleChain.jump]);
  }
  rules.push(frame.drop, frame.clear);
  return rules;
}

/**
 * Local pods are dispatched to their namespace's chain through 64 bucket chains chosen by the low 6 bits of the
 * address (one masked match each): a pod that comes or goes rewrites its bucket of a few rules, not a dispatch
 * chain with a rule per pod; a new connection checks at most 64 bucket rules plus its bucket's pods.
 */
export const DISPATCH_BUCKETS = 64;

/** The low 6 bits of a canonical address (as podIp() returns it). */
export function dispatchBucket(ip: string, family: IpFamily): number {
  const last = ip.slice(ip.lastIndexOf(family === 'ipv4' ? '.' : ':') + 1);
  const value = family === 'ipv4' ? Number(last) : last === '' ? 0 : parseInt(last, 16);
  if (Number.isInteger(value) && !(family === 'ipv6' && last.includes('.'))) return value & (DISPATCH_BUCKETS - 1);
  const bytes = ipaddr.parse(ip).toByteArray();
  return (bytes[bytes.length - 1] ?? 0) & (DISPATCH_BUCKETS - 1);
}

export function bucketChainName(dir: Direction, bucket: number): string {
  return `${CHAIN_PREFIX}${dir === 'ingress' ? 'IB' : 'EB'}-${bucket.toString(16).padStart(2, '0')}`;
}

export function bucketRule(dir: Direction, bucket: number, family: IpFamily): Rule {
  const mask = DISPATCH_BUCKETS - 1;
  const match = family === 'ipv4' ? `0.0.0.${bucket}/0.0.0.${mask}` : `::${bucket.toString(16)}/::${mask.toString(16)}`;
  return [dir === 'ingress' ? '-d' : '-s', match, '-j', bucketChainName(dir, bucket)];
}

export function dispatchRule(dir: Direction, ip: string, family: IpFamily, namespaceChain: string): Rule {
  return [dir === 'ingress' ? '-d' : '-s', `${ip}/${addressBits(family)}`, '-j', namespaceChain];
}

export function localSetName(family: IpFamily): string {
  return `${SET_PREFIX}${ipVersion(family)}-LOCAL`;
}

/** The addresses of the node's live pods the agent knows from the API: a podCIDR source outside it is dropped. */
export function knownSetName(family: IpFamily): string {
  return `${SET_PREFIX}${ipVersion(family)}-KNOWN`;
}

/**
 * ICMPv6 a pod sends from its link-local or the unspecified address (::) before or besides using its own:
 * neighbor solicitation (DAD included) and advertisement, router solicitation, MLD reports and done. Nothing else
 * from those sources passes a pod bridge port (no router advertisements, no redirects, no traffic).
 */
export const LINK_LOCAL_ICMPV6_TYPES = ['neighbour-solicitation', 'neighbour-advertisement', 'router-solicitation', '131', '132', '143'] as const;

/**
 * PRPOL-SOURCE: every packet that enters from a port of the pod bridge (FORWARD, bridged or routed, and INPUT)
 * must come from an address bound to that port, before any policy and before conntrack's ESTABLISHED: a pod
 * sends only from its own addresses (as Calico binds each workload interface). A port with no binding (a pod the
 * agent has not bound yet, e.g. one started while the agent was down) sends nothing. One rule per bound address:
 * ipset's hash:net,iface cannot be asked about the bridge port from iptables (the kernel looks at the physdev only
 * when the match passes a flag the iptables set match has no option for), so a packet from a pod passes at most
 * one rule per local pod address of its family.
 */
export function sourceChainRules(family: IpFamily, bindings: readonly SourceBinding[]): Rule[] {
  const bound: Rule[] = [];
  for (const b of bindings) {
    for (const ip of b.addresses) {
      if (familyOf(ip) === family) bound.push(['-m', 'physdev', '--physdev-in', b.interface, '-s', `${ip}/${addressBits(family)}`, '-j', 'RETURN']);
    }
  }
  const linkLocal: Rule[] =
    family === 'ipv6'
      ? ['fe80::/10', '::/128'].flatMap((src) => LINK_LOCAL_ICMPV6_TYPES.map((t): Rule => ['-s', src, '-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', t, '-j', 'RETURN']))
      : [];
  return [...bound, ...linkLocal, ['-j', 'DROP']];
}

export interface BaseChainsInput {
  family: IpFamily;
  podCIDRs: string[];
  /** Buckets holding at least one dispatched pod, per direction, ascending. */
  buckets: Record<Direction, number[]>;
  /** A local pod selected by a policy isolating it in that direction has no address of this family yet. */
  pending: Record<Direction, boolean>;
  /** The pod bridge and its bound ports: what enters from its ports goes through PRPOL-SOURCE first. */
  bridge?: PodBridge;
}

/**
 * PRPOL-FORWARD, PRPOL-INPUT, PRPOL-EGRESS, PRPOL-INGRESS (and PRPOL-SOURCE with a bridge). Traffic from an
 * address of the node's podCIDRs that belongs to no known local pod is always dropped (traffic the node sends
 * itself over lo excepted): nobody owns it, so no policy speaks for it. While a selected local pod has no address
 * yet, traffic to such an address is dropped too: the pod's sandbox may already use its address before the
 * address reaches the pod's status, and its first packets must not pass unfiltered. The ingress guard lifts once
 * the address is known (then the pod's own chain filters it).
 */
export function baseChains(b: BaseChainsInput): Map<string, Rule[]> {
  const local = localSetName(b.family);
  const known = knownSetName(b.family);
  const ndp = (verdict: 'ACCEPT' | 'RETURN'): Rule[] =>
    b.family === 'ipv6' ? NDP_ICMPV6_TYPES.map((t) => ['-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', t, '-j', verdict]) : [];
  const unknownSource = (viaLo: boolean): Rule[] =>
    b.podCIDRs.map((c) => [...(viaLo ? ['!', '-i', 'lo'] : []), '-s', c, '-m', 'set', '!', '--match-set', known, 'src', '-j', 'DROP']);
  const ingressGuard: Rule[] = b.pending.ingress
    ? b.podCIDRs.map((c) => ['-d', c, '-m', 'set', '!', '--match-set', known, 'dst', '-j', 'DROP'])
    : [];
  const fromBridge: Rule[] = b.bridge === undefined ? [] : [['-i', b.bridge.name, '-m', 'physdev', '--physdev-is-in', '-j', CHAINS.source]];
  const chains = new Map<string, Rule[]>();
  chains.set(CHAINS.forward, [
    ...fromBridge,
    ['-m', 'set', '!', '--match-set', local, 'src', '-m', 'set', '!', '--match-set', local, 'dst', '-j', 'RETURN'],
    ...ndp('ACCEPT'),
    ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
    ...unknownSource(false),
    ...ingressGuard,
    ['-j', CHAINS.egress],
    ['-j', CHAINS.ingress],
  ]);
  chains.set(CHAINS.input, [
    ...fromBridge,
    ['-m', 'set', '!', '--match-set', local, 'src', '-j', 'RETURN'],
    // The host firewall decides about the node's own traffic; we only withhold what egress policy forbids.
    ...ndp('RETURN'),
    ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'RETURN'],
    ...unknownSource(true),
    ['-j', CHAINS.egress],
  ]);
  // A pod no policy isolates in a direction is none of that direction's business: one set lookup, no bucket scan.
  const dispatch = (dir: Direction): Rule[] => [
    ['-m', 'set', '!', '--match-set', isolatedSetName(b.family, dir), dir === 'ingress' ? 'dst' : 'src', '-j', 'RETURN'],
    ...b.buckets[dir].map((k) => bucketRule(dir, k, b.family)),
  ];
  chains.set(CHAINS.egress, dispatch('egress'));
  chains.set(CHAINS.ingress, dispatch('ingress'));
  if (b.bridge !== undefined) chains.set(CHAINS.source, sourceChainRules(b.family, b.bridge.bindings));
  return chains;
}

export function builtinJumps(): BuiltinJump[] {
  return [
    { chain: 'FORWARD', target: CHAINS.forward, comment: JUMP_COMMENT },
    { chain: 'INPUT', target: CHAINS.input, comment: JUMP_COMMENT },
  ];
}

export function familyCIDRs(node: PolicyNode, family: IpFamily): string[] {
  return node.podCIDRs.map((c) => requireIpCidr(c)).filter((c) => c.family === family).map((c) => c.text);
}

export function validateNode(node: PolicyNode): void {
  if (typeof node?.name !== 'string' || node.name === '') throw new PolicyCompileError('node.name', 'is required');
  (node.podCIDRs ?? []).forEach((cidr, i) => {
    try {
      requireIpCidr(cidr);
    } catch {
      throw new PolicyCompileError(`node.podCIDRs[${i}]`, `not a CIDR: ${JSON.stringify(cidr)}`);
    }
  });
}

/** An interface name as the pod bridge and its ports may be named (it goes into restore input as it is). */
const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function validateBridge(bridge: PodBridge | undefined): void {
  if (bridge === undefined) return;
  if (!INTERFACE_NAME.test(bridge.name)) throw new PolicyCompileError('bridge.name', `not an interface name: ${JSON.stringify(bridge.name)}`);
  bridge.bindings.forEach((b, i) => {
    if (!INTERFACE_NAME.test(b.interface)) throw new PolicyCompileError(`bridge.bindings[${i}].interface`, `not an interface name: ${JSON.stringify(b.interface)}`);
    b.addresses.forEach((ip, j) => {
      if (!(isIPv4(ip) || isIPv6(ip)) || canonicalAddress(ip) !== ip) {
        throw new PolicyCompileError(`bridge.bindings[${i}].addresses[${j}]`, `not a canonical address: ${JSON.stringify(ip)}`);
      }
    });
  });
}

export function validateMark(mark: number): void {
  if (!Number.isInteger(mark) || mark <= 0 || mark > 0xffffffff || (mark & (mark - 1)) !== 0) {
    throw new PolicyCompileError('allowMark', `must be a single bit, not ${mark}`);
  }
}

export function makeSetSpec(name: string, type: IpSetType, family: IpFamily, members: Iterable<string>): IpSetSpec {
  return { name, type, family, members: [...new Set(members)].sort() };
}

export function namespaceLabelsOf(namespaces: CompileInput['namespaces']): (ns: string) => Record<string, string> {
  const labels = new Map<string, Record<string, string>>();
  for (const ns of namespaces) {
    const name = ns.metadata?.name ?? '';
    labels.set(name, { ...(ns.metadata?.labels ?? {}), [METADATA_NAME_LABEL]: name });
  }
  return (ns) => labels.get(ns) ?? { [METADATA_NAME_LABEL]: ns };
}
