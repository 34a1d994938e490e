// What a lab may leave behind, looked up from the outside (netns list, /proc, /var/run/frr, mounts, files): the
// lab tests assert it is nothing after `lab down`.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDir } from '../../../src/lab/paths.js';

export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

/**
 * The name of a test's lab: `PODROUTE_TEST_LAB_PREFIX` + suffix when set (engineers running the lab tests side by
 * side each keep their own namespace prefix), else the test's own default name.
 */
export function testLabName(defaultName: string, suffix: string): string {
  const prefix = process.env.PODROUTE_TEST_LAB_PREFIX;
  return prefix === undefined || prefix === '' ? defaultName : `${prefix}${suffix}`;
}

export function netnsOf(lab: string): string[] {
  const out = execFileSync('ip', ['-j', 'netns', 'list'], { encoding: 'utf8' });
  return out.trim() === '' ? [] : (JSON.parse(out) as { name: string }[]).map((n) => n.name).filter((n) => n.startsWith(`${lab}-`));
}

/** Live processes that are the given PIDs or whose command line names the lab's directory or `--lab LAB`. */
export function processesOf(lab: string, pids: number[] = []): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let args: string[];
    let state = '';
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    } catch {
      continue;
    }
    if (state === 'Z') continue;
    const named = args.some((a, i) => a.includes(`${labDir(lab)}/`) || (a === '--lab' && args[i + 1] === lab));
    if (named || pids.includes(pid)) found.push(`${pid} ${args.join(' ')}`);
  }
  return found;
}

export interface Leftovers {
  netns: string[];
  processes: string[];
  frrDirs: string[];
  files: boolean;
  mounts: string[];
}

export function leftovers(lab: string, pids: number[] = []): Leftovers {
  const frrDirs = existsSync('/var/run/frr') ? readdirSync('/var/run/frr').filter((d) => d.startsWith(`${lab}-`)) : [];
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`/run/netns/${lab}-`) || m.startsWith(labDir(lab)));
  return { netns: netnsOf(lab), processes: processesOf(lab, pids), frrDirs, files: existsSync(labDir(lab)), mounts };
}

export const NOTHING: Leftovers = { netns: [], processes: [], frrDirs: [], files: false, mounts: [] };

