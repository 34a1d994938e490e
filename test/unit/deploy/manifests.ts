// Helpers of the deploy tests: the repository's files, `kubectl kustomize` output, and the real
// `podroute agent --check-config` of the compiled CLI next to these tests (dist/ or .build/<x>/).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { findProjectRoot } from '../../../src/bgp/gobgp-proto.js';
import type { WireContainer, WirePodSpec, WireProbe, WireVolume } from '../../../src/lab/kubelet/podman-pod.js';

const execFileAsync = promisify(execFile);

export const REPO = findProjectRoot(import.meta.url);
/** The compiled CLI of the same build as this test. */
export const CLI_MAIN = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));

export const BASE = 'deploy/base';
export const OVERLAYS = ['deploy/overlays/node-mesh', 'deploy/overlays/as-per-rack', 'deploy/overlays/dual-stack'] as const;
export const KUSTOMIZATIONS = [BASE, ...OVERLAYS] as const;

export function repoPath(relative: string): string {
  return path.join(REPO, relative);
}

export function readRepoFile(relative: string): string {
  return readFileSync(repoPath(relative), 'utf8');
}

/** A Kubernetes object as parsed from YAML: only the fields the tests look at are typed. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

export function parseYamlDocuments(text: string, source: string): unknown[] {
  const docs = YAML.parseAllDocuments(text);
  const values: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) values.push(value);
  }
  return values;
}

const builds = new Map<string, Promise<K8sObject[]>>();

/** `kubectl kustomize DIR` (offline), parsed; cached per directory. */
export function kustomize(dir: string): Promise<K8sObject[]> {
  let build = builds.get(dir);
  if (build === undefined) {
    build = execFileAsync('kubectl', ['kustomize', repoPath(dir)], { maxBuffer: 16 * 1024 * 1024 }).then(({ stdout }) =>
      parseYamlDocuments(stdout, `kubectl kustomize ${dir}`).map((o) => o as K8sObject),
    );
    builds.set(dir, build);
  }
  return build;
}

