// The policy reconciler against a real kernel: a node netns with pods on a bridge and a remote pod routed
// through it. After each step the TCP/UDP matrix (IPv4 and IPv6, ports 80/81) is probed for real and compared
// with the oracle for every connection this node is responsible for.
import { wireObject } from '../../wire.js';
import { expect } from 'chai';
import { execa } from 'execa';
import type { NetworkPolicy, Pod } from '../../../src/kube/wire.js';
import { closeProbeConnections, probeMany, type ProbeJob } from '../../../src/lab/probe.js';
import { netnsRunner, type CommandRunner } from '../../../src/host/command.js';
import { compilePolicies } from '../../unit/policy/scratch-compile.js';
import { allowed, type OracleEndpoint } from '../../unit/policy/oracle.js';
import { emptyObservedState, planPolicyChanges } from '../../../src/policy/plan.js';
import { PolicyReconciler } from '../../../src/policy/policy-reconciler.js';
import type { ClusterState, Protocol } from '../../../src/policy/types.js';
import { IP_FAMILIES, ipVersion, type IpFamily } from '../../../src/routes/ip-prefix.js';
import { createLogger } from '../../../src/observe/log.js';
import { buildPolicyLab, PORTS, type PolicyLab } from './policy-lab.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

const PREFIX = process.env.POLICY_LAB_PREFIX ?? testLabName('h7pol', 'pol');
const logger = createLogger({ level: process.env.POLICY_TEST_LOG === '1' ? 'debug' : 'error', component: 'policy-test' });

