// `podroute status --cluster`: the view of what the agents report (pure), and the command end to end against the
// lab API server with token authentication, the kubeconfig's user an exec credential plugin (as EKS, GKE and AKS
// kubeconfigs have), read by client-node as kubectl would.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import YAML from 'yaml';
import { KubeApi, type KubeConnectionConfig } from '../../../src/kube/kube-api.js';
import { NodeReporter } from '../../../src/kube/node-reporter.js';
import type { KubeEvent, Node } from '../../../src/kube/wire.js';
import { clusterStatusView, renderClusterStatus } from '../../../src/observe/cluster-status.js';
import { createLogger } from '../../../src/observe/log.js';
import { startServer, tempDir, type Started } from '../lab/apiserver/helpers.js';

const CLI_MAIN = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));
const logger = createLogger({ level: 'error' });

function node(name: string, condition?: { status: string; reason: string; message: string }): Node {
  return {
    metadata: { name, ...(name === 'n2' ? { annotations: { 'podroute.io/asn': '65002' } } : {}) },
    spec: { podCIDRs: [`10.244.${name.slice(1)}.0/24`] },
    status: { addresses: [{ type: 'InternalIP', address: `10.0.0.${name.slice(1)}` }], ...(condition === undefined ? {} : { conditions: [{ type: 'NetworkUnavailable', ...condition }] }) },
  };
}

function warning(host: string, reason: string, lastTimestamp: string, component = 'podroute'): KubeEvent {
  return {
    metadata: { name: `${host}.${reason}`, namespace: 'default' },
    involvedObject: { kind: 'Node', name: host },
    type: 'Warning',
    reason,
    message: `${reason} on ${host}`,
    lastTimestamp,
    source: { component, host },
  };
}

describe('cluster status: the view of what the agents report', () => {
  it("tells programmed nodes from others, and shows only podroute's warnings, newest first", () => {
    const view = clusterStatusView(
      'https://api:6443',
      [
        node('n2', { status: 'True', reason: 'NoRouteCreated', message: 'waiting' }),
        node('n1', { status: 'False', reason: 'PodrouteRoutesProgrammed', message: 'podroute programmed the routes of this node' }),
        node('n3'),
        node('n4', { status: 'False', reason: 'CalicoIsUp', message: 'another plugin' }),
      ],
      [warning('n1', 'PodrouteConfigProblem', '2026-12-07T05:00:00Z'), warning('n2', 'PodrouteRouteRejected', '2026-12-07T05:10:00Z'), warning('n1', 'Other', '2026-12-07T05:20:00Z', 'kubelet')],
    );
    expect(view.nodes.map((n) => [n.name, n.network])).to.deep.equal([['n1', 'available'], ['n2', 'unavailable'], ['n3', 'unknown'], ['n4', 'unknown']]);
    expect(view.nodes[1]).to.include({ asn: '65002', networkDetail: 'NoRouteCreated: waiting' });
    expect(view.warnings.map((w) => w.reason)).to.deep.equal(['PodrouteRouteRejected', 'PodrouteConfigProblem']);
    expect(view.allAvailable).to.equal(false);
    const text = renderClusterStatus(view, Date.parse('2026-12-07T05:30:00Z'));
    expect(text).to.contain('4 nodes, 1 with podroute\'s routes programmed');
    expect(text).to.match(/n1\s+available\s+10\.0\.0\.1\s+10\.244\.1\.0\/24\s+-/);
    expect(text).to.contain('n3: no NetworkUnavailable condition');
    expect(text).to.match(/20m00s\s+n2\s+PodrouteRouteRejected\s+1\s+PodrouteRouteRejected on n2/);
  });
});

