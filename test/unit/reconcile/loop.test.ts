import { getEventListeners } from 'node:events';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  backoffDelay,
  DirtySignal,
  maxFlappingPasses,
  PassPacer,
  ReconcileLoop,
  sleep,
  type PassContext,
  type PassOutcome,
  type ReconcileLoopOptions,
} from '../../../src/reconcile/loop.js';

describe('dirty signal', () => {
  it('coalesces any number of set() calls into one wake-up', async () => {
    const dirty = new DirtySignal();
    for (let i = 0; i < 100; i++) dirty.set();
    const signal = new AbortController().signal;
    expect(await dirty.wait(1000, signal)).to.equal(true);
    expect(await dirty.wait(1, signal)).to.equal(false);
  });
});

describe('pass pacer', () => {
  const options = { minIntervalMs: 25, maxIntervalMs: 2_000, quietResetMs: 4_000 };
  const keys = (...k: string[]): Set<string> => new Set(k);

  it('lets a change after a quiet spell through at once, and spaces a burst of new keys by the minimum', () => {
    const pacer = new PassPacer(options);
    expect(pacer.delay(1_000)).to.equal(0);
    pacer.passed(1_000, keys('a'));
    expect(pacer.delay(1_005)).to.equal(20);
    // A burst of ever new keys (a table being learned) stays at the minimum interval.
    let now = 1_025;
    for (let i = 0; i < 50; i++) {
      expect(pacer.delay(now)).to.equal(0);
      pacer.passed(now, keys(`k${i}`, `l${i}`));
      now += 25;
    }
    expect(pacer.currentIntervalMs()).to.equal(25);
    // Long quiet: the next change goes at once.
    expect(pacer.delay(now + 10_000)).to.equal(0);
  });

  it('doubles the interval while the same keys flap, up to the maximum, and resets after quiet', () => {
    const pacer = new PassPacer(options);
    let now = 0;
    const intervals: number[] = [];
    for (let i = 0; i < 10; i++) {
      now += pacer.delay(now);
      pacer.passed(now, keys('a', 'b'));
      intervals.push(pacer.currentIntervalMs());
    }
    expect(intervals).to.deep.equal([25, 50, 100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    // Passes that change nothing neither stretch nor shorten it.
    pacer.passed(now, keys());
    expect(pacer.currentIntervalMs()).to.equal(2000);
    expect(pacer.delay(now + 1_000)).to.equal(1_000);
    // Nothing for longer than quietResetMs: back to the minimum, at once.
    expect(pacer.delay(now + 4_000)).to.equal(0);
    expect(pacer.currentIntervalMs()).to.equal(25);
  });

  it('takes a key changing again after a quiet spell for no flap, though passes that change nothing ran meanwhile', () => {
    const pacer = new PassPacer(options);
    // A route comes, the cluster makes a pass that changes nothing every second, the route goes 11 s later.
    pacer.passed(0, keys('10.9.0.0/24'));
    for (let t = 1_000; t <= 10_000; t += 1_000) pacer.passed(t, keys());
    expect(pacer.delay(11_000)).to.equal(0);
    pacer.passed(11_000, keys('10.9.0.0/24'));
    expect(pacer.currentIntervalMs()).to.equal(25);
    // The next route waits no longer than the minimum.
    expect(pacer.delay(11_010)).to.equal(15);
  });

  it('never lets more passes start than maxFlappingPasses while flapping goes on', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 200 }), fc.integer({ min: 100, max: 20_000 }), (gaps, window) => {
        // A loop that runs a pass as soon as it may (every pass flapping), woken `gap` ms after each pass.
        const pacer = new PassPacer(options);
        let now = 0;
        const starts: number[] = [];
        for (const gap of gaps) {
          now += pacer.delay(now);
          starts.push(now);
          pacer.passed(now, keys('a'));
          now += gap;
        }
        const inWindow = starts.filter((t) => t <= window).length;
        expect(inWindow).to.be.at.most(maxFlappingPasses(options, window));
      }),
    );
    expect(maxFlappingPasses(options, 0)).to.equal(1);
    expect(maxFlappingPasses(options, 25)).to.equal(2);
    expect(maxFlappingPasses(options, 24)).to.equal(1);
    expect(maxFlappingPasses(options, 10_000)).to.equal(11); // 0, 25, 75, ... 1575, 3175, then one per 2 s
  });

  it('refuses a quiet reset that would undo the damping', () => {
    expect(() => new PassPacer({ minIntervalMs: 25, maxIntervalMs: 2_000, quietResetMs: 2_000 })).to.throw(/quietResetMs/);
  });
});

