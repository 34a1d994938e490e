// The agent image of the previous agent, for the upgrade lab test: the tree as it was before the last commit that
// changed the agent (src/, package.json, package-lock.json), compiled with today's node_modules and built by
// deploy/images/build.sh as podroute/agent:previous (AGENT_TAG). The image carries the commit it was compiled
// from (label org.opencontainers.image.revision), so a warm run finds it and neither compiles nor builds.
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { repoRoot } from '../lab/leftovers.js';
import { CONTAINERS_ENV } from './podman-kubelet.js';

export const PREVIOUS_AGENT_TAG = 'previous';
export const PREVIOUS_AGENT_IMAGE = `podroute/agent:${PREVIOUS_AGENT_TAG}`;

async function git(args: string[]): Promise<string> {
  return (await execa('git', args, { cwd: repoRoot() })).stdout.trim();
}

/** The parent of the last commit that changed the agent: what the node ran before the current agent. */
export async function previousAgentCommit(): Promise<{ commit: string; changedBy: string }> {
  const changedBy = await git(['rev-list', '-n1', 'HEAD', '--', 'src', 'package.json', 'package-lock.json']);
  return { commit: await git(['rev-parse', `${changedBy}^`]), changedBy };
}

async function imageRevision(): Promise<string | undefined> {
  const r = await execa('podman', ['image', 'inspect', '--format', '{{index .Labels "org.opencontainers.image.revision"}}', PREVIOUS_AGENT_IMAGE], { env: CONTAINERS_ENV, reject: false });
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

/**
 * podroute/agent:previous of `commit`, built unless podman already has it: the commit checked out with
 * `git worktree add --detach` into a temporary directory (removed afterwards), compiled there with the current
 * node_modules, then deploy/images/build.sh with DIST set to that tree. Returns whether it was built now.
 */
export async function ensurePreviousAgentImage(commit: string): Promise<{ built: boolean }> {
  // build.sh labels the image with `git describe --always --dirty` of the compiled tree's (clean) checkout.
  const short = await git(['describe', '--always', commit]);
  if ((await imageRevision()) === short) return { built: false };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'podroute-previous-agent-'));
  const tree = path.join(dir, 'tree');
  try {
    await git(['worktree', 'add', '--detach', tree, commit]);
    symlinkSync(path.join(repoRoot(), 'node_modules'), path.join(tree, 'node_modules'));
    const outDir = path.join(tree, '.build', 'previous');
    const tsc = await execa(process.execPath, [path.join(repoRoot(), 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--outDir', outDir], { cwd: tree, reject: false, all: true });
    if (tsc.exitCode !== 0) throw new Error(`the agent of ${short} does not compile with today's node_modules:\n${tsc.all ?? ''}`);
    const build = await execa(path.join(repoRoot(), 'deploy/images/build.sh'), [], { cwd: repoRoot(), env: { DIST: outDir, AGENT_TAG: PREVIOUS_AGENT_TAG }, reject: false, all: true });
    if (build.exitCode !== 0) throw new Error(`deploy/images/build.sh of the previous agent failed (${build.exitCode}):\n${build.all ?? ''}`);
  } finally {
    await execa('git', ['worktree', 'remove', '--force', tree], { cwd: repoRoot(), reject: false });
    rmSync(dir, { recursive: true, force: true });
    await execa('git', ['worktree', 'prune'], { cwd: repoRoot(), reject: false });
  }
  const revision = await imageRevision();
  if (revision !== short) throw new Error(`${PREVIOUS_AGENT_IMAGE} carries revision ${revision}, not ${short}`);
  return { built: true };
}

/** The rendered objects with the DaemonSet's agent image replaced, as a kustomize `images:` entry would. */
export function withAgentImage<T extends { kind: string; spec?: unknown }>(objects: T[], image: string): T[] {
  return objects.map((o) => {
    if (o.kind !== 'DaemonSet') return o;
    const copy = structuredClone(o);
    const pod = (copy.spec as { template: { spec: { initContainers?: { image: string }[]; containers: { image: string }[] } } }).template.spec;
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) if (c.image.startsWith('podroute/agent:')) c.image = image;
    return copy;
  });
}
