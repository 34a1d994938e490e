// The from-scratch policy compiler: the reference the agent's incremental PolicyCompiler (src/policy/incremental.ts)
// is held equal to by property tests, and the "before" of the policy benchmark. Built from the same pure building
// blocks in src/policy/compile.ts; the agent never runs it.
import {
  baseChains,
  bucketChainName,
  builtinJumps,
  compileRuleChains,
  DEFAULT_ALLOW_MARK,
  DIRECTIONS,
  dispatchBucket,
  dispatchRule,
  familyCIDRs,
  fixedMembers,
  isLive,
  knownSetName,
  localSetName,
  makeSetSpec,
  namedPortEntries,
  namespaceLabelsOf,
  peerIncludes,
  isolatedSetName,
  namespaceChainName,
  namespaceChainRules,
  podIp,
  podKey,
  policySelects,
  preparePolicy,
  ruleChainTables,
  selectionSetDef,
  validateBridge,
  validateMark,
  validateNode,
  type CompiledPolicies,
  type CompileInput,
  type CompileOptions,
  type Direction,
  type FamilyRuleset,
  type IpSetSpec,
  type PreparedPolicy,
  type Rule,
  type RuleChainDef,
  type SetDef,
} from '../../../src/policy/compile.js';
import { addressBits, type IpFamily } from '../../../src/routes/ip-prefix.js';

type RuleChainsOf = (p: PreparedPolicy, dir: Direction) => Record<IpFamily, RuleChainDef>;

