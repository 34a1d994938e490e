// The gobgpd calls the benchmarks need and podroute's GobgpClient does not offer (AddPathStream, Enable/DisablePeer,
// GetTable, a peer added administratively down), over a plain grpc-js client of the same protos.
import * as grpc from '@grpc/grpc-js';
import { API_FAMILY, originatedPathToApi, peerToApi } from '../../src/bgp/gobgp-codec.js';
import { loadGobgpPackage } from '../../src/bgp/gobgp-proto.js';
import type { OriginatedPath, PeerSpec } from '../../src/bgp/types.js';
import type { IpFamily } from '../../src/routes/ip-prefix.js';

type Callback = (err: grpc.ServiceError | null, value?: unknown) => void;
type UnaryFn = (req: object, options: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall;
type ClientStreamFn = (options: grpc.CallOptions, cb: Callback) => grpc.ClientWritableStream<object>;

/** Paths per AddPathStream message: big enough to amortize framing, small enough to keep messages modest. */
const STREAM_BATCH = 1000;

export class RawGobgp {
  private readonly client: grpc.Client & Record<string, unknown>;

  constructor(readonly target: string) {
    const pkg = grpc.loadPackageDefinition(loadGobgpPackage()) as unknown as { apipb: { GobgpApi: grpc.ServiceClientConstructor } };
    this.client = new pkg.apipb.GobgpApi(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      // The benchmarks poll daemons that are just starting: retry their socket quickly.
      'grpc.initial_reconnect_backoff_ms': 50,
      'grpc.max_reconnect_backoff_ms': 250,
    });
  }

  close(): void {
    this.client.close();
  }

  private unary(method: string, req: object, timeoutMs = 30_000): Promise<unknown> {
    const fn = this.client[method] as UnaryFn;
    return new Promise((resolve, reject) => {
      fn.call(this.client, req, { deadline: Date.now() + timeoutMs }, (err, value) => (err ? reject(new Error(`gobgp ${method}: ${err.details || err.message}`)) : resolve(value)));
    });
  }

  async waitReady(timeoutMs: number): Promise<void> {
    await new Promise<void>((resolve, reject) => this.client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())));
  }

  /** useMultiplePaths: every equally good path in the best-path watch, as the agent's gobgpd runs. */
  async startBgp(asn: number, routerId: string, listenPort: number, useMultiplePaths = false): Promise<void> {
    await this.unary('StartBgp', { global: { asn, router_id: routerId, listen_port: listenPort, listen_addresses: [], use_multiple_paths: useMultiplePaths } });
  }

  /** Adds a peer, optionally administratively down (it then neither dials nor accepts until enablePeer). */
  async addPeer(spec: PeerSpec, adminDown: boolean): Promise<void> {
    const peer = peerToApi(spec) as { conf: Record<string, unknown> };
    peer.conf.admin_down = adminDown;
    await this.unary('AddPeer', { peer });
  }

  async enablePeer(address: string): Promise<void> {
    await this.unary('EnablePeer', { address });
  }

  async disablePeer(address: string): Promise<void> {
    await this.unary('DisablePeer', { address, communication: '' });
  }

  /** Loads paths into the global RIB over one client stream (the fast way: unary AddPath is ~10x slower). */
  async addPathStream(paths: readonly OriginatedPath[]): Promise<void> {
    const fn = this.client.AddPathStream as ClientStreamFn;
    await new Promise<void>((resolve, reject) => {
      const call = fn.call(this.client, { deadline: Date.now() + 600_000 }, (err) => (err ? reject(new Error(`gobgp AddPathStream: ${err.details || err.message}`)) : resolve()));
      const write = async (): Promise<void> => {
        for (let i = 0; i < paths.length; i += STREAM_BATCH) {
          const batch = paths.slice(i, i + STREAM_BATCH).map((p) => originatedPathToApi(p).path);
          if (!call.write({ table_type: 'GLOBAL', vrf_id: '', paths: batch })) await new Promise((r) => call.once('drain', r));
        }
        call.end();
      };
      write().catch(reject);
    });
  }

  /** Destinations in the global RIB of a family: a cheap call (no paths are sent). */
  async destinations(family: IpFamily): Promise<number> {
    const r = (await this.unary('GetTable', { table_type: 'GLOBAL', family: API_FAMILY[family], name: '' }, 10_000)) as { num_destination?: string | number };
    return Number(r?.num_destination ?? 0);
  }

  /** Whether the global RIB holds a path to exactly this prefix (its own or learned). */
  async hasPath(family: IpFamily, prefix: string): Promise<boolean> {
    const fn = this.client.ListPath as (req: object, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;
    const call = fn.call(this.client, { table_type: 'GLOBAL', name: '', family: API_FAMILY[family], prefixes: [{ prefix, type: 'EXACT' }] }, { deadline: Date.now() + 10_000 });
    let found = false;
    for await (const item of call as AsyncIterable<{ destination?: { paths?: unknown[] } }>) found ||= (item.destination?.paths ?? []).length > 0;
    return found;
  }

  /** Session state of one peer ('ESTABLISHED', 'ACTIVE', ...) with the prefixes received and accepted. */
  async peerState(address: string): Promise<{ state: string; received: number; accepted: number } | undefined> {
    const fn = this.client.ListPeer as (req: object, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;
    const call = fn.call(this.client, { address, enableAdvertised: false }, { deadline: Date.now() + 10_000 });
    for await (const item of call as AsyncIterable<{ peer?: { state?: { session_state?: string }; afi_safis?: { state?: { received?: string; accepted?: string } }[] } }>) {
      const afis = item.peer?.afi_safis ?? [];
      return {
        state: String(item.peer?.state?.session_state ?? 'UNKNOWN'),
        received: afis.reduce((n, a) => n + Number(a.state?.received ?? 0), 0),
        accepted: afis.reduce((n, a) => n + Number(a.state?.accepted ?? 0), 0),
      };
    }
    return undefined;
  }

  /** Every peer's session state, the prefixes advertised to it and those received from it (and accepted). */
  async listPeers(): Promise<{ address: string; state: string; advertised: number; received: number; accepted: number }[]> {
    const fn = this.client.ListPeer as (req: object, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;
    const call = fn.call(this.client, { address: '', enableAdvertised: true }, { deadline: Date.now() + 10_000 });
    const out: { address: string; state: string; advertised: number; received: number; accepted: number }[] = [];
    type Counters = { advertised?: string; received?: string; accepted?: string };
    type Item = { peer?: { conf?: { neighbor_address?: string }; state?: { session_state?: string }; afi_safis?: { state?: Counters }[] } };
    for await (const item of call as AsyncIterable<Item>) {
      const afis = item.peer?.afi_safis ?? [];
      const sum = (key: keyof Counters): number => afis.reduce((n, a) => n + Number(a.state?.[key] ?? 0), 0);
      out.push({
        address: String(item.peer?.conf?.neighbor_address ?? ''),
        state: String(item.peer?.state?.session_state ?? 'UNKNOWN'),
        advertised: sum('advertised'),
        received: sum('received'),
        accepted: sum('accepted'),
      });
    }
    return out;
  }
}
