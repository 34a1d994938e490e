// Where a profiled process spent its CPU: self time per function from a V8 .cpuprofile (node --cpu-prof), and
// the inclusive time of podroute's own functions (which of our loops or resyncs the time was spent under).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface ProfileEntry {
  fn: string;
  where: string;
  ms: number;
  percent: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  /** Monotonic clock (CLOCK_MONOTONIC), µs: the same clock as process.hrtime. */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A part of the profile's time: monotonic µs, as `process.hrtime.bigint() / 1000n` reads it in any process. */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

/**
 * The newest main-thread .cpuprofile in `dir`, or undefined. Node writes one per thread, named
 * CPU.<date>.<time>.<pid>.<thread id>.<sequence>.cpuprofile: the agent's command worker has its own.
 */
export function newestProfile(dir: string): string | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && f.split('.')[4] === '0').sort();
  const file = files[files.length - 1];
  return file === undefined ? undefined : path.join(dir, file);
}

function where(url: string, lineNumber: number): string {
  return url === '' ? '' : `${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
}

/** Calls `visit(nodeId, µs)` for every sample inside the window (all of them without a window). */
function forEachSample(profile: CpuProfile, window: ProfileWindow | undefined, visit: (id: number, us: number) => void): void {
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    t += us;
    if (window !== undefined && (t < window.fromUs || t > window.toUs)) return;
    visit(id, us);
  });
}

function isIdle(functionName: string): boolean {
  return functionName === '(idle)' || functionName === '(program)';
}

/** Self time of the busiest functions of the newest profile in `dir` (idle and program time left out). */
export function topSelfTime(dir: string, count = 10, window?: ProfileWindow): { busyMs: number; top: ProfileEntry[] } | undefined {
  const file = newestProfile(dir);
  if (file === undefined) return undefined;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  forEachSample(profile, window, (id, us) => {
    const node = byId.get(id);
    if (node === undefined) return;
    const { functionName, url, lineNumber } = node.callFrame;
    if (isIdle(functionName)) return;
    busyUs += us;
    const at = where(url, lineNumber);
    const key = `${functionName}@${at}`;
    const entry = self.get(key) ?? { fn: functionName || '(anonymous)', where: at, us: 0 };
    entry.us += us;
    self.set(key, entry);
  });
  return { busyMs: busyUs / 1000, top: rank(self, busyUs, count) };
}

/**
 * Inclusive time of functions whose script URL contains `urlPart` (podroute's own code: '/src/'): each sample
 * counts once for every such function on its stack, so a loop's figure holds everything it called.
 */
export function inclusiveTime(dir: string, urlPart: string, count = 15, window?: ProfileWindow): { busyMs: number; top: ProfileEntry[] } | undefined {
  const file = newestProfile(dir);
  if (file === undefined) return undefined;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const total = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  forEachSample(profile, window, (id, us) => {
    const leaf = byId.get(id);
    if (leaf === undefined || isIdle(leaf.callFrame.functionName)) return;
    busyUs += us;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
      if (!url.includes(urlPart)) continue;
      const w = where(url, lineNumber);
      const key = `${functionName}@${w}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const entry = total.get(key) ?? { fn: functionName || '(anonymous)', where: w, us: 0 };
      entry.us += us;
      total.set(key, entry);
    }
  });
  return { busyMs: busyUs / 1000, top: rank(total, busyUs, count) };
}

function rank(entries: Map<string, { fn: string; where: string; us: number }>, busyUs: number, count: number): ProfileEntry[] {
  return [...entries.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, count)
    .map((e) => ({ fn: e.fn, where: e.where, ms: e.us / 1000, percent: busyUs === 0 ? 0 : (e.us / busyUs) * 100 }));
}
