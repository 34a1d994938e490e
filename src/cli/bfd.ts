// `podroute bfd`: the BFD companion (a sidecar next to the agent and gobgpd). It runs the BFD sessions the agent
// asks for over its control socket and reports their state back; it outlives agent restarts (src/bfd/control.ts).
import { Command, Option } from 'commander';
import { serveBfdControl } from '../bfd/control.js';
import { BfdSessions } from '../bfd/sessions.js';
import { createLogger } from '../observe/log.js';

export const DEFAULT_BFD_CONTROL_SOCKET = '/run/podroute/bfd.sock';

export function bfdCommand(): Command {
  return new Command('bfd')
    .description('run the BFD companion: single-hop BFD sessions (RFC 5880/5881) for the agent, over a unix control socket')
    .option('--control-socket <path>', 'unix socket the agent connects to', DEFAULT_BFD_CONTROL_SOCKET)
    .addOption(new Option('--log-level <level>', 'log level').choices(['error', 'warn', 'info', 'debug']).default('info'))
    .addOption(new Option('--log-format <format>', 'log format').choices(['json', 'text']).default('json'))
    .action(async (flags: { controlSocket: string; logLevel: 'error' | 'warn' | 'info' | 'debug'; logFormat: 'json' | 'text' }) => {
      const logger = createLogger({ level: flags.logLevel, format: flags.logFormat, component: 'bfd' });
      const sessions = new BfdSessions({ logger });
      await sessions.start();
      const server = await serveBfdControl(flags.controlSocket, sessions, logger);
      logger.info('BFD companion running', { controlSocket: flags.controlSocket });
      await new Promise<void>((resolve) => {
        for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
      });
      // Closing tells every peer AdminDown: a stopped companion is no path failure.
      sessions.close();
      server.close();
      setTimeout(() => process.exit(0), 200).unref();
    });
}
