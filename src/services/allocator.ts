// LoadBalancer IP allocation, planned: (Services as the API holds them, the configured pools) -> the ingress
// addresses each Service of ours should carry, the status writes that get it there, and the problems to report.
// Pure: no I/O. The allocation lives in the Services' status, so whichever agent holds the allocator Lease plans
// from the same objects and reaches the same answer: no double allocation across leader changes or restarts.
//
// Rules (as MetalLB, Cilium LB-IPAM and kube-router users expect):
// - Ours: `type: LoadBalancer` with no `loadBalancerClass` or ours. Another class's addresses are left alone and
//   not handed out again; a Service that stops being a LoadBalancer gives back the addresses of our pools.
// - The older Service keeps an address two Services claim (creation time, then namespace/name): a status never
//   takes an address from its holder.
// - A request (`spec.loadBalancerIP`, or the annotation for several, one per family) is honoured exactly or not at
//   all: an address that is taken, outside every pool that admits the Service, or not an address, is a problem
//   and the Service keeps what it had. A family the request does not name is assigned from the pools.
// - Families follow `spec.ipFamilies` and `ipFamilyPolicy`: SingleStack takes the first, PreferDualStack takes what
//   the pools have, RequireDualStack gets both or nothing new.
// - A new address is the lowest free one of the first pool (in configuration order) that admits the Service and
//   assigns automatically; an IPv4 pool's network and broadcast addresses (up to /30) and an IPv6 pool's first
//   address (the subnet-router anycast, up to /126) are never handed out.
import type { LabelSelector, Service } from '../kube/wire.js';
import { selectorMatches } from '../kube/label-selector.js';
import { addressBits, formatIpBytes, parseIpAddress, parseIpPrefix, prefixContainsAddress, type IpAddress, type IpFamily, type IpPrefix } from '../routes/ip-prefix.js';

/** The `spec.loadBalancerClass` podroute serves (as does a Service with none). */
export const LOAD_BALANCER_CLASS = 'podroute.io/bgp';
/** Requested addresses, comma-separated (one per family); wins over `spec.loadBalancerIP`. */
export const REQUESTED_IPS_ANNOTATION = 'podroute.io/load-balancer-ips';

export interface LoadBalancerPool {
  name: string;
  /** Canonical CIDRs, either family. */
  cidrs: string[];
  /** Whether Services without a request get addresses from it (false: only requested addresses). */
  autoAssign: boolean;
  serviceSelector?: LabelSelector | undefined;
  /** The namespaces whose Services it serves; all when absent. */
  namespaces?: string[] | undefined;
}

export type AllocationProblemReason = 'AddressInUse' | 'AddressNotInPool' | 'InvalidAddressRequest' | 'PoolExhausted' | 'NoPool';

export interface AllocationProblem {
  /** namespace/name */
  service: string;
  reason: AllocationProblemReason;
  message: string;
}

export interface StatusChange {
  namespace: string;
  name: string;
  /** The ingress addresses the status should list, in the Service's family order; [] gives them all back. */
  ips: string[];
}

export interface AllocationPlan {
  /** The addresses each Service of ours holds after this pass, by namespace/name. */
  allocations: Map<string, string[]>;
  /** Services whose `status.loadBalancer.ingress` must change. */
  changes: StatusChange[];
  problems: AllocationProblem[];
}

interface Pool {
  config: LoadBalancerPool;
  prefixes: IpPrefix[];
}

interface Candidate {
  service: Service;
  key: string;
  namespace: string;
  name: string;
  families: IpFamily[];
  /** Families it must get all of, or nothing new. */
  allOrNothing: boolean;
  /** Requested addresses by family; undefined: no request. A request that is not valid is a problem. */
  requested: Map<IpFamily, IpAddress> | undefined;
  /** Addresses its status lists now (canonical), in order. */
  current: string[];
  pools: Pool[];
}

export function serviceKey(service: Service): string {
  return `${service.metadata?.namespace ?? ''}/${service.metadata?.name ?? ''}`;
}

/** Whether podroute allocates for this Service. */
export function isOurLoadBalancer(service: Service): boolean {
  const cls = service.spec?.loadBalancerClass;
  return service.spec?.type === 'LoadBalancer' && (cls === undefined || cls === LOAD_BALANCER_CLASS);
}

function statusAddresses(service: Service): string[] {
  const out: string[] = [];
  for (const ingress of service.status?.loadBalancer?.ingress ?? []) {
    const address = ingress.ip === undefined ? undefined : parseIpAddress(ingress.ip);
    if (address !== undefined) out.push(address.text);
  }
  return out;
}

function familyOfWord(word: string): IpFamily | undefined {
  return word === 'IPv4' ? 'ipv4' : word === 'IPv6' ? 'ipv6' : undefined;
}

