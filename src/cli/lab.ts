// `podroute lab ...`: the network-namespace lab (contract in ARCHITECTURE.md, "The lab").
import { writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import { createLogger } from '../observe/log.js';
import { existsSync } from 'node:fs';

// The lab's modules are loaded only when a lab command runs: the agent shares this binary, and the lab (its
// kubelet and API server) would load @kubernetes/client-node into every agent for nothing (~60 MB of RSS).
const matrixModule = (): Promise<typeof import('../lab/matrix.js')> => import('../lab/matrix.js');

function parseIntOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${value}`);
  return n;
}

/** Stops on SIGTERM/SIGINT through one AbortSignal. */
function signalOnTermination(): AbortSignal {
  const controller = new AbortController();
  const stop = (): void => controller.abort(new Error('terminated'));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return controller.signal;
}

export function labCommand(): Command {
  const lab = new Command('lab').description('network-namespace lab with real FRR routers, gobgpd and the podroute agent');

  lab
    .command('up')
    .description('build TOPOLOGY in network namespaces; returns once BGP sessions are up and pods run')
    .argument('<topology>', 'topology YAML file (see topologies/two-racks.yaml)')
    .option('--name <name>', 'lab name (part of every namespace and file name)', 'demo')
    .option('--timeout <seconds>', 'give up when not converged after this long', parseIntOption, 180)
    .action(async (topology: string, opts: { name: string; timeout: number }) => {
      const { labUp } = await import('../lab/up.js');
      const { formatStatus } = await import('../lab/status.js');
      const { LabError } = await import('../lab/errors.js');
      const { labPaths } = await import('../lab/paths.js');
      const log = createLogger({ component: 'lab', format: 'text' });
      let status;
      try {
        status = await labUp({ topologyFile: topology, name: opts.name, timeoutMs: opts.timeout * 1000, log, signal: signalOnTermination() });
      } catch (err) {
        // A half-built lab stays for inspection (logs in its logDir); `down` removes whatever exists.
        if (existsSync(labPaths(opts.name).stateFile) && !(err instanceof LabError && err.code === 'LAB_EXISTS')) {
          log.error(`lab ${opts.name} did not come up; inspect ${labPaths(opts.name).logDir}, then run: podroute lab down ${opts.name}`);
        }
        throw err;
      }
      process.stdout.write(formatStatus(status));
    });

  lab
    .command('down')
    .description('tear a lab down completely (processes, namespaces, FRR dirs, mounts, files), also after a crash')
    .argument('[name]', 'lab name')
    .option('--all', 'every lab found under the lab root')
    .option('--prefix <prefix>', 'with --all: only labs whose name starts with this')
    .action(async (name: string | undefined, opts: { all?: boolean; prefix?: string }) => {
      const { labDown, labDownAll } = await import('../lab/down.js');
      const log = createLogger({ component: 'lab', format: 'text' });
      if (opts.all === true) {
        const labs = await labDownAll({ log, ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }) });
        process.stdout.write(labs.length === 0 ? 'no labs\n' : `down: ${labs.join(' ')}\n`);
        return;
      }
      if (name === undefined) throw new Error('lab down: give a lab NAME or --all');
      await labDown(name, { log });
      process.stdout.write(`down: ${name}\n`);
    });

  lab
    .command('status')
    .description('nodes, routers and their sessions, pods (namespace, name, node, IPs, netns), API URL, kubeconfig')
    .argument('<name>', 'lab name')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (name: string, opts: { output: string }) => {
      const { formatStatus, labStatus } = await import('../lab/status.js');
      const status = await labStatus(name);
      process.stdout.write(opts.output === 'json' ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status));
    });

  lab
    .command('exec')
    .description('run a command inside a pod (NAMESPACE/POD), node/NODE, router/ROUTER or host/EXTERNAL namespace')
    .argument('<name>', 'lab name')
    .argument('<target>', 'NAMESPACE/POD | node/NODE | router/ROUTER | host/EXTERNAL')
    .argument('<command...>', 'command and arguments (after --)')
    .action(async (name: string, target: string, command: string[]) => {
      const { labExec } = await import('../lab/exec.js');
      process.exitCode = await labExec(name, target, command);
    });

  lab
    .command('show')
    .description('what `make lab` shows: the routes each node installed, the Services and who advertises them, then the pod-to-pod matrix')
    .argument('<name>', 'lab name')
    .action(async (name: string) => {
      const { formatNodeRoutes } = await import('../lab/status.js');
      const { formatServices, labServices } = await import('../lab/service-status.js');
      const { formatMatrix, runMatrix } = await matrixModule();
      process.stdout.write(await formatNodeRoutes(name));
      process.stdout.write('\n' + formatServices(await labServices(name)));
      process.stdout.write('\n' + formatMatrix(await runMatrix(name, { timeoutMs: 1000 })));
    });

  lab
    .command('routes')
    .description('the kernel routes podroute installed on each node (its routing protocol number), IPv4 and IPv6')
    .argument('<name>', 'lab name')
    .action(async (name: string) => {
      const { formatNodeRoutes } = await import('../lab/status.js');
      process.stdout.write(await formatNodeRoutes(name));
    });

  const node = lab.command('node').description('add or remove a node of a running lab');
  node
    .command('add')
    .description('join a node to a rack of a running lab: namespace, gobgpd, Node object, kubelet and agent')
    .argument('<name>', 'lab name')
    .argument('<node>', 'node name')
    .requiredOption('--rack <tor>', 'the ToR whose rack LAN the node joins')
    .requiredOption('--pod-cidr <cidr...>', "the node's podCIDRs (one or two: IPv4 and/or IPv6)")
    .option('--asn <asn>', "the node's ASN (default: the cluster's)", parseIntOption)
    .action(async (name: string, nodeName: string, opts: { rack: string; podCidr: string[]; asn?: number }) => {
      const { labNodeAdd } = await import('../lab/nodes.js');
      await labNodeAdd(name, { name: nodeName, rack: opts.rack, podCIDRs: opts.podCidr, ...(opts.asn === undefined ? {} : { asn: opts.asn }) });
    });
  node
    .command('remove')
    .description('remove a node as when its machine is gone: Node object deleted, processes stopped, namespaces deleted')
    .argument('<name>', 'lab name')
    .argument('<node>', 'node name')
    .action(async (name: string, nodeName: string) => {
      const { labNodeRemove } = await import('../lab/nodes.js');
      await labNodeRemove(name, nodeName);
    });

  lab
    .command('matrix')
    .description('probe every pod from every pod (and external hosts) on their ports, TCP+UDP, IPv4+IPv6, and print a matrix')
    .argument('<name>', 'lab name')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--timeout-ms <ms>', 'per-probe timeout', parseIntOption, 1000)
    .action(async (name: string, opts: { output: string; timeoutMs: number }) => {
      const { formatMatrix, runMatrix } = await matrixModule();
      const report = await runMatrix(name, { timeoutMs: opts.timeoutMs });
      process.stdout.write(opts.output === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatMatrix(report));
    });

  lab
    .command('clab')
    .description('containerlab topology (kind + FRR images) for the same TOPOLOGY')
    .argument('<topology>', 'topology YAML file')
    .option('--name <name>', 'containerlab lab name (default: the topology file name)')
    .option('--out-dir <dir>', 'write NAME.clab.yml and NAME/ (router configs) here instead of printing the YAML')
    .action(async (topologyFile: string, opts: { name?: string; outDir?: string }) => {
      const name = opts.name ?? path.basename(topologyFile).replace(/\.ya?ml$/, '');
      const { renderClab } = await import('../lab/clab.js');
      const { loadTopology } = await import('../lab/topology.js');
      const files = renderClab(await loadTopology(topologyFile), name);
      if (opts.outDir === undefined) {
        process.stdout.write(files[`${name}.clab.yml`] ?? '');
        return;
      }
      for (const [file, content] of Object.entries(files)) {
        const target = path.join(opts.outDir, file);
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, content);
      }
      process.stdout.write(`wrote ${Object.keys(files).length} files under ${opts.outDir}\n`);
    });

  // Daemons `lab up` starts; not for people.
  lab.addCommand(
    new Command('apiserver')
      .description('(internal) the lab API server')
      .requiredOption('--lab <lab>', 'lab name')
      .option('--port <port>', 'loopback TCP port (0 = any)', parseIntOption, 0)
      .action(async (opts: { lab: string; port: number }) => {
        const { runApiServerProcess } = await import('../lab/apiserver/process.js');
        await runApiServerProcess({ lab: opts.lab, tcpPort: opts.port });
      }),
    { hidden: true },
  );
  lab.addCommand(
    new Command('kubelet')
      .description('(internal) the lab kubelet of one node; runs inside the node namespace')
      .requiredOption('--lab <lab>', 'lab name')
      .requiredOption('--node <node>', 'node name')
      .action(async (opts: { lab: string; node: string }) => {
        const { runLabKubelet } = await import('../lab/kubelet/kubelet.js');
        await runLabKubelet({ lab: opts.lab, node: opts.node, signal: signalOnTermination() });
      }),
    { hidden: true },
  );
  lab.addCommand(
    new Command('endpointslice-controller')
      .description("(internal) the lab's stand-in for kube-controller-manager's EndpointSlice controller")
      .requiredOption('--lab <lab>', 'lab name')
      .action(async (opts: { lab: string }) => {
        const { runEndpointSliceController } = await import('../lab/services/endpoint-slice-controller.js');
        await runEndpointSliceController({ lab: opts.lab, signal: signalOnTermination() });
      }),
    { hidden: true },
  );
  lab.addCommand(
    new Command('service-proxy')
      .description("(internal) the lab's stand-in for kube-proxy (iptables mode) in every node namespace")
      .requiredOption('--lab <lab>', 'lab name')
      .action(async (opts: { lab: string }) => {
        const { runServiceProxy } = await import('../lab/services/service-proxy.js');
        await runServiceProxy({ lab: opts.lab, signal: signalOnTermination() });
      }),
    { hidden: true },
  );
  return lab;
}
