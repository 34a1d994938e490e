// A two-racks lab for the benchmarks that need the whole cluster (data path, convergence): up once, down always.
import path from 'node:path';
import { findProjectRoot } from '../../src/bgp/gobgp-proto.js';
import { labDown, labStatus, labUp, type LabStatusReport } from '../../src/lab/lab.js';
import { listLabs } from '../../src/lab/lab.js';

export const TWO_RACKS = path.join(findProjectRoot(), 'topologies', 'two-racks.yaml');

/** Brings the lab up (removing a leftover of a crashed run of the same name first), runs `body`, takes it down. */
export async function withLab<T>(lab: string, log: (m: string) => void, body: (status: LabStatusReport) => Promise<T>): Promise<T> {
  if (listLabs().includes(lab)) await labDown(lab);
  const start = Date.now();
  try {
    await labUp({ topologyFile: TWO_RACKS, name: lab, timeoutMs: 240_000 });
    log(`lab ${lab} up in ${((Date.now() - start) / 1000).toFixed(1)} s`);
    return await body(await labStatus(lab));
  } finally {
    await labDown(lab);
    log(`lab ${lab} down`);
  }
}
