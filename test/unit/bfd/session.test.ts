// The BFD session state machine (RFC 5880 6.8) driven by a simulated clock: two sessions over a simulated link, and
// single packets where a rule is about one packet.
import { expect } from 'chai';
import fc from 'fast-check';
import { BfdDiag, decodeBfdPacket, encodeBfdPacket, type BfdControlPacket } from '../../../src/bfd/packet.js';
import { BfdSession, SLOW_TX_US, type BfdStateChange, type BfdTimers } from '../../../src/bfd/session.js';

const FAST: BfdTimers = { desiredMinTxUs: 300_000, requiredMinRxUs: 300_000, detectMult: 3 };

/** Two sessions and a link between them; `drop` decides per packet (direction, time) whether the link loses it. */
class Link {
  now = 0;
  readonly changes: { side: 'a' | 'b'; change: BfdStateChange }[] = [];
  readonly sent = { a: 0, b: 0 };
  drop: (from: 'a' | 'b', atMs: number) => boolean = () => false;
  constructor(
    readonly a: BfdSession,
    readonly b: BfdSession,
  ) {}

  /** Runs the clock to `untilMs`, stepping from deadline to deadline; packets arrive after `delayMs`. */
  run(untilMs: number, delayMs = 1): void {
    const inFlight: { to: 'a' | 'b'; at: number; packet: BfdControlPacket }[] = [];
    const deliver = (from: 'a' | 'b', packets: BfdControlPacket[]): void => {
      for (const p of packets) {
        this.sent[from]++;
        // Through the wire format, as the transport does.
        const decoded = decodeBfdPacket(encodeBfdPacket(p));
        if (!decoded.ok) throw new Error(`session sent an invalid packet: ${decoded.reason}`);
        if (!this.drop(from, this.now)) inFlight.push({ to: from === 'a' ? 'b' : 'a', at: this.now + delayMs, packet: decoded.packet });
      }
    };
    const record = (side: 'a' | 'b', change: BfdStateChange | undefined): void => {
      if (change !== undefined) this.changes.push({ side, change });
    };
    while (this.now <= untilMs) {
      const next = Math.min(this.a.nextDeadline(), this.b.nextDeadline(), ...inFlight.map((f) => f.at));
      if (next > untilMs) break;
      this.now = Math.max(this.now, next);
      for (const side of ['a', 'b'] as const) {
        const s = this[side];
        if (s.nextDeadline() <= this.now) {
          const out = s.advance(this.now);
          record(side, out.change);
          deliver(side, out.send);
        }
      }
      for (const f of inFlight.filter((x) => x.at <= this.now)) {
        inFlight.splice(inFlight.indexOf(f), 1);
        const out = this[f.to].receive(f.packet, this.now);
        record(f.to, out.change);
        deliver(f.to, out.send);
      }
    }
    this.now = untilMs;
  }
}

function pair(timersA = FAST, timersB = FAST, seed = 1): Link {
  let x = seed;
  const random = (): number => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return new Link(new BfdSession(0x11, timersA, 0, random), new BfdSession(0x22, timersB, 0, random));
}

function packet(over: Partial<BfdControlPacket>): BfdControlPacket {
  return { diag: 0, state: 'Down', poll: false, final: false, controlPlaneIndependent: false, demand: false, detectMult: 3, myDiscriminator: 0x99, yourDiscriminator: 0, desiredMinTxUs: 300_000, requiredMinRxUs: 300_000, requiredMinEchoRxUs: 0, ...over };
}

