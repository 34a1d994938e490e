// Measured figures of the fault tests, written as the tests run into results/faults.json (one file per run of the
// faults suite; docs/resilience.md is generated from it by write-report.ts).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../lab/leftovers.js';

export interface FaultRecord {
  title: string;
  target: string;
  passed: boolean;
  figures: Record<string, unknown>;
  at: string;
}

export interface FaultResults {
  run: { startedAt: string; commit: string; topology: string; settings: Record<string, unknown> };
  faults: Record<string, FaultRecord>;
}

/** test/lab/resilience/results of the repository (also when run from a build dir). */
export function resultsDir(): string {
  return path.join(repoRoot(), 'test', 'lab', 'resilience', 'results');
}

export const FAULTS_FILE = (): string => path.join(resultsDir(), 'faults.json');

function currentCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', cwd: repoRoot() }).trim();
  } catch {
    return 'unknown'; // not a checkout
  }
}

export function startRun(topology: string, settings: Record<string, unknown>): void {
  const results: FaultResults = { run: { startedAt: new Date().toISOString(), commit: currentCommit(), topology, settings }, faults: {} };
  mkdirSync(resultsDir(), { recursive: true });
  writeFileSync(FAULTS_FILE(), JSON.stringify(results, null, 2) + '\n');
}

/** Adds (or replaces) one fault's figures in the file of this run. */
export function recordFault(id: string, record: Omit<FaultRecord, 'at'>): void {
  const results = JSON.parse(readFileSync(FAULTS_FILE(), 'utf8')) as FaultResults;
  results.faults[id] = { ...record, at: new Date().toISOString() };
  writeFileSync(FAULTS_FILE(), JSON.stringify(results, null, 2) + '\n');
}

/** Figures of the hostile-peer tests (hostile-bgp, flapping), each stamped with its own time and commit. */
export interface HostilePeerRecord extends FaultRecord {
  commit: string;
}

export const HOSTILE_FILE = (): string => path.join(resultsDir(), 'hostile-peers.json');

/** Adds (or replaces) one hostile-peer test's figures; the other tests' entries stay (they run in other files). */
export function recordHostilePeer(id: string, record: Omit<FaultRecord, 'at'>): void {
  const file = HOSTILE_FILE();
  let results: Record<string, HostilePeerRecord> = {};
  try {
    results = JSON.parse(readFileSync(file, 'utf8')) as Record<string, HostilePeerRecord>;
  } catch {
    // first record
  }
  results[id] = { ...record, at: new Date().toISOString(), commit: currentCommit() };
  mkdirSync(resultsDir(), { recursive: true });
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
}
