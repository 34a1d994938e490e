// One BFD session (RFC 5880, asynchronous mode, no echo, no demand, no authentication) as a pure state machine:
// time comes in as an argument (milliseconds of any monotonic clock), packets come in decoded, and every call
// returns the packets to send now and the state change, if any. The caller (sessions.ts) owns the timers and the
// sockets; it calls advance() at nextDeadline() and receive() for each packet addressed to this session.
import { BfdDiag, type BfdControlPacket, type BfdState } from './packet.js';

export interface BfdTimers {
  /** bfd.DesiredMinTxInterval once Up (microseconds). */
  desiredMinTxUs: number;
  /** bfd.RequiredMinRxInterval (microseconds); never 0 here (0 would ask the peer to send nothing). */
  requiredMinRxUs: number;
  /** bfd.DetectMult. */
  detectMult: number;
}

export interface BfdStateChange {
  from: BfdState;
  to: BfdState;
  /** The local diagnostic after the change (why the session went down). */
  diag: number;
  atMs: number;
}

export interface BfdOutput {
  send: BfdControlPacket[];
  change?: BfdStateChange;
}

export interface BfdSessionSnapshot {
  state: BfdState;
  diag: number;
  remoteState: BfdState;
  localDiscriminator: number;
  remoteDiscriminator: number;
  /**
   * The C bit of the peer's last packet: its BFD does not share fate with its control plane, so a session down
   * means the path (or the whole router) failed, never a control-plane restart (RFC 5880 4.1, RFC 5882 4.3).
   */
  remoteControlPlaneIndependent: boolean;
  /** The diagnostic of the peer's last packet: why its side went down. */
  remoteDiag: number;
  /** The interval packets go out at (before jitter), ms. */
  txIntervalMs: number;
  /** How long without a packet before the session is declared down; undefined before the peer was heard. */
  detectionTimeMs: number | undefined;
  pollInProgress: boolean;
}

/** RFC 5880 6.8.3: while not Up, a session sends no faster than once a second. */
export const SLOW_TX_US = 1_000_000;

export class BfdSession {
  private stateValue: BfdState = 'Down';
  private diag: number = BfdDiag.none;
  private remoteState: BfdState = 'Down';
  private remoteDiscriminator = 0;
  /** RFC 5880 6.8.1: initialised to 1 (µs), so the first packets go out at our own rate. */
  private remoteMinRxUs = 1;
  private remoteDesiredMinTxUs = 0;
  private remoteDetectMult = 0;
  private remoteDemand = false;
  private remoteControlPlaneIndependent = false;
  private remoteDiag: number = BfdDiag.none;
  private timers: BfdTimers;
  /** The intervals in force; they lag the advertised ones while a Poll Sequence runs (6.8.3). */
  private txInUseUs: number;
  private rxInUseUs: number;
  private pollActive = false;
  private nextTxAtMs: number;
  private detectAtMs: number | undefined;
  private readonly random: () => number;

  constructor(
    readonly localDiscriminator: number,
    timers: BfdTimers,
    nowMs: number,
    random: () => number = Math.random,
  ) {
    if (!Number.isInteger(localDiscriminator) || localDiscriminator < 1 || localDiscriminator > 0xffffffff) {
      throw new RangeError(`local discriminator must be 1..2^32-1, got ${localDiscriminator}`);
    }
    checkTimers(timers);
    this.timers = { ...timers };
    this.random = random;
    this.txInUseUs = this.advertisedTxUs();
    this.rxInUseUs = timers.requiredMinRxUs;
    this.nextTxAtMs = nowMs; // the first packet goes out at once
  }

  get state(): BfdState {
    return this.stateValue;
  }

  snapshot(): BfdSessionSnapshot {
    return {
      state: this.stateValue,
      diag: this.diag,
      remoteState: this.remoteState,
      localDiscriminator: this.localDiscriminator,
      remoteDiscriminator: this.remoteDiscriminator,
      remoteControlPlaneIndependent: this.remoteControlPlaneIndependent,
      remoteDiag: this.remoteDiag,
      txIntervalMs: this.txIntervalUs() / 1000,
      detectionTimeMs: this.remoteDetectMult === 0 ? undefined : this.detectionTimeUs() / 1000,
      pollInProgress: this.pollActive,
    };
  }

