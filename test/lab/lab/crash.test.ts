// A `lab up` killed halfway leaves namespaces and daemons behind; `lab down --all` cleans them from the state file.
import { expect } from 'chai';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { CLI_MAIN } from '../../../src/lab/daemons.js';
import { labDown } from '../../../src/lab/down.js';
import { readLabState } from '../../../src/lab/state.js';
import { leftovers, NOTHING, repoRoot, testLabName } from './leftovers.js';
import { pollUntil } from '../../poll.js';

const LAB = testLabName('h3k', 'k');

describe('lab: crash mid-up', function () {
  this.timeout(180_000);

  after(async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
  });

  it('is cleaned by `lab down --all`', async () => {
    if (readLabState(LAB) !== undefined) await labDown(LAB);
    const up = spawn(process.execPath, [CLI_MAIN, 'lab', 'up', path.join(repoRoot(), 'topologies', 'two-racks.yaml'), '--name', LAB], {
      stdio: 'ignore',
    });
    // Kill it once routers and node daemons run but before the lab is up.
    const state = await pollUntil('gobgpd and FRR recorded', () => {
      const s = readLabState(LAB);
      return s !== undefined && s.processes.some((p) => p.name.startsWith('gobgpd/')) && s.frrPathspaces.length > 0 ? s : undefined;
    }, { timeoutMs: 60_000 });
    up.kill('SIGKILL');
    await new Promise((resolve) => up.once('exit', resolve));
    expect(readLabState(LAB)?.phase).to.equal('building');
    const pids = (readLabState(LAB)?.processes ?? state.processes).map((p) => p.pid);
    const before = leftovers(LAB, pids);
    expect(before.netns.length).to.be.greaterThan(0);
    expect(before.processes.length).to.be.greaterThan(0);
    expect(before.frrDirs.length).to.be.greaterThan(0);

    // --prefix keeps this test away from other people's labs on a shared machine.
    const { stdout } = await promisify(execFile)(process.execPath, [CLI_MAIN, 'lab', 'down', '--all', '--prefix', LAB]);
    expect(stdout).to.include(LAB);
    expect(leftovers(LAB, pids)).to.deep.equal(NOTHING);
  });
});
