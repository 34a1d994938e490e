// Network namespaces, veths, bridges, addresses and sysctls of the lab. The commands are planned from the layout
// (pure) and run with iproute2; links are created directly inside the lab namespaces, so the host namespace
// never sees any of them.
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { addressBits, familyOf, IP_FAMILIES } from '../routes/ip-prefix.js';
import type { LabLayout, MemberLayout, VethEnd, VethLayout } from './topology.js';

export class NetnsError extends Error {
  readonly code = 'NETNS_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'NetnsError';
  }
}

async function ip(args: string[], input?: string): Promise<string> {
  const result = await execa('ip', args, { reject: false, timeout: 30_000, ...(input === undefined ? {} : { input }) });
  if (result.exitCode !== 0) {
    const shown = input === undefined ? '' : `\n--- batch input ---\n${input}`;
    throw new NetnsError(`ip ${args.join(' ')} failed (exit ${result.exitCode}): ${result.stderr.trim()}${shown}`);
  }
  return result.stdout;
}

export async function listNetns(): Promise<string[]> {
  const out = await ip(['-j', 'netns', 'list']);
  if (out.trim() === '') return [];
  return (JSON.parse(out) as { name: string }[]).map((n) => n.name);
}

export async function addNetns(name: string): Promise<void> {
  await ip(['netns', 'add', name]);
}

/**
 * Deletes a namespace, its veths first: the kernel tears a deleted namespace down asynchronously, and under load
 * the far ends of its veths linger in the other namespaces for a while, so a member re-added at once could not
 * reuse their names ("File exists"). Deleting a veth deletes both ends at once.
 */
export async function deleteNetns(name: string): Promise<void> {
  const links = JSON.parse((await ip(['-n', name, '-j', 'link', 'show', 'type', 'veth'])) || '[]') as { ifname: string }[];
  for (const link of links) await ip(['-n', name, 'link', 'delete', link.ifname]).catch(() => undefined); // its peer may have taken it already
  await ip(['netns', 'delete', name]);
}

/** PIDs of the processes whose network namespace is `name`. */
export async function netnsPids(name: string): Promise<number[]> {
  const out = await ip(['netns', 'pids', name]);
  return out
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/**
 * `ip link add A netns X [mtu M] type veth peer name B netns Y [mtu M]`: both ends are born inside their
 * namespaces, with the link's MTU.
 */
export function vethCommand(veth: VethLayout, netnsOf: (member: string) => string): string[] {
  const mtu = (end: VethEnd): string[] => (end.interface.mtu === undefined ? [] : ['mtu', String(end.interface.mtu)]);
  return [
    'link',
    'add',
    veth.a.interface.name,
    'netns',
    netnsOf(veth.a.member),
    ...mtu(veth.a),
    'type',
    'veth',
    'peer',
    'name',
    veth.b.interface.name,
    'netns',
    netnsOf(veth.b.member),
    ...mtu(veth.b),
  ];
}

export async function addVeth(veth: VethLayout, netnsOf: (member: string) => string): Promise<void> {
  await ip(vethCommand(veth, netnsOf));
}

/** Sysctls of a member's namespace, applied before its interfaces come up. */
export function memberSysctls(member: MemberLayout): Record<string, string> {
  return {
    'net.ipv4.ip_forward': member.forwarding ? '1' : '0',
    'net.ipv6.conf.all.forwarding': member.forwarding ? '1' : '0',
    'net.ipv6.conf.default.forwarding': member.forwarding ? '1' : '0',
    // Lab links are born with their addresses: no duplicate address detection delay, no router advertisements.
    'net.ipv6.conf.all.accept_dad': '0',
    'net.ipv6.conf.default.accept_dad': '0',
    'net.ipv6.conf.all.accept_ra': '0',
    'net.ipv6.conf.default.accept_ra': '0',
    // ECMP across a fabric is asymmetric by nature.
    'net.ipv4.conf.all.rp_filter': '0',
    'net.ipv4.conf.default.rp_filter': '0',
    // A link taken down and up again keeps its IPv6 addresses (the default flushes them for good).
    'net.ipv6.conf.all.keep_addr_on_down': '1',
    'net.ipv6.conf.default.keep_addr_on_down': '1',
    // A next hop whose link lost its carrier (the other end died) is skipped at once, before BGP notices; without
    // this the kernel keeps hashing flows onto it until the session's hold time runs out.
    'net.ipv4.conf.all.ignore_routes_with_linkdown': '1',
    'net.ipv4.conf.default.ignore_routes_with_linkdown': '1',
    'net.ipv6.conf.all.ignore_routes_with_linkdown': '1',
    'net.ipv6.conf.default.ignore_routes_with_linkdown': '1',
    // Multipath hashing on ports too, so the flows of one pod pair spread over every ECMP leg.
    'net.ipv4.fib_multipath_hash_policy': '1',
    'net.ipv6.fib_multipath_hash_policy': '1',
  };
}

export async function setSysctls(netns: string, sysctls: Record<string, string>): Promise<void> {
  const assignments = Object.entries(sysctls).map(([k, v]) => `${k}=${v}`);
  const result = await execa('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', ...assignments], { reject: false, timeout: 30_000 });
  if (result.exitCode !== 0) throw new NetnsError(`sysctl in ${netns} failed: ${result.stderr.trim()}`);
}

