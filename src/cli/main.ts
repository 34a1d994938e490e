#!/usr/bin/env node
// The `podroute` command: each subcommand lives in its own module under src/cli/.
import { Command } from 'commander';
import { agentCommand } from './agent.js';
import { bfdCommand } from './bfd.js';
import { labCommand } from './lab.js';
import { statusCommand } from './status.js';

const program = new Command('podroute')
  .description('Kubernetes pod networking with native L3 routing over BGP (gobgpd sidecar) and iptables/ipset policy')
  .version('0.1.0')
  .showHelpAfterError();

program.addCommand(agentCommand());
program.addCommand(bfdCommand());
program.addCommand(labCommand());
program.addCommand(statusCommand());

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`podroute: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
