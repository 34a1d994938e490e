// An in-memory gobgpd behind the GobgpRouter interface: map-backed state, the errors gobgpd gives (NOT_FOUND,
// ALREADY_EXISTS), failures injected per call, a watch stream the test feeds, and restart() for a gobgpd that
// went away and came back empty.
import { EventEmitter } from 'node:events';
import { GobgpError, normalizePeerSpec, peerToApi, type DefinedSetSpec, type GlobalPolicySpec, type NormalizedPeerSpec, type PolicySpec } from '../../../src/bgp/gobgp-codec.js';
import type { BgpGlobalConfig, BgpGlobalState, GobgpRouter, ListPathsOptions, WatchOptions } from '../../../src/bgp/gobgp-router.js';
import type { DecodedPath } from '../../../src/bgp/gobgp-wire.js';
import { familyOf, type IpFamily } from '../../../src/routes/ip-prefix.js';
import type { BgpEvent, OriginatedPath, PeerSpec, PeerStatus } from '../../../src/bgp/types.js';

type Method = keyof Omit<GobgpRouter, 'on' | 'off' | 'start'>;

const STOPPED: BgpGlobalState = { asn: 0, routerId: '', listenPort: 0, listenAddresses: [], useMultiplePaths: false };

class WatchStream {
  private readonly queue: BgpEvent[] = [];
  private wake: (() => void) | undefined;
  private end: { error?: Error } | undefined;

  push(event: BgpEvent): void {
    this.queue.push(event);
    this.notify();
  }

  close(error?: Error): void {
    this.end = error === undefined ? {} : { error };
    this.notify();
  }