/**
 * The `ip -batch` lines that configure one member once its veths exist: loopback, bridges, bridge ports,
 * addresses, links up, default routes.
 */
export function memberBatch(member: MemberLayout, layout: LabLayout): string[] {
  const lines: string[] = ['link set lo up'];
  for (const bridge of member.bridges) {
    // An explicit MTU stays put; without one a bridge follows its smallest port.
    const mtu = bridge.mtu === undefined ? '' : ` mtu ${bridge.mtu}`;
    lines.push(`link add ${bridge.name} address ${bridgeMac(member.name, bridge.name)}${mtu} type bridge`);
    for (const address of bridge.addresses) lines.push(addressLine(address, bridge.name));
    lines.push(`link set ${bridge.name} up`);
  }
  const ends = layout.veths.flatMap((v) => [v.a, v.b]).filter((e) => e.member === member.name);
  for (const end of ends) {
    if (end.interface.master !== undefined) lines.push(`link set ${end.interface.name} master ${end.interface.master}`);
    for (const address of end.interface.addresses) lines.push(addressLine(address, end.interface.name));
    lines.push(`link set ${end.interface.name} up`);
  }
  for (const family of IP_FAMILIES) {
    const gateways = member.defaultRoutes.filter((r) => r.family === family).map((r) => r.via);
    if (gateways.length === 0) continue;
    // Several gateways (a multi-homed node): one multipath route, not routes that replace each other.
    const via = gateways.length === 1 ? `via ${gateways[0]}` : gateways.map((g) => `nexthop via ${g}`).join(' ');
    lines.push(`route replace ${family === 'ipv6' ? '::/0' : '0.0.0.0/0'} ${via}`);
  }
  return lines;
}

/**
 * A bridge's own MAC, fixed. Without one, Linux gives a bridge the lowest MAC of its ports and changes it as ports
 * come and go (a node removed and added again): the nodes' neighbor entries for the ToR then name a MAC nobody
 * answers to. In the lab, a ToR restarted right after that had its IPv6 sessions back only after 21-39 s instead
 * of ~4 s, and IPv6 traffic through it was lost meanwhile. Locally administered, from the member and bridge names.
 */
export function bridgeMac(member: string, bridge: string): string {
  const bytes = createHash('sha256').update(`${member}/${bridge}`).digest().subarray(0, 5);
  return ['02', ...[...bytes].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** `ip -batch` lines that put one veth end into service (its bridge, its addresses, up): for a link added later. */
export function vethEndBatch(end: VethEnd): string[] {
  return [
    ...(end.interface.master === undefined ? [] : [`link set ${end.interface.name} master ${end.interface.master}`]),
    ...end.interface.addresses.map((address) => addressLine(address, end.interface.name)),
    `link set ${end.interface.name} up`,
  ];
}

function addressLine(address: string, device: string): string {
  return `address add ${address} dev ${device}${familyOf(address) === 'ipv6' ? ' nodad' : ''}`;
}

export async function runBatch(netns: string, lines: string[]): Promise<void> {
  await ip(['-n', netns, '-batch', '-'], lines.join('\n') + '\n');
}

/** Routed destinations of the host namespace (read only), to refuse lab networks that would shadow the host's own. */
export async function hostRoutes(): Promise<string[]> {
  const routes: string[] = [];
  for (const family of ['-4', '-6']) {
    const out = await ip(['-j', family, 'route', 'show', 'table', 'all']);
    for (const r of JSON.parse(out || '[]') as { dst?: string; type?: string }[]) {
      if (r.dst === undefined || r.dst === 'default') continue;
      if (r.type !== undefined && r.type !== 'unicast') continue;
      // Link-local routes exist on every link of every namespace and lead nowhere beyond it.
      if (/^fe[89ab][0-9a-f]:/i.test(r.dst)) continue;
      routes.push(r.dst.includes('/') ? r.dst : `${r.dst}/${addressBits(familyOf(r.dst))}`);
    }
  }
  return routes;
}