  /** When advance() has something to do next (a packet to send or the detection time to check). */
  nextDeadline(): number {
    return this.detectAtMs === undefined ? this.nextTxAtMs : Math.min(this.nextTxAtMs, this.detectAtMs);
  }

  /** Detection time expiry and periodic transmission, whichever is due at nowMs. */
  advance(nowMs: number): BfdOutput {
    const out: BfdOutput = { send: [] };
    if (this.detectAtMs !== undefined && nowMs >= this.detectAtMs) {
      this.detectAtMs = undefined;
      // 6.8.1: bfd.RemoteDiscr is reset when the detection time passes; the peer is treated as silent from here on.
      this.remoteDiscriminator = 0;
      this.remoteState = 'Down';
      this.remoteDemand = false;
      if (this.stateValue === 'Init' || this.stateValue === 'Up') {
        const change = this.setState('Down', BfdDiag.controlDetectionTimeExpired, nowMs);
        if (change !== undefined) out.change = change;
      }
    }
    if (nowMs >= this.nextTxAtMs) {
      if (this.periodicAllowed()) out.send.push(this.packet({ poll: this.pollActive, final: false }));
      this.nextTxAtMs = nowMs + this.jitteredIntervalMs();
    }
    return out;
  }

  /**
   * A packet for this session (the caller matched it by your-discriminator, or by the peer's address while it is
   * 0), already through decodeBfdPacket's checks. RFC 5880 6.8.6 from "If the Your Discriminator field is nonzero".
   */
  receive(p: BfdControlPacket, nowMs: number): BfdOutput {
    const out: BfdOutput = { send: [] };
    if (p.yourDiscriminator !== 0 && p.yourDiscriminator !== this.localDiscriminator) return out;
    const txIntervalBeforeUs = this.txIntervalUs();
    this.remoteDiscriminator = p.myDiscriminator;
    this.remoteState = p.state;
    this.remoteDemand = p.demand;
    this.remoteControlPlaneIndependent = p.controlPlaneIndependent;
    this.remoteDiag = p.diag;
    this.remoteMinRxUs = p.requiredMinRxUs;
    this.remoteDesiredMinTxUs = p.desiredMinTxUs;
    this.remoteDetectMult = p.detectMult;
    if (p.final && this.pollActive) this.endPoll();
    // The peer lowered its RequiredMinRx (its own poll, once Up): its detection time shrinks now, so the next
    // packet must not wait out the slow interval it was scheduled at (FRR timed us out ~1 s after every Up).
    if (this.txIntervalUs() < txIntervalBeforeUs) this.nextTxAtMs = Math.min(this.nextTxAtMs, nowMs + this.jitteredIntervalMs());
    if (this.stateValue === 'AdminDown') return out;
    let change: BfdStateChange | undefined;
    if (p.state === 'AdminDown') {
      if (this.stateValue !== 'Down') change = this.setState('Down', BfdDiag.neighborSignaledDown, nowMs);
    } else if (this.stateValue === 'Down') {
      if (p.state === 'Down') change = this.setState('Init', BfdDiag.none, nowMs);
      else if (p.state === 'Init') change = this.setState('Up', BfdDiag.none, nowMs);
    } else if (this.stateValue === 'Init') {
      if (p.state === 'Init' || p.state === 'Up') change = this.setState('Up', BfdDiag.none, nowMs);
    } else if (p.state === 'Down') {
      change = this.setState('Down', BfdDiag.neighborSignaledDown, nowMs);
    }
    if (change !== undefined) out.change = change;
    this.detectAtMs = nowMs + this.detectionTimeUs() / 1000;
    // 6.8.7: a Poll is answered with a Final at once, whatever the transmit timer says.
    if (p.poll) out.send.push(this.packet({ poll: false, final: true }));
    return out;
  }

  /** The packet a periodic transmission would carry now (for the farewell AdminDown packets of a removed session). */
  currentPacket(): BfdControlPacket {
    return this.packet({ poll: false, final: false });
  }

  /** New intervals or multiplier (configuration changed): advertised at once, in force as 6.8.3 allows. */
  setTimers(timers: BfdTimers, nowMs: number): void {
    checkTimers(timers);
    this.timers = { ...timers };
    this.parametersChanged(nowMs);
  }

  /** Administratively down (6.8.16): the peer sees AdminDown and must not treat it as a failure. */
  setAdminDown(nowMs: number): BfdStateChange | undefined {
    return this.setState('AdminDown', BfdDiag.administrativelyDown, nowMs);
  }

