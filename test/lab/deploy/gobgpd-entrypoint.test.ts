// The gobgpd sidecar's entrypoint with the real gobgpd (API on a unix socket in a temporary directory, no BGP
// listener): a gobgpd killed with SIGKILL leaves its socket behind, a plain restart then fails to bind, and the
// entrypoint's restart removes the stale socket and comes up.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { findProjectRoot } from '../../../src/bgp/gobgp-proto.js';
import { pollUntil } from '../../poll.js';

const execFileAsync = promisify(execFile);
const ENTRYPOINT = path.join(findProjectRoot(import.meta.url), 'deploy/images/scripts/gobgpd-entrypoint.sh');

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(file: string, args: string[]): Started {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function gobgpAnswers(target: string): Promise<boolean> {
  try {
    await execFileAsync('gobgp', ['--target', target, 'global'], { timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

describe('deploy: gobgpd-entrypoint.sh with the real gobgpd', function () {
  this.timeout(90_000);
  let dir = '';
  const started: Started[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'h8-gobgpd-'));
  });
  after(async () => {
    for (const s of started) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    await Promise.all(started.map((s) => s.exited));
    await rm(dir, { recursive: true, force: true });
  });

  it('survives a stale socket that makes a plain gobgpd exit', async () => {
    const socket = path.join(dir, 'gobgp.sock');
    const target = `unix://${socket}`;
    const args = ['--api-hosts', target, '--pprof-disable'];

    const first = start('/bin/sh', [ENTRYPOINT, ...args]);
    started.push(first);
    await pollUntil('gobgpd to answer', () => gobgpAnswers(target), { timeoutMs: 20_000 });
    // The entrypoint exec's gobgpd: the shell's PID is gobgpd's.
    first.child.kill('SIGKILL');
    await first.exited;
    expect(existsSync(socket), 'a killed gobgpd leaves its socket').to.equal(true);

    const plain = start('gobgpd', args);
    started.push(plain);
    const plainExit = await plain.exited;
    expect(plainExit, 'plain gobgpd exits').to.not.equal(0);
    expect(plain.output()).to.contain('address already in use');

    const second = start('/bin/sh', [ENTRYPOINT, ...args]);
    started.push(second);
    await pollUntil('gobgpd started by the entrypoint to answer', () => gobgpAnswers(target), { timeoutMs: 20_000 });
    expect(second.output()).to.contain(`removed stale socket ${socket}`);

    second.child.kill('SIGTERM');
    await second.exited;
    expect(existsSync(socket), 'a gobgpd stopped with SIGTERM removes its socket').to.equal(false);
  });
});
