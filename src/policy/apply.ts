// The policy applier: reads our chains, jumps and sets from the kernel and runs a plan's restore inputs. Thin on
// purpose; all decisions are in plan.ts. It never writes a whole table: only `iptables-restore --noflush` of the
// chains a plan names, `ipset restore` of our sets, `ipset destroy` of our stale sets.
import { createHash } from 'node:crypto';
import { CommandFailedError, localRunner, type CommandRunner, type RunOptions } from '../host/command.js';
import { DEFAULT_IPTABLES_BACKEND, iptablesCommands, type IptablesBackend } from '../host/iptables-backend.js';
import { listSetsInput, parseIpsetSave } from '../host/ipset-save.js';
import { IpsetSession, IpsetSessionError } from '../host/ipset-session.js';
import { ipVersion, type IpFamily } from '../routes/ip-prefix.js';
import { CHAIN_PREFIX, JUMP_COMMENT, SET_PREFIX } from './compile.js';
import {
  emptyObservedState,
  normalizeSetMember,
  RULE_HASH_PREFIX,
  type ObservedFamily,
  type ObservedPolicyState,
  type PolicyPlan,
  type SetPlan,
} from './plan.js';

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

const BUILTIN = new Set(['INPUT', 'FORWARD', 'OUTPUT']);

/** Our part of `iptables-save -t filter` output. */
export function parseIptablesSave(text: string): ObservedFamily {
  const chains = new Map<string, string[]>();
  const jumps: ObservedFamily['jumps'] = [];
  const builtinRules = new Map<string, number>();
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
    } else if (BUILTIN.has(chain)) {
      const position = (builtinRules.get(chain) ?? 0) + 1;
      builtinRules.set(chain, position);
      if (!line.includes(`--comment "${JUMP_COMMENT}"`)) continue;
      const target = / -j (\S+)/.exec(line)?.[1];
      if (target !== undefined && target.startsWith(CHAIN_PREFIX)) jumps.push({ chain, target, position });
    }
  }
  return { chains, jumps };
}

/** Our sets in `ipset save` output, entries in the form the planner compares. */
export function observedPolicySets(text: string): ObservedPolicyState['sets'] {
  const sets: ObservedPolicyState['sets'] = new Map();
  const ours = (name: string): boolean => name.startsWith(`${SET_PREFIX}4-`) || name.startsWith(`${SET_PREFIX}6-`);
  for (const set of parseIpsetSave(text, ours).values()) {
    const family: IpFamily = set.family === 'inet6' ? 'ipv6' : 'ipv4';
    sets.set(set.name, { name: set.name, type: set.type, family, members: set.entries.map((e) => normalizeSetMember(set.type, e)) });
  }
  return sets;
}

/** `iptables-save -t filter` of both families and `ipset save`, as read. */
export interface ObservedPolicyText {
  v4: string;
  v6: string;
  sets: string;
}

export function parseObservedPolicy(text: ObservedPolicyText): ObservedPolicyState {
  const state = emptyObservedState();
  state.v4 = parseIptablesSave(text.v4);
  state.v6 = parseIptablesSave(text.v6);
  state.sets = observedPolicySets(text.sets);
  return state;
}

/**
 * A hash of everything in the save outputs the planner looks at: our chains' rules, every rule of the built-in
 * chains (our jumps and their positions) and the members of our sets named in `setNames` (those the rules were
 * compiled with, sorted). Left out: comments (iptables-save dates them), chain headers of other chains (legacy
 * iptables prints live counters there) and other tools' sets, so traffic and other programs' own objects do not
 * change it. Two reads with the same fingerprint plan the same changes, a set of ours not named aside (see
 * IptablesPolicyApplier.readKernelFingerprint, which reads the same fingerprint without the sets' text).
 */
export function policyKernelFingerprint(text: ObservedPolicyText, setNames: readonly string[]): string {
  return kernelFingerprint(text.v4, text.v6, savedSetsDigest(text.sets, setNames));
}

function kernelFingerprint(v4: string, v6: string, setsDigest: string): string {
  // sha1: a change detector over our own kernel state, no security boundary (whoever edits the kernel is root).
  const hash = createHash('sha1');
  // Runs of matching lines go into the hash as one slice each, and lines are tested in place (startsWith at an
  // offset): no string per line.
  const hashLines = (save: string, keep: (at: number) => boolean): void => {
    let runStart = -1;
    let at = 0;
    while (at < save.length) {
      const next = save.indexOf('\n', at);
      const end = next === -1 ? save.length : next + 1;
      if (keep(at)) {
        if (runStart === -1) runStart = at;
      } else if (runStart !== -1) {
        hash.update(save.slice(runStart, at));
        runStart = -1;
      }
      at = end;
    }
    if (runStart !== -1) hash.update(save.slice(runStart));
    hash.update('\n');
  };
  const ruleLine = (save: string) => (at: number): boolean =>
    save.startsWith(`:${CHAIN_PREFIX}`, at) || save.startsWith(`-A ${CHAIN_PREFIX}`, at) || BUILTIN_RULE_PREFIXES.some((p) => save.startsWith(p, at));
  hash.update('#v4\n');
  hashLines(v4, ruleLine(v4));
  hash.update('#v6\n');
  hashLines(v6, ruleLine(v6));
  hash.update(`#sets ${setsDigest}\n`);
  return hash.digest('hex');
}

