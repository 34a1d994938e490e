// Issue 16, item 6: Service routes and LoadBalancer allocation, measured in a lab of one rack (spine1, tor1, r1n1,
// r1n2, ext1; two-racks.yaml without rack 2, its v4 LoadBalancer pool widened to a /25 so 100 dual-stack Services fit).
//   - endpoint → route: a dual-stack LoadBalancer Service with externalTrafficPolicy Local; each cycle creates one
//     pod with its selector on r1n1 and times, per family, from the EndpointSlice event that shows the pod's endpoint
//     ready (an API watch) to the Service's host route being in tor1's kernel FIB (BGP from the node, installed by
//     zebra); then deletes the pod and times from the slice event where it is no longer ready to the route gone.
//     The FIB is read through /proc/PID/net/{route,ipv6_route} of tor1's zebra every few ms; the read's own cost is
//     measured and reported.
//   - allocation: 100 dual-stack LoadBalancer Services in one `kubectl apply` of a multi-document YAML; per Service
//     the time from the apply's start (and from its creation seen on a watch) to its status holding both addresses.
import http from 'node:http';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import YAML from 'yaml';
import { apiRequest } from '../src/lab/api.js';
import { labDown, listLabs } from '../src/lab/down.js';
import { labPaths } from '../src/lab/paths.js';
import { readLabState } from '../src/lab/state.js';
import { labUp } from '../src/lab/up.js';
import { parseIpAddress, parseIpPrefix, prefixContainsAddress } from '../src/routes/ip-prefix.js';
import { hasRoutes } from './lib/fib-presence.js';
import { TWO_RACKS } from './lib/lab-env.js';
import { topologySubset, type TopologyDocument } from './lib/topology-subset.js';
import { RawGobgp } from './lib/gobgp-raw.js';
import { BenchError, pollUntil, sleep } from './lib/proc.js';
import { formatMs, markdownTable, percentile } from './lib/stats.js';

export interface ServicesOptions {
  lab: string;
  /** Pod create/delete cycles (each one advertise and one withdraw per family). */
  cycles: number;
  /** LoadBalancer Services created at once for the allocation latency. */
  services: number;
  workDir: string;
  /** How often the ToR's FIB is read while waiting for a route. */
  pollMs: number;
  log: (m: string) => void;
}

type Family = 'v4' | 'v6';
const FAMILIES: readonly Family[] = ['v4', 'v6'];

export interface Percentiles {
  p50: number;
  p99: number;
  max: number;
  n: number;
}

export interface ServicesResult {
  lab: { routers: string[]; nodes: string[]; tor: string; node: string; pool: string[] };
  cycles: number;
  pollMs: number;
  /** One read of the ToR's FIB for both families (what every poll costs), in ms. */
  pollCostMs: Percentiles;
  /** EndpointSlice shows the pod's endpoint ready → host route in the ToR's FIB, per family. */
  advertise: Record<Family, Percentiles>;
  /** EndpointSlice no longer shows it ready (pod deleted) → host route gone from the ToR's FIB, per family. */
  withdraw: Record<Family, Percentiles>;
  /** The same, split at the node's gobgpd: slice event → the path in (out of) its RIB (the agent's part). */
  advertiseAtNode: Record<Family, Percentiles>;
  withdrawAtNode: Record<Family, Percentiles>;
  /** One ListPath of the node's gobgpd (both families), in ms. */
  nodePollCostMs: Percentiles;
  /** Pod created → its endpoint ready in the slice (the lab kubelet and EndpointSlice controller, for scale). */
  podToReady: Percentiles;
  allocation: {
    services: number;
    /** `kubectl apply` start → each Service's status holds both addresses. */
    fromApply: Percentiles;
    /** Each Service's creation seen on the watch → its status holds both addresses. */
    fromCreate: Percentiles;
    /** `kubectl apply` start → the last Service has its addresses. */
    totalMs: number;
    /** `kubectl apply` start → kubectl returned (every Service created). */
    kubectlMs: number;
    /** Allocator passes that failed and were retried after a back-off meanwhile (the agents' logs), by error code. */
    failedPasses: Record<string, number>;
  };
}

