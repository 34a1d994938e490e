import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, DEFAULT_EXTERNAL_MAX_PREFIXES, canonicalCIDR, loadAgentConfig, parseAgentConfig } from '../../../src/config/agent-config.js';

const minimal = { nodeName: 'n1', cluster: { podRanges: ['10.244.0.0/16', 'fd00:10:244::/56'] } };

function problemsOf(input: unknown): string[] {
  try {
    parseAgentConfig(input);
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('agent config', () => {
  it('fills defaults around a minimal config', () => {
    const config = parseAgentConfig(minimal);
    expect(config.cluster.asn).to.equal(64512);
    expect(config.bgp.mesh).to.equal('full');
    expect(config.gobgp.target).to.equal('unix:///run/podroute/gobgp.sock');
    expect(config.routes.protocol).to.equal(44);
    expect(config.cni.bridge).to.equal('podroute0');
    expect(config.bgp.gracefulRestart).to.deep.equal({ enabled: true, restartTime: 120 });
  });

  it('limits the prefixes of external peers by default; a peer may set its own, 0 = no limit', () => {
    expect(DEFAULT_EXTERNAL_MAX_PREFIXES).to.equal(10_000);
    expect(parseAgentConfig(minimal).bgp.maxPrefixes).to.equal(DEFAULT_EXTERNAL_MAX_PREFIXES);
    const config = parseAgentConfig({ ...minimal, bgp: { maxPrefixes: 500, peers: [{ address: '10.0.0.1', asn: 65000, maxPrefixes: 0 }, { address: '10.0.0.2', asn: 65000 }] } });
    expect(config.bgp.maxPrefixes).to.equal(500);
    expect(config.bgp.peers.map((p) => p.maxPrefixes)).to.deep.equal([0, undefined]);
  });

  it('writes iptables where the node\'s rules are unless told: iptables.backend auto by default, nft or legacy to override', () => {
    expect(parseAgentConfig(minimal).iptables.backend).to.equal('auto');
    for (const backend of ['nft', 'legacy', 'auto'] as const) expect(parseAgentConfig({ ...minimal, iptables: { backend } }).iptables.backend).to.equal(backend);
    expect(problemsOf({ ...minimal, iptables: { backend: 'nftables' } })).to.deep.equal(['iptables.backend: must be one of auto, nft, legacy (got "nftables")']);
    expect(problemsOf({ ...minimal, iptables: { backend: 'nft', mode: 'x' } })).to.deep.equal(['iptables: unknown key(s) "mode"']);
  });

  it("keeps gobgpd's API off the network: a unix socket by default, TCP only on loopback", () => {
    expect(parseAgentConfig(minimal).gobgp.target).to.match(/^unix:\/\/\//);
    for (const target of ['127.0.0.1:50051', '[::1]:50051', 'localhost:50051', 'unix:///tmp/gobgp.sock']) {
      expect(parseAgentConfig({ ...minimal, gobgp: { target } }).gobgp.target).to.equal(target);
    }
    for (const target of ['0.0.0.0:50051', '[::]:50051', '10.0.0.1:50051', ':50051', 'gobgpd:50051', '127.0.0.1.example.com:50051']) {
      expect(problemsOf({ ...minimal, gobgp: { target } }).join('\n'), target).to.match(/^gobgp\.target: must be unix/);
    }
  });

  it('canonicalizes CIDRs and accepts non-canonical ones', () => {
    expect(canonicalCIDR('10.244.7.9/16')).to.equal('10.244.0.0/16');
    expect(canonicalCIDR('fd00:10:244:0:0::1/56')).to.equal('fd00:10:244::/56');
    expect(canonicalCIDR('10.0.0.0/33')).to.equal(undefined);
    expect(canonicalCIDR('nonsense')).to.equal(undefined);
    // Forms ipaddr.js (the parser before) read as some other network are no CIDR: the config names them.
    for (const loose of ['10.1/16', '010.0.0.0/8', '0xa.0.0.0/8', 'fd00::%eth0/64', '10.0.0.0/08']) expect(canonicalCIDR(loose), loose).to.equal(undefined);
    expect(() => parseAgentConfig({ cluster: { podRanges: ['10.244/16'] } })).to.throw(ConfigError, /cluster\.podRanges\[0\]: not a CIDR: "10\.244\/16"/);
    const config = parseAgentConfig({ ...minimal, cluster: { podRanges: ['10.244.1.1/16'] } });
    expect(config.cluster.podRanges).to.deep.equal(['10.244.0.0/16']);
  });

  const bad: [string, unknown, RegExp][] = [
    ['unknown top-level key', { ...minimal, bgpp: {} }, /^\(top level\): unknown key\(s\) "bgpp"/],
    ['missing pod ranges', { nodeName: 'n1', cluster: {} }, /^cluster\.podRanges: Required/],
    ['bad CIDR', { ...minimal, cluster: { podRanges: ['10.244.0.0/40'] } }, /^cluster\.podRanges\[0\]: not a CIDR/],
    ['ASN out of range', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 0 }] } }, /^bgp\.peers\[0\]\.asn:/],
    ['ASN too large', { ...minimal, cluster: { ...minimal.cluster, asn: 4294967296 } }, /^cluster\.asn:/],
    ['peer address not an IP', { ...minimal, bgp: { peers: [{ address: 'tor1', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: not an IP/],
    ['plain password', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, password: 'x' }] } }, /^bgp\.peers\[0\]: unknown key\(s\) "password"/],
    ['port as string', { ...minimal, bgp: { listenPort: '179' } }, /^bgp\.listenPort: Expected number/],
    ['gobgpd on a non-loopback TCP address', { ...minimal, gobgp: { target: '10.0.0.1:50051' } }, /^gobgp\.target: must be unix/],
    ['mixed-family local address', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, localAddress: 'fd00::1' }] } }, /^bgp\.peers\[0\]\.localAddress: address family/],
    ['duplicate peers', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000 }, { address: '10.0.0.1', asn: 65001 }] } }, /^bgp\.peers\[1\]\.address: duplicates/],
    ['bad bridge name', { ...minimal, cni: { bridge: 'a-very-long-bridge-name' } }, /^cni\.bridge:/],
    ['unknown mesh mode', { ...minimal, bgp: { mesh: 'partial' } }, /^bgp\.mesh:/],
    ['negative global prefix limit', { ...minimal, bgp: { maxPrefixes: -1 } }, /^bgp\.maxPrefixes: Number must be greater than or equal to 0/],
    ['prefix limit as string', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, maxPrefixes: '100' }] } }, /^bgp\.peers\[0\]\.maxPrefixes: Expected number/],
    ['fractional prefix limit', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, maxPrefixes: 1.5 }] } }, /^bgp\.peers\[0\]\.maxPrefixes: Expected integer/],
    ['prefix limit beyond uint32', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, maxPrefixes: 4294967296 }] } }, /^bgp\.peers\[0\]\.maxPrefixes: Number must be less than or equal to 4294967295/],
    ['gobgpd on every interface', { ...minimal, gobgp: { target: '0.0.0.0:50051' } }, /^gobgp\.target: must be unix/],
    ['gobgpd on every IPv6 interface', { ...minimal, gobgp: { target: '[::]:50051' } }, /^gobgp\.target: must be unix/],
    ['peer address with a zone', { ...minimal, bgp: { peers: [{ address: 'fe80::1%eth0', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: not an IP address/],
    ['local address with a zone', { ...minimal, bgp: { peers: [{ address: 'fd00::1', asn: 65000, localAddress: 'fd00::2%eth0' }] } }, /^bgp\.peers\[0\]\.localAddress: not an IP address/],
    // Values that validate as types but later break or endanger the node.
    ['a kernel routing protocol (kernel/boot/static)', { ...minimal, routes: { protocol: 4 } }, /^routes\.protocol: .*0-4/],
    ['the redirect protocol', { ...minimal, routes: { protocol: 1 } }, /^routes\.protocol:/],
    ['a resync beyond setTimeout (would loop every 1 ms)', { ...minimal, routes: { resyncSeconds: 1e7 } }, /^routes\.resyncSeconds:/],
    ['hold time 1', { ...minimal, bgp: { holdTime: 1 } }, /^bgp\.holdTime: must be 0 .* or at least 3/],
    ['keepalive equal to the hold time', { ...minimal, bgp: { holdTime: 9, keepaliveInterval: 9 } }, /^bgp\.keepaliveInterval: must be less than the hold time/],
    ['peer hold time 2', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, holdTime: 2 }] } }, /^bgp\.peers\[0\]\.holdTime: must be 0/],
    ['peer keepalive above its hold time', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, holdTime: 6, keepaliveInterval: 7 }] } }, /^bgp\.peers\[0\]\.keepaliveInterval: must be less than the hold time/],
    ['peer keepalive above the global hold time', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, keepaliveInterval: 9 }] } }, /^bgp\.peers\[0\]\.keepaliveInterval: must be less than the hold time \(9\)/],
    ['peer 0.0.0.0', { ...minimal, bgp: { peers: [{ address: '0.0.0.0', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: .*unspecified/],
    ['peer ::', { ...minimal, bgp: { peers: [{ address: '::', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: .*unspecified/],
    ['peer on loopback', { ...minimal, bgp: { peers: [{ address: '127.0.0.1', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: .*loopback/],
    ['peer ::1', { ...minimal, bgp: { peers: [{ address: '::1', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: .*loopback/],
    ['peer broadcast', { ...minimal, bgp: { peers: [{ address: '255.255.255.255', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: .*broadcast/],
    ['peer multicast', { ...minimal, bgp: { peers: [{ address: '224.0.0.5', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: .*multicast/],
    ['peer v6 multicast', { ...minimal, bgp: { peers: [{ address: 'ff02::5', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: .*multicast/],
    ['local address 0.0.0.0', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, localAddress: '0.0.0.0' }] } }, /^bgp\.peers\[0\]\.localAddress: .*unspecified/],
    ['router ID 0.0.0.0', { ...minimal, bgp: { routerId: '0.0.0.0' } }, /^bgp\.routerId: .*unspecified/],
    ['router ID on loopback', { ...minimal, bgp: { routerId: '127.0.0.1' } }, /^bgp\.routerId: .*loopback/],
    ['router ID multicast', { ...minimal, bgp: { routerId: '239.1.1.1' } }, /^bgp\.routerId: .*multicast/],
    ['router ID broadcast', { ...minimal, bgp: { routerId: '255.255.255.255' } }, /^bgp\.routerId: .*broadcast/],
    ['cluster ASN AS_TRANS', { ...minimal, cluster: { ...minimal.cluster, asn: 23456 } }, /^cluster\.asn: 23456 is AS_TRANS/],
    ['peer ASN AS_TRANS', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 23456 }] } }, /^bgp\.peers\[0\]\.asn: 23456 is AS_TRANS/],
    ['pod range 0.0.0.0/0', { ...minimal, cluster: { podRanges: ['0.0.0.0/0'] } }, /^cluster\.podRanges\[0\]: .*every address/],
    ['accept range ::/0', { ...minimal, cluster: { ...minimal.cluster, extraAcceptRanges: ['::/0'] } }, /^cluster\.extraAcceptRanges\[0\]: .*every address/],
    ['non-masquerade range 0.0.0.0/0', { ...minimal, cluster: { ...minimal.cluster, nonMasqueradeCIDRs: ['10.1.2.3/0'] } }, /^cluster\.nonMasqueradeCIDRs\[0\]: .*every address/],
    ['peer inside the pod ranges', { ...minimal, bgp: { peers: [{ address: '10.244.3.7', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: inside cluster\.podRanges\[0\]/],
    ['v6 peer inside the pod ranges', { ...minimal, bgp: { peers: [{ address: 'fd00:10:244::9', asn: 65000 }] } }, /^bgp\.peers\[0\]\.address: inside cluster\.podRanges\[1\]/],
    ['metrics address a host name', { ...minimal, metrics: { address: 'metrics.example:9476' } }, /^metrics\.address:/],
    ['metrics address without a port', { ...minimal, metrics: { address: '127.0.0.1' } }, /^metrics\.address:/],
    ['metrics address port out of range', { ...minimal, metrics: { address: '127.0.0.1:70000' } }, /^metrics\.address:/],
    ['empty CNI conf dir', { ...minimal, cni: { confDir: '' } }, /^cni\.confDir: must be an absolute path/],
    ['relative CNI conf dir', { ...minimal, cni: { confDir: 'etc/cni/net.d' } }, /^cni\.confDir: must be an absolute path/],
    ['empty IPAM data dir', { ...minimal, cni: { ipamDataDir: '' } }, /^cni\.ipamDataDir: must be an absolute path/],
    ['relative IPAM data dir', { ...minimal, cni: { ipamDataDir: './ipam' } }, /^cni\.ipamDataDir: must be an absolute path/],
    ['GTSM with eBGP multihop', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, ttlSecurity: true, ebgpMultihopTtl: 2 }] } }, /^bgp\.peers\[0\]\.ttlSecurity: GTSM cannot be combined with ebgpMultihopTtl/],
    ['mesh password file outside the password directory', { ...minimal, bgp: { meshPasswordFile: '/etc/shadow' } }, /^bgp\.meshPasswordFile: must be inside bgp\.passwordDir/],
    ['relative password directory', { ...minimal, bgp: { passwordDir: 'secrets' } }, /^bgp\.passwordDir: must be an absolute path/],
    ['password file outside the password directory', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, passwordFile: '/var/run/secrets/kubernetes.io/serviceaccount/token' }] } }, /^bgp\.peers\[0\]\.passwordFile: must be inside bgp\.passwordDir \(\/etc\/podroute-secrets\)/],
    ['LoadBalancer pools with one name', { ...minimal, services: { loadBalancerPools: [{ name: 'a', cidrs: ['192.0.2.0/28'] }, { name: 'a', cidrs: ['198.51.100.0/28'] }] } }, /^services\.loadBalancerPools\[1\]\.name: a is also the name of services\.loadBalancerPools\[0\]/],
    ['LoadBalancer pools that overlap', { ...minimal, services: { loadBalancerPools: [{ name: 'a', cidrs: ['192.0.2.0/28'] }, { name: 'b', cidrs: ['192.0.2.8/29'] }] } }, /^services\.loadBalancerPools\[1\]\.cidrs\[0\]: 192\.0\.2\.8\/29 overlaps services\.loadBalancerPools\[0\]\.cidrs\[0\]/],
    ['a LoadBalancer pool inside the pod ranges', { ...minimal, services: { loadBalancerPools: [{ name: 'a', cidrs: ['fd00:10:244:1::/120'] }] } }, /^services\.loadBalancerPools\[0\]\.cidrs\[0\]: .* overlaps cluster\.podRanges\[1\]/],
    ['a LoadBalancer pool of every address', { ...minimal, services: { loadBalancerPools: [{ name: 'a', cidrs: ['0.0.0.0/0'] }] } }, /^services\.loadBalancerPools\[0\]\.cidrs\[0\]: .*every address/],
    ['a LoadBalancer pool name that is no DNS label', { ...minimal, services: { loadBalancerPools: [{ name: 'Pool_A', cidrs: ['192.0.2.0/28'] }] } }, /^services\.loadBalancerPools\[0\]\.name: a DNS label/],
    ['a LoadBalancer pool without addresses', { ...minimal, services: { loadBalancerPools: [{ name: 'a', cidrs: [] }] } }, /^services\.loadBalancerPools\[0\]\.cidrs:/],
    ['an external-IP range inside the pod ranges', { ...minimal, services: { externalIPRanges: ['10.244.8.0/24'] } }, /^services\.externalIPRanges\[0\]: 10\.244\.8\.0\/24 overlaps cluster\.podRanges\[0\]/],
    ['a ClusterIP range of every address', { ...minimal, services: { clusterIPRanges: ['::/0'] } }, /^services\.clusterIPRanges\[0\]: .*every address/],
    ['password file escaping the password directory', { ...minimal, bgp: { peers: [{ address: '10.0.0.1', asn: 65000, passwordFile: '../../dev/zero' }] } }, /^bgp\.peers\[0\]\.passwordFile: must be inside/],
  ];
  for (const [what, input, expected] of bad) {
    it(`names the key for: ${what}`, () => {
      const problems = problemsOf(input);
      expect(problems.some((p) => expected.test(p)), problems.join('\n')).to.equal(true);
    });
  }

  it('reads LoadBalancer pools: canonical CIDRs of both families, automatic assignment unless turned off', () => {
    const config = parseAgentConfig({
      ...minimal,
      services: { loadBalancerPools: [{ name: 'public', cidrs: ['192.0.2.7/28', '2001:db8:5::/120'] }, { name: 'team-a', cidrs: ['198.51.100.0/29'], autoAssign: false, namespaces: ['a'], serviceSelector: { matchLabels: { tier: 'web' } } }] },
    });
    expect(config.services.loadBalancerPools).to.deep.equal([
      { name: 'public', cidrs: ['192.0.2.0/28', '2001:db8:5::/120'], autoAssign: true },
      { name: 'team-a', cidrs: ['198.51.100.0/29'], autoAssign: false, namespaces: ['a'], serviceSelector: { matchLabels: { tier: 'web' } } },
    ]);
    expect(parseAgentConfig(minimal).services).to.deep.equal({ loadBalancerPools: [], externalIPRanges: [], clusterIPRanges: [] });
  });

  it('accepts the edges of what it refuses', () => {
    const config = parseAgentConfig({
      ...minimal,
      routes: { protocol: 5, resyncSeconds: 2_147_483 },
      bgp: { holdTime: 0, keepaliveInterval: 0, routerId: '10.0.0.1', peers: [{ address: '10.0.0.1', asn: 23457, holdTime: 3, keepaliveInterval: 1 }] },
      metrics: { address: '[::1]:9476' },
      cni: { confDir: '/etc/cni/net.d', ipamDataDir: '/var/lib/cni/networks' },
    });
    expect(config.routes.protocol).to.equal(5);
    expect(parseAgentConfig({ ...minimal, metrics: { address: '' } }).metrics.address).to.equal('');
    expect(parseAgentConfig({ ...minimal, bgp: { holdTime: 0 } }).bgp.holdTime, 'hold time 0 with the default keepalive').to.equal(0);
  });

  describe('loading', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'podroute-config-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('layers flags over the environment over the file', async () => {
      const file = path.join(dir, 'config.yaml');
      await writeFile(file, 'nodeName: from-file\ncluster:\n  podRanges: [10.244.0.0/16]\ncni:\n  confDir: /file/net.d\n');
      const config = await loadAgentConfig(file, { nodeName: 'from-env' }, { nodeName: 'from-flag', cniConfDir: '/flag/net.d' });
      expect(config.nodeName).to.equal('from-flag');
      expect(config.cni.confDir).to.equal('/flag/net.d');
    });

    it('reports malformed YAML and a non-mapping top level with the file name', async () => {
      const broken = path.join(dir, 'broken.yaml');
      await writeFile(broken, 'cluster: [unclosed\n');
      await expectConfigError(loadAgentConfig(broken), /broken\.yaml: not valid YAML/);
      const list = path.join(dir, 'list.yaml');
      await writeFile(list, '- a\n- b\n');
      await expectConfigError(loadAgentConfig(list), /list\.yaml: the top level must be a mapping/);
      await expectConfigError(loadAgentConfig(path.join(dir, 'missing.yaml')), /missing\.yaml: ENOENT/);
    });

    it('reports a section of the wrong type instead of overriding into it', async () => {
      const file = path.join(dir, 'wrong-section.yaml');
      await writeFile(file, 'cluster:\n  podRanges: [10.244.0.0/16]\ncni: 7\n');
      await expectConfigError(loadAgentConfig(file, { cniConfDir: '/x' }), /^cni: Expected object/m);
    });
  });
});

async function expectConfigError(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).problems.join('\n')).to.match(pattern);
    return;
  }
  throw new Error('expected a ConfigError');
}
