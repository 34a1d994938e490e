// BfdSessions over real UDP sockets on loopback: our side against a peer built from the same state machine but its
// own socket, so the test sees the datagrams as a router would (source port range, TTL option, discriminators).
import { expect } from 'chai';
import dgram from 'node:dgram';
import { decodeBfdPacket, encodeBfdPacket, BFD_SOURCE_PORT_MIN } from '../../../src/bfd/packet.js';
import { BfdSession } from '../../../src/bfd/session.js';
import { BfdSessions, type BfdSessionStatus } from '../../../src/bfd/sessions.js';
import { pollUntil } from '../../poll.js';

const PORT = 13784;
const FAST = { desiredMinTxUs: 50_000, requiredMinRxUs: 50_000, detectMult: 3 };

/** A BFD peer on 127.0.0.2: answers with its own BfdSession while `silent` is false; hears nothing while `deaf`. */
class LoopbackPeer {
  readonly socket = dgram.createSocket('udp4');
  session = new BfdSession(0xbeef, FAST, performance.now());
  readonly sources: number[] = [];
  silent = false;
  deaf = false;
  private timer: NodeJS.Timeout | undefined;
  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.bind(PORT, '127.0.0.2', resolve));
    this.socket.on('message', (msg, rinfo) => {
      this.sources.push(rinfo.port);
      const d = decodeBfdPacket(msg);
      if (!d.ok || this.silent || this.deaf) return;
      for (const p of this.session.receive(d.packet, performance.now()).send) this.socket.send(encodeBfdPacket(p), PORT, '127.0.0.1');
    });
    const tick = (): void => {
      const out = this.session.advance(performance.now());
      if (!this.silent) for (const p of out.send) this.socket.send(encodeBfdPacket(p), PORT, '127.0.0.1');
      this.timer = setTimeout(tick, Math.max(1, this.session.nextDeadline() - performance.now()));
    };
    tick();
  }
  close(): void {
    clearTimeout(this.timer);
    this.socket.close();
  }
}

describe('BFD sessions over UDP (loopback)', function () {
  this.timeout(15_000);
  let ours: BfdSessions;
  let peer: LoopbackPeer;
  const changes: BfdSessionStatus[] = [];

  beforeEach(async () => {
    changes.length = 0;
    ours = new BfdSessions({ controlPort: PORT, listen: { ipv4: '127.0.0.1' } });
    ours.on('change', (s: BfdSessionStatus) => changes.push(s));
    await ours.start();
    peer = new LoopbackPeer();
    await peer.start();
  });
  afterEach(() => {
    ours.close();
    peer.close();
  });

  it('comes Up with a peer, from a source port in 49152-65535; a silent peer is held down, and released when it is back', async () => {
    await ours.setPeers([{ peer: '127.0.0.2', timers: FAST }]);
    await pollUntil('session Up', () => (ours.status()[0]?.state === 'Up' && peer.session.state === 'Up' ? true : undefined), { timeoutMs: 8_000, intervalMs: 20 });
    expect(new Set(peer.sources).size, 'one source port per session').to.equal(1);
    expect(peer.sources[0]).to.be.at.least(BFD_SOURCE_PORT_MIN);
    expect(ours.status()[0]).to.include({ peer: '127.0.0.2', heldDown: false, remoteDiscriminator: 0xbeef });
    const silentAt = performance.now();
    peer.silent = true;
    // The wait's bound only: the time the hold-down took is checked against 400 ms below.
    await pollUntil('held down', () => (ours.status()[0]?.heldDown ? true : undefined), { timeoutMs: 5_000, intervalMs: 5 });
    // 3 x 50 ms after the peer's last packet (a jittered interval at most before it fell silent), plus timer slack.
    expect(performance.now() - silentAt).to.be.below(400);
    expect(changes.at(-1)).to.include({ state: 'Down', diag: 1, heldDown: true });
    peer.silent = false;
    await pollUntil('Up again', () => (ours.status()[0]?.state === 'Up' ? true : undefined), { timeoutMs: 8_000, intervalMs: 20 });
    expect(ours.status()[0]!.heldDown).to.equal(false);
  });

  it('a peer that says AdminDown is not held down (RFC 5882: BFD turned off is no path failure); a removed session tells the peer AdminDown', async () => {
    await ours.setPeers([{ peer: '127.0.0.2', timers: FAST }]);
    await pollUntil('session Up', () => (ours.status()[0]?.state === 'Up' ? true : undefined), { timeoutMs: 8_000, intervalMs: 20 });
    peer.session.setAdminDown(performance.now());
    await pollUntil('Down', () => (ours.status()[0]?.state === 'Down' ? true : undefined), { timeoutMs: 2_000, intervalMs: 5 });
    expect(ours.status()[0]).to.include({ heldDown: false, remoteState: 'AdminDown' });
    peer.session.setAdminUp(performance.now());
    await pollUntil('Up again', () => (ours.status()[0]?.state === 'Up' ? true : undefined), { timeoutMs: 8_000, intervalMs: 20 });
    await ours.setPeers([]);
    expect(ours.status()).to.deep.equal([]);
    await pollUntil('peer sees AdminDown', () => (peer.session.snapshot().remoteState === 'AdminDown' ? true : undefined), { timeoutMs: 2_000, intervalMs: 5 });
    expect(peer.session.state).to.equal('Down');
  });

  it('a peer that re-creates its session (a restarted bfdd) says Down over a working path: not held down', async () => {
    await ours.setPeers([{ peer: '127.0.0.2', timers: FAST }]);
    await pollUntil('session Up', () => (ours.status()[0]?.state === 'Up' ? true : undefined), { timeoutMs: 8_000, intervalMs: 20 });
    peer.session = new BfdSession(0xcafe, FAST, performance.now());
    await pollUntil('Down', () => (changes.some((c) => c.state === 'Down') ? true : undefined), { timeoutMs: 3_000, intervalMs: 5 });
    const down = changes.find((c) => c.state === 'Down')!;
    expect(down).to.include({ diag: 3, heldDown: false });
    expect(down.lastChange).to.include({ remoteDiag: 0 });
    await pollUntil('Up again', () => (ours.status()[0]?.state === 'Up' ? true : undefined), { timeoutMs: 8_000, intervalMs: 20 });
    expect(changes.every((c) => !c.heldDown)).to.equal(true);
  });

  it('a peer that stops hearing us (one way broken) says Down with its detection-time diagnostic: held down', async () => {
    await ours.setPeers([{ peer: '127.0.0.2', timers: FAST }]);
    await pollUntil('session Up', () => (ours.status()[0]?.state === 'Up' ? true : undefined), { timeoutMs: 8_000, intervalMs: 20 });
    peer.deaf = true;
    // The peer says Down in its next packet, sent at the 1 s rate of a session not Up (RFC 5880 6.8.3): up to ~1.2 s.
    await pollUntil('held down', () => (ours.status()[0]?.heldDown ? true : undefined), { timeoutMs: 5_000, intervalMs: 5 });
    expect(ours.status()[0]).to.include({ state: 'Down', diag: 3, remoteDiag: 1 });
  });

  it('discards packets from an address that is not the session peer', async () => {
    await ours.setPeers([{ peer: '127.0.0.3', timers: FAST }]);
    const before = ours.counters.discarded;
    await pollUntil('peer packets discarded', () => (ours.counters.discarded > before ? true : undefined), { timeoutMs: 3_000, intervalMs: 20 });
    expect(ours.status()[0]!.state).to.equal('Down');
  });
});
