// The BFD sessions of one node over real sockets (RFC 5881, single hop): one receiving socket per family on UDP port
// 3784, and per session a sending socket bound to a source port in 49152..65535 that sends with TTL 255. The state
// machines (session.ts) do the protocol; this file owns the sockets and the one timer that drives them all.
//
// Node's dgram cannot read the TTL a packet arrived with, so the RFC 5881 check "received TTL is 255" is not made
// here; a packet must come from the session's peer address and match its discriminators.
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { randomInt } from 'node:crypto';
import type { Logger } from '../observe/log.js';
import { canonicalAddressText, familyOf } from '../routes/ip-prefix.js';
import { BFD_CONTROL_PORT, BFD_SOURCE_PORT_MAX, BFD_SOURCE_PORT_MIN, BfdDiag, decodeBfdPacket, encodeBfdPacket, type BfdState } from './packet.js';
import { BfdSession, type BfdSessionSnapshot, type BfdStateChange, type BfdTimers } from './session.js';

/** One peer to run BFD with: who, from where, how fast. */
export interface BfdPeerSpec {
  peer: string;
  /** Source address; the kernel's choice (the one the BGP session uses too) when omitted. */
  localAddress?: string;
  timers: BfdTimers;
}

export interface BfdSessionStatus extends BfdSessionSnapshot {
  peer: string;
  /**
   * Left Up for a reason other than the peer saying AdminDown, and not Up again yet: the path may be broken. The
   * agent holds the BGP session down unless graceful restart covers what was a control-plane restart (bfd-peers.ts).
   */
  heldDown: boolean;
  stateChanges: number;
  upSinceMs: number | undefined;
  /** The last state change, with what the peer had last said then. */
  lastChange: (BfdStateChange & { remoteState: BfdState; remoteDiag: number; remoteControlPlaneIndependent: boolean }) | undefined;
}

export interface BfdSessionsOptions {
  logger?: Logger;
  /** Monotonic milliseconds; performance.now() when omitted. */
  now?: () => number;
  /** UDP port packets are received on and sent to (3784; tests use another one). */
  controlPort?: number;
  /** Addresses the receiving sockets bind (default: every address, both families; tests bind loopback ones). */
  listen?: { ipv4?: string; ipv6?: string };
}

interface Running {
  spec: BfdPeerSpec;
  session: BfdSession;
  socket: dgram.Socket;
  heldDown: boolean;
  stateChanges: number;
  upSinceMs: number | undefined;
  lastChange: BfdSessionStatus['lastChange'];
}

