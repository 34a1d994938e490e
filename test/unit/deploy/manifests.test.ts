// The deploy/ manifests: they parse, every kustomization builds offline, and every reference inside a build
// agrees with the others and with the agent's configuration as the real `podroute agent --check-config` reads it.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { SERVICE_ACCOUNT_DIR } from '../../../src/kube/kube-api.js';
import {
  KUSTOMIZATIONS,
  OVERLAYS,
  agentConfigOf,
  containerNamed,
  flagValue,
  kustomize,
  only,
  parseYamlDocuments,
  repoPath,
  runCheckConfig,
  splitHostPort,
  volumeAt,
  volumeNamed,
  type Container,
  type DaemonSet,
  type K8sObject,
  type PodSpec,
} from './manifests.js';
import { familyOf } from '../../../src/routes/ip-prefix.js';

function yamlFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(repoPath(dir), { withFileTypes: true })) {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...yamlFilesUnder(relative));
    else if (/\.ya?ml$/.test(entry.name)) out.push(relative);
  }
  return out;
}

function allContainers(pod: PodSpec): Container[] {
  return [...(pod.initContainers ?? []), ...pod.containers];
}

function daemonSetOf(objects: K8sObject[]): { ds: DaemonSet; pod: PodSpec } {
  const ds = only<DaemonSet>(objects, 'DaemonSet', 'podroute');
  return { ds, pod: ds.spec.template.spec };
}

