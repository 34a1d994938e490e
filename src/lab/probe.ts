// Lab probes: "can X reach Y on port P" asked from inside a pod's (or a node's) network namespace, through that
// namespace's control socket, so a test matrix of thousands of probes spawns no process per probe.
// Kept free of heavy imports: every pod server loads this module (plain node:net / node:dgram only).
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';

export type ProbeProtocol = 'tcp' | 'udp';

export interface ProbeRequest {
  /** IPv4 or IPv6 address to reach (no names: the lab has no DNS). */
  target: string;
  port: number;
  protocol: ProbeProtocol;
  /** Gives up after this long; a silent drop (policy DROP, no route) ends as `timeout`. Default 2000. */
  timeoutMs?: number;
  /**
   * TCP only: wait for the server's first line (default true). False makes a plain connect check, for
   * servers that never talk first.
   */
  expectReply?: boolean;
}

export interface ProbeResult {
  ok: boolean;
  /** The first line the target answered (a lab pod answers `<namespace>/<name> <client address>`). */
  reply?: string;
  /** Why it failed: `timeout`, `refused`, `unreachable`, an errno code, or `bad request: ...`. */
  error?: string;
  elapsedMs: number;
}

/** One line on a control socket: a request plus an optional id, echoed back so answers may come out of order. */
export interface ProbeWireRequest extends ProbeRequest {
  id?: number | string;
}
export interface ProbeWireResult extends ProbeResult {
  id?: number | string;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 2000;
const MAX_PROBE_TIMEOUT_MS = 60_000;
const MAX_REPLY_BYTES = 4096;

export class ProbeError extends Error {
  constructor(
    readonly code: 'PROBE_BAD_REQUEST' | 'PROBE_CONTROL_UNAVAILABLE' | 'PROBE_CONTROL_CLOSED',
    message: string,
  ) {
    super(message);
    this.name = 'ProbeError';
  }
}

/** A lab pod's answer split into its parts; undefined when the line is not one. */
export function parsePodReply(reply: string): { identity: string; clientAddress: string } | undefined {
  const match = /^(\S+\/\S+) (\S+)$/.exec(reply.trim());
  if (match === null) return undefined;
  return { identity: match[1] ?? '', clientAddress: match[2] ?? '' };
}

/** A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d; tests compare against plain addresses. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** Checks a request and names the bad field; returns the error text or undefined. */
export function validateProbeRequest(req: unknown): string | undefined {
  if (typeof req !== 'object' || req === null) return 'request must be a JSON object';
  const r = req as Record<string, unknown>;
  if (typeof r.target !== 'string' || net.isIP(r.target) === 0) return 'target: must be an IPv4 or IPv6 address';
  if (typeof r.port !== 'number' || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535) {
    return 'port: must be an integer in 1..65535';
  }
  if (r.protocol !== 'tcp' && r.protocol !== 'udp') return "protocol: must be 'tcp' or 'udp'";
  if (
    r.timeoutMs !== undefined &&
    (typeof r.timeoutMs !== 'number' || !(r.timeoutMs > 0) || r.timeoutMs > MAX_PROBE_TIMEOUT_MS)
  ) {
    return `timeoutMs: must be a number in (0, ${MAX_PROBE_TIMEOUT_MS}]`;
  }
  if (r.expectReply !== undefined && typeof r.expectReply !== 'boolean') return 'expectReply: must be a boolean';
  return undefined;
}

function errorName(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'unreachable';
  return code ?? (err instanceof Error ? err.message : String(err));
}

function firstLine(data: string): string {
  const nl = data.indexOf('\n');
  return nl === -1 ? data : data.slice(0, nl);
}

/** Runs one probe from this process's network namespace. Never throws: failures are results. */
export function executeProbe(req: ProbeRequest): Promise<ProbeResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round((performance.now() - started) * 10) / 10;
  const bad = validateProbeRequest(req);
  if (bad !== undefined) return Promise.resolve({ ok: false, error: `bad request: ${bad}`, elapsedMs: 0 });
  const timeoutMs = req.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  return req.protocol === 'tcp'
    ? tcpProbe(req, timeoutMs, elapsed)
    : udpProbe(req, timeoutMs, elapsed);
}

