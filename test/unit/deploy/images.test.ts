// The images' scripts, run for real on this machine (Debian's CNI plugins are in /usr/lib/cni here as in the
// image), and static checks of the Dockerfiles (no docker engine here: they are not built by the tests).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { renderCniConflist } from '../../../src/node/cni.js';
import { nodeSysctls } from '../../../src/node/sysctl.js';
import { CLI_MAIN, containerNamed, kustomize, only, readRepoFile, repoPath, type DaemonSet } from './manifests.js';

const execFileAsync = promisify(execFile);
const SCRIPTS = 'deploy/images/scripts';
const DEBIAN_CNI_DIR = '/usr/lib/cni';

async function runScript(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync('/bin/sh', [repoPath(path.join(SCRIPTS, script)), ...args], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Default value of a `VAR="${ENV:-default}"` line of a script. */
function scriptDefault(text: string, variable: string): string {
  const m = new RegExp(`^${variable}="\\$\\{[A-Z_]+:-([^}]*)\\}"`, 'm').exec(text);
  if (m === null) throw new Error(`no default for ${variable}`);
  return m[1] ?? '';
}

describe('deploy: image scripts', function () {
  this.timeout(30_000);
  const temps: string[] = [];
  const tempDir = async (): Promise<string> => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'h8-deploy-'));
    temps.push(dir);
    return dir;
  };
  after(async () => {
    for (const dir of temps) await rm(dir, { recursive: true, force: true });
  });

  it('all scripts are valid POSIX sh', async () => {
    for (const script of await readdir(repoPath(SCRIPTS))) {
      await execFileAsync('/bin/sh', ['-n', repoPath(path.join(SCRIPTS, script))]);
    }
  });

  describe('install-cni-plugins.sh', () => {
    const text = readRepoFile(`${SCRIPTS}/install-cni-plugins.sh`);

    it('installs every plugin of the conflist podroute writes, and loopback', () => {
      const conflist = JSON.parse(
        renderCniConflist({ podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], bridgeName: 'podroute0', networkName: 'podroute' }),
      ) as { plugins: { type: string; ipam?: { type: string } }[] };
      const types = conflist.plugins.flatMap((p) => [p.type, ...(p.ipam ? [p.ipam.type] : [])]);
      const installed = scriptDefault(text, 'plugins').split(/\s+/);
      for (const t of [...types, 'loopback']) expect(installed, t).to.include(t);
      expect(scriptDefault(text, 'source_dir')).to.equal(DEBIAN_CNI_DIR);
    });

    it('copies the missing plugins, keeps those the node has, and is idempotent', async () => {
      const dest = path.join(await tempDir(), 'opt-cni-bin');
      await mkdir(dest);
      await writeFile(path.join(dest, 'bridge'), '#!/bin/sh\n# the node\'s own bridge plugin\n');
      await chmod(path.join(dest, 'bridge'), 0o755);

      const first = await runScript('install-cni-plugins.sh', [dest]);
      expect(first.code, first.stderr).to.equal(0);
      expect(await readFile(path.join(dest, 'bridge'), 'utf8')).to.contain("the node's own");
      for (const plugin of ['host-local', 'portmap', 'loopback']) {
        const [copy, original] = await Promise.all([readFile(path.join(dest, plugin)), readFile(path.join(DEBIAN_CNI_DIR, plugin))]);
        expect(copy.equals(original), plugin).to.equal(true);
        expect((await stat(path.join(dest, plugin))).mode & 0o777).to.equal(0o755);
      }
      expect((await readdir(dest)).sort(), 'no temporary files left').to.deep.equal(['bridge', 'host-local', 'loopback', 'portmap']);
      // The real host-local answers its version query: a working binary was installed.
      const { stdout } = await execFileAsync(path.join(dest, 'host-local'), [], { env: { CNI_COMMAND: 'VERSION' } });
      expect(stdout).to.contain('cniVersion');

      const second = await runScript('install-cni-plugins.sh', [dest]);
      expect(second.code).to.equal(0);
      expect(second.stdout).to.not.contain('installed');
    });

    it('fails, naming the plugin, when the image lacks one', async () => {
      const result = await runScript('install-cni-plugins.sh', [await tempDir()], { CNI_PLUGINS: 'bridge no-such-plugin' });
      expect(result.code).to.equal(1);
      expect(result.stderr).to.contain(`${DEBIAN_CNI_DIR}/no-such-plugin is missing`);
    });
  });

  describe('node-sysctls.sh', () => {
    const text = readRepoFile(`${SCRIPTS}/node-sysctls.sh`);
    const scriptSettings = [...text.matchAll(/^set_sysctl (\S+) (\S+)$/gm)].map((m) => `net.${(m[1] ?? '').replaceAll('/', '.')}=${m[2]}`);

    it('sets exactly the agent\'s nodeSysctls() (the agent only re-reads them: its /proc/sys is read-only)', () => {
      expect(scriptSettings.sort()).to.deep.equal(nodeSysctls().map((s) => `${s.key}=${s.value}`).sort());
    });

    async function fakeProcSysNet(values: Record<string, string>): Promise<string> {
      const net = path.join(await tempDir(), 'net');
      for (const [key, value] of Object.entries(values)) {
        const file = path.join(net, ...key.split('.').slice(1));
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, `${value}\n`);
      }
      return net;
    }

    it('writes the values that differ, and only those', async () => {
      const net = await fakeProcSysNet({
        'net.ipv4.ip_forward': '0',
        'net.ipv6.conf.all.forwarding': '1',
        'net.bridge.bridge-nf-call-iptables': '0',
        'net.bridge.bridge-nf-call-ip6tables': '0',
      });
      const result = await runScript('node-sysctls.sh', [], { PROC_SYS_NET: net });
      expect(result.code, result.stderr).to.equal(0);
      for (const s of nodeSysctls()) {
        expect((await readFile(path.join(net, ...s.key.split('.').slice(1)), 'utf8')).trim(), s.key).to.equal(s.value);
      }
      const changes = result.stdout.split('\n').filter((l) => l.includes('->'));
      expect(changes.map((l) => l.split(' ')[1]).sort()).to.deep.equal([
        'net.bridge.bridge-nf-call-ip6tables',
        'net.bridge.bridge-nf-call-iptables',
        'net.ipv4.ip_forward',
      ]);
      const again = await runScript('node-sysctls.sh', [], { PROC_SYS_NET: net });
      expect(again.stdout).to.not.contain('->');
    });

    it('does not load br_netfilter (no SYS_MODULE): it fails telling how to load it on the host', async () => {
      const net = await fakeProcSysNet({ 'net.ipv4.ip_forward': '1', 'net.ipv6.conf.all.forwarding': '1' });
      // A modprobe that would succeed is never called.
      const bin = await mkdtemp(path.join(os.tmpdir(), 'podroute-modprobe-'));
      await writeFile(path.join(bin, 'modprobe'), '#!/bin/sh\ntouch "$0.called"\n', { mode: 0o755 });
      const result = await runScript('node-sysctls.sh', [], { PROC_SYS_NET: net, PATH: `${bin}:${process.env.PATH ?? ''}` });
      expect(result.code).to.equal(1);
      expect(result.stderr).to.contain('br_netfilter is not loaded');
      expect(result.stderr).to.contain('/etc/modules-load.d/');
      expect(existsSync(path.join(bin, 'modprobe.called')), 'modprobe called').to.equal(false);
    });

    it('names a sysctl the kernel does not have (IPv6 disabled)', async () => {
      const net = await fakeProcSysNet({
        'net.ipv4.ip_forward': '1',
        'net.bridge.bridge-nf-call-iptables': '1',
        'net.bridge.bridge-nf-call-ip6tables': '1',
      });
      const result = await runScript('node-sysctls.sh', [], { PROC_SYS_NET: net });
      expect(result.code).to.equal(1);
      expect(result.stderr).to.contain('no sysctl net.ipv6.conf.all.forwarding');
    });
  });

  describe('gobgpd-entrypoint.sh', () => {
    it('refuses to start gobgpd without --api-hosts (it would serve gRPC on every address)', async () => {
      const result = await runScript('gobgpd-entrypoint.sh', ['--pprof-disable']);
      expect(result.code).to.equal(2);
      expect(result.stderr).to.contain('--api-hosts is required');
    });
  });
});

