import { expect } from 'chai';
import fc from 'fast-check';
import {
  desiredMasqueradeFamily,
  isEmptyPlan,
  jumpRuleSpec,
  MASQ_CHAIN,
  type MasqueradeConfig,
  MasqueradeConfigError,
  type MasqueradeFamilyPlan,
  normalizeMasqueradeConfig,
  type ObservedMasqueradeFamily,
  parseChainRuleHashes,
  parseCidrOrIp,
  observedMasqueradeSets,
  parsePostroutingFirst,
  parsePostroutingJumps,
  planMasqueradeFamily,
  setNames,
} from '../../../src/nat/masquerade-plan.js';
import { IP_FAMILIES, type IpFamily } from '../../../src/routes/ip-prefix.js';

const CONFIG: MasqueradeConfig = {
  clusterRanges: ['10.244.0.0/16', 'fd00:10:244::/48'],
  nonMasqueradeCIDRs: ['198.51.100.0/24', '2001:db8:99::/64'],
  nodeAddresses: ['192.0.2.1', '2001:db8:1::1'],
};

function emptyWorld(): ObservedMasqueradeFamily {
  return { sets: new Map(), chainRuleHashes: null, postroutingJumps: [], postroutingFirst: null };
}

/**
 * A small in-memory model of the nat table's POSTROUTING + our chain and of ipset, executing the restore lines
 * the planner emits with the kernel's rules (create fails on an existing set, -D needs a match, swap needs the
 * same type...). Foreign POSTROUTING rules live in it too, to show they are never touched.
 */
class KernelModel {
  sets = new Map<string, { type: string; family: string; entries: Set<string> }>();
  chain: string[] | null = null;
  postrouting: string[] = [];

  observe(): ObservedMasqueradeFamily {
    const sets = new Map<string, { name: string; type: string; family: string; entries: string[] }>();
    for (const [name, set] of this.sets) {
      sets.set(name, { name, type: set.type, family: set.family, entries: [...set.entries].sort() });
    }
    return {
      sets,
      chainRuleHashes: this.chain === null ? null : parseChainRuleHashes(this.chain.join('\n')),
      postroutingJumps: parsePostroutingJumps(this.postrouting.join('\n')),
      postroutingFirst: parsePostroutingFirst(this.postrouting.join('\n')),
    };
  }

  apply(plan: MasqueradeFamilyPlan): void {
    if (plan.unreferenceChain) this.iptables([`:${MASQ_CHAIN} - [0:0]`]);
    this.ipset(plan.ipsetRestore);
    this.iptables(plan.iptablesRestore);
    this.ipset(plan.destroySetsAfter.map((name) => `destroy ${name}`));
  }

  ipset(lines: readonly string[]): void {
    for (const line of lines) {
      const [verb, a, b, ...rest] = line.split(' ');
      if (verb === 'create') {
        if (a === undefined || this.sets.has(a)) throw new Error(`create ${a}: exists`);
        this.sets.set(a, { type: b ?? '', family: rest[rest.indexOf('family') + 1] ?? '', entries: new Set() });
      } else if (verb === 'add') {
        const set = this.sets.get(a ?? '');
        const parsed = parseCidrOrIp(b ?? '');
        if (set === undefined || parsed === null) throw new Error(`bad add: ${line}`);
        set.entries.add(parsed.cidr);
      } else if (verb === 'swap') {
        const x = this.sets.get(a ?? '');
        const y = this.sets.get(b ?? '');
        if (x === undefined || y === undefined || x.type !== y.type || x.family !== y.family) {
          throw new Error(`bad swap: ${line}`);
        }
        this.sets.set(a ?? '', y);
        this.sets.set(b ?? '', x);
      } else if (verb === 'destroy') {
        if (!this.sets.delete(a ?? '')) throw new Error(`destroy ${a}: missing`);
      } else throw new Error(`unknown ipset line ${line}`);
    }
  }

