// The floor of podroute's design for route programming (issue 19): the smallest grpc-js client of gobgpd that
// subscribes to the stream the agent subscribes to (WatchEvent: peers, and best paths with the initial table) and
// only counts the prefixes it holds. It walks the protobuf wire for nothing but each path's NLRI bytes and its
// withdraw flag: no path decoding, no route selection, no kernel. Run as its own process beside its gobgpd; it
// prints the count on stdout once per event-loop turn in which it changed (first: when gobgpd's
// initial table has arrived).
// Usage: node dist/bench/bare-watcher.js unix:///path/to/gobgp.sock
import * as grpc from '@grpc/grpc-js';

/** WatchEventRequest { peer: {}, table: { filters: [{ type: BEST, init: true }] } }, encoded by hand. */
export const WATCH_REQUEST = Buffer.from([0x0a, 0x00, 0x12, 0x04, 0x0a, 0x02, 0x10, 0x01]);

interface Field {
  no: number;
  /** Wire type 0: the varint value; wire type 2: the payload's end (the payload starts at `start`). */
  value: number;
  start: number;
  wire: number;
}

/** The fields of a message between start and end (varints above 2^53 lose precision: none are read here). */
function* fields(buf: Buffer, start: number, end: number): Generator<Field> {
  let at = start;
  const varint = (): number => {
    let v = 0;
    let scale = 1;
    for (;;) {
      const b = buf[at++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v;
      scale *= 128;
    }
  };
  while (at < end) {
    const key = varint();
    const wire = key & 7;
    const no = Math.floor(key / 8);
    if (wire === 0) yield { no, wire, value: varint(), start: at };
    else if (wire === 2) {
      const len = varint();
      yield { no, wire, value: at + len, start: at };
      at += len;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw new Error(`unexpected wire type ${wire}`);
  }
}

/** Applies one WatchEventResponse (field 3: TableEvent, whose field 2 is the repeated Path) to the held prefixes. */
export function countPaths(held: Set<string>, buf: Buffer): void {
  for (const event of fields(buf, 0, buf.length)) {
    if (event.no !== 3 || event.wire !== 2) continue;
    for (const path of fields(buf, event.start, event.value)) {
      if (path.no !== 2 || path.wire !== 2) continue;
      let nlri: string | undefined;
      let withdraw = false;
      for (const f of fields(buf, path.start, path.value)) {
        if (f.no === 1 && f.wire === 2) nlri = buf.toString('latin1', f.start, f.value);
        else if (f.no === 5 && f.wire === 0) withdraw = f.value !== 0;
      }
      if (nlri === undefined) continue;
      if (withdraw) held.delete(nlri);
      else held.add(nlri);
    }
  }
}

function main(target: string): void {
  const client = new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  const held = new Set<string>();
  let printed = -1;
  let flushing = false;
  const flush = (): void => {
    flushing = false;
    if (held.size === printed) return;
    printed = held.size;
    process.stdout.write(`${printed}\n`);
  };
  const call = client.makeServerStreamRequest<Buffer, Buffer>('/apipb.GobgpApi/WatchEvent', (b) => b, (b) => b, WATCH_REQUEST);
  call.on('data', (buf: Buffer) => {
    countPaths(held, buf);
    if (!flushing) {
      flushing = true;
      setImmediate(flush);
    }
  });
  call.on('error', (err: grpc.ServiceError) => {
    process.stderr.write(`bare watcher: ${err.message}\n`);
    process.exit(1);
  });
  call.on('end', () => process.exit(1));
}

if (process.argv[1]?.endsWith('bare-watcher.js') === true) main(process.argv[2] ?? 'unix:///run/gobgp.sock');
