// The real kubectl (with its default flags) against the lab API server.
import { expect } from 'chai';
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { renderKubeconfig } from '../../../../src/lab/apiserver/index.js';
import { startServer, tempDir, type Started } from './helpers.js';
import { pollUntil } from '../../../poll.js';

const MANIFESTS: Record<string, string> = {
  'namespace.yaml': `apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels:
    ns: x
`,
  'node.yaml': `apiVersion: v1
kind: Node
metadata:
  name: node1
  labels:
    rack: r1
spec:
  podCIDRs: ["10.244.1.0/24", "fd00:244:1::/64"]
`,
  'pod.yaml': `apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels:
    pod: a
spec:
  nodeName: node1
  containers:
  - name: serve
    image: podroute/lab-serve
    ports:
    - {name: serve-80-tcp, containerPort: 80, protocol: TCP}
    - {name: serve-80-udp, containerPort: 80, protocol: UDP}
`,
  'netpol.yaml': `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-y
  namespace: x
spec:
  podSelector:
    matchLabels:
      pod: a
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          ns: "y"
    ports:
    - port: 80
`,
  'service.yaml': `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: x
spec:
  selector:
    pod: a
  ports:
  - name: http
    port: 80
    targetPort: serve-80-tcp
`,
};
const ORDER = ['namespace.yaml', 'node.yaml', 'pod.yaml', 'netpol.yaml', 'service.yaml'];

