// Test fixtures: real gobgpd processes on unix sockets in a temp dir, optionally inside a pair of network
// namespaces joined by a veth (v4 + v6). Everything is named with the caller's prefix and torn down by PID/name.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pollUntil } from '../../poll.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

export interface GobgpdProcess {
  readonly name: string;
  readonly socket: string;
  /** `unix:///abs/path` for GobgpClient. */
  readonly target: string;
  readonly netns: string | undefined;
  pid(): number | undefined;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** Start it again on the same socket (after kill). */
  start(): Promise<void>;
}

export class GobgpdFixture {
  readonly dir: string;
  private readonly procs: GobgpdProcess[] = [];

  constructor(prefix: string) {
    this.dir = mkdtempSync(path.join(tmpdir(), `${prefix}-gobgpd-`));
  }

  async spawn(name: string, netns?: string): Promise<GobgpdProcess> {
    const socket = path.join(this.dir, `${name}.sock`);
    const logFile = path.join(this.dir, `${name}.log`);
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    const start = async (): Promise<void> => {
      rmSync(socket, { force: true });
      const args = ['--api-hosts', `unix://${socket}`, '--pprof-disable', '-p', '-l', 'info'];
      const [cmd, argv] = netns === undefined ? ['gobgpd', args] : ['ip', ['netns', 'exec', netns, 'gobgpd', ...args]];
      const fd = openSync(logFile, 'a');
      const c = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      child = c;
      exited = new Promise((resolve) => c.once('exit', () => resolve()));
      await pollUntil(`gobgpd ${name} socket`, () => existsSync(socket) || (c.exitCode !== null ? undefined : false), { timeoutMs: 15_000, intervalMs: 50 });
    };
    const proc: GobgpdProcess = {
      name,
      socket,
      target: `unix://${socket}`,
      netns,
      pid: () => child?.pid,
      kill: async () => {
        if (child !== undefined && child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await exited;
        }
      },
      start,
    };
    await start();
    this.procs.push(proc);
    return proc;
  }

  logOf(name: string): string {
    return path.join(this.dir, `${name}.log`);
  }

  async close(): Promise<void> {
    for (const p of this.procs) await p.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface NetnsPair {
  a: string;
  b: string;
  v4: { a: string; b: string };
  v6: { a: string; b: string };
  /** Add an extra address on b's side (to act as a second peer in tests). */
  addAddress(ns: string, cidr: string): void;
  close(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Two namespaces `${prefix}-a` / `${prefix}-b` joined by veth `${prefix}a`/`${prefix}b` (names fit IFNAMSIZ),
 * with 10.<n>.0.1|2/24 and fd00:<n>::1|2/64 (nodad, so v6 is usable at once).
 */
export function createNetnsPair(prefix: string, subnet: number): NetnsPair {
  const a = `${prefix}-a`;
  const b = `${prefix}-b`;
  const pair: NetnsPair = {
    a,
    b,
    v4: { a: `10.${subnet}.0.1`, b: `10.${subnet}.0.2` },
    v6: { a: `fd00:${subnet}::1`, b: `fd00:${subnet}::2` },
    addAddress: (ns, cidr) => {
      const dev = ns === a ? `${prefix}a` : `${prefix}b`;
      const v6 = familyOf(cidr) === 'ipv6';
      ip('-n', ns, ...(v6 ? ['-6'] : []), 'addr', 'add', cidr, 'dev', dev, ...(v6 ? ['nodad'] : []));
    },
    close: () => {
      for (const ns of [a, b]) {
        try {
          ip('netns', 'del', ns);
        } catch {
          // already gone
        }
      }
    },
  };
  pair.close();
  try {
    ip('netns', 'add', a);
    ip('netns', 'add', b);
    ip('-n', a, 'link', 'add', `${prefix}a`, 'type', 'veth', 'peer', 'name', `${prefix}b`, 'netns', b);
    for (const [ns, dev, side] of [
      [a, `${prefix}a`, 'a'],
      [b, `${prefix}b`, 'b'],
    ] as const) {
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'addr', 'add', `${pair.v4[side]}/24`, 'dev', dev);
      ip('-n', ns, '-6', 'addr', 'add', `${pair.v6[side]}/64`, 'dev', dev, 'nodad');
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
  } catch (err) {
    pair.close();
    throw err;
  }
  return pair;
}
