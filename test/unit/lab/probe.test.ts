// The probe protocol and executor against plain loopback servers on ephemeral ports (no namespaces needed).
import { expect } from 'chai';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  closeProbeConnections,
  executeProbe,
  parsePodReply,
  plainAddress,
  probe,
  probeMany,
  ProbeError,
  serveProbeControl,
  validateProbeRequest,
  type ProbeControlServer,
} from '../../../src/lab/probe.js';

function tcpServer(host: string, reply: (s: net.Socket) => void): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(reply);
  return new Promise((resolve) => server.listen({ host, port: 0 }, () => resolve({ server, port: (server.address() as net.AddressInfo).port })));
}

function udpServer(type: 'udp4' | 'udp6', host: string): Promise<{ socket: dgram.Socket; port: number }> {
  const socket = dgram.createSocket(type);
  socket.on('message', (_msg, rinfo) => socket.send(`t/u ${rinfo.address}\n`, rinfo.port, rinfo.address));
  return new Promise((resolve) => socket.bind(0, host, () => resolve({ socket, port: socket.address().port })));
}

/** A loopback port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const { server, port } = await tcpServer('127.0.0.1', (s) => s.destroy());
  await new Promise((r) => server.close(r));
  return port;
}

describe('probe: request checks and reply parsing', () => {
  it('names the bad field of a request', () => {
    expect(validateProbeRequest({ target: 'pod-a', port: 80, protocol: 'tcp' })).to.match(/^target:/);
    expect(validateProbeRequest({ target: '10.0.0.1', port: 0, protocol: 'tcp' })).to.match(/^port:/);
    expect(validateProbeRequest({ target: '10.0.0.1', port: 70000, protocol: 'tcp' })).to.match(/^port:/);
    expect(validateProbeRequest({ target: '10.0.0.1', port: 80, protocol: 'sctp' })).to.match(/^protocol:/);
    expect(validateProbeRequest({ target: '10.0.0.1', port: 80, protocol: 'udp', timeoutMs: -1 })).to.match(/^timeoutMs:/);
    expect(validateProbeRequest({ target: 'fd00::1', port: 80, protocol: 'udp', timeoutMs: 100 })).to.equal(undefined);
    expect(validateProbeRequest('x')).to.match(/JSON object/);
  });

  it('splits a pod reply and unmaps IPv4-mapped addresses', () => {
    expect(parsePodReply('x/a 10.1.0.5\n')).to.deep.equal({ identity: 'x/a', clientAddress: '10.1.0.5' });
    expect(parsePodReply('hello')).to.equal(undefined);
    expect(plainAddress('::ffff:10.1.0.5')).to.equal('10.1.0.5');
    expect(plainAddress('fd00::5')).to.equal('fd00::5');
  });

  it('rejects a bad request before touching a control socket', async () => {
    let caught: unknown;
    try {
      await probe('/nonexistent/h4.sock', { target: 'x', port: 80, protocol: 'tcp' });
    } catch (err) {
      caught = err;
    }
    expect(caught).to.be.instanceOf(ProbeError);
    expect((caught as ProbeError).code).to.equal('PROBE_BAD_REQUEST');
  });
});

describe('probe: executing from this process', () => {
  const closers: (() => void)[] = [];
  after(() => closers.forEach((c) => c()));

  it('TCP: returns the first line of the answer, v4 and v6', async () => {
    for (const host of ['127.0.0.1', '::1']) {
      const { server, port } = await tcpServer(host, (s) => s.end(`t/s ${s.remoteAddress}\nmore\n`));
      closers.push(() => server.close());
      const r = await executeProbe({ target: host, port, protocol: 'tcp' });
      expect(r.ok, JSON.stringify(r)).to.equal(true);
      expect(r.reply).to.equal(`t/s ${host}`);
    }
  });

  it('TCP: a connect check succeeds against a silent server when no reply is expected', async () => {
    const { server, port } = await tcpServer('127.0.0.1', () => undefined);
    closers.push(() => server.close((): void => undefined));
    const silent = await executeProbe({ target: '127.0.0.1', port, protocol: 'tcp', expectReply: false });
    expect(silent.ok).to.equal(true);
    const waiting = await executeProbe({ target: '127.0.0.1', port, protocol: 'tcp', timeoutMs: 200 });
    expect(waiting).to.include({ ok: false, error: 'timeout' });
  });

  it('TCP and UDP: a closed port is refused', async () => {
    const port = await closedPort();
    expect(await executeProbe({ target: '127.0.0.1', port, protocol: 'tcp' })).to.include({ ok: false, error: 'refused' });
    expect(await executeProbe({ target: '127.0.0.1', port, protocol: 'udp' })).to.include({ ok: false, error: 'refused' });
  });

  it('UDP: returns the datagram answer, v4 and v6', async () => {
    for (const [type, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']] as const) {
      const { socket, port } = await udpServer(type, host);
      closers.push(() => socket.close());
      const r = await executeProbe({ target: host, port, protocol: 'udp' });
      expect(r.ok, JSON.stringify(r)).to.equal(true);
      expect(r.reply).to.equal(`t/u ${host}`);
    }
  });
});

describe('probe: control socket', () => {
  let dir: string;
  let control: ProbeControlServer;
  let tcp: { server: net.Server; port: number };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h4-probe-'));
    control = await serveProbeControl(path.join(dir, 'ctl.sock'));
    tcp = await tcpServer('127.0.0.1', (s) => s.end(`ns/pod ${s.remoteAddress}\n`));
  });
  after(async () => {
    closeProbeConnections();
    await control.close();
    tcp.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers one probe through the socket', async () => {
    const r = await probe(control.socketPath, { target: '127.0.0.1', port: tcp.port, protocol: 'tcp' });
    expect(r).to.include({ ok: true, reply: 'ns/pod 127.0.0.1' });
    expect(r.elapsedMs).to.be.a('number');
  });

  it('runs a mixed matrix concurrently, results in request order', async () => {
    const closed = await closedPort();
    const jobs = Array.from({ length: 600 }, (_, i) => ({
      from: control.socketPath,
      target: '127.0.0.1',
      port: i % 3 === 0 ? closed : tcp.port,
      protocol: 'tcp' as const,
    }));
    const results = await probeMany(jobs, 50);
    expect(results).to.have.length(600);
    results.forEach((r, i) => {
      if (i % 3 === 0) expect(r, `job ${i}`).to.include({ ok: false, error: 'refused' });
      else expect(r, `job ${i}`).to.include({ ok: true, reply: 'ns/pod 127.0.0.1' });
    });
  });

  it('answers a malformed line with an error instead of dropping the connection', async () => {
    const conn = net.connect(control.socketPath);
    const lines: string[] = [];
    conn.setEncoding('utf8');
    const got = new Promise<void>((resolve) => {
      let buf = '';
      conn.on('data', (d: string) => {
        buf += d;
        const parts = buf.split('\n');
        buf = parts.pop() ?? '';
        lines.push(...parts);
        if (lines.length >= 2) resolve();
      });
    });
    conn.write('not json\n');
    conn.write(JSON.stringify({ id: 7, target: '127.0.0.1', port: 99999, protocol: 'tcp' }) + '\n');
    await got;
    conn.destroy();
    expect(JSON.parse(lines[0] ?? '')).to.deep.include({ ok: false, error: 'bad request: not JSON' });
    const second = JSON.parse(lines[1] ?? '') as { id: number; ok: boolean; error: string };
    expect(second.id).to.equal(7);
    expect(second.error).to.match(/^bad request: port:/);
  });

  it('reports an unusable control socket per probe in a matrix and as ProbeError alone', async () => {
    const missing = path.join(dir, 'missing.sock');
    const results = await probeMany(
      [
        { from: missing, target: '127.0.0.1', port: tcp.port, protocol: 'tcp' },
        { from: control.socketPath, target: '127.0.0.1', port: tcp.port, protocol: 'tcp' },
      ],
      2,
    );
    expect(results[0]?.ok).to.equal(false);
    expect(results[0]?.error).to.match(/missing\.sock/);
    expect(results[1]?.ok).to.equal(true);
    let caught: unknown;
    try {
      await probe(missing, { target: '127.0.0.1', port: tcp.port, protocol: 'tcp' });
    } catch (err) {
      caught = err;
    }
    expect((caught as ProbeError).code).to.equal('PROBE_CONTROL_UNAVAILABLE');
  });
});