function admits(pool: Pool, service: Service): boolean {
  const namespaces = pool.config.namespaces;
  if (namespaces !== undefined && !namespaces.includes(service.metadata?.namespace ?? '')) return false;
  return selectorMatches(pool.config.serviceSelector, service.metadata?.labels ?? {});
}

function poolHolding(pools: readonly Pool[], address: IpAddress): Pool | undefined {
  return pools.find((pool) => pool.prefixes.some((p) => prefixContainsAddress(p, address)));
}

function toBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function fromBigInt(value: bigint, family: IpFamily): IpAddress {
  const bytes = new Uint8Array(addressBits(family) / 8);
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return { family, bytes, text: formatIpBytes(bytes) };
}

/** The addresses of a prefix that are handed out: first and last as numbers. */
function usableRange(prefix: IpPrefix): { first: bigint; last: bigint } {
  const bits = addressBits(prefix.family);
  const base = toBigInt(prefix.bytes);
  const last = base + (1n << BigInt(bits - prefix.length)) - 1n;
  if (prefix.family === 'ipv4' && prefix.length <= 30) return { first: base + 1n, last: last - 1n };
  if (prefix.family === 'ipv6' && prefix.length <= 126) return { first: base + 1n, last };
  return { first: base, last };
}

function isUsable(prefix: IpPrefix, address: IpAddress): boolean {
  const { first, last } = usableRange(prefix);
  const value = toBigInt(address.bytes);
  return value >= first && value <= last;
}

/** The lowest free usable address of a pool in one family. */
function lowestFree(pool: Pool, family: IpFamily, taken: ReadonlySet<string>): IpAddress | undefined {
  for (const prefix of pool.prefixes) {
    if (prefix.family !== family) continue;
    const { first, last } = usableRange(prefix);
    // Taken addresses are few next to a pool: the walk ends after at most that many steps past the first free one.
    for (let value = first; value <= last; value++) {
      const address = fromBigInt(value, family);
      if (!taken.has(address.text)) return address;
    }
  }
  return undefined;
}

