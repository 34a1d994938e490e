// Measures µs per learned route: decoding gobgpd 3.10 WatchEvent messages (one path each, as gobgpd sends
// them) with the hand-written decoder vs proto-loader's generic decoding. Not a test: run it by hand,
//   node .build/<you>/test/unit/bgp/wire-decode-bench.js [N]
import type { MethodDefinition } from '@grpc/proto-loader';
import { loadGobgpPackage } from '../../../src/bgp/gobgp-proto.js';
import { decodeWatchEvent } from '../../../src/bgp/gobgp-wire.js';

const T = 'type.googleapis.com/apipb.';
const N = Number(process.argv[2] ?? 50_000);
const m = (loadGobgpPackage()['apipb.GobgpApi'] as unknown as Record<string, MethodDefinition<object, object>>).WatchEvent!;

const messages: Buffer[] = [];
for (let i = 0; i < N; i++) {
  const prefix = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  messages.push(
    m.responseSerialize({
      table: {
        paths: [
          {
            nlri: { '@type': T + 'IPAddressPrefix', prefix, prefix_len: 32 },
            pattrs: [
              { '@type': T + 'OriginAttribute', origin: 0 },
              { '@type': T + 'AsPathAttribute', segments: [{ type: 'AS_SEQUENCE', numbers: [65100, 65200] }] },
              { '@type': T + 'NextHopAttribute', next_hop: '10.255.0.2' },
              { '@type': T + 'MultiExitDiscAttribute', med: 0 },
            ],
            age: { seconds: 1_700_000_000, nanos: 0 },
            best: true,
            family: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' },
            source_asn: 65100,
            source_id: '10.255.0.2',
            is_from_external: true,
            neighbor_ip: '10.255.0.2',
            validation: { state: 'STATE_NONE' },
          },
        ],
      },
    }),
  );
}

function run(name: string, decode: (b: Buffer) => unknown): void {
  for (let i = 0; i < Math.min(N, 5_000); i++) decode(messages[i]!); // warm-up
  const t0 = process.hrtime.bigint();
  let sink = 0;
  for (const b of messages) if (decode(b) !== undefined) sink++;
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / N;
  console.log(`${name}: ${us.toFixed(2)} µs/route over ${sink} messages (${messages[0]!.length} bytes each)`);
}

run('hand-written decodeWatchEvent', decodeWatchEvent);
run('proto-loader generic responseDeserialize', (b) => m.responseDeserialize(b));