  iptables(lines: readonly string[]): void {
    for (const line of lines) {
      if (line === `:${MASQ_CHAIN} - [0:0]`) this.chain = [];
      else if (line.startsWith(`-A ${MASQ_CHAIN} `)) {
        if (this.chain === null) throw new Error('append to a missing chain');
        this.chain.push(line);
      } else if (line.startsWith('-I POSTROUTING 1 ')) {
        if (this.chain === null) throw new Error('jump to a missing chain');
        this.postrouting.unshift(`-A POSTROUTING ${line.slice('-I POSTROUTING 1 '.length)}`);
      } else if (line.startsWith('-D POSTROUTING ')) {
        const at = this.postrouting.indexOf(line.replace(/^-D /, '-A '));
        if (at < 0) throw new Error(`no rule to delete: ${line}`);
        this.postrouting.splice(at, 1);
      } else if (line === `-F ${MASQ_CHAIN}`) {
        if (this.chain === null) throw new Error('flush of a missing chain');
        this.chain = [];
      } else if (line === `-X ${MASQ_CHAIN}`) {
        if (this.chain === null || this.chain.length > 0) throw new Error('delete of a missing or full chain');
        if (this.postrouting.some((r) => r.endsWith(`-j ${MASQ_CHAIN}`))) throw new Error('chain still referenced');
        this.chain = null;
      } else throw new Error(`unknown iptables line ${line}`);
    }
  }
}

function plan(family: IpFamily, config: MasqueradeConfig | null, world: ObservedMasqueradeFamily) {
  const spec = config === null ? null : normalizeMasqueradeConfig(config)[family];
  return planMasqueradeFamily(family, spec === null ? null : desiredMasqueradeFamily(spec), world);
}