function byAge(a: Service, b: Service): number {
  const ta = a.metadata?.creationTimestamp ?? '';
  const tb = b.metadata?.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = serviceKey(a);
  const kb = serviceKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export function planAllocations(services: readonly Service[], poolConfigs: readonly LoadBalancerPool[]): AllocationPlan {
  const pools: Pool[] = poolConfigs.map((config) => ({
    config,
    prefixes: config.cidrs.map((c) => parseIpPrefix(c)).filter((p): p is IpPrefix => p !== undefined),
  }));
  const problems: AllocationProblem[] = [];
  const changes: StatusChange[] = [];
  const allocations = new Map<string, string[]>();
  const taken = new Set<string>();
  const problem = (c: { key: string }, reason: AllocationProblemReason, message: string): void => {
    problems.push({ service: c.key, reason, message });
  };

  // A former LoadBalancer of ours gives its pool addresses back.
  for (const service of services) {
    if (service.spec?.type === 'LoadBalancer') continue;
    const held = statusAddresses(service);
    const ours = held.filter((ip) => {
      const address = parseIpAddress(ip);
      return address !== undefined && poolHolding(pools, address) !== undefined;
    });
    if (ours.length > 0) {
      changes.push({ namespace: service.metadata?.namespace ?? '', name: service.metadata?.name ?? '', ips: held.filter((ip) => !ours.includes(ip)) });
    }
  }

  const candidates: Candidate[] = [...services]
    .filter(isOurLoadBalancer)
    .sort(byAge)
    .map((service) => {
      const policy = service.spec?.ipFamilyPolicy ?? 'SingleStack';
      const declared = (service.spec?.ipFamilies ?? ['IPv4']).map(familyOfWord).filter((f): f is IpFamily => f !== undefined);
      const families = policy === 'SingleStack' ? declared.slice(0, 1) : declared;
      return {
        service,
        key: serviceKey(service),
        namespace: service.metadata?.namespace ?? '',
        name: service.metadata?.name ?? '',
        families: families.length === 0 ? ['ipv4'] : families,
        allOrNothing: policy === 'RequireDualStack',
        requested: undefined,
        current: statusAddresses(service),
        pools: pools.filter((pool) => admits(pool, service)),
      };
    });

  // Requests, read once: a malformed one is reported and the Service keeps what it has.
  const invalidRequest = new Set<string>();
  for (const c of candidates) {
    const annotation = c.service.metadata?.annotations?.[REQUESTED_IPS_ANNOTATION];
    const words = annotation !== undefined ? annotation.split(',').map((w) => w.trim()).filter((w) => w !== '') : c.service.spec?.loadBalancerIP ? [c.service.spec.loadBalancerIP] : [];
    if (words.length === 0) continue;
    const requested = new Map<IpFamily, IpAddress>();
    for (const word of words) {
      const address = parseIpAddress(word);
      if (address === undefined) {
        problem(c, 'InvalidAddressRequest', `${JSON.stringify(word)} is not an IP address`);
        invalidRequest.add(c.key);
      } else if (requested.has(address.family)) {
        problem(c, 'InvalidAddressRequest', `more than one ${address.family === 'ipv4' ? 'IPv4' : 'IPv6'} address requested`);
        invalidRequest.add(c.key);
      } else if (!c.families.includes(address.family)) {
        problem(c, 'InvalidAddressRequest', `${address.text} is not of the Service's IP families (${c.families.join(', ')})`);
        invalidRequest.add(c.key);
      } else {
        requested.set(address.family, address);
      }
    }
    c.requested = requested;
  }

  // Pass 1, oldest first: what each Service holds stays its own while it is still valid for it. Another class's
  // LoadBalancers take part by age: what they hold is never handed out, but they take nothing from an older one of ours.
  const kept = new Map<string, Map<IpFamily, string>>();
  const byKey = new Map(candidates.map((c) => [c.key, c]));
  for (const service of [...services].filter((s) => s.spec?.type === 'LoadBalancer').sort(byAge)) {
    const c = byKey.get(serviceKey(service));
    if (c === undefined) {
      for (const ip of statusAddresses(service)) taken.add(ip);
      continue;
    }
    const mine = new Map<IpFamily, string>();
    for (const ip of c.current) {
      const address = parseIpAddress(ip);
      if (address === undefined || mine.has(address.family) || !c.families.includes(address.family)) continue;
      // A request replaces what the Service holds in its family (unless the request is bad: then nothing changes).
      const request = c.requested?.get(address.family);
      const wanted = invalidRequest.has(c.key) || request === undefined || request.text === address.text;
      // An address no pool serving the Service holds any more is given back, and a new one is found.
      if (!wanted || poolHolding(c.pools, address) === undefined) continue;
      if (taken.has(address.text)) {
        problem(c, 'AddressInUse', `${address.text} is held by an older Service`);
        continue;
      }
      mine.set(address.family, address.text);
      taken.add(address.text);
    }
    kept.set(c.key, mine);
  }

  // Pass 2, oldest first: the missing families, from the request or the pools.
  for (const c of candidates) {
    const mine = kept.get(c.key) ?? new Map<IpFamily, string>();
    if (!invalidRequest.has(c.key)) {
      const added: string[] = [];
      let refused = false;
      for (const family of c.families) {
        if (mine.has(family)) continue;
        const request = c.requested?.get(family);
        let address: IpAddress | undefined;
        if (request !== undefined) {
          const pool = poolHolding(c.pools, request);
          if (pool === undefined || !pool.prefixes.some((p) => prefixContainsAddress(p, request) && isUsable(p, request))) {
            problem(c, 'AddressNotInPool', `${request.text} is in no pool that serves this Service`);
            refused = true;
            continue;
          }
          if (taken.has(request.text)) {
            problem(c, 'AddressInUse', `${request.text} is already in use`);
            refused = true;
            continue;
          }
          address = request;
        } else {
          const assigning = c.pools.filter((pool) => pool.config.autoAssign && pool.prefixes.some((p) => p.family === family));
          for (const pool of assigning) {
            address = lowestFree(pool, family, taken);
            if (address !== undefined) break;
          }
          if (address === undefined) {
            const word = family === 'ipv4' ? 'IPv4' : 'IPv6';
            if (assigning.length === 0) {
              // PreferDualStack takes what the pools have: a missing second family is no problem.
              if (c.allOrNothing || family === c.families[0]) problem(c, 'NoPool', `no pool assigns ${word} addresses to this Service`);
              refused ||= c.allOrNothing || family === c.families[0];
            } else {
              problem(c, 'PoolExhausted', `every ${word} address of ${assigning.map((p) => p.config.name).join(', ')} is in use`);
              refused = true;
            }
            continue;
          }
        }
        mine.set(family, address.text);
        taken.add(address.text);
        added.push(address.text);
      }
      if (refused && c.allOrNothing) {
        for (const ip of added) {
          taken.delete(ip);
          for (const [family, held] of mine) if (held === ip) mine.delete(family);
        }
      }
    }
    const ips = c.families.flatMap((family) => {
      const ip = mine.get(family);
      return ip === undefined ? [] : [ip];
    });
    allocations.set(c.key, ips);
    if (!sameList(ips, c.current)) changes.push({ namespace: c.namespace, name: c.name, ips });
  }
  return { allocations, changes, problems };
}