/** Emits 'change' (status of the session that changed) whenever a session changes state. */
export class BfdSessions extends EventEmitter {
  private readonly logger: Logger | undefined;
  private readonly now: () => number;
  private readonly controlPort: number;
  private readonly listen: { ipv4?: string; ipv6?: string };
  private readonly sessions = new Map<string, Running>();
  private readonly byDiscriminator = new Map<number, Running>();
  private receivers: dgram.Socket[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly counters = { received: 0, discarded: 0, sent: 0, sendErrors: 0 };

  constructor(options: BfdSessionsOptions = {}) {
    super();
    this.logger = options.logger;
    this.now = options.now ?? (() => performance.now());
    this.controlPort = options.controlPort ?? BFD_CONTROL_PORT;
    this.listen = options.listen ?? { ipv4: '0.0.0.0', ipv6: '::' };
  }

  /** Binds the receiving sockets (both families); fails when the port is taken. */
  async start(): Promise<void> {
    const { ipv4, ipv6 } = this.listen;
    this.receivers = await Promise.all([
      ...(ipv4 === undefined ? [] : [bindSocket(dgram.createSocket({ type: 'udp4' }), { port: this.controlPort, address: ipv4 })]),
      ...(ipv6 === undefined ? [] : [bindSocket(dgram.createSocket({ type: 'udp6', ipv6Only: true }), { port: this.controlPort, address: ipv6 })]),
    ]);
    for (const r of this.receivers) r.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.address));
  }

  /** The sessions to run: new peers start Down, removed ones are closed, changed timers run a poll. */
  async setPeers(specs: readonly BfdPeerSpec[]): Promise<void> {
    const wanted = new Map(specs.map((s) => [canonicalAddressText(s.peer) ?? s.peer, { ...s, peer: canonicalAddressText(s.peer) ?? s.peer }]));
    for (const [peer, running] of this.sessions) {
      const spec = wanted.get(peer);
      if (spec === undefined || spec.localAddress !== running.spec.localAddress) this.remove(peer);
    }
    for (const [peer, spec] of wanted) {
      const running = this.sessions.get(peer);
      if (running === undefined) await this.add(spec);
      else if (JSON.stringify(running.spec.timers) !== JSON.stringify(spec.timers)) {
        running.spec = spec;
        running.session.setTimers(spec.timers, this.now());
      }
    }
    this.schedule();
  }

  status(): BfdSessionStatus[] {
    return [...this.sessions.values()].map((r) => statusOf(r)).sort((a, b) => a.peer.localeCompare(b.peer));
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    for (const peer of [...this.sessions.keys()]) this.remove(peer);
    for (const r of this.receivers) r.close();
    this.receivers = [];
  }

  // --------------------------------------------------------------------------------------------------------

  private async add(spec: BfdPeerSpec): Promise<void> {
    let discriminator: number;
    do discriminator = randomInt(1, 0xffffffff);
    while (this.byDiscriminator.has(discriminator));
    const socket = await bindSourceSocket(familyOf(spec.peer) === 'ipv6' ? 'udp6' : 'udp4', spec.localAddress);
    socket.on('error', (err) => this.logger?.warn('BFD socket error', { peer: spec.peer, error: err.message }));
    const running: Running = {
      spec,
      session: new BfdSession(discriminator, spec.timers, this.now()),
      socket,
      heldDown: false,
      stateChanges: 0,
      upSinceMs: undefined,
      lastChange: undefined,
    };
    this.sessions.set(spec.peer, running);
    this.byDiscriminator.set(discriminator, running);
    this.logger?.info('BFD session added', { peer: spec.peer, localAddress: spec.localAddress, timers: spec.timers });
  }

  /** RFC 5880 6.8.16: the peer is told AdminDown (so it does not take the path as failed) before the socket closes. */
  private remove(peer: string): void {
    const r = this.sessions.get(peer);
    if (r === undefined) return;
    this.sessions.delete(peer);
    this.byDiscriminator.delete(r.session.localDiscriminator);
    r.session.setAdminDown(this.now());
    const farewell = [r.session.currentPacket(), r.session.currentPacket()];
    let pending = farewell.length;
    if (pending === 0) r.socket.close();
    for (const p of farewell) {
      r.socket.send(encodeBfdPacket(p), this.controlPort, peer, () => {
        if (--pending === 0) r.socket.close();
      });
    }
    this.logger?.info('BFD session removed', { peer });
  }

  private onMessage(msg: Buffer, from: string): void {
    this.counters.received++;
    const decoded = decodeBfdPacket(msg);
    const source = canonicalAddressText(from.replace(/^::ffff:/, '')) ?? from;
    if (!decoded.ok) {
      this.counters.discarded++;
      this.logger?.debug('BFD packet discarded', { from: source, reason: decoded.reason });
      return;
    }
    const p = decoded.packet;
    // 6.8.6: your-discriminator selects the session; while it is 0, the peer's address does (single hop).
    const running = p.yourDiscriminator !== 0 ? this.byDiscriminator.get(p.yourDiscriminator) : this.sessions.get(source);
    if (running === undefined || running.spec.peer !== source) {
      this.counters.discarded++;
      return;
    }
    const out = running.session.receive(p, this.now());
    this.handle(running, out.change);
    for (const packet of out.send) this.send(running, encodeBfdPacket(packet));
    this.schedule();
  }

  private tick(): void {
    this.timer = undefined;
    if (this.closed) return;
    const now = this.now();
    for (const running of this.sessions.values()) {
      if (running.session.nextDeadline() > now) continue;
      const out = running.session.advance(now);
      this.handle(running, out.change);
      for (const packet of out.send) this.send(running, encodeBfdPacket(packet));
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    let next = Number.POSITIVE_INFINITY;
    for (const r of this.sessions.values()) next = Math.min(next, r.session.nextDeadline());
    if (next === Number.POSITIVE_INFINITY) return;
    this.timer = setTimeout(() => this.tick(), Math.max(0, next - this.now()));
  }

  private handle(running: Running, change: BfdStateChange | undefined): void {
    if (change === undefined) return;
    running.stateChanges++;
    const snapshot = running.session.snapshot();
    const { remoteState, remoteDiag, remoteControlPlaneIndependent } = snapshot;
    running.lastChange = { ...change, remoteState, remoteDiag, remoteControlPlaneIndependent };
    if (change.to === 'Up') {
      running.heldDown = false;
      running.upSinceMs = change.atMs;
    } else if (change.from === 'Up') {
      running.heldDown = pathMayBeBroken(change, snapshot);
      running.upSinceMs = undefined;
    }
    const log = change.to === 'Up' ? this.logger?.info.bind(this.logger) : this.logger?.warn.bind(this.logger);
    log?.('BFD session state changed', { peer: running.spec.peer, from: change.from, to: change.to, diag: change.diag, remoteDiag, heldDown: running.heldDown });
    this.emit('change', statusOf(running));
  }

  private send(running: Running, bytes: Buffer): void {
    running.socket.send(bytes, this.controlPort, running.spec.peer, (err) => {
      if (err) this.counters.sendErrors++;
      else this.counters.sent++;
    });
  }
}

