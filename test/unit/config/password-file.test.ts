// Password files are named by the config and by Node annotations and read as root: only regular files inside the
// secrets directory, never a device, a FIFO or a link out of it, at most a TCP-MD5 key's 80 bytes, never empty.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { execa } from 'execa';
import { passwordFilePath, readPasswordFile, readPasswordFiles, MAX_PASSWORD_BYTES, PasswordFileError } from '../../../src/config/password-file.js';

describe('password files', function () {
  this.timeout(10_000);
  let root: string;
  let dir: string;

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'podroute-secrets-'));
    dir = path.join(root, 'secrets');
    // The layout of a mounted Secret: each key a symlink into a timestamped directory, through ..data.
    await mkdir(path.join(dir, '..2026_01_01'), { recursive: true });
    await symlink('..2026_01_01', path.join(dir, '..data'));
    await writeFile(path.join(dir, '..2026_01_01', 'tor1'), 's3cret\n');
    await symlink('..data/tor1', path.join(dir, 'tor1'));
    await writeFile(path.join(dir, 'plain'), 'plain-key');
    await writeFile(path.join(dir, 'empty'), '');
    await writeFile(path.join(dir, 'blank'), '  \n\t\n');
    await writeFile(path.join(dir, 'max'), `${'k'.repeat(MAX_PASSWORD_BYTES)}\n`);
    await writeFile(path.join(dir, 'long'), 'k'.repeat(MAX_PASSWORD_BYTES + 1));
    await writeFile(path.join(dir, 'huge'), 'k'.repeat(100_000));
    await writeFile(path.join(root, 'outside'), 'not-a-secret-for-bgp');
    await symlink(path.join(root, 'outside'), path.join(dir, 'escape'));
    await symlink('/dev/zero', path.join(dir, 'zero'));
    await mkdir(path.join(dir, 'subdir'));
    await execa('mkfifo', [path.join(dir, 'fifo')]);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function codeOf(file: string): Promise<string | undefined> {
    try {
      await readPasswordFile(dir, file);
      return undefined;
    } catch (err) {
      expect(err).to.be.instanceOf(PasswordFileError);
      return (err as PasswordFileError).code;
    }
  }

  it('reads a key inside the directory, by absolute path or by name, through a mounted Secret\'s links', async () => {
    expect(await readPasswordFile(dir, path.join(dir, 'tor1'))).to.equal('s3cret');
    expect(await readPasswordFile(dir, 'tor1')).to.equal('s3cret');
    expect(await readPasswordFile(dir, 'plain')).to.equal('plain-key');
    expect(await readPasswordFile(dir, 'max')).to.equal('k'.repeat(MAX_PASSWORD_BYTES));
  });

  it('refuses paths outside the directory, and links that lead out of it', async () => {
    expect(await codeOf('/dev/zero')).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(await codeOf('/var/run/secrets/kubernetes.io/serviceaccount/token')).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(await codeOf(path.join(root, 'outside'))).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(await codeOf('../outside')).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(await codeOf(`${dir}/../outside`)).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(await codeOf(dir)).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(await codeOf('escape')).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(await codeOf('zero')).to.equal('PASSWORD_FILE_OUTSIDE_DIR');
    expect(passwordFilePath('relative/dir', 'tor1')).to.equal(undefined);
  });

  it('never blocks on a FIFO and reads no device or directory', async () => {
    const started = Date.now();
    expect(await codeOf('fifo')).to.equal('PASSWORD_FILE_NOT_REGULAR');
    expect(Date.now() - started).to.be.below(2_000);
    expect(await codeOf('subdir')).to.equal('PASSWORD_FILE_NOT_REGULAR');
    expect(await codeOf('/dev/zero'), 'a device even inside /dev').to.not.equal(undefined);
    expect(await readPasswordFile('/dev', 'zero').catch((err: PasswordFileError) => err.code)).to.equal('PASSWORD_FILE_NOT_REGULAR');
  });

  it('refuses a key longer than TCP-MD5 takes, and a huge file unread', async () => {
    expect(await codeOf('long')).to.equal('PASSWORD_FILE_TOO_LONG');
    expect(await codeOf('huge')).to.equal('PASSWORD_FILE_TOO_LONG');
  });

  it('refuses an empty or blank file: the peer would get no TCP-MD5 at all', async () => {
    expect(await codeOf('empty')).to.equal('PASSWORD_FILE_EMPTY');
    expect(await codeOf('blank')).to.equal('PASSWORD_FILE_EMPTY');
  });

  it('reports a missing file', async () => {
    expect(await codeOf('missing')).to.equal('PASSWORD_FILE_UNREADABLE');
  });

  it('reads many files at once, with a reason for each one it could not read', async () => {
    const { secrets, problems } = await readPasswordFiles(dir, ['tor1', undefined, 'tor1', 'empty', '/dev/zero']);
    expect([...secrets]).to.deep.equal([['tor1', 's3cret']]);
    expect([...problems.keys()]).to.deep.equal(['empty', '/dev/zero']);
    expect(problems.get('empty')).to.match(/empty/);
  });
});
