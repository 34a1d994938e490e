// One-off measurement (not a test): the reconciler's kernel step against `ip -batch` of the same routes, and the
// pure planner/selector at growing sizes. Run as root:
//   node .build/<dir>/test/lab/routes/measure-kernel-step.js [sizes...]
import { execa } from 'execa';
import type { LearnedPath } from '../../../src/bgp/types.js';
import { createLogger } from '../../../src/observe/log.js';
import { IpRouteTable } from '../../../src/routes/kernel-routes.js';
import { planRoutes, type KernelRoute } from '../../../src/routes/plan-routes.js';
import { RouteReconciler } from '../../../src/routes/route-reconciler.js';
import { selectRoutes, type DesiredRoute } from '../../../src/routes/select-routes.js';
import { createRouteNetns, ROUTE_NETNS_PREFIX } from './route-netns.js';
import { pollUntil } from '../../poll.js';

const PROTO = 44;
const RUNS = 5;

function desiredRoutes(n: number): DesiredRoute[] {
  return Array.from({ length: n }, (_, i) => ({
    prefix: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`,
    nextHops: [i % 2 === 0 ? '10.250.0.2' : '10.251.0.2'],
  }));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function ipBatch(netns: string, lines: string[]): Promise<number> {
  const start = process.hrtime.bigint();
  await execa('ip', ['-n', netns, '-batch', '-'], { input: lines.join('\n') + '\n' });
  return ms(start);
}

async function kernelStep(n: number): Promise<void> {
  const desired = desiredRoutes(n);
  const addLines = desired.map((r) => `route add ${r.prefix} proto ${PROTO} via ${r.nextHops[0]}`);
  const delLines = desired.map((r) => `route del ${r.prefix} proto ${PROTO} metric 0`);
  const floorAdd: number[] = [];
  const floorDel: number[] = [];
  const oursAdd: number[] = [];
  const oursDel: number[] = [];
  const reads: number[] = [];
  const logger = createLogger({ level: 'error' });
  for (let run = 0; run < RUNS; run++) {
    const netns = await createRouteNetns(`${ROUTE_NETNS_PREFIX}-m`);
    try {
      floorAdd.push(await ipBatch(netns.name, addLines));
      floorDel.push(await ipBatch(netns.name, delLines));

      const table = new IpRouteTable({ protocol: PROTO, netns: netns.name });
      const reconciler = new RouteReconciler({ protocol: PROTO, logger, table, resyncIntervalMs: 3_600_000 });
      const controller = new AbortController();
      const done = reconciler.start(controller.signal);
      await pollUntil('the first kernel read', () => reconciler.status().counts.reads >= 1, { intervalMs: 5 });
      let start = process.hrtime.bigint();
      reconciler.setDesired(desired);
      await reconciler.waitForSync();
      oursAdd.push(ms(start));
      if (reconciler.status().installed !== n) throw new Error(`installed ${reconciler.status().installed} of ${n}`);
      start = process.hrtime.bigint();
      await table.read();
      reads.push(ms(start));
      start = process.hrtime.bigint();
      reconciler.setDesired([]);
      await reconciler.waitForSync();
      oursDel.push(ms(start));
      controller.abort();
      await done;
    } finally {
      await netns.destroy();
    }
  }
  const f = (v: number[]) => `${median(v).toFixed(0)} ms (min ${Math.min(...v).toFixed(0)}, max ${Math.max(...v).toFixed(0)})`;
  console.log(`N=${n}`);
  console.log(`  ip -batch add (floor)        ${f(floorAdd)}`);
  console.log(`  reconciler add (plan+batch)  ${f(oursAdd)}   ratio ${(median(oursAdd) / median(floorAdd)).toFixed(2)}x`);
  console.log(`  ip -batch del (floor)        ${f(floorDel)}`);
  console.log(`  reconciler del               ${f(oursDel)}   ratio ${(median(oursDel) / median(floorDel)).toFixed(2)}x`);
  console.log(`  full read (ip -j, v4+v6)     ${f(reads)}`);
}

function pureScaling(n: number): void {
  const desired = desiredRoutes(n);
  const observed: KernelRoute[] = desired.map((r) => ({ ...r, protocol: PROTO }));
  // Distinct prefixes for the selector: one /32 per route inside the accept range, two paths each (ECMP).
  const selectorPaths: LearnedPath[] = desired.flatMap((_, i) =>
    ['10.250.0.2', '10.251.0.2'].map((hop) => ({
      prefix: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`,
      family: 'ipv4' as const,
      nextHop: hop,
      neighborIp: hop,
      asPath: [65001, 65010],
      isWithdraw: false,
    })),
  );
  const context = {
    localAsn: 64512,
    ownPodCIDRs: ['10.244.1.0/24'],
    acceptRanges: ['10.0.0.0/8'],
    clusterPodRanges: ['10.0.0.0/8'],
    nodes: Array.from({ length: 1000 }, (_, i) => ({ name: `n${i}`, podCIDRs: [`10.${16 + (i >> 8)}.${i & 255}.0/24`], asn: 65010, addresses: [`10.250.${i >> 8}.${i & 255}`] })),
    onLinkNetworks: ['10.250.0.0/24', '10.251.0.0/24'],
  };
  const time = (f: () => unknown): number => {
    const samples: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const start = process.hrtime.bigint();
      f();
      samples.push(ms(start));
    }
    return median(samples);
  };
  const planAdd = time(() => planRoutes(desired, []));
  const planSame = time(() => planRoutes(desired, observed));
  const select = time(() => selectRoutes(selectorPaths, context));
  console.log(
    `N=${n}: planRoutes vs empty ${planAdd.toFixed(0)} ms (${((planAdd * 1000) / n).toFixed(2)} µs/route), vs identical ${planSame.toFixed(0)} ms, selectRoutes (2 paths/prefix, 1000 nodes) ${select.toFixed(0)} ms (${((select * 1000) / n).toFixed(2)} µs/prefix)`,
  );
}

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
for (const n of [10_000, 50_000, 100_000, 200_000]) pureScaling(n);
for (const n of sizes.length > 0 ? sizes : [10_000, 50_000]) await kernelStep(n);
