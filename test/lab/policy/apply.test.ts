// The policy applier's restores against a real kernel: a transaction is reported committed as soon as it is in
// (before the restore process has ended), and a refused one is reported refused, never as committed.
import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import { execa } from 'execa';
import type { NetworkPolicy } from '../../../src/kube/wire.js';
import { builtinJumps, CHAINS, type CompiledPolicies, type FamilyRuleset } from '../../../src/policy/compile.js';
import { compilePolicies } from '../../unit/policy/scratch-compile.js';
import { netnsRunner, type CommandRunner, type RunOptions } from '../../../src/host/command.js';
import { IptablesPolicyApplier, PolicyApplyError } from '../../../src/policy/apply.js';
import { IpsetSession } from '../../../src/host/ipset-session.js';
import { resolveIptablesBackend, type IptablesBackend } from '../../../src/host/iptables-backend.js';
import { MasqueradeReconciler } from '../../../src/nat/masquerade.js';
import { MASQ_CHAIN } from '../../../src/nat/masquerade-plan.js';
import { createLogger } from '../../../src/observe/log.js';
import { planPolicyChanges, type PolicyPlan } from '../../../src/policy/plan.js';
import type { IpFamily } from '../../../src/routes/ip-prefix.js';
import { e2eWorld } from '../../unit/policy/world.js';
import { testLabName } from '../lab/leftovers.js';
import { pollUntil } from '../../poll.js';

const BASE = testLabName('h23apply', 'apply');
const NETNS = `${BASE}-${process.pid}`;

function plan(v4: string, v6: string): PolicyPlan {
  return {
    ipsetRestore: '',
    iptablesRestore: { ipv4: v4, ipv6: v6 },
    iptablesCleanup: { ipv4: '', ipv6: '' },
    iptablesCombined: { ipv4: v4, ipv6: v6 },
    isolationReleases: { ipv4: '', ipv6: '' },
    destroySets: [],
    summary: { changedChains: 1, deletedChains: 0, changedSets: 0, deletedSets: 0, jumpsAdded: 0 },
  };
}

async function legacyChains(cmd: 'iptables-legacy' | 'ip6tables-legacy', netns = NETNS): Promise<string[]> {
  return (await execa('ip', ['netns', 'exec', netns, cmd, '-S'])).stdout.split('\n').filter((l) => l.startsWith('-N PRPOL-'));
}

async function chains(family: IpFamily): Promise<string[]> {
  const r = await execa('ip', ['netns', 'exec', NETNS, family === 'ipv4' ? 'iptables' : 'ip6tables', '-S']);
  return r.stdout.split('\n').filter((l) => l.startsWith('-N PRPOL-'));
}