describe('podroute status --cluster: a kubeconfig with an exec credential plugin, against the lab API server', function () {
  this.timeout(120_000);
  const TOKEN = 'hx-exec-token-7f3a';
  let api: Started;
  let dir: string;
  let calls: string;

  /** A kubeconfig whose user runs `plugin.mjs` for a token (client.authentication.k8s.io/v1 ExecCredential). */
  function kubeconfig(name: string, pluginEnv: Record<string, string>): string {
    const file = path.join(dir, name);
    const exec = {
      apiVersion: 'client.authentication.k8s.io/v1',
      command: process.execPath,
      args: [path.join(dir, 'plugin.mjs')],
      env: Object.entries({ HX_CALLS: calls, ...pluginEnv }).map(([k, v]) => ({ name: k, value: v })),
      interactiveMode: 'Never',
    };
    fs.writeFileSync(
      file,
      YAML.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        // client-node, like kubectl, only speaks plain HTTP to a cluster marked insecure.
        clusters: [{ name: 'lab', cluster: { server: api.url, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'sso', user: { exec } }],
        contexts: [{ name: 'lab', context: { cluster: 'lab', user: 'sso' } }],
        'current-context': 'lab',
      }),
    );
    return file;
  }

  function status(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [CLI_MAIN, 'status', ...args], { timeout: 90_000 }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
      });
    });
  }

  before(async () => {
    dir = tempDir();
    calls = path.join(dir, 'plugin-calls');
    fs.writeFileSync(
      path.join(dir, 'plugin.mjs'),
      [
        "import { appendFileSync } from 'node:fs';",
        "appendFileSync(process.env.HX_CALLS, 'called\\n');",
        "if (process.env.PLUGIN_FAIL) { process.stderr.write('sso: login required\\n'); process.exit(1); }",
        'const expirationTimestamp = new Date(Date.now() + 3600_000).toISOString();',
        "process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: process.env.PLUGIN_TOKEN, expirationTimestamp } }));",
        '',
      ].join('\n'),
    );
    api = await startServer({ tokens: [TOKEN] });
    // The cluster as agents leave it, written through the API: two Nodes, n1's agent reports its routes in.
    const config: KubeConnectionConfig = { server: api.url, insecureSkipTlsVerify: false, token: TOKEN, source: 'test' };
    const client = new KubeApi({ config });
    for (const name of ['n1', 'n2']) {
      await client.create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: { podCIDRs: [`10.244.${name.slice(1)}.0/24`], podCIDR: `10.244.${name.slice(1)}.0/24` } });
    }
    client.close();
    const reporter = new NodeReporter({ kubeConfig: config, nodeName: 'n1', logger });
    await reporter.markNetworkAvailable();
    await reporter.event('Warning', 'PodrouteConfigProblem', 'annotation podroute.io/asn: "x" is not an ASN');
  });

  after(async () => {
    await api.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('authenticates with the token the plugin prints and shows every node and the warnings', async () => {
    const result = await status('--kubeconfig', kubeconfig('good.yaml', { PLUGIN_TOKEN: TOKEN }));
    expect(result.stderr).to.equal('');
    expect(result.stdout).to.contain("2 nodes, 1 with podroute's routes programmed");
    expect(result.stdout).to.match(/n1\s+available\s+-\s+10\.244\.1\.0\/24/);
    expect(result.stdout).to.match(/n2\s+unknown/);
    expect(result.stdout).to.match(/n1\s+PodrouteConfigProblem\s+1\s+annotation podroute\.io\/asn/);
    expect(result.code, 'a node not programmed').to.equal(1);
    // The credential came from the plugin: once per request at most (client-node keeps it until it expires; the
    // two requests start together, before the first answer is kept).
    expect(fs.readFileSync(calls, 'utf8').split('\n').filter(Boolean)).to.have.length.within(1, 2);
  });

  it('the lab API server with tokens refuses a request without one as kube-apiserver does (401, Status Unauthorized)', async () => {
    for (const headers of [{}, { Authorization: 'Bearer nope' }, { Authorization: `Basic ${TOKEN}` }] as Record<string, string>[]) {
      const res = await fetch(`${api.url}/api/v1/nodes`, { headers });
      expect(res.status).to.equal(401);
      expect(await res.json()).to.deep.include({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', message: 'Unauthorized', code: 401 });
    }
    expect((await fetch(`${api.url}/api/v1/nodes`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).to.equal(200);
  });

  it('is refused with the API server\'s 401 when the plugin prints a token the server does not take', async () => {
    const result = await status('--kubeconfig', kubeconfig('wrong.yaml', { PLUGIN_TOKEN: 'not-the-token' }), '-o', 'json');
    expect(result.code).to.equal(1);
    expect(result.stdout).to.equal('');
    expect(result.stderr).to.match(/401 Unauthorized/);
  });

  it("reports the plugin's own failure (its stderr), naming the kubeconfig", async () => {
    const result = await status('--kubeconfig', kubeconfig('failing.yaml', { PLUGIN_FAIL: '1' }));
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/no credentials from .*failing\.yaml: sso: login required/);
  });

  it('takes KUBECONFIG and a --context like kubectl', async () => {
    const file = kubeconfig('env.yaml', { PLUGIN_TOKEN: TOKEN });
    const json = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI_MAIN, 'status', '--cluster', '--context', 'lab', '-o', 'json'], { env: { ...process.env, KUBECONFIG: file }, timeout: 90_000 }, (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr }),
      );
    });
    expect(json.stderr).to.equal('');
    const view = JSON.parse(json.stdout) as { nodes: { name: string; network: string }[] };
    expect(view.nodes.map((n) => `${n.name}:${n.network}`)).to.deep.equal(['n1:available', 'n2:unknown']);
  });
});
