// The node's kernel settings podroute needs: forwarding (the node routes pod traffic) and bridge netfilter (pod
// traffic crossing the node's bridge must traverse iptables, or NetworkPolicy never sees same-node traffic).
// All of them are per network namespace on this kernel: the agent sets them in the netns it runs in.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../observe/log.js';
import { NodeSetupError } from './errors.js';

export interface SysctlSetting {
  /** Dotted name, as `sysctl` spells it: net.ipv4.ip_forward. */
  key: string;
  value: string;
}

export const BRIDGE_SYSCTL_DIR = 'net/bridge';

export interface NodeSysctlOptions {
  /** IPv4 forwarding + bridge-nf-call-iptables. Default true. */
  ipv4?: boolean;
  /** IPv6 forwarding + bridge-nf-call-ip6tables. Default true. */
  ipv6?: boolean;
}

/** The settings a podroute node needs. */
export function nodeSysctls(options: NodeSysctlOptions = {}): SysctlSetting[] {
  const settings: SysctlSetting[] = [];
  if (options.ipv4 ?? true) {
    settings.push({ key: 'net.ipv4.ip_forward', value: '1' });
    settings.push({ key: 'net.bridge.bridge-nf-call-iptables', value: '1' });
  }
  if (options.ipv6 ?? true) {
    settings.push({ key: 'net.ipv6.conf.all.forwarding', value: '1' });
    settings.push({ key: 'net.bridge.bridge-nf-call-ip6tables', value: '1' });
  }
  return settings;
}

/** The /proc/sys path of a dotted key (net.ipv4.ip_forward → ROOT/net/ipv4/ip_forward). */
export function sysctlPath(key: string, procSysDir = '/proc/sys'): string {
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/.test(key)) {
    throw new NodeSetupError('SYSCTL_MISSING', `not a sysctl key: ${JSON.stringify(key)}`, key);
  }
  return path.join(procSysDir, ...key.split('.'));
}

export interface SysctlWrite {
  key: string;
  from: string;
  to: string;
}

export interface SysctlPlan {
  writes: SysctlWrite[];
  /** Keys the kernel does not have (observed undefined). */
  missing: string[];
}

/** Pure: the writes that make the observed values the desired ones; only what differs. */
export function planSysctls(desired: readonly SysctlSetting[], observed: ReadonlyMap<string, string | undefined>): SysctlPlan {
  const plan: SysctlPlan = { writes: [], missing: [] };
  for (const { key, value } of desired) {
    const current = observed.get(key);
    if (current === undefined) plan.missing.push(key);
    else if (current.trim() !== value) plan.writes.push({ key, from: current.trim(), to: value });
  }
  return plan;
}

export interface ApplySysctlsOptions {
  /** Default: nodeSysctls(). */
  settings?: readonly SysctlSetting[];
  /** Default /proc/sys (of the network namespace this process runs in). */
  procSysDir?: string;
  /** Loads a kernel module; default `modprobe NAME`. Called at most once per apply, for br_netfilter. */
  loadModule?: (name: string) => Promise<void>;
  logger?: Logger;
}

export interface SysctlApplyResult {
  writes: SysctlWrite[];
  /** Whether br_netfilter had to be loaded. */
  loadedBrNetfilter: boolean;
}

const execFileAsync = promisify(execFile);

async function modprobe(name: string): Promise<void> {
  await execFileAsync('modprobe', [name]);
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function readSysctls(keys: readonly string[], procSysDir: string): Promise<Map<string, string | undefined>> {
  const observed = new Map<string, string | undefined>();
  for (const key of keys) {
    try {
      observed.set(key, (await readFile(sysctlPath(key, procSysDir), 'utf8')).trim());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      observed.set(key, undefined);
    }
  }
  return observed;
}

/** Reads the settings, writes only those that differ, and loads br_netfilter first when bridge keys need it. */
export async function applySysctls(options: ApplySysctlsOptions = {}): Promise<SysctlApplyResult> {
  const settings = options.settings ?? nodeSysctls();
  const procSysDir = options.procSysDir ?? '/proc/sys';
  const result: SysctlApplyResult = { writes: [], loadedBrNetfilter: false };

  const wantsBridge = settings.some((s) => s.key.startsWith('net.bridge.'));
  if (wantsBridge && !(await exists(path.join(procSysDir, BRIDGE_SYSCTL_DIR)))) {
    const load = options.loadModule ?? modprobe;
    try {
      await load('br_netfilter');
    } catch (error) {
      throw new NodeSetupError(
        'BR_NETFILTER_UNAVAILABLE',
        `the br_netfilter kernel module is not loaded and \`modprobe br_netfilter\` failed (${(error as Error).message}); ` +
          'load it on the host (NetworkPolicy needs bridged pod traffic to traverse iptables)',
        'net.bridge',
      );
    }
    if (!(await exists(path.join(procSysDir, BRIDGE_SYSCTL_DIR)))) {
      throw new NodeSetupError(
        'BR_NETFILTER_UNAVAILABLE',
        `br_netfilter was loaded but ${path.join(procSysDir, BRIDGE_SYSCTL_DIR)} is still missing`,
        'net.bridge',
      );
    }
    result.loadedBrNetfilter = true;
    options.logger?.info('loaded the br_netfilter kernel module');
  }

  const plan = planSysctls(settings, await readSysctls(settings.map((s) => s.key), procSysDir));
  const [missing] = plan.missing;
  if (missing !== undefined) {
    throw new NodeSetupError('SYSCTL_MISSING', `the kernel has no sysctl ${missing} (${sysctlPath(missing, procSysDir)})`, missing);
  }
  for (const write of plan.writes) {
    try {
      await writeFile(sysctlPath(write.key, procSysDir), write.to + '\n');
    } catch (error) {
      throw new NodeSetupError(
        'SYSCTL_WRITE_FAILED',
        `could not set ${write.key}=${write.to}: ${(error as Error).message}`,
        write.key,
      );
    }
    options.logger?.info('sysctl set', { key: write.key, from: write.from, to: write.to });
    result.writes.push(write);
  }
  return result;
}