/**
 * Whether a session that left Up says the path may be broken. Not when the peer turned BFD off (AdminDown, RFC 5882
 * 3.2), nor when it told us Down over the path for no failure of its own: a session it just re-created (a restarted
 * bfdd, a client that registered again) starts Down with no diagnostic, and its packet just crossed the path. It
 * may when we stopped hearing the peer, or the peer says it stopped hearing us or its path is down.
 */
function pathMayBeBroken(change: BfdStateChange, snapshot: BfdSessionSnapshot): boolean {
  if (change.to === 'AdminDown' || snapshot.remoteState === 'AdminDown') return false;
  if (change.diag !== BfdDiag.neighborSignaledDown) return true;
  const notAFailure: number[] = [BfdDiag.none, BfdDiag.neighborSignaledDown, BfdDiag.administrativelyDown];
  return !notAFailure.includes(snapshot.remoteDiag);
}

function statusOf(r: Running): BfdSessionStatus {
  return { peer: r.spec.peer, ...r.session.snapshot(), heldDown: r.heldDown, stateChanges: r.stateChanges, upSinceMs: r.upSinceMs, lastChange: r.lastChange };
}

function bindSocket(socket: dgram.Socket, options: dgram.BindOptions): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(options, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/** A sending socket on a free source port of the RFC 5881 range, TTL 255 (the peer drops anything less). */
async function bindSourceSocket(type: 'udp4' | 'udp6', localAddress: string | undefined): Promise<dgram.Socket> {
  for (let attempt = 0; ; attempt++) {
    const socket = dgram.createSocket({ type, ...(type === 'udp6' ? { ipv6Only: true } : {}) });
    const port = randomInt(BFD_SOURCE_PORT_MIN, BFD_SOURCE_PORT_MAX + 1);
    try {
      await bindSocket(socket, { port, ...(localAddress === undefined ? {} : { address: localAddress }) });
      socket.setTTL(255);
      return socket;
    } catch (err) {
      socket.close();
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt > 50) throw err;
    }
  }
}
