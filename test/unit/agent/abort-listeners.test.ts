// The agent's long-lived signals do not collect anything per request: many watch restarts against the lab API
// server and many gRPC calls against an in-process gobgp API leave the abort listeners on the shared signals as
// they were, derive no composite signal from them (Node 20 keeps one entry per AbortSignal.any() on its source
// for good), and never trip Node's MaxListenersExceededWarning.
import { getEventListeners, setMaxListeners } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import YAML from 'yaml';
import { AGENT_SIGNAL_MAX_LISTENERS } from '../../../src/agent/agent.js';
import { sleep } from '../../../src/reconcile/loop.js';
import { GobgpClient } from '../../../src/bgp/gobgp-client.js';
import { loadGobgpPackage } from '../../../src/bgp/gobgp-proto.js';
import { ClusterWatch } from '../../../src/kube/cluster-watch.js';
import { parseKubeConfig } from '../../../src/kube/kube-api.js';
import { LabApiServer, renderKubeconfig } from '../../../src/lab/apiserver/index.js';
import { createLogger } from '../../../src/observe/log.js';

const abortListeners = (signal: AbortSignal): number => getEventListeners(signal, 'abort').length;

/** Node 20's record of the composites derived from a signal (internal; undefined where Node has none). */
function dependants(signal: AbortSignal): number | undefined {
  const key = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kDependantSignals');
  const set = key === undefined ? undefined : (signal as unknown as Record<symbol, Set<unknown> | undefined>)[key];
  return set?.size;
}

/** Warnings Node emits while `run` runs, and the signals AbortSignal.any() was called with. */
async function watching(run: () => Promise<void>): Promise<{ warnings: Error[]; anyInputs: AbortSignal[] }> {
  const warnings: Error[] = [];
  const anyInputs: AbortSignal[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  const realAny = AbortSignal.any.bind(AbortSignal);
  AbortSignal.any = (signals: AbortSignal[]): AbortSignal => {
    anyInputs.push(...signals);
    return realAny(signals);
  };
  process.on('warning', onWarning);
  try {
    await run();
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  } finally {
    process.off('warning', onWarning);
    AbortSignal.any = realAny;
  }
  return { warnings, anyInputs };
}

describe('abort listeners on the agent\'s long-lived signals', function () {
  this.timeout(60_000);

  it('ClusterWatch: 150 watch restarts (4 kinds each) leave the root and loop signals as they were', async () => {
    const server = new LabApiServer({});
    const { tcpPort } = await server.start({ tcp: { host: '127.0.0.1', port: 0 } });
    const kubeConfig = parseKubeConfig(YAML.parse(renderKubeconfig(`http://127.0.0.1:${tcpPort}`)), { source: 'lab', baseDir: '/' });
    const root = new AbortController();
    const watch = new ClusterWatch({
      kubeConfig,
      logger: createLogger({ level: 'error' }),
      kinds: ['nodes', 'pods', 'namespaces', 'networkpolicies'],
      onChange: () => undefined,
    });
    const loops = (watch as unknown as { stopping: AbortController }).stopping.signal;
    try {
      const { warnings, anyInputs } = await watching(async () => {
        watch.start(root.signal);
        await watch.synced();
        await sleep(50, root.signal);
        const before = { root: abortListeners(root.signal), loops: abortListeners(loops), dependants: dependants(loops) };
        for (let i = 0; i < 150; i++) {
          server.endWatches();
          server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${i}` } });
          await sleep(10, root.signal);
        }
        await sleep(50, root.signal);
        expect(abortListeners(root.signal), 'root').to.equal(before.root);
        expect(abortListeners(loops), 'loops').to.equal(before.loops);
        expect(dependants(loops), 'composites kept by the loops\' signal').to.equal(before.dependants);
        expect(watch.snapshot().namespaces.filter((n) => n.metadata?.name?.startsWith('ns-') === true).length, 'every change seen').to.equal(150);
      });
      expect(anyInputs.filter((s) => s === root.signal || s === loops), 'AbortSignal.any() of a long-lived signal').to.deep.equal([]);
      expect(warnings.map((w) => `${w.name}: ${w.message}`)).to.deep.equal([]);
    } finally {
      root.abort();
      await watch.stop();
      await server.close();
    }
  });

  it('GobgpClient: 600 calls, 20 at a time, on a signal holding the agent\'s permanent listeners: flat, no warning', async () => {
    const pkg = grpc.loadPackageDefinition(loadGobgpPackage()) as unknown as { apipb: { GobgpApi: { service: grpc.ServiceDefinition } } };
    const server = new grpc.Server();
    server.addService(pkg.apipb.GobgpApi.service, {
      GetBgp: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { global: { asn: 64512, router_id: '192.0.2.1' } }),
      ListPeer: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        call.write({ peer: { conf: { neighbor_address: '192.0.2.2', peer_asn: 64513 }, state: { session_state: 'ESTABLISHED' } } });
        call.end();
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))),
    );
    const client = new GobgpClient({ target: `127.0.0.1:${port}` });
    const root = new AbortController();
    setMaxListeners(AGENT_SIGNAL_MAX_LISTENERS, root.signal);
    // The loops and reconcilers that wait on the agent's signal for good (eleven in a running agent).
    for (let i = 0; i < 11; i++) root.signal.addEventListener('abort', () => undefined, { once: true });
    try {
      const { warnings } = await watching(async () => {
        const before = abortListeners(root.signal);
        for (let round = 0; round < 30; round++) {
          await Promise.all(
            Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? client.getBgp({ signal: root.signal }) : client.listPeers({ signal: root.signal }))),
          );
        }
        expect(abortListeners(root.signal)).to.equal(before);
        expect(dependants(root.signal) ?? 0).to.equal(0);
      });
      expect(warnings.map((w) => `${w.name}: ${w.message}`)).to.deep.equal([]);
    } finally {
      root.abort();
      client.close();
      server.forceShutdown();
    }
  });
});
