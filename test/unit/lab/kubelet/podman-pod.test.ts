// The DaemonSet pod spec translated as a kubelet realizes it, for podman on a lab node (src/lab/kubelet/podman-pod.ts):
// the rendered base DaemonSet's containers, and the volume files with their modes.
import { expect } from 'chai';
import YAML from 'yaml';
import {
  adaptAgentConfigToLab,
  fieldRefValue,
  httpProbeUrl,
  memoryBytes,
  podmanRunArgs,
  PodTranslationError,
  restartDelay,
  volumeFiles,
  type PodFacts,
  type PodmanPlacement,
  type WirePodSpec,
} from '../../../../src/lab/kubelet/podman-pod.js';
import { kustomize } from '../../deploy/manifests.js';

const facts: PodFacts = {
  namespace: 'kube-system',
  name: 'podroute-n1',
  nodeName: 'n1',
  serviceAccountName: 'podroute',
  configMaps: new Map<string, Record<string, string>>([
    ['cfg', { 'config.yaml': 'a: 1\n', other: 'x' }],
    ['kube-root-ca.crt', { 'ca.crt': 'PEM' }],
  ]),
  secrets: new Map([['pw', { tor1: Buffer.from('s1\n'), tor2: Buffer.from('s2\n') }]]),
  serviceAccountToken: 'TOKEN',
};

const placement = (volumes: string[]): PodmanPlacement => ({
  namePrefix: 'lab1-podroute',
  netnsPath: '/run/netns/lab1-n1',
  volumeHostPaths: new Map(volumes.map((v) => [v, `/host/${v}`])),
  kubeletEnv: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '6444' },
  labels: { 'podroute.io/lab': 'lab1' },
});

async function baseSpec(): Promise<WirePodSpec> {
  const ds = (await kustomize('deploy/base')).find((o) => o.kind === 'DaemonSet')!;
  return (ds.spec as { template: { spec: WirePodSpec } }).template.spec;
}

