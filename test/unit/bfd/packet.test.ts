// BFD Control packets: the bytes of RFC 5880 section 4.1 and the discard rules of section 6.8.6.
import { expect } from 'chai';
import fc from 'fast-check';
import { BFD_PACKET_LENGTH, BfdPacketError, decodeBfdPacket, encodeBfdPacket, type BfdControlPacket } from '../../../src/bfd/packet.js';

const UP: BfdControlPacket = {
  diag: 0,
  state: 'Up',
  poll: false,
  final: false,
  controlPlaneIndependent: false,
  demand: false,
  detectMult: 3,
  myDiscriminator: 0x01020304,
  yourDiscriminator: 0xa0b0c0d0,
  desiredMinTxUs: 300_000,
  requiredMinRxUs: 300_000,
  requiredMinEchoRxUs: 0,
};

function decodeOk(bytes: Uint8Array): BfdControlPacket {
  const r = decodeBfdPacket(bytes);
  if (!r.ok) expect.fail(`refused: ${r.reason}`);
  return r.packet;
}

function refusal(bytes: Uint8Array): string {
  const r = decodeBfdPacket(bytes);
  if (r.ok) expect.fail('accepted a packet that must be discarded');
  return r.reason;
}

const packetArb = fc
  .record({
    diag: fc.integer({ min: 0, max: 31 }),
    state: fc.constantFrom('AdminDown' as const, 'Down' as const, 'Init' as const, 'Up' as const),
    flags: fc.constantFrom('none', 'poll', 'final'),
    controlPlaneIndependent: fc.boolean(),
    demand: fc.boolean(),
    detectMult: fc.integer({ min: 1, max: 255 }),
    myDiscriminator: fc.integer({ min: 1, max: 0xffffffff }),
    yourDiscriminator: fc.integer({ min: 1, max: 0xffffffff }),
    desiredMinTxUs: fc.integer({ min: 0, max: 0xffffffff }),
    requiredMinRxUs: fc.integer({ min: 0, max: 0xffffffff }),
    requiredMinEchoRxUs: fc.integer({ min: 0, max: 0xffffffff }),
  })
  .map(({ flags, ...rest }): BfdControlPacket => ({ ...rest, poll: flags === 'poll', final: flags === 'final' }));

describe('BFD packet codec', () => {
  it('writes the fields where RFC 5880 4.1 puts them', () => {
    const bytes = encodeBfdPacket({ ...UP, diag: 3, poll: true, controlPlaneIndependent: true, demand: true });
    expect(bytes.length).to.equal(24);
    expect(bytes[0]).to.equal(0x20 | 3); // version 1, diag 3
    expect(bytes[1]).to.equal(0xc0 | 0x20 | 0x08 | 0x02); // Up, P, C, D
    expect(bytes[2]).to.equal(3);
    expect(bytes[3]).to.equal(24);
    expect(bytes.subarray(4, 12).toString('hex')).to.equal('01020304a0b0c0d0');
    expect(bytes.readUInt32BE(12)).to.equal(300_000);
    expect(bytes.readUInt32BE(16)).to.equal(300_000);
    expect(bytes.readUInt32BE(20)).to.equal(0);
  });

  it('decodes a Down packet as FRR bfdd sends it at slow start (bytes written out by hand: 1 s tx, 300 ms rx, x3)', () => {
    // version 1 diag 0, state Down, mult 3, len 24, my 0x2f5d6a1c, your 0, tx 1 s, rx 300 ms, echo 50 ms
    const bytes = Buffer.from('2040031800000000' + '00000000' + '000f4240' + '000493e0' + '0000c350', 'hex');
    bytes.writeUInt32BE(0x2f5d6a1c, 4);
    expect(decodeOk(bytes)).to.deep.equal({
      diag: 0,
      state: 'Down',
      poll: false,
      final: false,
      controlPlaneIndependent: false,
      demand: false,
      detectMult: 3,
      myDiscriminator: 0x2f5d6a1c,
      yourDiscriminator: 0,
      desiredMinTxUs: 1_000_000,
      requiredMinRxUs: 300_000,
      requiredMinEchoRxUs: 50_000,
    });
  });

  it('round-trips every valid packet (property)', () => {
    fc.assert(
      fc.property(packetArb, (p) => {
        expect(decodeOk(encodeBfdPacket(p))).to.deep.equal(p);
      }),
    );
  });

  it('ignores bytes after the length field (a padded datagram) and refuses a length beyond the datagram', () => {
    const padded = Buffer.concat([encodeBfdPacket(UP), Buffer.alloc(8)]);
    expect(decodeOk(padded)).to.deep.equal(UP);
    const long = encodeBfdPacket(UP);
    long[3] = 40;
    expect(refusal(long)).to.match(/exceeds/);
  });

  it('discards what 6.8.6 says to discard', () => {
    const bytes = (): Buffer => encodeBfdPacket(UP);
    const cases: [string, (b: Buffer) => void, RegExp][] = [
      ['version 0', (b) => (b[0] = b[0]! & 0x1f), /version 0/],
      ['version 2', (b) => (b[0] = (2 << 5) | (b[0]! & 0x1f)), /version 2/],
      ['length field below 24', (b) => (b[3] = 23), /too small/],
      ['detect multiplier 0', (b) => (b[2] = 0), /multiplier 0/],
      ['multipoint bit', (b) => (b[1] = b[1]! | 0x01), /multipoint/],
      ['my discriminator 0', (b) => b.writeUInt32BE(0, 4), /my discriminator 0/],
      ['your discriminator 0 while Up', (b) => b.writeUInt32BE(0, 8), /your discriminator 0 in state Up/],
      ['authentication bit without authentication configured', (b) => { b[1] = b[1]! | 0x04; b[3] = 26; }, /authenticated/],
      ['A bit with a length that cannot hold the auth section', (b) => (b[1] = b[1]! | 0x04), /too small/],
      ['poll and final together', (b) => (b[1] = b[1]! | 0x30), /poll and final/],
    ];
    for (const [name, mutate, reason] of cases) {
      const b = bytes();
      mutate(b);
      const padded = Buffer.concat([b, Buffer.alloc(4)]);
      expect(refusal(padded), name).to.match(reason);
    }
    expect(refusal(bytes().subarray(0, 23))).to.match(/short/);
  });

  it('accepts your discriminator 0 in Down and AdminDown (the peer has not heard us yet)', () => {
    for (const state of ['Down', 'AdminDown'] as const) {
      expect(decodeOk(encodeBfdPacket({ ...UP, state, yourDiscriminator: 0 })).state).to.equal(state);
    }
  });

  it('never throws on arbitrary bytes, and whatever it accepts re-encodes to the same first 24 bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 64 }), (bytes) => {
        const r = decodeBfdPacket(bytes);
        if (r.ok) expect(encodeBfdPacket(r.packet).subarray(4).equals(Buffer.from(bytes.subarray(4, BFD_PACKET_LENGTH)))).to.equal(true);
      }),
    );
  });

  it('refuses to encode values that do not fit their field', () => {
    expect(() => encodeBfdPacket({ ...UP, diag: 32 })).to.throw(BfdPacketError);
    expect(() => encodeBfdPacket({ ...UP, detectMult: 256 })).to.throw(BfdPacketError);
    expect(() => encodeBfdPacket({ ...UP, desiredMinTxUs: 2 ** 32 })).to.throw(BfdPacketError);
    expect(() => encodeBfdPacket({ ...UP, myDiscriminator: -1 })).to.throw(BfdPacketError);
    expect(() => encodeBfdPacket({ ...UP, poll: true, final: true })).to.throw(/never set together/);
  });
});
