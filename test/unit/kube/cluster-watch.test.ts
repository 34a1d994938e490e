// ClusterWatch caches slim copies of what it watches, lists in pages, and wakes its consumer only for changes
// podroute can see. Against the lab API server (the Kubernetes API mock) on loopback.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EndpointSlice, NetworkPolicy, Node, Pod, Service } from '../../../src/kube/wire.js';
import { expect } from 'chai';
import YAML from 'yaml';
import { LabApiServer, renderKubeconfig, type KubeObject } from '../../../src/lab/apiserver/index.js';
import { ClusterWatch, sameContent, slimEndpointSlice, slimNamespace, slimNetworkPolicy, slimNode, slimPod, slimService, type WatchedKind } from '../../../src/kube/cluster-watch.js';
import { parseKubeConfig, type KubeConnectionConfig } from '../../../src/kube/kube-api.js';
import { createLogger } from '../../../src/observe/log.js';
import { pollUntil } from '../../poll.js';

const fullPod: Pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: 'web-1',
    namespace: 'shop',
    uid: 'u-1',
    resourceVersion: '41',
    labels: { app: 'web', tier: 'front' },
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"huge":"json"}' },
    managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': {} } }],
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web', uid: 'rs' }],
  },
  spec: {
    nodeName: 'n1',
    hostNetwork: false,
    schedulerName: 'default-scheduler',
    dnsPolicy: 'ClusterFirst',
    initContainers: [{ name: 'init', image: 'busybox', command: ['true'] }],
    containers: [
      { name: 'app', image: 'shop/web:1', env: [{ name: 'A', value: 'b' }], ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { containerPort: 9090 }] },
      { name: 'sidecar', image: 'envoy', args: ['--x'] },
    ],
  },
  status: {
    phase: 'Running',
    podIP: '10.1.0.5',
    podIPs: [{ ip: '10.1.0.5' }, { ip: 'fd00::5' }],
    hostIP: '192.0.2.1',
    conditions: [{ type: 'Ready', status: 'True' }],
    containerStatuses: [{ name: 'app', image: 'shop/web:1', imageID: 'x', ready: true, restartCount: 0 }],
  },
};

