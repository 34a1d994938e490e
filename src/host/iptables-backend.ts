// Which iptables the node's rules live in: iptables 1.8 writes either to the kernel's legacy x_tables ("legacy")
// or to nf_tables ("nft"), and the two never see each other's rules. podroute must write where kube-proxy writes,
// or its policy jumps and masquerade run in an order nobody chose. Like Calico's `iptablesBackend: Auto` and
// kube-proxy's iptables-wrapper, the agent looks at the rules already there once at start; `iptables.backend`
// overrides the guess. The choice is pure (chooseIptablesBackend); detectIptablesBackend only runs the saves.
import type { CommandRunner } from './command.js';
import type { IpFamily } from '../routes/ip-prefix.js';

export type IptablesBackend = 'nft' | 'legacy';
export const IPTABLES_BACKEND_SETTINGS = ['auto', 'nft', 'legacy'] as const;
export type IptablesBackendSetting = (typeof IPTABLES_BACKEND_SETTINGS)[number];

/** nft when nothing tells: Debian's and most distributions' default, and kube-proxy's image default. */
export const DEFAULT_IPTABLES_BACKEND: IptablesBackend = 'nft';

/** The binaries of one backend and family, named explicitly so that the image's `iptables` alternative never matters. */
export interface IptablesCommands {
  /** `iptables-nft`, for `-S` listings. */
  iptables: string;
  save: string;
  restore: string;
}

export function iptablesCommands(backend: IptablesBackend, family: IpFamily): IptablesCommands {
  const base = family === 'ipv4' ? 'iptables' : 'ip6tables';
  return { iptables: `${base}-${backend}`, save: `${base}-${backend}-save`, restore: `${base}-${backend}-restore` };
}

/** What one backend holds, both families together, not counting podroute's own chains and rules. */
export interface BackendRuleCounts {
  /** The kubelet's marker chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY): which iptables the node uses. */
  kubeletHints: number;
  /** Chains named KUBE-*: kube-proxy's (and the kubelet's). */
  kubeChains: number;
  /** Rules (-A lines) of every other tool. */
  rules: number;
}

/** podroute's own chains: they are where the agent put them last time, so they prove nothing about the node. */
const OWN_CHAIN = /^(PRPOL-|PODROUTE-)/;
const KUBELET_HINTS = new Set(['KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY']);

/** Counts one `iptables-save` output (any tables, one family); several outputs add up with addCounts. */
export function countSavedRules(saveOutput: string): BackendRuleCounts {
  const counts: BackendRuleCounts = { kubeletHints: 0, kubeChains: 0, rules: 0 };
  for (const line of saveOutput.split('\n')) {
    if (line.startsWith(':')) {
      const chain = line.slice(1).split(' ')[0] ?? '';
      if (KUBELET_HINTS.has(chain)) counts.kubeletHints++;
      if (chain.startsWith('KUBE-')) counts.kubeChains++;
    } else if (line.startsWith('-A ')) {
      const chain = line.split(' ')[1] ?? '';
      // A jump into one of ours (from a built-in chain) is ours too.
      const target = / -[jg] (\S+)/.exec(line)?.[1] ?? '';
      if (!OWN_CHAIN.test(chain) && !OWN_CHAIN.test(target)) counts.rules++;
    }
  }
  return counts;
}

export function addCounts(a: BackendRuleCounts, b: BackendRuleCounts): BackendRuleCounts {
  return { kubeletHints: a.kubeletHints + b.kubeletHints, kubeChains: a.kubeChains + b.kubeChains, rules: a.rules + b.rules };
}

export interface BackendChoice {
  backend: IptablesBackend;
  /** Why, for the log: "configured", or what the counts showed. */
  reason: string;
}

/**
 * The backend the node uses, from what each holds. In order: the kubelet's marker chains (kubelet 1.17+ creates
 * them in the backend the node uses, whatever kube-proxy mode runs); then kube-proxy's KUBE-* chains; then every
 * other tool's rules; each step decides only when one side has more. Nothing anywhere: nft.
 */
export function chooseIptablesBackend(counts: Record<IptablesBackend, BackendRuleCounts>): BackendChoice {
  const { nft, legacy } = counts;
  const steps: Array<{ key: keyof BackendRuleCounts; what: string }> = [
    { key: 'kubeletHints', what: "the kubelet's KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY chains" },
    { key: 'kubeChains', what: 'KUBE-* chains' },
    { key: 'rules', what: 'rules of other tools' },
  ];
  for (const { key, what } of steps) {
    if (nft[key] === legacy[key]) continue;
    const backend: IptablesBackend = nft[key] > legacy[key] ? 'nft' : 'legacy';
    return { backend, reason: `${what}: ${legacy[key]} in legacy, ${nft[key]} in nft` };
  }
  return { backend: DEFAULT_IPTABLES_BACKEND, reason: `no rules of other tools in either backend: ${DEFAULT_IPTABLES_BACKEND} (the default)` };
}

/**
 * The configured backend, or (auto) the one the node's rules are in. A save that fails (a backend whose kernel
 * side or binary is missing) counts as empty. No `-t`: a legacy save of a named table would create that table.
 */
export async function resolveIptablesBackend(setting: IptablesBackendSetting, runner: CommandRunner, signal?: AbortSignal): Promise<BackendChoice> {
  if (setting !== 'auto') return { backend: setting, reason: 'configured (iptables.backend)' };
  const opts = signal === undefined ? {} : { signal };
  const count = async (backend: IptablesBackend): Promise<BackendRuleCounts> => {
    const outputs = await Promise.all(
      (['ipv4', 'ipv6'] as const).map((family) => runner.run([iptablesCommands(backend, family).save], opts).catch(() => '')),
    );
    return outputs.map(countSavedRules).reduce(addCounts);
  };
  const [nft, legacy] = await Promise.all([count('nft'), count('legacy')]);
  return chooseIptablesBackend({ nft, legacy });
}
