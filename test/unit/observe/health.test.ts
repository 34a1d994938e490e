import { expect } from 'chai';
import { HealthError, HealthMonitor, type LoopObservation } from '../../../src/observe/health.js';

/** A clock the test moves by hand: staleness is decided against it, not against real time. */
function clock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('HealthMonitor liveness', () => {
  it('a loop whose last successful pass is older than its staleness is stuck, and named', () => {
    const c = clock();
    const h = new HealthMonitor({ now: c.now });
    const routes = h.register('routes', { staleAfterMs: 90_000 });
    const bgp = h.register('bgp', { staleAfterMs: 180_000 });
    routes.heartbeat(12);
    bgp.heartbeat(40);
    c.advance(90_000);
    expect(h.health().healthy).to.equal(true);
    c.advance(1);
    const report = h.health();
    expect(report.healthy).to.equal(false);
    expect(report.stuck).to.deep.equal(['routes']);
    const r = report.loops.find((l) => l.name === 'routes')!;
    expect(r).to.include({ state: 'stuck', healthy: false, staleAfterSeconds: 90 });
    expect(r.ageSeconds).to.equal(90.001);
    expect(report.loops.find((l) => l.name === 'bgp')!.state).to.equal('ok');
    // The next successful pass turns it green again.
    routes.heartbeat();
    expect(h.health()).to.include({ healthy: true });
    expect(h.health().stuck).to.deep.equal([]);
  });

  it('a loop that keeps failing goes stuck once its last success is too old, and reports the error', () => {
    const c = clock();
    const h = new HealthMonitor({ now: c.now });
    const loop = h.register('policy', { staleAfterMs: 1_000 });
    loop.heartbeat();
    for (let i = 0; i < 3; i++) {
      c.advance(500);
      loop.failure(Object.assign(new Error('iptables-restore: line 3 failed'), { code: 'APPLY_FAILED' }));
    }
    const report = h.health().loops[0]!;
    expect(report.state).to.equal('stuck');
    expect(report.failures).to.equal(3);
    expect(report.lastError!.message).to.equal('APPLY_FAILED: iptables-restore: line 3 failed');
  });

  it('a loop before its first pass is starting: not stuck (no restart), but not ready', async () => {
    const c = clock();
    const h = new HealthMonitor({ now: c.now });
    h.register('cluster', { staleAfterMs: 1_000 });
    c.advance(60_000);
    expect(h.health()).to.deep.include({ healthy: true, stuck: [] });
    expect(h.health().loops[0]).to.include({ state: 'starting', lastSuccessAt: null, ageSeconds: null });
    const r = await h.readiness();
    expect(r.ready).to.equal(false);
    expect(r.reasons).to.deep.equal(['cluster: no successful pass yet']);
  });

  it("merges a reconciler's own status with pushed heartbeats, without double-counting failures", () => {
    const c = clock();
    const h = new HealthMonitor({ now: c.now });
    let observed: LoopObservation | undefined = undefined;
    const pushed = h.register('bgp', { staleAfterMs: 10_000, observe: () => observed });
    expect(h.health().loops[0]!.state).to.equal('starting');
    observed = { lastSuccessAt: new Date(c.now()), failures: 2 };
    c.advance(5_000);
    expect(h.health().loops[0]).to.include({ state: 'ok', ageSeconds: 5, failures: 2 });
    pushed.failure(new Error('x'));
    pushed.failure(new Error('y'));
    // The same two failures seen by both feeds: still two.
    expect(h.health().loops[0]!.failures).to.equal(2);
    pushed.heartbeat();
    c.advance(9_000);
    expect(h.health().loops[0]).to.include({ state: 'ok', ageSeconds: 9 });
  });

  it('an error older than the last success is history, not the current error', () => {
    const c = clock();
    const h = new HealthMonitor({ now: c.now });
    let observed: LoopObservation = {};
    h.register('bgp', { staleAfterMs: 10_000, observe: () => observed });
    const failedAt = new Date(c.now());
    c.advance(1_000);
    observed = { lastSuccessAt: new Date(c.now()), lastError: { code: 'UNAVAILABLE', message: 'gobgpd is gone', at: failedAt }, failures: 1 };
    expect(h.health().loops[0]!.lastError).to.equal(null);
    c.advance(1_000);
    observed = { ...observed, lastError: { code: 'UNAVAILABLE', message: 'gobgpd is gone', at: new Date(c.now()) }, failures: 2 };
    expect(h.health().loops[0]!.lastError!.message).to.equal('UNAVAILABLE: gobgpd is gone');
  });

  it('a status() that throws counts as no observation, never as a crash of the probe', () => {
    const h = new HealthMonitor();
    h.register('masquerade', {
      staleAfterMs: 1_000,
      observe: () => {
        throw new Error('boom');
      },
    });
    expect(h.health().loops[0]!.state).to.equal('starting');
  });

  it('refuses duplicate loop names and bad staleness, naming them', () => {
    const h = new HealthMonitor();
    h.register('routes', { staleAfterMs: 1 });
    expect(() => h.register('routes', { staleAfterMs: 1 })).to.throw(HealthError, 'routes').with.property('code', 'DUPLICATE_LOOP');
    expect(() => h.register('bgp', { staleAfterMs: 0 })).to.throw(HealthError, 'staleAfterMs').with.property('code', 'INVALID_OPTION');
    expect(() => h.register('nat', { staleAfterMs: Number.NaN })).to.throw(HealthError, 'staleAfterMs');
  });
});

