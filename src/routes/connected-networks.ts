// The node's connected networks (v4 and v6, global scope): a learned next hop must lie in one of them to be
// installed on-link. Read from the kernel of the current network namespace.
import { canonicalCIDR } from '../config/agent-config.js';
import { localRunner } from '../host/command.js';
import { parseIpPrefix, prefixContains } from './ip-prefix.js';

interface IpAddrJson {
  ifname?: string;
  flags?: string[];
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[];
}

export async function readConnectedNetworks(signal?: AbortSignal): Promise<string[]> {
  return parseConnectedNetworks(await localRunner().run(['ip', '-j', 'address', 'show'], signal === undefined ? {} : { signal }));
}

export function parseConnectedNetworks(ipJson: string): string[] {
  const links = JSON.parse(ipJson) as IpAddrJson[];
  const networks = new Set<string>();
  for (const link of links) {
    // A link without carrier (or set down) reaches nothing: a next hop behind it is not on-link, and a multipath
    // route with a leg through it would be refused by the kernel as a whole.
    if (link.flags !== undefined && !link.flags.includes('LOWER_UP')) continue;
    for (const info of link.addr_info ?? []) {
      if (info.scope !== 'global' || info.local === undefined || info.prefixlen === undefined) continue;
      // A /32 or /128 (a loopback service address) makes nothing on-link.
      if ((info.family === 'inet' && info.prefixlen >= 32) || (info.family === 'inet6' && info.prefixlen >= 128)) continue;
      const cidr = canonicalCIDR(`${info.local}/${info.prefixlen}`);
      if (cidr !== undefined) networks.add(cidr);
    }
  }
  return [...networks].sort();
}

/**
 * The connected networks a learned next hop may be in: not the pod bridge's (a network inside our own podCIDRs),
 * or a peer could make a local pod the gateway to other nodes' pods.
 */
export function onLinkNetworks(connected: readonly string[], ownPodCIDRs: readonly string[]): string[] {
  const own = ownPodCIDRs.map((c) => parseIpPrefix(c)).filter((p) => p !== undefined);
  return connected.filter((network) => {
    const prefix = parseIpPrefix(network);
    return prefix !== undefined && !own.some((o) => prefixContains(o, prefix));
  });
}
