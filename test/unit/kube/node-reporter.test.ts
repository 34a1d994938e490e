// NodeReporter against the lab API server: the NetworkUnavailable condition by a status patch that leaves the
// kubelet's conditions alone, and Events on the Node (deduplicated, best effort).
import type { KubeEvent, Node } from '../../../src/kube/wire.js';
import { expect } from 'chai';
import YAML from 'yaml';
import { LabApiServer, renderKubeconfig } from '../../../src/lab/apiserver/index.js';
import { parseKubeConfig, type KubeConnectionConfig } from '../../../src/kube/kube-api.js';
import { CONDITION_REASON, NodeReporter } from '../../../src/kube/node-reporter.js';
import { createLogger } from '../../../src/observe/log.js';

describe('NodeReporter against the lab API server', () => {
  let server: LabApiServer;
  let config: KubeConnectionConfig;
  const reporters: NodeReporter[] = [];
  const reporter = (nodeName: string, kubeConfig = config): NodeReporter => {
    const r = new NodeReporter({ kubeConfig, nodeName, logger: createLogger({ level: 'error' }) });
    reporters.push(r);
    return r;
  };
  const events = (): KubeEvent[] => server.list('events', 'default') as unknown as KubeEvent[];

  before(async () => {
    server = new LabApiServer({});
    const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: 0 } });
    config = parseKubeConfig(YAML.parse(renderKubeconfig(`http://127.0.0.1:${tcpPort}`)), { source: 'lab', baseDir: '/' });
    server.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }] } });
  });

  after(async () => {
    for (const r of reporters) r.close();
    await server.close();
  });

  it('sets NetworkUnavailable=False next to the kubelet\'s conditions', async () => {
    await reporter('n1').markNetworkAvailable();
    const node = server.get('nodes', undefined, 'n1') as Node;
    const conditions = node.status?.conditions ?? [];
    expect(conditions.map((c) => c.type).sort()).to.deep.equal(['NetworkUnavailable', 'Ready']);
    expect(conditions.find((c) => c.type === 'NetworkUnavailable')).to.include({ status: 'False', reason: CONDITION_REASON });
    expect(conditions.find((c) => c.type === 'Ready')).to.include({ status: 'True', reason: 'KubeletReady' });
  });

  it('a node that does not exist is an error the caller sees (it retries later)', async () => {
    let err: unknown;
    try {
      await reporter('absent').markNetworkAvailable();
    } catch (e) {
      err = e;
    }
    expect(err).to.include({ code: 'API_STATUS', status: 404 });
  });

  it('posts an Event about the Node once per message; another message is another Event', async () => {
    const r = reporter('n1');
    await r.event('Warning', 'PodrouteRouteRejected', 'learned path not installed: 10.9.0.0/24');
    await r.event('Warning', 'PodrouteRouteRejected', 'learned path not installed: 10.9.0.0/24');
    await r.event('Normal', 'PodroutePeerUp', 'peer 192.0.2.1 up');
    const posted = events();
    expect(posted.map((e) => `${e.type}/${e.reason}`).sort()).to.deep.equal(['Normal/PodroutePeerUp', 'Warning/PodrouteRouteRejected']);
    const rejected = posted.find((e) => e.reason === 'PodrouteRouteRejected');
    expect(rejected?.involvedObject).to.include({ kind: 'Node', name: 'n1' });
    expect(rejected?.metadata?.name).to.match(/^n1\.podroute\./);
    expect(rejected).to.include({ message: 'learned path not installed: 10.9.0.0/24', reportingComponent: 'podroute', reportingInstance: 'n1', count: 1 });
    expect(Number.isNaN(Date.parse(String(rejected?.firstTimestamp)))).to.equal(false);
  });

  it('posts an Event about another object (an invalid NetworkPolicy) in its namespace, field-validated strictly', async () => {
    server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
    await reporter('n1').event('Warning', 'PodrouteInvalidNetworkPolicy', 'enforced as "isolate, allow nothing"', {
      kind: 'NetworkPolicy',
      apiVersion: 'networking.k8s.io/v1',
      namespace: 'x',
      name: 'p',
    });
    const posted = server.list('events', 'x') as unknown as KubeEvent[];
    expect(posted.map((e) => e.reason)).to.deep.equal(['PodrouteInvalidNetworkPolicy']);
    expect(posted[0]?.involvedObject).to.deep.equal({ kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1', namespace: 'x', name: 'p' });
  });

  it('an Event the API server cannot take is logged, not thrown', async () => {
    const nowhere = reporter('n1', { ...config, server: 'http://127.0.0.1:1' });
    await nowhere.event('Warning', 'PodrouteConfigProblem', 'unreachable');
    expect(events().some((e) => e.reason === 'PodrouteConfigProblem')).to.equal(false);
  });
});