interface Stage {
  from: string;
  alias?: string;
  lines: string[];
}

function dockerfileStages(text: string): { args: Map<string, string>; stages: Stage[] } {
  const joined = text.replace(/\\\n/g, ' ');
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const arg = /^ARG (\w+)=(\S+)$/.exec(line);
    if (arg && stages.length === 0) args.set(arg[1] ?? '', arg[2] ?? '');
    const from = /^FROM (\S+)(?: AS (\S+))?$/i.exec(line);
    if (from) stages.push({ from: from[1] ?? '', alias: from[2], lines: [] });
    else stages.at(-1)?.lines.push(line);
  }
  return { args, stages };
}

describe('deploy: Dockerfiles (static)', () => {
  const images = [
    { file: 'deploy/images/agent.Dockerfile', context: '.' },
    { file: 'deploy/images/gobgpd.Dockerfile', context: 'deploy/images' },
  ];

  for (const { file, context } of images) {
    describe(file, () => {
      const { args, stages } = dockerfileStages(readRepoFile(file));

      it('is from pinned bases (a version tag, never latest)', () => {
        const aliases = new Set(stages.flatMap((s) => (s.alias ? [s.alias] : [])));
        for (const stage of stages) {
          const image = stage.from.replace(/^\$\{(\w+)\}$/, (_m, name: string) => args.get(name) ?? `unset ARG ${name}`);
          if (aliases.has(image)) continue;
          expect(image, stage.from).to.match(/^[a-z0-9./-]+:\d+(\.\d+)+-[a-z]+(-slim)?$|^[a-z0-9./-]+:\d+(\.\d+)+-slim$/);
        }
      });

      it('copies only files that exist in its build context, and its .dockerignore lets them through', () => {
        const ignore = readRepoFile(`${file}.dockerignore`)
          .split('\n')
          .filter((l) => l.startsWith('!'))
          .map((l) => l.slice(1).replace(/\/$/, ''));
        for (const stage of stages) {
          for (const line of stage.lines.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
            const parts = line.split(/\s+/).slice(1);
            for (const source of parts.slice(0, -1)) {
              expect(existsSync(repoPath(path.join(context, source))), `${line}: ${source}`).to.equal(true);
              expect(ignore.some((keep) => source === keep || source.startsWith(`${keep}/`)), `${source} passes the .dockerignore`).to.equal(true);
            }
          }
        }
      });
    });
  }

  it('the agent image has the tools the agent and its init containers run, at the paths the DaemonSet uses', async () => {
    const text = readRepoFile('deploy/images/agent.Dockerfile').replace(/\\\n/g, ' ');
    const final = dockerfileStages(text).stages.at(-1);
    const install = final?.lines.find((l) => l.includes('apt-get install')) ?? '';
    for (const pkg of ['iproute2', 'iptables', 'ipset', 'containernetworking-plugins']) expect(install, pkg).to.match(new RegExp(`\\s${pkg}\\s`));
    // Nothing in the pod loads kernel modules (no SYS_MODULE): no modprobe in the image either.
    expect(install).to.not.match(/\skmod\s/);
    expect(final?.lines.join('\n')).to.contain('ln -s /opt/podroute/dist/src/cli/main.js /usr/local/bin/podroute');

    const ds = only<DaemonSet>(await kustomize('deploy/base'), 'DaemonSet', 'podroute');
    const pod = ds.spec.template.spec;
    const copied = final?.lines.find((l) => l.startsWith('COPY deploy/images/scripts/')) ?? '';
    const target = copied.split(/\s+/).at(-1) ?? '';
    for (const name of ['install-cni-plugins', 'node-sysctls']) {
      const command = containerNamed(pod, name).command?.[0] ?? '';
      expect(path.dirname(command) + '/', `${name} runs a script the image copies`).to.equal(target);
      expect(copied).to.contain(`deploy/images/scripts/${path.basename(command)}`);
    }
    // The protos come from the same Debian release as the sidecar's gobgpd.
    const gobgpd = dockerfileStages(readRepoFile('deploy/images/gobgpd.Dockerfile'));
    expect(dockerfileStages(text).args.get('DEBIAN_IMAGE')).to.equal(gobgpd.args.get('DEBIAN_IMAGE'));
  });

  it('the gobgpd image has the entrypoint the DaemonSet runs', async () => {
    const text = readRepoFile('deploy/images/gobgpd.Dockerfile');
    const ds = only<DaemonSet>(await kustomize('deploy/base'), 'DaemonSet', 'podroute');
    const entrypoint = containerNamed(ds.spec.template.spec, 'gobgpd').command?.[0];
    expect(text).to.contain(`COPY scripts/gobgpd-entrypoint.sh ${entrypoint}`);
    expect(text.replace(/\\\n/g, ' ')).to.match(/apt-get install .*\sgobgpd\b/);
  });
});