describe('policy applier restores (real iptables, nf_tables and legacy)', function () {
  this.timeout(60_000);

  before(async () => {
    await execa('bash', ['-c', `for n in $(ip netns list | awk '{print $1}' | grep '^${BASE}-'); do ip netns delete $n; done`]);
    await execa('ip', ['netns', 'add', NETNS]);
  });

  after(async () => {
    await execa('ip', ['netns', 'delete', NETNS], { reject: false });
  });

  it('reports both families committed while their processes may still be ending, with the rules already in', async () => {
    const applier = new IptablesPolicyApplier({ runner: netnsRunner(NETNS) });
    const before = Date.now();
    await applier.apply(plan('*filter\n:PRPOL-A - [0:0]\n-A PRPOL-A -j RETURN\nCOMMIT\n', '*filter\n:PRPOL-B - [0:0]\nCOMMIT\n'));
    // At the moment apply() returns, both chains are in the kernel.
    expect(await chains('ipv4')).to.deep.equal(['-N PRPOL-A']);
    expect(await chains('ipv6')).to.deep.equal(['-N PRPOL-B']);
    expect(Date.now() - before).to.be.lessThan(5_000);
    // The restores held open until both were in end right after: nothing of ours is left running in the namespace.
    await pollUntil('no process left in the namespace', async () => {
      const pids = (await execa('ip', ['netns', 'pids', NETNS])).stdout.trim();
      if (pids !== '') throw new Error(`still running: ${pids.split('\n').join(', ')}`);
      return true;
    }, { timeoutMs: 5_000, intervalMs: 50 });
  });

  it('reports a transaction the kernel refuses as refused, naming the family, and leaves that family as it was', async () => {
    const applier = new IptablesPolicyApplier({ runner: netnsRunner(NETNS) });
    // IPv4 jumps to a chain that does not exist: refused. IPv6 is fine and goes in.
    const refused = '*filter\n:PRPOL-C - [0:0]\n-A PRPOL-C -j PRPOL-MISSING\nCOMMIT\n';
    let error: unknown;
    try {
      await applier.apply(plan(refused, '*filter\n:PRPOL-D - [0:0]\nCOMMIT\n'));
    } catch (err) {
      error = err;
    }
    expect(error, 'apply must throw').to.be.instanceOf(Error);
    expect((error as { step?: string }).step).to.equal('iptables-v4');
    expect((error as Error).message, (error as Error).message).to.match(/line [1-4] failed|Error occurred at line: [1-4]\b/);
    expect(await chains('ipv4')).to.deep.equal(['-N PRPOL-A']);
    expect(await chains('ipv6')).to.deep.equal(['-N PRPOL-B', '-N PRPOL-D']);
  });

  it('reports a transaction refused at commit (a set that does not exist) as refused', async () => {
    const applier = new IptablesPolicyApplier({ runner: netnsRunner(NETNS) });
    const refused = '*filter\n:PRPOL-E - [0:0]\n-A PRPOL-E -m set --match-set PRPOL4-MISSING src -j RETURN\nCOMMIT\n';
    let error: unknown;
    try {
      await applier.apply(plan('', refused));
    } catch (err) {
      error = err;
    }
    expect(error, 'apply must throw').to.be.instanceOf(Error);
    expect((error as { step?: string }).step).to.equal('iptables-v6');
    expect(await chains('ipv6')).to.deep.equal(['-N PRPOL-B', '-N PRPOL-D']);
  });

  it('renders the rules while the sets go in, and applies them after the sets', async () => {
    // The order of events: each command as it starts and as it ends, and the rendering.
    const events: string[] = [];
    const real = netnsRunner(NETNS);
    const logged: CommandRunner = {
      run: async (argv, options) => {
        events.push(`start ${argv[0]}`);
        try {
          return await real.run(argv, options);
        } finally {
          events.push(`end ${argv[0]}`);
        }
      },
    };
    const applier = new IptablesPolicyApplier({ runner: logged });
    const sets = { ipsetRestore: 'create PRPOL4-R hash:ip family inet\nadd PRPOL4-R 10.1.2.3\n', isolationReleases: { ipv4: '', ipv6: '' }, destroySets: [], summary: { changedSets: 1, deletedSets: 0 } };
    const result = await applier.applyRendering(sets, () => {
      events.push('render');
      return { ...plan('*filter\n:PRPOL-R - [0:0]\n-A PRPOL-R -m set --match-set PRPOL4-R src -j RETURN\nCOMMIT\n', ''), ipsetRestore: sets.ipsetRestore };
    });
    // The set restore starts before the rendering; the rules (which name the set) start after it ended.
    expect(events.slice(0, 3)).to.deep.equal(['start ipset', 'render', 'end ipset']);
    expect(events.indexOf('start iptables-nft-restore')).to.be.greaterThan(events.indexOf('end ipset'));
    expect(result.plan.iptablesRestore.ipv4).to.include('PRPOL-R');
    expect(await chains('ipv4')).to.include('-N PRPOL-R');
    // A refused set restore is what gets reported, even when the rendering failed too; no rule goes in.
    let error: unknown;
    try {
      await applier.applyRendering({ ...sets, ipsetRestore: 'add PRPOL4-NOPE 10.9.9.9\n' }, () => {
        throw new Error('render failed');
      });
    } catch (err) {
      error = err;
    }
    expect((error as { step?: string }).step).to.equal('ipset');
  });

  it('loads all of a large set restore while the rendering keeps the thread busy (not 64 KiB, then a wait)', async () => {
    // ~500 KB of entries, far more than a pipe holds. The rendering does not return to the event loop: it polls
    // (synchronously) until the last entry is in the kernel, so it finishes only if the restore read its whole input.
    const members = Array.from({ length: 30_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    const ipsetRestore = `create PRPOL4-BIG hash:ip family inet maxelem 65536\n${members.map((m) => `add PRPOL4-BIG ${m}`).join('\n')}\n`;
    expect(ipsetRestore.length).to.be.greaterThan(8 * 65536);
    const last = members[members.length - 1] ?? '';
    const applier = new IptablesPolicyApplier({ runner: netnsRunner(NETNS) });
    let loadedWhileRendering = false;
    await applier.applyRendering({ ipsetRestore, isolationReleases: { ipv4: '', ipv6: '' }, destroySets: [], summary: { changedSets: 1, deletedSets: 0 } }, () => {
      const deadline = Date.now() + 10_000;
      while (!loadedWhileRendering && Date.now() < deadline) {
        loadedWhileRendering = spawnSync('ip', ['netns', 'exec', NETNS, 'ipset', 'test', 'PRPOL4-BIG', last]).status === 0;
      }
      return plan('', '');
    });
    expect(loadedWhileRendering, 'the last entry was in while the rendering still ran').to.equal(true);
    await execa('ip', ['netns', 'exec', NETNS, 'ipset', 'destroy', 'PRPOL4-BIG']);
  });

  it('still tells a committed transaction when iptables words its warning differently (let go after the release time)', async () => {
    const real = netnsRunner(NETNS);
    // The runner hides the warning from the applier, as another iptables version might not print it.
    const unfamiliar: CommandRunner = {
      run: (argv, options = {}) => {
        const settle = options.settle;
        return real.run(argv, settle === undefined ? options : { ...options, settle: (stderr) => settle(stderr.replaceAll('weird character in interface', '?').replaceAll('committed/', '?')) });
      },
    };
    // The agent holds restores for 10 s; the same fallback after 1 s keeps this test short.
    const applier = new IptablesPolicyApplier({ runner: unfamiliar, releaseAfterMs: 1_000 });
    const started = Date.now();
    await applier.apply(plan('*filter\n:PRPOL-F - [0:0]\nCOMMIT\n', ''));
    expect(Date.now() - started, 'held until the release time: no beacon was recognised').to.be.at.least(1_000);
    expect(await chains('ipv4')).to.include('-N PRPOL-F');
  });

  it('works the same with legacy iptables: both families in, neither held up by the other (they share the xtables lock)', async () => {
    const real = netnsRunner(NETNS);
    const restores: Array<{ argv: readonly string[]; options: RunOptions }> = [];
    const recording: CommandRunner = {
      run: (argv, options = {}) => {
        if (/-restore$/.test(argv[0] ?? '') && argv.includes('--noflush')) restores.push({ argv, options });
        return real.run(argv, options);
      },
    };
    const applier = new IptablesPolicyApplier({ runner: recording, backend: 'legacy' });
    await applier.apply(plan('*filter\n:PRPOL-G - [0:0]\n-A PRPOL-G -j RETURN\nCOMMIT\n', '*filter\n:PRPOL-H - [0:0]\nCOMMIT\n'));
    // Legacy restores hold the xtables lock while their input is open: neither is held open past its input, and
    // no block beyond ours is sent.
    expect(restores.map((r) => r.argv[0])).to.have.members(['iptables-legacy-restore', 'ip6tables-legacy-restore']);
    for (const { options } of restores) {
      expect(options.stdinUntil, 'legacy restore held open').to.equal(undefined);
      expect(options.input?.match(/^\*filter$/gm)).to.have.length(1);
    }
    expect(await legacyChains('iptables-legacy')).to.deep.equal(['-N PRPOL-G']);
    expect(await legacyChains('ip6tables-legacy')).to.deep.equal(['-N PRPOL-H']);
    // Read back from legacy as applied; the nft side never saw them.
    const observed = await applier.readObserved();
    expect([...observed.v4.chains.keys()]).to.deep.equal(['PRPOL-G']);
    expect(await chains('ipv4')).to.not.include('-N PRPOL-G');
  });

  it('keeps its jumps first in FORWARD and INPUT: one another tool inserted above is moved back in one transaction', async () => {
    const family = (f: IpFamily): FamilyRuleset => ({
      family: f,
      chains: new Map([
        [CHAINS.forward, [['-j', 'RETURN']]],
        [CHAINS.input, [['-j', 'RETURN']]],
      ]),
      sets: new Map(),
      jumps: builtinJumps(),
    });
    const desired: CompiledPolicies = { v4: family('ipv4'), v6: family('ipv6'), problems: [] };
    const applier = new IptablesPolicyApplier({ runner: netnsRunner(NETNS) });
    await applier.apply(planPolicyChanges(desired, await applier.readObserved()));
    // kube-proxy's KUBE-FORWARD shape: accepts marked packets; inserted above ours, in both families.
    const accept = ['-m', 'mark', '--mark', '0x4000/0x4000', '-j', 'ACCEPT'];
    for (const cmd of ['iptables', 'ip6tables']) {
      await execa('ip', ['netns', 'exec', NETNS, cmd, '-I', 'FORWARD', '1', ...accept]);
      await execa('ip', ['netns', 'exec', NETNS, cmd, '-I', 'INPUT', '1', ...accept]);
    }
    await applier.apply(planPolicyChanges(desired, await applier.readObserved()));
    for (const cmd of ['iptables', 'ip6tables']) {
      for (const chain of ['FORWARD', 'INPUT']) {
        const rules = (await execa('ip', ['netns', 'exec', NETNS, cmd, '-S', chain])).stdout.split('\n').filter((l) => l.startsWith('-A '));
        const target = chain === 'FORWARD' ? CHAINS.forward : CHAINS.input;
        expect(rules, `${cmd} ${chain}`).to.deep.equal([
          `-A ${chain} -m comment --comment "podroute policy" -j ${target}`,
          `-A ${chain} -m mark --mark 0x4000/0x4000 -j ACCEPT`,
        ]);
      }
    }
    // Nothing left to do once it is first again.
    const again = planPolicyChanges(desired, await applier.readObserved());
    expect(again.iptablesRestore).to.deep.equal({ ipv4: '', ipv6: '' });
  });

  it('takes 600 peers x 600 ports as peers plus ports rules (a peer chain, multiport), read back as applied', async () => {
    const world = e2eWorld();
    const from = Array.from({ length: 600 }, (_, i) => ({ podSelector: { matchLabels: { pod: i === 0 ? 'b' : `p${i}` } } }));
    const ports = Array.from({ length: 600 }, (_, i) => ({ protocol: i % 2 === 0 ? 'TCP' : 'UDP', port: 1000 + i, ...(i % 3 === 0 ? { endPort: 1000 + i } : {}) }));
    const wide: NetworkPolicy = { metadata: { namespace: 'x', name: 'wide' }, spec: { podSelector: {}, ingress: [{ from, ports }] } };
    const desired = compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies: [wide], node: world.nodes[0]! });
    expect(desired.problems).to.deep.equal([]);
    const applier = new IptablesPolicyApplier({ runner: netnsRunner(NETNS) });
    await applier.apply(planPolicyChanges(desired, await applier.readObserved()));
    for (const cmd of ['iptables', 'ip6tables']) {
      const rules = (await execa('ip', ['netns', 'exec', NETNS, cmd, '-S'])).stdout.split('\n').filter((l) => /^-A PRPOL-R(P)?-/.test(l));
      const multiport = rules.filter((l) => l.includes('-m multiport --dports'));
      // 300 TCP and 300 UDP ports: 20 multiport matches of 15 each per protocol, each jumping to the peer chain.
      expect(multiport, `${cmd}: multiport rules`).to.have.length(40);
      expect(rules.filter((l) => l.startsWith('-A PRPOL-RP-')), `${cmd}: peer chain rules`).to.have.length(600);
      expect(rules, `${cmd}: all rule and peer chain rules`).to.have.length(640);
    }
    const again = planPolicyChanges(desired, await applier.readObserved());
    expect(again.iptablesRestore, 'read back as applied').to.deep.equal({ ipv4: '', ipv6: '' });
    expect(again.ipsetRestore).to.equal('');
  });

  it('writes set entries in and out through one kept ipset process; a refused entry is reported; a process that ended is started again', async () => {
    const real = netnsRunner(NETNS);
    const ran: string[] = [];
    const counting: CommandRunner = { run: (argv, options) => (ran.push(argv.join(' ')), real.run(argv, options)), argvFor: (argv) => real.argvFor?.(argv) ?? [...argv] };
    const applier = new IptablesPolicyApplier({ runner: counting });
    const members = async (name: string): Promise<string[]> => {
      const lines = (await execa('ip', ['netns', 'exec', NETNS, 'ipset', 'list', name])).stdout.split('\n');
      return lines.slice(lines.indexOf('Members:') + 1).filter((l) => l !== '').sort();
    };
    const entries = (ipsetRestore: string): PolicyPlan => ({ ...plan('', ''), ipsetRestore, summary: { changedChains: 0, deletedChains: 0, changedSets: 1, deletedSets: 0, jumpsAdded: 0 } });
    try {
      // A new set is a restore (create, fill); the entries that follow go to the kept process.
      await applier.apply(entries('create PRPOL4-S hash:ip family inet -exist\nadd PRPOL4-S 10.9.0.1\n'));
      expect(ran).to.deep.equal(['ipset restore']);
      for (let i = 2; i <= 5; i++) await applier.apply(entries(`add PRPOL4-S 10.9.0.${i} -exist\ndel PRPOL4-S 10.9.0.${i - 1} -exist\n`));
      expect(ran, 'no process per write').to.have.length(1);
      expect(await members('PRPOL4-S')).to.deep.equal(['10.9.0.5']);
      // A refused line fails the apply (the reconciler re-reads); the lines around it are carried out.
      const refused = await applier.apply(entries('add PRPOL4-S 10.9.0.6 -exist\nadd PRPOL4-MISSING 10.9.0.6 -exist\nadd PRPOL4-S 10.9.0.7 -exist\n')).then(() => undefined, (err: unknown) => err);
      expect(refused).to.be.instanceOf(PolicyApplyError);
      expect(String(refused)).to.include('does not exist');
      expect(await members('PRPOL4-S')).to.deep.equal(['10.9.0.5', '10.9.0.6', '10.9.0.7']);
      // The kept process ends (killed from outside): the next write starts it again.
      const session = new IpsetSession(real.argvFor?.(['stdbuf', '-oL', 'ipset', '-']) ?? []);
      await session.run('del PRPOL4-S 10.9.0.5 -exist\n');
      process.kill(session.pid() ?? 0, 'SIGKILL');
      await pollUntil('the session process gone', () => session.pid() === undefined, { timeoutMs: 5_000, intervalMs: 10 });
      await session.run('del PRPOL4-S 10.9.0.6 -exist\n');
      session.close();
      expect(await members('PRPOL4-S')).to.deep.equal(['10.9.0.7']);
    } finally {
      applier.close();
      await execa('ip', ['netns', 'exec', NETNS, 'ipset', 'destroy', 'PRPOL4-S'], { reject: false });
    }
  });

  it('destroys stale sets in one ipset restore; one still referenced stays as a warning and the others go', async () => {
    const names = Array.from({ length: 300 }, (_, i) => `PRPOL4-P-stale${i.toString().padStart(4, '0')}`);
    await execa('ip', ['netns', 'exec', NETNS, 'ipset', 'restore'], { input: names.map((n) => `create ${n} hash:ip family inet\n`).join('') });
    const commands: string[] = [];
    const real = netnsRunner(NETNS);
    const counting: CommandRunner = {
      run: (argv, options) => {
        commands.push(argv.join(' '));
        return real.run(argv, options);
      },
    };
    const applier = new IptablesPolicyApplier({ runner: counting });
    const held = names[150]!;
    await execa('ip', ['netns', 'exec', NETNS, 'iptables', '-A', 'INPUT', '-m', 'set', '--match-set', held, 'src', '-j', 'RETURN']);
    const result = await applier.apply({ ...plan('', ''), destroySets: names });
    expect(result.warnings).to.have.length(1);
    expect(result.warnings[0]).to.include(held);
    // The refused line's set stays; the restore goes on from the next line: two processes, not one per set.
    expect(commands.filter((c) => c.startsWith('ipset'))).to.deep.equal(['ipset restore', 'ipset restore']);
    const left = (await execa('ip', ['netns', 'exec', NETNS, 'ipset', 'list', '-n'])).stdout.split('\n').filter((n) => n.startsWith('PRPOL4-P-stale'));
    expect(left).to.deep.equal([held]);
    await execa('ip', ['netns', 'exec', NETNS, 'iptables', '-D', 'INPUT', '-m', 'set', '--match-set', held, 'src', '-j', 'RETURN']);
    commands.length = 0;
    expect((await applier.apply({ ...plan('', ''), destroySets: [held] })).warnings).to.deep.equal([]);
    expect(commands.filter((c) => c.startsWith('ipset')), 'one ipset process when nothing is referenced').to.deep.equal(['ipset restore']);
  });
});

