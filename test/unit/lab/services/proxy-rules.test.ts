import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import type { EndpointSlice, Service } from '../../../../src/lab/services/endpoint-slices.js';
import { hookLine, saveByTable } from '../../../../src/lab/services/service-proxy.js';
import {
  HOOKS,
  hashedChain,
  parseOwnChains,
  renderProxyRules,
  servicePortViews,
  usableEndpoints,
  type ProxyEndpoint,
  type ServicePortView,
} from '../../../../src/lab/services/proxy-rules.js';

function ep(address: string, nodeName: string, ready = true, extra: Partial<ProxyEndpoint> = {}): ProxyEndpoint {
  return { address, port: 8080, nodeName, ready, serving: ready, terminating: false, ...extra };
}

function view(over: Partial<ServicePortView> = {}): ServicePortView {
  return {
    id: 'x/web:http',
    protocol: 'tcp',
    port: 80,
    clusterIPs: ['10.96.0.10'],
    externalAddresses: ['203.0.113.10'],
    localExternal: false,
    localInternal: false,
    endpoints: [ep('10.244.1.5', 'n1'), ep('10.244.2.5', 'n2')],
    ...over,
  };
}

const node = { name: 'n1', podRanges: ['10.244.0.0/16'] };
const lines = (text: string): string[] => text.split('\n');

