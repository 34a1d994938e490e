// The lab's stand-in for a pod's containers: one small process per pod, started by the lab kubelet inside the
// pod's network namespace. Every declared port answers `<namespace>/<name> <client address>\n` over TCP and UDP
// (the client address proves there was no NAT on the way), and a control socket runs probes from this namespace.
//   node podserver.js --identity ns/name --ports 80/TCP,80/UDP --control /run/podroute-lab/L/pods/ns_name.sock
// Many run at once: plain node:net / node:dgram, nothing heavy is imported.
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { plainAddress, serveProbeControl, type ProbeControlServer } from './probe.js';

export interface ServedPort {
  port: number;
  protocol: 'TCP' | 'UDP';
}

export interface PodServerOptions {
  identity: string;
  ports: ServedPort[];
  controlSocket: string;
}

export class PodServerArgsError extends Error {
  readonly code = 'PODSERVER_BAD_ARGS';
  constructor(message: string) {
    super(message);
    this.name = 'PodServerArgsError';
  }
}

/** Parses `80/TCP,80/UDP,81/TCP`; an empty string means no ports (a pod may declare none). */
export function parsePortList(text: string): ServedPort[] {
  if (text.trim() === '') return [];
  return text.split(',').map((item) => {
    const match = /^(\d{1,5})\/(TCP|UDP)$/.exec(item.trim());
    const port = match === null ? NaN : Number(match[1]);
    if (match === null || port < 1 || port > 65535) {
      throw new PodServerArgsError(`--ports: "${item}" is not PORT/TCP or PORT/UDP with PORT in 1..65535`);
    }
    return { port, protocol: match[2] as 'TCP' | 'UDP' };
  });
}

export function formatPortList(ports: readonly ServedPort[]): string {
  return ports.map((p) => `${p.port}/${p.protocol}`).join(',');
}

export function parsePodServerArgs(argv: readonly string[]): PodServerOptions {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] ?? '';
    const value = argv[i + 1];
    if (!['--identity', '--ports', '--control'].includes(flag) || value === undefined) {
      throw new PodServerArgsError(`unexpected argument "${flag}"; usage: --identity NS/NAME --ports LIST --control SOCKET`);
    }
    values.set(flag, value);
  }
  const identity = values.get('--identity');
  const controlSocket = values.get('--control');
  if (identity === undefined || !/^[^\s/]+\/[^\s/]+$/.test(identity)) {
    throw new PodServerArgsError('--identity: required, NAMESPACE/NAME');
  }
  if (controlSocket === undefined || controlSocket === '') throw new PodServerArgsError('--control: required');
  return { identity, controlSocket, ports: parsePortList(values.get('--ports') ?? '') };
}

export interface RunningPodServer {
  close(): Promise<void>;
}

function replyLine(identity: string, clientAddress: string | undefined): string {
  return `${identity} ${plainAddress(clientAddress ?? 'unknown')}\n`;
}

function listenTcp(identity: string, port: number): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.end(replyLine(identity, socket.remoteAddress));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // `::` with ipv6Only false is one dual-stack socket: IPv4 clients arrive as ::ffff:a.b.c.d.
    server.listen({ port, host: '::', ipv6Only: false }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function bindUdp(socket: dgram.Socket, port: number, address: string): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port, address }, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/**
 * A wildcard UDP socket replies from whatever source address the routing table picks, which may not be the
 * address the client sent to (a node reached on its LAN address from a pod on its bridge), and the client's
 * connected socket would drop that reply. Binding each local address as well makes replies leave from the
 * address that was asked; the wildcard socket still catches addresses added later.
 */
async function listenUdp(identity: string, port: number): Promise<dgram.Socket[]> {
  const onMessage = (socket: dgram.Socket) => (msg: Buffer, rinfo: dgram.RemoteInfo) => {
    socket.send(replyLine(identity, rinfo.address), rinfo.port, rinfo.address, () => undefined);
  };
  const sockets: dgram.Socket[] = [];
  const wildcard = dgram.createSocket({ type: 'udp6', ipv6Only: false, reuseAddr: true });
  wildcard.on('message', onMessage(wildcard));
  sockets.push(await bindUdp(wildcard, port, '::'));
  wildcard.on('error', () => undefined);
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const addr of addrs ?? []) {
      // Link-local IPv6 would need a scope id; clients target global addresses.
      if (addr.family === 'IPv6' && addr.address.toLowerCase().startsWith('fe80:')) continue;
      const type = addr.family === 'IPv4' ? 'udp4' : 'udp6';
      const socket = dgram.createSocket({ type, reuseAddr: true, ipv6Only: type === 'udp6' });
      socket.on('message', onMessage(socket));
      try {
        sockets.push(await bindUdp(socket, port, addr.address));
        socket.on('error', () => undefined);
      } catch (err) {
        socket.close();
        process.stderr.write(`podserver: UDP ${addr.address}:${port} not bound: ${(err as Error).message}\n`);
      }
    }
  }
  return sockets;
}

/** Binds every port first and opens the control socket last: a reachable control socket means the pod is serving. */
export async function startPodServer(options: PodServerOptions): Promise<RunningPodServer> {
  const tcpServers: net.Server[] = [];
  const udpSockets: dgram.Socket[] = [];
  const seen = new Set<string>();
  for (const { port, protocol } of options.ports) {
    const key = `${port}/${protocol}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (protocol === 'TCP') tcpServers.push(await listenTcp(options.identity, port));
    else udpSockets.push(...(await listenUdp(options.identity, port)));
  }
  const control: ProbeControlServer = await serveProbeControl(options.controlSocket);
  return {
    close: async () => {
      await control.close();
      for (const socket of udpSockets) socket.close();
      await Promise.all(tcpServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

async function main(): Promise<void> {
  const options = parsePodServerArgs(process.argv.slice(2));
  const server = await startPodServer(options);
  const stop = (): void => {
    // A client that never closes its side would keep server.close() waiting: do not outwait it for long.
    setTimeout(() => process.exit(0), 1000).unref();
    void server.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// Run as a script (the kubelet spawns it); importing the module for its helpers starts nothing.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`podserver: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
