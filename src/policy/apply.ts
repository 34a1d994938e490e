// The policy applier: reads our chains, jumps and sets from the kernel and runs a plan's restore inputs. Thin on
// purpose; all decisions are in plan.ts. It never writes a whole table: only `iptables-restore --noflush` of the
// chains a plan names, `ipset restore` of our sets, `ipset destroy` of our stale sets.
import { execa } from 'execa';
import { CHAIN_PREFIX, JUMP_COMMENT, SET_PREFIX } from './compile.js';
import {
  emptyObservedState,
  normalizeSetMember,
  RULE_HASH_PREFIX,
  type ObservedFamily,
  type ObservedPolicyState,
  type PolicyPlan,
} from './plan.js';
import type { IpFamily } from './types.js';

export interface RunOptions {
  input?: string;
  signal?: AbortSignal;
}

/** Runs one command to completion and returns its stdout; throws CommandFailedError otherwise. */
export interface CommandRunner {
  run(argv: string[], options?: RunOptions): Promise<string>;
}

export class CommandFailedError extends Error {
  readonly code = 'POLICY_COMMAND_FAILED';
  readonly argv: string[];
  readonly stderr: string;
  constructor(argv: string[], stderr: string, cause?: unknown) {
    super(`${argv.join(' ')} failed: ${stderr.trim() || String(cause)}`, { cause });
    this.name = 'CommandFailedError';
    this.argv = argv;
    this.stderr = stderr;
  }
}

