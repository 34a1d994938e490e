// The agent's Node.js flags (NODE_OPTIONS of the DaemonSet) are ones Node accepts from NODE_OPTIONS, keep the
// V8 heap inside the container's memory limit, and are what the footprint benchmark runs the agent with.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { daemonSetAgentEnv, daemonSetNodeOptions } from '../../../bench/footprint.js';
import { BASE, kustomize, OVERLAYS } from './manifests.js';

const execFileAsync = promisify(execFile);

interface AgentContainer {
  name: string;
  env?: { name: string; value?: string }[];
  resources?: { limits?: Record<string, string> };
}

function mebibytes(quantity: string): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity);
  if (match === null) throw new Error(`memory quantity ${quantity}: expected Mi or Gi`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1);
}

async function agentContainer(dir: string): Promise<AgentContainer> {
  const objects = await kustomize(dir);
  const ds = objects.find((o) => o.kind === 'DaemonSet') as unknown as { spec: { template: { spec: { containers: AgentContainer[] } } } };
  const agent = ds.spec.template.spec.containers.find((c) => c.name === 'podroute');
  if (agent === undefined) throw new Error(`${dir}: no podroute container`);
  return agent;
}

describe('deploy: the agent\'s Node.js flags', function () {
  this.timeout(60_000);

  it('the benchmark reads the flags the base DaemonSet sets', async () => {
    const agent = await agentContainer(BASE);
    const value = agent.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
    expect(value, 'NODE_OPTIONS of the podroute container').to.be.a('string');
    expect(daemonSetNodeOptions()).to.deep.equal(value!.split(/\s+/).filter((a) => a !== ''));
  });

  it('the benchmark starts the agent with the other variables the base DaemonSet gives it a value (glibc malloc)', async () => {
    const agent = await agentContainer(BASE);
    const valued = (agent.env ?? []).filter((e) => e.name !== 'NODE_OPTIONS' && e.value !== undefined);
    expect(valued.map((e) => e.name)).to.include.members(['MALLOC_ARENA_MAX', 'MALLOC_MMAP_THRESHOLD_']);
    expect(daemonSetAgentEnv()).to.deep.equal(Object.fromEntries(valued.map((e) => [e.name, e.value])));
  });

  it('Node accepts every flag from NODE_OPTIONS (a flag it refuses there stops the agent from starting)', async () => {
    const flags = daemonSetNodeOptions().join(' ');
    const { stdout } = await execFileAsync(process.execPath, ['-e', 'process.stdout.write(String(require("v8").getHeapStatistics().heap_size_limit))'], {
      env: { ...process.env, NODE_OPTIONS: flags },
    });
    const limitMiB = Number(stdout) / 1024 / 1024;
    const oldSpace = /--max-old-space-size=(\d+)/.exec(flags);
    expect(oldSpace, '--max-old-space-size is set').to.not.equal(null);
    // The heap limit V8 reports is old space plus young generation: at least the old space asked for.
    expect(limitMiB).to.be.at.least(Number(oldSpace![1]));
  });

  for (const dir of [BASE, ...OVERLAYS]) {
    it(`${dir}: the V8 heap limit leaves room under the container memory limit (code, buffers, gRPC, child processes)`, async () => {
      const agent = await agentContainer(dir);
      const limit = agent.resources?.limits?.memory;
      expect(limit, 'memory limit').to.be.a('string');
      const heap = /--max-old-space-size=(\d+)/.exec(agent.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '');
      expect(heap, 'NODE_OPTIONS sets --max-old-space-size').to.not.equal(null);
      const semi = /--max-semi-space-size=(\d+)/.exec(agent.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '');
      // Young generation: three semi-spaces (V8 default 16 MiB each on 64-bit when not set).
      const young = 3 * (semi === null ? 16 : Number(semi[1]));
      expect(Number(heap![1]) + young + 96).to.be.at.most(mebibytes(limit!));
    });
  }
});
