// The typed gRPC client for the gobgpd sidecar. It speaks podroute's vocabulary (types.ts, gobgp-codec.ts) and
// hides GoBGP's messages. Unary calls carry deadlines and an optional AbortSignal; server streams are async
// iterables; the channel is watched so that the owner learns when gobgpd went away and came back (it then has
// lost all state). The learned-path streams (WatchEvent, ListPath) are decoded by gobgp-wire.ts, not generically.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../observe/log.js';
import {
  API_FAMILY,
  GobgpError,
  definedSetFromApi,
  definedSetToApi,
  globalPolicyFromApi,
  gobgpErrorFromGrpc,
  invalid,
  originatedPathToApi,
  parsePrefix,
  peerSpecFromApi,
  peerStatusFromApi,
  peerToApi,
  policyFromApi,
  policyToApi,
  uuidFromHex,
  uuidToHex,
  checkName,
  type DefinedSetSpec,
  type GlobalPolicySpec,
  type NormalizedPeerSpec,
  type PolicySpec,
} from './gobgp-codec.js';
import { gobgpMethods, type GobgpMethod } from './gobgp-proto.js';
import type {
  BgpGlobalConfig,
  BgpGlobalState,
  CallOptions,
  GobgpRouter,
  ListPathsOptions,
  SoftResetOptions,
  TableKind,
  WatchOptions,
} from './gobgp-router.js';
import { decodeListPathResponse, decodeWatchEvent, type DecodedPath, type DecodedWatchEvent } from './gobgp-wire.js';
import type { IpFamily } from '../routes/ip-prefix.js';
import type { BgpEvent, OriginatedPath, PeerSpec, PeerStatus } from './types.js';

export { GobgpError } from './gobgp-codec.js';
export type {
  DefinedSetSpec,
  GlobalPolicySpec,
  GobgpErrorCode,
  MatchSetRef,
  NormalizedPeerSpec,
  PolicySpec,
  PrefixSetEntry,
  StatementSpec,
} from './gobgp-codec.js';
export type { DecodedPath } from './gobgp-wire.js';
export type {
  BgpGlobalConfig,
  BgpGlobalState,
  CallOptions,
  ListPathsOptions,
  SoftResetOptions,
  TableKind,
  WatchOptions,
} from './gobgp-router.js';

export const DEFAULT_GOBGP_TARGET = 'unix:///run/podroute/gobgp.sock';

export interface GobgpClientOptions {
  /** 'unix:///abs/path' (default unix:///run/podroute/gobgp.sock) or 'host:port' on loopback. */
  target?: string;
  /** Deadline of unary calls and list streams (default 10 s). */
  callTimeoutMs?: number;
  /** Reconnect back-off towards gobgpd (grpc-js channel back-off): initial and maximum delay. */
  reconnectBackoffMs?: { initial: number; max: number };
  logger?: Logger;
}

/** Names of the methods that change gobgpd (counted separately, e.g. to prove a no-op resync). */
const MUTATING = new Set([
  'StartBgp',
  'StopBgp',
  'AddPeer',
  'UpdatePeer',
  'DeletePeer',
  'ResetPeer',
  'AddPath',
  'DeletePath',
  'AddDefinedSet',
  'DeleteDefinedSet',
  'AddPolicy',
  'DeletePolicy',
  'SetPolicyAssignment',
]);

const TABLE_TYPES: Record<TableKind, string> = { global: 'GLOBAL', 'adj-in': 'ADJ_IN', 'adj-out': 'ADJ_OUT', local: 'LOCAL' };

/** Most messages pending in a watch before the gRPC stream is paused (back-pressure on gobgpd). */
const WATCH_HIGH_WATER = 4096;

export class GobgpClient extends EventEmitter implements GobgpRouter {
  readonly target: string;
  private readonly callTimeoutMs: number;
  private readonly backoff: { initial: number; max: number };
  private readonly logger: Logger | undefined;
  /** Made at the first call, not in the constructor: the agent's Kubernetes lists are in flight meanwhile. */
  private methods: Record<string, GobgpMethod> | undefined;
  private client: grpc.Client | undefined;
  private monitoring = false;
  private closed = false;
  private connected = false;
  private everConnected = false;
  private readonly callCounts = new Map<string, number>();

