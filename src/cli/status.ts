// `podroute status`: the node's BGP peers, routes, policy and loops, like `calicoctl node status` / `gobgp
// neighbor`. Reads the agent's /status; when the agent does not answer, asks gobgpd directly for the peer table.
import { get } from 'node:http';
import { Command, InvalidArgumentError, Option } from 'commander';
import { GobgpClient, DEFAULT_GOBGP_TARGET } from '../bgp/gobgp-client.js';
import { loadAgentConfig } from '../config/agent-config.js';
import { errorMessage } from '../observe/health.js';
import { PeerTable, countByNeighbor, type AcceptedCounter } from '../observe/peers.js';
import { parseListenAddress } from '../observe/server.js';
import { renderStatusView, type AgentStatusReport, type StatusView } from '../observe/status.js';
import { IP_FAMILIES } from '../routes/ip-prefix.js';

export const DEFAULT_STATUS_ADDRESS = '127.0.0.1:9476';

export interface StatusOptions {
  /** The agent's metrics.address; empty: the agent serves no endpoints, ask gobgpd directly. */
  address: string;
  gobgpTarget: string;
  timeoutMs: number;
}

/** Reads the agent's /status (host:port); rejects when it does not answer with 200 and a JSON report. */
export function fetchAgentStatus(address: string, timeoutMs: number): Promise<AgentStatusReport> {
  const { host, port } = parseListenAddress(address);
  return new Promise((resolve, reject) => {
    const req = get({ host, port, path: '/status', agent: false, timeout: timeoutMs, headers: { Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode ?? '?'} from ${address}/status: ${text.slice(0, 200)}`));
        try {
          const report = JSON.parse(text) as AgentStatusReport;
          if (typeof report !== 'object' || report === null || !Array.isArray(report.peers)) throw new Error('not a podroute status report');
          resolve(report);
        } catch (err) {
          reject(new Error(`bad answer from ${address}/status: ${errorMessage(err)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/**
 * Accepted paths per peer from gobgpd's global RIB (what passed the import policy; gobgpd's own accepted
 * counter ignores the global policy). undefined when the RIB cannot be listed (BGP not started...).
 */
function acceptedFromGlobalRib(client: GobgpClient, timeoutMs: number): AcceptedCounter {
  return async () => {
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const paths: { neighborIp?: string | undefined }[] = [];
      for (const family of IP_FAMILIES) {
        for await (const p of client.listPaths({ family, table: 'global', signal })) if (!p.isWithdraw) paths.push({ neighborIp: p.neighborIp });
      }
      return countByNeighbor([paths]);
    } catch {
      return undefined;
    }
  };
}

/** The agent's view, or gobgpd's peer table when the agent does not answer. */
export async function collectStatusView(options: StatusOptions): Promise<StatusView> {
  try {
    if (options.address === '') throw new Error('metrics.address is empty in the agent config (no endpoints)');
    const report = await fetchAgentStatus(options.address, options.timeoutMs);
    return {
      source: 'agent',
      agent: { address: options.address, reachable: true, error: null },
      report,
      gobgpd: report.gobgpd,
      peers: report.peers,
    };
  } catch (err) {
    const agentError = errorMessage(err);
    const client = new GobgpClient({ target: options.gobgpTarget, callTimeoutMs: options.timeoutMs });
    try {
      const table = await new PeerTable(client, { timeoutMs: options.timeoutMs, accepted: acceptedFromGlobalRib(client, options.timeoutMs) }).read();
      return {
        source: 'gobgpd',
        agent: { address: options.address, reachable: false, error: agentError },
        report: null,
        gobgpd: { target: table.target, reachable: table.reachable, error: table.error },
        peers: table.peers,
      };
    } finally {
      client.close();
    }
  }
}

export function statusCommand(): Command {
  return new Command('status')
    .description("show this node's BGP peers, routes, policy and reconcilers (from the agent; gobgpd directly when the agent does not answer)")
    .option('-c, --config <file>', "the agent's config file: --address and --gobgp-target default to its metrics.address and gobgp.target")
    .option('--address <host:port>', "the agent's metrics address", hostPort, DEFAULT_STATUS_ADDRESS)
    .option('--gobgp-target <target>', 'gobgpd API, asked directly when the agent does not answer', DEFAULT_GOBGP_TARGET)
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .option('--timeout-ms <ms>', 'how long to wait for each answer', positiveInt, 3_000)
    .option('--cluster', "from a workstation: every node as the agents report it to the API server (kubectl's kubeconfig)")
    .option('--kubeconfig <file>', "with --cluster (implies it): this kubeconfig instead of kubectl's default ($KUBECONFIG, ~/.kube/config)")
    .option('--context <name>', 'with --cluster (implies it): this kubeconfig context instead of its current-context')
    .addHelpText(
      'after',
      "\nExit status: 0 when the agent answered, 1 when it did not (gobgpd's peer table is shown if it answers).\n" +
        "With --cluster: 0 when every node reports podroute's routes programmed, 1 otherwise or when the API server cannot be read.",
    )
    .action(async (flags: StatusFlags, cmd: Command) => {
      if (flags.cluster === true || flags.kubeconfig !== undefined || flags.context !== undefined) {
        // Loaded only here: it brings in @kubernetes/client-node, which the node-local paths never need.
        const { collectClusterStatus } = await import('./cluster-status.js');
        const { renderClusterStatus } = await import('../observe/cluster-status.js');
        const view = await collectClusterStatus({
          timeoutMs: flags.timeoutMs,
          ...(flags.kubeconfig === undefined ? {} : { kubeconfig: flags.kubeconfig }),
          ...(flags.context === undefined ? {} : { context: flags.context }),
        });
        process.stdout.write(flags.output === 'json' ? `${JSON.stringify(view, null, 2)}\n` : renderClusterStatus(view));
        if (!view.allAvailable) process.exitCode = 1;
        return;
      }
      let { address, gobgpTarget } = flags;
      if (flags.config !== undefined) {
        // Flags given on the command line win over the file.
        const config = await loadAgentConfig(flags.config);
        if (cmd.getOptionValueSource('address') === 'default') address = config.metrics.address;
        if (cmd.getOptionValueSource('gobgpTarget') === 'default') gobgpTarget = config.gobgp.target;
      }
      const view = await collectStatusView({ address, gobgpTarget, timeoutMs: flags.timeoutMs });
      process.stdout.write(flags.output === 'json' ? `${JSON.stringify(view, null, 2)}\n` : renderStatusView(view));
      if (view.source !== 'agent') process.exitCode = 1;
    });
}

interface StatusFlags {
  config?: string;
  cluster?: boolean;
  kubeconfig?: string;
  context?: string;
  address: string;
  gobgpTarget: string;
  output: 'table' | 'json';
  timeoutMs: number;
}

/** A bad --address is a usage error, not "agent not answering". */
function hostPort(text: string): string {
  try {
    parseListenAddress(text);
    return text;
  } catch (err) {
    throw new InvalidArgumentError((err instanceof Error ? err.message : String(err)).replace(/^metrics\.address /, ''));
  }
}

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}
