// Which BGP peers of this node get a BFD session, and with which timers: pure, from the configuration, the node's
// BGP peers (as planned in desired-state.ts) and the networks the node is attached to. BFD here is single hop
// (RFC 5881): a peer qualifies when it is directly connected, i.e. its address lies on one of the node's networks
// and it is no multihop session. bgp.bfd.enabled turns it on for all of those; bgp.peers[].bfd (or the same key in
// a podroute.io/peers annotation entry) turns it on or off for one peer and sets its own timers.
import type { AgentConfig, PeerBfdConfig } from '../config/agent-config.js';
import type { BfdPeerSpec } from '../bfd/sessions.js';
import type { PeerSpec } from '../bgp/types.js';
import type { NodeInfo } from '../kube/node-info.js';
import { canonicalAddressText, parseIpAddress, parseIpCidr, prefixContainsAddress } from '../routes/ip-prefix.js';

export interface BfdPeersInput {
  config: AgentConfig;
  self: NodeInfo;
  /** The node's BGP peers, as handed to the BGP reconciler. */
  peers: readonly PeerSpec[];
  /** The node's connected networks (CIDRs), from the kernel. */
  connectedNetworks: readonly string[];
}

export function planBfdPeers(input: BfdPeersInput): { peers: BfdPeerSpec[]; warnings: string[] } {
  const { config, self } = input;
  const overrides = new Map<string, PeerBfdConfig>();
  // Annotation entries after configured ones: the node's own word wins, as with the peers themselves.
  for (const p of [...config.bgp.peers, ...self.annotationPeers]) {
    const address = canonicalAddressText(p.address);
    if (address !== undefined && p.bfd !== undefined) overrides.set(address, p.bfd);
  }
  const networks = input.connectedNetworks.flatMap((c) => parseIpCidr(c) ?? []);
  const peers: BfdPeerSpec[] = [];
  const warnings: string[] = [];
  for (const peer of input.peers) {
    const address = canonicalAddressText(peer.address);
    if (address === undefined) continue;
    const override = overrides.get(address);
    const explicit = override?.enabled === true;
    if (!(override?.enabled ?? config.bgp.bfd.enabled)) continue;
    const parsed = parseIpAddress(address);
    const onLink = parsed !== undefined && networks.some((n) => prefixContainsAddress(n, parsed));
    if (peer.ebgpMultihopTtl !== undefined || !onLink) {
      // Only said when asked for by name: with bgp.bfd.enabled, peers in other racks are simply not BFD peers.
      if (explicit) warnings.push(`peer ${address}: no BFD session: ${peer.ebgpMultihopTtl !== undefined ? 'a multihop session' : 'not on any network of this node'} (BFD runs single hop only)`);
      continue;
    }
    const spec: BfdPeerSpec = {
      peer: address,
      timers: {
        desiredMinTxUs: (override?.minTxMs ?? config.bgp.bfd.minTxMs) * 1000,
        requiredMinRxUs: (override?.minRxMs ?? config.bgp.bfd.minRxMs) * 1000,
        detectMult: override?.multiplier ?? config.bgp.bfd.multiplier,
      },
    };
    if (peer.localAddress !== undefined) spec.localAddress = peer.localAddress;
    peers.push(spec);
  }
  return { peers: peers.sort((a, b) => a.peer.localeCompare(b.peer)), warnings };
}
