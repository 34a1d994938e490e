// The one command runner: what the policy applier and the masquerade reconciler rely on, with plain sh.
import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { CommandFailedError, localRunner, netnsRunner, type CommandRunner, type RunOptions } from '../../../src/host/command.js';

async function failure(call: Promise<unknown>): Promise<CommandFailedError> {
  try {
    await call;
  } catch (err) {
    expect(err).to.be.instanceOf(CommandFailedError);
    return err as CommandFailedError;
  }
  throw new Error('expected the command to fail');
}

describe('host command runner', () => {
  const runner = localRunner();

  it('returns stdout as it is, input given on stdin', async () => {
    expect(await runner.run(['sh', '-c', 'cat; echo'], { input: 'x\n' })).to.equal('x\n\n');
  });

  it('returns the SHA-1 of stdout instead of stdout when asked (a large output hashed where it is read, byte for byte)', async () => {
    const script = 'head -c 300000 /dev/zero | tr "\\0" "x"; printf "\\303\\251\\n"';
    const text = await runner.run(['sh', '-c', script]);
    expect(text.length).to.equal(300_002);
    expect(await runner.run(['sh', '-c', script], { digest: true })).to.equal(createHash('sha1').update(text).digest('hex'));
    const err = await failure(runner.run(['sh', '-c', 'echo out; exit 2'], { digest: true }));
    expect(err.exitCode, 'a failure is a failure, digest or not').to.equal(2);
  });

  it('throws one error class carrying argv, exit code, stdout, stderr and the input', async () => {
    const argv = ['sh', '-c', 'cat >/dev/null; echo out; echo "line 2 failed" >&2; exit 3'];
    const err = await failure(runner.run(argv, { input: 'restore input\n' }));
    expect(err).to.include({ code: 'COMMAND_FAILED', exitCode: 3, stdout: 'out\n', stderr: 'line 2 failed\n', input: 'restore input\n' });
    expect(err.argv).to.deep.equal(argv);
    expect(err.message).to.equal(`${argv.join(' ')} exited 3: line 2 failed`);
  });

  it('has no exit code for a command that could not start or was aborted', async () => {
    // Out of the set-up test's sight on purpose: this program must not exist.
    const missing = ['/nonexistent/podroute-no-such-program'];
    expect((await failure(runner.run(missing))).exitCode).to.equal(undefined);
    const abort = new AbortController();
    const running = runner.run(['sleep', '10'], { signal: abort.signal });
    abort.abort();
    expect((await failure(running)).exitCode).to.equal(undefined);
  });

  it('settles on stderr while stdin is held open, and the process ends once it is released', async () => {
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const script = 'echo "ready" >&2; cat >/dev/null; echo done >&2';
    const settled = await runner.run(['sh', '-c', script], { input: 'x\n', stdinUntil: released, settle: (stderr) => (stderr.includes('ready') ? true : undefined) });
    expect(settled).to.equal('');
    release();
    const refused = await failure(runner.run(['sh', '-c', 'echo "bad line" >&2; cat >/dev/null'], { stdinUntil: released, settle: (stderr) => new Error(stderr.trim()) }));
    expect(refused).to.include({ exitCode: undefined, stderr: 'bad line\n' });
  });

  it('decodes stdout whole (a character split across reads) and hands stderr on in whole lines', async () => {
    // 65,535 bytes, then a two-byte character: the pipe's 64 KiB reads split it.
    const text = await runner.run(['sh', '-c', 'head -c 65535 /dev/zero | tr "\\0" "x"; printf "\\303\\251"']);
    expect(text.length).to.equal(65_536);
    expect(text.endsWith('xé')).to.equal(true);
    const seen: string[] = [];
    const settled = await runner.run(['sh', '-c', 'printf "rea" >&2; sleep 0.1; printf "dy\\nnext" >&2; sleep 0.1; echo " line" >&2'], {
      settle: (stderr) => (seen.push(stderr), stderr.includes('next line') ? true : undefined),
    });
    expect(settled).to.equal('');
    expect(seen).to.deep.equal(['ready\n', 'ready\nnext line\n']);
  });

  it('passes an input larger than a pipe whole (through an unlinked file)', async () => {
    const input = 'a'.repeat(300_000);
    expect((await runner.run(['wc', '-c'], { input })).trim()).to.equal('300000');
  });

  it("gives commands this process's environment as it is at the call, with LC_ALL=C", async () => {
    await runner.run(['true']); // the thread that starts commands runs before the change
    process.env.PODROUTE_TEST_RUNNER_ENV = 'seen';
    try {
      expect(await runner.run(['sh', '-c', 'echo "$PODROUTE_TEST_RUNNER_ENV $LC_ALL"'])).to.equal('seen C\n');
    } finally {
      delete process.env.PODROUTE_TEST_RUNNER_ENV;
    }
  });

  it('runs in a network namespace through `ip netns exec`, options as given', async () => {
    const seen: Array<{ argv: readonly string[]; options: RunOptions | undefined }> = [];
    const base: CommandRunner = { run: (argv, options) => (seen.push({ argv, options }), Promise.resolve('ok')) };
    expect(await netnsRunner('ns1', base).run(['ipset', 'save'], { input: 'i' })).to.equal('ok');
    expect(seen).to.deep.equal([{ argv: ['ip', 'netns', 'exec', 'ns1', 'ipset', 'save'], options: { input: 'i' } }]);
  });
});
