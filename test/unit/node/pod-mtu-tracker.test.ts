// The pods' MTU followed across node re-plans: read again each time, a change reported once (log and Event), the
// last choice kept when the links cannot be read, the links never read when cni.mtu is set.
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { createLogger } from '../../../src/observe/log.js';
import type { LinkMtu } from '../../../src/node/pod-mtu.js';
import { PodMtuTracker, reportPodMtu } from '../../../src/node/pod-mtu-tracker.js';
import { FakeKernelChanges } from '../host/fake-kernel-changes.js';

const IP = '10.0.1.11';

function tracker(configured?: number, kernelChanges?: FakeKernelChanges): { tracker: PodMtuTracker; links: { value: LinkMtu[] | Error }; events: string[]; logLines: () => { level: string; message: string }[]; reads: () => number } {
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== '')));
  const links: { value: LinkMtu[] | Error } = { value: [{ ifname: 'eth0', mtu: 9000, addresses: [IP] }] };
  const events: string[] = [];
  let reads = 0;
  const t = new PodMtuTracker({
    configured,
    logger: createLogger({ stream, format: 'json' }),
    postEvent: (reason, message) => events.push(`${reason}: ${message}`),
    ...(kernelChanges === undefined ? {} : { kernelChanges }),
    readLinks: () => {
      reads++;
      return links.value instanceof Error ? Promise.reject(links.value) : Promise.resolve(links.value);
    },
  });
  return { tracker: t, links, events, logLines: () => lines.map((l) => JSON.parse(l) as { level: string; message: string }), reads: () => reads };
}

describe('pod MTU tracker', () => {
  const signal = new AbortController().signal;

  it('logs the first choice, then reports a change once (warning and PodrouteMtuChanged Event) and nothing while it holds', async () => {
    const t = tracker();
    expect(await t.tracker.choose([IP], signal)).to.deep.equal({ mtu: 9000, warnings: [] });
    expect(t.tracker.status()).to.deep.equal({ mtu: 9000, source: 'interface' });
    expect(await t.tracker.choose([IP], signal)).to.deep.equal({ mtu: 9000, warnings: [] });
    t.links.value = [{ ifname: 'eth0', mtu: 1400, addresses: [IP] }];
    expect(await t.tracker.choose([IP], signal)).to.deep.equal({ mtu: 1400, warnings: [] });
    await t.tracker.choose([IP], signal);
    await new Promise((resolve) => setImmediate(resolve)); // the stream hands the lines on asynchronously
    expect(t.logLines().map((l) => `${l.level} ${l.message}`)).to.deep.equal([
      'info pod MTU chosen: 9000 (the MTU of eth0)',
      'warn pod MTU changed from 9000 to 1400 (the MTU of eth0): new pods get it, running pods keep theirs until they restart',
    ]);
    expect(t.events).to.deep.equal(['PodrouteMtuChanged: pod MTU changed from 9000 to 1400 (the MTU of eth0): new pods get it, running pods keep theirs until they restart']);
  });

  it('with link notifications reads the links only after a link or address change (and every 10th choice)', async () => {
    const k = new FakeKernelChanges();
    const t = tracker(undefined, k);
    expect(await t.tracker.choose([IP], signal)).to.deep.equal({ mtu: 9000, warnings: [] });
    await t.tracker.choose([IP], signal);
    await t.tracker.choose([IP], signal);
    expect(t.reads(), 'nothing changed: no read').to.equal(1);
    t.links.value = [{ ifname: 'eth0', mtu: 1400, addresses: [IP] }];
    k.change('route');
    expect((await t.tracker.choose([IP], signal)).mtu, 'a route change is no link change').to.equal(9000);
    k.change('link');
    expect((await t.tracker.choose([IP], signal)).mtu).to.equal(1400);
    expect(t.reads()).to.equal(2);
    for (let i = 0; i < 10; i++) await t.tracker.choose([IP], signal);
    expect(t.reads(), 'the safety read').to.equal(3);
    k.silence();
    await t.tracker.choose([IP], signal);
    await t.tracker.choose([IP], signal);
    expect(t.reads(), 'a monitor that cannot vouch: every choice reads').to.equal(5);
  });

  it('keeps the last choice when the links cannot be read; hands on the choice\'s problems as warnings', async () => {
    const t = tracker();
    await t.tracker.choose([IP], signal);
    t.links.value = new Error('ip: exit 1');
    expect(await t.tracker.choose([IP], signal)).to.deep.equal({ mtu: 9000, warnings: [] });
    t.links.value = [{ ifname: 'eth0', mtu: 9000, addresses: ['10.0.9.9'] }];
    const none = await t.tracker.choose([IP], signal);
    expect(none.mtu).to.equal(undefined);
    expect(none.warnings).to.have.length(1).and.satisfy((w: string[]) => /no interface holds the node's InternalIP/.test(w[0]!));
    expect(t.tracker.status()).to.deep.equal({ mtu: undefined, source: 'none' });
    expect(t.events).to.deep.equal(["PodrouteMtuChanged: pod MTU changed from 9000 to default (the bridge plugin's default): new pods get it, running pods keep theirs until they restart"]);
  });

  it('with cni.mtu set, never reads the links', async () => {
    const t = tracker(1450);
    expect(await t.tracker.choose([IP], signal)).to.deep.equal({ mtu: 1450, warnings: [] });
    expect(t.reads()).to.equal(0);
    expect(t.tracker.status()).to.deep.equal({ mtu: 1450, source: 'config' });
  });

  it('says nothing for an unchanged MTU even when its source changed (the pods see the number only)', () => {
    expect(reportPodMtu({ mtu: 1450, source: 'interface' }, { source: 'config', mtu: 1450 })).to.equal(undefined);
    expect(reportPodMtu(undefined, { source: 'none', problem: 'x' })).to.deep.equal({ level: 'info', message: "pod MTU chosen: default (the bridge plugin's default)" });
  });
});
