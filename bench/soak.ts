// Soak of the agent's Kubernetes side: ClusterWatch (nodes, pods, namespaces, networkpolicies) and the agent's
// cluster loop (a dirty signal, a snapshot per wake-up) against the in-process lab API server, whose watches are
// ended every few seconds while objects change. Every 10 s it samples the abort listeners on the agent's signal
// and on the watch loops' signal, the composites Node keeps on them, and the heap (after a GC when run with
// --expose-gc); at the end it says whether both stayed flat. Not part of `make test` or `make bench`.
//   node --expose-gc dist/bench/soak.js
//   SOAK_SECONDS (default 1800)  WATCH_END_SECONDS (default 3)  SAMPLE_SECONDS (default 10)
import { getEventListeners, setMaxListeners } from 'node:events';
import YAML from 'yaml';
import { AGENT_SIGNAL_MAX_LISTENERS } from '../src/agent/agent.js';
import { DirtySignal, sleep } from '../src/reconcile/loop.js';
import { ClusterWatch } from '../src/kube/cluster-watch.js';
import { parseKubeConfig } from '../src/kube/kube-api.js';
import { LabApiServer, renderKubeconfig } from '../src/lab/apiserver/index.js';
import { createLogger } from '../src/observe/log.js';

const seconds = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number of seconds`);
  return value;
};
const SOAK_MS = seconds('SOAK_SECONDS', 1800) * 1000;
const WATCH_END_MS = seconds('WATCH_END_SECONDS', 3) * 1000;
const SAMPLE_MS = seconds('SAMPLE_SECONDS', 10) * 1000;

interface Sample {
  t: number;
  rootListeners: number;
  loopListeners: number;
  loopComposites: number | undefined;
  heapMB: number;
}

/** Node 20's record of the composites derived from a signal (internal; undefined where Node has none). */
function composites(signal: AbortSignal): number | undefined {
  const key = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kDependantSignals');
  return key === undefined ? undefined : (signal as unknown as Record<symbol, Set<unknown> | undefined>)[key]?.size;
}

function heapMB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const warnings: string[] = [];
process.on('warning', (w) => warnings.push(`${w.name}: ${w.message}`));

// A short change history (the server keeps the last changes for watches to resume from): with the default 10,000
// the server's own memory grows for the first half hour and would hide, or fake, growth on the agent's side.
const server = new LabApiServer({ eventWindow: 500 });
const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: 0 } });
const kubeConfig = parseKubeConfig(YAML.parse(renderKubeconfig(`http://127.0.0.1:${tcpPort}`)), { source: 'soak', baseDir: '/' });
const root = new AbortController();
setMaxListeners(AGENT_SIGNAL_MAX_LISTENERS, root.signal); // as the agent does
const dirty = new DirtySignal();
const watch = new ClusterWatch({
  kubeConfig,
  logger: createLogger({ level: 'error' }),
  kinds: ['nodes', 'pods', 'namespaces', 'networkpolicies'],
  onChange: () => dirty.set(),
});
const loops = (watch as unknown as { stopping: AbortController }).stopping.signal;
watch.start(root.signal);
await watch.synced();

let wakeUps = 0;
let watchEnds = 0;
let changes = 0;
// The agent's cluster loop: wakes on a change or its resync, reads a whole snapshot.
const clusterLoop = (async () => {
  while (!root.signal.aborted) {
    await dirty.wait(5_000, root.signal);
    if (root.signal.aborted) break;
    const s = watch.snapshot();
    if (s.namespaces.length >= 0) wakeUps++;
  }
})();
// Watches ended under the agent, as an API server restart or a load balancer's idle timeout does.
const ender = (async () => {
  while (!root.signal.aborted) {
    await sleep(WATCH_END_MS, root.signal);
    if (root.signal.aborted) break;
    server.endWatches();
    watchEnds++;
  }
})();
// Objects change meanwhile: a pod comes or goes every 200 ms (50 of them in turn).
server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'soak' } });
const churn = (async () => {
  const present = new Set<string>();
  for (let i = 0; !root.signal.aborted; i++) {
    const name = `p-${i % 50}`;
    if (present.delete(name)) server.delete('pods', 'soak', name);
    else {
      server.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'soak', labels: { app: 'soak' } }, spec: { containers: [{ name: 'c', image: 'x' }] } });
      present.add(name);
    }
    changes++;
    await sleep(200, root.signal);
  }
})();

