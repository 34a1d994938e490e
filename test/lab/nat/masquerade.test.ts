// The masquerade reconciler against a real kernel: a pod netns behind a node netns (where the reconciler's
// iptables/ipset commands run) and an external netns. The external netns plays three roles through its addresses:
// the outside world (192.0.2.2), another node (192.0.2.3), a pod on another node (10.244.2.10) and a
// non-masquerade range (198.51.100.10); likewise in IPv6.
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import ipaddr from 'ipaddr.js';
import { netnsRunner } from '../../../src/host/command.js';
import { MasqueradeReconciler } from '../../../src/nat/masquerade.js';
import { MASQ_CHAIN, MASQ_JUMP_COMMENT, type MasqueradeConfig } from '../../../src/nat/masquerade-plan.js';
import { createLogger } from '../../../src/observe/log.js';
import { testLabName } from '../lab/leftovers.js';
import { createNetns, deleteNetns, inNs, ProcessGroup, sh } from './netns.js';
import { pollUntil } from '../../poll.js';
import { familyOf, IP_FAMILIES, type IpFamily } from '../../../src/routes/ip-prefix.js';

// PODROUTE_TEST_LAB_PREFIX (engineers running lab tests side by side) replaces the h6 of the names.
const NS_PREFIX = testLabName('h6', '');
const POD = `${NS_PREFIX}nat-pod`;
const NODE = `${NS_PREFIX}nat-node`;
const EXT = `${NS_PREFIX}nat-ext`;
const FAIL = `${NS_PREFIX}nat-fail`;
const PORT = 7071;
const ECHO = fileURLToPath(new URL('./peer-echo.js', import.meta.url));

const CONFIG: MasqueradeConfig = {
  clusterRanges: ['10.244.0.0/16', 'fd00:10:244::/48'],
  nonMasqueradeCIDRs: ['198.51.100.0/24', '2001:db8:99::/64'],
  nodeAddresses: ['192.0.2.3', '2001:db8:1::3'],
};

const FAMILIES = {
  ipv4: {
    iptables: 'iptables',
    pod: '10.244.1.10',
    node: '192.0.2.1',
    external: '192.0.2.2',
    otherNode: '192.0.2.3',
    otherPod: '10.244.2.10',
    noMasq: '198.51.100.10',
  },
  ipv6: {
    iptables: 'ip6tables',
    pod: 'fd00:10:244:1::10',
    node: '2001:db8:1::1',
    external: '2001:db8:1::2',
    otherNode: '2001:db8:1::3',
    otherPod: 'fd00:10:244:2::10',
    noMasq: '2001:db8:99::10',
  },
} as const satisfies Record<IpFamily, unknown>;