describe('lab API server with the real kubectl', function () {
  this.timeout(60_000);
  let api: Started;
  let dir: string;
  let kubeconfig: string;
  before(async () => {
    // The real default-ish namespace finalization delay: `delete -f` deletes the namespace before its contents.
    api = await startServer({ namespaceFinalizeDelayMs: 1000 });
    dir = tempDir();
    kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, renderKubeconfig(api.url));
    for (const [f, text] of Object.entries(MANIFESTS)) fs.writeFileSync(path.join(dir, f), text);
    fs.writeFileSync(path.join(dir, 'all.yaml'), ORDER.map((f) => MANIFESTS[f]).join('---\n'));
  });
  after(async () => {
    await api.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // A private discovery cache per run: kubectl caches discovery per server address.
  const kubectl = (...args: string[]) =>
    execa('kubectl', ['--kubeconfig', kubeconfig, '--cache-dir', path.join(dir, 'cache'), ...args], { reject: false });
  const file = (f: string) => path.join(dir, f);

  it('create -f with the default (strict) validation creates every kind', async () => {
    const r = await kubectl('create', '-f', file('all.yaml'));
    expect(r.exitCode, r.stderr).to.equal(0);
    expect(r.stdout.split('\n')).to.deep.equal([
      'namespace/x created',
      'node/node1 created',
      'pod/a created',
      'networkpolicy.networking.k8s.io/allow-y created',
      'service/web created',
    ]);
    expect(api.server.get('Pod', 'x', 'a').spec).to.have.property('nodeName', 'node1');
    expect(api.server.get('Node', undefined, 'node1').spec).to.deep.include({ podCIDR: '10.244.1.0/24' });
    expect(api.server.get('NetworkPolicy', 'x', 'allow-y').spec).to.have.deep.property('policyTypes', ['Ingress']);
    const again = await kubectl('create', '-f', file('pod.yaml'));
    expect(again.exitCode).to.equal(1);
    expect(again.stderr).to.contain('AlreadyExists');
  });

  it('get prints server-side tables and -o json objects', async () => {
    const pods = await kubectl('get', 'pods', '-A', '-o', 'wide');
    expect(pods.exitCode, pods.stderr).to.equal(0);
    const [header, row] = pods.stdout.split('\n');
    expect(header!.split(/\s{2,}/)).to.deep.equal(['NAMESPACE', 'NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE', 'IP', 'NODE', 'NOMINATED NODE', 'READINESS GATES']);
    expect(row!.split(/\s+/).slice(0, 4)).to.deep.equal(['x', 'a', '0/1', 'Pending']);
    const byFile = await kubectl('get', '-f', file('all.yaml'), '-o', 'json');
    expect(byFile.exitCode, byFile.stderr).to.equal(0);
    const list = JSON.parse(byFile.stdout) as { items: { kind: string; metadata: { name: string } }[] };
    expect(list.items.map((i) => `${i.kind}/${i.metadata.name}`)).to.deep.equal([
      'Namespace/x', 'Node/node1', 'Pod/a', 'NetworkPolicy/allow-y', 'Service/web',
    ]);
    const sel = await kubectl('get', 'pods', '-n', 'x', '-l', 'pod in (a,b)', '-o', 'name');
    expect(sel.stdout).to.equal('pod/a');
    const none = await kubectl('get', 'pods', '-n', 'x', '-l', 'pod!=a', '-o', 'name');
    expect(none.stdout).to.equal('');
  });

  it('label -f and label/annotate by name change metadata through patches', async () => {
    const r = await kubectl('label', '-f', file('pod.yaml'), '-f', file('node.yaml'), 'team=blue');
    expect(r.exitCode, r.stderr).to.equal(0);
    expect(api.server.get('Pod', 'x', 'a').metadata?.labels).to.deep.equal({ pod: 'a', team: 'blue' });
    expect(api.server.get('Node', undefined, 'node1').metadata?.labels).to.deep.equal({ rack: 'r1', team: 'blue' });
    const conflict = await kubectl('label', 'pod', 'a', '-n', 'x', 'team=red');
    expect(conflict.exitCode, 'changing a label needs --overwrite').to.equal(1);
    expect((await kubectl('label', 'pod', 'a', '-n', 'x', 'team=red', '--overwrite')).exitCode).to.equal(0);
    expect((await kubectl('label', 'node', 'node1', 'team-')).exitCode).to.equal(0);
    expect((await kubectl('annotate', 'netpol', 'allow-y', '-n', 'x', 'note=hi')).exitCode).to.equal(0);
    expect(api.server.get('Pod', 'x', 'a').metadata?.labels).to.deep.equal({ pod: 'a', team: 'red' });
    expect(api.server.get('Node', undefined, 'node1').metadata?.labels).to.deep.equal({ rack: 'r1' });
    expect(api.server.get('NetworkPolicy', 'x', 'allow-y').metadata?.annotations).to.deep.equal({ note: 'hi' });
    const status = await kubectl('patch', 'node', 'node1', '--subresource=status', '--type=merge', '-p', '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}');
    expect(status.exitCode, status.stderr).to.equal(0);
    expect((await kubectl('get', 'node', 'node1')).stdout).to.match(/node1\s+Ready/);
  });

  it('rejects a malformed object with a message naming the field', async () => {
    fs.writeFileSync(file('bad.yaml'), MANIFESTS['pod.yaml']!.replace('name: a\n', 'name: bad\n').replace('containerPort: 80, protocol: UDP', 'containerPort: 80, protocol: ICMP'));
    const r = await kubectl('create', '-f', file('bad.yaml'));
    expect(r.exitCode).to.equal(1);
    expect(r.stderr).to.contain('spec.containers[0].ports[1].protocol').and.contain('Unsupported value: "ICMP"');
  });

  it('field validation as kube-apiserver does it: strict refuses unknown fields, warn and ignore drop them', async () => {
    const modelShaped = MANIFESTS['netpol.yaml']!.replace('name: allow-y', 'name: typo').replace('  - from:', '  - _from:');
    fs.writeFileSync(file('typo.yaml'), modelShaped);
    const strict = await kubectl('create', '-f', file('typo.yaml'));
    expect(strict.exitCode).to.equal(1);
    expect(strict.stderr).to.contain('NetworkPolicy in version "v1" cannot be handled as a NetworkPolicy: strict decoding error: unknown field "spec.ingress[0]._from"');
    expect(api.server.list('NetworkPolicy').map((n) => n.metadata?.name)).to.not.include('typo');

    const warn = await kubectl('create', '-f', file('typo.yaml'), '--validate=warn');
    expect(warn.exitCode, warn.stderr).to.equal(0);
    expect(warn.stderr).to.contain('Warning: unknown field "spec.ingress[0]._from"');
    // Pruned: what is stored, listed and watched has no trace of the unknown field.
    expect(api.server.get('NetworkPolicy', 'x', 'typo').spec).to.deep.equal({ podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ port: 80, protocol: 'TCP' }] }], policyTypes: ['Ingress'] });
    expect((await kubectl('delete', '-f', file('typo.yaml'))).exitCode).to.equal(0);

    const ignore = await kubectl('create', '-f', file('typo.yaml'), '--validate=false');
    expect(ignore.exitCode, ignore.stderr).to.equal(0);
    expect(ignore.stderr).to.not.contain('Warning');
    expect(JSON.stringify(api.server.get('NetworkPolicy', 'x', 'typo'))).to.not.contain('_from');

    // An update through apply is decoded the same way.
    fs.writeFileSync(file('allow-y-typo.yaml'), MANIFESTS['netpol.yaml']!.replace('    ports:', '    portz:'));
    const apply = await kubectl('apply', '-f', file('allow-y-typo.yaml'));
    expect(apply.exitCode).to.equal(1);
    expect(apply.stderr).to.contain('unknown field "spec.ingress[0].portz"');
    expect(api.server.get('NetworkPolicy', 'x', 'allow-y').spec).to.have.nested.property('ingress[0].ports[0].port', 80);
  });

  it('refuses duplicate fields under Strict and wrong JSON types always, with the real messages', async () => {
    const dup = await fetch(`${api.url}/apis/networking.k8s.io/v1/namespaces/x/networkpolicies?fieldValidation=Strict`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"d","name":"d2","namespace":"x"},"spec":{"podSelector":{}}}',
    });
    expect(dup.status).to.equal(400);
    expect(((await dup.json()) as { message: string }).message).to.equal('NetworkPolicy in version "v1" cannot be handled as a NetworkPolicy: strict decoding error: duplicate field "metadata.name"');
    const badType = await fetch(`${api.url}/apis/networking.k8s.io/v1/namespaces/x/networkpolicies?fieldValidation=Ignore`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ metadata: { name: 't', namespace: 'x' }, spec: { podSelector: {}, ingress: [{ ports: [{ port: 80, endPort: '90' }] }] } }),
    });
    expect(badType.status).to.equal(400);
    expect(((await badType.json()) as { message: string }).message).to.contain('cannot unmarshal string into Go struct field NetworkPolicyPort.spec.ingress.ports.endPort of type int32');
  });

  it('seeding in-process refuses what the API does not know', () => {
    expect(() => api.server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'q', lables: { a: 'b' } } })).to.throw(/unknown field "metadata.lables"/);
  });

  it('delete -f removes everything, namespace contents included, and waits for it', async () => {
    const r = await kubectl('delete', '-f', file('all.yaml'));
    expect(r.exitCode, r.stderr).to.equal(0);
    expect(r.stdout.split('\n')).to.deep.equal([
      'namespace "x" deleted',
      'node "node1" deleted',
      'pod "a" deleted',
      'networkpolicy.networking.k8s.io "allow-y" deleted',
      'service "web" deleted',
    ]);
    await pollUntil('namespace x gone', () => !api.server.list('Namespace').some((n) => n.metadata?.name === 'x'), { timeoutMs: 5000, intervalMs: 20 });
    expect(api.server.list('Pod')).to.deep.equal([]);
    expect(api.server.list('Node')).to.deep.equal([]);
    const gone = await kubectl('get', '-f', file('pod.yaml'));
    expect(gone.exitCode).to.equal(1);
    expect(gone.stderr).to.contain('NotFound');
  });
});