describe('lab: a DaemonSet pod spec as podman run arguments', function () {
  this.timeout(30_000);

  it('the agent container: host network = the node netns, drop all + the listed capabilities, read-only root without podman\'s tmpfs, env with NODE_NAME, mounts, command', async () => {
    const spec = await baseSpec();
    const agent = spec.containers.find((c) => c.name === 'podroute')!;
    const args = podmanRunArgs(spec, agent, placement((spec.volumes ?? []).map((v) => v.name)), facts);
    expect(args.slice(0, 6)).to.deep.equal(['--detach', '--name', 'lab1-podroute-podroute', '--pull=never', '--label', 'podroute.io/lab=lab1']);
    expect(args).to.include.members(['--network', 'ns:/run/netns/lab1-n1', '--cap-drop=all', '--cap-add=NET_ADMIN', '--cap-add=NET_RAW', '--read-only', '--read-only-tmpfs=false']);
    expect(args.filter((a) => a.startsWith('--cap-'))).to.deep.equal(['--cap-drop=all', '--cap-add=NET_ADMIN', '--cap-add=NET_RAW']);
    expect(args.join(' ')).to.contain('--security-opt no-new-privileges').and.contain('--user 0').and.contain(`--memory ${512 * 1024 * 1024}b`);
    // RuntimeDefault is podman's default seccomp profile: nothing to ask for, and never unconfined.
    expect(args.join(' ')).to.not.contain('seccomp');
    const env = args.flatMap((a, i) => (args[i - 1] === '--env' ? [a] : []));
    expect(env).to.deep.equal([
      'KUBERNETES_SERVICE_HOST=127.0.0.1',
      'KUBERNETES_SERVICE_PORT=6444',
      'NODE_NAME=n1',
      'NODE_OPTIONS=--max-old-space-size=384 --max-semi-space-size=2',
      'MALLOC_ARENA_MAX=1',
      'MALLOC_MMAP_THRESHOLD_=131072',
    ]);
    const volumes = args.flatMap((a, i) => (args[i - 1] === '--volume' ? [a] : []));
    expect(volumes).to.include('/host/config:/etc/podroute:ro').and.include('/host/gobgp-socket:/run/podroute:rw').and.include('/host/kube-api-access:/var/run/secrets/kubernetes.io/serviceaccount:ro');
    // command replaces the ENTRYPOINT (its first word) and the image's CMD (the rest, after the image).
    const image = args.indexOf('podroute/agent:0.1.0');
    expect(args[image - 1]).to.equal('["podroute"]');
    expect(args.slice(image + 1)).to.deep.equal(['agent', '--config', '/etc/podroute/config.yaml']);
  });

  it('gobgpd: only NET_BIND_SERVICE, the entrypoint as command and the args after the image; no service-account mount', async () => {
    const spec = await baseSpec();
    const gobgpd = spec.containers.find((c) => c.name === 'gobgpd')!;
    const args = podmanRunArgs(spec, gobgpd, placement((spec.volumes ?? []).map((v) => v.name)), facts);
    expect(args.filter((a) => a.startsWith('--cap-'))).to.deep.equal(['--cap-drop=all', '--cap-add=NET_BIND_SERVICE']);
    expect(args.join(' ')).to.not.contain('serviceaccount');
    expect(args.slice(args.indexOf('podroute/gobgpd:3.10.0') - 2)).to.deep.equal([
      '--entrypoint',
      '["/usr/local/bin/gobgpd-entrypoint"]',
      'podroute/gobgpd:3.10.0',
      '--api-hosts',
      'unix:///run/podroute/gobgp.sock',
      '--pprof-disable',
    ]);
  });

  it('refuses what it cannot run faithfully: no host network, a privileged container, a mount without a volume, a volume it did not place', async () => {
    const spec = await baseSpec();
    const agent = spec.containers.find((c) => c.name === 'podroute')!;
    const all = placement((spec.volumes ?? []).map((v) => v.name));
    expect(() => podmanRunArgs({ ...spec, hostNetwork: false }, agent, all, facts)).to.throw(PodTranslationError, /hostNetwork/);
    expect(() => podmanRunArgs(spec, { ...agent, securityContext: { privileged: true } }, all, facts)).to.throw(PodTranslationError, /privileged/);
    expect(() => podmanRunArgs(spec, { ...agent, volumeMounts: [{ name: 'nope', mountPath: '/x' }] }, all, facts)).to.throw(PodTranslationError, /names no volume/);
    expect(() => podmanRunArgs(spec, agent, placement([]), facts)).to.throw(PodTranslationError, /no host path/);
    expect(() => fieldRefValue('status.podIP', facts)).to.throw(PodTranslationError, /not supported/);
  });

  it('volume files: all keys at defaultMode (0644 when unset), items with their own mode, a missing optional Secret projects nothing', () => {
    expect(volumeFiles({ name: 'c', configMap: { name: 'cfg' } }, facts)?.map((f) => [f.path, f.content.toString(), f.mode])).to.deep.equal([
      ['config.yaml', 'a: 1\n', 0o644],
      ['other', 'x', 0o644],
    ]);
    expect(volumeFiles({ name: 's', secret: { secretName: 'pw', defaultMode: 0o400, items: [{ key: 'tor2', path: 'sub/t2', mode: 0o440 }] } }, facts)?.map((f) => [f.path, f.content.toString(), f.mode])).to.deep.equal([
      ['sub/t2', 's2\n', 0o440],
    ]);
    expect(volumeFiles({ name: 's', secret: { secretName: 'absent', optional: true } }, facts)).to.deep.equal([]);
    expect(() => volumeFiles({ name: 's', secret: { secretName: 'absent' } }, facts)).to.throw(PodTranslationError, /not found/);
    expect(() => volumeFiles({ name: 'c', configMap: { name: 'cfg', items: [{ key: 'nope', path: 'n' }] } }, facts)).to.throw(PodTranslationError, /no key "nope"/);
    expect(volumeFiles({ name: 'e', emptyDir: {} }, facts)).to.equal(undefined);
  });

  it('the base\'s kube-api-access volume: token, ca.crt and namespace at the projected defaultMode', async () => {
    const spec = await baseSpec();
    const volume = spec.volumes!.find((v) => v.name === 'kube-api-access')!;
    expect(volumeFiles(volume, facts)?.map((f) => [f.path, f.content.toString(), f.mode])).to.deep.equal([
      ['token', 'TOKEN', 0o644],
      ['ca.crt', 'PEM', 0o644],
      ['namespace', 'kube-system', 0o644],
    ]);
  });

  it('probe URLs resolve named ports; memory quantities', async () => {
    const spec = await baseSpec();
    const agent = spec.containers.find((c) => c.name === 'podroute')!;
    expect(httpProbeUrl(agent, agent.readinessProbe!)).to.equal('http://127.0.0.1:9476/readyz');
    expect(httpProbeUrl(agent, { httpGet: { host: '::1', port: 80 } })).to.equal('http://[::1]:80/');
    expect(() => httpProbeUrl(agent, { httpGet: { port: 'nope' } })).to.throw(PodTranslationError, /names no container port/);
    expect([memoryBytes('512Mi'), memoryBytes('1G'), memoryBytes(1000), memoryBytes('1.5Ki')]).to.deep.equal([536870912, 1e9, 1000, 1536]);
  });

  it('restartPolicy Always backs off as the kubelet: at once, then 10 s doubling to 5 min, from scratch after 10 min running', () => {
    const delays: number[] = [];
    let exits = 0;
    for (let i = 0; i < 8; i++) {
      const next = restartDelay(exits, 1000);
      delays.push(next.delayMs);
      exits = next.exits;
    }
    expect(delays).to.deep.equal([0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
    expect(restartDelay(exits, 600_000)).to.deep.equal({ delayMs: 0, exits: 1 });
  });

  it('the agent configuration adapted to a lab node changes cni.ipamDataDir only', () => {
    const config = 'cluster:\n  asn: 64512\n  podRanges: [10.244.0.0/16]\n# kept\ncni:\n  bridge: podroute0\n';
    const adapted = YAML.parse(adaptAgentConfigToLab(config, { ipamDataDir: '/run/lab/ipam' })) as Record<string, unknown>;
    expect(adapted).to.deep.equal({ cluster: { asn: 64512, podRanges: ['10.244.0.0/16'] }, cni: { bridge: 'podroute0', ipamDataDir: '/run/lab/ipam' } });
    expect(YAML.parse(adaptAgentConfigToLab('cluster: {podRanges: [10.0.0.0/8]}\n', { ipamDataDir: '/d' }))).to.deep.equal({ cluster: { podRanges: ['10.0.0.0/8'] }, cni: { ipamDataDir: '/d' } });
  });
});