describe('ReconcileLoop', function () {
  this.timeout(10_000);

  const noJitter = (): number => 0;
  const waitUntil = async (what: string, check: () => boolean, timeoutMs = 3_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  };
  const idle = (): PassContext[] => [];
  /** There are `n` passes, and no more follow. */
  const exactly = async (passes: PassContext[], n: number): Promise<void> => {
    await waitUntil(`pass ${n}`, () => passes.length === n);
    await sleep(30, new AbortController().signal);
    expect(passes).to.have.length(n);
  };

  /** A loop whose passes are recorded; `behave` decides each pass (throw to fail). */
  function recorder(options: Partial<ReconcileLoopOptions> & { behave?: (n: number, context: PassContext) => Promise<PassOutcome | void> | PassOutcome | void } = {}) {
    const passes = idle();
    const startedAt: number[] = [];
    const { behave, ...rest } = options;
    const loop = new ReconcileLoop({
      name: 'test',
      resyncIntervalMs: 60_000,
      backoff: { initialMs: 20, maxMs: 80 },
      random: noJitter,
      pass: async (context) => {
        passes.push(context);
        startedAt.push(performance.now());
        return behave?.(passes.length, context);
      },
      ...rest,
    });
    const controller = new AbortController();
    return { loop, passes, startedAt, controller, run: (): Promise<void> => loop.run(controller.signal) };
  }

  it('runs a first pass at once, then only when woken; wakes before a pass coalesce into one', async () => {
    const t = recorder();
    const running = t.run();
    await waitUntil('the first pass', () => t.passes.length === 1);
    expect(t.passes[0]?.resync).to.equal(false);
    for (let i = 0; i < 100; i++) t.loop.markDirty();
    await exactly(t.passes, 2);
    t.controller.abort();
    await running;
  });

  it('wakes during a pass cost exactly one more pass', async () => {
    let release: () => void = () => undefined;
    const t = recorder({ behave: (n) => (n === 2 ? new Promise<void>((resolve) => (release = resolve)) : undefined) });
    const running = t.run();
    await waitUntil('the first pass', () => t.passes.length === 1);
    t.loop.markDirty();
    await waitUntil('the second pass to start', () => t.passes.length === 2);
    for (let i = 0; i < 50; i++) t.loop.markDirty();
    release();
    await exactly(t.passes, 3);
    t.controller.abort();
    await running;
  });

  it('with startDirty false waits for a wake', async () => {
    const t = recorder({ startDirty: false });
    const running = t.run();
    await sleep(30, new AbortController().signal);
    expect(t.passes).to.have.length(0);
    t.loop.markDirty();
    await waitUntil('the woken pass', () => t.passes.length === 1);
    t.controller.abort();
    await running;
  });

  it('runs a resync pass every resyncIntervalMs, counted from the last resync pass, and says so', async () => {
    const t = recorder({ resyncIntervalMs: 40, startDirty: false });
    const started = performance.now();
    const running = t.run();
    await waitUntil('two resyncs', () => t.passes.length === 2);
    expect(t.passes.map((p) => p.resync)).to.deep.equal([true, true]);
    expect((t.startedAt[0] ?? 0) - started).to.be.at.least(38);
    expect((t.startedAt[1] ?? 0) - (t.startedAt[0] ?? 0)).to.be.at.least(38);
    // A woken pass between two resyncs does not move the next resync.
    t.loop.markDirty();
    await waitUntil('the woken pass and the next resync', () => t.passes.length === 4);
    expect(t.passes.map((p) => p.resync)).to.deep.equal([true, true, false, true]);
    expect((t.startedAt[3] ?? 0) - (t.startedAt[1] ?? 0)).to.be.within(38, 75);
    t.controller.abort();
    await running;
  });

  it('backs off after failures, doubling up to the maximum, and a success resets it', async () => {
    let failing = true;
    const t = recorder({
      behave: () => {
        if (failing) throw Object.assign(new Error('kernel says no'), { code: 'KERNEL_REFUSED' });
      },
    });
    const running = t.run();
    await waitUntil('five passes', () => t.passes.length === 5);
    const gaps = t.startedAt.slice(1).map((at, i) => at - (t.startedAt[i] ?? 0));
    const expected = [20, 40, 80, 80];
    gaps.forEach((gap, i) => expect(gap, `gap ${i}`).to.be.within((expected[i] ?? 0) - 2, (expected[i] ?? 0) + 40));
    expect(t.loop.status().consecutiveFailures).to.equal(5);
    failing = false;
    await waitUntil('a success', () => t.loop.status().consecutiveFailures === 0);
    expect(t.loop.retryDelay(1)).to.equal(20);
    failing = true;
    const before = t.passes.length;
    t.loop.markDirty();
    await waitUntil('a failure and its retry', () => t.passes.length === before + 2);
    const retryGap = (t.startedAt[before + 1] ?? 0) - (t.startedAt[before] ?? 0);
    expect(retryGap, 'the first back-off again').to.be.within(18, 60);
    t.controller.abort();
    await running;
  });

  it('keeps a back-off even when woken: a failing kernel is not hammered', async () => {
    const t = recorder({ backoff: { initialMs: 200, maxMs: 200 }, behave: () => Promise.reject(new Error('no')) });
    const running = t.run();
    await waitUntil('the first failure', () => t.passes.length === 1);
    for (let i = 0; i < 10; i++) {
      t.loop.markDirty();
      await sleep(10, new AbortController().signal);
    }
    expect(t.passes).to.have.length(1);
    await waitUntil('the retry', () => t.passes.length === 2);
    expect((t.startedAt[1] ?? 0) - (t.startedAt[0] ?? 0)).to.be.at.least(198);
    t.controller.abort();
    await running;
  });

  it('jitter only shortens a back-off, by at most its fraction', () => {
    const backoff = { initialMs: 100, maxMs: 1_000, jitter: 0.25 };
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (failures, r) => {
        const base = Math.min(1_000, 100 * 2 ** (failures - 1));
        const delay = backoffDelay(failures, backoff, () => r);
        expect(delay).to.be.at.most(base);
        expect(delay).to.be.at.least(base * 0.75);
      }),
    );
    // The default jitter is 20 %, and real randomness spreads the delays.
    const delays = new Set(Array.from({ length: 20 }, () => backoffDelay(3, { initialMs: 100, maxMs: 1_000 })));
    expect(delays.size).to.be.greaterThan(1);
    for (const d of delays) expect(d).to.be.within(320, 400);
  });

  it('refuses options that make no schedule', () => {
    const pass = (): Promise<void> => Promise.resolve();
    expect(() => new ReconcileLoop({ name: 'x', pass, resyncIntervalMs: 0, backoff: { initialMs: 1, maxMs: 1 } })).to.throw(/resyncIntervalMs/);
    expect(() => new ReconcileLoop({ name: 'x', pass, resyncIntervalMs: 1, backoff: { initialMs: 10, maxMs: 1 } })).to.throw(/backoff/);
    expect(() => new ReconcileLoop({ name: 'x', pass, resyncIntervalMs: 1, backoff: { initialMs: 1, maxMs: 1, jitter: 1 } })).to.throw(/jitter/);
  });

  it('status: attempt and success times, the last error with its code, counts; a success clears the error', async () => {
    let fail: unknown = new Error('plain');
    const t = recorder({
      backoff: { initialMs: 5, maxMs: 5 },
      // A thrown value need not be an Error: other code's promises may reject with anything.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the point of the test
      behave: () => (fail === undefined ? undefined : Promise.reject(fail)),
    });
    const fresh = t.loop.status();
    expect(fresh).to.deep.equal({ lastAttemptAt: undefined, lastSuccessAt: undefined, lastError: undefined, consecutiveFailures: 0, successes: 0, failures: 0 });
    const running = t.run();
    await waitUntil('a failure', () => t.loop.status().failures === 1);
    let st = t.loop.status();
    expect(st.lastError).to.deep.equal({ code: 'ERROR', message: 'plain' });
    expect(st.lastAttemptAt).to.be.instanceOf(Date);
    expect(st.lastSuccessAt).to.equal(undefined);
    fail = 'a string';
    await waitUntil('a second failure', () => t.loop.status().failures === 2);
    expect(t.loop.status().lastError).to.deep.equal({ code: 'ERROR', message: 'a string' });
    expect(t.loop.status().consecutiveFailures).to.equal(2);
    fail = undefined;
    await waitUntil('a success', () => t.loop.status().successes === 1);
    st = t.loop.status();
    expect(st).to.include({ lastError: undefined, consecutiveFailures: 0, failures: 2, successes: 1 });
    expect(st.lastSuccessAt!.getTime()).to.be.at.least(st.lastAttemptAt!.getTime());
    expect(t.loop.hasSucceeded()).to.equal(true);
    // status() is a copy.
    st.lastError = { code: 'X', message: 'y' };
    expect(t.loop.status().lastError).to.equal(undefined);
    t.controller.abort();
    await running;
  });

  it('a default error code can be set; onFailure hears each failure with the back-off to come', async () => {
    const heard: { consecutiveFailures: number; retryInMs: number }[] = [];
    const t = recorder({ defaultErrorCode: 'NAT_ERROR', behave: () => Promise.reject(new Error('x')), onFailure: (_e, info) => heard.push(info) });
    const running = t.run();
    await waitUntil('two failures', () => heard.length === 2);
    expect(t.loop.status().lastError?.code).to.equal('NAT_ERROR');
    expect(heard).to.deep.equal([{ consecutiveFailures: 1, retryInMs: 20 }, { consecutiveFailures: 2, retryInMs: 40 }]);
    t.controller.abort();
    await running;
  });

  it('a skipped pass is neither success nor failure; whenSucceeded waits for the first success', async () => {
    let ready = false;
    const outcomes: boolean[] = [];
    const t = recorder({ behave: () => (ready ? undefined : { skipped: true }), onPass: (o) => outcomes.push(o.ok) });
    let succeeded = false;
    void t.loop.whenSucceeded().then(() => (succeeded = true));
    const running = t.run();
    await waitUntil('the first pass', () => t.passes.length === 1);
    await sleep(10, new AbortController().signal);
    expect(t.loop.status()).to.include({ lastAttemptAt: undefined, successes: 0, failures: 0 });
    expect(succeeded).to.equal(false);
    expect(t.loop.hasSucceeded()).to.equal(false);
    ready = true;
    t.loop.markDirty();
    await waitUntil('the first success', () => succeeded);
    expect(outcomes).to.deep.equal([true]);
    t.controller.abort();
    await running;
  });

  it('an abort during a pass ends the loop; the pass cut short is no failure', async () => {
    const t = recorder({
      behave: (_n, { signal }) =>
        new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true })),
    });
    const running = t.run();
    await waitUntil('the pass to start', () => t.passes.length === 1);
    t.controller.abort();
    await running;
    expect(t.loop.status()).to.include({ failures: 0, lastError: undefined, consecutiveFailures: 0 });
  });

  it('an abort during the resync wait or the back-off ends the loop at once', async () => {
    const waiting = recorder({ resyncIntervalMs: 60_000 });
    let running = waiting.run();
    await waitUntil('the first pass', () => waiting.passes.length === 1);
    let at = performance.now();
    waiting.controller.abort();
    await running;
    expect(performance.now() - at).to.be.below(50);

    const backingOff = recorder({ backoff: { initialMs: 60_000, maxMs: 60_000 }, behave: () => Promise.reject(new Error('no')) });
    running = backingOff.run();
    await waitUntil('the failure', () => backingOff.passes.length === 1);
    at = performance.now();
    backingOff.controller.abort();
    await running;
    expect(performance.now() - at).to.be.below(50);
    expect(backingOff.passes).to.have.length(1);
  });

  it('an aborted signal runs no pass; stop() ends the loop without aborting the caller', async () => {
    const t = recorder();
    t.controller.abort();
    await t.run();
    expect(t.passes).to.have.length(0);
    const s = recorder();
    const running = s.run();
    await waitUntil('the first pass', () => s.passes.length === 1);
    s.loop.stop();
    await running;
    expect(s.controller.signal.aborted).to.equal(false);
    s.loop.markDirty();
    await sleep(20, new AbortController().signal);
    expect(s.passes).to.have.length(1);
  });

  it('refuses to run twice at once', async () => {
    const t = recorder();
    const running = t.run();
    try {
      await t.run();
      expect.fail('a second run was accepted');
    } catch (error) {
      expect(String(error)).to.match(/already running/);
    }
    t.controller.abort();
    await running;
  });

  it('leaks no abort listeners: one on the caller\'s signal while running, none after, over hundreds of passes and failures', async () => {
    let n = 0;
    const t = recorder({ backoff: { initialMs: 1, maxMs: 1 }, behave: () => (++n % 3 === 0 ? Promise.reject(new Error('every third')) : undefined) });
    const running = t.run();
    await waitUntil('the first pass', () => t.passes.length >= 1);
    const during = getEventListeners(t.controller.signal, 'abort').length;
    expect(during).to.equal(1);
    const deadline = Date.now() + 5_000;
    while (t.passes.length < 200 && Date.now() < deadline) {
      t.loop.markDirty();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(t.passes.length).to.be.at.least(200);
    expect(t.loop.status().failures).to.be.at.least(60);
    expect(getEventListeners(t.controller.signal, 'abort').length).to.equal(during);
    t.controller.abort();
    await running;
    expect(getEventListeners(t.controller.signal, 'abort').length).to.equal(0);
    const stopped = recorder();
    const again = stopped.run();
    await waitUntil('the first pass', () => stopped.passes.length === 1);
    stopped.loop.stop();
    await again;
    expect(getEventListeners(stopped.controller.signal, 'abort').length).to.equal(0);
  });

  it('exclusive work and passes on demand never overlap a pass; passes on demand are counted', async () => {
    let inPass = 0;
    let overlaps = 0;
    const t = recorder({
      behave: async () => {
        if (++inPass > 1) overlaps++;
        await sleep(5, new AbortController().signal);
        inPass--;
      },
    });
    const running = t.run();
    const work = Array.from({ length: 10 }, (_, i) =>
      (i % 2 === 0 ? t.loop.exclusive.bind(t.loop) : t.loop.passNow.bind(t.loop))(async () => {
        if (++inPass > 1) overlaps++;
        t.loop.markDirty();
        await sleep(3, new AbortController().signal);
        inPass--;
        return i;
      }),
    );
    expect(await Promise.all(work)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(overlaps).to.equal(0);
    const failing = t.loop.passNow(() => Promise.reject(new Error('on demand')));
    try {
      await failing;
      expect.fail('the failure was swallowed');
    } catch (error) {
      expect(String(error)).to.match(/on demand/);
    }
    expect(t.loop.status().lastError?.message).to.equal('on demand');
    expect(t.loop.status().successes).to.be.at.least(5);
    t.controller.abort();
    await running;
  });

  it('paces woken passes with its pacer: a burst is taken in passes at least minIntervalMs apart', async () => {
    const pacer = new PassPacer({ minIntervalMs: 30, maxIntervalMs: 120, quietResetMs: 500 });
    const t = recorder({ pacer, behave: (n) => ({ changed: new Set([`k${n}`]) }) });
    const running = t.run();
    const until = performance.now() + 200;
    while (performance.now() < until) {
      t.loop.markDirty();
      await sleep(2, new AbortController().signal);
    }
    const gaps = t.startedAt.slice(1).map((at, i) => at - (t.startedAt[i] ?? 0));
    expect(t.passes.length).to.be.within(3, 8);
    for (const gap of gaps) expect(gap).to.be.at.least(28);
    // Passes that change the same keys again stretch the interval.
    expect(pacer.currentIntervalMs()).to.equal(30);
    t.controller.abort();
    await running;
  });

  it('an observer that throws does not break the loop', async () => {
    const t = recorder({
      onPass: () => {
        throw new Error('metrics broke');
      },
    });
    const running = t.run();
    await waitUntil('the first pass', () => t.passes.length === 1);
    t.loop.markDirty();
    await waitUntil('the second pass', () => t.passes.length === 2);
    expect(t.loop.status().successes).to.equal(2);
    t.controller.abort();
    await running;
  });
});
