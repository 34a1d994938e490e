// `podroute agent`: the per-node daemon. Configuration problems are reported before anything is touched.
import { Command, Option } from 'commander';
import { ConfigError, loadAgentConfig, overridesFromEnv, type AgentConfig, type ConfigOverrides } from '../config/agent-config.js';
import { checkPasswordFiles } from '../config/password-file.js';
import { createLogger } from '../observe/log.js';

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the node agent: podCIDRs over BGP (gobgpd sidecar), learned routes into the kernel, CNI, masquerade, NetworkPolicy')
    .option('-c, --config <file>', 'YAML config file (a ConfigMap); flags and environment override it')
    .option('--node-name <name>', 'this node (default: $NODE_NAME)')
    .option('--kubeconfig <file>', 'kubeconfig (default: $KUBECONFIG, else the in-cluster service account)')
    .option('--gobgp-target <target>', 'gobgpd API: unix:///path or a loopback host:port (default unix:///run/podroute/gobgp.sock)')
    .option('--cni-conf-dir <dir>', 'where the CNI conflist is written (default /etc/cni/net.d)')
    .option('--cni-bin-dir <dir>', 'where the CNI plugins are (default /opt/cni/bin)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['error', 'warn', 'info', 'debug']))
    .addOption(new Option('--log-format <format>', 'log format').choices(['json', 'text']))
    .option('--check-config', 'validate the configuration, print it with defaults filled in, and exit')
    .action(async (flags: AgentFlags) => {
      let config: AgentConfig;
      try {
        const { config: file, checkConfig: _, ...overrides } = flags;
        config = await loadAgentConfig(file, overridesFromEnv(process.env), overrides);
        if (config.nodeName === undefined) throw new ConfigError(['nodeName: required (flag --node-name, env NODE_NAME or the config file)']);
        if (flags.checkConfig) {
          const files = [
            { key: 'bgp.meshPasswordFile', file: config.bgp.meshPasswordFile },
            ...config.bgp.peers.map((p, i) => ({ key: `bgp.peers[${i}].passwordFile`, file: p.passwordFile })),
          ];
          const problems = await checkPasswordFiles(config.bgp.passwordDir, files);
          if (problems.length > 0) throw new ConfigError(problems);
        }
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`podroute agent: ${err.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
      if (flags.checkConfig) {
        process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
        return;
      }
      const logger = createLogger({ level: config.log.level, format: config.log.format, component: 'agent' });
      const { runAgent } = await import('../agent/agent.js');
      await runAgent(config, logger);
    });
}

/** Commander's camel-cased flags: the config overrides, plus the file and --check-config. */
interface AgentFlags extends ConfigOverrides {
  config?: string;
  checkConfig?: boolean;
}
