// A small CNI 1.0 runtime: runs the plugins of a network configuration list the way a container runtime does
// (ADD in order with prevResult chaining, DEL in reverse order with the cached ADD result).
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';

export const DEFAULT_CNI_PATH = '/usr/lib/cni';

export interface CniPluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface CniConflist {
  cniVersion: string;
  name: string;
  plugins: CniPluginConf[];
  disableCheck?: boolean;
}

export interface CniIp {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: CniIp[];
  routes?: unknown[];
  dns?: unknown;
}

export interface CniRuntimeArgs {
  containerId: string;
  /** Path of the network namespace, e.g. /run/netns/NAME. */
  netns: string;
  ifName: string;
  /** CNI_ARGS key/values (K8S_POD_NAMESPACE...). */
  args?: Record<string, string>;
  /** Values for plugins' declared capabilities, e.g. {portMappings: [...]}: sent as runtimeConfig. */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniRunOptions {
  cniPath?: string;
  /**
   * libcni's cache directory (/var/lib/cni in containerd and CRI-O): ADD records its result in
   * results/<network>-<containerID>-<ifName> as they do, DEL removes it. None: no cache.
   */
  cacheDir?: string;
  signal?: AbortSignal;
  /** Per plugin call. */
  timeoutMs?: number;
}

export class CniError extends Error {
  constructor(
    readonly code: 'CNI_CONFLIST_INVALID' | 'CNI_PLUGIN_FAILED' | 'CNI_PLUGIN_MISSING',
    message: string,
    readonly plugin?: string,
    /** The plugin's own error code (CNI spec), when it gave one. */
    readonly cniCode?: number,
  ) {
    super(message);
    this.name = 'CniError';
  }
}

/** Parses and checks a .conflist; the error names the bad field. */
export function parseConflist(text: string, source = 'conflist'): CniConflist {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError('CNI_CONFLIST_INVALID', `${source}: not JSON: ${(err as Error).message}`);
  }
  const c = raw as Partial<CniConflist> | null;
  if (typeof c !== 'object' || c === null) throw new CniError('CNI_CONFLIST_INVALID', `${source}: not an object`);
  if (typeof c.cniVersion !== 'string') throw new CniError('CNI_CONFLIST_INVALID', `${source}: cniVersion: missing`);
  if (typeof c.name !== 'string' || c.name === '') throw new CniError('CNI_CONFLIST_INVALID', `${source}: name: missing`);
  if (!Array.isArray(c.plugins) || c.plugins.length === 0) {
    throw new CniError('CNI_CONFLIST_INVALID', `${source}: plugins: must be a non-empty list`);
  }
  c.plugins.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || typeof p.type !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(p.type)) {
      throw new CniError('CNI_CONFLIST_INVALID', `${source}: plugins[${i}].type: missing or not a plugin name`);
    }
  });
  return c as CniConflist;
}

/** The first *.conflist of a directory in name order (what container runtimes pick), or undefined. */
export async function findConflist(dir: string): Promise<{ path: string; text: string } | undefined> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const first = names.filter((n) => n.endsWith('.conflist')).sort()[0];
  if (first === undefined) return undefined;
  const file = path.join(dir, first);
  return { path: file, text: await fs.readFile(file, 'utf8') };
}

/** The addresses of a result without their prefix lengths, in result order. */
export function resultIps(result: CniResult): string[] {
  return (result.ips ?? []).map((ip) => ip.address.split('/')[0] ?? ip.address);
}

function pluginConfig(
  list: CniConflist,
  plugin: CniPluginConf,
  runtime: CniRuntimeArgs,
  prevResult: CniResult | undefined,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, cniVersion: list.cniVersion, name: list.name };
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, enabled] of Object.entries(plugin.capabilities ?? {})) {
    const value = runtime.capabilityArgs?.[cap];
    if (enabled && value !== undefined) runtimeConfig[cap] = value;
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return conf;
}

function cniArgsString(args: Record<string, string> | undefined): string {
  const entries = Object.entries(args ?? {});
  return entries.length === 0 ? '' : ['IgnoreUnknown=1', ...entries.map(([k, v]) => `${k}=${v}`)].join(';');
}

