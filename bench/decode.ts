// The agent's hot path on route programming: decoding gobgpd 3.10's WatchEvent messages (one path each) with
// podroute's hand-written decoder, against generic decoding of the same messages (protobufjs with the options
// @grpc/proto-loader uses: what the client's other calls go through, src/bgp/gobgp-proto.ts).
import { gobgpMethods } from '../src/bgp/gobgp-proto.js';
import { decodeWatchEvent } from '../src/bgp/gobgp-wire.js';
import { summarize, type Summary } from './lib/stats.js';

const T = 'type.googleapis.com/apipb.';

export interface DecodeResult {
  routes: number;
  bytesPerMessage: number;
  /** µs per route, over several passes. */
  handWrittenUs: Summary;
  genericUs: Summary;
}

function watchEventMessages(n: number): Buffer[] {
  const m = gobgpMethods().WatchEvent!;
  const messages: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    messages.push(
      m.responseSerialize({
        table: {
          paths: [
            {
              nlri: { '@type': T + 'IPAddressPrefix', prefix: `10.${128 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, prefix_len: 32 },
              pattrs: [
                { '@type': T + 'OriginAttribute', origin: 0 },
                { '@type': T + 'AsPathAttribute', segments: [{ type: 'AS_SEQUENCE', numbers: [65100] }] },
                { '@type': T + 'NextHopAttribute', next_hop: '10.99.0.1' },
              ],
              age: { seconds: 1_700_000_000, nanos: 0 },
              best: true,
              family: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' },
              source_asn: 65100,
              source_id: '10.99.0.1',
              is_from_external: true,
              neighbor_ip: '10.99.0.1',
              validation: { state: 'STATE_NONE' },
            },
          ],
        },
      }),
    );
  }
  return messages;
}

function passUs(messages: Buffer[], decode: (b: Buffer) => unknown): number {
  let decoded = 0;
  const start = process.hrtime.bigint();
  for (const b of messages) if (decode(b) !== undefined) decoded++;
  const us = Number(process.hrtime.bigint() - start) / 1e3 / messages.length;
  if (decoded !== messages.length) throw new Error(`decoded ${decoded}/${messages.length} messages`);
  return us;
}

export function measureDecode(n: number, passes = 5): DecodeResult {
  const messages = watchEventMessages(n);
  const generic = gobgpMethods().WatchEvent!;
  const hand: number[] = [];
  const gen: number[] = [];
  passUs(messages, decodeWatchEvent); // warm-up of both
  passUs(messages, (b) => generic.responseDeserialize(b));
  for (let i = 0; i < passes; i++) {
    hand.push(passUs(messages, decodeWatchEvent));
    gen.push(passUs(messages, (b) => generic.responseDeserialize(b)));
  }
  return { routes: n, bytesPerMessage: messages[0]?.length ?? 0, handWrittenUs: summarize(hand), genericUs: summarize(gen) };
}
