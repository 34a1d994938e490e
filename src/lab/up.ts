// `podroute lab up`: builds a topology in network namespaces with the real parts (FRR routers, gobgpd per node,
// the lab API server, the lab kubelet, pods made by the real CNI plugins) and returns once it has converged.
// Every resource is recorded before or as it is made, so `lab down` removes it also after a crash. The contract
// is in ARCHITECTURE.md ("The lab").
import { existsSync, mkdirSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../observe/log.js';
import { listPods } from './api.js';
import { createClusterObjects } from './cluster-objects.js';
import { gobgpdAnswers, startApiServer, startExternalHost, startGobgpd, startNode, startRouters, startServiceStandIns } from './daemons.js';
import { LabError } from './errors.js';
import { bgpSummary, frrFiles, pendingFabricSessions } from './frr.js';
import { addNetns, addVeth, hostRoutes, memberBatch, memberSysctls, runBatch, setSysctls } from './netns.js';
import { checkLabName, labPaths } from './paths.js';
import { logTail, processAlive } from './processes.js';
import { LabStateRecorder, newLabState, readLabState } from './state.js';
import { labStatus, type LabStatusReport } from './status.js';
import { cidrsOverlap, parseTopology, planLayout, serviceRanges, type LabLayout, type Topology } from './topology.js';
import { waitFor } from './wait.js';

export interface LabUpOptions {
  topologyFile: string;
  name: string;
  /** Converged within this long or `up` fails (default 180 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  log?: Logger;
}

/** Refuses lab networks that overlap routes of the host namespace: no lab namespace may reach the host's networks. */
export async function checkHostOverlap(topology: Topology, layout: LabLayout): Promise<void> {
  const labNetworks = [
    ...topology.cluster.podRanges,
    ...topology.links.flatMap((l) => [l.ipv4, l.ipv6]).filter((c): c is string => c !== undefined),
    ...layout.externals.flatMap((e) => e.networks),
    ...serviceRanges(topology.services).map((r) => r.cidr),
  ];
  const clashes: string[] = [];
  for (const route of await hostRoutes()) {
    for (const net of labNetworks) if (cidrsOverlap(route, net)) clashes.push(`${net} overlaps the host route ${route}`);
  }
  if (clashes.length > 0) throw new LabError('LAB_UNSAFE', `refusing to build: ${clashes.join('; ')}`);
}

export async function labUp(options: LabUpOptions): Promise<LabStatusReport> {
  const { name: lab, signal, log } = options;
  checkLabName(lab);
  const topologyText = await readFile(options.topologyFile, 'utf8');
  const topology = parseTopology(topologyText);
  const layout = planLayout(topology);
  await checkHostOverlap(topology, layout);
  const paths = labPaths(lab);
  if (existsSync(paths.dir)) {
    throw new LabError('LAB_EXISTS', `lab "${lab}" exists (${paths.dir}); run \`podroute lab down ${lab}\` first`);
  }
  const deadline = Date.now() + (options.timeoutMs ?? 180_000);
  mkdirSync(paths.dir, { recursive: true, mode: 0o755 });
  const recorder = new LabStateRecorder(newLabState(lab, path.resolve(options.topologyFile), topologyText));
  try {
    for (const dir of [paths.logDir, paths.pidDir, paths.podDir, path.join(paths.dir, 'hosts')]) await mkdir(dir, { recursive: true });
    await buildNetwork(lab, layout, recorder, log);
    signal?.throwIfAborted();
    await startRouters(lab, topology, layout, recorder, log);
    for (const node of layout.nodes) startGobgpd(lab, node.name, recorder);
    const apiPort = await startApiServer(lab, recorder, deadline, signal);
    log?.info('lab API server up', { lab, apiPort });
    await createClusterObjects(lab, topology, layout, 'before-pods');
    startServiceStandIns(lab, recorder);
    for (const node of layout.nodes) await startNode(lab, topology, node.name, recorder);
    await createClusterObjects(lab, topology, layout, 'pods');
    for (const ext of topology.externalHosts) startExternalHost(lab, ext, recorder);
    await waitConverged(lab, topology, layout, deadline, signal);
    recorder.update({ phase: 'up' });
    log?.info('lab converged', { lab });
  } catch (err) {
    recorder.update({ phase: 'failed', error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
  return await labStatus(lab);
}

async function buildNetwork(lab: string, layout: LabLayout, recorder: LabStateRecorder, log?: Logger): Promise<void> {
  const paths = labPaths(lab);
  for (const member of layout.members) {
    const ns = paths.netns(member.name);
    recorder.recordNetns(ns);
    await addNetns(ns);
    await setSysctls(ns, memberSysctls(member));
  }
  for (const veth of layout.veths) await addVeth(veth, paths.netns);
  await Promise.all(layout.members.map((m) => runBatch(paths.netns(m.name), memberBatch(m, layout))));
  log?.info('lab network built', { lab, namespaces: layout.members.length, veths: layout.veths.length });
}

async function waitConverged(lab: string, topology: Topology, layout: LabLayout, deadline: number, signal?: AbortSignal): Promise<void> {
  const paths = labPaths(lab);
  const state = readLabState(lab);
  const checkDaemons = (): void => {
    for (const p of state?.processes ?? []) {
      if (!processAlive(p.pid)) throw new LabError('LAB_START_FAILED', `${p.name} (PID ${p.pid}) exited:\n${logTail(paths, p.name)}`);
    }
  };
  await waitFor('router-to-router BGP sessions', deadline, signal, async () => {
    checkDaemons();
    const pending: string[] = [];
    for (const router of topology.routers) {
      const neighbors = await bgpSummary(frrFiles(paths.frrDir(router.name)), signal);
      for (const s of pendingFabricSessions(router.name, layout, neighbors)) pending.push(`${router.name}->${s.peer} ${s.family} ${s.peerAddress}`);
    }
    return pending.length === 0 ? undefined : `not Established: ${pending.join(', ')}`;
  });
  await waitFor('gobgpd on every node', deadline, signal, async () => {
    const silent: string[] = [];
    for (const node of layout.nodes) if (!(await gobgpdAnswers(paths.gobgpSocket(node.name), signal))) silent.push(node.name);
    return silent.length === 0 ? undefined : `no answer from gobgpd on ${silent.join(', ')}`;
  });
  // Sessions up is not routes in: a router that (re)starts holds its updates back (update-delay) until its peers
  // sent End-of-RIB, so the fabric's routes can lag the sessions by up to that delay.
  await waitFor('every node reaches the external hosts and the other nodes', deadline, signal, async () => {
    checkDaemons();
    const targets = [...layout.externals.flatMap((e) => e.addresses.map((a) => a.split('/')[0] ?? a)), ...layout.nodes.flatMap((n) => n.addresses.map((a) => a.address))];
    const unreachable: string[] = [];
    await Promise.all(
      layout.nodes.flatMap((node) =>
        targets
          .filter((target) => !node.addresses.some((a) => a.address === target))
          .map(async (target) => {
            const ping = await execa('ip', ['netns', 'exec', paths.netns(node.name), 'ping', '-n', '-q', '-c', '1', '-W', '1', target], { reject: false, timeout: 5_000 });
            if (ping.exitCode !== 0) unreachable.push(`${node.name}->${target}`);
          }),
      ),
    );
    return unreachable.length === 0 ? undefined : `unreachable: ${unreachable.sort().join(', ')}`;
  });
  await waitFor('pods Running with IPs', deadline, signal, async () => {
    checkDaemons();
    const pods = await listPods(lab);
    const waiting = topology.kubernetes.pods
      .filter((want) => {
        const got = pods.find((p) => p.namespace === want.namespace && p.name === want.name);
        const families = topology.nodes.find((n) => n.name === want.nodeName)?.podCIDRs.length ?? 1;
        return got === undefined || got.phase !== 'Running' || got.ips.length < families;
      })
      .map((p) => `${p.namespace}/${p.name}`);
    return waiting.length === 0 ? undefined : `waiting for ${waiting.join(', ')}`;
  });
}
