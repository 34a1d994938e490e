// `podroute agent` refuses a bad configuration before touching anything: a clear message naming the key, exit 2.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { execa } from 'execa';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src', 'cli', 'main.js');

describe('podroute agent --check-config', function () {
  this.timeout(30_000); // each case starts a Node.js process; the machine may be busy
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'podroute-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function run(config: string, ...args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const file = path.join(dir, 'config.yaml');
    await writeFile(file, config);
    const result = await execa(process.execPath, [cli, 'agent', '--check-config', '-c', file, ...args], { reject: false, env: { NODE_NAME: '' } });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
  }

  it('prints the configuration with defaults and exits 0 when it is valid', async () => {
    const result = await run('cluster:\n  podRanges: [10.244.0.0/16]\n', '--node-name', 'n1');
    expect(result.exitCode).to.equal(0);
    expect(JSON.parse(result.stdout)).to.deep.include({ nodeName: 'n1' });
  });

  it('names every bad key and exits 2', async () => {
    const result = await run('cluster:\n  podRanges: [10.244.0.0/99]\nbgp:\n  mesh: sometimes\n  peers: [{address: 10.0.0.1, asn: -1}]\nbogus: 1\n', '--node-name', 'n1');
    expect(result.exitCode).to.equal(2);
    expect(result.stderr).to.include('cluster.podRanges[0]: not a CIDR');
    expect(result.stderr).to.include('bgp.mesh:');
    expect(result.stderr).to.include('bgp.peers[0].asn:');
    expect(result.stderr).to.include('unknown key(s) "bogus"');
    expect(result.stdout).to.equal('');
  });

  it('requires a node name', async () => {
    const result = await run('cluster:\n  podRanges: [10.244.0.0/16]\n');
    expect(result.exitCode).to.equal(2);
    expect(result.stderr).to.include('nodeName: required');
  });

  it('refuses a password file that is missing, empty or outside bgp.passwordDir', async () => {
    const secrets = path.join(dir, 'secrets');
    await mkdir(secrets, { recursive: true });
    await writeFile(path.join(secrets, 'tor1'), 's3cret\n');
    await writeFile(path.join(secrets, 'blank'), '\n');
    const peers = (files: string[]): string => files.map((f, i) => `    - {address: 10.0.0.${i + 1}, asn: 65000, passwordFile: ${f}}\n`).join('');
    const head = `cluster:\n  podRanges: [10.244.0.0/16]\nbgp:\n  passwordDir: ${secrets}\n  peers:\n`;
    const good = await run(head + peers(['tor1', `${secrets}/tor1`]), '--node-name', 'n1');
    expect(good.exitCode, good.stderr).to.equal(0);
    const bad = await run(head + peers(['tor1', 'missing', 'blank']), '--node-name', 'n1');
    expect(bad.exitCode).to.equal(2);
    expect(bad.stderr).to.include('bgp.peers[1].passwordFile:');
    expect(bad.stderr).to.include('bgp.peers[2].passwordFile:');
    expect(bad.stderr).to.not.include('bgp.peers[0]');
    expect(bad.stderr).to.not.include('s3cret');
    const mesh = await run(`cluster:\n  podRanges: [10.244.0.0/16]\nbgp:\n  passwordDir: ${secrets}\n  meshPasswordFile: mesh\n`, '--node-name', 'n1');
    expect(mesh.exitCode).to.equal(2);
    expect(mesh.stderr).to.include('bgp.meshPasswordFile:');
    const outside = await run(head + peers(['/etc/hostname']), '--node-name', 'n1');
    expect(outside.exitCode).to.equal(2);
    expect(outside.stderr).to.include('bgp.peers[0].passwordFile: must be inside bgp.passwordDir');
  });

  it('refuses an invalid flag value before reading anything else', async () => {
    const result = await run('cluster:\n  podRanges: [10.244.0.0/16]\n', '--node-name', 'n1', '--gobgp-target', '0.0.0.0:50051');
    expect(result.exitCode).to.equal(2);
    expect(result.stderr).to.include('gobgp.target: must be unix');
  });
});
