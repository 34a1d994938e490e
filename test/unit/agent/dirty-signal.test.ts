import { expect } from 'chai';
import { DirtySignal, settle } from '../../../src/agent/dirty-signal.js';

describe('dirty signal', () => {
  it('coalesces any number of set() calls into one wake-up', async () => {
    const dirty = new DirtySignal();
    for (let i = 0; i < 100; i++) dirty.set();
    const signal = new AbortController().signal;
    expect(await dirty.wait(1000, signal)).to.equal(true);
    expect(await dirty.wait(1, signal)).to.equal(false);
  });

  it('settle returns only once a burst of changes has stopped (or its bound is reached)', async () => {
    const dirty = new DirtySignal();
    const signal = new AbortController().signal;
    let lastSet = 0;
    let sets = 0;
    const burst = setInterval(() => {
      dirty.set();
      lastSet = Date.now();
      if (++sets === 10) clearInterval(burst);
    }, 5);
    dirty.set();
    await settle(dirty, 40, 10_000, signal);
    expect(sets).to.equal(10); // the burst was over before settle returned
    expect(Date.now()).to.be.at.least(lastSet);
    const bounded = new DirtySignal();
    const keepBusy = setInterval(() => bounded.set(), 2);
    try {
      await settle(bounded, 1_000, 50, signal); // never quiet: returns at its bound
    } finally {
      clearInterval(keepBusy);
    }
  });
});
