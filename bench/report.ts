// docs/benchmarks.md from one run's results: machine first, then every figure as median (min–max) over the
// repetitions with its ratio to the comparison measured in the same run, the targets of issue 7 met or missed,
// and for each miss the reason this run's data points to and the next step.
import type { ReceiverKind } from './lib/receivers.js';
import { RECEIVER_LABELS } from './lib/receivers.js';
import { formatMs, formatRatio, formatSummary, ratio, summarize, type Summary } from './lib/stats.js';
import { renderConvergence } from './convergence.js';
import { PATH_LABELS, type DatapathResult, type PathKind } from './datapath.js';
import type { SizeResult } from './route-programming.js';
import type { FootprintResult } from './footprint.js';
import { renderHostilePolicy } from './hostile-policy.js';
import { renderServices } from './services.js';
import { renderScale } from './scale.js';
import { renderBfdSoak } from './bfd-soak.js';
import type { BenchResults, PolicyRun } from './run.js';

interface Target {
  what: string;
  measured: string;
  met: boolean | undefined;
  /** Why it was missed and what to do next (only shown when missed). */
  miss?: string;
}

const MB = 1_000_000 / 2 ** 20; // MiB per MB
/** Issue 19: podroute's route programming within this factor of the bare watcher, its kernel step of `ip -batch`. */
export const ROUTE_FLOOR_FACTOR = 1.3;
export const KERNEL_STEP_FACTOR = 1.2;
const gbps = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)} Gbit/s` : 'n/a');
const us = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)} µs` : 'n/a');
const mib = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} MiB (${(v / MB).toFixed(0)} MB)` : 'n/a');
const pct = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} %` : 'n/a');
const n = (v: number): string => v.toLocaleString('en-US');

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function verdict(met: boolean | undefined): string {
  return met === undefined ? 'not measured' : met ? 'met' : '**missed**';
}

export function renderReport(r: BenchResults): string {
  return buildReport(r).text;
}