/**
 * SHA-1 (hex) of the named sets' lines in `ipset save` output, set by set in the order of `setNames`: the bytes
 * `ipset restore` prints for listSetsInput(setNames) when those sets are there. A set's lines are one run in the
 * output (its `create` line, then its `add` lines), hashed as one slice.
 */
export function savedSetsDigest(save: string, setNames: readonly string[]): string {
  const runs = new Map<string, { from: number; to: number }>();
  const wanted = new Set(setNames);
  let open: { from: number; to: number } | undefined;
  for (let at = 0; at < save.length; ) {
    const next = save.indexOf('\n', at);
    const end = next === -1 ? save.length : next + 1;
    if (save.startsWith('create ', at)) {
      if (open !== undefined) open.to = at;
      const nameEnd = save.indexOf(' ', at + 7);
      const name = save.slice(at + 7, nameEnd === -1 || nameEnd >= end ? (next === -1 ? save.length : next) : nameEnd);
      open = wanted.has(name) ? { from: at, to: save.length } : undefined;
      if (open !== undefined) runs.set(name, open);
    }
    at = end;
  }
  if (open !== undefined) open.to = save.length;
  const hash = createHash('sha1');
  for (const name of setNames) {
    const run = runs.get(name);
    if (run !== undefined) hash.update(save.slice(run.from, run.to));
  }
  return hash.digest('hex');
}

/** The names of our sets in `ipset save` output, sorted. */
export function policySetNamesIn(save: string): string[] {
  const names: string[] = [];
  // The output's first line has no newline before it: read it as if it had.
  const text = `\n${save}`;
  for (const prefix of [`\ncreate ${SET_PREFIX}4-`, `\ncreate ${SET_PREFIX}6-`]) {
    for (let at = text.indexOf(prefix); at !== -1; at = text.indexOf(prefix, at + 1)) {
      const from = at + '\ncreate '.length;
      const end = text.slice(from, from + 256).search(/[\s]/);
      names.push(text.slice(from, end === -1 ? undefined : from + end));
    }
  }
  return names.sort();
}

const BUILTIN_RULE_PREFIXES = [...BUILTIN].map((chain) => `-A ${chain} `);

export interface ApplyResult {
  /** Non-fatal failures (stale chains or sets that could not be removed yet); the kernel may differ from the plan. */
  warnings: string[];
}

export interface PolicyApplierOptions {
  runner?: CommandRunner;
  /** Which iptables the rules go to (the agent detects it at start, see host/iptables-backend.ts). Default nft. */
  backend?: IptablesBackend;
  /** How long restores are held open at most when their beacon does not come (tests shorten it). */
  releaseAfterMs?: number;
}

export class IptablesPolicyApplier {
  private readonly runner: CommandRunner;
  readonly backend: IptablesBackend;
  private readonly releaseAfterMs: number;
  /** Writes set entries without a process per write (none when the runner cannot say how it runs commands). */
  private readonly ipsetSession: IpsetSession | undefined;

  constructor(options: PolicyApplierOptions = {}) {
    this.runner = options.runner ?? localRunner();
    this.backend = options.backend ?? DEFAULT_IPTABLES_BACKEND;
    this.releaseAfterMs = options.releaseAfterMs ?? RESTORE_RELEASE_AFTER_MS;
    // Line-buffered: interactive ipset prints to stdout through stdio, which holds a pipe's output back.
    const sessionArgv = this.runner.argvFor?.(['stdbuf', '-oL', 'ipset', '-']);
    this.ipsetSession = sessionArgv === undefined ? undefined : new IpsetSession(sessionArgv);
  }

  /** Ends the `ipset` process kept between writes (the next write starts it again). */
  close(): void {
    this.ipsetSession?.close();
  }

  /**
   * An `ipset restore` script. Entries in and out (a label change, a pod that came or went) go to the kept
   * `ipset -` process; anything else (a new set, a swap), or when that process cannot run, to `ipset restore`.
   */
  private async writeSets(script: string, base: RunOptions): Promise<void> {
    const session = this.ipsetSession;
    if (session !== undefined && ENTRY_LINES.test(script)) {
      try {
        await session.run(script, base.signal);
        return;
      } catch (err) {
        if (!(err instanceof IpsetSessionError) || err.refused || base.signal?.aborted === true) throw err;
        // The process ended: every line is an idempotent add or del (-exist), so `ipset restore` takes them all.
      }
    }
    await this.runner.run(['ipset', 'restore'], { ...base, input: script });
  }

