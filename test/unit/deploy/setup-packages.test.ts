// Every program the code and the tests run must come from a package the set-up installs (the Makefile's apt
// list), or from Debian's base system: a fresh machine has nothing else. This machine may have more installed by
// hand, which is how `nft` once passed here and failed on a clean one. The programs are collected from the
// sources (what execa/execFile/spawn/run start, what `ip netns exec` runs, absolute executable paths) and each is
// resolved here and traced to its package with dpkg.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
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

/** The package that owns a file; usr-merged systems register some files under /bin or /sbin. */
function owner(file: string): string | undefined {
  const real = realpathSync(file);
  const candidates = new Set([file, real, real.replace(/^\/usr\//, '/'), file.replace(/^\/usr\//, '/')]);
  for (const c of candidates) {
    try {
      return execFileSync('dpkg', ['-S', c], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(':')[0]!.trim();
    } catch {
      // not registered under this name
    }
  }
  return undefined;
}

function basePackage(pkg: string): boolean {
  const out = execFileSync('dpkg-query', ['-W', '-f', '${Priority} ${Essential}', pkg], { encoding: 'utf8' });
  return /^(required|important)\b/.test(out) || /\byes$/.test(out);
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
    for (const [program, where] of programsInSources(root)) {
      if (FROM_THE_MACHINE.has(program)) continue;
      const file = resolve(program);
      if (file === undefined) {
        problems.push(`${program} (run in ${where}) is not installed`);
        continue;
      }
      const pkg = owner(file);
      if (pkg === undefined) problems.push(`${program} (${file}, run in ${where}) belongs to no Debian package`);
      else if (!wanted.has(pkg) && !basePackage(pkg)) problems.push(`${program} (run in ${where}) comes from ${pkg}, which the set-up does not install`);
    }
    expect(problems).to.deep.equal([]);
  });
});