/** The report and its targets (an update of one section takes that section's targets from here). */
function buildReport(r: BenchResults): { text: string; targets: Target[]; footprintTargets: Target[] } {
  const out: string[] = [];
  const targets: Target[] = [];
  let footprintTargets: Target[] = [];
  const m = r.machine;
  out.push('# podroute benchmarks', '');
  out.push(
    `Written by \`make bench\` (\`node dist/bench/run.js\`) from one run. Every figure is the **median (min–max) over ${r.reps} repetitions**; ` +
      'ratios compare medians measured side by side in the same run (the machine is shared and noisy: never compare against another run).',
    '',
  );
  out.push('## Machine', '');
  out.push(
    table(
      ['', ''],
      [
        ['Run', `${m.date}, commit ${m.gitCommit}, ${(r.durationS / 60).toFixed(1)} min`],
        ['CPU', `${m.cpu}, ${m.cores} cores`],
        ['Memory', `${m.memoryGiB} GiB`],
        ['OS / kernel', `${m.os} / ${m.kernel}`],
        ['Load average (1/5/15 min)', `start ${m.loadAtStart.map((l) => l.toFixed(1)).join(' / ')}, end ${r.loadAtEnd.map((l) => l.toFixed(1)).join(' / ')}`],
        ['Node.js', m.node],
        ...Object.entries(m.versions).map(([k, v]) => [k, v]),
      ],
    ),
    '',
  );

  // ---- 1. route programming ----
  const route = r.route;
  out.push('## 1. Route programming', '');
  out.push(
    'An injector gobgpd is loaded with N /32 prefixes by `AddPathStream` while its peers are administratively down. ' +
      'For each receiver in turn (the order rotates per repetition) the peer is enabled: the time runs from the injector seeing the session ' +
      'Established until all N routes are where the receiver puts them; then the peer is disabled and the time runs until all are gone. ' +
      'Kernel routes are counted through `/proc/PID/net/fib_triestat` of a process in the receiver namespace (a netlink-side count of the FIB, ' +
      'no route dump), polled with a pause of at least 5x the read\'s own cost; gobgpd alone is counted with `GetTable`, whose cost grows with N (see "one count read"), so that figure is only as fine as about 5x that cost. ' +
      'The bare watcher is the floor of podroute\'s design: its own gobgpd, run as the agent runs it, and `bench/bare-watcher.ts`, the smallest ' +
      'grpc-js client of the agent\'s WatchEvent stream, which walks the wire for each path\'s prefix and withdraw flag and only counts ' +
      '(no decoding, no selection, no kernel). ' +
      'podroute runs gobgpd + `podroute agent` against an in-process lab API server holding its Node (the injector is an external peer from the ' +
      '`podroute.io/peers` annotation)' +
      (route?.agentNodeOptions === undefined
        ? '.'
        : `, with the DaemonSet's Node.js flags (${route.agentNodeOptions.length === 0 ? 'none' : route.agentNodeOptions.map((a) => `\`${a}\``).join(' ')}).`),
    '',
  );
  if (route === undefined) out.push(`Not measured: ${r.errors.route ?? 'not selected'}`, '');
  for (const s of route?.sizes ?? []) {
    const kinds = Object.keys(s.program).length > 0 ? (Object.keys({ ...s.program, ...s.withdraw, ...s.establish }) as ReceiverKind[]) : [];
    out.push(`### N = ${n(s.n)}`, '');
    const floor = s.program.watcher;
    const floorWithdraw = s.withdraw.watcher;
    const frr = s.program.frr;
    out.push(
      table(
        ['receiver', 'Established → all N installed', 'vs bare watcher', 'vs FRR', 'withdraw: disable → all gone', 'vs bare watcher', 'enable → Established (BGP connect, not counted)'],
        [
          ...kinds.map((k) => [
            RECEIVER_LABELS[k],
            formatSummary(s.program[k]),
            formatRatio(ratio(s.program[k], floor)),
            formatRatio(ratio(s.program[k], frr)),
            formatSummary(s.withdraw[k]),
            formatRatio(ratio(s.withdraw[k], floorWithdraw)),
            formatSummary(s.establish[k]),
          ]),
          [RECEIVER_LABELS['ip-batch'], formatSummary(s.ipBatchAdd), formatRatio(ratio(s.ipBatchAdd, floor)), formatRatio(ratio(s.ipBatchAdd, frr)), formatSummary(s.ipBatchDel), '—', '—'],
        ],
      ),
      '',
    );
    out.push(
      table(
        ['kernel step (same routes, same namespace)', 'add', 'delete'],
        [
          ['`ip -batch` (floor)', formatSummary(s.ipBatchAdd), formatSummary(s.ipBatchDel)],
          ['podroute RouteReconciler (plan + `ip -batch`)', formatSummary(s.reconcilerAdd), formatSummary(s.reconcilerDel)],
          ['ratio', formatRatio(ratio(s.reconcilerAdd, s.ipBatchAdd)), formatRatio(ratio(s.reconcilerDel, s.ipBatchDel))],
        ],
      ),
      '',
    );
    const extra: string[] = [`injector load (AddPathStream of ${n(s.n)} paths, until its RIB holds them): ${formatMs(s.injectorLoadMs)}`];
    extra.push(`one count read: ${Object.entries(s.countCostMs).map(([k, v]) => `${k} ${formatMs(v)}`).join(', ')}`);
    if (s.agentRssMiB !== undefined) extra.push(`podroute agent RSS with ${n(s.n)} routes: ${mib(s.agentRssMiB)}`);
    if (s.agentCpuMsPerCycle !== undefined) extra.push(`podroute agent CPU per install + withdraw cycle: ${formatSummary(s.agentCpuMsPerCycle)}`);
    if (s.gobgpdCpuMsPerCycle !== undefined) extra.push(`podroute's gobgpd CPU over the same cycles: ${formatSummary(s.gobgpdCpuMsPerCycle)}`);
    out.push(...extra.map((e) => `- ${e}`), '');
    if (s.failures.length > 0) out.push('Failures:', '', ...s.failures.map((f) => `- ${f.split('\n')[0]}`), '');
    const ours = s.program.podroute;
    if (ours !== undefined || s.failures.some((f) => f.includes('podroute'))) {
      const unfinished = ours === undefined || ours.n === 0;
      const vsFloor = ratio(ours, floor);
      const vsFrr = ratio(ours, frr);
      targets.push({
        what: `podroute within ${ROUTE_FLOOR_FACTOR}x of the bare watcher, N=${n(s.n)}`,
        measured: unfinished ? 'did not finish' : `${formatMs(ours.median)} vs ${formatMs(floor?.median ?? NaN)} (${formatRatio(vsFloor)})`,
        met: unfinished ? false : Number.isFinite(vsFloor) ? vsFloor <= ROUTE_FLOOR_FACTOR : undefined,
        miss: routeMissReason(r, s),
      });
      const ourWithdraw = s.withdraw.podroute;
      const vsFloorWithdraw = ratio(ourWithdraw, floorWithdraw);
      targets.push({
        what: `podroute withdraws within ${ROUTE_FLOOR_FACTOR}x of the bare watcher, N=${n(s.n)}`,
        measured: ourWithdraw === undefined || ourWithdraw.n === 0 ? 'did not finish' : `${formatMs(ourWithdraw.median)} vs ${formatMs(floorWithdraw?.median ?? NaN)} (${formatRatio(vsFloorWithdraw)})`,
        met: ourWithdraw === undefined || ourWithdraw.n === 0 ? false : Number.isFinite(vsFloorWithdraw) ? vsFloorWithdraw <= ROUTE_FLOOR_FACTOR : undefined,
        miss: routeMissReason(r, s),
      });
      const agentCpu = s.agentCpuMsPerCycle?.median ?? NaN;
      const gobgpdCpu = s.gobgpdCpuMsPerCycle?.median ?? NaN;
      targets.push({
        what: `podroute agent CPU per install + withdraw no more than its gobgpd's, N=${n(s.n)}`,
        measured: `${formatMs(agentCpu)} vs ${formatMs(gobgpdCpu)} (${formatRatio(agentCpu / gobgpdCpu)})`,
        met: Number.isFinite(agentCpu / gobgpdCpu) ? agentCpu <= gobgpdCpu : undefined,
        miss: routeMissReason(r, s),
      });
      targets.push({
        what: `podroute no slower than FRR, N=${n(s.n)}`,
        measured: ours === undefined || ours.n === 0 ? 'did not finish' : `${formatMs(ours.median)} vs ${formatMs(frr?.median ?? NaN)} (${formatRatio(vsFrr)})`,
        met: ours === undefined || ours.n === 0 ? false : Number.isFinite(vsFrr) ? vsFrr <= 1 : undefined,
        miss: routeMissReason(r, s),
      });
    }
    const step = ratio(s.reconcilerAdd, s.ipBatchAdd);
    targets.push({
      what: `podroute kernel step within ${KERNEL_STEP_FACTOR}x of \`ip -batch\`, N=${n(s.n)}`,
      measured: `${formatMs(s.reconcilerAdd.median)} vs ${formatMs(s.ipBatchAdd.median)} (${formatRatio(step)})`,
      met: Number.isFinite(step) ? step <= KERNEL_STEP_FACTOR : undefined,
      miss:
        'The reconciler plans only the changed prefixes, feeds them to one long-lived `ip -force -batch -` process and does not read the table ' +
        'back after an accepted batch; its batch applier measured alone is level with `ip -batch`. ' +
        `The remaining gap at N = ${n(s.n)} is not yet located. Next step: profile \`RouteReconciler\` at this N.`,
    });
  }
  if (route?.decode !== undefined) {
    const d = route.decode;
    out.push('### Decoding learned paths', '');
    out.push(
      `gobgpd 3.10 sends one WatchEvent message per prefix (${d.bytesPerMessage} bytes here); ${n(d.routes)} such messages decoded in a tight loop:`,
      '',
      table(
        ['decoder', 'per route', 'ratio'],
        [
          ['podroute hand-written wire decoder', formatSummary(d.handWrittenUs, us), '1.00x'],
          ['generic decoding (protobufjs, read as proto-loader reads)', formatSummary(d.genericUs, us), formatRatio(ratio(d.genericUs, d.handWrittenUs))],
        ],
      ),
      '',
    );
    targets.push({ what: 'decoding learned paths under 5 µs per route', measured: us(d.handWrittenUs.median), met: d.handWrittenUs.median < 5 });
  }
  if (r.routeProfile !== undefined) {
    const p = r.routeProfile;
    out.push(`### Where the agent's time goes (N = ${n(p.n)}, one extra podroute-only pass under \`node --cpu-prof\`)`, '');
    out.push(`Busy CPU from enabling the peer until every route was withdrawn again (the agent's start left out): ${formatMs(p.busyMs)}. Self time of the busiest functions:`, '');
    out.push(table(['function', 'where', 'self time', 'share'], p.top.map((e) => [`\`${e.fn}\``, e.where, formatMs(e.ms), pct(e.percent)])), '');
  } else if (r.errors.profile !== undefined) {
    out.push(`Profiling pass failed: ${r.errors.profile}`, '');
  }

  // ---- 2. convergence ----
  out.push('## 2. Convergence', '');
  const c = r.convergence;
  if (c === undefined) out.push(`Not measured: ${r.errors.convergence ?? 'not selected'}`, '');
  else if ((c as Partial<typeof c>).mechanisms === undefined || (c as Partial<typeof c>).joinPassive === undefined) {
    // Saved results of an earlier version of bench/convergence (no ToR dialing/listening split): not comparable.
    out.push('These saved results come from an earlier version of the convergence benchmark (no split between the ToR dialing and only listening): re-run it to render this section.', '');
  } else {
    const sec = renderConvergence(c);
    out.push(...sec.lines);
    targets.push(...sec.targets);
  }

  // ---- 3. data path ----
  out.push('## 3. Data path (two-racks lab)', '');
  const d = r.datapath;
  if (d === undefined) out.push(`Not measured: ${r.errors.datapath ?? 'not selected'}`, '');
  else {
    // Saved results of earlier versions lack the rounds and the per-round and CPU figures.
    const dp = d as Partial<DatapathResult> & Pick<DatapathResult, 'from' | 'to' | 'throughputGbps' | 'retransmits' | 'rttMs' | 'mtu' | 'failures'>;
    const rounds = dp.runs;
    const pings = Math.max(0, ...Object.values(d.rttMs).map((x) => x?.n ?? 0));
    out.push(
      (rounds === undefined
        ? `iperf3 TCP (one stream, ${r.reps} runs each, interleaved)`
        : `iperf3 TCP (one stream) in ${rounds} rounds, every path once per round with the order rotated by one each round ` +
          (rounds >= 7 ? '(at least 7 rounds whatever the repetitions: single runs on this shared machine vary by ±30 %)' : '(a smoke run: a full run measures at least 7 rounds)')) +
        `, and ping (50 × 20 ms${rounds !== undefined && pings < rounds ? `, in the first ${pings} rounds` : ''}) from ${d.from.node} to ${d.to.node} (different racks: ` +
        'node → ToR → spine → ToR → node). Pods: ' +
        `${d.from.pod} → ${d.to.pod}. The VXLAN overlay (VNI 4242, MTU ${d.mtu.vxlan ?? 'n/a'}) joins a pod namespace of the benchmark behind each of the same two nodes. ` +
        (d.throughputGbps['node-to-pod'] === undefined
          ? ''
          : 'The split paths say where the pod path\'s extra cost is: pod → pod with bridge netfilter off, node → pod (the receiving end only), pod → node (the sending end only).') +
        (dp.cpuSecondsPerGB === undefined
          ? ''
          : ' CPU per GB is the CPU time of iperf3\'s sender and receiver (user + system, which holds the softirq work of veth, bridge and netfilter) per GB carried; ' +
            'the per-round ratios compare each path with node-to-node measured in the same round, next to it in time.'),
      '',
    );
    const node = d.throughputGbps.node;
    const order: PathKind[] = ['node', 'pod-routed', 'vxlan', 'pod-routed-no-brnf', 'node-to-pod', 'pod-to-node'];
    const kinds = order.filter((k) => d.throughputGbps[k] !== undefined);
    const x = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)}x` : 'n/a');
    const perGB = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)} s/GB` : 'n/a');
    out.push(
      table(
        [
          'path',
          'throughput',
          'vs node-to-node (medians)',
          ...(dp.pairedRatio === undefined ? [] : ['vs node-to-node, per round']),
          ...(dp.cpuSecondsPerGB === undefined ? [] : ['CPU per GB']),
          ...(dp.pairedCostRatio === undefined ? [] : ['CPU per GB vs node-to-node, per round']),
          'retransmits per run',
          'ping RTT',
          'MTU',
        ],
        kinds.map((k) => [
          PATH_LABELS[k],
          formatSummary(d.throughputGbps[k], gbps),
          formatRatio(ratio(d.throughputGbps[k], node)),
          ...(dp.pairedRatio === undefined ? [] : [formatSummary(dp.pairedRatio[k], x)]),
          ...(dp.cpuSecondsPerGB === undefined ? [] : [formatSummary(dp.cpuSecondsPerGB[k], perGB)]),
          ...(dp.pairedCostRatio === undefined ? [] : [formatSummary(dp.pairedCostRatio[k], x)]),
          formatSummary(d.retransmits[k], (v) => v.toFixed(0)),
          formatSummary(d.rttMs[k], (v) => `${v.toFixed(3)} ms`),
          String(d.mtu[k] ?? 'n/a'),
        ]),
      ),
      '',
    );
    if (d.failures.length > 0) out.push('Failures:', '', ...d.failures.map((f) => `- ${f.split('\n')[0]}`), '');
    const podVsNode = ratio(d.throughputGbps['pod-routed'], node);
    const pairedPod = dp.pairedRatio?.['pod-routed'];
    targets.push({
      what: 'routed pod-to-pod at least 0.95x of node-to-node',
      measured: formatRatio(podVsNode) + (pairedPod === undefined || pairedPod.n === 0 ? '' : ` (medians); per round ${formatSummary(pairedPod, x)}`),
      met: Number.isFinite(podVsNode) ? podVsNode >= 0.95 : undefined,
      miss: datapathMissReason(dp),
    });
    const podVsVx = ratio(d.throughputGbps['pod-routed'], d.throughputGbps.vxlan);
    targets.push({ what: 'routed pod-to-pod ahead of VXLAN', measured: formatRatio(podVsVx), met: Number.isFinite(podVsVx) ? podVsVx > 1 : undefined });
  }

  // ---- 4. NetworkPolicy ----
  out.push('## 4. NetworkPolicy (bench/policy)', '');
  const pol = r.policy;
  if (pol === undefined) out.push(`Not measured: ${r.errors.policy ?? 'not selected'}`, '');
  else {
    const first = pol[0]!;
    const s = (f: (p: PolicyRun) => number): Summary => summarize(pol.map(f));
    const has = (f: (p: PolicyRun) => unknown): boolean => pol.every((p) => f(p) !== undefined);
    const rounds = first.rounds === undefined ? '' : ` Full sync and floor are each the median of ${first.rounds} alternating rounds in fresh namespaces.`;
    const changes = first.labelChanges === undefined ? '' : ` ${n(first.labelChanges)} label changes per run by each compiler, alternating${first.labelChangeGapMs === undefined ? '' : `, each into a settled kernel (${n(first.labelChangeGapMs)} ms after the one before)`} (${n(first.labelChangesThatWrote ?? 0)} of all changes wrote to the kernel; the others changed nothing that matters to any policy).`;
    const rows: string[][] = [
      ['compile (from scratch)', formatSummary(s((p) => p.compileMs))],
      ...(has((p) => p.coldCompileMs) ? [['compile (incremental compiler, cold: what a full sync runs)', formatSummary(s((p) => p.coldCompileMs ?? NaN))]] : []),
      ['full sync (read + compile + plan + apply into an empty kernel; the read runs during the compile)', formatSummary(s((p) => p.fullSyncMs))],
      ...(has((p) => p.fullSyncApplyMs)
        ? [
            ['of which plan + apply, after the compile', formatSummary(s((p) => p.fullSyncApplyMs ?? NaN))],
            ['of which rendering the rules, while the sets load', formatSummary(s((p) => p.fullSyncRenderMs ?? NaN))],
          ]
        : []),
      ['floor: the same ruleset by raw `ipset restore`, then `iptables-restore` and `ip6tables-restore` at once', formatSummary(s((p) => p.floorMs))],
      ['full sync vs floor', formatSummary(s((p) => p.fullSyncOverFloor), (v) => `${v.toFixed(2)}x`)],
      ['single pod label change until applied, p50', formatSummary(s((p) => p.labelChangeMs.p50))],
      ['single pod label change until applied, p99', formatSummary(s((p) => p.labelChangeMs.p99))],
      ...(has((p) => p.labelChangeComputeMs)
        ? [['of which compile + plan, p50 / p99', `${formatSummary(s((p) => p.labelChangeComputeMs?.p50 ?? NaN))} / ${formatSummary(s((p) => p.labelChangeComputeMs?.p99 ?? NaN))}`]]
        : []),
      ...(has((p) => p.labelChangeWritingMs)
        ? [[`of which the changes that wrote to the kernel (${n(first.labelChangeWritingMs?.n ?? 0)} per run), p50 / p99`, `${formatSummary(s((p) => p.labelChangeWritingMs?.p50 ?? NaN))} / ${formatSummary(s((p) => p.labelChangeWritingMs?.p99 ?? NaN))}`]]
        : []),
      ...(has((p) => p.emptyRestoreMs)
        ? [['for scale: one `iptables-restore --noflush` with nothing to change, at this table size', formatSummary(s((p) => p.emptyRestoreMs ?? NaN))]]
        : []),
      ...(has((p) => p.smallCommitBothFamiliesMs)
        ? [['for scale: the smallest write to both families by raw restores run to their end (empty chain created and deleted, both at once)', formatSummary(s((p) => p.smallCommitBothFamiliesMs ?? NaN))]]
        : []),
      ...(has((p) => p.labelChangeScratchMs)
        ? [
            ['side by side: the same changes compiled from scratch (before), p50', formatSummary(s((p) => p.labelChangeScratchMs?.p50 ?? NaN))],
            ['side by side: the same changes compiled from scratch (before), p99', formatSummary(s((p) => p.labelChangeScratchMs?.p99 ?? NaN))],
          ]
        : []),
    ];
    out.push(
      `${n(first.pods)} local pods, ${n(first.policies)} policies → ${n(first.chains)} chains, ${n(first.rules)} rules, ${n(first.sets)} ipsets with ${n(first.setMembers)} members; ` +
        `${pol.length} runs of \`bench/policy.js\`, each in fresh namespaces.${rounds}${changes}`,
      '',
      table(['figure', 'median (min–max)'], rows),
      '',
    );
    const sync = s((p) => p.fullSyncMs).median;
    const overFloor = s((p) => p.fullSyncOverFloor).median;
    const p99 = s((p) => p.labelChangeMs.p99).median;
    const compute99 = s((p) => p.labelChangeComputeMs?.p99 ?? NaN).median;
    targets.push({ what: 'NetworkPolicy: full sync under 1 s (1,000 pods, 500 policies)', measured: formatMs(sync), met: Number.isFinite(sync) ? sync < 1000 : undefined, miss: 'The machine was loaded (see the load average). The cold compile (JIT warm-up included) runs before the kernel work, on the two cores the restore processes need too.' });
    targets.push({
      what: 'NetworkPolicy: full sync within 1.3x of the raw restore floor',
      measured: formatRatio(overFloor),
      met: Number.isFinite(overFloor) ? overFloor <= 1.3 : undefined,
      miss:
        `Plan + apply took ${formatMs(s((p) => p.fullSyncApplyMs ?? NaN).median)} against the floor's ${formatMs(s((p) => p.floorMs).median)} (the rules are rendered while the sets load); ` +
        `what a full sync adds is the cold compile (${formatMs(s((p) => p.coldCompileMs ?? NaN).median)}, JIT warm-up included), on two cores shared with the restore processes. ` +
        "In a cold compile V8's background compiler threads use about twice the main thread's CPU (per-thread CPU from /proc): that is CPU the restores then lack. " +
        'Next step: less code for V8 to optimize and fewer passes over the pods (pods labelled alike judged once); overlapping the compile with the kernel work did not help (both cores are busy).',
    });
    targets.push({
      what: 'NetworkPolicy: single pod label change at most 20 ms p99',
      measured: formatMs(p99),
      met: Number.isFinite(p99) ? p99 <= 20 : undefined,
      miss:
        `Compile + plan took ${formatMs(compute99)} at p99; the changes that wrote to the kernel took ${formatMs(s((p) => p.labelChangeWritingMs?.p50 ?? NaN).median)} at p50 ` +
        `(${formatMs(s((p) => p.labelChangeWritingMs?.p99 ?? NaN).median)} at p99, the first of them starting the kept \`ipset -\` process). A label change writes set entries only ` +
        '(which policies select a pod and whether it is isolated are set members, see src/policy/compile.ts), through one `ipset -` process kept between writes.',
    });
  }

  const pd = r.policyDatapath;
  out.push('### Packet path with 0 vs many policies (bench/policy-datapath)', '');
  if (pd === undefined) out.push(`Not measured: ${r.errors['policy-datapath'] ?? 'not selected'}`, '');
  else {
    out.push(
      `iperf3 TCP from ${pd.from.pod} (${pd.from.node}) to ${pd.to.pod} (${pd.to.node}) across racks in the two-racks lab, ${pd.runs.length / 2} alternations of ` +
        `no policy and ${n(pd.policies)} policies (mixed shapes, all in the two pods' namespaces, selecting them and allowing the traffic), written through the ` +
        `lab API server and enforced by the agents before each run (${pd.kernel.map((k) => `${k.node}: ${n(k.chains)} chains, ${n(k.rules)} rules`).join('; ')}).`,
      '',
      table(
        ['figure', 'median (min–max)'],
        [
          ['throughput, no policy', formatSummary(pd.gbps.none, gbps)],
          [`throughput, ${n(pd.policies)} policies`, formatSummary(pd.gbps.policies, gbps)],
          ['with policies vs without (medians)', formatRatio(pd.ratio)],
          ...(pd.pairRatios === undefined ? [] : [['with vs without within each alternation: median (min–max)', formatSummary(summarize(pd.pairRatios), (v) => `${v.toFixed(2)}x`)]]),
          ['time until both agents enforced the policies (API writes included)', formatSummary(summarize(pd.enforceMs))],
        ],
      ),
      '',
      `Runs in order: ${pd.runs.map((x) => `${x.state === 'none' ? '0' : n(pd.policies)}: ${x.gbps.toFixed(2)}`).join(', ')} Gbit/s.`,
      '',
    );
    const pairMedian = summarize(pd.pairRatios ?? []).median;
    targets.push({
      what: `NetworkPolicy: packet path flat in the number of policies (iperf3 with ${n(pd.policies)} vs 0 within 5 %)`,
      measured: `${formatRatio(pd.ratio)} (medians), ${formatRatio(pairMedian)} (alternation pairs)`,
      met: Number.isFinite(pd.ratio) ? Math.abs(pd.ratio - 1) <= 0.05 && (!Number.isFinite(pairMedian) || Math.abs(pairMedian - 1) <= 0.05) : undefined,
      miss:
        `The runs of one state alone spread from ${gbps(Math.min(pd.gbps.none.min, pd.gbps.policies.min))} to ${gbps(Math.max(pd.gbps.none.max, pd.gbps.policies.max))} on this shared machine, far more than the 5 % under test. ` +
        'Established packets are accepted by the third rule of our forward chain whatever the number of policies (new connections pass at most 64 bucket rules and their bucket). ' +
        'Next step: measure on an idle machine, or pin iperf3 and the lab to cores; more alternations.',
    });
  }

  // ---- 5. footprint ----
  const footprintFrom = targets.length;
  out.push('## 5. Footprint', '');
  const f = r.footprint;
  if (f === undefined) out.push(`Not measured: ${r.errors.footprint ?? 'not selected'}`, '');
  else {
    // Saved results of earlier versions lack the agent's flags and the idle window.
    const fp = f as Partial<FootprintResult> & Omit<FootprintResult, 'nodeOptions' | 'idleWindow'>;
    const flags = fp.nodeOptions;
    const idleMs = fp.idleWindow === undefined ? NaN : (fp.idleWindow.toUs - fp.idleWindow.fromUs) / 1000;
    const smallSize = route?.sizes[0];
    const small = smallSize?.agentRssMiB;
    const smallFlags = route?.agentNodeOptions === undefined ? ' (without the DaemonSet\'s Node.js flags)' : '';
    out.push(
      `\`podroute agent\` + gobgpd on one node of a synthetic cluster in an in-process lab API server: ${n(f.nodes)} nodes (racks of 20, AS per rack, ` +
        `same-asn mesh: 19 iBGP peers), ${n(f.pods)} pods (${f.localPods} on this node), ${n(f.policies)} NetworkPolicies. ` +
        `Churn: ${n(f.churn.changes)} changes (pod label changes on this node and elsewhere, pods replaced, policies rewritten) at a steady rate.` +
        (flags === undefined ? '' : ` The agent runs with the DaemonSet's Node.js flags (its NODE_OPTIONS): ${flags.length === 0 ? 'none' : flags.map((a) => `\`${a}\``).join(' ')}, and its metrics server on.`) +
        (fp.agentEnv === undefined ? '' : ` Its environment has the DaemonSet's ${Object.entries(fp.agentEnv).map(([k, v]) => `\`${k}=${v}\``).join(', ')} (glibc's malloc: one arena, large blocks given back).`),
      '',
      table(
        ['figure', 'value'],
        [
          ['start-up until the agent reports its Node ready', formatMs(f.startupMs)],
          [f.settled ? 'after ready, busy until a 2 s window cost under 5 % of a core' : 'after ready, still busy (over 5 % of a core) when idle measuring began', formatMs(f.settleMs)],
          ...(Number.isFinite(idleMs) ? [['idle measuring window', formatMs(idleMs)]] : []),
          ['agent RSS, idle', mib(f.idle.rssMiB)],
          ['agent CPU, idle', pct(f.idle.cpuPercent)],
          ['agent RSS, max under churn', mib(f.churn.rssMiBMax)],
          ['agent CPU under churn', pct(f.churn.cpuPercent)],
          ['gobgpd RSS, idle', mib(f.idle.gobgpdRssMiB)],
          ...(small === undefined || smallSize === undefined ? [] : [[`for scale: agent RSS on a one-node cluster (route benchmark, N = ${n(smallSize.n)})${smallFlags}`, mib(small)]]),
        ],
      ),
      '',
    );
    const worst = Math.max(f.idle.rssMiB, f.churn.rssMiBMax);
    targets.push({
      what: 'agent under 150 MB RSS (synthetic 1,000-node cluster, idle and churn)',
      measured: mib(worst),
      met: worst / MB < 150,
      miss:
        (flags === undefined
          ? ''
          : 'Watched objects are cached as slim copies, the agent runs with the DaemonSet\'s V8 flags, and it no longer loads @kubernetes/client-node at runtime ' +
            '(a small API client in src/kube/kube-api.ts; the library alone cost ~60 MB RSS). ') +
        (small !== undefined ? `The same agent on a one-node cluster (route benchmark${smallFlags}) holds ${mib(small)}; the synthetic cluster adds ${mib(worst - small)}. ` : '') +
        'A heap snapshot of the idle agent (`--heapsnapshot-signal`, this cluster, measured apart): ~57 MiB of live V8 heap in ~160 MiB RSS; ' +
        '~44 MiB of the RSS is the node binary\'s code (file-backed), most of the rest V8\'s committed pages beyond the live heap (65–78 MiB of ' +
        '256 KiB pages) and the command thread\'s own heap. The cached pods were the largest part of the live heap (a dozen small objects ' +
        'each): replicas now share one frozen copy of their labels and container ports, and cached pods drop their unread resourceVersion ' +
        '(66 MiB live before). Under churn the live heap stays at ~55 MiB and V8 lets it grow to ~75–80 MiB between full collections (`--trace-gc`); ' +
        'the rest of the growth was glibc\'s: one malloc arena per thread that allocated (V8\'s helpers, libuv\'s pool, the command thread), ' +
        'each keeping what it freed. The DaemonSet now sets `MALLOC_ARENA_MAX=1` and `MALLOC_MMAP_THRESHOLD_=131072` (side by side on this ' +
        'cluster, two alternating rounds: peak under churn 178–179 MiB without them, 149–151 MiB with them, idle 140–141 vs 130–131 MiB; agent CPU within the noise, also for ' +
        'a 10,000-route install). The policy compiler no longer builds a key string per pod per compile (finds unchanged pods by their object) ' +
        'and the planner checks a set\'s entries once per entry list: the agent\'s CPU under this churn went from 120–126 % to 35–37 % of a core ' +
        '(alternating rounds), which also makes less garbage. Next step: the first full read after a write (it parses 34,000 set entries and ' +
        '12,000 rules; the idle RSS grows by ~17 MiB at that resync) and V8\'s growth between full collections.',
    });
    const idleMiss =
      `Measured over a ${Number.isFinite(idleMs) ? `${formatMs(idleMs)} ` : ''}window that began ${f.settled ? 'once a 2 s window cost under 5 % of a core' : 'while start-up work still ran'}. ` +
      'Each periodic resync now skips its work when nothing changed: routes, connected networks and link MTUs are read again only after a netlink ' +
      'notification (one `ip monitor`, a safety read every 10th/30th resync); the policy resync compiles and plans nothing when no snapshot came ' +
      'and the kernel reads as when it was last found in sync, and it reads only a fingerprint for that: our rules, and our sets listed by name ' +
      'and hashed in the command thread (1.6 MB here, never decoded or copied to the main thread); every 10th such resync reads everything, ' +
      'which also finds a stray set of ours; the node state is not re-planned when Nodes, password files and MTU are unchanged; peer Events ' +
      'follow gobgpd\'s peer watch instead of `ListPeer` every 5 s; masquerade lists only its own sets by name instead of parsing all of ' +
      '`ipset save`. Node.js process metrics run only with a metrics server, and this benchmark runs the agent with one, as the DaemonSet ' +
      'does: prom-client times the event loop every 10 ms (0.3–0.6 % of a core in an otherwise idle process, measured apart; a coarser ' +
      'timer would report every loop as lagging by its period). What remains, measured apart on this cluster (per-thread CPU from /proc, ' +
      '`--trace-gc`, `strace -c`): the window holds two pieces of start-up work, V8\'s memory reducer (two full collections ~8 s after the ' +
      'first compile, ~0.3 s of CPU across V8\'s threads) and the first policy resync after the start-up write, which reads and plans in full ' +
      'once to prove the fingerprint (~0.3 s, once per change: it plans with the rules that went in, without compiling again). The steady ' +
      'minute after them cost (one run each) 0.74 % of a core with the metrics server (main thread 0.56 %; ~195 epoll wakeups a second, the 10 ms timer\'s) ' +
      'and 0.42 % without it (main thread 0.22 %, command thread 0.10 %, V8\'s helpers the rest). Next step: a cheaper proof (it parses and ' +
      'sorts the 34,000 set members here) and an event-loop delay measurement that does not wake an idle agent 100 times a second.';
    targets.push({
      what: 'agent idle CPU near zero (under 1 % of a core)',
      measured: pct(f.idle.cpuPercent),
      met: f.idle.cpuPercent < 1,
      miss: idleMiss,
    });
    targets.push({
      what: 'agent idle CPU under 0.5 % of a core (issue 19)',
      measured: pct(f.idle.cpuPercent),
      met: f.idle.cpuPercent < 0.5,
      miss: idleMiss,
    });
  }
  footprintTargets = targets.slice(footprintFrom);

  // ---- 6. hostile NetworkPolicies (issue 14) ----
  out.push('## 6. NetworkPolicy: hostile policies', '');
  const hp = r.hostilePolicy;
  if (hp === undefined) out.push(`Not measured: ${r.errors['hostile-policy'] ?? 'not selected'}`, '');
  else {
    const sec = renderHostilePolicy(hp);
    out.push(...sec.lines);
    targets.push(...sec.targets);
  }

  // ---- 7. Service routes and LoadBalancer allocation (issue 16) ----
  out.push('## 7. Services: routes at the ToR and LoadBalancer allocation', '');
  const sv = r.services;
  if (sv === undefined) out.push(`Not measured: ${r.errors.services ?? 'not selected'}`, '');
  else {
    const sec = renderServices(sv);
    out.push(...sec.lines);
    targets.push(...sec.targets);
  }

  // ---- 8. scale: full mesh and route reflectors (issue 17) ----
  // Left out of --quick like bfd-soak (two lab ups): the section is written when it ran or failed.
  if (r.scale !== undefined || r.errors.scale !== undefined) {
    out.push(`${SCALE_HEADING}`, '');
    if (r.scale === undefined) out.push(`Not measured: ${r.errors.scale}`, '');
    else {
      const sec = renderScale(r.scale);
      out.push(...sec.lines);
      targets.push(...sec.targets);
    }
  }

  // ---- 9. BFD under load (issue 17 part 6): a long soak, only in the report when it was run (or failed) ----
  if (r.bfdSoak !== undefined || r.errors['bfd-soak'] !== undefined) {
    out.push(BFD_SOAK_HEADING, '');
    if (r.bfdSoak === undefined) out.push(`Not measured: ${r.errors['bfd-soak']}`, '');
    else {
      const sec = renderBfdSoak(r.bfdSoak);
      out.push(...sec.lines);
      targets.push(...sec.targets);
    }
  }

  // ---- targets ----
  const summary: string[] = [TARGETS_HEADING, ''];
  summary.push(table(['target', 'this run', 'verdict'], targets.map((t) => [t.what, t.measured, verdict(t.met)])), '');
  const misses = targets.filter((t) => t.met === false);
  if (misses.length > 0) {
    summary.push('### Missed: reason and next step', '');
    const seen = new Set<string>();
    for (const t of misses) {
      const text = t.miss ?? 'No explanation recorded: see the figures above.';
      summary.push(`- **${t.what}** (${t.measured}). ${seen.has(text) ? 'Same reason as above.' : text}`);
      seen.add(text);
    }
    summary.push('');
  }
  const errors = Object.entries(r.errors);
  if (errors.length > 0) summary.push('### Benchmarks that failed (in part)', '', ...errors.map(([k, v]) => `- ${k}: ${String(v).split('\n').find((l) => l.startsWith('bench/policy:')) ?? String(v).split('\n')[0]}`), '');
  // Targets go right after the machine section.
  const machineEnd = out.indexOf('## 1. Route programming');
  out.splice(machineEnd, 0, ...summary);
  return { text: out.join('\n').replace(/\n{3,}/g, '\n\n'), targets, footprintTargets };
}

function routeMissReason(r: BenchResults, s: SizeResult): string {
  const p = r.routeProfile;
  const profile =
    p === undefined
      ? 'No profile was taken in this run. '
      : `The profile of the agent (N = ${n(p.n)}, below) shows where its ${formatMs(p.busyMs)} of CPU went: ${p.top.slice(0, 4).map((e) => `\`${e.fn}\` ${pct(e.percent)}`).join(', ')}. `;
  // Whether the agent was mostly idle while the routes arrived: its CPU over a whole install + withdraw cycle
  // (which also holds the BGP connect wait, so this is an upper bound) against the time the routes took to
  // arrive and to leave, both at this N from the same repetitions.
  const cpu = s.agentCpuMsPerCycle?.median ?? NaN;
  const busyTime = (s.program.podroute?.median ?? NaN) + (s.withdraw.podroute?.median ?? NaN);
  const share = cpu / busyTime;
  const cycle = `its CPU over an install + withdraw cycle (${formatMs(cpu)}) is ${pct(share * 100)} of the time the routes took to arrive and leave (${formatMs(busyTime)})`;
  const idle = !Number.isFinite(share) || !(busyTime > 0)
    ? ''
    : share < 0.4
      ? `The agent is mostly idle while the routes arrive: ${cycle}. `
      : `In this run the agent is not mostly idle while the routes arrive: ${cycle}, so its own work counts at this N${p === undefined ? '' : ' (see the profile)'}. `;
  // The kernel writes share the two cores with the agent and gobgpd: what `ip -batch` of the same routes takes alone.
  const kernelAlone = ratio(s.ipBatchAdd, s.program.watcher);
  const kernel = Number.isFinite(kernelAlone)
    ? `The routes are written by an \`ip\` process on the same two cores as the agent and gobgpd: \`ip -batch\` of the same routes alone takes ${formatMs(s.ipBatchAdd.median)}, ${formatRatio(kernelAlone)} of the bare watcher's time, and gobgpd's own CPU per cycle is ${formatMs(s.gobgpdCpuMsPerCycle?.median ?? NaN)}. `
    : '';
  return (
    profile +
    'gobgpd 3.10 sends one path per WatchEvent message; the agent takes what arrived in one turn of its event loop as one batch (about 110 paths ' +
    'in a 10,000-route burst; one path per batch before, which cost 20–25 % more agent CPU, measured side by side). ' +
    'Route selection is incremental (only the changed prefixes are re-judged; the learned table is updated in place). ' +
    idle +
    'The bare watcher takes the same stream from a gobgpd run the same way, so the gap between it and podroute is the agent\'s own work: ' +
    'decoding, the learned table, selection, the kernel writes, and the garbage they make (see the profile). ' +
    kernel +
    'Garbage collection is a large part of the agent\'s CPU: with a 16 MiB semi-space instead of the DaemonSet\'s 2 MiB the install took 627–679 ms ' +
    'vs 770–859 ms and the agent 0.77–0.80 s vs 0.95–1.14 s of CPU per cycle (N = 10,000, three alternating rounds); the DaemonSet keeps 2 MiB ' +
    'for its memory target (the young generation grows to three semi-spaces). A sampling heap profile of the agent through a 10,000-route ' +
    'install and withdraw puts about 3 KB of allocation per path in podroute\'s own code and about 2 KB per message in grpc-js (which the bare ' +
    'watcher pays as well). Next step: fewer allocations per path (decoding, the per-pass maps of selection and the reconciler) and fewer ' +
    'tables keyed by prefix (the learned table, the selector and the reconciler each keep one of every prefix).'
  );
}

