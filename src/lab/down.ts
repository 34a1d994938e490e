// `podroute lab down`: everything a lab made, gone (processes, namespaces, FRR pathspace directories, mounts,
// files), found from its recorded state and, for what a crash left unrecorded, by name.
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../observe/log.js';
import { deleteNetns, listNetns, netnsPids } from './netns.js';
import { checkLabName, LAB_NAME_PATTERN, LAB_ROOT, labDir, labPaths } from './paths.js';
import { cmdlineMatches, processAlive, readCmdline, terminate } from './processes.js';
import { readLabState, type LabState } from './state.js';

/** Directory where FRR's `-N PATHSPACE` creates its per-instance directory. */
export const FRR_STATE_ROOT = '/var/run/frr';

export interface LabDownOptions {
  log?: Logger;
  /** How long processes get after SIGTERM before SIGKILL (default 3 s). */
  graceMs?: number;
}

/** Labs that have a directory under LAB_ROOT (every `up` creates it before anything else). */
export function listLabs(): string[] {
  try {
    return readdirSync(LAB_ROOT, { withFileTypes: true })
      .filter((d) => d.isDirectory() && LAB_NAME_PATTERN.test(d.name))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

/** Processes on the host whose command line names this lab's directory or `--lab NAME`: ours, by construction. */
function labProcessesByCmdline(lab: string): Map<number, string> {
  const found = new Map<number, string>();
  const dirPrefix = labDir(lab) + '/';
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || pid === process.ppid) continue;
    const args = readCmdline(pid);
    if (args === undefined) continue;
    const labFlag = args.some((a, i) => (a === '--lab' && args[i + 1] === lab) || a === `--lab=${lab}`);
    if (labFlag || args.some((a) => a.includes(dirPrefix) || a.endsWith(labDir(lab)))) found.set(pid, args.slice(0, 3).join(' '));
  }
  return found;
}

function mountsOf(lab: string): string[] {
  const dirPrefix = labDir(lab) + '/';
  const netnsPrefix = `/run/netns/${lab}-`;
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dirPrefix) || m === labDir(lab) || m.startsWith(netnsPrefix));
}

/** Everything `up` made, gone: processes, pod and member namespaces, FRR pathspace dirs, mounts, files. */
export async function labDown(lab: string, options: LabDownOptions = {}): Promise<void> {
  checkLabName(lab);
  const { log } = options;
  const graceMs = options.graceMs ?? 3_000;
  const paths = labPaths(lab);
  let state: LabState | undefined;
  try {
    state = readLabState(lab);
  } catch (err) {
    log?.warn('lab state unreadable; cleaning by names', { lab, error: err instanceof Error ? err.message : String(err) });
  }
  const ours = (ns: string): boolean => ns.startsWith(`${lab}-`);

  // 1. Recorded processes, each only if /proc/PID/cmdline still is the process we started.
  const victims = new Map<number, string>();
  for (const p of state?.processes ?? []) {
    if (cmdlineMatches(p.pid, p.cmdlineMarkers)) victims.set(p.pid, p.name);
    else if (processAlive(p.pid)) log?.warn('recorded PID now belongs to another process; left alone', { pid: p.pid, name: p.name });
  }
  await terminate(victims, graceMs, log);

  // 2. Whatever else runs inside our namespaces (pod servers, a daemon started just before a crash) or names our
  //    lab on its command line.
  const namespaces = [...new Set([...(state?.netns ?? []), ...(await listNetns()).filter(ours)])].filter(ours);
  const existing = new Set(await listNetns());
  const stragglers = labProcessesByCmdline(lab);
  // Each namespace is asked on its own and all at once: every question is an `ip` process, ~17 of them per lab.
  const pidsByNetns = await Promise.all(namespaces.filter((ns) => existing.has(ns)).map(async (ns) => ({ ns, pids: await netnsPids(ns) })));
  for (const { ns, pids } of pidsByNetns) for (const pid of pids) if (pid !== process.pid) stragglers.set(pid, `in netns ${ns}`);
  await terminate(stragglers, graceMs, log);

  // 3. Namespaces: pods first (their veths live in node namespaces), then nodes, routers, hosts; each group all at
  //    once (deleteNetns takes a veth whose other end went first).
  const podPrefix = paths.podNetns('', '').replace(/-+$/, '-');
  const present = new Set(await listNetns());
  const ordered = namespaces.filter((n) => present.has(n));
  for (const group of [ordered.filter((n) => n.startsWith(podPrefix)), ordered.filter((n) => !n.startsWith(podPrefix))]) await Promise.all(group.map(deleteNetns));

  // 4. FRR pathspace directories.
  const pathspaces = new Set(state?.frrPathspaces ?? []);
  try {
    for (const entry of readdirSync(FRR_STATE_ROOT)) if (ours(entry)) pathspaces.add(entry);
  } catch {
    // no /var/run/frr: nothing of ours there
  }
  for (const ps of pathspaces) if (ours(ps)) await rm(path.join(FRR_STATE_ROOT, ps), { recursive: true, force: true });

  // 5. Mounts (none expected: `ip netns delete` unmounts its own) and finally the files.
  for (const mount of mountsOf(lab).reverse()) {
    const result = await execa('umount', ['-l', mount], { reject: false });
    if (result.exitCode !== 0) log?.warn('umount failed', { mount, error: result.stderr });
  }
  await rm(paths.dir, { recursive: true, force: true });
  log?.info('lab down', { lab, processes: victims.size + stragglers.size, namespaces: ordered.length });
}

/** `down --all`: every lab under LAB_ROOT whose name starts with `prefix` (all labs without one). */
export async function labDownAll(options: LabDownOptions & { prefix?: string } = {}): Promise<string[]> {
  const labs = listLabs().filter((l) => options.prefix === undefined || l.startsWith(options.prefix));
  for (const lab of labs) await labDown(lab, options);
  return labs;
}
