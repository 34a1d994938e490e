// The gobgpd calls the BGP reconciler and the learned table make, as an interface: GobgpClient implements it
// over gRPC, and an in-memory fake implements it in the unit tests, so the applier's undo, reconnect and
// stale-path handling can be tested without a gobgpd.
import type { DefinedSetSpec, GlobalPolicySpec, NormalizedPeerSpec, PolicySpec } from './gobgp-codec.js';
import type { DecodedPath } from './gobgp-wire.js';
import type { IpFamily } from '../routes/ip-prefix.js';
import type { BgpEvent, OriginatedPath, PeerSpec, PeerStatus } from './types.js';

export interface BgpGlobalConfig {
  asn: number;
  routerId: string;
  /** -1: no listener (no passive sessions). */
  listenPort: number;
  listenAddresses?: string[];
  /**
   * Keep every equally good path per prefix (gobgpd's global `use_multiple_paths`): needed for ECMP and for
   * `watchEvents({ allPaths: true })`. Default true.
   */
  useMultiplePaths?: boolean;
}

export interface BgpGlobalState {
  /** 0: BGP is not started. */
  asn: number;
  routerId: string;
  listenPort: number;
  listenAddresses: string[];
  useMultiplePaths: boolean;
}

export type TableKind = 'global' | 'adj-in' | 'adj-out' | 'local';

export interface ListPathsOptions {
  family: IpFamily;
  table: TableKind;
  /** Peer address, required for adj-in / adj-out. */
  neighbor?: string;
  /** Only this exact prefix. */
  prefix?: string;
  signal?: AbortSignal;
}

export interface WatchOptions {
  /** Peer state changes (starting with an INIT dump of every peer). */
  peers: boolean;
  /** Best-path changes of the global RIB. */
  bestPaths: boolean;
  /** Start with the current table: its end is marked by a `{ kind: 'table-synced' }` event. */
  init: boolean;
  /**
   * Deliver every equally good (multipath) path per prefix instead of the single best. Requires BGP started
   * with `useMultiplePaths` (the default of startBgp). Semantics of a `paths` event in both modes: for every
   * prefix present, its non-withdrawn paths REPLACE all earlier paths of that prefix; a prefix present with
   * withdrawals only has no path left.
   */
  allPaths?: boolean;
}

export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface SoftResetOptions {
  direction: 'in' | 'out' | 'both';
}

/** How the owner learns that gobgpd went away and came back (then it has lost all state). */
export interface GobgpConnectionEvents {
  on(event: 'connected', listener: (e: { reconnected: boolean }) => void): unknown;
  on(event: 'disconnected', listener: () => void): unknown;
  off(event: 'connected', listener: (e: { reconnected: boolean }) => void): unknown;
  off(event: 'disconnected', listener: () => void): unknown;
}

/**
 * gobgpd as the reconciler sees it. Failures reject with GobgpError (code NOT_FOUND for a missing object);
 * addPath returns the uuid gobgpd gave the path, which deletePath takes.
 */
export interface GobgpRouter extends GobgpConnectionEvents {
  /** Begins watching the connection: 'connected' ({ reconnected }) and 'disconnected' follow. */
  start(): void;
  getBgp(opts?: CallOptions): Promise<BgpGlobalState>;
  startBgp(global: BgpGlobalConfig, opts?: CallOptions): Promise<void>;
  stopBgp(opts?: CallOptions): Promise<void>;
  listPeerConfigs(opts?: CallOptions): Promise<{ spec: NormalizedPeerSpec; status: PeerStatus }[]>;
  /** localRestarting: see peerToApi (this gobgpd lost its state while the node kept forwarding). */
  addPeer(spec: PeerSpec, opts?: CallOptions, restart?: { localRestarting: boolean }): Promise<void>;
  updatePeer(spec: PeerSpec, opts?: CallOptions): Promise<void>;
  deletePeer(address: string, opts?: CallOptions): Promise<void>;
  /** Administratively down: the session ends with a Cease (no graceful restart) and stays down until enabled. */
  disablePeer(address: string, communication: string, opts?: CallOptions): Promise<void>;
  enablePeer(address: string, opts?: CallOptions): Promise<void>;
  softReset(address: string, options: SoftResetOptions, opts?: CallOptions): Promise<void>;
  addPath(path: OriginatedPath, opts?: CallOptions): Promise<string>;
  deletePath(family: IpFamily, uuid: string, opts?: CallOptions): Promise<void>;
  deletePathByPrefix(path: OriginatedPath, opts?: CallOptions): Promise<void>;
  listPaths(options: ListPathsOptions): AsyncIterable<DecodedPath>;
  addDefinedSet(set: DefinedSetSpec, opts?: CallOptions): Promise<void>;
  deleteDefinedSet(kind: DefinedSetSpec['kind'], name: string, opts?: CallOptions): Promise<void>;
  listDefinedSets(kind: DefinedSetSpec['kind'], opts?: CallOptions): Promise<DefinedSetSpec[]>;
  addPolicy(policy: PolicySpec, opts?: CallOptions): Promise<void>;
  deletePolicy(name: string, opts?: CallOptions): Promise<void>;
  listPolicies(opts?: CallOptions): Promise<PolicySpec[]>;
  setGlobalPolicy(spec: GlobalPolicySpec, opts?: CallOptions): Promise<void>;
  getGlobalPolicy(direction: 'import' | 'export', opts?: CallOptions): Promise<GlobalPolicySpec>;
  /** Peer and table events until the signal fires or the stream breaks (then it throws). */
  watchEvents(options: WatchOptions, signal: AbortSignal): AsyncIterable<BgpEvent>;
}