/** Why routed pod-to-pod fell short of node-to-node, in this run's figures (every claim checked against them). */
function datapathMissReason(d: Partial<DatapathResult> & Pick<DatapathResult, 'mtu'>): string {
  const x = (v: number): string => `${v.toFixed(2)}x`;
  const paired = d.pairedRatio?.['pod-routed'];
  const cost = d.pairedCostRatio?.['pod-routed'];
  if (paired === undefined || cost === undefined || paired.n === 0 || cost.n === 0) {
    // Results of an earlier version without per-round and CPU figures.
    return (
      'The pod path crosses two more veth pairs and the CNI bridge on each node (plus bridge netfilter for NetworkPolicy) and, on this ' +
      'CPU-bound 2-core machine, every extra hop costs throughput directly. These results have no per-round or CPU-per-byte figures: re-run the benchmark.'
    );
  }
  const parts: string[] = [];
  parts.push(
    paired.max - paired.min > Math.abs(1 - paired.median)
      ? `Throughput on this shared 2-core machine varies more than the difference being measured: per round, pod-to-pod ran at ${formatSummary(paired, x)} of node-to-node.`
      : `Per round, pod-to-pod ran at ${formatSummary(paired, x)} of node-to-node.`,
  );
  const tput = d.throughputGbps?.['pod-routed'];
  const perGB = d.cpuSecondsPerGB?.['pod-routed'];
  const spread = (v: { min: number; max: number; median: number } | undefined): number => (v === undefined || !(v.median > 0) ? NaN : (v.max - v.min) / v.median);
  const steadier = spread(perGB) < spread(tput);
  parts.push(`CPU per byte ${steadier ? 'is steadier' : 'is measured per round as well'}: pod-to-pod costs ${x(cost.median)} of node-to-node per byte (per round ${formatSummary(cost, x)}).`);
  const toPod = d.pairedCostRatio?.['node-to-pod'];
  const fromPod = d.pairedCostRatio?.['pod-to-node'];
  if (toPod !== undefined && fromPod !== undefined && toPod.n > 0 && fromPod.n > 0) {
    const recv = toPod.median - 1;
    const send = fromPod.median - 1;
    const figures = `node → pod, the receiving end alone, ${x(toPod.median)}; pod → node, the sending end alone, ${x(fromPod.median)}`;
    const even = recv > 0 && send > 0 && Math.abs(recv - send) <= 0.5 * Math.max(recv, send);
    parts.push(
      even
        ? `The extra cost is split about evenly between the sending and receiving ends (${figures}): each end adds the veth hop and a second IP forward.`
        : `The extra cost is not split evenly between the ends in this run: more of it at the ${send > recv ? 'sending' : 'receiving'} end (${figures})${toPod.min <= fromPod.max && fromPod.min <= toPod.max ? ', though the two overlap in their round-to-round spread' : ''}.`,
    );
  }
  const noBrnf = d.pairedCostRatio?.['pod-routed-no-brnf'];
  if (noBrnf !== undefined && noBrnf.n > 0) {
    const overlap = noBrnf.min <= cost.max && cost.min <= noBrnf.max;
    parts.push(
      overlap
        ? `Bridge netfilter is within the noise (pod-to-pod with it off: ${x(noBrnf.median)} per byte, per round ${formatSummary(noBrnf, x)}).`
        : `Bridge netfilter shows: pod-to-pod with it off costs ${x(noBrnf.median)} per byte (per round ${formatSummary(noBrnf, x)}).`,
    );
  }
  parts.push('The bridge itself is within the noise as well (measured apart from this run: a bridge-less /32 veth route 1.17x against 1.24x for the bridge).');
  const podMtu = d.mtu['pod-routed'];
  const nodeMtu = d.mtu.node;
  if (podMtu !== undefined && podMtu === nodeMtu) parts.push(`MTU (${podMtu}, as on the node path) and offloads (on) are as good as they get.`);
  if (cost.median > 1) {
    parts.push(
      `In a CPU-bound lab whose wire is itself a veth, about ${x(1 / cost.median)} (1/${cost.median.toFixed(2)}) is the ceiling for pod-to-pod; on real NICs the wire limits both paths.`,
    );
  }
  return parts.join(' ');
}