describe('iptables backend: detected from the rules on the node, written there (real iptables-legacy and iptables-nft)', function () {
  this.timeout(60_000);
  const LEGACY_NODE = `${NETNS}-legacy`;
  const NFT_NODE = `${NETNS}-nft`;
  // What kubelet and kube-proxy leave on a node (marker chains in mangle, the forwarding accept in filter).
  const KUBE_RULES = [
    '*mangle',
    ':KUBE-IPTABLES-HINT - [0:0]',
    ':KUBE-KUBELET-CANARY - [0:0]',
    'COMMIT',
    '*filter',
    ':KUBE-FORWARD - [0:0]',
    '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    '-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT',
    'COMMIT',
    '',
  ].join('\n');
  const forward = async (netns: string, cmd: string): Promise<string[]> =>
    (await execa('ip', ['netns', 'exec', netns, cmd, '-S', 'FORWARD'])).stdout.split('\n').filter((l) => l.startsWith('-A '));
  const postrouting = async (netns: string, cmd: string): Promise<string[]> =>
    (await execa('ip', ['netns', 'exec', netns, cmd, '-t', 'nat', '-S', 'POSTROUTING'])).stdout.split('\n').filter((l) => l.startsWith('-A '));

  before(async () => {
    for (const [netns, backend] of [[LEGACY_NODE, 'legacy'], [NFT_NODE, 'nft']] as const) {
      await execa('ip', ['netns', 'add', netns]);
      await execa('ip', ['netns', 'exec', netns, `iptables-${backend}-restore`, '--noflush'], { input: KUBE_RULES });
    }
  });

  after(async () => {
    for (const netns of [LEGACY_NODE, NFT_NODE]) await execa('ip', ['netns', 'delete', netns], { reject: false });
  });

  /** Policy jumps (and the masquerade chain) written with the backend `auto` (or the override) picks in `netns`. */
  async function writeWithChosenBackend(netns: string, setting: 'auto' | 'nft' | 'legacy', withMasquerade = false): Promise<IptablesBackend> {
    const runner = netnsRunner(netns);
    const { backend } = await resolveIptablesBackend(setting, runner);
    const family = (f: IpFamily): FamilyRuleset => ({ family: f, chains: new Map([[CHAINS.forward, [['-j', 'RETURN']]], [CHAINS.input, [['-j', 'RETURN']]]]), sets: new Map(), jumps: builtinJumps() });
    const applier = new IptablesPolicyApplier({ runner, backend });
    await applier.apply(planPolicyChanges({ v4: family('ipv4'), v6: family('ipv6'), problems: [] }, await applier.readObserved()));
    if (withMasquerade) {
      const masquerade = new MasqueradeReconciler({ clusterRanges: ['10.244.0.0/16'], logger: createLogger({ level: 'error' }), runner, iptablesBackend: backend });
      await masquerade.sync();
    }
    return backend;
  }

  it("auto picks legacy on a node whose kubelet and kube-proxy use legacy; policy goes first in legacy's FORWARD, masquerade into legacy's nat", async () => {
    expect(await writeWithChosenBackend(LEGACY_NODE, 'auto', true)).to.equal('legacy');
    expect(await forward(LEGACY_NODE, 'iptables-legacy')).to.deep.equal([
      `-A FORWARD -m comment --comment "podroute policy" -j ${CHAINS.forward}`,
      '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    ]);
    expect(await postrouting(LEGACY_NODE, 'iptables-legacy')).to.have.length(1).and.to.satisfy((l: string[]) => l[0]!.includes(`-j ${MASQ_CHAIN}`));
    expect(await forward(LEGACY_NODE, 'iptables-nft'), 'nothing in nft').to.deep.equal([]);
    expect(await postrouting(LEGACY_NODE, 'iptables-nft')).to.deep.equal([]);
  });

  it('auto picks nft where the rules are in nft; iptables.backend overrides the guess', async () => {
    expect(await writeWithChosenBackend(NFT_NODE, 'auto')).to.equal('nft');
    expect((await forward(NFT_NODE, 'ip6tables-nft'))[0]).to.include(`-j ${CHAINS.forward}`);
    expect(await forward(NFT_NODE, 'iptables-legacy')).to.deep.equal([]);
    // Told legacy on the same node: written to legacy although the node's rules are in nft. Our own rules there
    // since then do not sway a later auto: it still follows kube-proxy's.
    expect(await writeWithChosenBackend(NFT_NODE, 'legacy')).to.equal('legacy');
    expect((await forward(NFT_NODE, 'iptables-legacy'))[0]).to.include(`-j ${CHAINS.forward}`);
    expect((await resolveIptablesBackend('auto', netnsRunner(NFT_NODE))).backend).to.equal('nft');
  });
});