describe('BFD session state machine', () => {
  it('comes Up through the three-way handshake (Down -> Init -> Up) and learns the discriminators', () => {
    const link = pair();
    link.run(5_000);
    expect(link.a.state).to.equal('Up');
    expect(link.b.state).to.equal('Up');
    expect(link.a.snapshot().remoteDiscriminator).to.equal(0x22);
    expect(link.b.snapshot().remoteDiscriminator).to.equal(0x11);
    const pathOf = (side: 'a' | 'b'): string[] => link.changes.filter((c) => c.side === side).map((c) => c.change.to);
    // A side that hears Down goes Init; one that hears Init goes straight Up (both start at once here: both Init).
    for (const side of ['a', 'b'] as const) expect([['Init', 'Up'], ['Up']]).to.deep.include(pathOf(side));
  });

  it('sends no faster than once a second until Up, then at the agreed interval after a poll sequence', () => {
    const s = new BfdSession(7, FAST, 0, () => 1);
    const first = s.advance(0).send[0]!;
    expect(first.desiredMinTxUs).to.equal(SLOW_TX_US);
    expect(first.requiredMinRxUs).to.equal(300_000);
    expect(s.nextDeadline()).to.equal(1_000);
    s.receive(packet({ state: 'Init', yourDiscriminator: 7 }), 10);
    expect(s.state).to.equal('Up');
    expect(s.snapshot().pollInProgress).to.equal(true);
    const polled = s.advance(s.nextDeadline()).send[0]!;
    expect(polled.poll).to.equal(true);
    expect(polled.desiredMinTxUs).to.equal(300_000);
    s.receive(packet({ state: 'Up', yourDiscriminator: 7, final: true }), 400);
    expect(s.snapshot().pollInProgress).to.equal(false);
    expect(s.advance(s.nextDeadline()).send[0]!.poll).to.equal(false);
    expect(s.snapshot().txIntervalMs).to.equal(300);
  });

  it('remembers the C bit of the peer\'s last packet (its BFD independent of its control plane) and sends it clear', () => {
    const s = new BfdSession(7, FAST, 0);
    expect(s.snapshot().remoteControlPlaneIndependent).to.equal(false);
    s.receive(packet({ state: 'Init', yourDiscriminator: 7, controlPlaneIndependent: true }), 0);
    expect(s.snapshot().remoteControlPlaneIndependent).to.equal(true);
    expect(s.advance(s.nextDeadline()).send[0]!.controlPlaneIndependent).to.equal(false);
    s.receive(packet({ state: 'Up', yourDiscriminator: 7 }), 10);
    expect(s.snapshot().remoteControlPlaneIndependent).to.equal(false);
  });

  it('sends sooner at once when the peer lowers its RequiredMinRx (its poll after Up), not after the slow interval', () => {
    const s = new BfdSession(7, FAST, 0, () => 1);
    // The peer comes Up while still asking for the slow rate, as FRR's bfdd does until its own poll.
    s.receive(packet({ state: 'Init', yourDiscriminator: 7, requiredMinRxUs: SLOW_TX_US }), 0);
    expect(s.state).to.equal('Up');
    s.advance(s.nextDeadline());
    expect(s.nextDeadline()).to.be.at.least(900);
    const out = s.receive(packet({ state: 'Up', yourDiscriminator: 7, poll: true, requiredMinRxUs: 300_000 }), 50);
    expect(out.send[0]).to.include({ final: true });
    expect(s.nextDeadline()).to.be.at.most(50 + 300);
  });

  it('answers a Poll with a Final at once, whatever the transmit timer says', () => {
    const s = new BfdSession(7, FAST, 0);
    s.advance(0);
    const out = s.receive(packet({ state: 'Down', poll: true }), 5);
    expect(out.send).to.have.length(1);
    expect(out.send[0]).to.include({ final: true, poll: false, yourDiscriminator: 0x99, state: 'Init' });
  });

  it('respects the peer: sends no faster than its RequiredMinRx, and not at all when it is 0', () => {
    const s = new BfdSession(7, { ...FAST, desiredMinTxUs: 100_000 }, 0, () => 1);
    s.receive(packet({ state: 'Init', yourDiscriminator: 7, requiredMinRxUs: 2_000_000 }), 0);
    expect(s.snapshot().txIntervalMs).to.equal(2_000);
    s.receive(packet({ state: 'Up', yourDiscriminator: 7, requiredMinRxUs: 0 }), 10);
    expect(s.advance(s.nextDeadline()).send).to.deep.equal([]);
  });

  it('jitters every interval to 75-100 % (75-90 % with a multiplier of 1)', () => {
    for (const [mult, lo, hi] of [[3, 0.75, 1], [1, 0.75, 0.9]] as const) {
      for (const r of [0, 0.5, 0.999]) {
        const s = new BfdSession(7, { ...FAST, detectMult: mult }, 0, () => r);
        s.advance(0);
        const gap = s.nextDeadline();
        expect(gap).to.be.within(1_000 * lo, 1_000 * hi);
      }
    }
  });

  it('goes Down with diag 1 when the peer is silent for its multiplier times the agreed interval, and forgets its discriminator', () => {
    const link = pair();
    link.run(5_000);
    let cutAt = 0;
    link.drop = (from, at) => from === 'b' && at >= cutAt;
    cutAt = link.now;
    link.run(cutAt + 3_000);
    const down = link.changes.find((c) => c.side === 'a' && c.change.to === 'Down');
    expect(down?.change.diag).to.equal(BfdDiag.controlDetectionTimeExpired);
    // The last packet of b arrived at most one interval before the cut: detected within 3 x 300 ms of it.
    expect(down!.change.atMs - cutAt).to.be.within(900 - 300, 900 + 1);
    expect(link.a.snapshot().remoteDiscriminator).to.equal(0);
    // b hears a's Down and follows with diag 3 (neighbor signalled down).
    const bDown = link.changes.find((c) => c.side === 'b' && c.change.to === 'Down');
    expect(bDown?.change.diag).to.equal(BfdDiag.neighborSignaledDown);
  });

  it('detection time uses the peer multiplier and the slower of our RequiredMinRx and its DesiredMinTx', () => {
    const link = pair(FAST, { desiredMinTxUs: 500_000, requiredMinRxUs: 200_000, detectMult: 5 });
    link.run(10_000);
    expect(link.a.snapshot().detectionTimeMs).to.equal(5 * 500);
    expect(link.b.snapshot().detectionTimeMs).to.equal(3 * 300);
  });

  it('comes back Up after the path heals', () => {
    const link = pair();
    link.run(5_000);
    link.drop = (_from, at) => at > 5_000 && at < 8_000;
    link.run(15_000);
    const after = link.changes.filter((c) => c.side === 'a' && c.change.atMs > 5_000).map((c) => c.change.to);
    expect([['Down', 'Init', 'Up'], ['Down', 'Up']]).to.deep.include(after);
    expect(link.a.state).to.equal('Up');
    expect(link.b.state).to.equal('Up');
  });

  it('AdminDown: the peer goes Down with diag 3 and is not brought Up again; AdminUp restarts the handshake', () => {
    const link = pair();
    link.run(5_000);
    link.a.setAdminDown(link.now);
    link.run(8_000);
    expect(link.b.state).to.equal('Down');
    expect(link.b.snapshot().diag).to.equal(BfdDiag.neighborSignaledDown);
    expect(link.a.state).to.equal('AdminDown');
    expect(link.a.snapshot().diag).to.equal(BfdDiag.administrativelyDown);
    link.a.setAdminUp(link.now);
    link.run(14_000);
    expect([link.a.state, link.b.state]).to.deep.equal(['Up', 'Up']);
  });

  it('ignores a packet meant for another session (your discriminator) and a packet while AdminDown', () => {
    const s = new BfdSession(7, FAST, 0);
    expect(s.receive(packet({ state: 'Init', yourDiscriminator: 8 }), 0)).to.deep.equal({ send: [] });
    expect(s.state).to.equal('Down');
    s.setAdminDown(1);
    expect(s.receive(packet({ state: 'Init', yourDiscriminator: 7 }), 2).change).to.equal(undefined);
    expect(s.state).to.equal('AdminDown');
  });

  it('a timer change while Up runs a poll; a longer transmit interval takes effect only when the poll ends', () => {
    const s = new BfdSession(7, FAST, 0, () => 1);
    s.receive(packet({ state: 'Init', yourDiscriminator: 7 }), 0);
    s.receive(packet({ state: 'Up', yourDiscriminator: 7, final: true }), 1);
    expect(s.snapshot()).to.include({ txIntervalMs: 300, pollInProgress: false });
    s.setTimers({ ...FAST, desiredMinTxUs: 600_000, requiredMinRxUs: 100_000 }, 2);
    expect(s.snapshot()).to.include({ txIntervalMs: 300, pollInProgress: true });
    // The shorter receive interval is not used for detection until the peer confirmed.
    expect(s.snapshot().detectionTimeMs).to.equal(900);
    const p = s.advance(s.nextDeadline()).send[0]!;
    expect(p).to.include({ poll: true, desiredMinTxUs: 600_000, requiredMinRxUs: 100_000 });
    s.receive(packet({ state: 'Up', yourDiscriminator: 7, final: true, desiredMinTxUs: 100_000 }), 400);
    expect(s.snapshot()).to.include({ txIntervalMs: 600, pollInProgress: false, detectionTimeMs: 300 });
  });

  it('stays Up under any loss of fewer than multiplier-1 packets in a row, both ways (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), fc.array(fc.boolean(), { minLength: 50, maxLength: 50 }), (seed, pattern) => {
        const link = pair(FAST, FAST, seed);
        link.run(5_000);
        expect([link.a.state, link.b.state]).to.deep.equal(['Up', 'Up']);
        // Never two losses in a row from one side (detectMult 3 tolerates two).
        const lossy = pattern.map((lose, i) => lose && !pattern[i - 1]);
        let n = { a: 0, b: 0 };
        link.drop = (from) => lossy[n[from]++ % lossy.length] ?? false;
        link.run(20_000);
        n = { a: 0, b: 0 };
        expect(link.changes.filter((c) => c.change.atMs > 5_000)).to.deep.equal([]);
      }),
      { numRuns: 40 },
    );
  });

  it('a silent peer is always detected within multiplier x interval of its last packet (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 5_000, max: 9_000 }), fc.integer({ min: 50, max: 1_000 }), fc.integer({ min: 2, max: 5 }), (seed, cutAt, intervalMs, mult) => {
        const timers = { desiredMinTxUs: intervalMs * 1000, requiredMinRxUs: intervalMs * 1000, detectMult: mult };
        const link = pair(timers, timers, seed);
        let lastFromB = 0;
        link.drop = (from, at) => {
          if (from === 'b' && at < cutAt) lastFromB = at;
          return from === 'b' && at >= cutAt;
        };
        link.run(cutAt + (mult + 1) * intervalMs + 10);
        expect(link.a.state).to.equal('Down');
        const down = link.changes.find((c) => c.side === 'a' && c.change.to === 'Down' && c.change.atMs >= cutAt)!;
        expect(down.change.atMs - lastFromB).to.be.within(mult * intervalMs - 1, mult * intervalMs + 2);
      }),
      { numRuns: 60 },
    );
  });
});