export class PolicyApplyError extends Error {
  readonly code = 'POLICY_APPLY_FAILED';
  /** Which step failed: ipset, iptables-v4, iptables-v6. */
  readonly step: string;
  /** The exact restore input that was refused, for the log. */
  readonly input: string;
  constructor(step: string, input: string, cause: unknown) {
    super(`policy apply failed at ${step}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'PolicyApplyError';
    this.step = step;
    this.input = input;
  }
}

/** Runs commands in the current network namespace (the agent runs in its node's). */
export function localRunner(prefix: string[] = []): CommandRunner {
  return {
    async run(argv, options = {}) {
      const full = [...prefix, ...argv];
      const [file, ...args] = full;
      if (file === undefined) throw new CommandFailedError(full, 'empty command');
      try {
        const result = await execa(file, args, {
          input: options.input ?? '',
          ...(options.signal === undefined ? {} : { cancelSignal: options.signal }),
          stripFinalNewline: false,
        });
        return result.stdout;
      } catch (err) {
        const stderr = typeof (err as { stderr?: unknown }).stderr === 'string' ? (err as { stderr: string }).stderr : '';
        throw new CommandFailedError(full, stderr, err);
      }
    },
  };
}

/** Runs commands inside a named network namespace (tests, the lab). */
export function netnsRunner(netns: string): CommandRunner {
  return localRunner(['ip', 'netns', 'exec', netns]);
}

const BUILTIN = new Set(['INPUT', 'FORWARD', 'OUTPUT']);

/** Our part of `iptables-save -t filter` output. */
export function parseIptablesSave(text: string): ObservedFamily {
  const chains = new Map<string, string[]>();
  const jumps: ObservedFamily['jumps'] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      if (name.startsWith(CHAIN_PREFIX) && !chains.has(name)) chains.set(name, []);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const chain = line.split(' ')[1] ?? '';
    if (chain.startsWith(CHAIN_PREFIX)) {
      const hash = new RegExp(`--comment "?${RULE_HASH_PREFIX}([0-9a-f]+)"?`).exec(line);
      const list = chains.get(chain) ?? [];
      list.push(hash?.[1] ?? '');
      chains.set(chain, list);
    } else if (BUILTIN.has(chain) && line.includes(`--comment "${JUMP_COMMENT}"`)) {
      const target = / -j (\S+)/.exec(line)?.[1];
      if (target !== undefined && target.startsWith(CHAIN_PREFIX)) jumps.push({ chain, target });
    }
  }
  return { chains, jumps };
}

/** Our sets in `ipset save` output. */
export function parseIpsetSave(text: string): ObservedPolicyState['sets'] {
  const sets: ObservedPolicyState['sets'] = new Map();
  const ours = (name: string): boolean => name.startsWith(`${SET_PREFIX}4-`) || name.startsWith(`${SET_PREFIX}6-`);
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[0] === 'create' && words[1] !== undefined && ours(words[1])) {
      const familyAt = words.indexOf('family');
      const family: IpFamily = words[familyAt + 1] === 'inet6' ? 6 : 4;
      sets.set(words[1], { name: words[1], type: words[2] ?? '', family, members: [] });
    } else if (words[0] === 'add' && words[1] !== undefined && words[2] !== undefined) {
      const set = sets.get(words[1]);
      if (set !== undefined) set.members.push(normalizeSetMember(set.type, words[2]));
    }
  }
  return sets;
}

export interface ApplyResult {
  /** Non-fatal failures (stale chains or sets that could not be removed yet); the kernel may differ from the plan. */
  warnings: string[];
}

export class IptablesPolicyApplier {
  private readonly runner: CommandRunner;

  constructor(options: { runner?: CommandRunner } = {}) {
    this.runner = options.runner ?? localRunner();
  }

  async readObserved(signal?: AbortSignal): Promise<ObservedPolicyState> {
    const state = emptyObservedState();
    const opts = signal === undefined ? {} : { signal };
    // Three reads at once: they only read, and each is mostly process start-up.
    const [v4, v6, sets] = await Promise.all([
      this.runner.run(['iptables-save', '-t', 'filter'], opts),
      this.runner.run(['ip6tables-save', '-t', 'filter'], opts),
      this.runner.run(['ipset', 'save'], opts),
    ]);
    state.v4 = parseIptablesSave(v4);
    state.v6 = parseIptablesSave(v6);
    state.sets = parseIpsetSave(sets);
    return state;
  }

  /**
   * Sets first (new rules may reference them), then one transaction per family with the stale chains deleted at
   * its end (one restore process per family: each spends most of its time reading its table), then the stale
   * sets. A failure of the first two steps throws and leaves the previous rules in force.
   */
  async apply(plan: PolicyPlan, signal?: AbortSignal): Promise<ApplyResult> {
    const opts = signal === undefined ? {} : { signal };
    const warnings: string[] = [];
    if (plan.ipsetRestore !== '') {
      await this.step('ipset', plan.ipsetRestore, ['ipset', 'restore'], opts);
    }
    const family = async (f: IpFamily): Promise<void> => {
      const argv = [restoreCommand(f), '--noflush', '-w', '5'];
      const combined = plan.iptablesCombined[f];
      const main = plan.iptablesRestore[f];
      const cleanup = plan.iptablesCleanup[f];
      if (combined !== '' && cleanup !== '') {
        try {
          await this.runner.run(argv, { ...opts, input: combined });
          return;
        } catch (err) {
          if (signal?.aborted === true) throw err;
          // Refused as a whole: maybe a stale chain is still referenced from outside. Update first, clean up apart.
          warnings.push(`IPv${f} update with cleanup refused, applying them apart: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (main !== '') await this.step(`iptables-v${f}`, main, argv, opts);
      if (cleanup === '') return;
      try {
        await this.runner.run(argv, { ...opts, input: cleanup });
      } catch (err) {
        warnings.push(`removing stale IPv${f} chains: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    // One after the other: when IPv4 is refused, IPv6 keeps its previous rules too (the whole update waits).
    await family(4);
    await family(6);
    for (const set of plan.destroySets) {
      try {
        await this.runner.run(['ipset', 'destroy', set], opts);
      } catch (err) {
        warnings.push(`destroying set ${set}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return { warnings };
  }

  private async step(step: string, input: string, argv: string[], opts: RunOptions): Promise<void> {
    try {
      await this.runner.run(argv, { ...opts, input });
    } catch (err) {
      throw new PolicyApplyError(step, input, err);
    }
  }
}

function restoreCommand(family: IpFamily): string {
  return family === 4 ? 'iptables-restore' : 'ip6tables-restore';
}
