// Node set-up against the real kernel and the real CNI plugins, in network namespaces of our own (h6node-*).
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { execa } from 'execa';
import { writeCniConfig } from '../../../src/node/cni.js';
import { nodeSysctls, sysctlPath } from '../../../src/node/sysctl.js';
import { createNetns, deleteNetns, inNs, ProcessGroup } from '../nat/netns.js';
import { pollUntil } from '../../poll.js';
import { testLabName } from '../lab/leftovers.js';

const NS_PREFIX = testLabName('h6node', 'node');
const NODE_A = `${NS_PREFIX}-a`;
const NODE_B = `${NS_PREFIX}-b`;
const POD = `${NS_PREFIX}-pod`;
const APPLY = fileURLToPath(new URL('./apply-sysctls.js', import.meta.url));
const ECHO = fileURLToPath(new URL('../nat/peer-echo.js', import.meta.url));
const KEYS = nodeSysctls().map((s) => s.key);

async function readInNs(netns: string, key: string): Promise<string> {
  return (await inNs(netns, ['cat', sysctlPath(key)])).trim();
}

async function hostValues(): Promise<string[]> {
  return Promise.all(KEYS.map(async (key) => (await readFile(sysctlPath(key), 'utf8')).trim()));
}

interface ApplyOutput {
  writes?: Array<{ key: string; from: string; to: string }>;
  loadedBrNetfilter?: boolean;
  error?: { code: string; message: string };
}

async function applyIn(netns: string): Promise<ApplyOutput> {
  const result = await execa('ip', ['netns', 'exec', netns, 'node', APPLY], { reject: false });
  return JSON.parse(String(result.stdout)) as ApplyOutput;
}

