// `podroute lab ...`: placeholder until the lab lands (issue 2); replaced by the lab's own command module.
import { Command } from 'commander';

export function labCommand(): Command {
  return new Command('lab').description('network-namespace lab with real FRR routers, gobgpd and the podroute agent');
}