describe('lab service proxy: rule rendering', () => {
  it('Cluster: ClusterIP and external address jump to one SVC chain that balances with statistic random 1/n, then DNAT', () => {
    const r = renderProxyRules(node, [view()]);
    const svc = hashedChain('SVC', 'x/web:http', 'tcp');
    const ext = hashedChain('EXT', 'x/web:http', 'tcp');
    const sep1 = hashedChain('SEP', 'x/web:http', 'tcp', '10.244.1.5', '8080');
    const sep2 = hashedChain('SEP', 'x/web:http', 'tcp', '10.244.2.5', '8080');
    const nat = lines(r.nat);
    expect(nat).to.include(`-A LABSVC-SERVICES -m comment --comment "x/web:http cluster IP" -d 10.96.0.10/32 -p tcp -m tcp --dport 80 ! -s 10.244.0.0/16 -j LABSVC-MARK-MASQ`);
    expect(nat).to.include(`-A LABSVC-SERVICES -m comment --comment "x/web:http external IP" -d 203.0.113.10/32 -p tcp -m tcp --dport 80 -j ${ext}`);
    expect(nat).to.include(`-A ${ext} -m comment --comment "masquerade traffic for external destinations" -j LABSVC-MARK-MASQ`);
    expect(nat).to.include(`-A ${ext} -j ${svc}`);
    expect(nat.filter((l) => l.startsWith(`-A ${svc} `))).to.deep.equal([
      `-A ${svc} -m statistic --mode random --probability 0.5000000000 -j ${sep1}`,
      `-A ${svc} -j ${sep2}`,
    ]);
    expect(nat).to.include(`-A ${sep2} -p tcp -m tcp -j DNAT --to-destination 10.244.2.5:8080`);
    expect(nat).to.include(`-A ${sep2} -s 10.244.2.5/32 -j LABSVC-MARK-MASQ`);
    expect(nat).to.include('-A LABSVC-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN');
    expect(nat[nat.length - 2]).to.equal('COMMIT');
    expect(lines(r.filter).filter((l) => l.startsWith('-A'))).to.deep.equal([]);
  });

  it('Local with a local endpoint: pods and the node go cluster-wide, outside traffic only to local endpoints, unmarked', () => {
    const r = renderProxyRules(node, [view({ localExternal: true })]);
    const ext = hashedChain('EXT', 'x/web:http', 'tcp');
    const svl = hashedChain('SVL', 'x/web:http', 'tcp');
    const extRules = lines(r.nat).filter((l) => l.startsWith(`-A ${ext} `));
    expect(extRules).to.deep.equal([
      `-A ${ext} -m comment --comment "pod traffic for external destinations" -s 10.244.0.0/16 -j ${hashedChain('SVC', 'x/web:http', 'tcp')}`,
      `-A ${ext} -m comment --comment "masquerade LOCAL traffic for external destinations" -m addrtype --src-type LOCAL -j LABSVC-MARK-MASQ`,
      `-A ${ext} -m comment --comment "route LOCAL traffic for external destinations" -m addrtype --src-type LOCAL -j ${hashedChain('SVC', 'x/web:http', 'tcp')}`,
      `-A ${ext} -j ${svl}`,
    ]);
    expect(lines(r.nat).filter((l) => l.startsWith(`-A ${svl} `))).to.deep.equal([`-A ${svl} -j ${hashedChain('SEP', 'x/web:http', 'tcp', '10.244.1.5', '8080')}`]);
  });

  it('Local without a local endpoint: external traffic dropped in filter; no endpoint at all: REJECT for every address', () => {
    const local = renderProxyRules({ name: 'n3', podRanges: ['10.244.0.0/16'] }, [view({ localExternal: true })]);
    expect(lines(local.filter)).to.include('-A LABSVC-FILTER -m comment --comment "x/web:http has no local endpoints" -d 203.0.113.10/32 -p tcp -m tcp --dport 80 -j DROP');
    expect(lines(local.nat).some((l) => l.includes('LABSVC-SVL-'))).to.equal(false);
    const none = renderProxyRules(node, [view({ endpoints: [ep('10.244.1.5', 'n1', false)] })]);
    expect(lines(none.filter).filter((l) => l.startsWith('-A'))).to.deep.equal([
      '-A LABSVC-FILTER -m comment --comment "x/web:http has no endpoints" -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j REJECT',
      '-A LABSVC-FILTER -m comment --comment "x/web:http has no endpoints" -d 203.0.113.10/32 -p tcp -m tcp --dport 80 -j REJECT',
    ]);
    expect(none.chains.nat.some((c) => c.startsWith('LABSVC-SVC-'))).to.equal(false);
  });

  it('only ready endpoints; serving terminating ones when none is ready; IPv6 DNAT in brackets', () => {
    expect(usableEndpoints([ep('a', 'n1', false), ep('b', 'n1')]).map((e) => e.address)).to.deep.equal(['b']);
    expect(usableEndpoints([ep('a', 'n1', false, { serving: true, terminating: true }), ep('b', 'n1', false)]).map((e) => e.address)).to.deep.equal(['a']);
    const r = renderProxyRules({ name: 'n1', podRanges: ['fd00:10:244::/56'] }, [view({ clusterIPs: [], externalAddresses: ['2001:db8:200::10'], endpoints: [ep('fd00:10:244:1::5', 'n1')] })]);
    expect(r.nat).to.include('-j DNAT --to-destination [fd00:10:244:1::5]:8080');
    expect(r.nat).to.include('-d 2001:db8:200::10/128 -p tcp');
  });

  it('stale chains of ours are flushed and deleted in the same transaction; chain names stay within 28 characters', () => {
    const stale = 'LABSVC-SVC-AAAAAAAAAAAAAAAA';
    const r = renderProxyRules(node, [], { nat: [stale, 'LABSVC-SERVICES'], filter: [] });
    expect(lines(r.nat)).to.include(`:${stale} - [0:0]`);
    expect(lines(r.nat)).to.include(`-X ${stale}`);
    expect(lines(r.nat)).to.not.include('-X LABSVC-SERVICES');
    expect(hashedChain('SEP', 'ns/very-long-service-name:port', 'udp', 'fd00::1', '65535')).to.match(/^LABSVC-SEP-[A-Z2-7]{16}$/);
    expect(parseOwnChains(':PREROUTING ACCEPT [0:0]\n:LABSVC-SERVICES - [0:0]\n:PRPOL-X - [0:0]')).to.deep.equal(['LABSVC-SERVICES']);
  });

  it('iptables-restore --test takes the rendered rules, v4 and v6 (in a throw-away network namespace)', function () {
    const input4 = renderProxyRules(node, [view(), view({ id: 'x/web:dns', protocol: 'udp', port: 53, localExternal: true }), view({ id: 'x/none:p', endpoints: [] })], { nat: ['LABSVC-SVC-AAAAAAAAAAAAAAAA'], filter: [] });
    const input6 = renderProxyRules({ name: 'n1', podRanges: ['fd00:10:244::/56'] }, [view({ clusterIPs: ['fd00:10:96::a'], externalAddresses: ['2001:db8:200::10'], localExternal: true, endpoints: [ep('fd00:10:244:1::5', 'n1')] })]);
    for (const [tool, r] of [
      ['iptables-restore', input4],
      ['ip6tables-restore', input6],
    ] as const) {
      // The stale chain must exist for -X to pass: create it first in the same namespace.
      const script = `printf '*nat\\n:LABSVC-SVC-AAAAAAAAAAAAAAAA - [0:0]\\nCOMMIT\\n' | ${tool} --noflush && ${tool} --noflush --test`;
      const res = spawnSync('unshare', ['--net', 'sh', '-c', script], { input: r.nat + r.filter, encoding: 'utf8' });
      if (res.error !== undefined || /Operation not permitted/.test(res.stderr)) this.skip();
      expect(res.status, `${tool}: ${res.stderr}`).to.equal(0);
    }
  });
});

