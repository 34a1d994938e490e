// BFD Control packets (RFC 5880 section 4.1): encode, decode, and the reception checks of section 6.8.6 that
// need no session. Pure: bytes in, values out. Authentication is not supported, so a packet with the A bit set is
// refused (6.8.6: "If the A bit is set and no authentication is in use ... MUST be discarded").

export type BfdState = 'AdminDown' | 'Down' | 'Init' | 'Up';
const STATES: readonly BfdState[] = ['AdminDown', 'Down', 'Init', 'Up'];

/** Diagnostic codes (RFC 5880 section 4.1): why the session last left Up. */
export const BfdDiag = {
  none: 0,
  controlDetectionTimeExpired: 1,
  echoFailed: 2,
  neighborSignaledDown: 3,
  forwardingPlaneReset: 4,
  pathDown: 5,
  concatenatedPathDown: 6,
  administrativelyDown: 7,
  reverseConcatenatedPathDown: 8,
} as const;

export interface BfdControlPacket {
  diag: number;
  state: BfdState;
  poll: boolean;
  final: boolean;
  /** C: the sender's BFD does not share fate with its control plane. podroute's does (it runs beside gobgpd). */
  controlPlaneIndependent: boolean;
  demand: boolean;
  detectMult: number;
  myDiscriminator: number;
  yourDiscriminator: number;
  /** Microseconds, as on the wire. */
  desiredMinTxUs: number;
  requiredMinRxUs: number;
  requiredMinEchoRxUs: number;
}

export const BFD_VERSION = 1;
/** Length of a Control packet without an authentication section. */
export const BFD_PACKET_LENGTH = 24;
/** RFC 5881: single-hop Control packets go to this UDP port, from a source port in 49152..65535, with TTL 255. */
export const BFD_CONTROL_PORT = 3784;
export const BFD_SOURCE_PORT_MIN = 49152;
export const BFD_SOURCE_PORT_MAX = 65535;

export class BfdPacketError extends Error {
  readonly code = 'INVALID_BFD_PACKET';
  constructor(message: string) {
    super(message);
    this.name = 'BfdPacketError';
  }
}

const UINT32_MAX = 0xffffffff;

function checkUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new BfdPacketError(`${name} must be an integer 0..${max}, got ${value}`);
}

export function encodeBfdPacket(p: BfdControlPacket): Buffer {
  checkUint('diag', p.diag, 31);
  checkUint('detectMult', p.detectMult, 255);
  for (const key of ['myDiscriminator', 'yourDiscriminator', 'desiredMinTxUs', 'requiredMinRxUs', 'requiredMinEchoRxUs'] as const) checkUint(key, p[key], UINT32_MAX);
  const state = STATES.indexOf(p.state);
  if (state < 0) throw new BfdPacketError(`unknown state ${String(p.state)}`);
  if (p.poll && p.final) throw new BfdPacketError('poll and final are never set together (RFC 5880 6.8.7)');
  const b = Buffer.alloc(BFD_PACKET_LENGTH);
  b[0] = (BFD_VERSION << 5) | p.diag;
  b[1] = (state << 6) | (p.poll ? 0x20 : 0) | (p.final ? 0x10 : 0) | (p.controlPlaneIndependent ? 0x08 : 0) | (p.demand ? 0x02 : 0);
  b[2] = p.detectMult;
  b[3] = BFD_PACKET_LENGTH;
  b.writeUInt32BE(p.myDiscriminator, 4);
  b.writeUInt32BE(p.yourDiscriminator, 8);
  b.writeUInt32BE(p.desiredMinTxUs, 12);
  b.writeUInt32BE(p.requiredMinRxUs, 16);
  b.writeUInt32BE(p.requiredMinEchoRxUs, 20);
  return b;
}

export type DecodeResult = { ok: true; packet: BfdControlPacket } | { ok: false; reason: string };

/**
 * Decodes a datagram and applies the checks of RFC 5880 6.8.6 that need no session (version, length, detect
 * multiplier, multipoint bit, my discriminator, your discriminator against the state, authentication). A packet
 * that fails one is to be discarded; the reason is for counters and debug logs.
 */
export function decodeBfdPacket(data: Uint8Array): DecodeResult {
  if (data.length < BFD_PACKET_LENGTH) return { ok: false, reason: `short packet (${data.length} bytes)` };
  const version = data[0]! >> 5;
  if (version !== BFD_VERSION) return { ok: false, reason: `version ${version}` };
  const flags = data[1]!;
  const authenticated = (flags & 0x04) !== 0;
  const length = data[3]!;
  if (length < (authenticated ? BFD_PACKET_LENGTH + 2 : BFD_PACKET_LENGTH)) return { ok: false, reason: `length field ${length} too small` };
  if (length > data.length) return { ok: false, reason: `length field ${length} exceeds the ${data.length}-byte payload` };
  const detectMult = data[2]!;
  if (detectMult === 0) return { ok: false, reason: 'detect multiplier 0' };
  if ((flags & 0x01) !== 0) return { ok: false, reason: 'multipoint bit set' };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const myDiscriminator = view.getUint32(4);
  const yourDiscriminator = view.getUint32(8);
  if (myDiscriminator === 0) return { ok: false, reason: 'my discriminator 0' };
  const state = STATES[flags >> 6]!;
  if (yourDiscriminator === 0 && state !== 'Down' && state !== 'AdminDown') return { ok: false, reason: `your discriminator 0 in state ${state}` };
  if (authenticated) return { ok: false, reason: 'authenticated packet (no authentication configured)' };
  const poll = (flags & 0x20) !== 0;
  const final = (flags & 0x10) !== 0;
  if (poll && final) return { ok: false, reason: 'poll and final both set (RFC 5880 6.8.7)' };
  return {
    ok: true,
    packet: {
      diag: data[0]! & 0x1f,
      state,
      poll,
      final,
      controlPlaneIndependent: (flags & 0x08) !== 0,
      demand: (flags & 0x02) !== 0,
      detectMult,
      myDiscriminator,
      yourDiscriminator,
      desiredMinTxUs: view.getUint32(12),
      requiredMinRxUs: view.getUint32(16),
      requiredMinEchoRxUs: view.getUint32(20),
    },
  };
}
