// Which source addresses each local pod's veth may send from, read from the container runtime's CNI result cache
// (libcni keeps the result of every ADD in <cacheDir>/results/<network>-<containerID>-<ifName> until DEL; containerd
// and CRI-O both use it). The runtime writes it as root before the pod starts, from the plugins' own result: the
// host-side veth the bridge plugin created and the addresses host-local gave the pod. Nothing a pod can send
// changes it, unlike the bridge's FDB or the neighbour table (a pod answers ARP and NDP for any address it likes).
// A pure parser and planner, and a thin reader.
import { lstat, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { SourceBinding } from './compile.js';

/** One cached ADD result, as far as the binding needs it. */
export interface CniAttachment {
  network: string;
  containerId: string;
  /** Interfaces of the result outside any sandbox (the bridge, the host-side veth). */
  hostInterfaces: string[];
  /** The addresses the result gave the sandbox's interfaces, canonical, without prefix length. */
  addresses: string[];
}

/** libcni's cache record kind. */
export const CNI_CACHE_KIND = 'cniCacheV1';
/** A cache record is a few KB; anything larger is not one. */
const MAX_RECORD_BYTES = 256 * 1024;

function canonical(ip: string): string | undefined {
  if (!isIPv4(ip) && !isIPv6(ip)) return undefined;
  return ipaddr.parse(ip).toString();
}

/** A cache record's text -> the attachment it describes; null for anything else (other kinds, broken JSON). */
export function parseCniCacheRecord(text: string): CniAttachment | null {
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof record !== 'object' || record === null) return null;
  const r = record as { kind?: unknown; networkName?: unknown; containerId?: unknown; result?: unknown };
  if (r.kind !== CNI_CACHE_KIND || typeof r.networkName !== 'string' || typeof r.containerId !== 'string') return null;
  const result = r.result as { interfaces?: unknown; ips?: unknown } | undefined;
  if (typeof result !== 'object' || result === null) return null;
  const interfaces = Array.isArray(result.interfaces) ? (result.interfaces as unknown[]) : [];
  const inSandbox = interfaces.map((i) => typeof (i as { sandbox?: unknown })?.sandbox === 'string' && (i as { sandbox: string }).sandbox !== '');
  const hostInterfaces: string[] = [];
  interfaces.forEach((i, n) => {
    const name = (i as { name?: unknown })?.name;
    if (!inSandbox[n] && typeof name === 'string') hostInterfaces.push(name);
  });
  const addresses: string[] = [];
  for (const ip of Array.isArray(result.ips) ? (result.ips as unknown[]) : []) {
    const { address, interface: index } = (ip ?? {}) as { address?: unknown; interface?: unknown };
    if (typeof address !== 'string') continue;
    // An address given to an interface outside the sandbox (none the bridge plugin reports) is not the pod's.
    if (typeof index === 'number' && inSandbox[index] !== true) continue;
    const text = canonical(address.split('/')[0] ?? '');
    if (text !== undefined) addresses.push(text);
  }
  return { network: r.networkName, containerId: r.containerId, hostInterfaces, addresses };
}

export interface SourceBindingProblem {
  containerId: string;
  message: string;
}

/**
 * The bindings of our network's attachments: each one's host-side veth (its one interface outside the sandbox
 * that is not the bridge) and its addresses. An attachment whose veth cannot be told is left out (its port stays
 * unbound, so closed) and reported. Sorted by interface; a veth named by two records gets the addresses of both.
 */
export function planSourceBindings(attachments: readonly CniAttachment[], network: string, bridge: string): { bindings: SourceBinding[]; problems: SourceBindingProblem[] } {
  const byInterface = new Map<string, Set<string>>();
  const problems: SourceBindingProblem[] = [];
  for (const a of attachments) {
    if (a.network !== network) continue;
    const veths = a.hostInterfaces.filter((name) => name !== bridge);
    if (veths.length !== 1) {
      problems.push({ containerId: a.containerId, message: `expected one host-side interface besides the bridge ${bridge}, found ${JSON.stringify(veths)}` });
      continue;
    }
    const veth = veths[0] as string;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(veth)) {
      problems.push({ containerId: a.containerId, message: `host-side interface ${JSON.stringify(veth)} is not a name the rules can hold` });
      continue;
    }
    const set = byInterface.get(veth) ?? new Set<string>();
    for (const ip of a.addresses) set.add(ip);
    byInterface.set(veth, set);
  }
  const bindings = [...byInterface]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, ips]) => ({ interface: name, addresses: [...ips].sort() }));
  return { bindings, problems };
}

/**
 * Reads the result cache's records. A file is read once by name (libcni writes a record once per ADD and removes
 * it at DEL); forget() makes the next read() read everything again (at resync). A missing directory is an empty
 * cache (no pod was added yet).
 */
export class CniResultCacheReader {
  private readonly known = new Map<string, CniAttachment | null>();
  readonly dir: string;

  constructor(cacheDir: string) {
    this.dir = path.join(cacheDir, 'results');
  }

  forget(): void {
    this.known.clear();
  }

  async read(): Promise<CniAttachment[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.known.clear();
        return [];
      }
      throw err;
    }
    const present = new Set(names);
    for (const name of this.known.keys()) if (!present.has(name)) this.known.delete(name);
    for (const name of names) {
      if (this.known.has(name)) continue;
      const attachment = await this.readRecord(path.join(this.dir, name));
      // A record being written (libcni writes in place) is read again next time.
      if (attachment !== undefined) this.known.set(name, attachment);
    }
    return [...this.known.values()].filter((a): a is CniAttachment => a !== null);
  }

  /** undefined: read it again next time; null: not a record. Only regular files, never a FIFO or a device. */
  private async readRecord(file: string): Promise<CniAttachment | null | undefined> {
    try {
      const stat = await lstat(file);
      if (!stat.isFile() || stat.size > MAX_RECORD_BYTES) return null;
      const handle = await open(file, 'r');
      try {
        const buffer = Buffer.alloc(Math.min(stat.size, MAX_RECORD_BYTES));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
        const text = buffer.subarray(0, bytesRead).toString('utf8');
        // Not (yet) a whole record: libcni writes in place, so it is read again next time.
        return parseCniCacheRecord(text) ?? undefined;
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
}