const SCALE_HEADING = '## 8. Scale: full mesh and route reflectors';
const BFD_SOAK_HEADING = '## 9. BFD under load: state changes over a soak';
const TARGETS_HEADING = "## Targets of issue 7 (and issue 4's NetworkPolicy targets, issue 14's hostile policies, issue 16's Service routes, issue 17's scale lab and BFD soak)";

/** The sections a benchmark run alone can replace in an existing report (`run.js --only B --update FILE`). */
const SECTIONS: Partial<Record<keyof BenchResults['errors'], string>> = {
  convergence: '## 2. Convergence',
  footprint: '## 5. Footprint',
  'hostile-policy': '## 6. NetworkPolicy: hostile policies',
  services: '## 7. Services: routes at the ToR and LoadBalancer allocation',
  scale: SCALE_HEADING,
  'bfd-soak': BFD_SOAK_HEADING,
};

/** Benchmarks that run once whatever --reps says (a lab-long scenario or one measuring window, not a timing to repeat). */
const ONE_PASS: readonly string[] = ['footprint', 'scale', 'bfd-soak'];

/**
 * An existing report with the sections of the benchmarks of this run replaced (or appended), each headed by a note
 * saying it comes from a run of its own, and their rows of the targets table and their miss texts replaced or added.
 * The rest of the report, from another run, stays as it was.
 */