  setAdminUp(nowMs: number): BfdStateChange | undefined {
    if (this.stateValue !== 'AdminDown') return undefined;
    return this.setState('Down', BfdDiag.none, nowMs);
  }

  // --------------------------------------------------------------------------------------------------------

  private setState(to: BfdState, diag: number, nowMs: number): BfdStateChange | undefined {
    const from = this.stateValue;
    if (from === to) return undefined;
    this.stateValue = to;
    this.diag = diag;
    this.parametersChanged(nowMs);
    return { from, to, diag, atMs: nowMs };
  }

  /** The slow rate while not Up, the configured one when Up (6.8.3). */
  private advertisedTxUs(): number {
    return this.stateValue === 'Up' ? this.timers.desiredMinTxUs : Math.max(this.timers.desiredMinTxUs, SLOW_TX_US);
  }

  /**
   * 6.8.3: a changed DesiredMinTx or RequiredMinRx starts a Poll Sequence while Up. Until it ends, a longer transmit
   * interval and a shorter receive interval do not take effect (the peer might not know yet). Outside Up the new
   * values apply at once and no poll is run (the peer is not relying on our timing then).
   */
  private parametersChanged(nowMs: number): void {
    const tx = this.advertisedTxUs();
    const rx = this.timers.requiredMinRxUs;
    if (this.stateValue !== 'Up') {
      this.pollActive = false;
      this.txInUseUs = tx;
      this.rxInUseUs = rx;
      return;
    }
    if (tx === this.txInUseUs && rx === this.rxInUseUs && !this.pollActive) return;
    if (tx < this.txInUseUs) this.txInUseUs = tx;
    if (rx > this.rxInUseUs) this.rxInUseUs = rx;
    this.pollActive = true;
    // A faster rate starts now rather than after the next slow packet.
    this.nextTxAtMs = Math.min(this.nextTxAtMs, nowMs + this.jitteredIntervalMs());
  }

  private endPoll(): void {
    this.pollActive = false;
    this.txInUseUs = this.advertisedTxUs();
    this.rxInUseUs = this.timers.requiredMinRxUs;
  }

  /** 6.8.7: no periodic packets when the peer asked for none (RequiredMinRx 0) or runs Demand mode with us Up. */
  private periodicAllowed(): boolean {
    if (this.remoteMinRxUs === 0) return false;
    if (this.remoteDemand && this.stateValue === 'Up' && this.remoteState === 'Up') return false;
    return true;
  }

  private txIntervalUs(): number {
    return Math.max(this.txInUseUs, this.remoteMinRxUs);
  }

  /** 6.8.7: 75-100 % of the interval (75-90 % with a multiplier of 1), so peers do not synchronise. */
  private jitteredIntervalMs(): number {
    const spread = this.timers.detectMult === 1 ? 0.15 : 0.25;
    return (this.txIntervalUs() / 1000) * (0.75 + spread * this.random());
  }

  /** 6.8.4: the peer's multiplier times the slower of what we can receive and what it sends. */
  private detectionTimeUs(): number {
    return this.remoteDetectMult * Math.max(this.rxInUseUs, this.remoteDesiredMinTxUs);
  }

  private packet(flags: { poll: boolean; final: boolean }): BfdControlPacket {
    return {
      diag: this.diag,
      state: this.stateValue,
      poll: flags.poll,
      final: flags.final,
      controlPlaneIndependent: false,
      demand: false,
      detectMult: this.timers.detectMult,
      myDiscriminator: this.localDiscriminator,
      yourDiscriminator: this.remoteDiscriminator,
      desiredMinTxUs: this.advertisedTxUs(),
      requiredMinRxUs: this.timers.requiredMinRxUs,
      requiredMinEchoRxUs: 0,
    };
  }
}

function checkTimers(t: BfdTimers): void {
  const ok = (v: number, min: number, max: number): boolean => Number.isInteger(v) && v >= min && v <= max;
  if (!ok(t.desiredMinTxUs, 1, 0xffffffff) || !ok(t.requiredMinRxUs, 1, 0xffffffff) || !ok(t.detectMult, 1, 255)) {
    throw new RangeError(`invalid BFD timers ${JSON.stringify(t)}`);
  }
}