// `make images` (deploy/images/build.sh: mmdebstrap, podman, buildah) and the Dockerfiles must describe one image.
// The build itself is not run here (minutes, and a Debian mirror): its settings are read from the script, and its
// layer of files is staged for real by the script's own `stage` step and compared with the Dockerfile's final stage.
const BUILD_SCRIPT = 'deploy/images/build.sh';
const DEBIAN_RELEASE_OF_SUITE: Record<string, string> = { bookworm: '12', trixie: '13' };

/** build.sh's `readonly NAME=value` settings, single quotes removed. */
function buildSettings(): Map<string, string> {
  const settings = new Map<string, string>();
  for (const m of readRepoFile(BUILD_SCRIPT).matchAll(/^readonly (\w+)=(.*)$/gm)) settings.set(m[1] ?? '', (m[2] ?? '').replace(/^'(.*)'$/, '$1'));
  return settings;
}

function packageList(image: string): string[] {
  return readRepoFile(`deploy/images/packages-${image}.txt`)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** The instruction's argument in the final stage (the last one when repeated). */
function instruction(stage: Stage, name: string): string | undefined {
  return stage.lines.filter((l) => l.startsWith(`${name} `)).at(-1)?.slice(name.length + 1).trim();
}

async function filesUnder(root: string, dir = ''): Promise<string[]> {
  const entries = await readdir(path.join(root, dir), { withFileTypes: true });
  const files: string[] = [];
  for (const e of entries) files.push(...(e.isDirectory() ? await filesUnder(root, path.join(dir, e.name)) : [path.join('/', dir, e.name)]));
  return files;
}

describe('deploy: make images builds the images the Dockerfiles describe', function () {
  this.timeout(60_000);
  const settings = buildSettings();
  const images = [
    { name: 'agent', prefix: 'AGENT', file: 'deploy/images/agent.Dockerfile', context: '.' },
    { name: 'gobgpd', prefix: 'GOBGPD', file: 'deploy/images/gobgpd.Dockerfile', context: 'deploy/images' },
  ];
  const temps: string[] = [];
  after(async () => {
    for (const dir of temps) await rm(dir, { recursive: true, force: true });
  });

  for (const { name, prefix, file, context } of images) {
    describe(`podroute/${name}: ${file} and ${BUILD_SCRIPT}`, () => {
      const { args, stages } = dockerfileStages(readRepoFile(file));
      const final = stages.at(-1)!;
      const setting = (key: string): string => {
        const value = settings.get(`${prefix}_${key}`);
        if (value === undefined) throw new Error(`${BUILD_SCRIPT} has no ${prefix}_${key}`);
        return value;
      };

      it(`installs the same Debian packages (deploy/images/packages-${name}.txt) and removes the apt lists`, () => {
        const run = final.lines.find((l) => l.includes('apt-get install')) ?? '';
        const installed = /--no-install-recommends\s+(.*?)\s+&&/.exec(run)?.[1]?.split(/\s+/) ?? [];
        expect(installed.sort()).to.deep.equal(packageList(name).sort());
        expect(run).to.contain('rm -rf /var/lib/apt/lists/*');
        expect(readRepoFile(BUILD_SCRIPT)).to.contain(`packages() { grep -Ev '^(#|$)' "deploy/images/packages-$1.txt"; }`);
      });

      it('is on the same Debian release', () => {
        const base = final.from.replace(/^\$\{(\w+)\}$/, (_m, arg: string) => args.get(arg) ?? `unset ARG ${arg}`);
        const release = DEBIAN_RELEASE_OF_SUITE[setting('SUITE')];
        expect(release, `suite ${setting('SUITE')}`).to.not.equal(undefined);
        expect(base).to.match(new RegExp(`^debian:${release}\\.\\d+-slim$`));
      });

      it('has the same entrypoint, command, working directory, user, PATH and stop signal', () => {
        expect(JSON.parse(instruction(final, 'ENTRYPOINT') ?? 'null')).to.deep.equal(JSON.parse(setting('ENTRYPOINT')));
        expect(JSON.parse(instruction(final, 'CMD') ?? 'null')).to.deep.equal(JSON.parse(setting('CMD')));
        expect(instruction(final, 'WORKDIR')).to.equal(setting('WORKDIR'));
        expect(instruction(final, 'USER')).to.equal(setting('USER'));
        expect(instruction(final, 'ENV')).to.equal(`PATH=${settings.get('IMAGE_PATH')}`);
        expect(instruction(final, 'STOPSIGNAL') ?? 'SIGTERM').to.equal(setting('STOPSIGNAL'));
      });

      it('has the same files at the same paths, modes and links (the script stages its layer for real)', async () => {
        const tmp = await mkdtemp(path.join(os.tmpdir(), 'podroute-image-layer-'));
        temps.push(tmp);
        const layer = path.join(tmp, 'layer');
        const nodeModules = path.join(tmp, 'node_modules');
        await mkdir(layer);
        await mkdir(path.join(nodeModules, 'marker'), { recursive: true });
        await writeFile(path.join(nodeModules, 'marker', 'index.js'), '');
        const compiled = path.resolve(path.dirname(CLI_MAIN), '../..');
        await execFileAsync('bash', [repoPath(BUILD_SCRIPT), 'stage', name, layer], {
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DIST: compiled, NODE_MODULES: nodeModules },
        });

        // Every COPY and link of the Dockerfile's final stage is in the layer; nothing else is.
        let cwd = '/';
        const expected: string[] = [];
        for (const line of final.lines) {
          const [op, ...words] = line.split(/\s+/);
          if (op === 'WORKDIR') cwd = path.posix.resolve(cwd, words[0] ?? '');
          if (op === 'COPY') {
            const fromStage = words[0]?.startsWith('--from=') === true;
            const operands = fromStage ? words.slice(1) : words;
            const dest = path.posix.resolve(cwd, operands.at(-1) ?? '');
            const sources = operands.slice(0, -1);
            for (const source of sources) {
              const target = sources.length > 1 || (!fromStage && (operands.at(-1) ?? '').endsWith('/')) ? path.posix.join(dest, path.basename(source)) : dest;
              expected.push(target);
              if (fromStage) {
                expect((await readdir(path.join(layer, target))).length, `${line}: ${target} is filled`).to.be.greaterThan(0);
              } else {
                const [staged, original] = await Promise.all([readFile(path.join(layer, target)), readFile(repoPath(path.join(context, source)))]);
                expect(staged.equals(original), `${line}: ${target}`).to.equal(true);
              }
            }
          }
          if (op !== 'RUN') continue;
          for (const command of words.join(' ').split('&&').map((c) => c.trim().split(/\s+/))) {
            if (command[0] === 'ln' && command[1] === '-s') {
              expected.push(command[3] ?? '');
              expect(await readlink(path.join(layer, command[3] ?? '')), line).to.equal(command[2]);
            }
            if (command[0] !== 'chmod') continue;
            for (const operand of command.slice(2)) {
              const resolved = path.posix.resolve(cwd, operand);
              const dir = path.dirname(resolved);
              const pattern = new RegExp(`^${path.basename(resolved).replaceAll('.', '\\.').replaceAll('*', '.*')}$`);
              const matched = (await readdir(path.join(layer, dir))).filter((f) => pattern.test(f));
              expect(matched, `${line}: ${operand}`).to.not.be.empty;
              for (const f of matched) expect((await stat(path.join(layer, dir, f))).mode & 0o7777, `${dir}/${f}`).to.equal(Number.parseInt(command[1] ?? '', 8));
            }
          }
        }
        for (const staged of await filesUnder(layer)) {
          expect(expected.some((p) => staged === p || staged.startsWith(`${p}/`)), `${staged} is in the layer, not in ${file}`).to.equal(true);
        }
      });
    });
  }
});