function tcpProbe(req: ProbeRequest, timeoutMs: number, elapsed: () => number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let data = '';
    let settled = false;
    const socket = net.connect({ host: req.target, port: req.port });
    const finish = (result: Omit<ProbeResult, 'elapsedMs'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...result, elapsedMs: elapsed() });
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      if (req.expectReply === false) finish({ ok: true });
    });
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.includes('\n') || data.length > MAX_REPLY_BYTES) finish({ ok: true, reply: firstLine(data) });
    });
    socket.on('end', () => {
      if (data.length > 0) finish({ ok: true, reply: firstLine(data) });
      else finish({ ok: false, error: 'closed without reply' });
    });
    socket.on('error', (err) => finish({ ok: false, error: errorName(err) }));
  });
}

function udpProbe(req: ProbeRequest, timeoutMs: number, elapsed: () => number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const socket = dgram.createSocket(net.isIPv6(req.target) ? 'udp6' : 'udp4');
    const finish = (result: Omit<ProbeResult, 'elapsedMs'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        socket.close();
      } catch {
        // already closed
      }
      resolve({ ...result, elapsedMs: elapsed() });
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), timeoutMs);
    socket.on('error', (err) => finish({ ok: false, error: errorName(err) }));
    socket.on('message', (msg) => finish({ ok: true, reply: firstLine(msg.toString('utf8')) }));
    // A connected UDP socket hears the ICMP port-unreachable (ECONNREFUSED) instead of waiting for the timeout.
    socket.connect(req.port, req.target, () => {
      socket.send('probe\n', (err) => {
        if (err) finish({ ok: false, error: errorName(err) });
      });
    });
  });
}

export interface ProbeControlServer {
  socketPath: string;
  close(): Promise<void>;
}

/**
 * Serves probe requests (one JSON object per line) on a unix socket; each is executed from this process's
 * network namespace, concurrently, and answered by a line carrying the request's id.
 */
export async function serveProbeControl(socketPath: string): Promise<ProbeControlServer> {
  fs.rmSync(socketPath, { force: true });
  const connections = new Set<net.Socket>();
  const server = net.createServer((conn) => {
    connections.add(conn);
    conn.on('close', () => connections.delete(conn));
    conn.on('error', () => conn.destroy());
    conn.setEncoding('utf8');
    let buffer = '';
    conn.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line.length > 0) void answer(conn, line);
      }
      if (buffer.length > 65536) conn.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        for (const conn of connections) conn.destroy();
        server.close(() => {
          fs.rmSync(socketPath, { force: true });
          resolve();
        });
      }),
  };
}

async function answer(conn: net.Socket, line: string): Promise<void> {
  let req: ProbeWireRequest | undefined;
  let result: ProbeWireResult;
  try {
    req = JSON.parse(line) as ProbeWireRequest;
    const bad = validateProbeRequest(req);
    result = bad === undefined ? await executeProbe(req) : { ok: false, error: `bad request: ${bad}`, elapsedMs: 0 };
  } catch {
    result = { ok: false, error: 'bad request: not JSON', elapsedMs: 0 };
  }
  if (req !== undefined && typeof req === 'object' && req !== null && req.id !== undefined) result.id = req.id;
  if (!conn.destroyed) conn.write(JSON.stringify(result) + '\n');
}

// ---- client side: one multiplexed connection per control socket ----

interface PendingProbe {
  resolve: (r: ProbeResult) => void;
  reject: (e: Error) => void;
}

class ControlConnection {
  private readonly socket: net.Socket;
  private readonly pending = new Map<number, PendingProbe>();
  private nextId = 1;
  private buffer = '';
  private closedError: Error | undefined;
  readonly ready: Promise<void>;