describe('ClusterWatch slim copies', () => {
  it('keeps of a Pod exactly what the policy compiler reads', () => {
    expect(slimPod(fullPod)).to.deep.equal({
      metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web', tier: 'front' } },
      spec: { nodeName: 'n1', hostNetwork: false, containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { containerPort: 9090 }] }] },
      status: { phase: 'Running', podIP: '10.1.0.5', podIPs: [{ ip: '10.1.0.5' }, { ip: 'fd00::5' }] },
    });
  });

  it('shares one frozen copy of the labels and container ports replicas have alike, never one of different content', () => {
    const replica = slimPod({ ...fullPod, metadata: { ...fullPod.metadata, name: 'web-2' }, status: { ...fullPod.status, podIP: '10.1.0.6', podIPs: [{ ip: '10.1.0.6' }] } });
    const first = slimPod(fullPod);
    expect(replica.metadata?.labels).to.equal(first.metadata?.labels);
    expect(replica.spec?.containers).to.equal(first.spec?.containers);
    expect(Object.isFrozen(first.spec?.containers?.[0]?.ports?.[0]), 'shared parts are frozen all the way down').to.equal(true);
    expect(() => ((first.metadata?.labels as Record<string, string>)['app'] = 'db'), 'an edit fails instead of relabelling every replica').to.throw(TypeError);
    const other = slimPod({ ...fullPod, metadata: { ...fullPod.metadata, labels: { app: 'web', tier: 'back' } } });
    expect(other.metadata?.labels).to.deep.equal({ app: 'web', tier: 'back' });
    expect(other.spec?.containers, 'same ports: shared even when the labels differ').to.equal(first.spec?.containers);
  });

  it('keeps named ports of init containers, and a pod without spec or status stays without them', () => {
    const withInitPort: Pod = { metadata: { name: 'p' }, spec: { containers: [], initContainers: [{ name: 'i', ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }] }] } };
    expect(slimPod(withInitPort).spec).to.deep.equal({ containers: [], initContainers: [{ name: 'i', ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }] }] });
    expect(slimPod({ metadata: { name: 'bare' } })).to.deep.equal({ metadata: { name: 'bare' } });
  });

  it('keeps of a Node its name, labels, podroute annotations, podCIDRs and addresses', () => {
    const node: Node = {
      metadata: {
        name: 'n1',
        resourceVersion: '7',
        labels: { zone: 'a' },
        annotations: { 'podroute.io/asn': '64512', 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
      },
      spec: { podCIDR: '10.1.0.0/24', podCIDRs: ['10.1.0.0/24'], providerID: 'kind://x', taints: [{ key: 'k', effect: 'NoSchedule' }] },
      status: {
        addresses: [{ type: 'InternalIP', address: '192.0.2.1' }],
        conditions: [{ type: 'Ready', status: 'True' }],
        images: [{ names: ['a'], sizeBytes: 1 }],
      },
    };
    expect(slimNode(node)).to.deep.equal({
      metadata: { name: 'n1', resourceVersion: '7', labels: { zone: 'a' }, annotations: { 'podroute.io/asn': '64512' } },
      spec: { podCIDR: '10.1.0.0/24', podCIDRs: ['10.1.0.0/24'] },
      status: { addresses: [{ type: 'InternalIP', address: '192.0.2.1' }] },
    });
  });

  it('keeps a NetworkPolicy spec whole and drops its annotations; a Namespace keeps its labels', () => {
    const policy: NetworkPolicy = {
      metadata: { name: 'p', namespace: 'shop', annotations: { big: 'x'.repeat(100) } },
      spec: { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ ports: [{ port: 'http' }] }], policyTypes: ['Ingress'] },
    };
    expect(slimNetworkPolicy(policy)).to.deep.equal({ metadata: { name: 'p', namespace: 'shop' }, spec: policy.spec });
    expect(slimNamespace({ metadata: { name: 'shop', labels: { team: 'a' }, uid: 'u' }, status: { phase: 'Active' } })).to.deep.equal({ metadata: { name: 'shop', labels: { team: 'a' } } });
  });

  it('keeps of a Service what the allocator and the advertisement read, and of an EndpointSlice its endpoints where and whether ready', () => {
    const service: Service = {
      metadata: {
        name: 'web', namespace: 'shop', resourceVersion: '7', creationTimestamp: '2026-12-01T00:00:00Z', labels: { app: 'web' },
        annotations: { 'podroute.io/load-balancer-ips': '203.0.113.5', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      },
      spec: {
        type: 'LoadBalancer', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }], sessionAffinity: 'None',
        clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', externalTrafficPolicy: 'Local',
      },
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.5', ipMode: 'VIP' }] } },
    };
    expect(slimService(service)).to.deep.equal({
      metadata: { name: 'web', namespace: 'shop', resourceVersion: '7', creationTimestamp: '2026-12-01T00:00:00Z', labels: { app: 'web' }, annotations: { 'podroute.io/load-balancer-ips': '203.0.113.5' } },
      spec: { type: 'LoadBalancer', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', externalTrafficPolicy: 'Local' },
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.5', ipMode: 'VIP' }] } },
    });
    const slice: EndpointSlice = {
      metadata: { name: 'web-x', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' }, ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'u' }] },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.244.1.5'], nodeName: 'n1', zone: 'z', targetRef: { kind: 'Pod', name: 'p' }, conditions: { ready: true, serving: true, terminating: false } }],
      ports: [{ port: 8080 }],
    };
    expect(slimEndpointSlice(slice)).to.deep.equal({
      metadata: { name: 'web-x', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.244.1.5'], nodeName: 'n1', conditions: { ready: true, serving: true, terminating: false } }],
    });
  });

  it('compares slim copies without their resourceVersion', () => {
    const a = slimPod(fullPod);
    const heartbeat = slimPod({ ...fullPod, metadata: { ...fullPod.metadata, resourceVersion: '42' }, status: { ...fullPod.status, conditions: [] } });
    const relabelled = slimPod({ ...fullPod, metadata: { ...fullPod.metadata, labels: { app: 'web', tier: 'back' } } });
    expect(sameContent(a, heartbeat)).to.equal(true);
    expect(sameContent(a, relabelled)).to.equal(false);
    expect(sameContent(a, slimPod({ ...fullPod, status: { ...fullPod.status, podIP: '10.1.0.6' } }))).to.equal(false);
  });
});

