import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { NodeSetupError } from '../../../src/node/errors.js';
import { applySysctls, nodeSysctls, planSysctls, sysctlPath } from '../../../src/node/sysctl.js';

// applySysctls against a /proc/sys-shaped directory tree (the real /proc/sys is exercised in test/lab/node).
async function fakeProcSys(values: Record<string, string>): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'h6-procsys-'));
  for (const [key, value] of Object.entries(values)) {
    const file = sysctlPath(key, root);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, value + '\n');
  }
  return root;
}

async function expectNodeSetupError(promise: Promise<unknown>, code: string, field: string): Promise<NodeSetupError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).to.be.instanceOf(NodeSetupError);
  expect((caught as NodeSetupError).code).to.equal(code);
  expect((caught as NodeSetupError).field).to.equal(field);
  return caught as NodeSetupError;
}

describe('node/sysctl', () => {
  const roots: string[] = [];
  after(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });

  it('nodeSysctls: forwarding and bridge netfilter per family', () => {
    expect(nodeSysctls().map((s) => `${s.key}=${s.value}`)).to.deep.equal([
      'net.ipv4.ip_forward=1',
      'net.bridge.bridge-nf-call-iptables=1',
      'net.ipv6.conf.all.forwarding=1',
      'net.bridge.bridge-nf-call-ip6tables=1',
    ]);
    expect(nodeSysctls({ ipv6: false }).map((s) => s.key)).to.deep.equal([
      'net.ipv4.ip_forward',
      'net.bridge.bridge-nf-call-iptables',
    ]);
  });

  it('sysctlPath maps dots to directories and refuses path tricks', () => {
    expect(sysctlPath('net.ipv4.ip_forward')).to.equal('/proc/sys/net/ipv4/ip_forward');
    expect(() => sysctlPath('net/../../etc/passwd')).to.throw(NodeSetupError);
    expect(() => sysctlPath('net..x')).to.throw(NodeSetupError);
  });

  it('planSysctls writes only what differs and reports missing keys', () => {
    const plan = planSysctls(nodeSysctls(), new Map([
      ['net.ipv4.ip_forward', '1'],
      ['net.bridge.bridge-nf-call-iptables', '0'],
      ['net.ipv6.conf.all.forwarding', '0\n'],
      ['net.bridge.bridge-nf-call-ip6tables', undefined],
    ]));
    expect(plan.writes).to.deep.equal([
      { key: 'net.bridge.bridge-nf-call-iptables', from: '0', to: '1' },
      { key: 'net.ipv6.conf.all.forwarding', from: '0', to: '1' },
    ]);
    expect(plan.missing).to.deep.equal(['net.bridge.bridge-nf-call-ip6tables']);
  });

  it('applySysctls writes the differing files, then nothing on a second run', async () => {
    const root = await fakeProcSys({
      'net.ipv4.ip_forward': '0',
      'net.ipv6.conf.all.forwarding': '1',
      'net.bridge.bridge-nf-call-iptables': '0',
      'net.bridge.bridge-nf-call-ip6tables': '0',
    });
    roots.push(root);
    const first = await applySysctls({ procSysDir: root, loadModule: () => Promise.reject(new Error('must not load')) });
    expect(first.writes.map((w) => w.key)).to.deep.equal([
      'net.ipv4.ip_forward',
      'net.bridge.bridge-nf-call-iptables',
      'net.bridge.bridge-nf-call-ip6tables',
    ]);
    expect(first.loadedBrNetfilter).to.equal(false);
    expect((await readFile(sysctlPath('net.ipv4.ip_forward', root), 'utf8')).trim()).to.equal('1');
    const second = await applySysctls({ procSysDir: root });
    expect(second.writes).to.deep.equal([]);
  });

  it('loads br_netfilter once when net/bridge is missing, and proceeds when it appears', async () => {
    const root = await fakeProcSys({ 'net.ipv4.ip_forward': '1', 'net.ipv6.conf.all.forwarding': '1' });
    roots.push(root);
    const loaded: string[] = [];
    const result = await applySysctls({
      procSysDir: root,
      loadModule: async (name) => {
        loaded.push(name);
        // What loading the module does to /proc/sys: the bridge keys appear (with the kernel's default).
        for (const key of ['net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables']) {
          await mkdir(path.dirname(sysctlPath(key, root)), { recursive: true });
          await writeFile(sysctlPath(key, root), '0\n');
        }
      },
    });
    expect(loaded).to.deep.equal(['br_netfilter']);
    expect(result.loadedBrNetfilter).to.equal(true);
    expect(result.writes).to.have.length(2);
  });

  it('a br_netfilter that cannot be loaded is a clear error, before any write', async () => {
    const root = await fakeProcSys({ 'net.ipv4.ip_forward': '0', 'net.ipv6.conf.all.forwarding': '0' });
    roots.push(root);
    const error = await expectNodeSetupError(
      applySysctls({ procSysDir: root, loadModule: () => Promise.reject(new Error('modprobe: FATAL: Module not found')) }),
      'BR_NETFILTER_UNAVAILABLE',
      'net.bridge',
    );
    expect(error.message).to.contain('modprobe br_netfilter').and.to.contain('Module not found');
    expect((await readFile(sysctlPath('net.ipv4.ip_forward', root), 'utf8')).trim()).to.equal('0');
    await expectNodeSetupError(
      applySysctls({ procSysDir: root, loadModule: () => Promise.resolve() }),
      'BR_NETFILTER_UNAVAILABLE',
      'net.bridge',
    );
  });

  it('a missing key (IPv6 disabled in the kernel) names the key and writes nothing', async () => {
    const root = await fakeProcSys({ 'net.ipv4.ip_forward': '0', 'net.bridge.bridge-nf-call-iptables': '0', 'net.bridge.bridge-nf-call-ip6tables': '1' });
    roots.push(root);
    await expectNodeSetupError(applySysctls({ procSysDir: root }), 'SYSCTL_MISSING', 'net.ipv6.conf.all.forwarding');
    expect((await readFile(sysctlPath('net.ipv4.ip_forward', root), 'utf8')).trim()).to.equal('0');
    const v4only = await applySysctls({ procSysDir: root, settings: nodeSysctls({ ipv6: false }) });
    expect(v4only.writes).to.have.length(2);
  });
});
