// The BFD companion (`podroute bfd`) and the agent talk over a unix socket, one JSON object per line:
//   agent -> companion  {"peers": BfdPeerSpec[]}            the sessions to run (sent on connect and on every change)
//   companion -> agent  {"sessions": BfdSessionStatus[]}    every session, on connect and on every state change
// BFD lives in its own process because it must outlive the agent: an agent restart (an upgrade, a crash) that
// silenced BFD for longer than the detection time would make every ToR tear down this node's BGP sessions and
// drop its routes, though gobgpd and the data plane never stopped. The companion keeps the last peer set it was
// given until a new agent sends one.
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from '../observe/log.js';
import type { BfdPeerSpec, BfdSessions, BfdSessionStatus } from './sessions.js';

/** Serves the sessions' state on a unix socket and takes the peer set from whoever connects (the agent). */
export async function serveBfdControl(socketPath: string, sessions: BfdSessions, logger?: Logger): Promise<net.Server> {
  await rm(socketPath, { force: true });
  const clients = new Set<net.Socket>();
  const broadcast = (): void => {
    const line = `${JSON.stringify({ sessions: sessions.status() })}\n`;
    for (const c of clients) c.write(line);
  };
  sessions.on('change', broadcast);
  const server = net.createServer((conn) => {
    clients.add(conn);
    conn.write(`${JSON.stringify({ sessions: sessions.status() })}\n`);
    readLines(conn, (message) => {
      const peers = (message as { peers?: unknown }).peers;
      if (!Array.isArray(peers)) return;
      sessions
        .setPeers(peers as BfdPeerSpec[])
        .then(broadcast)
        .catch((err: unknown) => logger?.warn('BFD peers not applied', { error: err instanceof Error ? err.message : String(err) }));
    });
    conn.on('close', () => clients.delete(conn));
    conn.on('error', () => clients.delete(conn));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}

/**
 * The agent's side: keeps a connection to the companion (reconnecting every second), sends it the peer set, and
 * emits 'sessions' with every status it receives. While it is not connected, sessions() is empty: no peer is held
 * down by a BFD that cannot be asked.
 */
export class BfdControlClient extends EventEmitter {
  private socket: net.Socket | undefined;
  private peers: BfdPeerSpec[] | undefined;
  private latest: BfdSessionStatus[] = [];
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  connected = false;

  constructor(
    private readonly socketPath: string,
    private readonly logger?: Logger,
  ) {
    super();
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.socket?.destroy();
  }

  sessions(): BfdSessionStatus[] {
    return this.connected ? this.latest : [];
  }

  setPeers(peers: BfdPeerSpec[]): void {
    const same = JSON.stringify(peers) === JSON.stringify(this.peers);
    this.peers = peers;
    if (!same && this.connected) this.socket?.write(`${JSON.stringify({ peers })}\n`);
  }

  private connect(): void {
    if (this.stopped) return;
    const socket = net.createConnection(this.socketPath);
    this.socket = socket;
    socket.on('connect', () => {
      this.connected = true;
      this.logger?.info('connected to the BFD companion', { socket: this.socketPath });
      if (this.peers !== undefined) socket.write(`${JSON.stringify({ peers: this.peers })}\n`);
    });
    readLines(socket, (message) => {
      const sessions = (message as { sessions?: unknown }).sessions;
      if (!Array.isArray(sessions)) return;
      this.latest = sessions as BfdSessionStatus[];
      this.emit('sessions', this.latest);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const was = this.connected;
      this.connected = false;
      this.latest = [];
      if (was) {
        this.logger?.warn('lost the BFD companion; no peer is held down by BFD until it is back', { socket: this.socketPath });
        this.emit('sessions', []);
      }
      if (!this.stopped) {
        this.retry = setTimeout(() => this.connect(), 1_000);
        this.retry.unref?.();
      }
    });
  }
}

function readLines(socket: net.Socket, onMessage: (message: unknown) => void): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        onMessage(JSON.parse(line));
      } catch {
        // a garbled line is skipped; the next full status replaces it anyway
      }
    }
  });
}
