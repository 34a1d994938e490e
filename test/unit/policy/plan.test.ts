// The planner: desired rulesets vs the kernel's chains/jumps/sets -> only the changed chains and sets.
import { expect } from 'chai';
import { CHAINS } from '../../../src/policy/compile.js';
import { compilePolicies } from './scratch-compile.js';
import { emptyObservedState, observedAfter, planPolicyChanges, hasControlCharacter, PolicyPlanError, renderRule } from '../../../src/policy/plan.js';
import { observedPolicySets, parseIptablesSave } from '../../../src/policy/apply.js';
import { e2eWorld, policy, type World } from './world.js';
import type { NetworkPolicy } from '../../../src/kube/wire.js';

function compileFor(world: World, policies: NetworkPolicy[]) {
  const node = world.nodes[0];
  if (node === undefined) throw new Error('no node');
  return compilePolicies({ pods: world.pods, namespaces: world.namespaces, policies, node });
}

const denyX = policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] });
const fromY = policy('x', 'from-y', {
  podSelector: { matchLabels: { pod: 'a' } },
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 'serve-80-tcp' }] }],
});

function chainsDeclared(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(':'))
    .map((l) => l.slice(1).split(' ')[0] ?? '');
}

describe('policy planner', () => {
  it('writes everything into an empty kernel, jumps inserted first in FORWARD and INPUT', () => {
    const desired = compileFor(e2eWorld(), [denyX, fromY]);
    const plan = planPolicyChanges(desired, emptyObservedState());
    expect(chainsDeclared(plan.iptablesRestore.ipv4)).to.have.members([...desired.v4.chains.keys()]);
    expect(plan.iptablesRestore.ipv4).to.include('-I FORWARD 1 -m comment --comment "podroute policy" -j PRPOL-FORWARD');
    expect(plan.iptablesRestore.ipv6).to.include('-I INPUT 1 -m comment --comment "podroute policy" -j PRPOL-INPUT');
    expect(plan.iptablesRestore.ipv4.trimEnd().endsWith('COMMIT')).to.equal(true);
    expect(plan.iptablesCleanup).to.deep.equal({ ipv4: '', ipv6: '' });
    for (const name of desired.v4.sets.keys()) expect(plan.ipsetRestore).to.include(`create ${name} `);
    expect(plan.ipsetRestore).to.not.include('swap');
  });

  it('plans nothing when the kernel already holds the desired state', () => {
    const desired = compileFor(e2eWorld(), [denyX, fromY]);
    const plan = planPolicyChanges(desired, observedAfter(desired));
    expect(plan.ipsetRestore).to.equal('');
    expect(plan.iptablesRestore).to.deep.equal({ ipv4: '', ipv6: '' });
    expect(plan.destroySets).to.deep.equal([]);
  });

  it('a label change changes set members only: no iptables write, not even when it changes which policies select a pod', () => {
    const world = e2eWorld();
    const relabel = (w: World, name: string, labels: Record<string, string>): World => ({
      ...w,
      pods: w.pods.map((p) => (p.metadata?.namespace === 'x' && p.metadata.name === name ? { ...p, metadata: { ...p.metadata, labels } } : p)),
    });
    const before = compileFor(world, [denyX, fromY]);
    // x/a stops being selected by from-y (deny-in still isolates it): from-y's selection set loses it.
    const after = compileFor(relabel(world, 'a', { pod: 'other' }), [denyX, fromY]);
    const plan = planPolicyChanges(after, observedAfter(before));
    expect(plan.iptablesRestore).to.deep.equal({ ipv4: '', ipv6: '' });
    expect(plan.iptablesCleanup).to.deep.equal({ ipv4: '', ipv6: '' });
    expect(plan.ipsetRestore).to.match(/^del PRPOL4-P-\S+ \S+ -exist$/m);
    expect(plan.ipsetRestore).to.not.include('ISOLATED');
    // Only from-y isolates: x/b becomes selected (isolated), x/a stops being (no longer isolated).
    const onlyFromY = compileFor(world, [fromY]);
    const flip = planPolicyChanges(compileFor(relabel(relabel(world, 'b', { pod: 'a' }), 'a', { pod: 'other' }), [fromY]), observedAfter(onlyFromY));
    expect(flip.iptablesRestore).to.deep.equal({ ipv4: '', ipv6: '' });
    // x/b joins the isolated sets with the other sets; x/a leaves them only once its family's rules are in (a
    // family whose restore is refused keeps isolating it, as its previous rules said).
    expect(flip.ipsetRestore).to.match(/^add PRPOL4-ISOLATED-I \S+ -exist$/m);
    expect(flip.ipsetRestore).to.not.match(/^del PRPOL.-ISOLATED/m);
    expect(flip.isolationReleases.ipv4).to.match(/^del PRPOL4-ISOLATED-I \S+ -exist\n$/);
    expect(flip.isolationReleases.ipv6).to.match(/^del PRPOL6-ISOLATED-I \S+ -exist\n$/);
  });

  it('a new pod IP in a peer set changes just that entry in each set that holds it', () => {
    const world = e2eWorld();
    const before = compileFor(world, [fromY]);
    const moved: World = {
      ...world,
      pods: world.pods.map((p) =>
        p.metadata?.namespace === 'y' && p.metadata.name === 'c'
          ? { ...p, status: { ...p.status, podIP: '10.1.1.99', podIPs: [{ ip: '10.1.1.99' }, ...(p.status?.podIPs ?? []).slice(1)] } }
          : p,
      ),
    };
    const after = compileFor(moved, [fromY]);
    const plan = planPolicyChanges(after, observedAfter(before));
    expect(plan.iptablesRestore.ipv4).to.equal('');
    // Namespace y's peer set and the serve-80-tcp named-port set, IPv4 only: one entry out, one in, no swap.
    const added = [...plan.ipsetRestore.matchAll(/^add (\S+) (\S+) -exist$/gm)].map((m) => [m[1], m[2]]);
    const deleted = [...plan.ipsetRestore.matchAll(/^del (\S+) (\S+) -exist$/gm)].map((m) => [m[1], m[2]]);
    expect(plan.ipsetRestore).to.not.include('swap');
    expect(added).to.have.length(2);
    expect(deleted).to.have.length(2);
    expect([...added, ...deleted].every(([s]) => s?.startsWith('PRPOL4-P-') === true || s?.startsWith('PRPOL4-N-') === true)).to.equal(true);
    expect(added.map(([, m]) => m)).to.have.members(['10.1.1.99', '10.1.1.99,tcp:80']);
  });

  it('a set whose content changes wholesale is filled as a twin and swapped in', () => {
    const world = e2eWorld();
    const before = compileFor(world, [fromY]);
    const renumbered: World = {
      ...world,
      pods: world.pods.map((p, i) => ({ ...p, status: { ...p.status, podIP: `10.1.1.${100 + i}`, podIPs: [{ ip: `10.1.1.${100 + i}` }, ...(p.status?.podIPs ?? []).slice(1)] } })),
    };
    const plan = planPolicyChanges(compileFor(renumbered, [fromY]), observedAfter(before));
    expect(plan.ipsetRestore).to.match(/^swap PRPOL4-LOCAL-T PRPOL4-LOCAL$/m);
  });

  it('removing all policies deletes stale chains and sets, keeps the base chains and jumps', () => {
    const desired = compileFor(e2eWorld(), [denyX, fromY]);
    const none = compileFor(e2eWorld(), []);
    const plan = planPolicyChanges(none, observedAfter(desired));
    expect(plan.iptablesCleanup.ipv4).to.match(/^\*filter\n/);
    expect(plan.iptablesCleanup.ipv4).to.match(/-X PRPOL-NI-/);
    expect(plan.iptablesCleanup.ipv4).to.not.include(CHAINS.forward);
    expect(plan.destroySets.some((s) => s.startsWith('PRPOL4-P-'))).to.equal(true);
    expect(plan.destroySets).to.not.include('PRPOL4-LOCAL');
    expect(plan.iptablesRestore.ipv4).to.not.include('-I FORWARD');
  });

  it('removes duplicate jumps and rewrites chains whose rules lost their hash', () => {
    const desired = compileFor(e2eWorld(), [denyX]);
    const observed = observedAfter(desired);
    observed.v4.jumps.push({ chain: 'FORWARD', target: CHAINS.forward, position: 2 });
    observed.v4.chains.set(CHAINS.forward, ['', '', '', '']);
    const plan = planPolicyChanges(desired, observed);
    expect(plan.iptablesRestore.ipv4).to.include('-D FORWARD -m comment --comment "podroute policy" -j PRPOL-FORWARD');
    expect(chainsDeclared(plan.iptablesRestore.ipv4)).to.deep.equal([CHAINS.forward]);
  });

  it('moves a jump that is no longer first back to the top in the same transaction, and only that one', () => {
    const desired = compileFor(e2eWorld(), [denyX]);
    const observed = observedAfter(desired);
    // kube-proxy inserted KUBE-FORWARD (accepting marked packets) above our FORWARD jump.
    observed.v4.jumps = observed.v4.jumps.map((j) => (j.chain === 'FORWARD' ? { ...j, position: 2 } : j));
    const plan = planPolicyChanges(desired, observed);
    const del = '-D FORWARD -m comment --comment "podroute policy" -j PRPOL-FORWARD';
    const ins = '-I FORWARD 1 -m comment --comment "podroute policy" -j PRPOL-FORWARD';
    const lines = plan.iptablesRestore.ipv4.split('\n');
    expect(lines).to.include(del);
    expect(lines.indexOf(ins)).to.be.greaterThan(lines.indexOf(del));
    expect(plan.iptablesRestore.ipv4).to.not.include('INPUT');
    expect(plan.iptablesRestore.ipv6).to.equal('');
    expect(plan.summary.jumpsAdded).to.equal(1);
    expect(chainsDeclared(plan.iptablesRestore.ipv4)).to.deep.equal([]);
  });

  it('reads where our jump sits in its built-in chain from iptables-save', () => {
    const saved = [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD ACCEPT [0:0]',
      '-A INPUT -m comment --comment "podroute policy" -j PRPOL-INPUT',
      '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
      '-A FORWARD -m comment --comment "podroute policy" -j PRPOL-FORWARD',
      'COMMIT',
    ].join('\n');
    expect(parseIptablesSave(saved).jumps).to.deep.equal([
      { chain: 'INPUT', target: 'PRPOL-INPUT', position: 1 },
      { chain: 'FORWARD', target: 'PRPOL-FORWARD', position: 2 },
    ]);
  });

  it('renders the hash comment before the target and reads it back from iptables-save', () => {
    const rule = ['-m', 'mark', '!', '--mark', '0x40000/0x40000', '-j', 'DROP'];
    const line = renderRule('PRPOL-I-abc', rule);
    expect(line).to.match(/^-A PRPOL-I-abc -m mark ! --mark 0x40000\/0x40000 -m comment --comment prpol:[0-9a-f]{16} -j DROP$/);
    const saved = [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD ACCEPT [0:0]',
      ':PRPOL-I-abc - [0:0]',
      ':PRPOL-EMPTY - [0:0]',
      ':OTHER - [0:0]',
      '-A FORWARD -m comment --comment "podroute policy" -j PRPOL-FORWARD',
      '-A FORWARD -s 1.2.3.4/32 -j DROP',
      line,
      '-A PRPOL-I-abc -j DROP',
      '-A OTHER -m comment --comment prpol:0123456789abcdef -j ACCEPT',
      'COMMIT',
    ].join('\n');
    const observed = parseIptablesSave(saved);
    expect(observed.jumps).to.deep.equal([{ chain: 'FORWARD', target: 'PRPOL-FORWARD', position: 1 }]);
    expect([...observed.chains.keys()]).to.deep.equal(['PRPOL-I-abc', 'PRPOL-EMPTY']);
    expect(observed.chains.get('PRPOL-I-abc')).to.deep.equal([/prpol:([0-9a-f]+)/.exec(line)?.[1], '']);
  });

  it('reads our sets from ipset save, normalizing host prefixes', () => {
    const sets = observedPolicySets(
      [
        'create PRPOL4-LOCAL hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1',
        'add PRPOL4-LOCAL 10.1.0.0/24',
        'add PRPOL4-LOCAL 10.1.0.11',
        'create PRPOL6-N-abc hash:ip,port family inet6 hashsize 1024 maxelem 65536',
        'add PRPOL6-N-abc fd01:1::b,tcp:80',
        'create foreign hash:ip family inet',
        'add foreign 1.2.3.4',
      ].join('\n'),
    );
    expect([...sets.keys()]).to.deep.equal(['PRPOL4-LOCAL', 'PRPOL6-N-abc']);
    expect(sets.get('PRPOL4-LOCAL')?.members).to.deep.equal(['10.1.0.0/24', '10.1.0.11']);
    expect(sets.get('PRPOL6-N-abc')).to.deep.include({ family: 'ipv6', type: 'hash:ip,port', members: ['fd01:1::b,tcp:80'] });
    const desired = compileFor(e2eWorld(), []);
    const observed = observedAfter(desired);
    expect(observed.sets.get('PRPOL4-LOCAL')?.members).to.include('10.1.0.11');
  });
});

