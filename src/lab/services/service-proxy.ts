// `podroute lab service-proxy`: the lab's stand-in for kube-proxy in iptables mode (no kube-proxy binary exists on
// these machines). One process on the host serves every node of the lab: per node netns and family it renders the
// whole LABSVC- rule set (proxy-rules.ts) and writes it with one `iptables-restore --noflush`, then makes sure the
// built-in chains jump to ours. It owns the LABSVC- chains and those jumps, nothing else. Level-triggered: Service,
// EndpointSlice and Node events mark it dirty; a periodic pass repairs drift. The agent knows nothing of it.
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { createLogger, type Logger } from '../../observe/log.js';
import { DirtySignal } from '../../reconcile/loop.js';
import { LabError } from '../errors.js';
import { labPaths } from '../paths.js';
import { readLabState } from '../state.js';
import { parseTopology } from '../topology.js';
import { listItems, watchCollection } from './api-watch.js';
import type { EndpointSlice, Node, Service } from './endpoint-slices.js';
import { HOOKS, parseOwnChains, renderProxyRules, servicePortViews, type ServicePortView } from './proxy-rules.js';
import { familyOf, IP_FAMILIES, type IpFamily } from '../../routes/ip-prefix.js';

export interface ServiceProxyOptions {
  lab: string;
  logger?: Logger;
  signal: AbortSignal;
  /** Full pass even without events. Default 10 s. */
  resyncMs?: number;
}

function tool(family: IpFamily, name: 'save' | 'restore' | 'cmd'): string {
  const base = family === 'ipv6' ? 'ip6tables' : 'iptables';
  return name === 'cmd' ? base : `${base}-${name}`;
}

/** The `-A` line iptables-save prints for a hook, to tell whether it is there. */
export function hookLine(hook: (typeof HOOKS)[number]): string {
  return ['-A', hook.chain, ...hook.match, '-j', hook.target].join(' ');
}

/** Splits `iptables-save` output (all tables) into table name -> lines. */
export function saveByTable(save: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) tables.set(line.slice(1), (current = []));
    else if (current !== undefined) current.push(line);
  }
  return tables;
}

/** Writes one node's rules of one family. */
export async function applyNodeRules(netns: string, family: IpFamily, podRanges: string[], nodeName: string, views: ServicePortView[]): Promise<void> {
  const inNetns = (cmd: string, args: string[], input?: string) =>
    execa('ip', ['netns', 'exec', netns, cmd, ...args], { reject: false, timeout: 30_000, ...(input === undefined ? {} : { input }) });
  const saved = await inNetns(tool(family, 'save'), []);
  if (saved.exitCode !== 0) throw new LabError('LAB_API_FAILED', `${tool(family, 'save')} in ${netns}: ${saved.stderr}`);
  const tables = saveByTable(saved.stdout);
  const stale = { nat: parseOwnChains((tables.get('nat') ?? []).join('\n')), filter: parseOwnChains((tables.get('filter') ?? []).join('\n')) };
  const rules = renderProxyRules({ name: nodeName, podRanges }, views, stale);
  const restored = await inNetns(tool(family, 'restore'), ['--noflush'], rules.nat + rules.filter);
  if (restored.exitCode !== 0) {
    throw new LabError('LAB_API_FAILED', `${tool(family, 'restore')} in ${netns} failed: ${restored.stderr}\n--- input ---\n${rules.nat}${rules.filter}`);
  }
  for (const hook of HOOKS) {
    if ((tables.get(hook.table) ?? []).includes(hookLine(hook))) continue;
    const where = hook.position === 'first' ? ['-I', hook.chain, '1'] : ['-A', hook.chain];
    const inserted = await inNetns(tool(family, 'cmd'), ['-w', '-t', hook.table, ...where, ...hook.match, '-j', hook.target]);
    if (inserted.exitCode !== 0) throw new LabError('LAB_API_FAILED', `${tool(family, 'cmd')} -I ${hook.chain} in ${netns}: ${inserted.stderr}`);
  }
}

/** How often unchanged rules are written again all the same (drift repair). */
const REPAIR_MS = 60_000;

export async function runServiceProxy(options: ServiceProxyOptions): Promise<void> {
  const { lab, signal } = options;
  const log = options.logger ?? createLogger({ component: 'lab-service-proxy', format: 'text' });
  const paths = labPaths(lab);
  const state = readLabState(lab);
  if (state === undefined) throw new LabError('LAB_NOT_FOUND', `no lab named "${lab}"`);
  const podRanges = parseTopology(state.topologyText).cluster.podRanges;
  const dirty = new DirtySignal();
  dirty.set();
  const applied = new Map<string, { input: string; at: number }>();
  for (const collection of ['/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices', '/api/v1/nodes']) {
    watchCollection(paths.apiSocket, collection, () => dirty.set(), signal, (err) => log.debug('watch interrupted', { collection, error: err.message }));
  }
  log.info('lab service proxy started', { lab });
  while (!signal.aborted) {
    await dirty.wait(options.resyncMs ?? 10_000, signal);
    if (signal.aborted) break;
    try {
      const [services, slices, nodes] = await Promise.all([
        listItems<Service>(paths.apiSocket, '/api/v1/services'),
        listItems<EndpointSlice>(paths.apiSocket, '/apis/discovery.k8s.io/v1/endpointslices'),
        listItems<Node>(paths.apiSocket, '/api/v1/nodes'),
      ]);
      const views = { ipv4: servicePortViews(services.items, slices.items, 'ipv4'), ipv6: servicePortViews(services.items, slices.items, 'ipv6') } as const;
      // A Node object whose namespace is gone (a removed node) is skipped; the next pass tries again.
      const nodeNames = nodes.items.map((n) => n.metadata.name ?? '').filter((n) => n !== '' && existsSync(`/run/netns/${paths.netns(n)}`));
      const work = nodeNames.flatMap((node) =>
        IP_FAMILIES.map((family) => {
          const ranges = podRanges.filter((r) => familyOf(r) === family);
          const key = `${node}/${family}`;
          const input = JSON.stringify([ranges, views[family]]);
          const last = applied.get(key);
          // Events that change nothing for a node (most Node and slice updates) cost no iptables run; what was
          // written is re-written now and then all the same, to repair rules removed behind our back.
          if (last !== undefined && last.input === input && Date.now() - last.at < REPAIR_MS) return undefined;
          return async (): Promise<void> => {
            applied.delete(key);
            await applyNodeRules(paths.netns(node), family, ranges, node, views[family]);
            applied.set(key, { input, at: Date.now() });
          };
        }),
      );
      await Promise.all(work.flatMap((apply) => (apply === undefined ? [] : [apply()])));
      if (work.some((w) => w !== undefined)) log.debug('rules applied', { nodes: nodeNames.length, ports: views.ipv4.length + views.ipv6.length });
    } catch (err) {
      log.warn('pass failed; retrying', { error: err instanceof Error ? err.message : String(err) });
      setTimeout(() => dirty.set(), 1_000).unref();
    }
  }
  log.info('lab service proxy stopped');
}