const samples: Sample[] = [];
const started = Date.now();
process.stdout.write(`soak: ${SOAK_MS / 1000} s, watches ended every ${WATCH_END_MS / 1000} s, sample every ${SAMPLE_MS / 1000} s\n`);
process.stdout.write('     t  root-listeners  loop-listeners  loop-composites  heap-MB  watch-ends  changes  wake-ups\n');
while (Date.now() - started < SOAK_MS) {
  await sleep(Math.min(SAMPLE_MS, SOAK_MS - (Date.now() - started)), root.signal);
  const s: Sample = {
    t: Math.round((Date.now() - started) / 1000),
    rootListeners: getEventListeners(root.signal, 'abort').length,
    loopListeners: getEventListeners(loops, 'abort').length,
    loopComposites: composites(loops),
    heapMB: heapMB(),
  };
  samples.push(s);
  process.stdout.write(
    `${String(s.t).padStart(6)}  ${String(s.rootListeners).padStart(14)}  ${String(s.loopListeners).padStart(14)}  ${String(s.loopComposites ?? '-').padStart(15)}  ${s.heapMB.toFixed(1).padStart(7)}  ${String(watchEnds).padStart(10)}  ${String(changes).padStart(7)}  ${String(wakeUps).padStart(8)}\n`,
  );
}

root.abort();
await Promise.all([clusterLoop, ender, churn]);
await watch.stop();
await server.close();

// Listeners: the same count at every sample (a call in flight at a sample may add one: max - min <= 1).
const spread = (xs: number[]): number => Math.max(...xs) - Math.min(...xs);
const listenersFlat = samples.length > 0 && spread(samples.map((s) => s.rootListeners)) <= 1 && spread(samples.map((s) => s.loopListeners)) <= 1;
const compositeCounts = samples.map((s) => s.loopComposites ?? 0);
const compositesFlat = spread(compositeCounts) <= 4;
// Heap: the median of the last third against that of the first third (after the first sample's warm-up).
const heaps = samples.slice(1).map((s) => s.heapMB);
const third = Math.max(1, Math.floor(heaps.length / 3));
const early = median(heaps.slice(0, third));
const late = median(heaps.slice(-third));
const heapFlat = heaps.length < 3 || late - early < Math.max(2, early * 0.1);
process.stdout.write(
  [
    `listeners: ${listenersFlat ? 'flat' : 'GROWING'} (agent signal ${Math.min(...samples.map((s) => s.rootListeners))}-${Math.max(...samples.map((s) => s.rootListeners))}, watch loops' signal ${Math.min(...samples.map((s) => s.loopListeners))}-${Math.max(...samples.map((s) => s.loopListeners))})`,
    `composites kept by the watch loops' signal: ${compositesFlat ? 'flat' : 'GROWING'} (${Math.min(...compositeCounts)}-${Math.max(...compositeCounts)})`,
    `heap: ${heapFlat ? 'flat' : 'GROWING'} (median ${early.toFixed(1)} MB in the first third, ${late.toFixed(1)} MB in the last${(globalThis as { gc?: unknown }).gc === undefined ? '; run with --expose-gc for post-GC figures' : ', after GC'})`,
    `watch ends ${watchEnds}, object changes ${changes}, loop wake-ups ${wakeUps}`,
    `warnings: ${warnings.length === 0 ? 'none' : warnings.join(' | ')}`,
    '',
  ].join('\n'),
);
process.exitCode = listenersFlat && compositesFlat && heapFlat && warnings.length === 0 ? 0 : 1;