export function updateReport(existing: string, r: BenchResults, only: readonly string[]): string {
  const built = buildReport(r);
  const fresh = built.text;
  let doc = existing;
  const targets: Target[] = [];
  for (const b of only) {
    const heading = SECTIONS[b as keyof typeof SECTIONS];
    if (heading === undefined) throw new Error(`--update: ${b} has no section of its own to replace (have ${Object.keys(SECTIONS).join(', ')})`);
    const section = sectionOf(fresh, heading) ?? `${heading}\n\nNot measured.\n`;
    const m = r.machine;
    const note =
      `Measured apart from the rest of this report (\`node dist/bench/run.js --only ${b} --update\`): ${m.date}, commit ${m.gitCommit}, ` +
      `${ONE_PASS.includes(b) ? 'one pass' : `${r.reps} repetition${r.reps === 1 ? '' : 's'}`}, ${(r.durationS / 60).toFixed(1)} min, load average start ${m.loadAtStart.map((l) => l.toFixed(1)).join(' / ')}, ` +
      `end ${r.loadAtEnd.map((l) => l.toFixed(1)).join(' / ')}.`;
    const withNote = section.replace(`${heading}\n`, `${heading}\n\n${note}\n`);
    const old = sectionOf(doc, heading);
    doc = old === undefined ? `${doc.trimEnd()}\n\n${withNote.trimEnd()}\n` : doc.replace(old, () => withNote.trimEnd() + '\n\n');
    if (b === 'convergence' && r.convergence !== undefined) targets.push(...renderConvergence(r.convergence).targets);
    if (b === 'footprint') targets.push(...built.footprintTargets);
    if (b === 'hostile-policy' && r.hostilePolicy !== undefined) targets.push(...renderHostilePolicy(r.hostilePolicy).targets);
    if (b === 'services' && r.services !== undefined) targets.push(...renderServices(r.services).targets);
    if (b === 'scale' && r.scale !== undefined) targets.push(...renderScale(r.scale).targets);
    if (b === 'bfd-soak' && r.bfdSoak !== undefined) targets.push(...renderBfdSoak(r.bfdSoak).targets);
  }
  const lines = doc.split('\n');
  const tableStart = lines.findIndex((l) => l.startsWith('## Targets of issue 7'));
  if (tableStart >= 0) {
    lines[tableStart] = TARGETS_HEADING;
    let end = lines.findIndex((l, i) => i > tableStart && l.startsWith('|'));
    while (end >= 0 && lines[end + 1]?.startsWith('|')) end++;
    for (const t of targets) {
      const row = `| ${t.what} | ${t.measured} | ${verdict(t.met)} |`;
      const at = lines.findIndex((l) => l.startsWith(`| ${t.what} |`));
      if (at >= 0) lines[at] = row;
      else if (end >= 0) lines.splice(++end, 0, row);
    }
    const bullet = (t: Target): string => `- **${t.what}** (${t.measured}). ${t.miss ?? 'No explanation recorded: see the figures above.'}`;
    for (const t of targets) {
      const at = lines.findIndex((l) => l.startsWith(`- **${t.what}**`));
      if (at >= 0) lines.splice(at, 1);
    }
    const misses = targets.filter((t) => t.met === false);
    if (misses.length > 0) {
      let missed = lines.findIndex((l) => l === '### Missed: reason and next step');
      if (missed < 0) {
        lines.splice(end + 1, 0, '', '### Missed: reason and next step', '');
        missed = end + 2;
      }
      // After the list's last bullet (or right under the heading when it has none).
      let at = missed + 1;
      while (at < lines.length && lines[at] === '') at++;
      while (at < lines.length && lines[at]!.startsWith('- **')) at++;
      if (!lines[at - 1]!.startsWith('- **')) at = missed + 2;
      lines.splice(at, 0, ...misses.map(bullet));
    }
  }
  return lines.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n';
}

/** A `## ` section of a report: its heading up to the next `## ` heading (or the end). */
function sectionOf(doc: string, heading: string): string | undefined {
  const start = doc.indexOf(`${heading}\n`);
  if (start < 0) return undefined;
  const next = doc.indexOf('\n## ', start + heading.length);
  return doc.slice(start, next < 0 ? doc.length : next + 1);
}