function percentiles(values: readonly number[]): Percentiles {
  const finite = values.filter((v) => Number.isFinite(v));
  return { p50: percentile(finite, 50), p99: percentile(finite, 99), max: finite.length === 0 ? NaN : Math.max(...finite), n: finite.length };
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/** two-racks.yaml without rack 2 and with a v4 pool big enough for `services` + 1 dual-stack Services. */
async function oneRackTopology(workDir: string, services: number): Promise<{ file: string; pool: string[] }> {
  const doc = topologySubset(
    YAML.parse(await readFile(TWO_RACKS, 'utf8'), { merge: true }) as TopologyDocument & {
      services: { loadBalancerPools: { name: string; cidrs: string[]; autoAssign: boolean }[]; externalIPRanges: string[] };
    },
    { tors: ['tor1'] },
  );
  if (services + 1 > 128) throw new BenchError('BENCH_BAD_OPTIONS', `services: at most 127 fit the /25 pool, got ${services}`);
  const pool = ['203.0.113.0/25', '2001:db8:200::/120'];
  doc.services.loadBalancerPools = [{ name: 'lab', cidrs: pool, autoAssign: true }];
  doc.services.externalIPRanges = ['203.0.113.128/26', '2001:db8:201::/120'];
  await mkdir(workDir, { recursive: true });
  const file = path.join(workDir, 'one-rack.yaml');
  await writeFile(file, YAML.stringify(doc));
  return { file, pool };
}

/** A watch of one collection, each event handed over with the time it arrived (ms, hrtime). */
function watchEvents(socket: string, collection: string, onEvent: (type: string, object: Record<string, unknown>, at: number) => void): { ready: Promise<void>; stop: () => void } {
  let request: http.ClientRequest | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    request = http.request({ socketPath: socket, method: 'GET', path: `${collection}${collection.includes('?') ? '&' : '?'}watch=1`, headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new BenchError('BENCH_SETUP_FAILED', `watch ${collection} answered ${res.statusCode}`));
        return;
      }
      resolve();
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const at = now();
        buffered += chunk;
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line !== '') {
            const event = JSON.parse(line) as { type: string; object: Record<string, unknown> };
            onEvent(event.type, event.object, at);
          }
          newline = buffered.indexOf('\n');
        }
      });
      res.on('error', () => undefined);
    });
    request.on('error', reject);
    request.end();
  });
  return { ready, stop: () => request?.destroy() };
}

interface SliceEndpoint {
  conditions?: { ready?: boolean };
  targetRef?: { name?: string };
}

async function api(lab: string, method: string, urlPath: string, body?: unknown): Promise<unknown> {
  const res = await apiRequest(labPaths(lab).apiSocket, method, urlPath, body);
  if (res.status >= 300) throw new BenchError('BENCH_SETUP_FAILED', `${method} ${urlPath}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function kubectl(lab: string, args: string[], input?: string): Promise<void> {
  await execa('kubectl', ['--kubeconfig', labPaths(lab).kubeconfig, ...args], { timeout: 120_000, ...(input === undefined ? {} : { input }) });
}

function loadBalancer(name: string, namespace: string, selector: Record<string, string>): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: {
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      selector,
      ipFamilyPolicy: 'RequireDualStack',
      ipFamilies: ['IPv4', 'IPv6'],
      ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
    },
  };
}

const ingressOf = (svc: Record<string, unknown>): string[] =>
  ((svc.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined)?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '');

export async function runServices(o: ServicesOptions): Promise<ServicesResult> {
  const { file, pool } = await oneRackTopology(o.workDir, o.services);
  if (listLabs().includes(o.lab)) await labDown(o.lab);
  const started = Date.now();
  try {
    await labUp({ topologyFile: file, name: o.lab, timeoutMs: 240_000 });
    o.log(`services: lab ${o.lab} up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return await measure(o, pool);
  } finally {
    await labDown(o.lab);
    o.log(`services: lab ${o.lab} down`);
  }
}

