// When a resync of a kernel reader reads the kernel: the pure decisions behind the route reconciler's, the route
// selection's and the pod MTU tracker's skipped reads.
import { expect } from 'chai';
import { changedSince, KernelReadSchedule, linksAndAddressesMark } from '../../../src/host/kernel-monitor.js';
import { FakeKernelChanges } from './fake-kernel-changes.js';

describe('kernel change marks', () => {
  it('count as changed when unknown on either side, after a monitor restart, or after a notification', () => {
    expect(changedSince(undefined, { run: 1, changes: 0 })).to.equal(true);
    expect(changedSince({ run: 1, changes: 0 }, undefined)).to.equal(true);
    expect(changedSince({ run: 1, changes: 3 }, { run: 2, changes: 3 })).to.equal(true);
    expect(changedSince({ run: 1, changes: 3 }, { run: 1, changes: 4 })).to.equal(true);
    expect(changedSince({ run: 1, changes: 3 }, { run: 1, changes: 3 })).to.equal(false);
  });

  it('links and addresses make one mark: a change of either moves it, an untrusted monitor has none', () => {
    const k = new FakeKernelChanges();
    const before = linksAndAddressesMark(k);
    k.change('route');
    expect(changedSince(before, linksAndAddressesMark(k)), 'a route change is not a link change').to.equal(false);
    k.change('address');
    const afterAddress = linksAndAddressesMark(k);
    expect(changedSince(before, afterAddress)).to.equal(true);
    k.change('link');
    expect(changedSince(afterAddress, linksAndAddressesMark(k))).to.equal(true);
    k.silence();
    expect(linksAndAddressesMark(k)).to.equal(undefined);
    expect(linksAndAddressesMark(undefined)).to.equal(undefined);
  });
});

describe('KernelReadSchedule', () => {
  it('reads at the first resync, skips while nothing changed, reads after a change, and every readEvery-th resync regardless', () => {
    const k = new FakeKernelChanges();
    const s = new KernelReadSchedule(4);
    expect(s.due(k.mark('route')), 'never read').to.equal(true);
    s.read(k.mark('route'));
    expect([s.due(k.mark('route')), s.due(k.mark('route')), s.due(k.mark('route'))]).to.deep.equal([false, false, false]);
    expect(s.due(k.mark('route')), 'the fourth resync reads anyway').to.equal(true);
    s.read(k.mark('route'));
    expect(s.due(k.mark('route'))).to.equal(false);
    k.change('route');
    expect(s.due(k.mark('route')), 'a route changed').to.equal(true);
  });

  it('a change during a read is seen at the next resync (the mark is taken before the read)', () => {
    const k = new FakeKernelChanges();
    const s = new KernelReadSchedule(10);
    const mark = k.mark('route');
    k.change('route'); // while the read runs
    s.read(mark);
    expect(s.due(k.mark('route'))).to.equal(true);
  });

  it('always reads without a trusted monitor, after a monitor restart, and after forget() (a failed pass)', () => {
    const k = new FakeKernelChanges();
    const s = new KernelReadSchedule(10);
    s.read(k.mark('route'));
    k.restart();
    expect(s.due(k.mark('route'))).to.equal(true);
    s.read(k.mark('route'));
    s.forget();
    expect(s.due(k.mark('route'))).to.equal(true);
    s.read(k.mark('route'));
    k.silence();
    expect([s.due(k.mark('route')), s.due(k.mark('route'))]).to.deep.equal([true, true]);
  });

  it('refuses a period that is not a positive integer', () => {
    expect(() => new KernelReadSchedule(0)).to.throw(/readEvery/);
  });
});
