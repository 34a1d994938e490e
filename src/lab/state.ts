// `lab up`'s record of what it built. Written incrementally and atomically, each resource recorded BEFORE it is
// created (namespaces, FRR pathspaces) or right after it exists (process PIDs), so that `lab down` can clean up
// after a run that crashed halfway.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { labPaths } from './paths.js';

export const processRecordSchema = z.object({
  /** What it is: "apiserver", "gobgpd/r1n1", "zebra/tor1", "kubelet/r1n1", "podserver/ext1". */
  name: z.string(),
  pid: z.number().int().positive(),
  /** The namespace it runs in; undefined for the host namespace. */
  netns: z.string().optional(),
  /** Arguments /proc/PID/cmdline must contain before `lab down` may signal the PID (guards against PID reuse). */
  cmdlineMarkers: z.array(z.string()).min(1),
  /** The command line it was started with (namespace entry included), so the lab can start it again. */
  argv: z.array(z.string()).min(1).optional(),
});

export const labStateSchema = z.object({
  version: z.literal(1),
  lab: z.string(),
  topologyFile: z.string(),
  /** The topology as it was when the lab came up (status and down must not depend on the file still existing). */
  topologyText: z.string(),
  phase: z.enum(['building', 'up', 'failed']),
  createdAt: z.string(),
  netns: z.array(z.string()),
  frrPathspaces: z.array(z.string()),
  processes: z.array(processRecordSchema),
  apiPort: z.number().int().optional(),
  error: z.string().optional(),
});

export type ProcessRecord = z.infer<typeof processRecordSchema>;
export type LabState = z.infer<typeof labStateSchema>;

export class LabStateError extends Error {
  readonly code = 'LAB_STATE_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'LabStateError';
  }
}

export function newLabState(lab: string, topologyFile: string, topologyText: string): LabState {
  return {
    version: 1,
    lab,
    topologyFile,
    topologyText,
    phase: 'building',
    createdAt: new Date().toISOString(),
    netns: [],
    frrPathspaces: [],
    processes: [],
  };
}

/** Synchronous on purpose: a record must be on disk before the next step, even if the process dies right after. */
export function writeLabState(state: LabState): void {
  const file = labPaths(state.lab).stateFile;
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, file);
}

/** The recorded state, or undefined when the lab has none (never started, or already down). */
export function readLabState(lab: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(labPaths(lab).stateFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = labStateSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new LabStateError(`${labPaths(lab).stateFile}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Mutable handle used while building: every change goes to disk at once. */
export class LabStateRecorder {
  constructor(readonly state: LabState) {
    writeLabState(state);
  }

  recordNetns(name: string): void {
    if (!this.state.netns.includes(name)) this.state.netns.push(name);
    writeLabState(this.state);
  }

  recordFrrPathspace(pathspace: string): void {
    if (!this.state.frrPathspaces.includes(pathspace)) this.state.frrPathspaces.push(pathspace);
    writeLabState(this.state);
  }

  recordProcess(record: ProcessRecord): void {
    this.state.processes = this.state.processes.filter((p) => p.name !== record.name);
    this.state.processes.push(record);
    writeLabState(this.state);
  }

  update(patch: Partial<Pick<LabState, 'phase' | 'apiPort' | 'error'>>): void {
    Object.assign(this.state, patch);
    writeLabState(this.state);
  }
}
