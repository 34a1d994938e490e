// Binding pod veths to their addresses from the CNI result cache: the record parser, the planner, the reader.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import { CniResultCacheReader, parseCniCacheRecord, planSourceBindings } from '../../../src/policy/source-binding.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

/** A record as libcni writes it after the bridge + host-local + portmap chain. */
function record(containerId: string, veth: string, ips: string[], network = 'podroute'): string {
  return JSON.stringify({
    kind: 'cniCacheV1',
    containerId,
    config: Buffer.from('{}').toString('base64'),
    ifName: 'eth0',
    networkName: network,
    netns: `/run/netns/${containerId}`,
    cniArgs: [['K8S_POD_NAMESPACE', 'x'], ['K8S_POD_NAME', containerId]],
    result: {
      cniVersion: '1.0.0',
      interfaces: [
        { name: 'podroute0', mac: '0a:58:0a:01:00:01' },
        { name: veth, mac: '0a:58:0a:01:00:02' },
        { name: 'eth0', mac: '0a:58:0a:01:00:03', sandbox: `/run/netns/${containerId}` },
      ],
      ips: ips.map((address) => ({ address, gateway: familyOf(address) === 'ipv6' ? 'fd01:1::1' : '10.1.0.1', interface: 2 })),
      routes: [{ dst: '0.0.0.0/0' }],
      dns: {},
    },
  });
}

describe('pod source binding (CNI result cache)', () => {
  it('reads the host-side veth and the sandbox addresses of a record, canonical and without prefix length', () => {
    expect(parseCniCacheRecord(record('c1', 'veth1a2b3c4d', ['10.1.0.5/24', 'fd01:1:0::05/64']))).to.deep.equal({
      network: 'podroute',
      containerId: 'c1',
      hostInterfaces: ['podroute0', 'veth1a2b3c4d'],
      addresses: ['10.1.0.5', 'fd01:1::5'],
    });
    // An address given to an interface outside the sandbox is not the pod's.
    const odd = JSON.parse(record('c2', 'veth0', ['10.1.0.6/24'])) as { result: { ips: { interface: number }[] } };
    odd.result.ips[0]!.interface = 1;
    expect(parseCniCacheRecord(JSON.stringify(odd))?.addresses).to.deep.equal([]);
    for (const junk of ['', '{', '[]', JSON.stringify({ kind: 'other' }), JSON.stringify({ kind: 'cniCacheV1', containerId: 'c', networkName: 'n' })]) {
      expect(parseCniCacheRecord(junk), junk).to.equal(null);
    }
  });

  it('binds each veth of our network to its addresses; an attachment whose veth cannot be told stays unbound', () => {
    const parse = (text: string) => parseCniCacheRecord(text)!;
    const { bindings, problems } = planSourceBindings(
      [
        parse(record('c2', 'vethbbbb', ['10.1.0.6/24'])),
        parse(record('c1', 'vethaaaa', ['10.1.0.5/24', 'fd01:1::5/64'])),
        parse(record('c3', 'vethcccc', ['10.9.0.5/24'], 'other-network')),
        { network: 'podroute', containerId: 'c4', hostInterfaces: ['podroute0'], addresses: ['10.1.0.7'] },
        { network: 'podroute', containerId: 'c5', hostInterfaces: ['podroute0', 'veth"; x'], addresses: ['10.1.0.8'] },
      ],
      'podroute',
      'podroute0',
    );
    expect(bindings).to.deep.equal([
      { interface: 'vethaaaa', addresses: ['10.1.0.5', 'fd01:1::5'] },
      { interface: 'vethbbbb', addresses: ['10.1.0.6'] },
    ]);
    expect(problems.map((p) => p.containerId)).to.deep.equal(['c4', 'c5']);
  });

  it('the reader reads new records, forgets removed ones, and skips what is not a regular file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'podroute-cni-cache-'));
    try {
      const reader = new CniResultCacheReader(dir);
      expect(await reader.read(), 'no results directory yet').to.deep.equal([]);
      const results = path.join(dir, 'results');
      mkdirSync(results);
      writeFileSync(path.join(results, 'podroute-c1-eth0'), record('c1', 'vethaaaa', ['10.1.0.5/24']));
      writeFileSync(path.join(results, 'podroute-c2-eth0'), record('c2', 'vethbbbb', ['10.1.0.6/24']).slice(0, 40));
      execFileSync('mkfifo', [path.join(results, 'podroute-fifo-eth0')]);
      expect((await reader.read()).map((a) => a.containerId)).to.deep.equal(['c1']);
      // The half-written record is read again once whole.
      writeFileSync(path.join(results, 'podroute-c2-eth0'), record('c2', 'vethbbbb', ['10.1.0.6/24']));
      expect((await reader.read()).map((a) => a.containerId).sort()).to.deep.equal(['c1', 'c2']);
      unlinkSync(path.join(results, 'podroute-c1-eth0'));
      expect((await reader.read()).map((a) => a.containerId)).to.deep.equal(['c2']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