describe('HealthMonitor readiness', () => {
  it('is ready when every required loop passed once and every check answers undefined', async () => {
    const h = new HealthMonitor();
    const a = h.register('a', { staleAfterMs: 1_000 });
    h.register('optional', { staleAfterMs: 1_000, requiredForReadiness: false });
    let gobgpUp = false;
    h.addReadinessCheck('gobgpd', () => (gobgpUp ? undefined : 'gobgpd not reachable at unix:///x.sock'));
    h.addReadinessCheck('async', () => Promise.resolve(undefined));
    let r = await h.readiness();
    expect(r.ready).to.equal(false);
    expect(r.reasons).to.deep.equal(['a: no successful pass yet', 'gobgpd not reachable at unix:///x.sock']);
    expect(r.checks.map((x) => [x.name, x.ready])).to.deep.equal([
      ['loop:a', false],
      ['gobgpd', false],
      ['async', true],
    ]);
    a.failure(new Error('apply failed'));
    r = await h.readiness();
    expect(r.reasons[0]).to.equal('a: no successful pass yet (last error: apply failed)');
    a.heartbeat();
    gobgpUp = true;
    r = await h.readiness();
    expect(r).to.deep.include({ ready: true, reasons: [] });
  });

  it('a check that throws or hangs is a reason, within the check timeout', async () => {
    const h = new HealthMonitor({ checkTimeoutMs: 50 });
    h.addReadinessCheck('throws', () => {
      throw new Error('socket gone');
    });
    h.addReadinessCheck('hangs', () => new Promise<undefined>(() => undefined));
    const r = await h.readiness();
    expect(r.ready).to.equal(false);
    expect(r.reasons).to.deep.equal(['throws: check failed: socket gone', 'hangs: check did not answer within 50 ms']);
  });

  it('tells pass listeners about every pushed pass with its duration', () => {
    const h = new HealthMonitor();
    const seen: unknown[] = [];
    const off = h.onPass((loop, outcome, ms) => seen.push([loop, outcome, ms]));
    h.onPass(() => {
      throw new Error('a broken listener must not break the loop');
    });
    const loop = h.register('routes', { staleAfterMs: 1_000 });
    loop.heartbeat(12.5);
    loop.failure(new Error('x'), 3);
    off();
    loop.heartbeat(1);
    expect(seen).to.deep.equal([
      ['routes', 'success', 12.5],
      ['routes', 'failure', 3],
    ]);
  });
});
