import { expect } from 'chai';
import fc from 'fast-check';
import { DirtySignal, maxFlappingPasses, PassPacer } from '../../../src/agent/dirty-signal.js';

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