export function only<T extends K8sObject>(objects: K8sObject[], kind: string, name?: string): T {
  const matches = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (matches.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${matches.length}`);
  return matches[0] as T;
}

// ---- the parts of a DaemonSet the tests read -----------------------------------------------------------------

// The wire shapes of the lab's podman kubelet (src/lab/kubelet/podman-pod.ts), plus the fields only these tests read.
export type Probe = WireProbe;
export type Container = WireContainer;
export type Volume = WireVolume;

export interface PodSpec extends WirePodSpec {
  priorityClassName?: string;
  tolerations?: { key?: string; operator?: string; effect?: string }[];
}

export interface DaemonSet extends K8sObject {
  spec: { updateStrategy?: { type?: string }; template: { spec: PodSpec } };
}

export function containerNamed(pod: PodSpec, name: string): Container {
  const found = [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === name);
  if (found === undefined) throw new Error(`no container ${name}`);
  return found;
}

export function volumeNamed(pod: PodSpec, name: string): Volume {
  const found = (pod.volumes ?? []).find((v) => v.name === name);
  if (found === undefined) throw new Error(`no volume ${name}`);
  return found;
}

/** The volume mounted at mountPath in container c. */
export function volumeAt(pod: PodSpec, c: Container, mountPath: string): Volume {
  const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === mountPath);
  if (mount === undefined) throw new Error(`container ${c.name} mounts nothing at ${mountPath}`);
  return volumeNamed(pod, mount.name);
}

/** The value following `flag` in an argv (`--flag value`). */
export function flagValue(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i === -1 ? undefined : argv[i + 1];
}

/** The agent's effective configuration from `podroute agent --check-config` run on the ConfigMap's config text. */
export interface EffectiveConfig {
  gobgp: { target: string };
  cluster: { asn: number; podRanges: string[] };
  bgp: {
    mesh: string;
    peers: { address: string; asn: number; passwordFile?: string; nodeSelector?: { matchLabels?: Record<string, string> } }[];
  };
  cni: { confDir: string; binDir: string };
  metrics: { address: string };
}

export interface CheckConfigResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * `secrets`: the files of the Secret mounted at the config's bgp.passwordDir (key -> content), as kubelet would
 * mount them: --check-config reads every password file. They are written to a temporary directory that stands in
 * for passwordDir (the config's paths are moved there and the output moved back).
 */
export async function runCheckConfig(configText: string, secrets?: { dir: string; files: Record<string, string> }): Promise<CheckConfigResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'h8-deploy-config-'));
  try {
    const file = path.join(dir, 'config.yaml');
    let text = configText;
    let restore = (out: string): string => out;
    if (secrets !== undefined) {
      const mounted = path.join(dir, 'secrets');
      await mkdir(mounted);
      for (const [key, content] of Object.entries(secrets.files)) await writeFile(path.join(mounted, key), content);
      const config = (YAML.parse(configText) ?? {}) as { bgp?: { passwordDir?: string; peers?: { passwordFile?: string }[] } };
      config.bgp = { ...config.bgp, passwordDir: mounted };
      for (const peer of config.bgp.peers ?? []) {
        if (peer.passwordFile?.startsWith(`${secrets.dir}/`)) peer.passwordFile = mounted + peer.passwordFile.slice(secrets.dir.length);
      }
      text = YAML.stringify(config);
      restore = (out) => out.split(mounted).join(secrets.dir);
    }
    await writeFile(file, text);
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, [CLI_MAIN, 'agent', '--check-config', '-c', file, '--node-name', 'x'], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      });
      return { exitCode: 0, stdout: restore(stdout), stderr: restore(stderr) };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { exitCode: typeof e.code === 'number' ? e.code : -1, stdout: restore(e.stdout ?? ''), stderr: restore(e.stderr ?? '') };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const checkedConfigs = new WeakMap<K8sObject[], Promise<{ text: string; effective: EffectiveConfig }>>();

/** The ConfigMap's config.yaml as the DaemonSet hands it to the agent (`--config PATH`), checked by the real CLI. */
export function agentConfigOf(objects: K8sObject[]): Promise<{ text: string; effective: EffectiveConfig }> {
  let checked = checkedConfigs.get(objects);
  if (checked === undefined) {
    checked = checkAgentConfig(objects);
    checkedConfigs.set(objects, checked);
  }
  return checked;
}

async function checkAgentConfig(objects: K8sObject[]): Promise<{ text: string; effective: EffectiveConfig }> {
  const ds = only<DaemonSet>(objects, 'DaemonSet', 'podroute');
  const pod = ds.spec.template.spec;
  const agent = containerNamed(pod, 'podroute');
  const configPath = flagValue(agent.command ?? [], '--config');
  if (configPath === undefined) throw new Error('the agent has no --config');
  const volume = volumeAt(pod, agent, path.dirname(configPath));
  if (volume.configMap === undefined) throw new Error(`${path.dirname(configPath)} is not a ConfigMap volume`);
  const key = volume.configMap.items?.find((i) => i.path === path.basename(configPath))?.key ?? path.basename(configPath);
  const configMap = only<K8sObject & { data?: Record<string, string> }>(objects, 'ConfigMap', volume.configMap.name);
  const text = configMap.data?.[key];
  if (text === undefined) throw new Error(`ConfigMap ${configMap.metadata.name} has no key ${key}`);
  const result = await runCheckConfig(text, mountedPasswords(objects, pod, agent, text));
  if (result.exitCode !== 0) throw new Error(`podroute agent --check-config failed (${result.exitCode}): ${result.stderr}`);
  return { text, effective: JSON.parse(result.stdout) as EffectiveConfig };
}

/** The Secret the agent container mounts at the config's bgp.passwordDir, as files; undefined when none is. */
function mountedPasswords(objects: K8sObject[], pod: PodSpec, agent: Container, configText: string): { dir: string; files: Record<string, string> } | undefined {
  const config = (YAML.parse(configText) ?? {}) as { bgp?: { passwordDir?: string } };
  const dir = config.bgp?.passwordDir ?? '/etc/podroute-secrets';
  if (!(agent.volumeMounts ?? []).some((m) => m.mountPath === dir)) return undefined;
  const name = volumeAt(pod, agent, dir).secret?.secretName;
  const secret = objects.find<K8sObject & { data?: Record<string, string> }>((o): o is K8sObject & { data?: Record<string, string> } => o.kind === 'Secret' && o.metadata.name === name);
  if (secret === undefined) return undefined;
  const files = Object.fromEntries(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
  return { dir, files };
}

/** host and port of a host:port address ([v6]:port too). */
export function splitHostPort(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
  if (m === null) throw new Error(`not host:port: ${address}`);
  return { host: m[1] ?? '', port: Number(m[2]) };
}