  constructor(readonly socketPath: string, onClose: () => void) {
    this.socket = net.connect(socketPath);
    this.socket.setEncoding('utf8');
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', (err) =>
        reject(new ProbeError('PROBE_CONTROL_UNAVAILABLE', `control socket ${socketPath}: ${err.message}`)),
      );
    });
    this.ready.catch(() => undefined);
    this.socket.on('data', (chunk: string) => this.onData(chunk));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closedError = new ProbeError('PROBE_CONTROL_CLOSED', `control socket ${socketPath} closed`);
      for (const p of this.pending.values()) p.reject(this.closedError);
      this.pending.clear();
      onClose();
    });
    this.socket.unref();
  }

  async send(req: ProbeRequest): Promise<ProbeResult> {
    await this.ready;
    if (this.closedError) throw this.closedError;
    const id = this.nextId++;
    const wire: ProbeWireRequest = { ...req, id };
    return new Promise<ProbeResult>((resolve, reject) => {
      // The far side runs its own timeout; this one only guards against a control server that hangs.
      const guard = setTimeout(() => {
        if (this.pending.delete(id)) resolve({ ok: false, error: 'control socket did not answer', elapsedMs: 0 });
      }, (req.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS) + 5000);
      guard.unref();
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(guard);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(guard);
          reject(e);
        },
      });
      // A pending probe keeps the process alive; an idle pooled connection does not.
      this.socket.ref();
      this.socket.write(JSON.stringify(wire) + '\n');
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) !== -1) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      let msg: ProbeWireResult;
      try {
        msg = JSON.parse(line) as ProbeWireResult;
      } catch {
        continue;
      }
      const id = typeof msg.id === 'number' ? msg.id : Number(msg.id);
      const p = this.pending.get(id);
      if (p === undefined) continue;
      this.pending.delete(id);
      delete msg.id;
      p.resolve(msg);
    }
    if (this.pending.size === 0) this.socket.unref();
  }
}

const connections = new Map<string, ControlConnection>();

function connectionFor(socketPath: string): ControlConnection {
  let conn = connections.get(socketPath);
  if (conn === undefined) {
    const created: ControlConnection = new ControlConnection(socketPath, () => {
      if (connections.get(socketPath) === created) connections.delete(socketPath);
    });
    conn = created;
    connections.set(socketPath, conn);
  }
  return conn;
}

/**
 * Asks the namespace behind `controlSocket` (a pod's labPaths(lab).podSocket or a node's probe socket) to run one
 * probe. Rejects (ProbeError) only when the control socket itself is unusable; an unreachable target is a result.
 */
export async function probe(controlSocket: string, req: ProbeRequest): Promise<ProbeResult> {
  const bad = validateProbeRequest(req);
  if (bad !== undefined) throw new ProbeError('PROBE_BAD_REQUEST', `probe: ${bad}`);
  const conn = connectionFor(controlSocket);
  try {
    return await conn.send(req);
  } catch (err) {
    if (connections.get(controlSocket) === conn) connections.delete(controlSocket);
    conn.destroy();
    throw err;
  }
}

export interface ProbeJob extends ProbeRequest {
  /** The control socket of the namespace the probe runs from. */
  from: string;
}

/**
 * Runs many probes with at most `concurrency` in flight, results in the order of `jobs`. A control socket that
 * cannot be used yields `{ok:false, error}` for its probes instead of rejecting the whole matrix.
 */
export async function probeMany(jobs: readonly ProbeJob[], concurrency = 64): Promise<ProbeResult[]> {
  const results: ProbeResult[] = new Array<ProbeResult>(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const index = next++;
      const { from, ...req } = jobs[index] as ProbeJob;
      try {
        results[index] = await probe(from, req);
      } catch (err) {
        results[index] = { ok: false, error: err instanceof Error ? err.message : String(err), elapsedMs: 0 };
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(concurrency, jobs.length)) }, () => worker());
  await Promise.all(workers);
  return results;
}

/** Closes the pooled control connections (tests call it in after()). */
export function closeProbeConnections(): void {
  for (const conn of connections.values()) conn.destroy();
  connections.clear();
}
