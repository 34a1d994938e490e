import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { type CniConfigInput, gatewayOf, renderCniConflist, writeCniConfig } from '../../../src/node/cni.js';
import { NodeSetupError } from '../../../src/node/errors.js';

const INPUT: CniConfigInput = {
  podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
  bridgeName: 'podroute0',
  networkName: 'podroute',
};

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(NodeSetupError);
    expect((error as NodeSetupError).code).to.equal('CNI_BAD_CONFIG');
    return (error as NodeSetupError).field;
  }
  throw new Error('expected an error');
}

describe('node/cni', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('gatewayOf: the first address of the network, host bits ignored', () => {
    expect(gatewayOf('10.244.1.0/24')).to.equal('10.244.1.1');
    expect(gatewayOf('10.244.1.77/24')).to.equal('10.244.1.1');
    expect(gatewayOf('fd00:10:244:1::/64')).to.equal('fd00:10:244:1::1');
    expect(gatewayOf('10.244.1.252/30')).to.equal('10.244.1.253');
    expect(gatewayOf('fd00:10:244:1::ff00/120')).to.equal('fd00:10:244:1::ff01');
  });

  it('renders bridge + host-local (both families, one range set each) + portmap', () => {
    const conf = JSON.parse(renderCniConflist({ ...INPUT, mtu: 1450, ipamDataDir: '/run/x/ipam' }));
    expect(conf.cniVersion).to.equal('1.0.0');
    expect(conf.name).to.equal('podroute');
    const [bridge, portmap] = conf.plugins;
    expect(bridge).to.include({ type: 'bridge', bridge: 'podroute0', isGateway: true, ipMasq: false, mtu: 1450 });
    expect(bridge.ipam.ranges).to.deep.equal([
      [{ subnet: '10.244.1.0/24', gateway: '10.244.1.1' }],
      [{ subnet: 'fd00:10:244:1::/64', gateway: 'fd00:10:244:1::1' }],
    ]);
    expect(bridge.ipam.routes).to.deep.equal([{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
    expect(bridge.ipam.dataDir).to.equal('/run/x/ipam');
    expect(portmap).to.deep.equal({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
    const v6only = JSON.parse(renderCniConflist({ ...INPUT, podCIDRs: ['fd00:10:244:1::/64'] }));
    expect(v6only.plugins[0].ipam.routes).to.deep.equal([{ dst: '::/0' }]);
  });

  it('rejects bad input naming the field', () => {
    expect(fieldOf(() => renderCniConflist({ ...INPUT, podCIDRs: [] }))).to.equal('podCIDRs');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, podCIDRs: ['10.244.1.0/24', 'nope'] }))).to.equal('podCIDRs[1]');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, podCIDRs: ['10.244.1.0/24', '10.244.2.0/24'] }))).to.equal('podCIDRs[1]');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, podCIDRs: ['10.244.1.0/31'] }))).to.equal('podCIDRs[0]');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, podCIDRs: ['fd00::/127'] }))).to.equal('podCIDRs[0]');
    // The agent's one prefix parser: a two-part or octal IPv4 CIDR (which ipaddr.js read) is no CIDR.
    expect(fieldOf(() => renderCniConflist({ ...INPUT, podCIDRs: ['10.244/16'] }))).to.equal('podCIDRs[0]');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, podCIDRs: ['010.244.1.0/24'] }))).to.equal('podCIDRs[0]');
    expect(() => gatewayOf('10.244/16')).to.throw(NodeSetupError, 'cidr: "10.244/16" is not a CIDR');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, bridgeName: 'a-very-long-bridge-name' }))).to.equal('bridgeName');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, networkName: '' }))).to.equal('networkName');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, mtu: 20 }))).to.equal('mtu');
    expect(fieldOf(() => renderCniConflist({ ...INPUT, ipamDataDir: 'relative' }))).to.equal('ipamDataDir');
  });

  it('writeCniConfig creates the dir, writes once, rewrites only on change, leaves no temp file', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'h6-cni-'));
    dirs.push(base);
    const confDir = path.join(base, 'etc', 'cni', 'net.d');
    expect(await writeCniConfig({ confDir, input: INPUT })).to.equal(true);
    const file = path.join(confDir, '10-podroute.conflist');
    expect(await readFile(file, 'utf8')).to.equal(renderCniConflist(INPUT));
    expect(await writeCniConfig({ confDir, input: INPUT })).to.equal(false);
    expect(await writeCniConfig({ confDir, input: { ...INPUT, mtu: 1400 } })).to.equal(true);
    expect(JSON.parse(await readFile(file, 'utf8')).plugins[0].mtu).to.equal(1400);
    // Someone edited the file: it is put back.
    await writeFile(file, '{}');
    expect(await writeCniConfig({ confDir, input: { ...INPUT, mtu: 1400 } })).to.equal(true);
    expect(await writeCniConfig({ confDir, fileName: '20-other.conflist', input: INPUT })).to.equal(true);
    expect((await readdir(confDir)).sort()).to.deep.equal(['10-podroute.conflist', '20-other.conflist']);
  });

  it('writeCniConfig refuses a bad file name or bad input without touching the dir', async () => {
    const confDir = await mkdtemp(path.join(os.tmpdir(), 'h6-cni-'));
    dirs.push(confDir);
    for (const fileName of ['../escape.conflist', '.hidden.conflist', 'podroute.txt']) {
      let caught: unknown;
      try {
        await writeCniConfig({ confDir, fileName, input: INPUT });
      } catch (error) {
        caught = error;
      }
      expect((caught as NodeSetupError).field, fileName).to.equal('fileName');
    }
    let caught: unknown;
    try {
      await writeCniConfig({ confDir, input: { ...INPUT, podCIDRs: [] } });
    } catch (error) {
      caught = error;
    }
    expect((caught as NodeSetupError).code).to.equal('CNI_BAD_CONFIG');
    expect(await readdir(confDir)).to.deep.equal([]);
  });

  it('writeCniConfig fails clearly when the dir cannot be created', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'h6-cni-'));
    dirs.push(base);
    await writeFile(path.join(base, 'file'), 'x');
    let caught: unknown;
    try {
      await writeCniConfig({ confDir: path.join(base, 'file', 'net.d'), input: INPUT });
    } catch (error) {
      caught = error;
    }
    expect((caught as NodeSetupError).code).to.equal('CNI_WRITE_FAILED');
  });
});