function compileFamily(family: IpFamily, input: CompileInput, policies: PreparedPolicy[], namespaceLabels: (ns: string) => Record<string, string>, ruleChainsOf: RuleChainsOf, mark: number): FamilyRuleset {
  const chains = new Map<string, Rule[]>();
  const sets = new Map<string, IpSetSpec>();
  const live = input.pods
    .filter((p) => isLive(p) && p.spec?.hostNetwork !== true)
    .map((pod) => ({ pod, key: podKey(pod), namespace: pod.metadata?.namespace ?? '', labels: pod.metadata?.labels ?? {}, ip: podIp(pod, family) }));
  const addSetDef = (def: SetDef): void => {
    if (sets.has(def.name)) return;
    const members: string[] = [];
    if (def.kind === 'fixed') members.push(...fixedMembers(def));
    for (const l of def.kind === 'fixed' ? [] : live) {
      if (l.ip === undefined) continue;
      if (def.kind === 'peer' && peerIncludes(def, l.namespace, l.labels, namespaceLabels)) members.push(l.ip);
      if (def.kind === 'named') members.push(...namedPortEntries(l.pod, l.ip, def.port, def.protocol));
    }
    sets.set(def.name, makeSetSpec(def.name, def.type, family, members));
  };
  const ruleChains = new Map<string, RuleChainDef>();
  const ruleChain = (p: PreparedPolicy, dir: Direction): RuleChainDef => {
    const id = `${p.key}\n${dir}`;
    const known = ruleChains.get(id);
    if (known !== undefined) return known;
    const def = ruleChainsOf(p, dir)[family];
    def.sets.forEach(addSetDef);
    for (const [chain, rules] of ruleChainTables(def)) chains.set(chain, rules);
    ruleChains.set(id, def);
    return def;
  };
  const localPods = live.filter(({ pod }) => pod.spec?.nodeName === input.node.name).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const byNamespace = new Map<string, PreparedPolicy[]>();
  for (const p of policies) byNamespace.set(p.namespace, [...(byNamespace.get(p.namespace) ?? []), p]);
  const cidrs = familyCIDRs(input.node, family);
  const localMembers = cidrs.map((c) => c);
  const knownMembers: string[] = [];
  const buckets: Record<Direction, Map<number, Rule[]>> = { ingress: new Map(), egress: new Map() };
  const pending: Record<Direction, boolean> = { ingress: false, egress: false };
  const dispatched = new Set<string>();
  const isolated: Record<Direction, string[]> = { ingress: [], egress: [] };
  const usedNamespaces: Record<Direction, Set<string>> = { ingress: new Set(), egress: new Set() };
  for (const { ip, namespace, labels } of localPods) {
    const policiesOfNamespace = byNamespace.get(namespace) ?? [];
    const selecting = policiesOfNamespace.filter((p) => policySelects(p, namespace, labels));
    if (ip === undefined) {
      for (const dir of DIRECTIONS) if (selecting.some((p) => p[dir])) pending[dir] = true;
      continue;
    }
    knownMembers.push(ip);
    if (dispatched.has(ip)) continue;
    dispatched.add(ip);
    localMembers.push(`${ip}/${addressBits(family)}`);
    for (const dir of DIRECTIONS) {
      if (!policiesOfNamespace.some((p) => p[dir])) continue;
      usedNamespaces[dir].add(namespace);
      if (selecting.some((p) => p[dir])) isolated[dir].push(ip);
      const bucket = dispatchBucket(ip, family);
      buckets[dir].set(bucket, [...(buckets[dir].get(bucket) ?? []), dispatchRule(dir, ip, family, namespaceChainName(namespace, dir))]);
    }
  }
  for (const dir of DIRECTIONS) {
    for (const namespace of usedNamespaces[dir]) {
      const called = (byNamespace.get(namespace) ?? []).filter((p) => p[dir]).map((p) => ({ ruleChain: ruleChain(p, dir), selection: selectionSetDef(p, family) }));
      for (const c of called) if (c.ruleChain.rules !== null) addSetDef(c.selection);
      chains.set(namespaceChainName(namespace, dir), namespaceChainRules(called, dir, mark));
    }
    sets.set(isolatedSetName(family, dir), makeSetSpec(isolatedSetName(family, dir), 'hash:ip', family, isolated[dir]));
  }
  sets.set(localSetName(family), makeSetSpec(localSetName(family), 'hash:net', family, localMembers));
  sets.set(knownSetName(family), makeSetSpec(knownSetName(family), 'hash:ip', family, knownMembers));
  const bridge = input.bridge;
  const sortedBuckets = (dir: Direction): number[] => [...buckets[dir].keys()].sort((a, b) => a - b);
  const base = { family, podCIDRs: cidrs, buckets: { ingress: sortedBuckets('ingress'), egress: sortedBuckets('egress') }, pending, ...(bridge === undefined ? {} : { bridge }) };
  for (const [name, rules] of baseChains(base)) {
    chains.set(name, rules);
  }
  for (const dir of DIRECTIONS) for (const [k, rules] of buckets[dir]) chains.set(bucketChainName(dir, k), rules);
  return { family, chains, sets, jumps: builtinJumps() };
}

/** Compiles a snapshot from scratch. */
export function compilePolicies(input: CompileInput, options: CompileOptions = {}): CompiledPolicies {
  validateNode(input.node);
  validateBridge(input.bridge);
  const mark = options.allowMark ?? DEFAULT_ALLOW_MARK;
  validateMark(mark);
  const policies = [...input.policies].map(preparePolicy).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const problems = policies.flatMap((p) => p.problems);
  const namespaceLabels = namespaceLabelsOf(input.namespaces);
  const compiled = new Map<string, Record<IpFamily, RuleChainDef>>();
  const ruleChainsOf: RuleChainsOf = (p, dir) => {
    const id = `${p.key}\n${dir}`;
    let defs = compiled.get(id);
    if (defs === undefined) {
      defs = compileRuleChains(p, dir, mark);
      compiled.set(id, defs);
    }
    return defs;
  };
  return {
    v4: compileFamily('ipv4', input, policies, namespaceLabels, ruleChainsOf, mark),
    v6: compileFamily('ipv6', input, policies, namespaceLabels, ruleChainsOf, mark),
    problems,
  };
}
