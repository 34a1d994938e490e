// Where a profiled process spent its CPU: self time per function from a V8 .cpuprofile (node --cpu-prof).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface ProfileEntry {
  fn: string;
  where: string;
  ms: number;
  percent: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time of the busiest functions of the newest profile in `dir` (idle and program time left out). */
export function topSelfTime(dir: string, count = 10): { busyMs: number; top: ProfileEntry[] } | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  const file = files[files.length - 1];
  if (file === undefined) return undefined;
  const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const us = profile.timeDeltas[i] ?? 0;
    if (node === undefined) return;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)' || functionName === '(program)') return;
    busyUs += us;
    const where = url === '' ? '' : `${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
    const key = `${functionName}@${where}`;
    const entry = self.get(key) ?? { fn: functionName || '(anonymous)', where, us: 0 };
    entry.us += us;
    self.set(key, entry);
  });
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, count)
    .map((e) => ({ fn: e.fn, where: e.where, ms: e.us / 1000, percent: busyUs === 0 ? 0 : (e.us / busyUs) * 100 }));
  return { busyMs: busyUs / 1000, top };
}
