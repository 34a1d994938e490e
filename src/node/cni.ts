// The CNI network configuration podroute hands to the container runtime: the standard bridge, host-local and
// portmap plugins, one bridge per node whose gateway addresses are the first addresses of the node's podCIDRs.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { addressBits, nthAddressOf, parseIpCidr, type IpAddress, type IpPrefix } from '../routes/ip-prefix.js';
import { NodeSetupError } from './errors.js';

export interface CniConfigInput {
  /** The node's podCIDRs, IPv4 and/or IPv6 (at most one of each, like Node.spec.podCIDRs). */
  podCIDRs: string[];
  /** Linux bridge the pods' veths join; the node's gateway addresses live on it. */
  bridgeName: string;
  networkName: string;
  mtu?: number;
  /** host-local IPAM state directory; the runtime default (/var/lib/cni/networks) when omitted. */
  ipamDataDir?: string;
}

export const DEFAULT_CNI_CONFLIST_NAME = '10-podroute.conflist';
/** The name of the CNI network podroute configures (the conflist's `name`, part of the runtime's cache records). */
export const CNI_NETWORK_NAME = 'podroute';

function bad(field: string, message: string): NodeSetupError {
  return new NodeSetupError('CNI_BAD_CONFIG', `${field}: ${message}`, field);
}

/** A CIDR with its host bits cleared; throws NodeSetupError naming `field`. */
function parsePodCidr(cidr: unknown, field: string): IpPrefix {
  const prefix = typeof cidr === 'string' ? parseIpCidr(cidr) : undefined;
  if (prefix === undefined) throw bad(field, `${JSON.stringify(cidr)} is not a CIDR`);
  // A bridge gateway plus at least one pod: /30 and /126 are the smallest usable ranges.
  const maxPrefix = addressBits(prefix.family) - 2;
  if (prefix.length > maxPrefix) throw bad(field, `${String(cidr)} is too small for a gateway and pods (at most /${maxPrefix})`);
  return prefix;
}

/** The first usable address of a CIDR: the pods' default gateway on the bridge. */
export function gatewayOf(cidr: string): string {
  return (nthAddressOf(parsePodCidr(cidr, 'cidr'), 1) as IpAddress).text;
}

/** Validates the input; errors are NodeSetupError CNI_BAD_CONFIG naming the field. */
export function validateCniConfigInput(input: CniConfigInput): void {
  if (!Array.isArray(input.podCIDRs) || input.podCIDRs.length === 0) {
    throw bad('podCIDRs', 'the node has no podCIDRs');
  }
  const seen = new Map<string, string>();
  input.podCIDRs.forEach((cidr, i) => {
    const { family } = parsePodCidr(cidr, `podCIDRs[${i}]`);
    const other = seen.get(family);
    if (other !== undefined) {
      throw bad(`podCIDRs[${i}]`, `${cidr}: a second ${family} podCIDR (already ${other}); at most one per family`);
    }
    seen.set(family, cidr);
  });
  // Linux interface names: 1-15 bytes, no '/', no whitespace, not "." or "..".
  if (typeof input.bridgeName !== 'string' || !/^[^/\s:]{1,15}$/.test(input.bridgeName) || /^\.\.?$/.test(input.bridgeName)) {
    throw bad('bridgeName', `${JSON.stringify(input.bridgeName)} is not a valid interface name (1-15 characters)`);
  }
  if (typeof input.networkName !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(input.networkName)) {
    throw bad('networkName', `${JSON.stringify(input.networkName)} is not a valid CNI network name`);
  }
  if (input.mtu !== undefined && (!Number.isInteger(input.mtu) || input.mtu < 68 || input.mtu > 65535)) {
    throw bad('mtu', `${String(input.mtu)} is not an MTU (68-65535)`);
  }
  if (input.ipamDataDir !== undefined && (typeof input.ipamDataDir !== 'string' || !path.isAbsolute(input.ipamDataDir))) {
    throw bad('ipamDataDir', `${JSON.stringify(input.ipamDataDir)} is not an absolute path`);
  }
}

export function renderCniConflist(input: CniConfigInput): string {
  validateCniConfigInput(input);
  const subnets = input.podCIDRs.map((cidr, i) => {
    const prefix = parsePodCidr(cidr, `podCIDRs[${i}]`);
    return { subnet: prefix.text, gateway: gatewayOf(cidr), v6: prefix.family === 'ipv6' };
  });
  const ranges = subnets.map(({ subnet, gateway }) => [{ subnet, gateway }]);
  const routes = subnets.map(({ v6 }) => ({ dst: v6 ? '::/0' : '0.0.0.0/0' }));
  const conflist = {
    cniVersion: '1.0.0',
    name: input.networkName,
    plugins: [
      {
        type: 'bridge',
        bridge: input.bridgeName,
        isGateway: true,
        // podroute does its own masquerade (cluster range aware); the plugin's would NAT pod-to-pod traffic.
        ipMasq: false,
        hairpinMode: true,
        ...(input.mtu === undefined ? {} : { mtu: input.mtu }),
        ipam: {
          type: 'host-local',
          ranges,
          routes,
          ...(input.ipamDataDir === undefined ? {} : { dataDir: input.ipamDataDir }),
        },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
  return JSON.stringify(conflist, null, 2) + '\n';
}

export interface WriteCniConfigOptions {
  /** The runtime's CNI config directory (--cni-conf-dir), created when missing. */
  confDir: string;
  /** Default 10-podroute.conflist. */
  fileName?: string;
  input: CniConfigInput;
}

/**
 * Writes the conflist atomically (temp file in the same directory, fsync, rename): the runtime never reads a
 * half-written file. Writes only when the content differs; returns whether it wrote.
 */
export async function writeCniConfig(options: WriteCniConfigOptions): Promise<boolean> {
  const fileName = options.fileName ?? DEFAULT_CNI_CONFLIST_NAME;
  if (fileName.includes('/') || fileName.startsWith('.') || !/\.(conflist|conf|json)$/.test(fileName)) {
    throw bad('fileName', `${JSON.stringify(fileName)} must be a plain .conflist/.conf/.json file name`);
  }
  const content = renderCniConflist(options.input);
  const target = path.join(options.confDir, fileName);
  try {
    if ((await readFile(target, 'utf8')) === content) return false;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw wrapWrite(target, error);
  }
  // The temp name starts with a dot and has no config extension: runtimes scanning the dir ignore it.
  const temp = path.join(options.confDir, `.${fileName}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await mkdir(options.confDir, { recursive: true, mode: 0o755 });
    const handle = await open(temp, 'w', 0o644);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
    const dir = await open(options.confDir, 'r');
    try {
      await dir.sync(); // the rename itself survives a crash
    } finally {
      await dir.close();
    }
  } catch (error) {
    await rm(temp, { force: true });
    throw wrapWrite(target, error);
  }
  return true;
}

function wrapWrite(target: string, error: unknown): NodeSetupError {
  return new NodeSetupError('CNI_WRITE_FAILED', `could not write ${target}: ${(error as Error).message}`, 'confDir');
}
