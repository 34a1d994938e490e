// A packet-level interpreter of compiled chains and sets (test helper): it walks the exact argument lists the
// compiler emits, the way the kernel would, so compiled rules can be compared with the oracle. Any argument it
// does not understand is an error, never silently ignored.
import ipaddr from 'ipaddr.js';
import type { CompiledPolicies, FamilyRuleset, IpSetSpec } from '../../../src/policy/compile.js';
import type { Protocol } from '../../../src/policy/types.js';
import { addressBits, familyOf, type IpFamily } from '../../../src/routes/ip-prefix.js';

export type Hook = 'FORWARD' | 'INPUT' | 'OUTPUT';
export type Verdict = 'ACCEPT' | 'DROP' | 'CONTINUE';

export interface SimPacket {
  src: string;
  dst: string;
  protocol: Protocol;
  dport: number;
  ctstate?: 'NEW' | 'ESTABLISHED';
  /** The interface it came in on (the bridge for a packet from a pod's veth; lo for the node's own). */
  inInterface?: string;
  /** The bridge port it entered from (br_netfilter's physdev), when it came from a bridge. */
  physIn?: string;
}

// Parsing addresses is the simulator's hot path: cache every parse.
const cidrCache = new Map<string, [ipaddr.IPv4 | ipaddr.IPv6, number]>();
const ipCache = new Map<string, ipaddr.IPv4 | ipaddr.IPv6>();

function parsedIp(ip: string): ipaddr.IPv4 | ipaddr.IPv6 {
  let a = ipCache.get(ip);
  if (a === undefined) {
    a = ipaddr.parse(ip);
    ipCache.set(ip, a);
  }
  return a;
}

/** `addr/mask` with a dotted (IPv4) or colon (IPv6) mask, as the dispatch buckets use: (ip & mask) == addr. */
function inMasked(ip: string, addr: string, mask: string): boolean {
  const a = parsedIp(ip);
  const base = parsedIp(addr);
  const m = parsedIp(mask);
  if (a.kind() !== base.kind() || a.kind() !== m.kind()) return false;
  const [ab, bb, mb] = [a.toByteArray(), base.toByteArray(), m.toByteArray()];
  return ab.every((byte, i) => (byte & (mb[i] ?? 0)) === (bb[i] ?? 0));
}

function inCidr(ip: string, cidr: string): boolean {
  const [maskedAddr, suffix] = cidr.split('/');
  if (suffix !== undefined && /[.:]/.test(suffix)) return inMasked(ip, maskedAddr ?? '', suffix);
  let c = cidrCache.get(cidr);
  if (c === undefined) {
    c = cidr.includes('/') ? ipaddr.parseCIDR(cidr) : [ipaddr.parse(cidr), addressBits(familyOf(cidr))];
    cidrCache.set(cidr, c);
  }
  const addr = parsedIp(ip);
  return addr.kind() === c[0].kind() && addr.match(c[0], c[1]);
}

function normalIp(ip: string): string {
  return parsedIp(ip).toString();
}

const memberCache = new WeakMap<IpSetSpec, Set<string>>();

function members(set: IpSetSpec): Set<string> {
  let m = memberCache.get(set);
  if (m === undefined) {
    m = new Set(
      set.members.map((e) => {
        const [ip, port] = e.split(',');
        return port === undefined ? normalIp(ip ?? '') : `${normalIp(ip ?? '')},${port}`;
      }),
    );
    memberCache.set(set, m);
  }
  return m;
}