const pod = (name: string, labels: Record<string, string>, phase = 'Running'): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels, annotations: { note: 'dropped' } },
  spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'i', ports: [{ name: 'http', containerPort: 80 }] }] },
  status: { phase, podIP: `10.0.0.${name.length + 10}`, conditions: [{ type: 'Ready', status: 'True' }] },
});

/** The lab's own kubeconfig, read the way the agent reads one. */
const labConfig = (url: string): KubeConnectionConfig => parseKubeConfig(YAML.parse(renderKubeconfig(url)), { source: 'lab', baseDir: '/' });

describe('ClusterWatch against the lab API server', () => {
  let server: LabApiServer;
  let watch: ClusterWatch | undefined;
  let kubeConfig: KubeConnectionConfig;
  const controller = new AbortController();
  const changes: WatchedKind[] = [];

  before(async () => {
    server = new LabApiServer({ bookmarkIntervalMs: 100 });
    const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: 0 } });
    kubeConfig = labConfig(`http://127.0.0.1:${tcpPort}`);
    for (let i = 0; i < 5; i++) server.create(pod(`p${i}`, { app: 'a' }));
  });

  after(async () => {
    controller.abort();
    await watch?.stop();
    await server.close();
  });

  it('lists in pages into slim copies, then wakes the consumer only for changes podroute sees', async () => {
    watch = new ClusterWatch({
      kubeConfig,
      logger: createLogger({ level: 'error' }),
      kinds: ['pods'],
      listPageSize: 2,
      onChange: (kind) => changes.push(kind),
    });
    watch.start(controller.signal);
    await watch.synced();
    const listed = watch.snapshot().pods;
    expect(watch.snapshot().pods, 'nothing changed: the same array').to.equal(listed);
    expect(listed.map((p) => p.metadata?.name).sort()).to.deep.equal(['p0', 'p1', 'p2', 'p3', 'p4']);
    for (const p of listed) {
      expect(p.metadata?.annotations).to.equal(undefined);
      expect(p.status).to.deep.equal({ phase: 'Running', podIP: `10.0.0.12` });
      expect(p.spec?.containers).to.deep.equal([{ name: 'c', ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }] }]); // the API server defaults the protocol
    }

    // A status-only change (what a kubelet heartbeat looks like) is invisible; the next real change arrives.
    changes.length = 0;
    const p1 = server.get('pods', 'default', 'p1');
    server.update({ ...p1, status: { ...(p1.status as object), conditions: [{ type: 'Ready', status: 'False' }] } });
    const p2 = server.get('pods', 'default', 'p2');
    server.update({ ...p2, metadata: { ...p2.metadata, labels: { app: 'b' } } });
    await pollUntil('the label change', () => watch!.snapshot().pods.some((p) => p.metadata?.name === 'p2' && p.metadata.labels?.app === 'b'), { timeoutMs: 10_000, intervalMs: 20 });
    expect(changes).to.deep.equal(['pods']);
    const sameP1 = listed.find((p) => p.metadata?.name === 'p1');
    expect(watch.snapshot().pods.find((p) => p.metadata?.name === 'p1')).to.equal(sameP1);
    // The array of a kind is handed out again until the kind changes; the earlier one is never changed.
    expect(listed.find((p) => p.metadata?.name === 'p2')?.metadata?.labels).to.not.deep.equal({ app: 'b' });
    expect(watch.snapshot().pods).to.not.equal(listed);
    expect(watch.snapshot().pods).to.equal(watch.snapshot().pods);
    // ... but it carries the new resourceVersion, so a write preconditioned on the cached copy is not refused.
    expect(sameP1?.metadata?.resourceVersion).to.equal(server.get('pods', 'default', 'p1').metadata?.resourceVersion);

    server.delete('pods', 'default', 'p3');
    await pollUntil('the deletion', () => watch!.snapshot().pods.length === 4, { timeoutMs: 10_000, intervalMs: 20 });
    expect(changes).to.deep.equal(['pods', 'pods']);
  });
});