  async *events(signal: AbortSignal): AsyncIterable<BgpEvent> {
    const onAbort = (): void => this.close(new GobgpError('ABORTED', 'watch aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const next = this.queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (this.end !== undefined) {
          if (this.end.error !== undefined) throw this.end.error;
          return;
        }
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

export class FakeGobgpRouter extends EventEmitter implements GobgpRouter {
  global: BgpGlobalState = { ...STOPPED };
  readonly peers = new Map<string, NormalizedPeerSpec>();
  /** Peers added as locally restarting, as the client sends it to gobgpd (peerToApi's local_restarting). */
  readonly restartingPeers = new Set<string>();
  /** Peers DisablePeer took down (AddPeer and UpdatePeer leave a peer enabled). */
  readonly disabledPeers = new Set<string>();
  /** Our paths by uuid. */
  readonly paths = new Map<string, OriginatedPath>();
  readonly definedSets = new Map<string, DefinedSetSpec>();
  readonly policies = new Map<string, PolicySpec>();
  readonly assignments: Record<'import' | 'export', GlobalPolicySpec> = {
    import: { direction: 'import', policies: [], defaultAction: 'accept' },
    export: { direction: 'export', policies: [], defaultAction: 'accept' },
  };
  /** Every call that changes gobgpd, with its main argument, in order. */
  readonly mutations: string[] = [];
  private readonly failures = new Map<Method, Error[]>();
  /** Watches opened so far. */
  watchesOpened = 0;
  private nextUuid = 1;
  private watches: WatchStream[] = [];
  private watchWaiters: (() => void)[] = [];

  /** The next `times` calls of `method` reject with `error` (after the calls before them succeeded). */
  failNext(method: Method, error: Error, times = 1): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), ...Array<Error>(times).fill(error)]);
  }

  /** gobgpd goes away and comes back without state: open watches break, the owner hears it. */
  restart(): void {
    this.wipe('gobgpd went away');
    this.emit('disconnected');
    this.emit('connected', { reconnected: true });
  }

  /** Sends an event to every open watch. */
  send(event: BgpEvent): void {
    for (const w of this.watches) w.push(event);
  }

  /** Resolves once `count` watches have been opened in all. */
  async watchOpened(count: number): Promise<void> {
    while (this.watchesOpened < count) await new Promise<void>((resolve) => this.watchWaiters.push(resolve));
  }

  start(): void {
    this.emit('connected', { reconnected: false });
  }

  async getBgp(): Promise<BgpGlobalState> {
    await this.call('getBgp');
    return { ...this.global };
  }

  async startBgp(global: BgpGlobalConfig): Promise<void> {
    await this.call('startBgp', String(global.asn));
    if (this.global.asn !== 0) throw new GobgpError('ALREADY_EXISTS', 'BGP already started');
    this.global = { asn: global.asn, routerId: global.routerId, listenPort: global.listenPort, listenAddresses: global.listenAddresses ?? [], useMultiplePaths: global.useMultiplePaths ?? true };
  }

  async stopBgp(): Promise<void> {
    await this.call('stopBgp');
    this.wipe('BGP stopped');
  }

  async listPeerConfigs(): Promise<{ spec: NormalizedPeerSpec; status: PeerStatus }[]> {
    await this.call('listPeerConfigs');
    return [...this.peers.values()].map((spec) => ({
      spec,
      status: { address: spec.address, asn: spec.asn, state: this.disabledPeers.has(spec.address) ? 'IDLE' : 'ESTABLISHED', adminState: this.disabledPeers.has(spec.address) ? 'DOWN' : 'UP', description: spec.description ?? '', received: 0, accepted: 0, advertised: 0 },
    }));
  }

  async addPeer(spec: PeerSpec, _opts?: unknown, restart?: { localRestarting: boolean }): Promise<void> {
    await this.call('addPeer', spec.address);
    if (this.peers.has(spec.address)) throw new GobgpError('ALREADY_EXISTS', `peer ${spec.address} exists`);
    this.peers.set(spec.address, normalizePeerSpec(spec));
    const api = peerToApi(spec, restart) as { graceful_restart: { local_restarting: boolean } };
    if (api.graceful_restart.local_restarting) this.restartingPeers.add(spec.address);
    this.disabledPeers.delete(spec.address);
  }

  async updatePeer(spec: PeerSpec): Promise<void> {
    await this.call('updatePeer', spec.address);
    if (!this.peers.has(spec.address)) throw new GobgpError('NOT_FOUND', `no peer ${spec.address}`);
    this.peers.set(spec.address, normalizePeerSpec(spec));
    this.disabledPeers.delete(spec.address);
  }

  async disablePeer(address: string): Promise<void> {
    await this.call('disablePeer', address);
    if (!this.peers.has(address)) throw new GobgpError('NOT_FOUND', `no peer ${address}`);
    this.disabledPeers.add(address);
  }

  async enablePeer(address: string): Promise<void> {
    await this.call('enablePeer', address);
    if (!this.peers.has(address)) throw new GobgpError('NOT_FOUND', `no peer ${address}`);
    this.disabledPeers.delete(address);
  }

  async deletePeer(address: string): Promise<void> {
    await this.call('deletePeer', address);
    if (!this.peers.delete(address)) throw new GobgpError('NOT_FOUND', `no peer ${address}`);
    this.disabledPeers.delete(address);
  }

  async softReset(address: string): Promise<void> {
    await this.call('softReset', address);
  }

  async addPath(path: OriginatedPath): Promise<string> {
    await this.call('addPath', path.prefix);
    // A path for a prefix we already originate replaces it (the same NLRI from the same source).
    for (const [uuid, p] of this.paths) if (p.prefix === path.prefix) this.paths.delete(uuid);
    const uuid = String(this.nextUuid++).padStart(32, '0');
    this.paths.set(uuid, { ...path });
    return uuid;
  }

  async deletePath(_family: IpFamily, uuid: string): Promise<void> {
    await this.call('deletePath', uuid);
    if (!this.paths.delete(uuid)) throw new GobgpError('NOT_FOUND', `no path ${uuid}`);
  }

  async deletePathByPrefix(path: OriginatedPath): Promise<void> {
    await this.call('deletePathByPrefix', path.prefix);
    for (const [uuid, p] of this.paths) if (p.prefix === path.prefix && p.nextHop === path.nextHop) this.paths.delete(uuid);
  }

  async *listPaths(options: ListPathsOptions): AsyncIterable<DecodedPath> {
    await this.call('listPaths');
    for (const [uuid, p] of this.paths) {
      const family = familyOf(p.prefix);
      // Communities and local preference come back as they were added (gobgpd keeps a local path's attributes).
      if (family === options.family) yield { ...p, family, asPath: [], isWithdraw: false, uuid };
    }
  }

  async addDefinedSet(set: DefinedSetSpec): Promise<void> {
    await this.call('addDefinedSet', set.name);
    this.definedSets.set(`${set.kind}/${set.name}`, structuredClone(set));
  }

  async deleteDefinedSet(kind: DefinedSetSpec['kind'], name: string): Promise<void> {
    await this.call('deleteDefinedSet', name);
    if (!this.definedSets.delete(`${kind}/${name}`)) throw new GobgpError('NOT_FOUND', `no ${kind} set ${name}`);
  }

  async listDefinedSets(kind: DefinedSetSpec['kind']): Promise<DefinedSetSpec[]> {
    await this.call('listDefinedSets');
    return [...this.definedSets.values()].filter((s) => s.kind === kind).map((s) => structuredClone(s));
  }

  async addPolicy(policy: PolicySpec): Promise<void> {
    await this.call('addPolicy', policy.name);
    if (this.policies.has(policy.name)) throw new GobgpError('ALREADY_EXISTS', `policy ${policy.name} exists`);
    this.policies.set(policy.name, structuredClone(policy));
  }

  async deletePolicy(name: string): Promise<void> {
    await this.call('deletePolicy', name);
    if (!this.policies.delete(name)) throw new GobgpError('NOT_FOUND', `no policy ${name}`);
  }

  async listPolicies(): Promise<PolicySpec[]> {
    await this.call('listPolicies');
    return [...this.policies.values()].map((p) => structuredClone(p));
  }

  async setGlobalPolicy(spec: GlobalPolicySpec): Promise<void> {
    await this.call('setGlobalPolicy', `${spec.direction} ${spec.policies.join(',')}`);
    this.assignments[spec.direction] = structuredClone(spec);
  }

  async getGlobalPolicy(direction: 'import' | 'export'): Promise<GlobalPolicySpec> {
    await this.call('getGlobalPolicy');
    return structuredClone(this.assignments[direction]);
  }

  async *watchEvents(_options: WatchOptions, signal: AbortSignal): AsyncIterable<BgpEvent> {
    if (this.global.asn === 0) throw new GobgpError('UNAVAILABLE', 'BGP not started');
    const stream = new WatchStream();
    this.watches.push(stream);
    this.watchesOpened++;
    for (const wake of this.watchWaiters.splice(0)) wake();
    yield* stream.events(signal);
  }

  /** Everything gobgpd holds is gone; open watches break with `why`. */
  private wipe(why: string): void {
    this.global = { ...STOPPED };
    this.peers.clear();
    this.restartingPeers.clear();
    this.disabledPeers.clear();
    this.paths.clear();
    this.definedSets.clear();
    this.policies.clear();
    this.assignments.import = { direction: 'import', policies: [], defaultAction: 'accept' };
    this.assignments.export = { direction: 'export', policies: [], defaultAction: 'accept' };
    for (const w of this.watches) w.close(new GobgpError('UNAVAILABLE', why));
    this.watches = [];
  }

  private async call(method: Method, what?: string): Promise<void> {
    await Promise.resolve();
    const error = this.failures.get(method)?.shift();
    if (error !== undefined) throw error;
    const reads = new Set<Method>(['getBgp', 'listPeerConfigs', 'listPaths', 'listDefinedSets', 'listPolicies', 'getGlobalPolicy']);
    if (!reads.has(method)) this.mutations.push(what === undefined ? method : `${method} ${what}`);
  }
}
