// podroute's own vocabulary for BGP, independent of GoBGP's wire format. The GoBGP client translates to and
// from these; planners and the route selector only ever see these.

import type { IpFamily } from '../routes/ip-prefix.js';

export type PeerState = 'UNKNOWN' | 'IDLE' | 'CONNECT' | 'ACTIVE' | 'OPENSENT' | 'OPENCONFIRM' | 'ESTABLISHED';

/**
 * gobgpd's administrative state of a peer. PREFIX_LIMIT: the peer sent more prefixes than its maxPrefixes; gobgpd
 * sent it a Cease (maximum number of prefixes reached) and keeps the session down until the peer is re-enabled
 * or re-configured.
 */
export type PeerAdminState = 'UP' | 'DOWN' | 'PREFIX_LIMIT';

export interface GracefulRestartSpec {
  enabled: boolean;
  /** Seconds the peer keeps our routes after we went away. */
  restartTime: number;
}

/** A BGP neighbor as podroute wants it configured in gobgpd. */
export interface PeerSpec {
  address: string;
  asn: number;
  /** Remote TCP port; 179 when omitted. */
  port?: number;
  localAddress?: string;
  /** TCP MD5 secret, already read from its file or Secret. Never logged. */
  password?: string;
  ebgpMultihopTtl?: number;
  /**
   * GTSM (RFC 5082): the lowest IP TTL accepted from the peer; gobgpd then sends with TTL 255, so a directly
   * connected peer's packets arrive with 255 and spoofed ones from further away are dropped by the kernel. The peer
   * must do GTSM too. Omitted or 0: off. Never together with ebgpMultihopTtl.
   */
  ttlMin?: number;
  holdTime?: number;
  keepaliveInterval?: number;
  connectRetry?: number;
  gracefulRestart?: GracefulRestartSpec;
  /** Families to negotiate; both unicast families when omitted. */
  families?: IpFamily[];
  /** Free text kept with the peer in gobgpd, e.g. "node:worker-2" or "tor:tor1". */
  description?: string;
  /**
   * Most prefixes the peer may send per address family (counted in gobgpd's Adj-RIB-In, before the import
   * policy); one more and gobgpd ends the session with a Cease and keeps it down. 0 or omitted: no limit.
   */
  maxPrefixes?: number;
  /**
   * The peer is our route-reflector client, reflected to under this cluster ID (a dotted quad); a plain peer when
   * omitted. gobgpd resets the session to change it (see planRoleChanges in bgp-planner.ts).
   */
  routeReflectorClusterId?: string;
}

/** A node's place in the iBGP topology (bgp.mesh and the route-reflector label), as `podroute status` shows it. */
export type BgpRole =
  /** Full or same-ASN mesh (also route-reflector mode falling back for want of a reflector). */
  | { kind: 'mesh' }
  | { kind: 'reflector'; clusterId: string }
  | { kind: 'client' }
  /** bgp.mesh off: no node sessions, only configured and annotated peers. */
  | { kind: 'off' };

export interface PeerStatus {
  address: string;
  asn: number;
  state: PeerState;
  /** UP when omitted (a status made by hand). */
  adminState?: PeerAdminState;
  description: string;
  /** When the session last became Established; undefined when it is not. */
  establishedSince?: Date;
  received: number;
  accepted: number;
  advertised: number;
  /** We reflect routes to this peer (it is our route-reflector client); omitted otherwise. */
  routeReflectorClient?: boolean;
}

/**
 * What podroute attaches to a path it originates, besides the next hop (bgp.communities / bgp.localPreference, or
 * the node's annotations). Communities are canonical text (src/bgp/communities.ts): standard "hi:lo", large "a:b:c".
 */
export interface PathAttributes {
  /** Standard communities (RFC 1997); none when omitted or empty. */
  communities?: string[];
  /** Large communities (RFC 8092); none when omitted or empty. */
  largeCommunities?: string[];
  /** LOCAL_PREF; gobgpd sends it to iBGP peers only (and 100 when omitted). */
  localPref?: number;
}

/** A path podroute originates (its node's podCIDRs, its Service addresses). */
export interface OriginatedPath extends PathAttributes {
  prefix: string;
  nextHop: string;
}

/** A path gobgpd learned from a peer (or one of our own, with neighborIp undefined). */
export interface LearnedPath {
  prefix: string;
  family: IpFamily;
  nextHop: string;
  /** Address of the peer it came from; undefined for locally originated paths. */
  neighborIp?: string;
  /** AS path, nearest AS first, origin AS last; empty for iBGP-learned local routes. */
  asPath: number[];
  localPref?: number;
  med?: number;
  origin?: 'igp' | 'egp' | 'incomplete';
  /** Standard communities as "hi:lo", in the order received; omitted when the path has none. */
  communities?: string[];
  /** Large communities as "a:b:c", in the order received; omitted when the path has none. */
  largeCommunities?: string[];
  isWithdraw: boolean;
}

export type BgpEvent =
  | { kind: 'peer'; address: string; state: PeerState; asn: number }
  /** The initial table dump of a watch is complete: from here on, events are changes. */
  | { kind: 'table-synced' }
  | { kind: 'paths'; paths: LearnedPath[] };
