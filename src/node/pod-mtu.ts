// The pods' MTU: cni.mtu when configured, otherwise the MTU of the interface holding the node's InternalIP (as
// kube-router's --auto-mtu and Calico do): podroute routes pod traffic natively, without encapsulation, so a pod may
// send what the node's own fabric link carries, and no more. Choosing is pure; reading the links is one `ip -j`.
import { localRunner } from '../host/command.js';
import { canonicalAddressText } from '../routes/ip-prefix.js';

export interface LinkMtu {
  ifname: string;
  mtu: number;
  /** Canonical addresses on the link. */
  addresses: string[];
  /** A loopback (lo): its MTU (65536) says nothing about the fabric. */
  loopback?: boolean;
}

interface IpAddrJson {
  ifname?: string;
  mtu?: number;
  flags?: string[];
  addr_info?: { local?: string }[];
}

export function parseLinkMtus(ipJson: string): LinkMtu[] {
  const links = JSON.parse(ipJson) as IpAddrJson[];
  const out: LinkMtu[] = [];
  for (const link of links) {
    if (link.ifname === undefined || typeof link.mtu !== 'number') continue;
    const addresses = (link.addr_info ?? []).map((a) => (a.local === undefined ? undefined : canonicalAddressText(a.local))).filter((a) => a !== undefined);
    out.push({ ifname: link.ifname, mtu: link.mtu, addresses, ...(link.flags?.includes('LOOPBACK') === true ? { loopback: true } : {}) });
  }
  return out;
}

export async function readLinkMtus(signal?: AbortSignal): Promise<LinkMtu[]> {
  return parseLinkMtus(await localRunner().run(['ip', '-j', 'address', 'show'], signal === undefined ? {} : { signal }));
}

export type PodMtuChoice =
  | { source: 'config'; mtu: number }
  /** interfaces: the links holding the InternalIPs; the smallest MTU of them when they differ. */
  | { source: 'interface'; mtu: number; interfaces: string[] }
  /** No link holds an InternalIP: the bridge plugin's default (the bridge's own MTU) applies. */
  | { source: 'none'; problem: string };

/** The smallest MTU IPv6 allows (RFC 8200); the CNI bridge plugin takes anything from 68. */
const IPV6_MIN_MTU = 1280;

/**
 * cni.mtu wins. Otherwise the MTU of the link holding an InternalIP; with the IPv4 and IPv6 InternalIPs on links of
 * different MTUs the smaller (a pod has one MTU for both families). An MTU below 1280 on a node with IPv6 is still
 * taken (the fabric carries no more), with a problem reported.
 */
export function choosePodMtu(input: { configured?: number | undefined; internalIPs: readonly string[]; links: readonly LinkMtu[] }): PodMtuChoice & { warning?: string } {
  if (input.configured !== undefined) return { source: 'config', mtu: input.configured };
  const all = input.links.filter((l) => input.internalIPs.some((ip) => l.addresses.includes(ip)));
  const holding = all.filter((l) => l.loopback !== true);
  if (holding.length === 0 && all.length > 0) {
    return { source: 'none', problem: `the node's InternalIP is on a loopback interface (${all.map((l) => l.ifname).join(', ')}), whose MTU says nothing about the fabric: the pods get the bridge's default MTU; set cni.mtu` };
  }
  if (holding.length === 0) {
    return { source: 'none', problem: `no interface holds the node's InternalIP (${input.internalIPs.join(', ') || 'none'}): the pods get the bridge's default MTU; set cni.mtu` };
  }
  // 65535: the most the CNI bridge plugin takes.
  const mtu = Math.min(65535, ...holding.map((l) => l.mtu));
  const choice: PodMtuChoice & { warning?: string } = { source: 'interface', mtu, interfaces: holding.map((l) => l.ifname).sort() };
  if (mtu < IPV6_MIN_MTU && input.internalIPs.some((ip) => ip.includes(':'))) {
    choice.warning = `pod MTU ${mtu} (from ${choice.interfaces.join(', ')}) is below IPv6's minimum of ${IPV6_MIN_MTU}: IPv6 pods will not work`;
  }
  return choice;
}
