// A two-racks lab for the benchmarks that need the whole cluster (data path, convergence): up once, down always.
import path from 'node:path';
import { findProjectRoot } from '../../src/bgp/gobgp-proto.js';
import { labDown, listLabs } from '../../src/lab/down.js';
import { labStatus, type LabStatusReport } from '../../src/lab/status.js';
import { labUp } from '../../src/lab/up.js';
import { readLabState } from '../../src/lab/state.js';
import { hasRoutes } from './fib-presence.js';
import { pollUntil } from './proc.js';

export const TWO_RACKS = path.join(findProjectRoot(), 'topologies', 'two-racks.yaml');

/** Brings the lab up (removing a leftover of a crashed run of the same name first), runs `body`, takes it down. */
export async function withLab<T>(lab: string, log: (m: string) => void, body: (status: LabStatusReport) => Promise<T>): Promise<T> {
  if (listLabs().includes(lab)) await labDown(lab);
  const start = Date.now();
  try {
    await labUp({ topologyFile: TWO_RACKS, name: lab, timeoutMs: 240_000 });
    const status = await labStatus(lab);
    // `lab up` returns when the pods run; the agents program their routes a little later.
    await waitRoutesEverywhere(lab, status, 120_000);
    log(`lab ${lab} up and routed in ${((Date.now() - start) / 1000).toFixed(1)} s`);
    return await body(status);
  } finally {
    await labDown(lab);
    log(`lab ${lab} down`);
  }
}

/** Every node's and router's FIB holds every other node's podCIDRs (both families). */
export async function waitRoutesEverywhere(lab: string, status: LabStatusReport, timeoutMs: number): Promise<void> {
  const state = readLabState(lab);
  const pid = (name: string): number | undefined => state?.processes.find((p) => p.name === name)?.pid;
  const members = [
    ...status.nodes.map((n) => ({ name: n.name, pid: pid(`kubelet/${n.name}`), skip: n.podCIDRs })),
    ...status.routers.map((r) => ({ name: r.name, pid: pid(`zebra/${r.name}`), skip: [] as string[] })),
  ];
  await pollUntil(`lab ${lab}: every node and router routes to every podCIDR`, timeoutMs, 100, () => {
    for (const m of members) {
      if (m.pid === undefined) throw new Error(`no process of ${m.name} in the lab state`);
      const want = status.nodes.flatMap((n) => n.podCIDRs).filter((c) => !m.skip.includes(c));
      if (!hasRoutes(m.pid, want)) return undefined;
    }
    return true;
  });
}