  constructor(options: GobgpClientOptions = {}) {
    super();
    this.target = options.target ?? DEFAULT_GOBGP_TARGET;
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.backoff = options.reconnectBackoffMs ?? { initial: 200, max: 2_000 };
    this.logger = options.logger;
  }

  /** Begins watching the connection: emits 'connected' ({ reconnected }) and 'disconnected'. */
  start(): void {
    if (this.closed) throw new GobgpError('UNAVAILABLE', 'client is closed');
    if (this.monitoring) return;
    this.monitoring = true;
    this.watchConnectivity();
  }

  close(): void {
    this.closed = true;
    this.monitoring = false;
    this.client?.close();
    this.client = undefined;
  }

  isConnected(): boolean {
    return this.connected;
  }

  /** Resolves once the channel is READY (or rejects when the signal fires). */
  async waitForConnected(signal?: AbortSignal): Promise<void> {
    if (this.connected) return;
    this.start();
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.off('connected', onConnected);
        reject(new GobgpError('ABORTED', 'aborted while waiting for gobgpd'));
      };
      const onConnected = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal?.aborted === true) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.once('connected', onConnected);
    });
  }

  /** Calls made so far per gRPC method, and the total of those that change gobgpd. */
  stats(): { calls: Record<string, number>; mutatingCalls: number } {
    const calls = Object.fromEntries(this.callCounts);
    let mutatingCalls = 0;
    for (const [m, n] of this.callCounts) if (MUTATING.has(m)) mutatingCalls += n;
    return { calls, mutatingCalls };
  }

  // ------------------------------------------------------------------------------------------------------
  // Global

  async getBgp(opts?: CallOptions): Promise<BgpGlobalState> {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary('GetBgp', {}, opts);
    const g = r?.global ?? {};
    return {
      asn: Number(g.asn ?? 0),
      routerId: String(g.router_id ?? ''),
      listenPort: Number(g.listen_port ?? 0),
      listenAddresses: Array.isArray(g.listen_addresses) ? g.listen_addresses.map(String) : [],
      useMultiplePaths: g.use_multiple_paths === true,
    };
  }

  /** StartBgp is not idempotent in gobgpd (a second call wipes the RIB): this refuses when BGP runs. */
  async startBgp(global: BgpGlobalConfig, opts?: CallOptions): Promise<void> {
    if (!Number.isInteger(global.asn) || global.asn <= 0 || global.asn > 0xffffffff) throw invalid('global.asn', 'must be 1..4294967295');
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(global.routerId)) throw invalid('global.routerId', `"${global.routerId}" is not a dotted quad`);
    if (!Number.isInteger(global.listenPort) || global.listenPort < -1 || global.listenPort > 65535 || global.listenPort === 0) {
      throw invalid('global.listenPort', 'must be -1 (no listener) or 1..65535');
    }
    const current = await this.getBgp(opts);
    if (current.asn !== 0) throw new GobgpError('ALREADY_EXISTS', `BGP already started (asn ${current.asn}); stopBgp first`, 'StartBgp');
    await this.unary(
      'StartBgp',
      {
        global: {
          asn: global.asn,
          router_id: global.routerId,
          listen_port: global.listenPort,
          listen_addresses: global.listenAddresses ?? [],
          use_multiple_paths: global.useMultiplePaths ?? true,
        },
      },
      opts,
    );
  }

  async stopBgp(opts?: CallOptions): Promise<void> {
    await this.unary('StopBgp', {}, opts);
  }

  // ------------------------------------------------------------------------------------------------------
  // Peers

  async listPeers(opts?: CallOptions): Promise<PeerStatus[]> {
    return (await this.listPeersRaw(opts)).map(peerStatusFromApi);
  }

  /** Peers with the configuration gobgpd holds (normalized PeerSpec, comparable to a desired spec). */
  async listPeerConfigs(opts?: CallOptions): Promise<{ spec: NormalizedPeerSpec; status: PeerStatus }[]> {
    return (await this.listPeersRaw(opts)).map((p) => ({ spec: peerSpecFromApi(p), status: peerStatusFromApi(p) }));
  }

  private async listPeersRaw(opts?: CallOptions): Promise<unknown[]> {
    const out: unknown[] = [];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    for await (const r of this.serverStream<any>('ListPeer', { address: '', enableAdvertised: true }, undefined, opts)) out.push(r?.peer);
    return out;
  }

  async addPeer(spec: PeerSpec, opts?: CallOptions, restart?: { localRestarting: boolean }): Promise<void> {
    await this.unary('AddPeer', { peer: peerToApi(spec, restart) }, opts);
  }

  /** Changes a peer's configuration. gobgpd bounces the session for any change (even timers). */
  async updatePeer(spec: PeerSpec, opts?: CallOptions): Promise<void> {
    await this.unary('UpdatePeer', { peer: peerToApi(spec), do_soft_reset_in: true }, opts);
  }

  async deletePeer(address: string, opts?: CallOptions): Promise<void> {
    if (typeof address !== 'string' || address === '') throw invalid('address', 'must not be empty');
    await this.unary('DeletePeer', { address }, opts);
  }

  async disablePeer(address: string, communication: string, opts?: CallOptions): Promise<void> {
    if (typeof address !== 'string' || address === '') throw invalid('address', 'must not be empty');
    await this.unary('DisablePeer', { address, communication }, opts);
  }

  async enablePeer(address: string, opts?: CallOptions): Promise<void> {
    if (typeof address !== 'string' || address === '') throw invalid('address', 'must not be empty');
    await this.unary('EnablePeer', { address }, opts);
  }

  /** Soft reset: re-applies policies without bouncing sessions. address 'all' = every peer. */
  async softReset(address: string, options: SoftResetOptions, opts?: CallOptions): Promise<void> {
    if (typeof address !== 'string' || address === '') throw invalid('address', "must be a peer address or 'all'");
    const direction = { in: 'IN', out: 'OUT', both: 'BOTH' }[options.direction];
    if (direction === undefined) throw invalid('direction', 'must be in|out|both');
    await this.unary('ResetPeer', { address, soft: true, direction }, opts);
  }

  // ------------------------------------------------------------------------------------------------------
  // Paths

  /** Originates a path in the global RIB; returns gobgpd's uuid for it (hex). Re-adding a prefix replaces it. */
  async addPath(path: OriginatedPath, opts?: CallOptions): Promise<string> {
    const { path: apiPath } = originatedPathToApi(path);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const r: any = await this.unary('AddPath', { table_type: 'GLOBAL', path: apiPath }, opts);
    const uuid = uuidToHex(r?.uuid);
    if (uuid === '') throw new GobgpError('GOBGP', `gobgp AddPath ${path.prefix}: no uuid in the answer`, 'AddPath');
    return uuid;
  }

  /**
   * Withdraws one of our paths by the uuid AddPath returned. An empty uuid is refused: gobgpd would delete
   * every local path.
   */
  async deletePath(family: IpFamily, uuid: string, opts?: CallOptions): Promise<void> {
    const id = uuidFromHex('uuid', uuid);
    if (API_FAMILY[family] === undefined) throw invalid('family', `"${String(family)}" is not ipv4|ipv6`);
    await this.unary('DeletePath', { table_type: 'GLOBAL', family: API_FAMILY[family], uuid: id }, opts);
  }

  /**
   * Withdraws our (locally originated) path for a prefix without its uuid, e.g. after the agent restarted and
   * no longer knows the uuids of paths it added before.
   */
  async deletePathByPrefix(path: OriginatedPath, opts?: CallOptions): Promise<void> {
    const { family, path: apiPath } = originatedPathToApi(path);
    await this.unary('DeletePath', { table_type: 'GLOBAL', family: API_FAMILY[family], path: apiPath }, opts);
  }

  async *listPaths(options: ListPathsOptions): AsyncIterable<DecodedPath> {
    const table = TABLE_TYPES[options.table];
    if (table === undefined) throw invalid('table', `"${String(options.table)}" is not global|adj-in|adj-out|local`);
    if (API_FAMILY[options.family] === undefined) throw invalid('family', `"${String(options.family)}" is not ipv4|ipv6`);
    if ((options.table === 'adj-in' || options.table === 'adj-out') && !options.neighbor) {
      throw invalid('neighbor', `required for table ${options.table}`);
    }
    const req = {
      table_type: table,
      name: options.neighbor ?? '',
      family: API_FAMILY[options.family],
      prefixes: options.prefix === undefined ? [] : [{ prefix: parsePrefix('prefix', options.prefix).cidr, type: 'EXACT' }],
    };
    for await (const paths of this.serverStream<DecodedPath[]>('ListPath', req, decodeListPathResponse, { signal: options.signal })) {
      for (const p of paths) yield p;
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Defined sets, policies, the global assignment

  /** Creates a defined set. gobgpd MERGES into an existing set of the same name: this refuses that instead. */
  async addDefinedSet(set: DefinedSetSpec, opts?: CallOptions): Promise<void> {
    const api = definedSetToApi(set);
    const existing = await this.listDefinedSets(set.kind, opts);
    if (existing.some((s) => s.name === set.name)) {
      throw new GobgpError('ALREADY_EXISTS', `defined set ${set.name} already exists`, 'AddDefinedSet');
    }
    await this.unary('AddDefinedSet', { defined_set: api }, opts);
  }

  /** Adds entries to a set (creating it if needed): gobgpd's own merge semantics. */
  async addDefinedSetEntries(set: DefinedSetSpec, opts?: CallOptions): Promise<void> {
    await this.unary('AddDefinedSet', { defined_set: definedSetToApi(set) }, opts);
  }

  /** Removes the given entries from a set (the set stays, possibly empty). */
  async deleteDefinedSetEntries(set: DefinedSetSpec, opts?: CallOptions): Promise<void> {
    await this.unary('DeleteDefinedSet', { defined_set: definedSetToApi(set), all: false }, opts);
  }

  /** Deletes a whole set; fails with IN_USE while a policy references it. */
  async deleteDefinedSet(kind: DefinedSetSpec['kind'], name: string, opts?: CallOptions): Promise<void> {
    checkName('name', name);
    await this.unary('DeleteDefinedSet', { defined_set: { defined_type: kind === 'prefix' ? 'PREFIX' : 'NEIGHBOR', name }, all: true }, opts);
  }

  async listDefinedSets(kind: DefinedSetSpec['kind'], opts?: CallOptions): Promise<DefinedSetSpec[]> {
    const out: DefinedSetSpec[] = [];
    const req = { defined_type: kind === 'prefix' ? 'PREFIX' : 'NEIGHBOR', name: '' };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    for await (const r of this.serverStream<any>('ListDefinedSet', req, undefined, opts)) {
      const s = definedSetFromApi(r?.defined_set);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  /**
   * Creates a policy. gobgpd APPENDS statements to an existing policy of the same name: this refuses that.
   * Every defined set it references must exist (and should not be empty: an empty set matches everything).
   */
  async addPolicy(policy: PolicySpec, opts?: CallOptions): Promise<void> {
    const api = policyToApi(policy);
    const existing = await this.listPolicies(opts);
    if (existing.some((p) => p.name === policy.name)) throw new GobgpError('ALREADY_EXISTS', `policy ${policy.name} already exists`, 'AddPolicy');
    await this.unary('AddPolicy', { policy: api, refer_existing_statements: false }, opts);
  }

  /**
   * Deletes a policy and its statements. Note: gobgpd lets a policy in use by the global assignment be
   * deleted, and the assignment keeps using the old copy until it is set again.
   */
  async deletePolicy(name: string, opts?: CallOptions): Promise<void> {
    checkName('name', name);
    await this.unary('DeletePolicy', { policy: { name }, all: true, preserve_statements: false }, opts);
  }

  async listPolicies(opts?: CallOptions): Promise<PolicySpec[]> {
    const out: PolicySpec[] = [];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    for await (const r of this.serverStream<any>('ListPolicy', { name: '' }, undefined, opts)) out.push(policyFromApi(r?.policy));
    return out;
  }

  /** Replaces the global import or export assignment (one call: the switch is atomic in gobgpd). */
  async setGlobalPolicy(spec: GlobalPolicySpec, opts?: CallOptions): Promise<void> {
    if (spec.direction !== 'import' && spec.direction !== 'export') throw invalid('direction', 'must be import|export');
    if (spec.defaultAction !== 'accept' && spec.defaultAction !== 'reject') throw invalid('defaultAction', 'must be accept|reject');
    spec.policies.forEach((p, i) => checkName(`policies[${i}]`, p));
    await this.unary(
      'SetPolicyAssignment',
      {
        assignment: {
          name: 'global',
          direction: spec.direction === 'import' ? 'IMPORT' : 'EXPORT',
          policies: spec.policies.map((name) => ({ name })),
          default_action: spec.defaultAction === 'accept' ? 'ACCEPT' : 'REJECT',
        },
      },
      opts,
    );
  }

  async getGlobalPolicy(direction: 'import' | 'export', opts?: CallOptions): Promise<GlobalPolicySpec> {
    const req = { name: 'global', direction: direction === 'import' ? 'IMPORT' : 'EXPORT' };
    let found: GlobalPolicySpec = { direction, policies: [], defaultAction: 'accept' };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    for await (const r of this.serverStream<any>('ListPolicyAssignment', req, undefined, opts)) found = globalPolicyFromApi(r?.assignment, direction);
    return found;
  }

  // ------------------------------------------------------------------------------------------------------
  // Events

  /**
   * Peer and table events until the signal fires (then the iterable just ends) or gobgpd goes away (then it
   * throws a GobgpError, usually UNAVAILABLE). Table changes that arrive together are merged into one `paths`
   * event with the same replace-per-prefix meaning (see WatchOptions.allPaths).
   */
  async *watchEvents(options: WatchOptions, signal: AbortSignal): AsyncIterable<BgpEvent> {
    if (!options.peers && !options.bestPaths) throw invalid('watch', 'nothing to watch: set peers and/or bestPaths');
    const waitingForInit = options.bestPaths && options.init;
    if (options.bestPaths && (options.init || options.allPaths === true)) {
      const g = await this.getBgp({ signal });
      if (g.asn === 0) throw new GobgpError('NOT_STARTED', 'BGP is not started in gobgpd: no table to watch', 'WatchEvent');
      if (options.allPaths === true && !g.useMultiplePaths) {
        throw invalid('allPaths', 'gobgpd runs without use_multiple_paths (startBgp with useMultiplePaths: true)');
      }
    }
    const req: Record<string, unknown> = {};
    if (options.peers) req.peer = {};
    if (options.bestPaths) req.table = { filters: [{ type: 'BEST', init: options.init }] };

    const method = this.method('WatchEvent');
    this.count('WatchEvent');
    const call = this.grpc().makeServerStreamRequest<object, DecodedWatchEvent | undefined>(
      method.path,
      method.requestSerialize as (v: object) => Buffer,
      (buf: Buffer) => decodeWatchEvent(buf),
      req,
      new grpc.Metadata(),
      {},
    );
    const queue: DecodedWatchEvent[] = [];
    let ended = false;
    let failure: GobgpError | undefined;
    let wake: (() => void) | undefined;
    const notify = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    // gobgpd 3.10 sends one path per message. Waking the reader per message made every path a batch of its own
    // through the learned table and selection (~2 KB of garbage each); woken once per turn of the event loop,
    // it takes every message grpc-js delivered from the same socket reads as one batch.
    let wakeQueued = false;
    const wakeOnNextTurn = (): void => {
      wakeQueued = false;
      notify();
    };
    call.on('data', (ev: DecodedWatchEvent | undefined) => {
      if (ev === undefined) return;
      queue.push(ev);
      if (queue.length >= WATCH_HIGH_WATER) call.pause();
      if (!wakeQueued) {
        wakeQueued = true;
        setImmediate(wakeOnNextTurn);
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (!signal.aborted) failure = gobgpErrorFromGrpc('WatchEvent', err.code, err.details || err.message);
      ended = true;
      notify();
    });
    call.on('end', () => {
      ended = true;
      notify();
    });
    const onAbort = (): void => {
      call.cancel();
      ended = true;
      notify();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    let initPending = waitingForInit;
    try {
      for (;;) {
        if (queue.length === 0) {
          if (signal.aborted) return;
          if (ended) {
            if (failure !== undefined) throw failure;
            throw new GobgpError('UNAVAILABLE', 'gobgpd ended the event stream', 'WatchEvent');
          }
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        const batch = queue.splice(0, queue.length);
        if (call.isPaused()) call.resume();
        // Merge consecutive table events: per prefix, a later event replaces an earlier one.
        let merged = new Map<string, DecodedPath[]>();
        let eventNo = 0;
        const seenIn = new Map<string, number>();
        const flush = function* (): Generator<BgpEvent> {
          if (merged.size === 0) return;
          const paths: DecodedPath[] = [];
          for (const group of merged.values()) for (const p of group) paths.push(p);
          merged = new Map();
          seenIn.clear();
          yield { kind: 'paths', paths };
        };
        for (const ev of batch) {
          if (ev.kind === 'peer') {
            yield* flush();
            if (ev.type === 'END_OF_INIT' || ev.address === '') continue;
            yield { kind: 'peer', address: ev.address, state: ev.state, asn: ev.asn };
            continue;
          }
          eventNo++;
          for (const p of ev.paths) {
            if (seenIn.get(p.prefix) !== eventNo) {
              seenIn.set(p.prefix, eventNo);
              merged.set(p.prefix, [p]);
            } else merged.get(p.prefix)!.push(p);
          }
          if (initPending) {
            // With init, the first table event is gobgpd's whole current table (one message).
            initPending = false;
            yield* flush();
            yield { kind: 'table-synced' };
          }
        }
        yield* flush();
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (!ended) call.cancel();
    }
  }

  // ------------------------------------------------------------------------------------------------------
  // Plumbing

  private grpc(): grpc.Client {
    if (this.closed) throw new GobgpError('UNAVAILABLE', 'client is closed');
    if (this.client === undefined) {
      this.client = new grpc.Client(this.target, grpc.credentials.createInsecure(), {
        // The initial table of a watch arrives as one message (50k paths are several MB).
        'grpc.max_receive_message_length': -1,
        'grpc.initial_reconnect_backoff_ms': this.backoff.initial,
        'grpc.max_reconnect_backoff_ms': this.backoff.max,
        // Never go idle on our own: a READY after IDLE would look like a gobgpd restart.
        'grpc.client_idle_timeout_ms': 2 ** 31 - 1,
      });
    }
    return this.client;
  }

  private watchConnectivity(): void {
    if (!this.monitoring || this.closed) return;
    const channel = this.grpc().getChannel();
    const state = channel.getConnectivityState(true);
    this.onConnectivity(state);
    channel.watchConnectivityState(state, Date.now() + 60_000, () => this.watchConnectivity());
  }

  private onConnectivity(state: grpc.connectivityState): void {
    if (state === grpc.connectivityState.READY) {
      if (this.connected) return;
      this.connected = true;
      const reconnected = this.everConnected;
      this.everConnected = true;
      this.logger?.info('gobgpd connected', { target: this.target, reconnected });
      this.emit('connected', { reconnected });
    } else if (this.connected) {
      this.connected = false;
      this.logger?.warn('gobgpd connection lost', { target: this.target, state: grpc.connectivityState[state] });
      this.emit('disconnected');
    }
  }

  private method(name: string): GobgpMethod {
    this.methods ??= gobgpMethods();
    const m = this.methods[name];
    if (m === undefined) throw new GobgpError('INVALID', `no gRPC method ${name} in proto/gobgp.proto`);
    return m;
  }

  private count(name: string): void {
    this.callCounts.set(name, (this.callCounts.get(name) ?? 0) + 1);
  }

  private unary(name: string, req: object, opts?: CallOptions): Promise<unknown> {
    const m = this.method(name);
    const client = this.grpc();
    this.count(name);
    const signal = opts?.signal;
    if (signal?.aborted === true) return Promise.reject(new GobgpError('ABORTED', `gobgp ${name}: aborted`, name));
    return new Promise((resolve, reject) => {
      const call = client.makeUnaryRequest(
        m.path,
        m.requestSerialize as (v: object) => Buffer,
        m.responseDeserialize as (b: Buffer) => unknown,
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + (opts?.timeoutMs ?? this.callTimeoutMs) },
        (err: grpc.ServiceError | null, value?: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(gobgpErrorFromGrpc(name, err.code, err.details || err.message));
          else resolve(value);
        },
      );
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async *serverStream<T>(
    name: string,
    req: object,
    deserialize: ((b: Buffer) => T) | undefined,
    opts?: CallOptions,
  ): AsyncIterable<T> {
    const m = this.method(name);
    const client = this.grpc();
    this.count(name);
    const signal = opts?.signal;
    if (signal?.aborted === true) throw new GobgpError('ABORTED', `gobgp ${name}: aborted`, name);
    const call = client.makeServerStreamRequest<object, T>(
      m.path,
      m.requestSerialize as (v: object) => Buffer,
      deserialize ?? (m.responseDeserialize as (b: Buffer) => T),
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + (opts?.timeoutMs ?? this.callTimeoutMs) },
    );
    const onAbort = (): void => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const item of call as AsyncIterable<T>) yield item;
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (typeof e?.code === 'number') throw gobgpErrorFromGrpc(name, e.code, e.details || e.message);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }
}
