// The CNI conflist waits for policy: gobgpd + `podroute agent` (policy on) in a network namespace of our own, fed
// by an in-process lab API server, with every iptables-restore failing as it does while another program holds the
// xtables lock. The agent writes no conflist (no pod can start unfiltered) and does not report the node's network
// available; once the restores work, the rules go in first, then the conflist, then the node condition.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import YAML from 'yaml';
import { nodeObject, startBenchApi, type BenchApi } from '../../../bench/lib/agent-host.js';
import { Cleanup, addNetns, logTail, sleep, startDaemon, type Daemon } from '../../../bench/lib/proc.js';
import type { AgentConfigInput } from '../../../src/config/agent-config.js';
import type { Node } from '../../../src/kube/wire.js';
import { renderKubeconfig } from '../../../src/lab/apiserver/index.js';
import { CLI_MAIN, gobgpdArgs } from '../../../src/lab/daemons.js';
import { testLabName } from '../lab/leftovers.js';
import { pollUntil } from '../../poll.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const RELAY_SCRIPT = path.join(here, '..', '..', '..', 'bench', 'api-relay.js');
const NODE_NS = `${testLabName('h9', '')}cni-node`;
const NODE_IP = '10.239.0.1';

/** iptables-nft-restore (the backend the agent detects in an empty namespace) as it answers while the xtables lock is held elsewhere, as long as `flag` exists. */
function lockedRestore(real: string, flag: string): string {
  return [
    '#!/bin/sh',
    `if [ -e '${flag}' ]; then`,
    '  echo "Another app is currently holding the xtables lock. Stopped waiting after 5s." >&2',
    '  exit 4',
    'fi',
    `exec '${real}' "$@"`,
    '',
  ].join('\n');
}

