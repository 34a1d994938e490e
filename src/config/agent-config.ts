// The agent's configuration: one schema for the YAML file (a ConfigMap), the environment and the flags, with
// defaults. Validation happens before anything is touched; every error names the key it is about.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import YAML from 'yaml';
import { z } from 'zod';
import { parseCommunity } from '../bgp/communities.js';
import { IPTABLES_BACKEND_SETTINGS } from '../host/iptables-backend.js';
import { parseListenAddress } from '../observe/server.js';
import { canonicalAddressText, familyOf, parseIpAddress, parseIpCidr, parseIpPrefix, prefixContainsAddress, prefixesOverlap, specialAddressKind, type IpPrefix } from '../routes/ip-prefix.js';
import { passwordFilePath } from './password-file.js';

export class ConfigError extends Error {
  readonly code = 'INVALID_CONFIG';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Accepts non-canonical CIDRs (10.1.2.3/16) and stores them canonical (10.1.0.0/16); the agent's one prefix parser
 * decides what is a CIDR (no two-part or octal IPv4, no zone index), for the config file and Nodes' podCIDRs alike.
 */
export function canonicalCIDR(text: string): string | undefined {
  return parseIpCidr(text.trim())?.text;
}

const cidr = z.string().transform((text, ctx) => {
  const canonical = canonicalCIDR(text);
  if (canonical === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a CIDR: ${JSON.stringify(text)}` });
    return z.NEVER;
  }
  return canonical;
});

/** A range of the cluster (pods, accepted prefixes, no masquerade): a /0 would take in the whole Internet. */
const rangeCidr = cidr.refine((c) => typeof c !== 'string' || !c.endsWith('/0'), (c) => ({ message: `${c} covers every address of its family` }));

/** Where the deploy mounts the BGP password Secret. */
export const DEFAULT_PASSWORD_DIR = '/etc/podroute-secrets';

const absolutePath = z
  .string()
  .refine((text) => path.isAbsolute(text) && !text.includes('\0'), (text) => ({ message: `must be an absolute path, got ${JSON.stringify(text)}` }));

/**
 * Why an address cannot be a BGP peer or local address, if it cannot: not an address by the one validator everywhere
 * (the route code's: no zone index, no non-standard IPv4 forms), or unspecified, loopback, broadcast, multicast.
 */
export function unusableAddressProblem(text: string): string | undefined {
  const address = parseIpAddress(text);
  if (address === undefined) return `not an IP address: ${JSON.stringify(text)}`;
  const kind = specialAddressKind(address);
  return kind === undefined ? undefined : `${text} is a ${kind} address`;
}

/** Why text cannot be a BGP router ID (a dotted IPv4 address that is no special address), if it cannot. */
export function routerIdProblem(text: string): string | undefined {
  if (familyOf(text) === 'ipv6' || canonicalAddressText(text) === undefined) return `not a dotted IPv4 router ID: ${JSON.stringify(text)}`;
  return unusableAddressProblem(text);
}

const sessionAddress = z.string().superRefine((text, ctx) => {
  const problem = unusableAddressProblem(text);
  if (problem !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
});

/** AS_TRANS stands in for a 4-byte ASN towards old speakers (RFC 6793); it is never an AS of its own. */
export const AS_TRANS = 23456;
const asn = z
  .number()
  .int()
  .min(1)
  .max(4294967295)
  .refine((v) => v !== AS_TRANS, { message: `${AS_TRANS} is AS_TRANS (a placeholder for 4-byte ASNs), not an AS` });
const port = z.number().int().min(1).max(65535);
const seconds = z.number().int().min(0).max(65535);
/** RFC 4271: a hold time is 0 (no keepalives) or at least 3 seconds. */
const holdSeconds = seconds.refine((v) => v === 0 || v >= 3, { message: 'must be 0 (no keepalives) or at least 3 seconds' });
/** setTimeout takes at most 2^31-1 ms; beyond that Node fires after 1 ms, a busy loop. */
const MAX_TIMER_SECONDS = Math.floor(0x7fffffff / 1000);
/** Prefixes per address family a peer may send; 0 = no limit (gobgpd's max_prefixes is a uint32). */
const prefixLimit = z.number().int().min(0).max(4294967295);

/**
 * bgp.maxPrefixes: the limit of every external peer that sets none. A ToR relays one podCIDR per node and family,
 * and Kubernetes supports clusters of up to 5,000 nodes: 10,000 leaves room for that and for a fabric's own
 * routes (counted too, even when the import policy rejects them), while a leaked full Internet table (~1M IPv4
 * routes) or a flood of host routes inside the pod range is cut off before it reaches the kernel.
 */
export const DEFAULT_EXTERNAL_MAX_PREFIXES = 10_000;

/**
 * bgp.meshMaxPrefixes: the limit of every node mesh peer. A node sends only its own podCIDRs (Kubernetes gives one
 * per family) and the import policy takes exactly those, but gobgpd counts what arrives before the policy: without
 * a limit a misbehaving node fills every other node's Adj-RIB-In. 100 leaves room for any sane allocation.
 */
export const DEFAULT_MESH_MAX_PREFIXES = 100;

/** One community as an operator writes it: "65000:100", a large "65000:1:2", or a well-known name (no-export, ...). */
const community = z.string().superRefine((text, ctx) => {
  const parsed = parseCommunity(text);
  if ('problem' in parsed) ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed.problem });
});

/** What the agent advertises, by class: its podCIDRs and its Service addresses. */
export const ADVERTISED_CLASSES = ['podCIDRs', 'services'] as const;
export type AdvertisedClass = (typeof ADVERTISED_CLASSES)[number];

/** LOCAL_PREF (a uint32); sent only to iBGP peers. */
export const localPreference = z.number().int().min(0).max(4294967295);

const labelSelector = z
  .object({
    matchLabels: z.record(z.string()).optional(),
    matchExpressions: z
      .array(
        z
          .object({
            key: z.string().min(1),
            operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
            values: z.array(z.string()).optional(),
          })
          .strict(),
      )
      .optional(),
  })
  .strict();
export type LabelSelector = z.infer<typeof labelSelector>;

const gracefulRestart = z
  .object({ enabled: z.boolean().default(true), restartTime: z.number().int().min(1).max(4095).default(120) })
  .strict();

/**
 * BFD timers (RFC 5880): we send every minTxMs (jittered to 75-100 %), ask the peer to send no faster than minRxMs,
 * and the peer declares us down after multiplier x the agreed interval without a packet (and we it, by its
 * multiplier). The floor of 10 ms is about what a node's event loop can keep under load; 300 ms x 3 is the default.
 */
const bfdIntervalMs = z.number().int().min(10).max(60_000);
const bfdMultiplier = z.number().int().min(2).max(255);
/** Per peer: on or off regardless of bgp.bfd.enabled, and its own timers; bgp.bfd's for what is omitted. */
const peerBfd = z
  .object({ enabled: z.boolean().optional(), minTxMs: bfdIntervalMs.optional(), minRxMs: bfdIntervalMs.optional(), multiplier: bfdMultiplier.optional() })
  .strict();
export type PeerBfdConfig = z.infer<typeof peerBfd>;

/** Fields shared by configured peers and the `podroute.io/peers` annotation. */
export const peerFields = {
  address: sessionAddress,
  asn,
  port: port.optional(),
  /** File holding the TCP MD5 secret (a mounted Secret). Plain passwords are not accepted anywhere. */
  passwordFile: z.string().min(1).optional(),
  ebgpMultihopTtl: z.number().int().min(1).max(255).optional(),
  /**
   * GTSM (RFC 5082, minimum TTL 254): on by default for an eBGP peer without ebgpMultihopTtl (a directly connected
   * ToR), off otherwise; the peer must do GTSM too (FRR: `neighbor X ttl-security hops 1`).
   */
  ttlSecurity: z.boolean().optional(),
  localAddress: sessionAddress.optional(),
  holdTime: holdSeconds.optional(),
  keepaliveInterval: seconds.optional(),
  connectRetry: seconds.optional(),
  gracefulRestart: gracefulRestart.optional(),
  /**
   * Most prefixes the peer may send per address family (bgp.maxPrefixes when omitted; 0 = no limit). One more and
   * gobgpd ends the session (Cease, maximum number of prefixes reached) and keeps it down until the peer's
   * configuration changes.
   */
  maxPrefixes: prefixLimit.optional(),
  /**
   * Whether this session carries the Service addresses (services.*: LoadBalancer ingress, allowed externalIPs, the
   * ClusterIP ranges); true when omitted. Node mesh sessions never do.
   */
  advertiseServices: z.boolean().optional(),
  /** BFD with this peer (bgp.bfd): only for a directly connected peer (no ebgpMultihopTtl). */
  bfd: peerBfd.optional(),
};

/** GTSM and multihop exclude each other; a keepalive not shorter than the hold time lets the session expire. */
function checkPeerFields(peer: { holdTime?: number; keepaliveInterval?: number; ttlSecurity?: boolean; ebgpMultihopTtl?: number; bfd?: PeerBfdConfig }, ctx: z.RefinementCtx): void {
  if (peer.bfd?.enabled === true && peer.ebgpMultihopTtl !== undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['bfd', 'enabled'], message: 'BFD runs single-hop (RFC 5881) only: a peer with ebgpMultihopTtl is not directly connected' });
  }
  if (peer.ttlSecurity === true && peer.ebgpMultihopTtl !== undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['ttlSecurity'], message: 'GTSM cannot be combined with ebgpMultihopTtl (a multihop peer never reaches TTL 254)' });
  }
  const { holdTime, keepaliveInterval } = peer;
  if (holdTime !== undefined && holdTime > 0 && keepaliveInterval !== undefined && keepaliveInterval >= holdTime) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['keepaliveInterval'], message: `must be less than the hold time (${holdTime})` });
  }
}

export const externalPeerSchema = z
  .object({
    ...peerFields,
    /** Which nodes peer with it; every node when omitted. */
    nodeSelector: labelSelector.optional(),
  })
  .strict()
  .superRefine(checkPeerFields);
export type ExternalPeerConfig = z.infer<typeof externalPeerSchema>;

export const annotationPeerSchema = z.object(peerFields).strict().superRefine(checkPeerFields);
export type AnnotationPeerConfig = z.infer<typeof annotationPeerSchema>;

export const agentConfigSchema = z
  .object({
    nodeName: z.string().min(1).optional(),
    /** Path to a kubeconfig; in-cluster service account when omitted. */
    kubeconfig: z.string().min(1).optional(),
    gobgp: z
      .object({
        /** gobgpd's API: a unix socket by default; TCP only on loopback. */
        target: z
          .string()
          .default('unix:///run/podroute/gobgp.sock')
          .refine((t) => t.startsWith('unix://') || /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d+$/.test(t), {
            message: 'must be unix:///path or a loopback host:port (gobgpd has no authentication)',
          }),
        callTimeoutSeconds: z.number().min(1).max(300).default(10),
      })
      .strict()
      .default({}),
    cluster: z
      .object({
        asn: asn.default(64512),
        /** Every pod address of the cluster is inside one of these (v4 and/or v6). */
        podRanges: z.array(rangeCidr).min(1),
        /** More prefixes accepted from external peers (for example other clusters' pod ranges). */
        extraAcceptRanges: z.array(rangeCidr).default([]),
        /** Destinations pods reach without masquerade, besides the pod ranges. */
        nonMasqueradeCIDRs: z.array(rangeCidr).default([]),
      })
      .strict(),
    bgp: z
      .object({
        /** gobgpd's BGP listener; -1 = none (nodes then only dial out). */
        listenPort: z.number().int().min(-1).max(65535).default(179),
        routerId: z
          .string()
          .superRefine((text, ctx) => {
            const problem = routerIdProblem(text);
            if (problem !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
          })
          .optional(),
        /**
         * full: iBGP mesh with every node; same-asn: only nodes sharing our ASN (AS per rack); route-reflector: per AS,
         * the nodes labelled podroute.io/route-reflector-cluster-id reflect, the others peer with them only (a full
         * mesh of the AS while it has no reflector; src/agent/route-reflectors.ts); off: no node sessions.
         */
        mesh: z.enum(['full', 'same-asn', 'route-reflector', 'off']).default('full'),
        holdTime: holdSeconds.default(9),
        keepaliveInterval: seconds.default(3),
        connectRetry: seconds.default(5),
        gracefulRestart: gracefulRestart.default({}),
        /**
         * The only directory password files are read from (a mounted Secret): a passwordFile is a name inside it or
         * a path under it. Annotations name password files too, and the agent reads them as root.
         */
        passwordDir: absolutePath.default(DEFAULT_PASSWORD_DIR),
        /** maxPrefixes of every external peer (config or annotation) that sets none; 0 = no limit. */
        maxPrefixes: prefixLimit.default(DEFAULT_EXTERNAL_MAX_PREFIXES),
        /** TCP-MD5 key of the node mesh sessions (every node the same), in bgp.passwordDir; none when omitted. */
        meshPasswordFile: z.string().min(1).optional(),
        /** maxPrefixes of every node mesh peer; 0 = no limit. */
        meshMaxPrefixes: prefixLimit.default(DEFAULT_MESH_MAX_PREFIXES),
        peers: z.array(externalPeerSchema).default([]),
        /**
         * Communities attached to what the node advertises, per class, standard and large mixed; a node's
         * podroute.io/pod-cidr-communities and podroute.io/service-communities annotations replace them.
         */
        communities: z
          .object({ podCIDRs: z.array(community).default([]), services: z.array(community).default([]) })
          .strict()
          .default({}),
        /** LOCAL_PREF of what the node advertises, per class (iBGP peers only); gobgpd's 100 when omitted. */
        localPreference: z.object({ podCIDRs: localPreference.optional(), services: localPreference.optional() }).strict().default({}),
        /**
         * BFD (RFC 5880/5881, single hop) with every directly connected peer: external peers without
         * ebgpMultihopTtl and mesh peers on one of the node's own networks. A session that goes down takes its BGP
         * peer down in gobgpd at once (its routes are withdrawn) until it is up again. The sessions run in the
         * `podroute bfd` companion, reached on controlSocket.
         */
        bfd: z
          .object({
            enabled: z.boolean().default(false),
            minTxMs: bfdIntervalMs.default(300),
            minRxMs: bfdIntervalMs.default(300),
            multiplier: bfdMultiplier.default(3),
            controlSocket: absolutePath.default('/run/podroute/bfd.sock'),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    routes: z
      .object({
        /** Routing protocol number on every route podroute installs; routes of other protocols are never touched. */
        protocol: z
          .number()
          .int()
          .min(5, { message: 'must be 5..255: 0-4 are the kernel\'s own (unspec, redirect, kernel, boot, static), whose routes podroute would then delete' })
          .max(255)
          .default(44),
        resyncSeconds: z.number().min(1).max(MAX_TIMER_SECONDS, { message: `must be at most ${MAX_TIMER_SECONDS} (a longer timer fires at once, in a loop)` }).default(30),
      })
      .strict()
      .default({}),
    cni: z
      .object({
        confDir: absolutePath.default('/etc/cni/net.d'),
        binDir: z.string().default('/opt/cni/bin'),
        /** host-local IPAM state; the runtime default when omitted. */
        ipamDataDir: absolutePath.optional(),
        /**
         * The container runtime's CNI cache directory (libcni's, /var/lib/cni for containerd and CRI-O): policy reads
         * results/ there to bind each pod's veth to its addresses.
         */
        cacheDir: absolutePath.default('/var/lib/cni'),
        bridge: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'a Linux interface name (1-15 characters)').default('podroute0'),
        mtu: z.number().int().min(576).max(65535).optional(),
      })
      .strict()
      .default({}),
    services: z
      .object({
        /** Where LoadBalancer Services of ours get their addresses (the Lease holder allocates; see src/services/). */
        loadBalancerPools: z
          .array(
            z
              .object({
                name: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'a DNS label (lower case, digits, -)'),
                cidrs: z.array(rangeCidr).min(1),
                /** false: only Services that request an address of the pool get one. */
                autoAssign: z.boolean().default(true),
                serviceSelector: labelSelector.optional(),
                /** Only Services of these namespaces; all when omitted. */
                namespaces: z.array(z.string().min(1)).min(1).optional(),
              })
              .strict(),
          )
          .default([]),
        /** Where a Service's spec.externalIPs may lie to be advertised (a Service author must not pick any address). */
        externalIPRanges: z.array(rangeCidr).default([]),
        /** The service ClusterIP ranges, advertised as they are (as Calico's serviceClusterIPs). */
        clusterIPRanges: z.array(rangeCidr).default([]),
      })
      .strict()
      .default({}),
    masquerade: z.object({ enabled: z.boolean().default(true) }).strict().default({}),
    policy: z.object({ enabled: z.boolean().default(true) }).strict().default({}),
    iptables: z
      .object({
        /**
         * Which iptables policy and masquerade write to: where kube-proxy's rules are. auto looks at the rules
         * already on the node at start (host/iptables-backend.ts); nft or legacy skip the guess.
         */
        backend: z
          .enum(IPTABLES_BACKEND_SETTINGS, {
            errorMap: (_issue, ctx) => ({ message: `must be one of ${IPTABLES_BACKEND_SETTINGS.join(', ')} (got ${JSON.stringify(ctx.data)})` }),
          })
          .default('auto'),
      })
      .strict()
      .default({}),
    log: z
      .object({ level: z.enum(['error', 'warn', 'info', 'debug']).default('info'), format: z.enum(['json', 'text']).default('json') })
      .strict()
      .default({}),
    metrics: z
      .object({
        /** host:port for /metrics, /healthz and /readyz; empty string disables. */
        address: z
          .string()
          .default('127.0.0.1:9476')
          .superRefine((text, ctx) => {
            if (text === '') return;
            try {
              parseListenAddress(text);
            } catch (err) {
              ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message.replace(/^metrics\.address /, '') });
            }
          }),
      })
      .strict()
      .default({}),
  })
  .strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;

/** Renders zod issues as `key.path[2].field: message` lines. */
export function describeIssues(error: z.ZodError, prefix = ''): string[] {
  return error.issues.map((issue) => {
    const key = issue.path.reduce<string>(
      (acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc === '' ? String(part) : `${acc}.${part}`),
      prefix,
    );
    const message = issue.code === 'unrecognized_keys' ? `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}` : issue.message;
    return `${key === '' ? '(top level)' : key}: ${message}`;
  });
}

export function parseAgentConfig(input: unknown): AgentConfig {
  const result = agentConfigSchema.safeParse(input);
  if (!result.success) throw new ConfigError(describeIssues(result.error));
  const problems = crossCheck(result.data);
  if (problems.length > 0) throw new ConfigError(problems);
  return result.data;
}

function crossCheck(config: AgentConfig): string[] {
  const problems: string[] = [];
  config.bgp.peers.forEach((peer, i) => {
    if (peer.localAddress !== undefined && ipaddr.parse(peer.localAddress).kind() !== ipaddr.parse(peer.address).kind()) {
      problems.push(`bgp.peers[${i}].localAddress: address family differs from bgp.peers[${i}].address`);
    }
  });
  config.bgp.peers.forEach((peer, i) => {
    if (peer.passwordFile !== undefined && passwordFilePath(config.bgp.passwordDir, peer.passwordFile) === undefined) {
      problems.push(`bgp.peers[${i}].passwordFile: must be inside bgp.passwordDir (${config.bgp.passwordDir})`);
    }
  });
  const mesh = config.bgp.meshPasswordFile;
  if (mesh !== undefined && passwordFilePath(config.bgp.passwordDir, mesh) === undefined) {
    problems.push(`bgp.meshPasswordFile: must be inside bgp.passwordDir (${config.bgp.passwordDir})`);
  }
  const { holdTime, keepaliveInterval } = config.bgp;
  if (holdTime > 0 && keepaliveInterval >= holdTime) problems.push(`bgp.keepaliveInterval: must be less than the hold time (${holdTime})`);
  config.bgp.peers.forEach((peer, i) => {
    const hold = peer.holdTime ?? holdTime;
    const keepalive = peer.keepaliveInterval ?? keepaliveInterval;
    if (hold > 0 && keepalive >= hold && (peer.holdTime !== undefined || peer.keepaliveInterval !== undefined)) {
      problems.push(`bgp.peers[${i}].keepaliveInterval: must be less than the hold time (${hold})`);
    }
    const range = podRangeOf(config.cluster.podRanges, peer.address);
    if (range !== undefined) problems.push(`bgp.peers[${i}].address: inside cluster.podRanges[${range}] (${config.cluster.podRanges[range]}): a pod is never a BGP peer`);
  });
  problems.push(...poolProblems(config));
  const seen = new Map<string, number>();
  config.bgp.peers.forEach((peer, i) => {
    const key = ipaddr.parse(peer.address).toNormalizedString();
    const first = seen.get(key);
    if (first !== undefined) problems.push(`bgp.peers[${i}].address: duplicates bgp.peers[${first}]`);
    else seen.set(key, i);
  });
  return problems;
}

/**
 * Service ranges: no LoadBalancer pool address in two pools or in a pod range (it would be handed out twice), pool
 * names unique, and no external-IP or ClusterIP range inside the pod ranges.
 */
function poolProblems(config: AgentConfig): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  const placed: { where: string; prefix: IpPrefix }[] = config.cluster.podRanges.flatMap((c, i) => {
    const prefix = parseIpPrefix(c);
    return prefix === undefined ? [] : [{ where: `cluster.podRanges[${i}]`, prefix }];
  });
  for (const key of ['externalIPRanges', 'clusterIPRanges'] as const) {
    config.services[key].forEach((c, i) => {
      const prefix = parseIpPrefix(c);
      const clash = prefix === undefined ? undefined : placed.find((p) => p.where.startsWith('cluster.') && prefixesOverlap(p.prefix, prefix));
      if (clash !== undefined) problems.push(`services.${key}[${i}]: ${c} overlaps ${clash.where} (${clash.prefix.text})`);
    });
  }
  config.services.loadBalancerPools.forEach((pool, i) => {
    const first = names.get(pool.name);
    if (first !== undefined) problems.push(`services.loadBalancerPools[${i}].name: ${pool.name} is also the name of services.loadBalancerPools[${first}]`);
    else names.set(pool.name, i);
    pool.cidrs.forEach((c, j) => {
      const prefix = parseIpPrefix(c);
      if (prefix === undefined) return;
      const where = `services.loadBalancerPools[${i}].cidrs[${j}]`;
      const clash = placed.find((p) => prefixesOverlap(p.prefix, prefix));
      if (clash !== undefined) problems.push(`${where}: ${c} overlaps ${clash.where} (${clash.prefix.text})`);
      placed.push({ where, prefix });
    });
  });
  return problems;
}

/** The index of the pod range holding `address`, if one does. */
export function podRangeOf(podRanges: readonly string[], address: string): number | undefined {
  const parsed = parseIpAddress(address);
  if (parsed === undefined) return undefined;
  const index = podRanges.findIndex((range) => {
    const prefix = parseIpPrefix(range);
    return prefix !== undefined && prefixContainsAddress(prefix, parsed);
  });
  return index < 0 ? undefined : index;
}

/** Overrides from flags and the environment, applied on top of the file. Undefined = not given. */
export interface ConfigOverrides {
  nodeName?: string;
  kubeconfig?: string;
  gobgpTarget?: string;
  cniConfDir?: string;
  cniBinDir?: string;
  logLevel?: string;
  logFormat?: string;
}

export function overridesFromEnv(env: NodeJS.ProcessEnv): ConfigOverrides {
  return { nodeName: env.NODE_NAME || undefined, kubeconfig: env.KUBECONFIG || undefined };
}

/** Reads the YAML file (if any) and merges overrides: flags > environment > file > defaults. */
export async function loadAgentConfig(file: string | undefined, ...layers: ConfigOverrides[]): Promise<AgentConfig> {
  let raw: unknown = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`config file ${file}: ${(err as Error).message}`]);
    }
    try {
      raw = YAML.parse(text) ?? {};
    } catch (err) {
      throw new ConfigError([`config file ${file}: not valid YAML: ${(err as Error).message}`]);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ConfigError([`config file ${file}: the top level must be a mapping of keys`]);
    }
  }
  const merged = structuredClone(raw) as Record<string, unknown>;
  const section = (key: string): Record<string, unknown> => {
    const value = merged[key];
    if (value === undefined) {
      const fresh: Record<string, unknown> = {};
      merged[key] = fresh;
      return fresh;
    }
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
    return {}; // a wrongly typed section stays as it is, for the schema to report
  };
  for (const layer of layers) {
    if (layer.nodeName !== undefined) merged.nodeName = layer.nodeName;
    if (layer.kubeconfig !== undefined) merged.kubeconfig = layer.kubeconfig;
    if (layer.gobgpTarget !== undefined) section('gobgp').target = layer.gobgpTarget;
    if (layer.cniConfDir !== undefined) section('cni').confDir = layer.cniConfDir;
    if (layer.cniBinDir !== undefined) section('cni').binDir = layer.cniBinDir;
    if (layer.logLevel !== undefined) section('log').level = layer.logLevel;
    if (layer.logFormat !== undefined) section('log').format = layer.logFormat;
  }
  return parseAgentConfig(merged);
}
