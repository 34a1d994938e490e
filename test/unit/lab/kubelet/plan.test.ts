// The lab kubelet's pure decisions: pod specs, the desired-vs-realized plan, the reported status.
import { expect } from 'chai';
import type { V1Pod } from '@kubernetes/client-node';
import { parseConflist, resultIps, CniError } from '../../../../src/lab/kubelet/cni.js';
import {
  desiredPodStatus,
  planPods,
  podStatusUpToDate,
  type RealizedPod,
} from '../../../../src/lab/kubelet/plan.js';
import { isPodForNode, readPodSpec, type DesiredPod } from '../../../../src/lab/kubelet/podspec.js';
import { netnsMountsPropagateToHost } from '../../../../src/lab/kubelet/kubelet.js';
import { parsePodServerArgs, parsePortList, PodServerArgsError } from '../../../../src/lab/podserver.js';
import { renderCniConflist } from '../../../../src/node/cni.js';

function pod(name: string, ports: { containerPort: unknown; protocol?: string; hostPort?: number }[] = [], extra: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { namespace: 'x', name, uid: `uid-${name}` },
    spec: { nodeName: 'n1', containers: [{ name: 'c', ports: ports as never }], ...extra },
  };
}

function desired(name: string, over: Partial<DesiredPod> = {}): DesiredPod {
  return { namespace: 'x', name, uid: `uid-${name}`, hostNetwork: false, ports: [{ port: 80, protocol: 'TCP' }], portMappings: [], ...over };
}

function realized(name: string, over: Partial<RealizedPod> = {}): RealizedPod {
  return {
    namespace: 'x',
    name,
    uid: `uid-${name}`,
    hostNetwork: false,
    state: 'ready',
    ports: [{ port: 80, protocol: 'TCP' }],
    ips: ['10.0.0.2'],
    netnsPresent: true,
    serverRunning: true,
    ...over,
  };
}

describe('lab kubelet: pod specs', () => {
  it('collects distinct ports over containers, TCP by default, sorted', () => {
    const p = pod('a', [{ containerPort: 81, protocol: 'UDP' }, { containerPort: 80 }, { containerPort: 81, protocol: 'UDP' }]);
    p.spec?.containers.push({ name: 'd', ports: [{ containerPort: 80, protocol: 'UDP', hostPort: 8080 }] });
    const r = readPodSpec(p);
    expect(r.error).to.equal(undefined);
    expect(r.pod?.ports).to.deep.equal([
      { port: 80, protocol: 'TCP' },
      { port: 80, protocol: 'UDP' },
      { port: 81, protocol: 'UDP' },
    ]);
    expect(r.pod?.portMappings).to.deep.equal([{ hostPort: 8080, containerPort: 80, protocol: 'udp' }]);
  });

  it('names the field of an unknown protocol or an out-of-range port', () => {
    const bad = readPodSpec(pod('a', [{ containerPort: 80 }, { containerPort: 80, protocol: 'QUIC' }]));
    expect(bad.pod).to.equal(undefined);
    expect(bad.error?.code).to.equal('POD_SPEC_INVALID');
    expect(bad.error?.message).to.contain('spec.containers[0].ports[1].protocol').and.contain('QUIC');
    const range = readPodSpec(pod('a', [{ containerPort: 70000 }]));
    expect(range.error?.field).to.equal('spec.containers[0].ports[0].containerPort');
    const notNumber = readPodSpec(pod('a', [{ containerPort: '80' }]));
    expect(notNumber.error?.field).to.equal('spec.containers[0].ports[0].containerPort');
  });

  it('serves the rest of a pod that declares SCTP, with a warning', () => {
    const r = readPodSpec(pod('a', [{ containerPort: 80 }, { containerPort: 90, protocol: 'SCTP' }]));
    expect(r.pod?.ports).to.deep.equal([{ port: 80, protocol: 'TCP' }]);
    expect(r.warnings[0]).to.contain('SCTP');
  });

  it('refuses names that would make an unusable control socket path', () => {
    const long = 'p'.repeat(120);
    const r = readPodSpec(pod(long), (ns, name) => `/run/podroute-lab/lab/pods/${ns}_${name}.sock`);
    expect(r.error?.field).to.equal('metadata.name');
  });

  it('takes only pods bound to the node and not being deleted', () => {
    expect(isPodForNode(pod('a'), 'n1')).to.equal(true);
    expect(isPodForNode(pod('a'), 'n2')).to.equal(false);
    const deleting = pod('a');
    deleting.metadata!.deletionTimestamp = new Date();
    expect(isPodForNode(deleting, 'n1')).to.equal(false);
    expect(readPodSpec(pod('h', [], { hostNetwork: true })).pod?.hostNetwork).to.equal(true);
  });
});