describe('ClusterWatch reconnects', () => {
  let dir: string;
  let server: LabApiServer;
  let port: number;
  let watch: ClusterWatch | undefined;
  const controller = new AbortController();
  const stats: string[] = [];
  const count = (what: string): number => stats.filter((s) => s === what).length;
  const names = (): string[] => watch!.snapshot().pods.map((p) => p.metadata?.name ?? '').sort();
  const startServer = async (): Promise<void> => {
    // A short change window: a watch that misses more than 3 changes gets 410 Gone.
    server = new LabApiServer({ bookmarkIntervalMs: 100, eventWindow: 3, storePath: path.join(dir, 'store.json'), persistDebounceMs: 1 });
    port = (await server.start({ tcp: { host: '127.0.0.1', port } })).tcpPort!;
  };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h26-cw-'));
    port = 0;
    await startServer();
    for (let i = 0; i < 3; i++) server.create(pod(`r${i}`, { app: 'a' }));
    watch = new ClusterWatch({
      kubeConfig: labConfig(`http://127.0.0.1:${port}`),
      logger: createLogger({ level: 'error' }),
      kinds: ['pods'],
      onChange: () => undefined,
      onStat: (_kind, what) => stats.push(what),
    });
    watch.start(controller.signal);
    await watch.synced();
  });

  after(async () => {
    controller.abort();
    await watch?.stop();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a watch the server ends resumes from its resourceVersion without listing again', async () => {
    expect(count('connect')).to.equal(1);
    server.endWatches();
    server.create(pod('r3', { app: 'a' }));
    await pollUntil('the pod made while the watch was down', () => names().includes('r3'), { timeoutMs: 10_000, intervalMs: 20 });
    expect(count('connect'), 'lists').to.equal(1);
  });

  it('bookmarks keep a quiet watch fresh: after many changes to other kinds it still resumes without a 410', async () => {
    for (let i = 0; i < 5; i++) server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `quiet-${i}` } });
    // Five changes the pods watch does not see: beyond the window of 3, so only a bookmark lets it resume.
    await pollUntil('a bookmark carrying the newest resourceVersion', () => watch!.resourceVersions().pods === server.resourceVersion, { timeoutMs: 10_000, intervalMs: 20 });
    server.endWatches();
    server.create(pod('r3b', { app: 'a' }));
    await pollUntil('the pod made while the watch was down', () => names().includes('r3b'), { timeoutMs: 10_000, intervalMs: 20 });
    expect(count('connect'), 'lists').to.equal(1);
    server.delete('pods', 'default', 'r3b');
    await pollUntil('the deletion', () => !names().includes('r3b'), { timeoutMs: 10_000, intervalMs: 20 });
  });

  it('410 Gone (too many changes missed) lists again, and a deletion missed meanwhile is seen', async () => {
    server.endWatches();
    // Synchronously, before the client can reconnect: more changes than the server's window keeps.
    server.delete('pods', 'default', 'r0');
    for (let i = 4; i < 9; i++) server.create(pod(`r${i}`, { app: 'a' }));
    await pollUntil('the relist', () => count('connect') === 2, { timeoutMs: 10_000, intervalMs: 20 });
    await pollUntil('the relisted cache', () => names().join() === ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8'].join(), { timeoutMs: 10_000, intervalMs: 20 });
  });

  it('an API server that goes away is retried with back-off; the cache keeps its state meanwhile', async () => {
    await server.close();
    await pollUntil('a failed retry', () => count('error') >= 2, { timeoutMs: 10_000, intervalMs: 20 });
    expect(names()).to.have.length(8);
    await startServer();
    server.create(pod('r9', { app: 'a' }));
    await pollUntil('the pod made after the restart', () => names().includes('r9'), { timeoutMs: 10_000, intervalMs: 20 });
  });

  it('stop() ends the watch loops and closes the connections', async () => {
    await watch!.stop();
    const before = stats.length;
    // A second watch that sees the next pod shows the event went out to every open watch.
    const witness = new ClusterWatch({ kubeConfig: labConfig(`http://127.0.0.1:${port}`), logger: createLogger({ level: 'error' }), kinds: ['pods'], onChange: () => undefined });
    witness.start(controller.signal);
    try {
      await witness.synced();
      server.create(pod('r10', { app: 'a' }));
      await pollUntil('the witness seeing the new pod', () => witness.snapshot().pods.some((p) => p.metadata?.name === 'r10'), { timeoutMs: 10_000, intervalMs: 20 });
    } finally {
      await witness.stop();
    }
    expect(names()).to.not.include('r10');
    expect(stats.length).to.equal(before);
  });
});