describe('lab: node sysctls in a node netns (h6node-*)', function () {
  this.timeout(60_000);
  before(() => createNetns([NODE_A, NODE_B]));
  after(() => deleteNetns([NODE_A, NODE_B]));

  it('sets forwarding and bridge netfilter in its own netns only, writing only what differs', async () => {
    const host = await hostValues();
    // A fresh netns copies the host's IPv4 forwarding (on wherever a container runtime ran), and bridge-nf-call-*
    // start at 1 on this kernel: turn forwarding and one of them off to see them fixed.
    for (const ns of [NODE_A, NODE_B]) {
      await inNs(ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0', 'net.bridge.bridge-nf-call-iptables=0']);
    }
    expect(await readInNs(NODE_A, 'net.ipv4.ip_forward')).to.equal('0');

    const first = await applyIn(NODE_A);
    expect(first.error).to.equal(undefined);
    expect(first.writes?.map((w) => w.key)).to.deep.equal([
      'net.ipv4.ip_forward',
      'net.bridge.bridge-nf-call-iptables',
      'net.ipv6.conf.all.forwarding',
    ]);
    for (const key of KEYS) expect(await readInNs(NODE_A, key), key).to.equal('1');

    const second = await applyIn(NODE_A);
    expect(second.writes).to.deep.equal([]);

    // Per-netns: the other netns and the host are untouched.
    expect(await readInNs(NODE_B, 'net.ipv4.ip_forward')).to.equal('0');
    expect(await readInNs(NODE_B, 'net.bridge.bridge-nf-call-iptables')).to.equal('0');
    expect(await hostValues()).to.deep.equal(host);
  });
});

interface CniResult {
  ips?: Array<{ address: string; gateway?: string }>;
  [key: string]: unknown;
}

/** Runs one CNI plugin the way a runtime does: config on stdin, parameters in the environment. */
async function cniPlugin(
  command: 'ADD' | 'DEL',
  plugin: Record<string, unknown>,
  conflist: { name: string; cniVersion: string },
  prevResult: CniResult | undefined,
  runtimeConfig: Record<string, unknown>,
): Promise<CniResult | undefined> {
  const config = {
    ...plugin,
    name: conflist.name,
    cniVersion: conflist.cniVersion,
    ...(prevResult === undefined ? {} : { prevResult }),
    ...(plugin.capabilities === undefined ? {} : { runtimeConfig }),
  };
  const result = await execa('ip', ['netns', 'exec', NODE_A, `/usr/lib/cni/${String(plugin.type)}`], {
    reject: false,
    input: JSON.stringify(config),
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'h6test',
      CNI_NETNS: `/run/netns/${POD}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/usr/lib/cni',
    },
  });
  if (result.exitCode !== 0) {
    throw new Error(`CNI ${command} ${String(plugin.type)} exited ${String(result.exitCode)}: ${String(result.stdout)} ${String(result.stderr)}`);
  }
  return command === 'ADD' ? (JSON.parse(String(result.stdout)) as CniResult) : undefined;
}

describe('lab: the CNI conflist works with the real bridge, host-local and portmap plugins (h6node-*)', function () {
  this.timeout(90_000);
  const servers = new ProcessGroup();
  let dir = '';

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'h6-cni-lab-'));
    await createNetns([NODE_A, POD]);
  });
  after(async () => {
    await servers.stopAll();
    await deleteNetns([NODE_A, POD]);
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('ADD gives the pod an address of each podCIDR behind the bridge gateway, portmap forwards, DEL cleans up', async () => {
    const confDir = path.join(dir, 'net.d');
    const ipamDir = path.join(dir, 'ipam');
    const input = {
      podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
      bridgeName: 'h6br0',
      networkName: 'h6podroute',
      ipamDataDir: ipamDir,
    };
    expect(await writeCniConfig({ confDir, input })).to.equal(true);
    expect(await writeCniConfig({ confDir, input })).to.equal(false);
    const conflist = JSON.parse(await readFile(path.join(confDir, '10-podroute.conflist'), 'utf8')) as {
      name: string;
      cniVersion: string;
      plugins: Array<Record<string, unknown>>;
    };
    const runtimeConfig = { portMappings: [{ hostPort: 18080, containerPort: 8080, protocol: 'tcp' }] };

    let result: CniResult | undefined;
    for (const plugin of conflist.plugins) result = await cniPlugin('ADD', plugin, conflist, result, runtimeConfig);
    const addresses = result?.ips?.map((ip) => ip.address).sort();
    expect(addresses).to.deep.equal(['10.244.1.2/24', 'fd00:10:244:1::2/64']);
    expect(result?.ips?.map((ip) => ip.gateway).sort()).to.deep.equal(['10.244.1.1', 'fd00:10:244:1::1']);

    const bridge = await inNs(NODE_A, ['ip', '-o', 'addr', 'show', 'dev', 'h6br0']);
    expect(bridge).to.contain('inet 10.244.1.1/24').and.to.contain('inet6 fd00:10:244:1::1/64');
    expect(await inNs(POD, ['ip', '-o', 'addr', 'show', 'dev', 'eth0'])).to.contain('inet 10.244.1.2/24');
    expect(await inNs(POD, ['ip', 'route', 'show', 'default'])).to.contain('via 10.244.1.1');
    expect(await inNs(POD, ['ip', '-6', 'route', 'show', 'default'])).to.contain('via fd00:10:244:1::1');
    for (const gateway of ['10.244.1.1', 'fd00:10:244:1::1']) {
      await pollUntil(`pod pings ${gateway}`, async () => {
        await inNs(POD, ['ping', '-c', '1', '-W', '1', gateway]);
        return true;
      }, { timeoutMs: 15_000 });
    }

    // portmap: the node's hostPort reaches the pod's containerPort.
    await servers.start(['ip', 'netns', 'exec', POD, 'node', ECHO, 'serve', '8080', '10.244.1.2'], 'ready');
    const seen = await pollUntil('hostPort answers', async () =>
      (await inNs(NODE_A, ['node', ECHO, 'probe', 'tcp', '10.244.1.1', '18080'])).trim(), { timeoutMs: 15_000 });
    expect(seen).to.equal('10.244.1.1');
    await servers.stopAll();

    for (const plugin of [...conflist.plugins].reverse()) await cniPlugin('DEL', plugin, conflist, result, runtimeConfig);
    expect(await inNs(POD, ['ip', '-o', 'link', 'show'])).to.not.contain('eth0');
    const leases = (await readdir(path.join(ipamDir, 'h6podroute'))).filter((f) => /^[0-9a-f.:]+$/.test(f));
    expect(leases).to.deep.equal([]);
    expect(await inNs(NODE_A, ['iptables', '-t', 'nat', '-S'])).to.not.contain('dport 18080');
  });
});
