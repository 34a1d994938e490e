// Helpers for lab tests of node set-up and NAT: network namespaces of our own, commands inside them, background
// processes we started (ended by process group id), and bounded polling.
import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';

export async function sh(argv: readonly string[], input?: string): Promise<string> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('sh: empty argv');
  const result = await execa(file, args, { reject: false, input: input ?? '', env: { LC_ALL: 'C' } });
  if (result.exitCode !== 0) {
    throw new Error(`${argv.join(' ')} exited ${String(result.exitCode)}: ${String(result.stderr)}`);
  }
  return String(result.stdout);
}

export function inNs(netns: string, argv: readonly string[], input?: string): Promise<string> {
  return sh(['ip', 'netns', 'exec', netns, ...argv], input);
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await sh(['ip', 'netns', 'list'])).split('\n').some((line) => line.split(' ')[0] === name);
}

/** Creates fresh namespaces (removing leftovers of a crashed earlier run first) with loopback up. */
export async function createNetns(names: readonly string[]): Promise<void> {
  for (const name of names) {
    if (await netnsExists(name)) await sh(['ip', 'netns', 'del', name]);
    await sh(['ip', 'netns', 'add', name]);
    await sh(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  }
}

export async function deleteNetns(names: readonly string[]): Promise<void> {
  for (const name of names) {
    if (await netnsExists(name)) await sh(['ip', 'netns', 'del', name]);
  }
}

/** Background processes started by a test; `stopAll` ends exactly those (their process groups). */
export class ProcessGroup {
  private readonly children: ChildProcess[] = [];

  /** Starts argv in its own process group and resolves once it prints `readyLine` on stdout. */
  start(argv: readonly string[], readyLine: string, timeoutMs = 10_000): Promise<ChildProcess> {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('start: empty argv');
    const child = spawn(file, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`${argv.join(' ')} not ready: ${err}`)), timeoutMs);
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.split('\n').includes(readyLine)) {
          clearTimeout(timer);
          resolve(child);
        }
      });
      child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${argv.join(' ')} exited ${String(code)}: ${err}`));
      });
    });
  }

  async stopAll(): Promise<void> {
    for (const child of this.children.splice(0)) {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        continue; // already gone
      }
      await exited;
    }
  }
}