function canonical(address: string): string {
  const addr = ipaddr.parse(address.replace(/^\[|\]$/g, ''));
  return addr.kind() === 'ipv6' ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

/** The source address a server at `dst` sees for a connection (tcp) or datagram (udp) from the pod. */
async function seenFrom(proto: 'tcp' | 'udp', dst: string): Promise<string> {
  return canonical((await inNs(POD, ['node', ECHO, 'probe', proto, dst, String(PORT)])).trim());
}

function captureLogs() {
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
  return { logger: createLogger({ stream, level: 'debug', component: 'h6-masq' }), lines };
}

async function buildTopology(): Promise<void> {
  await createNetns([POD, NODE, EXT]);
  const ipn = (ns: string, ...args: string[]) => sh(['ip', '-n', ns, ...args]);
  await ipn(NODE, 'link', 'add', 'h6pod0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', POD);
  await ipn(NODE, 'link', 'add', 'h6ext0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', EXT);
  for (const [ns, dev] of [[POD, 'eth0'], [NODE, 'h6pod0'], [NODE, 'h6ext0'], [EXT, 'eth0']] as const) {
    await ipn(ns, 'link', 'set', dev, 'up');
  }
  const addrs: Array<[string, string, string]> = [
    [POD, 'eth0', '10.244.1.10/24'],
    [POD, 'eth0', 'fd00:10:244:1::10/64'],
    [NODE, 'h6pod0', '10.244.1.1/24'],
    [NODE, 'h6pod0', 'fd00:10:244:1::1/64'],
    [NODE, 'h6ext0', '192.0.2.1/24'],
    [NODE, 'h6ext0', '2001:db8:1::1/64'],
    [EXT, 'eth0', '192.0.2.2/24'],
    [EXT, 'eth0', '192.0.2.3/24'],
    [EXT, 'eth0', '2001:db8:1::2/64'],
    [EXT, 'eth0', '2001:db8:1::3/64'],
    [EXT, 'lo', '10.244.2.10/32'],
    [EXT, 'lo', '198.51.100.10/32'],
    [EXT, 'lo', 'fd00:10:244:2::10/128'],
    [EXT, 'lo', '2001:db8:99::10/128'],
  ];
  for (const [ns, dev, cidr] of addrs) {
    await ipn(ns, 'addr', 'add', cidr, 'dev', dev, ...(familyOf(cidr) === 'ipv6' ? ['nodad'] : []));
  }
  const routes: Array<[string, string, string]> = [
    [POD, 'default', '10.244.1.1'],
    [POD, 'default', 'fd00:10:244:1::1'],
    [NODE, '10.244.2.0/24', '192.0.2.2'],
    [NODE, '198.51.100.0/24', '192.0.2.2'],
    [NODE, 'fd00:10:244:2::/64', '2001:db8:1::2'],
    [NODE, '2001:db8:99::/64', '2001:db8:1::2'],
    // The external side can route back to the pod: only masquerade decides which source it sees.
    [EXT, '10.244.1.0/24', '192.0.2.1'],
    [EXT, 'fd00:10:244:1::/64', '2001:db8:1::1'],
  ];
  for (const [ns, dst, via] of routes) {
    await ipn(ns, ...(familyOf(via) === 'ipv6' ? ['-6'] : []), 'route', 'add', dst, 'via', via);
  }
  await inNs(NODE, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
}

async function ourChainRules(family: IpFamily): Promise<string[]> {
  const out = await inNs(NODE, [FAMILIES[family].iptables, '-t', 'nat', '-S', MASQ_CHAIN]);
  return out.split('\n').filter((l) => l.startsWith(`-A ${MASQ_CHAIN}`));
}

async function postrouting(family: IpFamily): Promise<string[]> {
  return (await inNs(NODE, [FAMILIES[family].iptables, '-t', 'nat', '-S', 'POSTROUTING'])).split('\n').filter(Boolean);
}

/** What identifies our objects' kernel incarnations: nft rule handles and ipset initvals change on any rewrite. */
async function kernelFingerprint(): Promise<string> {
  const chains = await Promise.all(
    ['ip', 'ip6'].map((t) => inNs(NODE, ['nft', '-a', 'list', 'chain', t, 'nat', MASQ_CHAIN])),
  );
  const posts = await Promise.all(['ip', 'ip6'].map((t) => inNs(NODE, ['nft', '-a', 'list', 'chain', t, 'nat', 'POSTROUTING'])));
  const sets = await inNs(NODE, ['ipset', 'list', '-o', 'save']);
  // Counters move with traffic; handles, rules and set identities do not.
  return [...chains, ...posts, sets].join('\n').replace(/packets \d+ bytes \d+/g, '');
}

const FOREIGN = {
  before: '-A POSTROUTING -s 203.0.113.0/24 -m comment --comment h6-foreign-before -j MASQUERADE',
  after: '-A POSTROUTING -s 203.0.113.64/26 -m comment --comment h6-foreign-after -j MASQUERADE',
};

async function addForeign(rule: string): Promise<void> {
  for (const family of IP_FAMILIES) {
    const spec = family === 'ipv6' ? rule.replace('203.0.113.0/24', '2001:db8:f00::/48').replace('203.0.113.64/26', '2001:db8:f01::/48') : rule;
    await inNs(NODE, [FAMILIES[family].iptables, '-t', 'nat', ...spec.split(' ')]);
  }
}

async function foreignIntact(): Promise<void> {
  for (const family of IP_FAMILIES) {
    const rules = await postrouting(family);
    expect(rules.some((r) => r.includes('h6-foreign-before')), `${family} before`).to.equal(true);
    expect(rules.some((r) => r.includes('h6-foreign-after')), `${family} after`).to.equal(true);
    const chain = await inNs(NODE, [FAMILIES[family].iptables, '-t', 'nat', '-S', 'H6-FOREIGN']);
    expect(chain).to.contain(`-A H6-FOREIGN -d ${family === 'ipv4' ? '203.0.113.9/32' : '2001:db8:f00::9/128'}`);
  }
  expect(await inNs(NODE, ['ipset', 'list', '-n'])).to.contain('h6-foreign-set');
}

describe('lab: masquerade reconciler in a node netns (h6nat-*)', function () {
  this.timeout(180_000);
  const servers = new ProcessGroup();
  const abort = new AbortController();
  let shared: MasqueradeReconciler | undefined;

  /**
   * The reconciler the tests share, started by the first test that needs it, with a foreign rule appended after
   * its jump: each test sets up what it needs, so any of them can run alone (mocha --grep).
   */
  async function running(): Promise<MasqueradeReconciler> {
    if (shared === undefined) {
      shared = new MasqueradeReconciler({ ...CONFIG, logger: captureLogs().logger, runner: netnsRunner(NODE), resyncIntervalMs: 300 });
      // start() runs until the loop ends; whenSynced() is its first success.
      void shared.start(abort.signal);
      await shared.whenSynced();
      await addForeign(FOREIGN.after);
    }
    return shared;
  }

  before(async () => {
    await buildTopology();
    const extAddresses = Object.values(FAMILIES).flatMap((f) => [f.external, f.otherNode, f.otherPod, f.noMasq]);
    const nodeAddresses = Object.values(FAMILIES).map((f) => f.node);
    await servers.start(['ip', 'netns', 'exec', EXT, 'node', ECHO, 'serve', String(PORT), ...extAddresses], 'ready');
    await servers.start(['ip', 'netns', 'exec', NODE, 'node', ECHO, 'serve', String(PORT), ...nodeAddresses], 'ready');
    // Other tools' state in the node's nat table, present before podroute starts.
    await addForeign(FOREIGN.before);
    for (const family of IP_FAMILIES) {
      const ipt = FAMILIES[family].iptables;
      await inNs(NODE, [ipt, '-t', 'nat', '-N', 'H6-FOREIGN']);
      await inNs(NODE, [ipt, '-t', 'nat', '-A', 'H6-FOREIGN', '-d', family === 'ipv4' ? '203.0.113.9' : '2001:db8:f00::9', '-j', 'RETURN']);
    }
    await inNs(NODE, ['ipset', 'create', 'h6-foreign-set', 'hash:ip']);
  });

  after(async () => {
    abort.abort();
    await servers.stopAll();
    await deleteNetns([POD, NODE, EXT]);
  });

  it('without podroute nothing is masqueraded (the probes can tell)', async () => {
    expect(await seenFrom('tcp', FAMILIES.ipv4.external)).to.equal(FAMILIES.ipv4.pod);
    expect(await seenFrom('udp', FAMILIES.ipv6.external)).to.equal(FAMILIES.ipv6.pod);
  });

  it('start: pod traffic leaving the cluster is SNATed to the node; to pods, nodes and non-masquerade ranges it is not', async () => {
    const reconciler = await running();
    expect(reconciler.status()).to.include({ inSync: true });
    expect(reconciler.status().loop.failures).to.equal(0);
    for (const family of IP_FAMILIES) {
      const f = FAMILIES[family];
      for (const proto of ['tcp', 'udp'] as const) {
        const at = `${family}/${proto}`;
        expect(await seenFrom(proto, f.external), `${at} external`).to.equal(canonical(f.node));
        expect(await seenFrom(proto, f.otherPod), `${at} other pod`).to.equal(canonical(f.pod));
        expect(await seenFrom(proto, f.noMasq), `${at} non-masquerade range`).to.equal(canonical(f.pod));
        expect(await seenFrom(proto, f.otherNode), `${at} other node`).to.equal(canonical(f.pod));
        // The pod's own node: local delivery, never through POSTROUTING.
        expect(await seenFrom(proto, f.node), `${at} own node`).to.equal(canonical(f.pod));
      }
      expect(await ourChainRules(family)).to.have.length(3);
      expect((await postrouting(family)).filter((r) => r.includes(MASQ_JUMP_COMMENT))).to.have.length(1);
    }
    await foreignIntact();
  });

  it('a resync and a second start with nothing changed rewrite nothing', async () => {
    const reconciler = await running();
    const before = await kernelFingerprint();
    const resync = await reconciler.sync();
    expect(resync.changed).to.equal(false);
    // An agent restart: a new reconciler over the same kernel state.
    const restart = new AbortController();
    const second = new MasqueradeReconciler({ ...CONFIG, logger: captureLogs().logger, runner: netnsRunner(NODE) });
    const loop = second.start(restart.signal);
    await second.whenSynced();
    restart.abort();
    await loop;
    expect(second.status().lastChanges).to.equal(undefined);
    expect(second.status().loop.successes).to.equal(1);
    expect(await kernelFingerprint()).to.equal(before);
    await foreignIntact();
  });

  it('the periodic resync repairs drift: deleted jump, flushed chain, edited set, duplicate jump', async () => {
    await running();
    for (const family of IP_FAMILIES) {
      const ipt = FAMILIES[family].iptables;
      await inNs(NODE, [ipt, '-t', 'nat', '-D', 'POSTROUTING', '-m', 'comment', '--comment', MASQ_JUMP_COMMENT, '-j', MASQ_CHAIN]);
      await inNs(NODE, [ipt, '-t', 'nat', '-F', MASQ_CHAIN]);
    }
    await inNs(NODE, ['ipset', 'flush', 'podroute-nomasq-v4']);
    await inNs(NODE, ['ipset', 'add', 'podroute-cluster-v6', '2001:db8:1::/64']);
    await inNs(NODE, ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-m', 'comment', '--comment', MASQ_JUMP_COMMENT, '-j', MASQ_CHAIN]);
    await inNs(NODE, ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-m', 'comment', '--comment', MASQ_JUMP_COMMENT, '-j', MASQ_CHAIN]);
    await pollUntil('drift repaired', async () => {
      for (const family of IP_FAMILIES) {
        if ((await ourChainRules(family)).length !== 3) return undefined;
        if ((await postrouting(family)).filter((r) => r.includes(MASQ_JUMP_COMMENT)).length !== 1) return undefined;
      }
      const sets = await inNs(NODE, ['ipset', 'list', '-o', 'save']);
      if (!sets.includes('add podroute-nomasq-v4 198.51.100.0/24')) return undefined;
      if (sets.includes('add podroute-cluster-v6 2001:db8:1::/64')) return undefined;
      return true;
    }, { timeoutMs: 15_000 });
    for (const family of IP_FAMILIES) {
      const f = FAMILIES[family];
      expect(await seenFrom('tcp', f.external)).to.equal(canonical(f.node));
      expect(await seenFrom('udp', f.noMasq)).to.equal(canonical(f.pod));
    }
    await foreignIntact();
  });

  it('a rule another program inserts above our jump (accepting pod traffic) is overtaken: ours goes back on top', async () => {
    await running();
    const accept = (family: IpFamily, op: '-I' | '-D'): string[] => [
      FAMILIES[family].iptables, '-t', 'nat', op, 'POSTROUTING', ...(op === '-I' ? ['1'] : []), '-s', FAMILIES[family].pod, '-j', 'ACCEPT',
    ];
    for (const family of IP_FAMILIES) await inNs(NODE, accept(family, '-I'));
    await pollUntil('our jump first again', async () => {
      for (const family of IP_FAMILIES) {
        const first = (await postrouting(family)).find((r) => r.startsWith('-A POSTROUTING'));
        if (first?.includes(MASQ_JUMP_COMMENT) !== true) return undefined;
      }
      return true;
    }, { timeoutMs: 15_000 });
    for (const family of IP_FAMILIES) {
      const f = FAMILIES[family];
      expect(await seenFrom('tcp', f.external), `${family} external`).to.equal(canonical(f.node));
      expect((await postrouting(family)).filter((r) => r.includes(MASQ_JUMP_COMMENT))).to.have.length(1);
      await inNs(NODE, accept(family, '-D'));
    }
    await foreignIntact();
  });

  it('setDesired: a new non-masquerade CIDR takes effect without touching the chain', async () => {
    const reconciler = await running();
    const ourChain = async () =>
      (await inNs(NODE, ['nft', '-a', 'list', 'chain', 'ip', 'nat', MASQ_CHAIN])).replace(/packets \d+ bytes \d+/g, '');
    const chainBefore = await ourChain();
    reconciler.setDesired({ ...CONFIG, nonMasqueradeCIDRs: [...(CONFIG.nonMasqueradeCIDRs ?? []), '192.0.2.2/32'] });
    await pollUntil('192.0.2.2 not masqueraded', async () =>
      (await seenFrom('tcp', FAMILIES.ipv4.external)) === FAMILIES.ipv4.pod ? true : undefined, { timeoutMs: 15_000 });
    expect(await ourChain()).to.equal(chainBefore);
    expect(await seenFrom('tcp', FAMILIES.ipv6.external)).to.equal(canonical(FAMILIES.ipv6.node));
    reconciler.setDesired(CONFIG);
    await pollUntil('192.0.2.2 masqueraded again', async () =>
      (await seenFrom('udp', FAMILIES.ipv4.external)) === FAMILIES.ipv4.node ? true : undefined, { timeoutMs: 15_000 });
  });

  it('setDesired: a single-stack config removes the other family only', async () => {
    const reconciler = await running();
    reconciler.setDesired({ clusterRanges: ['10.244.0.0/16'], nodeAddresses: ['192.0.2.3'], nonMasqueradeCIDRs: ['198.51.100.0/24'] });
    await pollUntil('v6 masquerade gone', async () =>
      (await seenFrom('tcp', FAMILIES.ipv6.external)) === canonical(FAMILIES.ipv6.pod) ? true : undefined, { timeoutMs: 15_000 });
    expect((await postrouting('ipv6')).some((r) => r.includes(MASQ_JUMP_COMMENT))).to.equal(false);
    expect(await inNs(NODE, ['ipset', 'list', '-n'])).to.not.contain('podroute-cluster-v6');
    expect(await seenFrom('tcp', FAMILIES.ipv4.external)).to.equal(FAMILIES.ipv4.node);
    reconciler.setDesired(CONFIG);
    await pollUntil('v6 masquerade back', async () =>
      (await seenFrom('tcp', FAMILIES.ipv6.external)) === canonical(FAMILIES.ipv6.node) ? true : undefined, { timeoutMs: 15_000 });
    await foreignIntact();
  });

  it('remove(): everything of ours is gone, everything foreign stays, nothing is masqueraded', async () => {
    const reconciler = await running();
    const result = await reconciler.remove();
    expect(result.changed).to.equal(true);
    for (const family of IP_FAMILIES) {
      expect((await postrouting(family)).some((r) => r.includes(MASQ_CHAIN))).to.equal(false);
      const listed = await sh(['ip', 'netns', 'exec', NODE, FAMILIES[family].iptables, '-t', 'nat', '-S']);
      expect(listed).to.not.contain(MASQ_CHAIN);
    }
    expect(await inNs(NODE, ['ipset', 'list', '-n'])).to.not.contain('podroute-');
    await foreignIntact();
    expect(await seenFrom('tcp', FAMILIES.ipv4.external)).to.equal(FAMILIES.ipv4.pod);
    expect(await seenFrom('udp', FAMILIES.ipv6.external)).to.equal(canonical(FAMILIES.ipv6.pod));
    // The loop has stopped: nothing comes back at the next resync interval.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await inNs(NODE, ['ipset', 'list', '-n'])).to.not.contain('podroute-');
  });
});

describe('lab: masquerade restore failures are logged with their input and retried (h6nat-fail)', function () {
  this.timeout(60_000);
  const abort = new AbortController();

  before(() => createNetns([FAIL]));
  after(async () => {
    abort.abort();
    await deleteNetns([FAIL]);
  });

  it('a set of ours held by a foreign rule cannot be recreated: the error carries the restore input; it converges once freed', async () => {
    // A hash:ip set squatting on our name, referenced by a foreign rule: the kernel refuses to destroy it.
    await inNs(FAIL, ['ipset', 'create', 'podroute-cluster-v4', 'hash:ip']);
    await inNs(FAIL, ['iptables', '-t', 'filter', '-A', 'INPUT', '-m', 'set', '--match-set', 'podroute-cluster-v4', 'src', '-j', 'ACCEPT']);
    const { logger, lines } = captureLogs();
    const reconciler = new MasqueradeReconciler({
      clusterRanges: ['10.244.0.0/16'],
      logger,
      runner: netnsRunner(FAIL),
      retryMinMs: 100,
      retryMaxMs: 200,
    });
    let started = false;
    void reconciler.start(abort.signal);
    const start = reconciler.whenSynced().then(() => (started = true));
    await pollUntil('a logged failure', () => Promise.resolve(reconciler.status().loop.failures > 0 ? true : undefined), { timeoutMs: 15_000 });
    expect(started).to.equal(false);
    expect(reconciler.status().loop.lastError?.code).to.equal('COMMAND_FAILED');
    const failure = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.message === 'ipset failed');
    expect(failure?.input).to.be.a('string').and.to.contain('destroy podroute-cluster-v4');
    expect(failure?.stderr).to.match(/in use/i);

    await inNs(FAIL, ['iptables', '-t', 'filter', '-D', 'INPUT', '-m', 'set', '--match-set', 'podroute-cluster-v4', 'src', '-j', 'ACCEPT']);
    await start;
    expect(reconciler.status()).to.include({ inSync: true });
    expect(reconciler.status().loop.lastError).to.equal(undefined);
    expect(await inNs(FAIL, ['ipset', 'list', '-o', 'save', 'podroute-cluster-v4'])).to.contain('hash:net family inet ');
    await reconciler.remove();
  });
});