  async readObserved(signal?: AbortSignal): Promise<ObservedPolicyState> {
    return parseObservedPolicy(await this.readObservedText(signal));
  }

  /** The save outputs our state is read from, unparsed (see parseObservedPolicy, policyKernelFingerprint). */
  async readObservedText(signal?: AbortSignal): Promise<ObservedPolicyText> {
    const opts = signal === undefined ? {} : { signal };
    // Three reads at once: they only read, and each is mostly process start-up.
    const [v4, v6, sets] = await Promise.all([
      this.runner.run([iptablesCommands(this.backend, 'ipv4').save, '-t', 'filter'], opts),
      this.runner.run([iptablesCommands(this.backend, 'ipv6').save, '-t', 'filter'], opts),
      this.runner.run(['ipset', 'save'], opts),
    ]);
    return { v4, v6, sets };
  }

  /**
   * policyKernelFingerprint(readObservedText(), setNames), read without the sets' text: only the named sets are
   * listed, and their output is hashed where it is read (on a 30,000-pod node it is 1.6 MB, and a resync that finds
   * the kernel unchanged needs no more of it). Throws when a named set is missing (the read refuses it).
   */
  async readKernelFingerprint(setNames: readonly string[], signal?: AbortSignal): Promise<string> {
    const opts = signal === undefined ? {} : { signal };
    const [v4, v6, setsDigest] = await Promise.all([
      this.runner.run([iptablesCommands(this.backend, 'ipv4').save, '-t', 'filter'], opts),
      this.runner.run([iptablesCommands(this.backend, 'ipv6').save, '-t', 'filter'], opts),
      setNames.length === 0 ? savedSetsDigest('', []) : this.runner.run(['ipset', 'restore'], { ...opts, input: listSetsInput(setNames), digest: true }),
    ]);
    return kernelFingerprint(v4, v6, setsDigest);
  }

  /**
   * Sets first (new rules may reference them), then one transaction per family with the stale chains deleted at
   * its end (one restore process per family, both at once), then the stale sets. A failure of the first two steps
   * throws and leaves each family's previous rules, or its new ones, complete in force.
   */
  async apply(plan: PolicyPlan, signal?: AbortSignal): Promise<ApplyResult> {
    return this.applyRendering(plan, () => plan, signal);
  }

  /**
   * apply() of a plan whose rules are rendered while its sets go in: `render()` runs once the set restore has
   * started (a full sync renders ~12,000 rules, about as long as the sets take to load), at once or in slices. The
   * sets written and destroyed are `sets`'s; only the rules are taken from the rendered plan, which is returned too.
   */
  async applyRendering(sets: SetPlan, render: () => PolicyPlan | Promise<PolicyPlan>, signal?: AbortSignal): Promise<ApplyResult & { plan: PolicyPlan }> {
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    // Past this, a restore whose progress line did not come (another iptables wording) is let go to finish: its
    // end tells the outcome.
    const fallback = setTimeout(release, this.releaseAfterMs);
    try {
      return await this.applyHeld(sets, render, released, signal);
    } finally {
      clearTimeout(fallback);
      release();
    }
  }