async function measure(o: ServicesOptions, pool: string[]): Promise<ServicesResult> {
  const state = readLabState(o.lab);
  const tor = 'tor1';
  const node = 'r1n1';
  const zebra = state?.processes.find((p) => p.name === `zebra/${tor}`)?.pid;
  if (zebra === undefined) throw new BenchError('BENCH_SETUP_FAILED', `no zebra of ${tor} in lab ${o.lab}`);
  const socket = labPaths(o.lab).apiSocket;
  const selector = { app: 'svcbench' };

  // The Service, and its two addresses from the pool.
  await api(o.lab, 'POST', '/api/v1/namespaces/x/services', loadBalancer('svcbench', 'x', selector));
  const addresses = await pollUntil('x/svcbench gets an address of each family', 60_000, 100, async () => {
    const ips = ingressOf((await api(o.lab, 'GET', '/api/v1/namespaces/x/services/svcbench')) as Record<string, unknown>);
    return ips.length === 2 ? ips : undefined;
  });
  const hostRoute: Record<Family, string> = { v4: '', v6: '' };
  for (const a of addresses) hostRoute[a.includes(':') ? 'v6' : 'v4'] = a.includes(':') ? `${a}/128` : `${a}/32`;
  const inPool = FAMILIES.every((f) => pool.some((p) => prefixContainsAddress(parseIpPrefix(p)!, parseIpAddress(hostRoute[f].split('/')[0]!)!)));
  if (!inPool) throw new BenchError('BENCH_SETUP_FAILED', `x/svcbench got ${addresses.join(', ')}, not one address of each family from ${pool.join(', ')}`);
  o.log(`services: x/svcbench has ${addresses.join(', ')}`);

  // What one FIB read costs (both families, the route absent: the whole table is scanned).
  const costs: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = now();
    hasRoutes(zebra, [hostRoute.v4]);
    hasRoutes(zebra, [hostRoute.v6]);
    costs.push(now() - t);
  }

  // The slice watch: when the current pod's endpoint is first seen ready, and first seen not ready (or gone).
  let current = '';
  let phase: 'up' | 'down' = 'up';
  const readyAt: Partial<Record<Family, number>> = {};
  const goneAt: Partial<Record<Family, number>> = {};
  const watch = watchEvents(socket, '/apis/discovery.k8s.io/v1/namespaces/x/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dsvcbench', (type, object, at) => {
    const family: Family = object.addressType === 'IPv6' ? 'v6' : 'v4';
    const endpoints = type === 'DELETED' ? [] : ((object.endpoints as SliceEndpoint[] | null | undefined) ?? []);
    const ready = endpoints.some((e) => e.targetRef?.name === current && e.conditions?.ready === true);
    if (phase === 'up' && ready) readyAt[family] ??= at;
    if (phase === 'down' && !ready && readyAt[family] !== undefined) goneAt[family] ??= at;
  });
  await watch.ready;

  const fibIn: Record<Family, number[]> = { v4: [], v6: [] };
  const fibOut: Record<Family, number[]> = { v4: [], v6: [] };
  const ribIn: Record<Family, number[]> = { v4: [], v6: [] };
  const ribOut: Record<Family, number[]> = { v4: [], v6: [] };
  const gobgp = new RawGobgp(`unix://${labPaths(o.lab).gobgpSocket(node)}`);
  const afi: Record<Family, 'ipv4' | 'ipv6'> = { v4: 'ipv4', v6: 'ipv6' };
  const nodeCosts: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = now();
    for (const f of FAMILIES) await gobgp.hasPath(afi[f], hostRoute[f]);
    nodeCosts.push(now() - t);
  }
  const podToReady: number[] = [];
  const deadlineMs = 30_000;
  /**
   * Reads the ToR's FIB and the node's gobgpd RIB every pollMs until the route is `present` (or not) in both, for
   * both families, and `done()`; the first time each family was seen so in each.
   */
  const pollRoutes = async (what: string, present: boolean, done: () => boolean): Promise<{ fib: Record<Family, number>; rib: Record<Family, number> }> => {
    const fib: Partial<Record<Family, number>> = {};
    const rib: Partial<Record<Family, number>> = {};
    const stop = now() + deadlineMs;
    for (;;) {
      for (const f of FAMILIES) if (fib[f] === undefined && hasRoutes(zebra, [hostRoute[f]]) === present) fib[f] = now();
      for (const f of FAMILIES) if (rib[f] === undefined && (await gobgp.hasPath(afi[f], hostRoute[f])) === present) rib[f] = now();
      const all = FAMILIES.every((f) => fib[f] !== undefined && rib[f] !== undefined);
      if (all && done()) return { fib: fib as Record<Family, number>, rib: rib as Record<Family, number> };
      if (now() > stop) throw new BenchError('BENCH_TIMEOUT', `${what}: not within ${deadlineMs} ms (ToR FIB ${JSON.stringify(fib)}, node RIB ${JSON.stringify(rib)}, slice ${JSON.stringify({ readyAt, goneAt })})`);
      await sleep(o.pollMs);
    }
  };
  try {
    // One warm-up cycle (not counted): the agent's first Service route, sessions settled.
    for (let cycle = -1; cycle < o.cycles; cycle++) {
      current = `svcbench-${cycle + 1}`;
      phase = 'up';
      for (const f of FAMILIES) {
        delete readyAt[f];
        delete goneAt[f];
      }
      const created = now();
      await api(o.lab, 'POST', '/api/v1/namespaces/x/pods', {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: current, namespace: 'x', labels: selector },
        spec: { nodeName: node, containers: [{ name: 'serve', image: 'podroute.io/lab-podserver', ports: [{ name: 'serve-tcp', containerPort: 8080, protocol: 'TCP' }] }] },
      });
      const routedIn = await pollRoutes(`cycle ${cycle + 1}: ${current} ready and its Service routes in ${tor}'s FIB`, true, () => readyAt.v4 !== undefined && readyAt.v6 !== undefined);
      phase = 'down';
      await api(o.lab, 'DELETE', `/api/v1/namespaces/x/pods/${current}`);
      const routedOut = await pollRoutes(`cycle ${cycle + 1}: ${current} gone and its Service routes withdrawn from ${tor}'s FIB`, false, () => goneAt.v4 !== undefined && goneAt.v6 !== undefined);
      if (cycle < 0) continue;
      podToReady.push(Math.min(readyAt.v4!, readyAt.v6!) - created);
      for (const f of FAMILIES) {
        fibIn[f].push(routedIn.fib[f] - readyAt[f]!);
        fibOut[f].push(routedOut.fib[f] - goneAt[f]!);
        ribIn[f].push(routedIn.rib[f] - readyAt[f]!);
        ribOut[f].push(routedOut.rib[f] - goneAt[f]!);
      }
      if ((cycle + 1) % 10 === 0) o.log(`services: ${cycle + 1}/${o.cycles} cycles`);
      // Let the deleted pod's teardown pass before the next one starts.
      await sleep(200);
    }
  } finally {
    watch.stop();
    gobgp.close();
  }

  const allocation = await measureAllocation(o);
  return {
    lab: { routers: ['spine1', tor], nodes: ['r1n1', 'r1n2'], tor, node, pool },
    cycles: o.cycles,
    pollMs: o.pollMs,
    pollCostMs: percentiles(costs),
    advertise: { v4: percentiles(fibIn.v4), v6: percentiles(fibIn.v6) },
    withdraw: { v4: percentiles(fibOut.v4), v6: percentiles(fibOut.v6) },
    advertiseAtNode: { v4: percentiles(ribIn.v4), v6: percentiles(ribIn.v6) },
    withdrawAtNode: { v4: percentiles(ribOut.v4), v6: percentiles(ribOut.v6) },
    nodePollCostMs: percentiles(nodeCosts),
    podToReady: percentiles(podToReady),
    allocation,
  };
}