function inSet(set: IpSetSpec | undefined, name: string, dirs: string, pkt: SimPacket): boolean {
  if (set === undefined) throw new Error(`simulator: rule references missing set ${name}`);
  const parts = dirs.split(',');
  const ip = parts[0] === 'src' ? pkt.src : pkt.dst;
  switch (set.type) {
    case 'hash:ip':
      if (parts.length !== 1) throw new Error(`simulator: ${set.type} with ${dirs}`);
      return members(set).has(normalIp(ip));
    case 'hash:net': {
      if (parts.length !== 1) throw new Error(`simulator: ${set.type} with ${dirs}`);
      // As the kernel does: the most specific entry holding the address decides; a nomatch entry says no.
      let best: { length: number; nomatch: boolean } | undefined;
      for (const m of set.members) {
        const [net = '', flag] = m.split(' ');
        if (!inCidr(ip, net)) continue;
        const length = net.includes('/') ? Number(net.split('/')[1]) : addressBits(familyOf(net));
        if (best === undefined || length > best.length) best = { length, nomatch: flag === 'nomatch' };
      }
      return best !== undefined && !best.nomatch;
    }
    case 'hash:ip,port':
      if (parts.length !== 2 || parts[1] !== 'dst') throw new Error(`simulator: ${set.type} with ${dirs}`);
      return members(set).has(`${normalIp(ip)},${pkt.protocol.toLowerCase()}:${pkt.dport}`);
  }
}

function parseMark(text: string): [number, number] {
  const [v, m] = text.split('/');
  return [Number(v), Number(m ?? '0xffffffff')];
}

interface State {
  mark: number;
  depth: number;
}

function runChain(rs: FamilyRuleset, chain: string, pkt: SimPacket, state: State): Verdict | 'RETURN' {
  const rules = rs.chains.get(chain);
  if (rules === undefined) throw new Error(`simulator: jump to missing chain ${chain}`);
  if (state.depth > 20) throw new Error('simulator: chain loop');
  for (const rule of rules) {
    const outcome = runRule(rs, rule, pkt, state);
    if (outcome !== 'NEXT') return outcome;
  }
  return 'RETURN';
}

function runRule(rs: FamilyRuleset, rule: readonly string[], pkt: SimPacket, state: State): Verdict | 'RETURN' | 'NEXT' {
  let i = 0;
  let negate = false;
  const next = (): string => {
    const t = rule[i++];
    if (t === undefined) throw new Error(`simulator: rule ended early: ${rule.join(' ')}`);
    return t;
  };
  const check = (result: boolean): boolean => {
    const r = negate ? !result : result;
    negate = false;
    return r;
  };
  let matched = true;
  while (i < rule.length) {
    const t = next();
    if (t === '!') {
      negate = true;
      continue;
    }
    if (t === '-s' || t === '-d') {
      const cidr = next();
      if (!check(inCidr(t === '-s' ? pkt.src : pkt.dst, cidr))) matched = false;
    } else if (t === '-i') {
      if (!check(next() === pkt.inInterface)) matched = false;
    } else if (t === '-p') {
      if (!check(next() === pkt.protocol.toLowerCase())) matched = false;
    } else if (t === '-m') {
      const module = next();
      if (module === 'tcp' || module === 'udp' || module === 'sctp') {
        if (next() !== '--dport') throw new Error(`simulator: ${module} without --dport`);
        const [lo, hi] = next().split(':').map(Number);
        if (lo === undefined || !check(pkt.dport >= lo && pkt.dport <= (hi ?? lo))) matched = false;
      } else if (module === 'multiport') {
        if (next() !== '--dports') throw new Error('simulator: multiport without --dports');
        const ranges = next().split(',');
        if (ranges.length + ranges.filter((r) => r.includes(':')).length > 15) throw new Error('simulator: multiport over 15 slots');
        const hit = ranges.some((r) => {
          const [lo, hi] = r.split(':').map(Number);
          return lo !== undefined && pkt.dport >= lo && pkt.dport <= (hi ?? lo);
        });
        if (!check(hit)) matched = false;
      } else if (module === 'set') {
        let t2 = next();
        if (t2 === '!') {
          negate = true;
          t2 = next();
        }
        if (t2 !== '--match-set') throw new Error(`simulator: set without --match-set`);
        const name = next();
        if (!check(inSet(rs.sets.get(name), name, next(), pkt))) matched = false;
      } else if (module === 'mark') {
        let t2 = next();
        if (t2 === '!') {
          negate = true;
          t2 = next();
        }
        if (t2 !== '--mark') throw new Error('simulator: mark without --mark');
        const [v, m] = parseMark(next());
        if (!check((state.mark & m) === v)) matched = false;
      } else if (module === 'conntrack') {
        if (next() !== '--ctstate') throw new Error('simulator: conntrack without --ctstate');
        const states = next().split(',');
        if (!check(states.includes(pkt.ctstate ?? 'NEW'))) matched = false;
      } else if (module === 'icmp6') {
        // Simulated packets are TCP, UDP or SCTP, never ICMPv6 (neighbor discovery is not simulated).
        if (next() !== '--icmpv6-type') throw new Error('simulator: icmp6 without --icmpv6-type');
        next();
        if (!check(false)) matched = false;
      } else if (module === 'physdev') {
        const option = next();
        if (option === '--physdev-is-in') {
          if (!check(pkt.physIn !== undefined)) matched = false;
        } else if (option === '--physdev-in') {
          if (!check(pkt.physIn === next())) matched = false;
        } else {
          throw new Error(`simulator: physdev ${option}`);
        }
      } else if (module === 'comment') {
        if (next() !== '--comment') throw new Error('simulator: comment without --comment');
        next();
      } else {
        throw new Error(`simulator: unknown match module ${module}`);
      }
    } else if (t === '-j') {
      const target = next();
      if (!matched) return 'NEXT';
      if (target === 'ACCEPT' || target === 'DROP') return target;
      if (target === 'RETURN') return 'RETURN';
      if (target === 'MARK') {
        if (next() !== '--set-xmark') throw new Error('simulator: MARK without --set-xmark');
        const [v, m] = parseMark(next());
        state.mark = ((state.mark & ~m) ^ v) >>> 0;
        return 'NEXT';
      }
      if (i !== rule.length) throw new Error(`simulator: arguments after jump: ${rule.join(' ')}`);
      state.depth++;
      const r = runChain(rs, target, pkt, state);
      state.depth--;
      return r === 'RETURN' ? 'NEXT' : r;
    } else {
      throw new Error(`simulator: unknown argument ${t} in ${rule.join(' ')}`);
    }
  }
  return 'NEXT';
}