  private async applyHeld(sets: SetPlan, render: () => PolicyPlan | Promise<PolicyPlan>, released: Promise<void>, signal?: AbortSignal): Promise<ApplyResult & { plan: PolicyPlan }> {
    const base: RunOptions = signal === undefined ? {} : { signal };
    const opts: RunOptions = { ...base, stdinUntil: released };
    const warnings: string[] = [];
    const writingSets = sets.ipsetRestore === '' ? Promise.resolve() : refusedAs('ipset', sets.ipsetRestore, () => this.writeSets(sets.ipsetRestore, base));
    let plan: PolicyPlan;
    try {
      plan = await render();
    } finally {
      await writingSets; // a render error is thrown once the set restore is over; a refused set restore wins
    }
    const family = async (f: IpFamily): Promise<void> => {
      const combined = plan.iptablesCombined[f];
      const main = plan.iptablesRestore[f];
      const cleanup = plan.iptablesCleanup[f];
      if (combined !== '' && cleanup !== '') {
        try {
          await this.restore(f, combined, opts);
          return;
        } catch (err) {
          if (signal?.aborted === true) throw err;
          // Refused as a whole: maybe a stale chain is still referenced from outside. Update first, clean up apart.
          warnings.push(`IPv${ipVersion(f)} update with cleanup refused, applying them apart: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (main !== '') await refusedAs(`iptables-v${ipVersion(f)}`, main, () => this.restore(f, main, opts));
      if (cleanup === '') return;
      try {
        await this.restore(f, cleanup, opts);
      } catch (err) {
        warnings.push(`removing stale IPv${ipVersion(f)} chains: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    // Both families at once; they share nothing but the sets written above. Each family's commit is atomic, so a
    // refusal leaves that family on its previous rules, complete; the caller re-reads the kernel and retries. Both
    // transactions are committed or refused before this returns or throws (their processes end right after).
    const outcomes = await Promise.allSettled([family('ipv4'), family('ipv6')]);
    // Pods leave a family's isolated sets only once its rules are in: a refused family keeps isolating them.
    const releases = (['ipv4', 'ipv6'] as const).filter((f, i) => outcomes[i]?.status === 'fulfilled').map((f) => sets.isolationReleases[f]).join('');
    if (releases !== '') await refusedAs('ipset', releases, () => this.writeSets(releases, base));
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
    await this.destroySets(sets.destroySets, base, warnings);
    return { warnings, plan };
  }

  /**
   * Destroys stale sets in one `ipset restore` (a policy with 600 peers leaves 1,200 sets: a process each took
   * 30 s). A refusal (a set still referenced) stops the restore at its line: that set stays, as a warning retried
   * at the next sync, and the restore goes on from the next line.
   */
  private async destroySets(names: readonly string[], base: RunOptions, warnings: string[]): Promise<void> {
    let rest = [...names];
    while (rest.length > 0) {
      try {
        await this.runner.run(['ipset', 'restore'], { ...base, input: rest.map((n) => `destroy ${n}\n`).join('') });
        return;
      } catch (err) {
        const line = err instanceof CommandFailedError ? Number(/line (\d+)/i.exec(err.stderr)?.[1] ?? NaN) : NaN;
        const refused = Number.isInteger(line) && line >= 1 && line <= rest.length ? line : 1;
        warnings.push(`destroying set ${rest[refused - 1] ?? ''}: ${err instanceof Error ? err.message : String(err)}`);
        rest = rest.slice(refused);
      }
    }
  }

  /**
   * One `iptables-restore --noflush` transaction, known to be in before the process ends: over nf_tables a process
   * waits out an RCU grace period as it ends, under the commit lock, which would hold up the other family. So the
   * input goes on past our COMMIT with a line iptables warns about as it reads it, in a block never committed: the
   * warning says ours is in, and the process waits on stdin until `opts.stdinUntil`. Not over legacy iptables,
   * which holds /run/xtables.lock while its input is open. The measurements are in commit b4e0bf8.
   */
  private async restore(f: IpFamily, input: string, opts: RunOptions): Promise<string> {
    const argv = [iptablesCommands(this.backend, f).restore, '--noflush', '-w', '5'];
    const body = input.endsWith('\n') ? input : `${input}\n`;
    if (this.backend === 'legacy') {
      const { stdinUntil: _held, settle: _settle, ...plain } = opts;
      return this.runner.run(argv, { ...plain, input: body });
    }
    const beaconFrom = lineCount(body) + 1;
    return await this.runner.run(argv, {
      ...opts,
      input: body + COMMITTED_BEACON,
      settle: (stderr) => {
        // A report naming a line ("line N failed", "line N: CHAIN_DEL failed (...)", "Error occurred at line: N"):
        // ours refused when N is one of ours; else the beacon's block (or, let go, the end of input inside it).
        const report = /\bline:? (\d+)/.exec(stderr);
        if (report !== null) return Number(report[1]) < beaconFrom ? new Error(stderr.trim()) : true;
        return stderr.includes(`\`${BEACON_INTERFACE}'`) ? true : undefined;
      },
    });
  }

}

/** Runs one step of an apply; its failure becomes a PolicyApplyError naming the step and the refused input. */
async function refusedAs(step: string, input: string, run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    throw new PolicyApplyError(step, input, err);
  }
}

/** A script of set entries only, each added or deleted (-exist: idempotent), as planSets writes a few changed ones. */
const ENTRY_LINES = /^(?:(?:add|del) \S+ \S+(?: nomatch)? -exist\n)+$/;

/** An interface name iptables warns about ("weird character in interface"), in a rule that is never committed. */
const BEACON_INTERFACE = 'committed/';
const COMMITTED_BEACON = `*filter\n-A ${CHAIN_PREFIX}NEVER-EXISTS -i ${BEACON_INTERFACE} -j RETURN\n`;

/** How long restores are held open at most when their beacon does not come (see restore()). */
const RESTORE_RELEASE_AFTER_MS = 10_000;

function lineCount(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