async function execPlugin(
  command: 'ADD' | 'DEL' | 'CHECK',
  list: CniConflist,
  plugin: CniPluginConf,
  runtime: CniRuntimeArgs,
  prevResult: CniResult | undefined,
  options: CniRunOptions,
): Promise<CniResult | undefined> {
  const cniPath = options.cniPath ?? DEFAULT_CNI_PATH;
  const binary = path.join(cniPath, plugin.type);
  try {
    await fs.access(binary);
  } catch {
    throw new CniError('CNI_PLUGIN_MISSING', `CNI plugin ${plugin.type} not found in ${cniPath}`, plugin.type);
  }
  const input = JSON.stringify(pluginConfig(list, plugin, runtime, prevResult));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: runtime.containerId,
    CNI_NETNS: runtime.netns,
    CNI_IFNAME: runtime.ifName,
    CNI_PATH: cniPath,
    CNI_ARGS: cniArgsString(runtime.args),
  };
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(binary, [], {
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
        timeout: options.timeoutMs ?? 60_000,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.on('error', reject);
      child.on('close', (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    },
  );
  if (code !== 0) {
    let message = stderr.trim() || `exit code ${String(code)}`;
    let cniCode: number | undefined;
    try {
      const e = JSON.parse(stdout) as { code?: number; msg?: string; details?: string };
      cniCode = e.code;
      message = [e.msg, e.details].filter(Boolean).join(': ') || message;
    } catch {
      // not a CNI error object: keep stderr
    }
    throw new CniError('CNI_PLUGIN_FAILED', `CNI ${command} ${plugin.type}: ${message}`, plugin.type, cniCode);
  }
  if (command !== 'ADD') return undefined;
  try {
    return JSON.parse(stdout) as CniResult;
  } catch {
    throw new CniError('CNI_PLUGIN_FAILED', `CNI ADD ${plugin.type}: result is not JSON: ${stdout.slice(0, 200)}`, plugin.type);
  }
}

/**
 * ADD of the whole list; each plugin gets the previous one's result. When a plugin fails, the list is DELeted
 * (as the spec asks of runtimes) so nothing stays half set up, and the ADD error is thrown.
 */
export async function cniAdd(list: CniConflist, runtime: CniRuntimeArgs, options: CniRunOptions = {}): Promise<CniResult> {
  let prev: CniResult | undefined;
  try {
    for (const plugin of list.plugins) {
      prev = await execPlugin('ADD', list, plugin, runtime, prev, options);
    }
  } catch (err) {
    await cniDel(list, runtime, prev, options).catch(() => undefined);
    throw err;
  }
  if (prev === undefined) throw new CniError('CNI_PLUGIN_FAILED', 'CNI ADD produced no result');
  if (options.cacheDir !== undefined) await writeCachedResult(options.cacheDir, list, runtime, prev);
  return prev;
}

function cachedResultPath(cacheDir: string, list: CniConflist, runtime: CniRuntimeArgs): string {
  return path.join(cacheDir, 'results', `${list.name}-${runtime.containerId}-${runtime.ifName}`);
}

/** libcni's cniCacheV1 record of an ADD, written before the runtime hands the sandbox on (as libcni does). */
async function writeCachedResult(cacheDir: string, list: CniConflist, runtime: CniRuntimeArgs, result: CniResult): Promise<void> {
  const file = cachedResultPath(cacheDir, list, runtime);
  const record = {
    kind: 'cniCacheV1',
    containerId: runtime.containerId,
    config: Buffer.from(JSON.stringify(list)).toString('base64'),
    ifName: runtime.ifName,
    networkName: list.name,
    netns: runtime.netns,
    cniArgs: Object.entries(runtime.args ?? {}),
    ...(runtime.capabilityArgs === undefined ? {} : { capabilityArgs: runtime.capabilityArgs }),
    result,
  };
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await fs.writeFile(file, JSON.stringify(record), { mode: 0o600 });
}

/** DEL of the whole list in reverse order; every plugin is asked even when one fails (the first error is thrown). */
export async function cniDel(
  list: CniConflist,
  runtime: CniRuntimeArgs,
  prevResult: CniResult | undefined,
  options: CniRunOptions = {},
): Promise<void> {
  let first: Error | undefined;
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await execPlugin('DEL', list, plugin, runtime, prevResult, options);
    } catch (err) {
      first ??= err instanceof Error ? err : new Error(String(err));
    }
  }
  if (first !== undefined) throw first;
  // Like libcni: the record goes once DEL succeeded.
  if (options.cacheDir !== undefined) await fs.rm(cachedResultPath(options.cacheDir, list, runtime), { force: true });
}
