// The NetworkPolicy cases of the upstream netpol e2e suite and cyclonus, as steps against the two-racks lab
// (namespaces x, y, z labelled ns=<name>; pods a, b, c labelled pod=<name>; ports 80/81 TCP+UDP named
// serve-<port>-<tcp|udp>). The cases live in truth/*.yaml as what a user types: each step is a list of kubectl
// commands (a manifest for `kubectl apply -f -` is written out as YAML), so every object reaches the lab API
// server as wire-format YAML through kubectl, with kubectl's strict field validation. The expected matrix comes
// from the oracle on the objects the API server then holds, so a case only says what to do, never what to expect.
//
// Where the pods sit (same-node pairs: x/a y/b z/c on r1n1, x/b y/c on r1n2, x/c z/a on r2n1, y/a z/b on r2n2):
// every case has allowed and denied pairs both on one node and across nodes and racks.
//
// A manifest may name a pod's address as {{ip NAMESPACE/POD FAMILY}} (ipBlock cases): it is filled in from the
// running lab before kubectl sees the text.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { IpFamily } from '../../../src/routes/ip-prefix.js';
import { repoRoot } from '../lab/leftovers.js';

/** One command of a step: `kubectl ARGS` (with `stdin` piped in), or a wait until a pod runs and serves. */
export type TruthCommand = { kubectl: string[]; stdin?: string } | { waitForPod: string };

export interface TruthStep {
  name: string;
  run: TruthCommand[];
}

export interface TruthCase {
  name: string;
  file: string;
  steps: TruthStep[];
}

/** What a manifest may need from the running lab: pod addresses. */
export interface TruthContext {
  ip(pod: string, family: IpFamily): string;
}

export const TRUTH_DIR = path.join(repoRoot(), 'test', 'lab', 'policy', 'truth');

class TruthCaseError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'TruthCaseError';
  }
}

function readCommand(file: string, where: string, raw: unknown): TruthCommand {
  if (typeof raw !== 'object' || raw === null) throw new TruthCaseError(file, `${where}: not a mapping`);
  const r = raw as Record<string, unknown>;
  if (typeof r.waitForPod === 'string' && Object.keys(r).length === 1) return { waitForPod: r.waitForPod };
  const args = r.kubectl;
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) throw new TruthCaseError(file, `${where}: needs kubectl: [args...] or waitForPod`);
  if (r.stdin !== undefined && typeof r.stdin !== 'string') throw new TruthCaseError(file, `${where}.stdin: not text`);
  const extra = Object.keys(r).filter((k) => k !== 'kubectl' && k !== 'stdin');
  if (extra.length > 0) throw new TruthCaseError(file, `${where}: unknown keys ${extra.join(', ')}`);
  return r.stdin === undefined ? { kubectl: args } : { kubectl: args, stdin: r.stdin };
}

/** Every case under truth/, in file-name order. */
export function loadTruthCases(dir = TRUTH_DIR): TruthCase[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => {
      const doc = YAML.parse(readFileSync(path.join(dir, f), 'utf8')) as { name?: unknown; steps?: unknown };
      if (typeof doc.name !== 'string' || !Array.isArray(doc.steps)) throw new TruthCaseError(f, 'needs name and steps');
      const steps = doc.steps.map((s: unknown, i): TruthStep => {
        const step = s as { name?: unknown; run?: unknown };
        if (typeof step.name !== 'string' || !Array.isArray(step.run)) throw new TruthCaseError(f, `steps[${i}] needs name and run`);
        return { name: step.name, run: step.run.map((c: unknown, j) => readCommand(f, `steps[${i}].run[${j}]`, c)) };
      });
      return { name: doc.name, file: f, steps };
    });
}

/** Fills in {{ip NAMESPACE/POD FAMILY}} placeholders. */
export function renderManifest(text: string, ctx: TruthContext): string {
  return text.replace(/\{\{ip ([a-z0-9-]+\/[a-z0-9-]+) ([46])\}\}/g, (_m, pod: string, family: string) => ctx.ip(pod, family === '6' ? 'ipv6' : 'ipv4'));
}