describe('deploy: manifests', function () {
  this.timeout(60_000);

  it('every YAML file under deploy/ and containerlab/kind-leaf-spine/ parses; Kubernetes objects are complete', () => {
    const files = [...yamlFilesUnder('deploy'), ...yamlFilesUnder('containerlab/kind-leaf-spine')];
    expect(files.length).to.be.greaterThan(10);
    for (const file of files) {
      const docs = parseYamlDocuments(readFileSync(repoPath(file), 'utf8'), file);
      expect(docs.length, file).to.be.greaterThan(0);
      for (const doc of docs) {
        const o = doc as Partial<K8sObject>;
        if (typeof o.apiVersion === 'string' && !o.apiVersion.startsWith('kustomize.config.k8s.io') && !o.apiVersion.startsWith('kind.x-k8s.io')) {
          expect(o.kind, `${file}: kind`).to.be.a('string');
          expect(o.metadata?.name, `${file}: metadata.name of a ${o.kind}`).to.be.a('string');
        }
      }
    }
  });

  for (const dir of KUSTOMIZATIONS) {
    describe(dir, () => {
      it('builds with `kubectl kustomize` into the expected objects', async () => {
        const objects = await kustomize(dir);
        const kinds = objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, '')}`).sort();
        const expected = [
          'ClusterRole//podroute',
          'ClusterRoleBinding//podroute',
          'ConfigMap/kube-system/podroute-config',
          'DaemonSet/kube-system/podroute',
          'Role/default/podroute-node-events',
          'Role/kube-system/podroute-allocator-lease',
          'RoleBinding/default/podroute-node-events',
          'RoleBinding/kube-system/podroute-allocator-lease',
          'ServiceAccount/kube-system/podroute',
        ];
        if (dir.endsWith('as-per-rack')) expected.push('Secret/kube-system/podroute-bgp-passwords');
        expect(kinds).to.deep.equal(expected.sort());
      });

      it('its agent config passes the real `podroute agent --check-config`', async () => {
        const { effective } = await agentConfigOf(await kustomize(dir));
        expect(effective.cluster.podRanges.length).to.be.greaterThan(0);
      });

      it('DaemonSet: host network, every node, critical, rolling, no privileged container, pinned images', async () => {
        const { ds, pod } = daemonSetOf(await kustomize(dir));
        expect(ds.metadata.namespace).to.equal('kube-system');
        expect(pod.hostNetwork).to.equal(true);
        expect(pod.priorityClassName).to.equal('system-node-critical');
        expect(ds.spec.updateStrategy?.type).to.equal('RollingUpdate');
        // Tolerates every taint: an Exists toleration without key and effect.
        expect(pod.tolerations?.some((t) => t.operator === 'Exists' && t.key === undefined && t.effect === undefined)).to.equal(true);
        for (const c of allContainers(pod)) {
          expect(c.securityContext?.privileged ?? false, `${c.name} privileged`).to.equal(false);
          expect(c.securityContext?.allowPrivilegeEscalation, `${c.name} allowPrivilegeEscalation`).to.equal(false);
          expect(c.securityContext?.readOnlyRootFilesystem, `${c.name} readOnlyRootFilesystem`).to.equal(true);
          expect(c.securityContext?.capabilities?.drop, `${c.name} drops every capability it does not add`).to.deep.equal(['ALL']);
          expect(c.image, `${c.name} image`).to.match(/^[a-z0-9./-]+:[A-Za-z0-9._-]+$/);
          expect(c.image.endsWith(':latest'), `${c.name} image tag`).to.equal(false);
          expect(c.imagePullPolicy, `${c.name} pull policy (kind load needs IfNotPresent)`).to.equal('IfNotPresent');
          expect(c.resources?.requests?.cpu, `${c.name} cpu request`).to.be.a('string');
          expect(c.resources?.requests?.memory, `${c.name} memory request`).to.be.a('string');
          expect(c.resources?.limits?.memory, `${c.name} memory limit`).to.be.a('string');
        }
        // The capabilities each container truly needs (reasons in deploy/base/daemonset.yaml).
        const added = Object.fromEntries(allContainers(pod).map((c) => [c.name, [...(c.securityContext?.capabilities?.add ?? [])].sort()]));
        expect(added).to.deep.equal({
          'install-cni-plugins': [],
          // No SYS_MODULE: loading a kernel module is as good as host root; the host loads br_netfilter.
          'node-sysctls': ['NET_ADMIN'],
          podroute: ['NET_ADMIN', 'NET_RAW'],
          gobgpd: ['NET_BIND_SERVICE'],
          // UDP 3784 and unprivileged source ports with TTL 255: nothing to add.
          bfd: [],
        });
        const agentImage = containerNamed(pod, 'podroute').image;
        for (const c of [...(pod.initContainers ?? []), containerNamed(pod, 'bfd')]) expect(c.image, `${c.name} runs from the agent image`).to.equal(agentImage);
        // The agent reaches the companion at bgp.bfd.controlSocket: the default, on the volume both mount.
        expect(containerNamed(pod, 'bfd').command).to.deep.equal(['podroute', 'bfd', '--control-socket', '/run/podroute/bfd.sock']);
        expect(containerNamed(pod, 'bfd').volumeMounts?.map((m) => m.mountPath)).to.deep.equal(['/run/podroute']);
      });

      it('volumes and mounts match: every mount has a volume, every volume is mounted, read-only where it should be', async () => {
        const { pod } = daemonSetOf(await kustomize(dir));
        const volumes = (pod.volumes ?? []).map((v) => v.name);
        expect(new Set(volumes).size, 'volume names are unique').to.equal(volumes.length);
        const mounted = new Set<string>();
        for (const c of allContainers(pod)) {
          const paths = (c.volumeMounts ?? []).map((m) => m.mountPath);
          expect(new Set(paths).size, `${c.name}: mount paths are unique`).to.equal(paths.length);
          for (const m of c.volumeMounts ?? []) {
            expect(volumes, `${c.name} mounts ${m.name}`).to.include(m.name);
            mounted.add(m.name);
            const volume = volumeNamed(pod, m.name);
            // The runtime's CNI cache is the runtime's: the agent only reads which veth and addresses each pod got.
            if (volume.hostPath?.path === '/var/lib/cni' || volume.configMap !== undefined || volume.secret !== undefined || volume.projected !== undefined) {
              expect(m.readOnly, `${c.name}: ${m.mountPath} read-only`).to.equal(true);
            }
          }
        }
        expect([...mounted].sort()).to.deep.equal([...volumes].sort());
        const hostPaths = Object.fromEntries((pod.volumes ?? []).filter((v) => v.hostPath).map((v) => [v.hostPath?.path, v.hostPath?.type]));
        expect(hostPaths).to.deep.equal({
          '/etc/cni/net.d': 'DirectoryOrCreate',
          '/opt/cni/bin': 'DirectoryOrCreate',
          '/run/xtables.lock': 'FileOrCreate',
          '/proc/sys/net': 'Directory',
          '/var/lib/cni': 'DirectoryOrCreate',
        });
      });

      it('the agent: --config from the ConfigMap, NODE_NAME from the downward API, CNI and xtables lock mounts at the configured paths', async () => {
        const objects = await kustomize(dir);
        const { pod } = daemonSetOf(objects);
        const { effective } = await agentConfigOf(objects);
        const agent = containerNamed(pod, 'podroute');
        expect(agent.command?.slice(0, 2)).to.deep.equal(['podroute', 'agent']);
        expect(agent.env?.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath).to.equal('spec.nodeName');
        expect(volumeAt(pod, agent, effective.cni.confDir).hostPath?.path).to.equal('/etc/cni/net.d');
        expect(volumeAt(pod, agent, '/run/xtables.lock').hostPath?.path).to.equal('/run/xtables.lock');
        const install = containerNamed(pod, 'install-cni-plugins');
        const dest = install.command?.[1];
        expect(dest, 'install-cni-plugins installs into cni.binDir').to.equal(effective.cni.binDir);
        expect(volumeAt(pod, install, effective.cni.binDir).hostPath?.path).to.equal('/opt/cni/bin');
        const sysctls = containerNamed(pod, 'node-sysctls');
        const procSysNet = sysctls.env?.find((e) => e.name === 'PROC_SYS_NET')?.value;
        expect(procSysNet).to.be.a('string');
        expect(volumeAt(pod, sysctls, procSysNet ?? '').hostPath?.path).to.equal('/proc/sys/net');
        expect(sysctls.volumeMounts?.map((m) => m.mountPath)).to.deep.equal([procSysNet]);
      });

      it('the service-account token reaches the agent container only: not automounted, a projected volume at the standard path', async () => {
        const { pod } = daemonSetOf(await kustomize(dir));
        expect(pod.automountServiceAccountToken).to.equal(false);
        const agent = containerNamed(pod, 'podroute');
        const tokenDir = '/var/run/secrets/kubernetes.io/serviceaccount';
        expect(SERVICE_ACCOUNT_DIR).to.equal(tokenDir);
        const volume = volumeAt(pod, agent, tokenDir);
        const sources = volume.projected?.sources ?? [];
        expect(sources.find((s) => s.serviceAccountToken)?.serviceAccountToken).to.include({ path: 'token' });
        expect(sources.find((s) => s.configMap)?.configMap).to.deep.equal({ name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] });
        expect(sources.find((s) => s.downwardAPI)?.downwardAPI?.items).to.deep.equal([
          { path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
        ]);
        for (const c of allContainers(pod)) {
          const mounts = (c.volumeMounts ?? []).filter((m) => m.name === volume.name || m.mountPath.startsWith('/var/run/secrets'));
          expect(mounts.length, `${c.name} mounts the token`).to.equal(c.name === 'podroute' ? 1 : 0);
        }
      });

      it('gobgpd and the agent share the API socket: gobgpd --api-hosts = the config\'s gobgp.target, in one emptyDir', async () => {
        const objects = await kustomize(dir);
        const { pod } = daemonSetOf(objects);
        const { effective } = await agentConfigOf(objects);
        const gobgpd = containerNamed(pod, 'gobgpd');
        const argv = [...(gobgpd.command ?? []), ...(gobgpd.args ?? [])];
        const apiHosts = flagValue(argv, '--api-hosts');
        expect(apiHosts, 'gobgpd serves its API on the unix socket only').to.equal(effective.gobgp.target);
        expect(argv).to.include('--pprof-disable');
        expect(apiHosts?.startsWith('unix://')).to.equal(true);
        const socketDir = path.dirname((apiHosts ?? '').slice('unix://'.length));
        const shared = volumeAt(pod, gobgpd, socketDir);
        expect(shared.emptyDir, 'the socket directory is an emptyDir').to.not.equal(undefined);
        expect(volumeAt(pod, containerNamed(pod, 'podroute'), socketDir).name).to.equal(shared.name);
        // gobgpd's liveness probe asks gobgpd over the same socket.
        expect(flagValue(gobgpd.livenessProbe?.exec?.command ?? [], '--target')).to.equal(effective.gobgp.target);
        // No gRPC port on the node: the only declared port is BGP.
        expect(gobgpd.ports?.map((p) => p.containerPort)).to.deep.equal([179]);
      });

      it('probes: /healthz and /readyz on the metrics address of the config, through a declared port', async () => {
        const objects = await kustomize(dir);
        const { pod } = daemonSetOf(objects);
        const { effective } = await agentConfigOf(objects);
        const metrics = splitHostPort(effective.metrics.address);
        const agent = containerNamed(pod, 'podroute');
        const probes = { liveness: agent.livenessProbe, readiness: agent.readinessProbe };
        expect(probes.liveness?.httpGet?.path).to.equal('/healthz');
        expect(probes.readiness?.httpGet?.path).to.equal('/readyz');
        for (const [kind, probe] of Object.entries(probes)) {
          const get = probe?.httpGet;
          expect(get, `${kind} probe is an httpGet`).to.not.equal(undefined);
          const port = typeof get?.port === 'number' ? get.port : agent.ports?.find((p) => p.name === get?.port)?.containerPort;
          expect(port, `${kind} probe port ${String(get?.port)}`).to.equal(metrics.port);
          // hostNetwork: kubelet probes from the node's own network namespace, so the loopback address works.
          expect(get?.host ?? '(pod IP)', `${kind} probe host`).to.equal(metrics.host);
        }
      });

      it('BGP passwords: every passwordFile is a key of the mounted Secret', async () => {
        const objects = await kustomize(dir);
        const { pod } = daemonSetOf(objects);
        const { effective } = await agentConfigOf(objects);
        const agent = containerNamed(pod, 'podroute');
        const files = [...new Set(effective.bgp.peers.flatMap((p) => (p.passwordFile === undefined ? [] : [p.passwordFile])))];
        const secrets = objects.filter((o) => o.kind === 'Secret') as (K8sObject & { data?: Record<string, string> })[];
        if (dir.endsWith('as-per-rack')) expect(files.length, 'the ToR sessions are authenticated').to.be.greaterThan(0);
        for (const file of files) {
          const volume = volumeAt(pod, agent, path.dirname(file));
          expect(volume.secret, `${path.dirname(file)} is a Secret volume`).to.not.equal(undefined);
          const secret = secrets.find((s) => s.metadata.name === volume.secret?.secretName);
          expect(secret, `Secret ${volume.secret?.secretName} is in the build`).to.not.equal(undefined);
          const value = secret?.data?.[path.basename(file)];
          expect(value, `Secret key ${path.basename(file)}`).to.be.a('string');
          expect(Buffer.from(value ?? '', 'base64').toString('utf8').trim()).to.not.equal('');
        }
        // Without peers needing it the Secret volume must be optional, or pods would never start.
        if (secrets.length === 0) {
          for (const v of pod.volumes ?? []) if (v.secret) expect(v.secret.optional, `${v.name} optional`).to.equal(true);
        }
      });
    });
  }

  it('the overlays differ from the base only in the configuration (and the BGP password Secret)', async () => {
    const strip = (objects: K8sObject[]): string =>
      JSON.stringify(
        objects.filter((o) => o.kind !== 'ConfigMap' && o.kind !== 'Secret'),
        (_key, value: unknown) => (typeof value === 'string' ? value.replace(/^(podroute-config|podroute-bgp-passwords)-[a-z0-9]{10}$/, '$1') : value),
      );
    const base = strip(await kustomize('deploy/base'));
    for (const dir of OVERLAYS) expect(strip(await kustomize(dir)), dir).to.equal(base);
  });

  it('the designs are what their names say', async () => {
    const config = async (dir: string) => (await agentConfigOf(await kustomize(dir))).effective;
    const mesh = await config('deploy/overlays/node-mesh');
    expect(mesh.bgp.mesh).to.equal('full');
    expect(mesh.bgp.peers).to.deep.equal([]);
    const dual = await config('deploy/overlays/dual-stack');
    expect(dual.cluster.podRanges.some((r) => familyOf(r) === 'ipv6') && dual.cluster.podRanges.some((r) => familyOf(r) === 'ipv4')).to.equal(true);
    const rack = await config('deploy/overlays/as-per-rack');
    expect(rack.bgp.mesh).to.equal('same-asn');
    expect(rack.bgp.peers.every((p) => p.nodeSelector?.matchLabels?.['podroute.io/rack'] !== undefined)).to.equal(true);
  });

  it('--check-config rejects a broken config (the check above can fail)', async () => {
    const result = await runCheckConfig('cluster:\n  podRanges: [10.244.0.0/33]\n');
    expect(result.exitCode).to.equal(2);
    expect(result.stderr).to.match(/cluster\.podRanges\[0\]: not a CIDR/);
  });

  it('the probe paths are served by the agent (string literals in src/observe)', () => {
    const dir = repoPath('src/observe');
    const sources = readdirSync(dir)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(path.join(dir, f), 'utf8'))
      .join('\n');
    for (const p of ['/healthz', '/readyz', '/metrics']) expect(sources, p).to.match(new RegExp(`['"\`]${p}['"\`]`));
  });
});