describe('policy planner: restore input', () => {
  // A control character in a restore line ends the line (or worse): iptables-restore and ipset restore have no
  // escape for it, so the planner must never write one, whatever names and labels the cluster holds.
  const allText = (plan: ReturnType<typeof planPolicyChanges>): string[] => [
    plan.ipsetRestore,
    ...Object.values(plan.iptablesRestore),
    ...Object.values(plan.iptablesCleanup),
    ...Object.values(plan.iptablesCombined),
  ];

  it('writes no control character for namespaces, names and labels that contain newlines', () => {
    const world = e2eWorld();
    const hostile: World = {
      ...world,
      namespaces: [...world.namespaces, { metadata: { name: 'x\n-F', labels: { 'ns\n': 'x\n-X', ns: 'x' } } }],
      pods: world.pods.map((p) =>
        p.metadata?.namespace === 'x' && p.metadata.name === 'a'
          ? { ...p, metadata: { ...p.metadata, name: 'a\nCOMMIT', labels: { pod: 'a', 'evil\n': 'v\r\n-F' } } }
          : p,
      ),
    };
    const policies = [
      policy('x', 'deny\nin', { podSelector: {}, policyTypes: ['Ingress'] }),
      policy('x', 'from\ny', { podSelector: { matchLabels: { 'evil\n': 'v\r\n-F' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'ns\n': 'x\n-X' } } }] }] }),
    ];
    const plan = planPolicyChanges(compileFor(hostile, policies), emptyObservedState());
    for (const text of allText(plan)) {
      for (const line of text.split('\n')) expect(hasControlCharacter(line), JSON.stringify(line)).to.equal(false);
    }
  });

  it('takes no pod address with a zone index or in a non-standard form into a set (one address validator)', () => {
    const world = e2eWorld();
    const odd: World = {
      ...world,
      pods: world.pods.map((p) =>
        p.metadata?.namespace === 'y'
          ? { ...p, status: { ...p.status, podIP: 'fe80::1%eth0', podIPs: [{ ip: 'fe80::1%eth0' }, { ip: '0x0a.1.0.99' }, ...(p.status?.podIPs ?? [])] } }
          : p,
      ),
    };
    const plan = planPolicyChanges(compileFor(odd, [denyX, fromY]), emptyObservedState());
    expect(plan.ipsetRestore).to.not.include('%');
    expect(plan.ipsetRestore).to.not.include('0x0a');
  });

  it('refuses a rule word or set entry with a control character instead of writing it', () => {
    expect(() => renderRule('PRPOL-X', ['-s', '10.0.0.1\n-F', '-j', 'ACCEPT'])).to.throw(PolicyPlanError).with.property('code', 'UNSAFE_RESTORE_INPUT');
    expect(() => renderRule('PRPOL-X\r', ['-j', 'ACCEPT'])).to.throw(PolicyPlanError);
    const desired = compileFor(e2eWorld(), [denyX]);
    const set = [...desired.v4.sets.values()][0]!;
    // Planned once (its entries are checked and remembered), then handed in with other entries: checked again.
    planPolicyChanges(desired, emptyObservedState());
    set.members = [...set.members, '10.1.0.99\nflush'];
    expect(() => planPolicyChanges(desired, emptyObservedState())).to.throw(PolicyPlanError);
  });
});
