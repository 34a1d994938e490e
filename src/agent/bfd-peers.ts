// Which BGP peers of this node get a BFD session, and with which timers: pure, from the configuration, the node's
// BGP peers (as planned in desired-state.ts) and the networks the node is attached to. BFD here is single hop
// (RFC 5881): a peer qualifies when it is directly connected, i.e. its address lies on one of the node's networks
// and it is no multihop session. bgp.bfd.enabled turns it on for all of those; bgp.peers[].bfd (or the same key in
// a podroute.io/peers annotation entry) turns it on or off for one peer and sets its own timers. What a session
// down then means for BGP is planBfdHoldDown's.
import type { AgentConfig, PeerBfdConfig } from '../config/agent-config.js';
import type { BfdPeerSpec, BfdSessionStatus } from '../bfd/sessions.js';
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

/** How one BFD session down was judged: the atMs of its change, and whether the BGP session is held down for it. */
export interface BfdDownVerdict {
  atMs: number;
  holdDown: boolean;
}

export interface BfdHoldDownInput {
  /** The companion's sessions (heldDown there: left Up for something else than the peer's AdminDown). */
  sessions: readonly BfdSessionStatus[];
  /** Peers whose BGP session negotiates graceful restart. */
  gracefulRestartPeers: ReadonlySet<string>;
  /** Peers whose BGP session is Established now; undefined until asked (needsSessionStates says when). */
  establishedPeers: ReadonlySet<string> | undefined;
  /** The verdicts of earlier calls, per peer. */
  verdicts: ReadonlyMap<string, BfdDownVerdict>;
}

export interface BfdHoldDownPlan {
  heldDown: string[];
  verdicts: Map<string, BfdDownVerdict>;
  /** A new session down needs the BGP sessions' states: ask gobgpd and call again with establishedPeers. */
  needsSessionStates: boolean;
  /** Downs left to graceful restart, for the log. */
  leftToGracefulRestart: string[];
}

/**
 * Which peers BFD holds down. A session down is judged once, when it is first seen (a held-down peer's BGP session
 * is down because we hold it, so a later look would misjudge it): held down, unless the peer's BFD shares fate
 * with its control plane (C bit clear), the BGP session has graceful restart, and that session was already down.
 * That is a control-plane restart (a killed bgpd closes its TCP connections at once, long before BFD's detection
 * time): graceful restart keeps the routes (RFC 5882 4.3.2), where holding down would flush them. A silent path
 * failure leaves BGP Established until its hold time, so it is held down at BFD speed.
 */
export function planBfdHoldDown(input: BfdHoldDownInput): BfdHoldDownPlan {
  const verdicts = new Map<string, BfdDownVerdict>();
  const leftToGracefulRestart: string[] = [];
  let needsSessionStates = false;
  for (const s of input.sessions) {
    const atMs = s.lastChange?.atMs;
    if (!s.heldDown || atMs === undefined) continue;
    const earlier = input.verdicts.get(s.peer);
    if (earlier?.atMs === atMs) {
      verdicts.set(s.peer, earlier);
      continue;
    }
    const pathFailure = s.lastChange?.remoteControlPlaneIndependent === true || !input.gracefulRestartPeers.has(s.peer);
    if (pathFailure) verdicts.set(s.peer, { atMs, holdDown: true });
    else if (input.establishedPeers === undefined) needsSessionStates = true;
    else {
      const holdDown = input.establishedPeers.has(s.peer);
      verdicts.set(s.peer, { atMs, holdDown });
      if (!holdDown) leftToGracefulRestart.push(s.peer);
    }
  }
  const heldDown = [...verdicts].filter(([, v]) => v.holdDown).map(([peer]) => peer).sort();
  return { heldDown, verdicts, needsSessionStates, leftToGracefulRestart };
}
