// `podroute lab exec`: a command inside the namespace of a pod, node, router or external host of a lab.
import { spawn } from 'node:child_process';
import { LabError } from './errors.js';
import { birdFiles } from './bird.js';
import { frrFiles } from './frr.js';
import { listNetns } from './netns.js';
import { checkLabName, labPaths } from './paths.js';
import { readLabState } from './state.js';
import { parseTopology, type Topology } from './topology.js';

export interface ExecTarget {
  netns: string;
  kind: 'pod' | 'node' | 'router' | 'host';
  member: string;
}

/** `NAMESPACE/POD`, `node/N`, `router/R` or `host/EXT` to the namespace it names. */
export function resolveExecTarget(lab: string, topology: Topology, target: string): ExecTarget {
  const paths = labPaths(lab);
  const [kind, member, ...rest] = target.split('/');
  if (kind === undefined || member === undefined || member === '' || rest.length > 0) {
    throw new LabError('LAB_BAD_TARGET', `target "${target}": expected NAMESPACE/POD, node/NODE, router/ROUTER or host/EXTERNAL`);
  }
  const known = (names: string[], what: string): void => {
    if (!names.includes(member)) throw new LabError('LAB_BAD_TARGET', `target "${target}": no ${what} named "${member}" (have: ${names.join(', ')})`);
  };
  switch (kind) {
    case 'node':
      known(topology.nodes.map((n) => n.name), 'node');
      return { netns: paths.netns(member), kind: 'node', member };
    case 'router':
      known(topology.routers.map((r) => r.name), 'router');
      return { netns: paths.netns(member), kind: 'router', member };
    case 'host':
      known(topology.externalHosts.map((e) => e.name), 'external host');
      return { netns: paths.netns(member), kind: 'host', member };
    default:
      return { netns: paths.podNetns(kind, member), kind: 'pod', member: `${kind}/${member}` };
  }
}

/** Runs a command in the target's namespace (with the caller's stdio by default); resolves to its exit code. */
export async function labExec(lab: string, target: string, argv: string[], options: { stdio?: 'inherit' | 'ignore' } = {}): Promise<number> {
  checkLabName(lab);
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  if (argv.length === 0) throw new LabError('LAB_BAD_TARGET', 'no command given (lab exec NAME TARGET -- CMD ...)');
  const topology = parseTopology(state.topologyText);
  const resolved = resolveExecTarget(lab, topology, target);
  if (!(await listNetns()).includes(resolved.netns)) throw new LabError('LAB_BAD_TARGET', `target "${target}": namespace ${resolved.netns} does not exist`);
  let command = argv;
  // vtysh (FRR) or birdc (BIRD) in a router namespace talks to that router's daemons.
  if (resolved.kind === 'router' && argv[0] === 'vtysh' && !argv.includes('--vty_socket')) {
    command = ['vtysh', '--vty_socket', frrFiles(labPaths(lab).frrDir(resolved.member)).runDir, ...argv.slice(1)];
  }
  if (resolved.kind === 'router' && argv[0] === 'birdc' && !argv.includes('-s')) {
    command = ['birdc', '-s', birdFiles(labPaths(lab).birdDir(resolved.member)).socket, ...argv.slice(1)];
  }
  return await new Promise<number>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', resolved.netns, ...command], { stdio: options.stdio ?? 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, sig) => resolve(code ?? (sig === null ? 1 : 128)));
  });
}