/** What our rules do with a packet at a built-in chain: ACCEPT, DROP, or CONTINUE (no verdict from us). */
export function simulate(rs: FamilyRuleset, hook: Hook, pkt: SimPacket): Verdict {
  const state: State = { mark: 0, depth: 0 };
  for (const jump of rs.jumps.filter((j) => j.chain === hook)) {
    const r = runChain(rs, jump.target, pkt, state);
    if (r === 'ACCEPT' || r === 'DROP') return r;
  }
  if (state.mark !== 0) throw new Error(`simulator: packet left our chains with mark 0x${state.mark.toString(16)}`);
  return 'CONTINUE';
}

/** Where an address lives in a simulated cluster. */
export type Place = { kind: 'pod'; node: string } | { kind: 'host'; node: string } | { kind: 'external' };

/**
 * Whether a new connection passes every node it crosses. `compiled` is each node's compiled ruleset. A pod's
 * traffic leaves through its node's FORWARD (or INPUT when it talks to its own node); traffic to a pod enters
 * through its node's FORWARD unless it comes from that node itself (OUTPUT, where we have no rules).
 */
export function clusterAllows(
  compiled: Map<string, CompiledPolicies>,
  family: IpFamily,
  pkt: SimPacket,
  src: Place,
  dst: Place,
): boolean {
  const at = (node: string, hook: Hook): boolean => {
    const c = compiled.get(node);
    if (c === undefined) throw new Error(`simulator: no ruleset for node ${node}`);
    return simulate(family === 'ipv4' ? c.v4 : c.v6, hook, pkt) !== 'DROP';
  };
  if (src.kind === 'pod') {
    const hook: Hook = dst.kind === 'host' && dst.node === src.node ? 'INPUT' : 'FORWARD';
    if (!at(src.node, hook)) return false;
    if (dst.kind === 'pod' && dst.node === src.node) return true;
  } else if (src.kind === 'host') {
    if (!at(src.node, 'OUTPUT')) return false;
  }
  if (dst.kind === 'pod' && !(src.kind === 'host' && src.node === dst.node)) return at(dst.node, 'FORWARD');
  if (dst.kind === 'host' && !(src.kind !== 'external' && src.node === dst.node)) return at(dst.node, 'INPUT');
  return true;
}