describe('lab service proxy: what it reads', () => {
  const service: Service = {
    metadata: { name: 'web', namespace: 'x' },
    spec: {
      type: 'LoadBalancer',
      clusterIPs: ['10.96.0.10', 'fd00:10:96::a'],
      externalIPs: ['203.0.113.70'],
      externalTrafficPolicy: 'Local',
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
    },
    status: { loadBalancer: { ingress: [{ ip: '203.0.113.10' }, { ip: '2001:db8:200::10' }] } },
  };
  const slice = (addressType: string, address: string): EndpointSlice => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `web-${addressType}`, namespace: 'x', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType,
    endpoints: [{ addresses: [address], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'x', name: 'a', uid: 'u' } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  });

  it('per family: the Service addresses (ClusterIPs, externalIPs, LoadBalancer ingress) and the endpoints of that address type', () => {
    const slices = [slice('IPv4', '10.244.1.5'), slice('IPv6', 'fd00:10:244:1::5')];
    const [v4] = servicePortViews([service], slices, 'ipv4');
    expect(v4).to.deep.include({ id: 'x/web:http', protocol: 'tcp', port: 80, clusterIPs: ['10.96.0.10'], externalAddresses: ['203.0.113.70', '203.0.113.10'], localExternal: true });
    expect(v4?.endpoints).to.deep.equal([{ address: '10.244.1.5', port: 8080, nodeName: 'n1', ready: true, serving: true, terminating: false }]);
    const [v6] = servicePortViews([service], slices, 'ipv6');
    expect(v6?.externalAddresses).to.deep.equal(['2001:db8:200::10']);
    expect(v6?.endpoints.map((e) => e.address)).to.deep.equal(['fd00:10:244:1::5']);
    // A ClusterIP Service has no ingress addresses even if a status says so.
    const [clusterOnly] = servicePortViews([{ ...service, spec: { ...service.spec, type: 'ClusterIP', externalIPs: [] } }], slices, 'ipv4');
    expect(clusterOnly?.externalAddresses).to.deep.equal([]);
    expect(clusterOnly?.localExternal).to.equal(false);
  });

  it('finds its hooks in iptables-save output by table', () => {
    const tables = saveByTable('*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j LABSVC-SERVICES\nCOMMIT\n*filter\n-A INPUT -m conntrack --ctstate NEW -j LABSVC-FILTER\nCOMMIT\n');
    const present = HOOKS.filter((h) => (tables.get(h.table) ?? []).includes(hookLine(h))).map((h) => `${h.table}/${h.chain}`);
    expect(present).to.deep.equal(['nat/PREROUTING', 'filter/INPUT']);
  });
});