describe('lab kubelet: planPods', () => {
  it('adds new pods and leaves realized ones alone', () => {
    expect(planPods([desired('a'), desired('b')], [realized('a')])).to.deep.equal([{ kind: 'add', pod: desired('b') }]);
  });

  it('never re-adds a ready pod whose netns exists (adoption after a kubelet restart)', () => {
    expect(planPods([desired('a')], [realized('a', { serverRunning: true })])).to.deep.equal([]);
  });

  it('removes pods no longer bound, before any addition', () => {
    const plan = planPods([desired('b')], [realized('a')]);
    expect(plan.map((a) => `${a.kind}:${a.pod.name}`)).to.deep.equal(['remove:a', 'add:b']);
  });

  it('replaces a pod recreated under the same name (new uid), and an interrupted set-up', () => {
    const plan = planPods([desired('a', { uid: 'uid-new' }), desired('b')], [realized('a'), realized('b', { state: 'adding' })]);
    expect(plan.map((a) => `${a.kind}:${a.pod.name}:${a.pod.uid}`)).to.deep.equal([
      'remove:a:uid-a',
      'remove:b:uid-b',
      'add:a:uid-new',
      'add:b:uid-b',
    ]);
  });

  it('repairs a vanished netns by remove + add, a dead server by restart only', () => {
    const plan = planPods([desired('a'), desired('b')], [realized('a', { netnsPresent: false }), realized('b', { serverRunning: false })]);
    expect(plan.map((a) => `${a.kind}:${a.pod.name}`)).to.deep.equal(['remove:a', 'add:a', 'restartServer:b']);
  });

  it('restarts the server when the ports change, without touching the network', () => {
    const plan = planPods([desired('a', { ports: [{ port: 81, protocol: 'UDP' }] })], [realized('a')]);
    expect(plan).to.have.length(1);
    expect(plan[0]?.kind).to.equal('restartServer');
  });
});

describe('lab kubelet: pod status', () => {
  const input = {
    podIPs: ['10.0.0.2', 'fd00::2'],
    hostIPs: ['192.168.1.11', 'fd01::11'],
    startTime: '2025-01-01T00:00:00Z',
    containers: [{ name: 'serve', image: 'podroute.io/lab-podserver' }, { name: 'side', image: 'busybox' }],
  };

  it('reports Running, the IPs of both families and Ready', () => {
    const s = desiredPodStatus(input, '2025-01-01T00:00:01Z');
    expect(s.phase).to.equal('Running');
    expect(s.podIP).to.equal('10.0.0.2');
    expect(s.podIPs).to.deep.equal([{ ip: '10.0.0.2' }, { ip: 'fd00::2' }]);
    expect(s.hostIP).to.equal('192.168.1.11');
    expect(s.hostIPs).to.deep.equal([{ ip: '192.168.1.11' }, { ip: 'fd01::11' }]);
    expect(s.conditions.find((c) => c.type === 'Ready')?.status).to.equal('True');
    // kubectl get pods: READY is ready containers / all containers.
    expect(s.containerStatuses.map((c) => [c.name, c.ready, c.restartCount])).to.deep.equal([['serve', true, 0], ['side', true, 0]]);
  });

  it('sees whether the reported status is already there (times aside)', () => {
    const p = pod('a');
    expect(podStatusUpToDate(p, input)).to.equal(false);
    p.status = desiredPodStatus(input, 'later') as unknown as V1Pod['status'];
    expect(podStatusUpToDate(p, input)).to.equal(true);
    expect(podStatusUpToDate(p, { ...input, podIPs: ['10.0.0.3', 'fd00::3'] })).to.equal(false);
    // A status written before containers were reported (an older kubelet) is reported again.
    p.status = { ...desiredPodStatus(input, 'later'), containerStatuses: [] } as unknown as V1Pod['status'];
    expect(podStatusUpToDate(p, input)).to.equal(false);
  });
});

describe('lab kubelet: CNI configuration and results', () => {
  it('parses the conflist podroute renders, and names the bad field of a broken one', () => {
    const list = parseConflist(renderCniConflist({ podCIDRs: ['10.0.0.0/24'], bridgeName: 'cni0', networkName: 'podroute' }));
    expect(list.plugins.map((p) => p.type)).to.deep.equal(['bridge', 'portmap']);
    expect(() => parseConflist('{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}')).to.throw(CniError, /plugins\[0\]\.type/);
    expect(() => parseConflist('{"cniVersion":"1.0.0","plugins":[]}')).to.throw(CniError, /name/);
  });

  it('takes the addresses of a result without prefix lengths, in order', () => {
    expect(resultIps({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }, { address: 'fd00::2/64' }] })).to.deep.equal(['10.0.0.2', 'fd00::2']);
  });
});

describe('lab kubelet: pod server arguments', () => {
  it('parses ports and identity, naming the bad argument', () => {
    expect(parsePortList('80/TCP,80/UDP')).to.deep.equal([{ port: 80, protocol: 'TCP' }, { port: 80, protocol: 'UDP' }]);
    expect(parsePortList('')).to.deep.equal([]);
    expect(() => parsePortList('80/SCTP')).to.throw(PodServerArgsError, /--ports/);
    expect(() => parsePortList('0/TCP')).to.throw(PodServerArgsError, /--ports/);
    expect(parsePodServerArgs(['--identity', 'x/a', '--ports', '80/TCP', '--control', '/s.sock'])).to.deep.equal({
      identity: 'x/a',
      controlSocket: '/s.sock',
      ports: [{ port: 80, protocol: 'TCP' }],
    });
    expect(() => parsePodServerArgs(['--identity', 'xa', '--control', '/s'])).to.throw(PodServerArgsError, /--identity/);
  });
});

describe('lab kubelet: mount namespace check', () => {
  const line = (opt: string): string => `42 27 254:0 /run/netns /run/netns rw,relatime ${opt} - ext4 /dev/vda rw`;
  it('accepts the host mount namespace and refuses the one `ip netns exec` makes', () => {
    expect(netnsMountsPropagateToHost(line('shared:1'))).to.equal(true);
    expect(netnsMountsPropagateToHost(line('master:1'))).to.equal(false);
    expect(netnsMountsPropagateToHost('27 1 254:0 / / rw - ext4 /dev/vda rw')).to.equal(true);
  });
});