describe('agent: the CNI conflist only after the first successful policy sync', function () {
  this.timeout(180_000);
  const cleanup = new Cleanup();
  let dir: string;
  let api: BenchApi;
  let agent: Daemon;
  let agentLog: string;
  let cniDir: string;
  let flag: string;

  const networkAvailable = (): boolean => {
    const node = api.server.get('Node', undefined, 'n1') as Node;
    return node.status?.conditions?.some((c) => c.type === 'NetworkUnavailable' && c.status === 'False') === true;
  };
  const forwardRules = (cmd: string): string =>
    execFileSync('ip', ['netns', 'exec', NODE_NS, cmd, '-S', 'FORWARD'], { encoding: 'utf8' });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'hb-cni-policy-'));
    cleanup.add('temp dir', () => rm(dir, { recursive: true, force: true }));
    await addNetns(NODE_NS, cleanup);
    execFileSync('ip', ['-n', NODE_NS, 'link', 'add', 'hbd0', 'type', 'veth', 'peer', 'name', 'hbd1']);
    execFileSync('ip', ['-n', NODE_NS, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'hbd0']);
    // A jumbo fabric link: with cni.mtu unset the pods get its MTU.
    execFileSync('ip', ['-n', NODE_NS, 'link', 'set', 'hbd0', 'mtu', '9000', 'up']);

    api = await startBenchApi(path.join(dir, 'api'), cleanup);
    api.server.create(nodeObject({ name: 'n1', address: NODE_IP, podCIDRs: ['10.244.1.0/24'] }));

    const bin = path.join(dir, 'bin');
    await mkdir(bin);
    flag = path.join(dir, 'xtables-lock-held');
    await writeFile(flag, '');
    for (const cmd of ['iptables-nft-restore', 'ip6tables-nft-restore']) {
      const real = execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
      await writeFile(path.join(bin, cmd), lockedRestore(real, flag), { mode: 0o755 });
    }

    const nodeDir = path.join(dir, 'n1');
    cniDir = path.join(nodeDir, 'cni');
    await mkdir(cniDir, { recursive: true });
    const socket = path.join(nodeDir, 'gobgp.sock');
    const relayLog = path.join(nodeDir, 'relay.log');
    const relay = startDaemon({ name: 'relay/n1', netns: NODE_NS, command: process.execPath, args: [RELAY_SCRIPT, '--socket', api.socket, '--port', '6443'], logFile: relayLog }, cleanup);
    startDaemon({ name: 'gobgpd/n1', netns: NODE_NS, command: 'gobgpd', args: gobgpdArgs(socket), logFile: path.join(nodeDir, 'gobgpd.log') }, cleanup);
    const kubeconfig = path.join(nodeDir, 'kubeconfig');
    await writeFile(kubeconfig, renderKubeconfig('http://127.0.0.1:6443', 'hb-n1'));
    const config: AgentConfigInput = {
      nodeName: 'n1',
      kubeconfig,
      gobgp: { target: `unix://${socket}` },
      cluster: { asn: 64512, podRanges: ['10.244.0.0/16'] },
      bgp: { mesh: 'off', peers: [] },
      cni: { confDir: cniDir, ipamDataDir: path.join(nodeDir, 'ipam') },
      masquerade: { enabled: false },
      policy: { enabled: true },
      log: { level: 'info', format: 'json' },
      metrics: { address: '127.0.0.1:9476' },
    };
    const configFile = path.join(nodeDir, 'agent.yaml');
    await writeFile(configFile, YAML.stringify(config));
    await pollUntil('api relay ready', () => (relay.exited ? Promise.reject(new Error(logTail(relayLog))) : /ready/.test(logTail(relayLog)) || undefined), { timeoutMs: 20_000, intervalMs: 50 });
    agentLog = path.join(nodeDir, 'agent.log');
    agent = startDaemon(
      {
        name: 'agent/n1',
        netns: NODE_NS,
        command: process.execPath,
        args: [CLI_MAIN, 'agent', '--config', configFile],
        logFile: agentLog,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` },
      },
      cleanup,
    );
  });

  after(async () => {
    const problems = await cleanup.run();
    expect(problems, problems.join('\n')).to.deep.equal([]);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.to.include(NODE_NS);
  });

  it('writes no conflist and keeps the node NetworkUnavailable while every policy apply fails', async () => {
    await pollUntil('the agent has failed its policy apply twice', () => {
      if (agent.exited) throw new Error(`agent exited:\n${logTail(agentLog, 40)}`);
      return (logTail(agentLog, 400).match(/policy apply failed/g) ?? []).length >= 2 || undefined;
    }, { timeoutMs: 60_000, intervalMs: 200 });
    // The rest of the node is up meanwhile (routes synced, BGP configured): only policy holds it back.
    await sleep(3_000);
    expect(await readdir(cniDir), `conflist written before policy was in force:\n${logTail(agentLog, 20)}`).to.deep.equal([]);
    expect(networkAvailable(), 'NetworkUnavailable=False reported').to.equal(false);
    expect(forwardRules('iptables')).to.not.include('PRPOL-FORWARD');
  });

  it('once the lock is free: the rules go in, then the conflist, then NetworkUnavailable=False', async () => {
    await rm(flag);
    const conflist = path.join(cniDir, '10-podroute.conflist');
    await pollUntil('the conflist is written', () => {
      if (agent.exited) throw new Error(`agent exited:\n${logTail(agentLog, 40)}`);
      return existsSync(conflist) || undefined;
    }, { timeoutMs: 60_000, intervalMs: 20 });
    // The rules were in before the conflist appeared.
    expect(forwardRules('iptables')).to.include('-j PRPOL-FORWARD');
    expect(forwardRules('ip6tables')).to.include('-j PRPOL-FORWARD');
    await pollUntil('the node reported network-available', () => networkAvailable() || undefined, { timeoutMs: 60_000 });
  });

  it("gives pods the MTU of the InternalIP's link, and rolls a changed one into the conflist with an Event", async () => {
    const conflist = path.join(cniDir, '10-podroute.conflist');
    const mtu = async (): Promise<unknown> => (JSON.parse(await readFile(conflist, 'utf8')) as { plugins: { mtu?: number }[] }).plugins[0]?.mtu;
    expect(await mtu()).to.equal(9000);
    execFileSync('ip', ['-n', NODE_NS, 'link', 'set', 'hbd0', 'mtu', '1400']);
    // The agent reads the links at every node re-plan (every 30 s); a change of the Node's podroute annotations
    // re-plans at once (the watch passes on nothing else of a Node's metadata).
    const node = api.server.get('Node', undefined, 'n1') as Node;
    api.server.update({ ...node, metadata: { ...node.metadata, annotations: { ...(node.metadata?.annotations ?? {}), 'podroute.io/pod-cidr-local-preference': '150' } } });
    await pollUntil('the conflist carries the new MTU', async () => (await mtu()) === 1400 || undefined, { timeoutMs: 20_000, intervalMs: 100 });
    const events = api.server.list('Event').map((e) => e as { reason?: string; message?: string });
    expect(events.find((e) => e.reason === 'PodrouteMtuChanged')?.message).to.match(/pod MTU changed from 9000 to 1400 \(the MTU of hbd0\)/);
  });
});