describe('nat/masquerade-plan', () => {
  describe('normalizeMasqueradeConfig', () => {
    it('splits by family, canonicalizes, deduplicates and puts cluster ranges among the no-NAT destinations', () => {
      const spec = normalizeMasqueradeConfig({
        clusterRanges: ['10.244.7.9/16', 'FD00:10:244:0:0::/48', '10.244.0.0/16'],
        nonMasqueradeCIDRs: ['198.51.100.0/24'],
        nodeAddresses: ['192.0.2.1', '2001:db8::1'],
      });
      expect(spec.ipv4?.clusterRanges).to.deep.equal(['10.244.0.0/16']);
      expect(spec.ipv4?.noMasqueradeDestinations).to.deep.equal(['10.244.0.0/16', '192.0.2.1/32', '198.51.100.0/24']);
      expect(spec.ipv6?.clusterRanges).to.deep.equal(['fd00:10:244::/48']);
      expect(spec.ipv6?.noMasqueradeDestinations).to.deep.equal(['2001:db8::1/128', 'fd00:10:244::/48']);
      expect(spec.ipv4?.randomFully).to.equal(true);
    });

    it('owns nothing in a family without cluster ranges, even with non-masquerade CIDRs there', () => {
      const spec = normalizeMasqueradeConfig({ clusterRanges: ['10.0.0.0/8'], nonMasqueradeCIDRs: ['fd00::/8'] });
      expect(spec.ipv6).to.equal(null);
      expect(spec.ipv4).to.not.equal(null);
    });

    it('turns a /0 non-masquerade CIDR into its two halves (hash:net cannot hold /0)', () => {
      const spec = normalizeMasqueradeConfig({ clusterRanges: ['10.0.0.0/8', 'fd00::/8'], nonMasqueradeCIDRs: ['0.0.0.0/0', '::/0'] });
      expect(spec.ipv4?.noMasqueradeDestinations).to.deep.equal(['0.0.0.0/1', '10.0.0.0/8', '128.0.0.0/1']);
      expect(spec.ipv6?.noMasqueradeDestinations).to.deep.equal(['8000::/1', '::/1', 'fd00::/8']);
    });

    const bad: Array<[string, unknown, string]> = [
      ['clusterRanges missing', { nonMasqueradeCIDRs: [] }, 'clusterRanges'],
      ['a bare IP as cluster range', { clusterRanges: ['10.0.0.0/8', '10.1.1.1'] }, 'clusterRanges[1]'],
      ['a /0 cluster range', { clusterRanges: ['0.0.0.0/0'] }, 'clusterRanges[0]'],
      ['garbage non-masquerade CIDR', { clusterRanges: ['10.0.0.0/8'], nonMasqueradeCIDRs: ['10.0.0.0/33'] }, 'nonMasqueradeCIDRs[0]'],
      ['a number as node address', { clusterRanges: ['10.0.0.0/8'], nodeAddresses: ['1.2.3.4', 7] }, 'nodeAddresses[1]'],
      ['a string list', { clusterRanges: '10.0.0.0/8' }, 'clusterRanges'],
      // The agent's one prefix parser: forms ipaddr.js read (two-part and octal IPv4, a zone index) are no address.
      ['a two-part IPv4 cluster range', { clusterRanges: ['10.1/16'] }, 'clusterRanges[0]'],
      ['an octal node address', { clusterRanges: ['10.0.0.0/8'], nodeAddresses: ['010.0.0.1'] }, 'nodeAddresses[0]'],
      ['a node address with a zone index', { clusterRanges: ['fd00::/8'], nodeAddresses: ['fe80::1%eth0'] }, 'nodeAddresses[0]'],
      ['an IPv4-mapped IPv6 node address', { clusterRanges: ['fd00::/8'], nodeAddresses: ['::ffff:10.0.0.1'] }, 'nodeAddresses[0]'],
      ['the kernel word "default"', { clusterRanges: ['10.0.0.0/8'], nonMasqueradeCIDRs: ['default'] }, 'nonMasqueradeCIDRs[0]'],
      ['randomFully not boolean', { clusterRanges: ['10.0.0.0/8'], randomFully: 'yes' }, 'randomFully'],
    ];
    for (const [name, config, field] of bad) {
      it(`rejects ${name}, naming ${field}`, () => {
        let caught: unknown;
        try {
          normalizeMasqueradeConfig(config as MasqueradeConfig);
        } catch (error) {
          caught = error;
        }
        expect(caught).to.be.instanceOf(MasqueradeConfigError);
        expect((caught as MasqueradeConfigError).code).to.equal('NAT_BAD_CONFIG');
        expect((caught as MasqueradeConfigError).field).to.equal(field);
      });
    }
  });

  describe('desired rules', () => {
    it('hashes are stable, differ per rule, and read back from the printed rules', () => {
      const spec = normalizeMasqueradeConfig(CONFIG).ipv4;
      if (spec === null) throw new Error('no ipv4');
      const a = desiredMasqueradeFamily(spec);
      const b = desiredMasqueradeFamily(structuredClone(spec));
      expect(a.rules.map((r) => r.hash)).to.deep.equal(b.rules.map((r) => r.hash));
      expect(new Set(a.rules.map((r) => r.hash)).size).to.equal(3);
      const printed = [`-N ${MASQ_CHAIN}`, ...a.rules.map((r) => r.line)].join('\n');
      expect(parseChainRuleHashes(printed)).to.deep.equal(a.rules.map((r) => r.hash));
      const noRandom = desiredMasqueradeFamily({ ...spec, randomFully: false });
      expect(noRandom.rules[2]?.hash).to.not.equal(a.rules[2]?.hash);
      expect(noRandom.rules[2]?.line).to.match(/-j MASQUERADE$/);
    });

    it('matches pods as sources and the no-NAT set as destinations, per family', () => {
      const spec = normalizeMasqueradeConfig(CONFIG).ipv6;
      if (spec === null) throw new Error('no ipv6');
      const lines = desiredMasqueradeFamily(spec).rules.map((r) => r.line);
      expect(lines[0]).to.contain('-m set ! --match-set podroute-cluster-v6 src -j RETURN');
      expect(lines[1]).to.contain('-m set --match-set podroute-nomasq-v6 dst -j RETURN');
      expect(lines[2]).to.contain('-j MASQUERADE --random-fully');
    });
  });

  describe('parsers', () => {
    it('parses ipset save output into canonical entries (host entries print without a prefix length)', () => {
      const sets = observedMasqueradeSets(
        [
          'create podroute-nomasq-v4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc1455f95',
          'add podroute-nomasq-v4 10.244.0.0/16',
          'add podroute-nomasq-v4 192.0.2.1',
          'create podroute-nomasq-v6 hash:net family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x19096a04',
          'add podroute-nomasq-v6 fd00:10:244::/48',
          'add podroute-nomasq-v6 fd00::1',
          '',
        ].join('\n'),
      );
      expect(sets.get('podroute-nomasq-v4')).to.deep.equal({
        name: 'podroute-nomasq-v4',
        type: 'hash:net',
        family: 'inet',
        entries: ['10.244.0.0/16', '192.0.2.1/32'],
      });
      expect(sets.get('podroute-nomasq-v6')?.entries).to.deep.equal(['fd00:10:244::/48', 'fd00::1/128']);
      expect(sets.get('podroute-nomasq-v6')?.family).to.equal('inet6');
    });

    it('finds only the POSTROUTING rules that jump to our chain', () => {
      const text = [
        '-P POSTROUTING ACCEPT',
        `-A POSTROUTING ${jumpRuleSpec()}`,
        '-A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE',
        `-A POSTROUTING -j ${MASQ_CHAIN}-OTHER`,
        `-A POSTROUTING -s 10.0.0.0/8 -j ${MASQ_CHAIN}`,
        `-A OTHER -j ${MASQ_CHAIN}`,
      ].join('\n');
      expect(parsePostroutingJumps(text)).to.deep.equal([
        `-A POSTROUTING ${jumpRuleSpec()}`,
        `-A POSTROUTING -s 10.0.0.0/8 -j ${MASQ_CHAIN}`,
      ]);
    });

    it('reads a rule without our hash comment as null (a foreign rule in our chain)', () => {
      expect(parseChainRuleHashes(`-N ${MASQ_CHAIN}\n-A ${MASQ_CHAIN} -j MASQUERADE\n`)).to.deep.equal([null]);
    });
  });

  describe('planMasqueradeFamily', () => {
    it('from nothing: creates both sets, the chain and one jump, in that order', () => {
      const p = plan('ipv4', CONFIG, emptyWorld());
      const names = setNames('ipv4');
      expect(p.ipsetRestore).to.deep.equal([
        `create ${names.cluster} hash:net family inet hashsize 1024 maxelem 65536`,
        `add ${names.cluster} 10.244.0.0/16`,
        `create ${names.noMasquerade} hash:net family inet hashsize 1024 maxelem 65536`,
        `add ${names.noMasquerade} 10.244.0.0/16`,
        `add ${names.noMasquerade} 192.0.2.1/32`,
        `add ${names.noMasquerade} 198.51.100.0/24`,
      ]);
      expect(p.iptablesRestore[0]).to.equal(`:${MASQ_CHAIN} - [0:0]`);
      expect(p.iptablesRestore.slice(1, 4).every((l) => l.startsWith(`-A ${MASQ_CHAIN} `))).to.equal(true);
      expect(p.iptablesRestore[4]).to.equal(`-I POSTROUTING 1 ${jumpRuleSpec()}`);
      expect(p.iptablesRestore).to.have.length(5);
      expect(p.unreferenceChain).to.equal(false);
      expect(p.summary).to.include({ chainWritten: true, jumpInserted: true, jumpsDeleted: 0 });
    });

    it('a converged world gives an empty plan', () => {
      for (const family of IP_FAMILIES) {
        const model = new KernelModel();
        model.apply(plan(family, CONFIG, model.observe()));
        expect(isEmptyPlan(plan(family, CONFIG, model.observe())), family).to.equal(true);
      }
    });

    it('changed set contents: a temp set swapped in, the chain and jump left alone', () => {
      const model = new KernelModel();
      model.apply(plan('ipv4', CONFIG, model.observe()));
      const changed = { ...CONFIG, nonMasqueradeCIDRs: ['198.51.100.0/24', '100.64.0.0/10'] };
      const p = plan('ipv4', changed, model.observe());
      const nomasq = setNames('ipv4').noMasquerade;
      expect(p.iptablesRestore).to.deep.equal([]);
      expect(p.ipsetRestore[0]).to.equal(`create ${nomasq}-tmp hash:net family inet hashsize 1024 maxelem 65536`);
      expect(p.ipsetRestore.slice(-2)).to.deep.equal([`swap ${nomasq}-tmp ${nomasq}`, `destroy ${nomasq}-tmp`]);
      expect(p.summary.setsWritten).to.deep.equal([nomasq]);
      model.apply(p);
      expect(model.sets.get(nomasq)?.entries.has('100.64.0.0/10')).to.equal(true);
      expect(isEmptyPlan(plan('ipv4', changed, model.observe()))).to.equal(true);
    });

    it('repairs drift: a flushed chain, a deleted jump, duplicate and foreign-shaped jumps, a leftover temp set', () => {
      const model = new KernelModel();
      model.postrouting.push('-A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE');
      model.apply(plan('ipv4', CONFIG, model.observe()));
      const canonical = `-A POSTROUTING ${jumpRuleSpec()}`;

      model.chain = [];
      let p = plan('ipv4', CONFIG, model.observe());
      expect(p.summary).to.include({ chainWritten: true, jumpInserted: false, jumpsDeleted: 0 });
      expect(p.ipsetRestore).to.deep.equal([]);
      model.apply(p);

      model.postrouting = model.postrouting.filter((r) => r !== canonical);
      p = plan('ipv4', CONFIG, model.observe());
      expect(p.iptablesRestore).to.deep.equal([`-I POSTROUTING 1 ${jumpRuleSpec()}`]);
      model.apply(p);

      model.postrouting.push(canonical, canonical, `-A POSTROUTING -d 10.0.0.0/8 -j ${MASQ_CHAIN}`);
      model.sets.set(`${setNames('ipv4').cluster}-tmp`, { type: 'hash:net', family: 'inet', entries: new Set() });
      p = plan('ipv4', CONFIG, model.observe());
      // Every copy goes and one comes back on top: deleting a duplicate by spec would take the topmost.
      expect(p.summary.jumpsDeleted).to.equal(4);
      expect(p.summary.jumpInserted).to.equal(true);
      expect(p.ipsetRestore).to.deep.equal([`destroy ${setNames('ipv4').cluster}-tmp`]);
      model.apply(p);
      expect(model.postrouting).to.have.members([canonical, '-A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE']);
      expect(isEmptyPlan(plan('ipv4', CONFIG, model.observe()))).to.equal(true);
    });

    it('moves our jump back to the top of POSTROUTING when another rule was inserted above it', () => {
      const model = new KernelModel();
      model.apply(plan('ipv4', CONFIG, model.observe()));
      const canonical = `-A POSTROUTING ${jumpRuleSpec()}`;
      model.postrouting.unshift('-A POSTROUTING -j ACCEPT');
      const p = plan('ipv4', CONFIG, model.observe());
      expect(p.iptablesRestore).to.deep.equal([`-D POSTROUTING ${jumpRuleSpec()}`, `-I POSTROUTING 1 ${jumpRuleSpec()}`]);
      model.apply(p);
      expect(model.postrouting).to.deep.equal([canonical, '-A POSTROUTING -j ACCEPT']);
      expect(isEmptyPlan(plan('ipv4', CONFIG, model.observe()))).to.equal(true);
    });

    it('a foreign rule appended to our chain makes us rewrite the chain', () => {
      const model = new KernelModel();
      model.apply(plan('ipv4', CONFIG, model.observe()));
      model.chain?.push(`-A ${MASQ_CHAIN} -j ACCEPT`);
      const p = plan('ipv4', CONFIG, model.observe());
      expect(p.summary.chainWritten).to.equal(true);
      model.apply(p);
      expect(model.chain).to.have.length(3);
    });

    it('a set of ours with the wrong type or family is recreated after our chain stops referencing it', () => {
      const model = new KernelModel();
      model.apply(plan('ipv6', CONFIG, model.observe()));
      const cluster = setNames('ipv6').cluster;
      model.sets.set(cluster, { type: 'hash:net', family: 'inet', entries: new Set(['10.0.0.0/8']) });
      const p = plan('ipv6', CONFIG, model.observe());
      expect(p.unreferenceChain).to.equal(true);
      expect(p.ipsetRestore.slice(0, 2)).to.deep.equal([
        `destroy ${cluster}`,
        `create ${cluster} hash:net family inet6 hashsize 1024 maxelem 65536`,
      ]);
      expect(p.summary.chainWritten).to.equal(true);
      expect(p.summary.setsRecreated).to.deep.equal([cluster]);
      model.apply(p);
      expect(isEmptyPlan(plan('ipv6', CONFIG, model.observe()))).to.equal(true);
    });

    it('desired absent: removes jump, chain and sets (temp sets too), and nothing when nothing is there', () => {
      const model = new KernelModel();
      model.postrouting.push('-A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE');
      model.apply(plan('ipv4', CONFIG, model.observe()));
      model.sets.set(`${setNames('ipv4').noMasquerade}-tmp`, { type: 'hash:net', family: 'inet', entries: new Set() });
      const p = plan('ipv4', null, model.observe());
      expect(p.summary).to.include({ chainDeleted: true, jumpsDeleted: 1 });
      expect(p.destroySetsAfter).to.have.length(3);
      model.apply(p);
      expect(model.sets.size).to.equal(0);
      expect(model.chain).to.equal(null);
      expect(model.postrouting).to.deep.equal(['-A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE']);
      expect(isEmptyPlan(plan('ipv4', null, model.observe()))).to.equal(true);
      // A single-stack IPv4 config owns nothing in IPv6.
      expect(isEmptyPlan(plan('ipv6', { clusterRanges: ['10.0.0.0/8'] }, emptyWorld()))).to.equal(true);
    });

    it('property: any sequence of configs converges in one step and then plans nothing; foreign rules stay', () => {
      const v4 = fc
        .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 8, max: 30 }))
        .map(([a, b, len]) => `10.${a}.${b}.0/${len}`);
      const v6 = fc
        .tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 16, max: 120 }))
        .map(([a, len]) => `fd00:${a.toString(16)}::/${len}`);
      const config = fc.record({
        clusterRanges: fc.array(fc.oneof(v4, v6), { maxLength: 3 }),
        nonMasqueradeCIDRs: fc.array(fc.oneof(v4, v6), { maxLength: 4 }),
        randomFully: fc.boolean(),
      });
      fc.assert(
        fc.property(fc.array(config, { minLength: 1, maxLength: 5 }), fc.boolean(), (configs, removeAtEnd) => {
          const models = { ipv4: new KernelModel(), ipv6: new KernelModel() };
          for (const model of Object.values(models)) model.postrouting.push('-A POSTROUTING -o eth9 -j MASQUERADE');
          const steps: Array<MasqueradeConfig | null> = [...configs, ...(removeAtEnd ? [null] : [])];
          for (const step of steps) {
            for (const family of IP_FAMILIES) {
              const model = models[family];
              model.apply(plan(family, step, model.observe()));
              if (!isEmptyPlan(plan(family, step, model.observe()))) return false;
              if (!model.postrouting.includes('-A POSTROUTING -o eth9 -j MASQUERADE')) return false;
              const jumps = parsePostroutingJumps(model.postrouting.join('\n'));
              const owned = step !== null && normalizeMasqueradeConfig(step)[family] !== null;
              if (jumps.length !== (owned ? 1 : 0)) return false;
              if (!owned && (model.sets.size > 0 || model.chain !== null)) return false;
            }
          }
          return true;
        }),
        { numRuns: 200 },
      );
    });
  });
});