async function measureAllocation(o: ServicesOptions): Promise<ServicesResult['allocation']> {
  const names = Array.from({ length: o.services }, (_, i) => `alloc-${String(i).padStart(3, '0')}`);
  const createdAt = new Map<string, number>();
  const addressedAt = new Map<string, number>();
  const addressesOf = new Map<string, string[]>();
  const watch = watchEvents(labPaths(o.lab).apiSocket, '/api/v1/namespaces/z/services', (type, object, at) => {
    const name = (object.metadata as { name?: string } | undefined)?.name ?? '';
    if (type === 'ADDED' && !createdAt.has(name)) createdAt.set(name, at);
    const ips = ingressOf(object);
    if (ips.length === 2 && !addressedAt.has(name)) {
      addressedAt.set(name, at);
      addressesOf.set(name, ips);
    }
  });
  await watch.ready;
  const manifest = names.map((name) => YAML.stringify(loadBalancer(name, 'z', { app: name }))).join('---\n');
  try {
    const start = now();
    await kubectl(o.lab, ['apply', '-f', '-'], manifest);
    const kubectlMs = now() - start;
    await pollUntil(`all ${o.services} Services in z have both addresses`, 120_000, 20, () => (names.every((n) => addressedAt.has(n)) ? true : undefined));
    const all = names.flatMap((n) => addressesOf.get(n)!);
    if (new Set(all).size !== all.length) throw new BenchError('BENCH_SETUP_FAILED', `allocation: ${all.length - new Set(all).size} addresses handed out twice`);
    const fromApply = names.map((n) => addressedAt.get(n)! - start);
    o.log(`services: ${o.services} Services addressed ${formatMs(Math.max(...fromApply))} after the apply started`);
    return {
      services: o.services,
      fromApply: percentiles(fromApply),
      fromCreate: percentiles(names.map((n) => addressedAt.get(n)! - (createdAt.get(n) ?? NaN))),
      totalMs: Math.max(...fromApply),
      kubectlMs,
      failedPasses: await failedAllocatorPasses(o.lab),
    };
  } finally {
    watch.stop();
  }
}