function policy(ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy {
  return wireObject('NetworkPolicy', 'v1', { metadata: { namespace: ns, name }, spec });
}

interface Mismatch {
  what: string;
  oracle: boolean;
  probed: boolean;
}

/**
 * Probes every connection this node enforces and returns where the kernel and the oracle disagree; `clusters` may
 * name a different expected state per family.
 */
async function matrix(lab: PolicyLab, clusters: ClusterState | Record<IpFamily, ClusterState>): Promise<{ mismatches: Mismatch[]; allowedCount: number; total: number }> {
  const perFamily = (f: IpFamily): ClusterState => ('pods' in clusters ? clusters : clusters[f]);
  const cluster = perFamily('ipv4');
  const podObj = (ns: string, name: string): Pod => {
    const p = cluster.pods.find((x) => x.metadata?.namespace === ns && x.metadata.name === name);
    if (p === undefined) throw new Error(`no pod ${ns}/${name}`);
    return p;
  };
  interface Ep {
    label: string;
    control: string;
    oracle: (f: IpFamily) => OracleEndpoint;
    ip: (f: IpFamily) => string;
    local: boolean;
  }
  const eps: Ep[] = lab.pods.map((p) => ({
    label: `${p.ns}/${p.name}`,
    control: p.control,
    oracle: () => ({ pod: podObj(p.ns, p.name) }),
    ip: (f) => (f === 'ipv4' ? p.v4 : p.v6),
    local: p.node === 'n1',
  }));
  eps.push({
    label: 'node/n1',
    control: lab.nodeControl,
    oracle: (f) => ({ ip: f === 'ipv4' ? lab.node.v4 : lab.node.v6, node: 'n1' }),
    ip: (f) => (f === 'ipv4' ? lab.node.v4 : lab.node.v6),
    local: true,
  });
  const jobs: (ProbeJob & { what: string; expected: boolean })[] = [];
  for (const family of IP_FAMILIES) {
    for (const src of eps) {
      for (const dst of eps) {
        if (src === dst) continue;
        // The remote pod talking to the node's host is none of this node's policy business.
        if (!src.local && dst.label === 'node/n1') continue;
        for (const port of PORTS) {
          for (const protocol of ['TCP', 'UDP'] as Protocol[]) {
            jobs.push({
              from: src.control,
              target: dst.ip(family),
              port,
              protocol: protocol === 'TCP' ? 'tcp' : 'udp',
              timeoutMs: 700,
              what: `${src.label} -> ${dst.label} ${protocol}/${port} v${ipVersion(family)}`,
              expected: allowed(perFamily(family), { src: src.oracle(family), dst: dst.oracle(family), port, protocol, family }),
            });
          }
        }
      }
    }
  }
  const results = await probeMany(jobs, 96);
  // On a busy machine an allowed probe can outlast the short timeout: those get one long chance. A pass proves the
  // path is open; a dropped packet never passes however long one waits.
  const slow = jobs.flatMap((job, i) => (job.expected && results[i]?.ok !== true && results[i]?.error === 'timeout' ? [i] : []));
  const again = await probeMany(slow.map((i) => ({ ...jobs[i]!, timeoutMs: 3_000 })), 16);
  slow.forEach((jobIndex, i) => {
    if (again[i]?.ok === true) results[jobIndex] = again[i]!;
  });
  // A UDP probe whose source port an earlier, allowed probe used rides on that conntrack entry (the lab shortens
  // UDP timeouts, but a busy machine may probe again within them): a UDP pass the oracle denies is probed twice
  // more with fresh sockets, and counts as denied only if both are denied. A TCP pass is never excused.
  const suspects = jobs.flatMap((job, i) => (!job.expected && job.protocol === 'udp' && results[i]?.ok === true ? [i] : []));
  const twice = await probeMany([...suspects, ...suspects].map((i) => jobs[i]!), 16);
  suspects.forEach((jobIndex, i) => {
    const [first, second] = [twice[i]!, twice[i + suspects.length]!];
    if (first.ok !== true && second.ok !== true) results[jobIndex] = first;
  });
  const mismatches: Mismatch[] = [];
  jobs.forEach((job, i) => {
    const ok = results[i]?.ok === true;
    if (ok !== job.expected) mismatches.push({ what: `${job.what} (${results[i]?.error ?? 'ok'})`, oracle: job.expected, probed: ok });
  });
  return { mismatches, allowedCount: jobs.filter((j) => j.expected).length, total: jobs.length };
}

async function waitApplied(r: PolicyReconciler, generation: number, ms = 20_000): Promise<void> {
  await pollUntil(`generation ${generation} applied`, () => {
    if (r.status().appliedGeneration < generation) throw new Error(JSON.stringify(r.status()));
    return true;
  }, { timeoutMs: ms, intervalMs: 50 });
}

async function iptablesSave(lab: PolicyLab, family: IpFamily): Promise<string> {
  const r = await execa('ip', ['netns', 'exec', lab.nodeNetns, family === 'ipv4' ? 'iptables-save' : 'ip6tables-save', '-t', 'filter']);
  return r.stdout.replace(/^#.*$/gm, '');
}

describe('policy reconciler in a netns node (real iptables/ipset, TCP/UDP probes)', function () {
  this.timeout(240_000);
  let lab: PolicyLab;
  const running: { controller: AbortController; done: Promise<void> }[] = [];

  before(async () => {
    await execa('bash', ['-c', `for n in $(ip netns list | awk '{print $1}' | grep '^${PREFIX}-'); do ip netns delete $n; done`]);
    lab = await buildPolicyLab(PREFIX);
    // A foreign rule and chain that must survive everything we do.
    await execa('ip', ['netns', 'exec', lab.nodeNetns, 'iptables', '-N', 'FOREIGN']);
    await execa('ip', ['netns', 'exec', lab.nodeNetns, 'iptables', '-A', 'FOREIGN', '-s', '10.250.0.0/16', '-j', 'DROP']);
    await execa('ip', ['netns', 'exec', lab.nodeNetns, 'iptables', '-A', 'FORWARD', '-m', 'comment', '--comment', 'foreign', '-j', 'FOREIGN']);
  });

  // A test that failed half way left its reconciler running: it would rewrite the kernel under the next test.
  afterEach(async () => {
    for (const r of running.splice(0)) {
      r.controller.abort();
      await r.done.catch(() => undefined);
    }
  });

  after(async () => {
    closeProbeConnections();
    await lab?.teardown();
  });

  function startReconciler(runner?: CommandRunner, resyncIntervalMs = 5_000, fullReadEvery?: number): { reconciler: PolicyReconciler; done: Promise<void>; stop: () => Promise<void> } {
    const controller = new AbortController();
    const reconciler = new PolicyReconciler({
      node: lab.node,
      logger,
      bridgeName: 'podroute0',
      runner: runner ?? netnsRunner(lab.nodeNetns),
      resyncIntervalMs,
      ...(fullReadEvery === undefined ? {} : { fullReadEvery }),
      retryInitialMs: 100,
    });
    const done = reconciler.start(controller.signal);
    running.push({ controller, done });
    return { reconciler, done, stop: async () => { controller.abort(); await done; } };
  }

  const steps: { name: string; policies: NetworkPolicy[]; labels?: Record<string, Record<string, string>> }[] = [
    { name: 'no policies', policies: [] },
    {
      name: 'default deny ingress in x, allow y -> x/a on the named port serve-80-tcp',
      policies: [
        policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }),
        policy('x', 'from-y', {
          podSelector: { matchLabels: { pod: 'a' } },
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }], ports: [{ port: 'serve-80-tcp' }] }],
        }),
      ],
    },
    {
      name: 'egress of y/a limited to x on TCP 80-81 and UDP; ipBlock from the remote pod with except',
      policies: [
        policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }),
        policy('y', 'egress', {
          podSelector: { matchLabels: { pod: 'a' } },
          egress: [
            { to: [{ namespaceSelector: { matchLabels: { ns: 'x' } } }], ports: [{ port: 80, endPort: 81 }] },
            { ports: [{ protocol: 'UDP' }] },
          ],
        }),
        policy('x', 'remote', {
          podSelector: { matchLabels: { pod: 'b' } },
          ingress: [
            { from: [{ ipBlock: { cidr: '10.79.0.0/16', except: ['10.79.1.0/24'] } }, { ipBlock: { cidr: 'fd79::/60' } }], ports: [{ port: 81, protocol: 'UDP' }] },
            { from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['b'] }] } }] },
          ],
        }),
      ],
    },
    {
      name: 'label change: x/a becomes pod=b (now selected by the remote policy), y/a loses its egress policy',
      labels: { 'x/a': { pod: 'b' }, 'y/a': { pod: 'free' } },
      policies: [
        policy('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }),
        policy('y', 'egress', {
          podSelector: { matchLabels: { pod: 'a' } },
          egress: [{ ports: [{ protocol: 'UDP' }] }],
        }),
        policy('x', 'remote', {
          podSelector: { matchLabels: { pod: 'b' } },
          ingress: [{ from: [{ ipBlock: { cidr: '10.79.0.0/16' } }, { ipBlock: { cidr: 'fd79::/64' } }] }],
        }),
      ],
    },
    { name: 'default deny egress of x, then everything removed', policies: [policy('x', 'deny-out', { podSelector: {}, policyTypes: ['Egress'] })] },
    { name: 'all policies deleted', policies: [] },
  ];

  it('enforces each step as the oracle says, v4 and v6, and keeps a foreign rule', async () => {
    const { reconciler, stop } = startReconciler();
    for (const step of steps) {
      const cluster: ClusterState = { pods: lab.podObjects(step.labels), namespaces: lab.namespaces, policies: step.policies };
      const generation = reconciler.setCluster(cluster);
      await waitApplied(reconciler, generation);
      const result = await matrix(lab, cluster);
      expect(result.mismatches, step.name).to.deep.equal([]);
      if (step.policies.length === 0) expect(result.allowedCount).to.equal(result.total);
      else expect(result.allowedCount, `${step.name}: some denied`).to.be.lessThan(result.total);
    }
    expect(reconciler.status().loop.lastError).to.equal(undefined);
    await stop();
    const saved = await iptablesSave(lab, 'ipv4');
    expect(saved).to.include('-A FORWARD -m comment --comment foreign -j FOREIGN');
    expect(saved).to.include('-A FOREIGN -s 10.250.0.0/16 -j DROP');
    // With no policies left only the base chains remain, jumped to once.
    expect(saved.match(/-j PRPOL-FORWARD/g)).to.have.length(1);
    expect(saved).to.not.match(/PRPOL-(N?[IE]|R)-/);
  });

  it('keeps enforcing across a restart, and the restart rewrites nothing', async () => {
    const cluster: ClusterState = {
      pods: lab.podObjects(),
      namespaces: lab.namespaces,
      policies: [policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    };
    const first = startReconciler();
    await waitApplied(first.reconciler, first.reconciler.setCluster(cluster));
    await first.stop();
    const before = await iptablesSave(lab, 'ipv4');
    // No agent running: the kernel still enforces.
    expect((await matrix(lab, cluster)).mismatches).to.deep.equal([]);
    const second = startReconciler();
    // Started but without a snapshot: nothing is touched, the old rules keep enforcing.
    expect((await matrix(lab, cluster)).mismatches).to.deep.equal([]);
    await waitApplied(second.reconciler, second.reconciler.setCluster(cluster));
    expect(await iptablesSave(lab, 'ipv4')).to.equal(before);
    await second.stop();
  });

  it('fails closed per family: a refused iptables-restore keeps IPv4 on its previous rules and is retried; IPv6 goes ahead', async () => {
    const real = netnsRunner(lab.nodeNetns);
    let refuse = 0;
    const flaky: CommandRunner = {
      run: async (argv, options) => {
        if (argv.includes('iptables-nft-restore') && refuse > 0) {
          refuse--;
          return real.run(['sh', '-c', 'echo "iptables-restore: injected failure" >&2; exit 1'], options);
        }
        return real.run(argv, options);
      },
    };
    const denyAll: ClusterState = {
      pods: lab.podObjects(),
      namespaces: lab.namespaces,
      policies: [policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    };
    const { reconciler, stop } = startReconciler(flaky);
    await waitApplied(reconciler, reconciler.setCluster(denyAll));
    // The next change is refused for IPv4 until the check below is done: meanwhile IPv4 keeps the deny-all rules,
    // complete; IPv6, whose commit went through, runs the new ones (each family is its own atomic commit).
    const open: ClusterState = { ...denyAll, policies: [policy('x', 'allow-80', { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] })] };
    refuse = Number.POSITIVE_INFINITY;
    const generation = reconciler.setCluster(open);
    await pollUntil('two failed applies', () => reconciler.status().loop.consecutiveFailures >= 2, { timeoutMs: 10_000, intervalMs: 20 });
    expect(reconciler.status().loop.lastError?.message).to.include('injected failure');
    expect(reconciler.status().appliedGeneration).to.be.lessThan(generation);
    expect((await matrix(lab, { ipv4: denyAll, ipv6: open })).mismatches).to.deep.equal([]);
    refuse = 0;
    await waitApplied(reconciler, generation);
    expect(reconciler.status().loop.lastError).to.equal(undefined);
    expect((await matrix(lab, open)).mismatches).to.deep.equal([]);
    await stop();
  });

  it('a resync that reads the kernel as it left it only reads (mostly a fingerprint); drift by hand (our jump, a set member, a member swapped for another, a stray set of ours) is repaired', async () => {
    const real = netnsRunner(lab.nodeNetns);
    const commands: string[] = [];
    // An `ipset restore` that only lists sets reads: it is named apart from one that writes.
    const listsOnly = (input: string | undefined): boolean => input !== undefined && input.split('\n').every((l) => l === '' || /^list \S+ -o save$/.test(l));
    const counting: CommandRunner = {
      run: (argv, options) => (commands.push(argv.join(' ') + (listsOnly(options?.input) ? ` (lists${options?.digest === true ? ', digest' : ''})` : '')), real.run(argv, options)),
    };
    const { reconciler, stop } = startReconciler(counting, 400, 3);
    const cluster: ClusterState = {
      pods: lab.podObjects(),
      namespaces: lab.namespaces,
      policies: [policy('x', 'from-y', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }] })],
    };
    await waitApplied(reconciler, reconciler.setCluster(cluster));
    const passes = (): number => reconciler.status().loop.successes;
    // The first resync after the write plans in full, finds nothing to do and keeps the read's fingerprint. It plans
    // with the rules that went in: nothing was handed in since, so nothing is compiled again.
    const applied = passes();
    const compiles = reconciler.status().compiles;
    await pollUntil('a full resync', () => passes() >= applied + 2, { timeoutMs: 10_000, intervalMs: 20 });
    expect(reconciler.status().compiles, 'resyncs compile nothing when nothing was handed in').to.equal(compiles);
    commands.length = 0;
    const quiet = passes();
    const unchanged = reconciler.status().unchangedResyncs;
    await pollUntil('three more resyncs', () => passes() >= quiet + 3, { timeoutMs: 10_000, intervalMs: 20 });
    expect(reconciler.status().unchangedResyncs - unchanged, 'resyncs that compiled and planned nothing').to.be.at.least(3);
    const writes = commands.filter((c) => !/^(iptables-nft-save|ip6tables-nft-save|iptables-save|ip6tables-save) -t filter$|^ipset save$|^ipset restore \(lists, digest\)$/.test(c));
    expect(writes, 'resyncs of an unchanged kernel only read it').to.deep.equal([]);
    expect(commands.length, 'each resync read the kernel').to.be.at.least(9);
    // With fullReadEvery 3: of three resyncs in a row, two read only the fingerprint (our sets hashed where read),
    // one reads everything.
    expect(commands.filter((c) => c === 'ipset restore (lists, digest)').length, 'fingerprint-only resyncs').to.be.at.least(1);
    expect(commands.filter((c) => c === 'ipset save').length, 'a full read among them').to.be.at.least(1);

    const exec = (...argv: string[]) => execa('ip', ['netns', 'exec', lab.nodeNetns, ...argv]);
    const setName = /^create (PRPOL4-\S+)/m.exec((await exec('ipset', 'save')).stdout)?.[1];
    const member = new RegExp(`^add ${setName} (\\S+)`, 'm').exec((await exec('ipset', 'save', String(setName))).stdout)?.[1];
    expect(setName, 'a set of the policy').to.be.a('string');
    expect(member, 'a member of it').to.be.a('string');
    await exec('iptables', '-D', 'FORWARD', '-m', 'comment', '--comment', 'podroute policy', '-j', 'PRPOL-FORWARD');
    await exec('ipset', 'del', String(setName), String(member));
    await pollUntil('jump and member restored', async () => {
      const jumped = (await iptablesSave(lab, 'ipv4')).includes('-j PRPOL-FORWARD');
      const member_ = (await exec('ipset', 'test', String(setName), String(member)).then(() => true, () => false));
      return (jumped && member_) || undefined;
    }, { timeoutMs: 5_000, intervalMs: 50 });
    expect((await matrix(lab, cluster)).mismatches).to.deep.equal([]);
    // A member swapped for a foreign address keeps the set's size: only its content tells. Once the kernel is back
    // in sync (a full resync proved it), the next resyncs read the fingerprint alone, and it tells.
    const synced = passes();
    await pollUntil('two resyncs after the repair', () => passes() >= synced + 2, { timeoutMs: 10_000, intervalMs: 20 });
    await exec('ipset', 'del', String(setName), String(member));
    await exec('ipset', 'add', String(setName), '10.250.9.9');
    await pollUntil('swapped member restored, foreign one gone', async () => {
      const back = await exec('ipset', 'test', String(setName), String(member)).then(() => true, () => false);
      const foreign = await exec('ipset', 'test', String(setName), '10.250.9.9').then(() => true, () => false);
      return (back && !foreign) || undefined;
    }, { timeoutMs: 5_000, intervalMs: 50 });
    expect((await matrix(lab, cluster)).mismatches).to.deep.equal([]);
    // A set of ours the rules do not name is not in the fingerprint: the full read (every 3rd here) finds and removes it.
    await exec('ipset', 'create', 'PRPOL4-stray', 'hash:ip');
    await pollUntil('stray set of ours removed', async () => !(await exec('ipset', 'list', '-n')).stdout.split('\n').includes('PRPOL4-stray') || undefined, {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
    expect(reconciler.status().loop.lastError).to.equal(undefined);
    await stop();
  });

  it('generates SCTP rules the kernel accepts (iptables-restore --test)', async () => {
    const pods = lab.podObjects().map((p) => ({
      ...p,
      spec: { ...p.spec, containers: [{ name: 'main', ports: [{ containerPort: 9000, protocol: 'SCTP', name: 'assoc' }] }] },
    }));
    const compiled = compilePolicies({
      pods,
      namespaces: lab.namespaces,
      node: lab.node,
      policies: [
        policy('x', 'sctp', {
          podSelector: {},
          policyTypes: ['Ingress', 'Egress'],
          ingress: [{ ports: [{ protocol: 'SCTP', port: 9000, endPort: 9010 }, { protocol: 'SCTP', port: 'assoc' }, { protocol: 'SCTP' }] }],
          egress: [{ to: [{ podSelector: {} }], ports: [{ protocol: 'SCTP', port: 7 }] }],
        }),
      ],
    });
    const plan = planPolicyChanges(compiled, emptyObservedState());
    expect(plan.iptablesRestore.ipv4).to.include('-p sctp -m sctp --dport 9000:9010');
    expect(plan.iptablesRestore.ipv6).to.include('-p sctp -m set --match-set PRPOL6-N-');
    const runner = netnsRunner(lab.nodeNetns);
    // The referenced sets must exist for the check; these are the real ones (same names the reconciler uses).
    await runner.run(['ipset', 'restore', '-exist'], { input: plan.ipsetRestore });
    await runner.run(['iptables-restore', '--noflush', '--test'], { input: plan.iptablesRestore.ipv4 });
    await runner.run(['ip6tables-restore', '--noflush', '--test'], { input: plan.iptablesRestore.ipv6 });
    // A deliberately broken SCTP rule is refused by the same check, so the check means something.
    let refused = false;
    try {
      await runner.run(['iptables-restore', '--noflush', '--test'], { input: '*filter\n:PRPOL-T - [0:0]\n-A PRPOL-T -p sctp -m sctp --dport 70000 -j DROP\nCOMMIT\n' });
    } catch {
      refused = true;
    }
    expect(refused).to.equal(true);
  });
});
