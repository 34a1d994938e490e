// Every program the code and the tests run must come from a package the set-up installs (the Makefile's apt
// list), or from Debian's base system: a fresh machine has nothing else. This machine may have more installed by
// hand, which is how `nft` once passed here and failed on a clean one. The programs are collected from the
// sources (what execa/execFile/spawn/run start, what `ip netns exec` runs, absolute executable paths) and each is
// resolved here and traced to its package with dpkg.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../lab/lab/leftovers.js';

const SOURCE_DIRS = ['src', 'test', 'bench'];
/** What starts a program, capturing its name or path. */
const PATTERNS = [
  /(?<![.\w])(?:execa|execaSync|execFile|execFileSync|spawn|spawnSync)\(\s*'([^'\s]+)'/g,
  // The command runners take an argv array, sometimes after a netns or runner argument.
  /\b(?:run|sh|inNs|start|restore|localRunner)\(\s*(?:[^,()'`]+,\s*)?\[\s*'([^'\s]+)'/g,
  /'netns',\s*'exec',\s*[^,\]]+,\s*'([^'\s]+)'/g,
  /netns exec \$\{[^}]+\} ([a-z0-9-]+)/g,
  /'(\/usr\/(?:s?bin|lib\/[a-z0-9-]+)\/[a-z0-9-]+)'/g,
];
/** The machine's own runtime (Node.js comes with the machine, not from apt: README says so). */
const FROM_THE_MACHINE = new Set(['node']);
const SEARCH_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function programsInSources(root: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of SOURCE_DIRS.flatMap((d) => sourceFiles(path.join(root, d)))) {
    const text = readFileSync(file, 'utf8');
    for (const pattern of PATTERNS) {
      for (const m of text.matchAll(pattern)) if (!found.has(m[1]!)) found.set(m[1]!, path.relative(root, file));
    }
  }
  return found;
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function resolve(program: string): string | undefined {
  if (program.startsWith('/')) return executable(program) ? program : undefined;
  return SEARCH_PATH.map((d) => path.join(d, program)).find(executable);
}

/** Names a file may be registered under in dpkg: usr-merged systems register some files under /bin or /sbin. */
function registeredNames(file: string): string[] {
  const real = realpathSync(file);
  return [...new Set([file, real, real.replace(/^\/usr\//, '/'), file.replace(/^\/usr\//, '/')])];
}

/**
 * The package that owns each file (undefined: none), under the first of its registered names that dpkg knows.
 * One `dpkg -S` for all of them: each call reads the whole package database (~0.3 s of CPU, seconds on a busy machine).
 */
function owners(files: string[]): Map<string, string | undefined> {
  const names = [...new Set(files.flatMap(registeredNames))];
  // Exit status 1 when some name belongs to no package: the others are still listed.
  const out = names.length === 0 ? '' : spawnSync('dpkg', ['-S', ...names], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).stdout;
  const packageOf = new Map<string, string>();
  for (const line of out.split('\n')) {
    const colon = line.lastIndexOf(': ');
    if (colon < 0 || line.startsWith('diversion by ')) continue;
    packageOf.set(line.slice(colon + 2), line.slice(0, colon).trim());
  }
  return new Map(files.map((f) => [f, registeredNames(f).map((n) => packageOf.get(n)).find((p) => p !== undefined)]));
}

/** Which of the packages belong to Debian's base system (priority required or important, or essential): one query. */
function basePackages(pkgs: string[]): Set<string> {
  const unique = [...new Set(pkgs)];
  if (unique.length === 0) return new Set();
  // Exit status 1 when some name is no package: the others are still listed.
  const out = spawnSync('dpkg-query', ['-W', '-f', '${Package}\t${binary:Package}\t${Priority} ${Essential}\n', ...unique], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).stdout;
  const base = new Set<string>();
  for (const line of out.split('\n')) {
    const [name, qualified, status] = line.split('\t');
    if (status !== undefined && (/^(required|important)\b/.test(status) || /\byes$/.test(status))) base.add(name!).add(qualified!);
  }
  return base;
}

function setupPackages(root: string): Set<string> {
  const makefile = readFileSync(path.join(root, 'Makefile'), 'utf8').replace(/\\\n/g, ' ');
  const list = /^APT_PACKAGES\s*:=\s*(.+)$/m.exec(makefile);
  if (list === null) throw new Error('no APT_PACKAGES in the Makefile');
  // kubectl: the set-up installs Debian's kubernetes-client unless a kubectl is already there.
  return new Set([...list[1]!.trim().split(/\s+/), 'kubernetes-client', 'kubectl']);
}

describe('set-up: every program the code and the tests run is installed by the set-up', function () {
  this.timeout(60_000);
  const root = repoRoot();

  it('finds the programs podroute runs in its sources (the collector is not blind)', () => {
    const programs = programsInSources(root);
    for (const known of ['ip', 'iptables-restore', 'ipset', 'gobgpd', 'vtysh', 'kubectl', 'nft', '/usr/lib/frr/zebra']) {
      expect([...programs.keys()], known).to.include(known);
    }
  });

  it('each one exists here and comes from the Makefile apt list or the base system', () => {
    const wanted = setupPackages(root);
    const problems: string[] = [];
    const installed: Array<{ program: string; where: string; file: string }> = [];
    for (const [program, where] of programsInSources(root)) {
      if (FROM_THE_MACHINE.has(program)) continue;
      const file = resolve(program);
      if (file === undefined) problems.push(`${program} (run in ${where}) is not installed`);
      else installed.push({ program, where, file });
    }
    const ownerOf = owners(installed.map((i) => i.file));
    const base = basePackages([...ownerOf.values()].filter((p): p is string => p !== undefined && !wanted.has(p)));
    for (const { program, where, file } of installed) {
      const pkg = ownerOf.get(file);
      if (pkg === undefined) problems.push(`${program} (${file}, run in ${where}) belongs to no Debian package`);
      else if (!wanted.has(pkg) && !base.has(pkg)) problems.push(`${program} (run in ${where}) comes from ${pkg}, which the set-up does not install`);
    }
    expect(problems).to.deep.equal([]);
  });
});