/** The agents' "allocation failed; retrying" log lines (the whole lab's life: only this benchmark's Services), by code. */
async function failedAllocatorPasses(lab: string): Promise<Record<string, number>> {
  const dir = labPaths(lab).logDir;
  const codes: Record<string, number> = {};
  for (const file of (await readdir(dir)).filter((f) => f.startsWith('agent'))) {
    for (const line of (await readFile(path.join(dir, file), 'utf8')).split('\n')) {
      if (!line.includes('LoadBalancer allocation failed')) continue;
      const code = /"?code"?[=:]\s*"?([A-Z_]+)/.exec(line)?.[1] ?? 'unknown';
      codes[code] = (codes[code] ?? 0) + 1;
    }
  }
  return codes;
}

// ---- the report's section ----

export interface ServicesTarget {
  what: string;
  measured: string;
  met: boolean | undefined;
  miss?: string;
}

const pText = (p: Percentiles): string => `${formatMs(p.p50)} / ${formatMs(p.p99)} / ${formatMs(p.max)}`;

/** Section 7 of docs/benchmarks.md and issue 16's "within 1 s" targets. */
export function renderServices(s: ServicesResult): { lines: string[]; targets: ServicesTarget[] } {
  const out: string[] = [];
  out.push(
    `A lab of one rack (${s.lab.routers.join(', ')}; nodes ${s.lab.nodes.join(', ')}; two-racks.yaml without rack 2, LoadBalancer pool ${s.lab.pool.join(', ')}). ` +
      `A dual-stack LoadBalancer Service with \`externalTrafficPolicy: Local\`; each of ${s.cycles} cycles (after one warm-up) creates one pod with its selector on ${s.lab.node}, ` +
      'then deletes it. Per family, from the EndpointSlice watch event that shows the pod\'s endpoint ready (or no longer ready) to the Service\'s host route ' +
      `(/32, /128) being in (or gone from) **${s.lab.tor}'s kernel FIB** — the node's BGP advertisement as the ToR's zebra installed it — read through ` +
      `\`/proc/PID/net/route\` and \`ipv6_route\` of ${s.lab.tor}'s zebra every ${s.pollMs} ms. One read of both families costs ${pText(s.pollCostMs)} ` +
      `(p50 / p99 / max of ${s.pollCostMs.n} reads; the max is wall time, a wait for a core included), so the figures are as coarse as the interval plus that. The watch and the poller share one event loop. ` +
      'Percentiles are nearest rank: of fewer than 100 changes, the p99 is the largest. ' +
      'There is no other implementation in this lab to compare with: the side by side is IPv4 against IPv6 in the same cycles.',
    '',
  );
  const fam = (f: Family): string => (f === 'v4' ? 'IPv4' : 'IPv6');
  out.push(
    `The same changes are also timed at ${s.lab.node}'s gobgpd: the Service's path in (or gone from) its RIB (\`ListPath\` over its API socket, in the same poll; ` +
      `one call per family costs ${pText(s.nodePollCostMs)} for both), which is the agent's part (watch, plan, gobgpd call); the rest is BGP to the ToR, FRR's bgpd and zebra.`,
    '',
    markdownTable(
      ['change', 'family', "path in the node's gobgpd RIB, p50 / p99 / max", '**route in the ToR FIB**, p50 / p99 / max', 'changes'],
      [
        ...FAMILIES.map((f) => ['endpoint ready → advertised', fam(f), pText(s.advertiseAtNode[f]), pText(s.advertise[f]), String(s.advertise[f].n)]),
        ...FAMILIES.map((f) => ['last endpoint gone → withdrawn', fam(f), pText(s.withdrawAtNode[f]), pText(s.withdraw[f]), String(s.withdraw[f].n)]),
      ],
    ),
    '',
    `For scale, the lab's own part before any of this: pod created → its endpoint ready in the slice ${pText(s.podToReady)} (p50 / p99 / max; the lab kubelet and EndpointSlice controller).`,
    '',
  );
  const a = s.allocation;
  out.push(
    `Allocation: ${a.services} dual-stack LoadBalancer Services in one \`kubectl apply\` of a multi-document YAML (kubectl returned after ${formatMs(a.kubectlMs)}); ` +
      'the Lease-elected allocator in the agents writes both addresses into each status. Times to the Service watch event whose status holds both addresses; ' +
      'every address was checked to be handed out once. ' +
      `Allocator passes that failed and backed off meanwhile (the agents' logs): ${Object.keys(a.failedPasses ?? {}).length === 0 ? 'none' : Object.entries(a.failedPasses).map(([c, k]) => `${k} × \`${c}\``).join(', ')}.`,
    '',
    markdownTable(
      ['', 'p50 / p99 / max'],
      [
        ['per Service, from the apply\'s start', pText(a.fromApply)],
        ['per Service, from its creation (its ADDED event)', pText(a.fromCreate)],
        [`**all ${a.services} addressed, from the apply's start**`, formatMs(a.totalMs)],
      ],
    ),
    '',
  );
  const within = (p: Percentiles): boolean | undefined => (p.n === 0 ? undefined : p.p99 <= 1000);
  const worse = (r: Record<Family, Percentiles>): Family => (r.v4.p99 >= r.v6.p99 ? 'v4' : 'v6');
  const why = (change: string, tor: Percentiles, node: Percentiles): string =>
    `At p99 (the worse family) the ${change} took ${formatMs(tor.p99)} to the ToR's FIB, of which ${formatMs(node.p99)} until the node's gobgpd had ` +
    `${change === 'advertisement' ? 'the path' : 'dropped the path'} (p50 ${formatMs(node.p50)} of ${formatMs(tor.p50)}): ` +
    (node.p99 >= tor.p99 / 2
      ? "most of the tail is the agent's (the watch event, the plan and the gobgpd call, on a shared 2-core machine: see the load average). Next step: log the agent's slice-event-to-gobgpd time per change to tell a wait for a core from its own work."
      : 'most of the tail is after the node (BGP to the ToR, FRR and zebra). Next step: time the ToR\'s BGP RIB (vtysh) next to its FIB to split the two.');
  const adv = worse(s.advertise);
  const wd = worse(s.withdraw);
  const targets: ServicesTarget[] = [
    {
      what: 'Service route at the ToR within 1 s of the first local endpoint ready (issue 16), p99 of both families',
      measured: `p99 ${formatMs(s.advertise[adv].p99)} (${fam(adv)})`,
      met: within(s.advertise[adv]),
      miss: why('advertisement', s.advertise[adv], s.advertiseAtNode[adv]),
    },
    {
      what: 'Service route withdrawn at the ToR within 1 s of the last local endpoint gone (issue 16), p99 of both families',
      measured: `p99 ${formatMs(s.withdraw[wd].p99)} (${fam(wd)})`,
      met: within(s.withdraw[wd]),
      miss: why('withdrawal', s.withdraw[wd], s.withdrawAtNode[wd]),
    },
  ];
  return { lines: out, targets };
}
